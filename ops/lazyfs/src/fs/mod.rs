//! The FUSE file system: a passthrough of a backing directory whose regular files keep every
//! write and truncate in memory ([`Pending`]) until that file is fsync'd.
//!
//! - **Data**: a write or truncate goes to the file's [`Pending`] state, never to the backing
//!   file; reads and `stat` see it. `fsync`/`fdatasync` of the file (or a write through an
//!   `O_SYNC`/`O_DSYNC` descriptor, or the `sync` command) applies it to the backing file. So
//!   the backing directory holds exactly the fsync'd content of every file.
//! - **Metadata** (create, mkdir, rename, unlink, rmdir, symlink, chmod, chown, utimes) is
//!   applied to the backing directory at once, with one exception: a regular file created
//!   through the mount that has never been made durable (neither the file itself nor, after
//!   its creation, its parent directory fsync'd) is removed by `clear-cache`.
//! - **Control**: the virtual file [`CONTROL_NAME`] in the mount's root (not listed by
//!   `readdir`) takes one command per write: `clear-cache` drops every pending write (power
//!   loss), `sync` applies them all (`lazyfs::` prefixes, as LazyFS's FIFO takes them, are
//!   accepted). The write returns once the command is done. Reading it gives counters, one
//!   `name value` a line.
//! - **Refused**: hard links (`EPERM`), `RENAME_EXCHANGE`/`RENAME_WHITEOUT` (`EINVAL`),
//!   device and FIFO nodes (`EPERM`), `fallocate` modes other than plain allocation and
//!   `FALLOC_FL_KEEP_SIZE` (`EOPNOTSUPP`); extended attributes are not implemented
//!   (`ENOSYS`). `O_DIRECT` is accepted: the kernel still hands each write to this process,
//!   which keeps it pending like any other.
//!
//! Entries and attributes are given with a time-to-live of zero, so the kernel asks again
//! after a `clear-cache`; file data is not kept in the kernel's page cache across an open
//! (no `FOPEN_KEEP_CACHE`). A process that keeps a file open across a `clear-cache` may still
//! read pages the kernel cached before it: issue it, as a power loss would happen, when the
//! writers are dead.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo};
use nix::libc;

use crate::cache::Pending;

mod inner;
mod ops;

/// The name of the control file in the mount's root.
pub const CONTROL_NAME: &str = ".lazyfs-control";

const ROOT: u64 = 1;
const CONTROL: u64 = 2;
/// Entries and attributes are never cached by the kernel (see the module docs).
const TTL: Duration = Duration::ZERO;

/// Counters, as the control file reports them.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    fsyncs: u64,
    syncs: u64,
    clears: u64,
    dropped_files: u64,
    dropped_pages: u64,
    removed_files: u64,
}

/// One file or directory the kernel knows by inode number.
#[derive(Debug, Default)]
struct Node {
    /// Relative to the backing directory (empty for the root); `None` once unlinked.
    path: Option<PathBuf>,
    /// Writes since the last fsync (regular files only).
    pending: Option<Pending>,
    /// Created through the mount and not yet durable (see the module docs).
    unsynced_create: bool,
    /// Open file handles.
    open: usize,
}

enum Handle {
    File {
        ino: u64,
        file: File,
    },
    Dir {
        entries: Vec<(u64, FileType, OsString)>,
    },
    Control,
}

struct Inner {
    backing: PathBuf,
    fsync_backing: bool,
    nodes: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    started: SystemTime,
    stats: Stats,
}

/// The file system (see the module docs).
pub struct LazyFs {
    inner: Mutex<Inner>,
}

type Res<T> = Result<T, Errno>;

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let nanos = u32::try_from(nsecs).unwrap_or(0).min(999_999_999);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::new(0, nanos)
    }
}

fn attr_of(ino: u64, md: &Metadata, size: Option<u64>) -> FileAttr {
    let kind = FileType::from_std(md.file_type()).unwrap_or(FileType::RegularFile);
    let (size, blocks) = match size {
        Some(s) => (s, s.div_ceil(512)),
        None => (md.len(), md.blocks()),
    };
    let mtime = time(md.mtime(), md.mtime_nsec());
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks,
        atime: time(md.atime(), md.atime_nsec()),
        mtime,
        ctime: time(md.ctime(), md.ctime_nsec()),
        crtime: mtime,
        kind,
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: md.blksize() as u32,
        flags: 0,
    }
}

/// Opens a backing file for reading and writing (the cache must read whole pages even for a
/// write-only descriptor); read-only when writing is refused and only reading was asked.
fn open_backing(path: &Path, read_only_ok: bool) -> io::Result<File> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => Ok(f),
        Err(e) if read_only_ok && e.raw_os_error() != Some(libc::ENOENT) => {
            File::open(path).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

impl LazyFs {
    /// A file system over `backing` (an existing directory). With `fsync_backing`, an
    /// applied fsync also fsyncs the backing file (only matters if the host itself may lose
    /// power; the scenario does not need it).
    pub fn new(backing: &Path, fsync_backing: bool) -> io::Result<LazyFs> {
        let backing = backing.canonicalize()?;
        if !backing.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", backing.display()),
            ));
        }
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                path: Some(PathBuf::new()),
                ..Node::default()
            },
        );
        let mut by_path = HashMap::new();
        by_path.insert(PathBuf::new(), ROOT);
        Ok(LazyFs {
            inner: Mutex::new(Inner {
                backing,
                fsync_backing,
                nodes,
                by_path,
                next_ino: CONTROL + 1,
                handles: HashMap::new(),
                next_fh: 1,
                started: SystemTime::now(),
                stats: Stats::default(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
