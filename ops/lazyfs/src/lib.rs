//! `vigil-lazyfs`: power loss on command, for the reliability battery (`vigil-chaos
//! powerloss`, see `docs/RELIABILITY.md`, "Power loss").
//!
//! A passthrough FUSE file system in the spirit of LazyFS: it mounts a backing directory at
//! a mount point, keeps every write and truncate of a regular file in memory until that file
//! is fsync'd (so the backing directory always holds exactly the fsync'd content), and drops
//! all of it when told `clear-cache` through the control file `<mount>/.lazyfs-control`:
//!
//! ```text
//! vigil-lazyfs BACKING MOUNT &                  # serves until unmounted
//! echo clear-cache > MOUNT/.lazyfs-control      # power loss: unsynced writes are gone
//! echo sync > MOUNT/.lazyfs-control             # or: apply them all, as sync(2)
//! cat MOUNT/.lazyfs-control                     # counters
//! umount MOUNT                                  # (or fusermount3 -u MOUNT)
//! ```
//!
//! - [`cache`]: the pending state of one file and its rules (pure, unit-tested).
//! - [`fs`]: the FUSE operations, the control file, and what is simplified or refused.

pub mod cache;
pub mod fs;

use std::io;
use std::path::Path;

pub use fs::{CONTROL_NAME, LazyFs};

/// The session configuration: one request at a time (the store's I/O is small and the
/// bookkeeping stays simple), kernel permission checks on the backing files' modes.
pub fn config() -> fuser::Config {
    let mut c = fuser::Config::default();
    c.mount_options = vec![
        fuser::MountOption::FSName("vigil-lazyfs".into()),
        fuser::MountOption::Subtype("lazyfs".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    c
}

/// Mounts `backing` at `mountpoint` and serves until the mount is unmounted.
pub fn run(backing: &Path, mountpoint: &Path, fsync_backing: bool) -> io::Result<()> {
    let fs = LazyFs::new(backing, fsync_backing)?;
    fuser::mount(fs, mountpoint, &config())
}
