//! The data directory is private to the user that runs Vigil: it holds the event log (hostage
//! cases' captors, persons, locations) and the secrets (signing key, NATS passwords, users).
//!
//! # Promises
//! - Everything a Vigil process creates under it is owner-only (files 0600, directories
//!   0700), also the files fjall creates, which take no mode: every binary that writes a data
//!   directory calls [`restrict_umask`] first thing in `main`, before any thread starts (the
//!   umask is per process), and where Vigil creates a directory itself it says 0700
//!   ([`create_private_dir`]). Broken by `vigil/tests/file_modes.rs`
//!   `everything_the_centre_writes_is_owner_only`.
//! - A writer refuses to start on a data directory whose event log or secrets other users can
//!   read or write, saying the `chmod` to run ([`check_private`]), and writes nothing: files
//!   an older version left 0644 were readable by anyone meanwhile, and the operator must know.
//!   Broken by `vigil/tests/file_modes.rs` `a_data_dir_open_to_others_is_refused_and_left_alone`.
//! - A data directory that others may list but not write (0755, as `mkdir` and `tempfile`
//!   make them), whose events and secrets are all private, is made 0700 instead of refused:
//!   nothing in it was exposed, so there is nothing for the operator to act on.
//!   Unit test `a_directory_others_may_only_list_is_made_private_and_open_data_is_refused`.

use std::path::{Path, PathBuf};

/// What in a data directory holds events or secrets, and is checked at start: the store's
/// files, the secrets (signing key, NATS users), the nats-server config (passwords), the users
/// (password hashes) and the revoked tokens. Process logs that tools put beside them are not.
pub const SENSITIVE: &[&str] = &["store", "secrets", "nats", "users.json", "revoked-tokens"];

/// Sets the process umask to 0o077, so every file and directory the process (and the
/// libraries it uses, and the processes it starts) creates is owner-only. Call it first thing
/// in `main`, before any thread exists: the umask is shared by every thread.
pub fn restrict_umask() {
    #[cfg(unix)]
    {
        use nix::sys::stat::{Mode, umask};
        umask(Mode::from_bits_truncate(0o077));
    }
}

/// Creates `dir` (and missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Why a data directory is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// Other users can read or write the log or the secrets.
    #[error(
        "the data directory {dir} is open to other users: {first} has mode {mode:03o}{more}. It holds the event log and the secrets, so Vigil does not start on it. Make it private with:\n  chmod -R go-rwx {dir}\n(an older Vigil created its files 0644 and its directories 0755)"
    )]
    OpenToOthers {
        /// The data directory.
        dir: PathBuf,
        /// The first path found open.
        first: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// ", and N more" or empty.
        more: String,
    },
    /// It could not be created or examined.
    #[error("cannot use the data directory {dir}: {source}")]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// Creates the data directory `dir` (0700) when it is missing, and checks that no other user
/// can read or write the events and secrets in it (see [`SENSITIVE`]) nor write the directory
/// itself (and so swap them). When nothing in it is open, a directory that others may only
/// list (0755, as `mkdir` and `tempfile` make them) is made 0700; anything open is refused
/// with the `chmod` to run.
pub fn check_private(dir: &Path) -> Result<(), DataDirError> {
    let io = |source| DataDirError::Io {
        dir: dir.to_owned(),
        source,
    };
    create_private_dir(dir).map_err(io)?;
    let mut open = Vec::new();
    let dir_mode = group_or_other(dir).map_err(io)?;
    if dir_mode.is_some_and(|m| m & 0o022 != 0) {
        open.push(dir.to_owned());
    }
    for name in SENSITIVE {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_ok() {
            walk(&path, &mut open).map_err(io)?;
        }
    }
    let Some(first) = open.first() else {
        if dir_mode.is_some() {
            set_mode(dir, 0o700).map_err(io)?;
            tracing::info!(dir = %dir.display(), "made the data directory private (mode 0700)");
        }
        return Ok(());
    };
    let mode = group_or_other(first).map_err(io)?.unwrap_or(0);
    let more = match open.len() {
        1 => String::new(),
        n => format!(", and {} more", n - 1),
    };
    Err(DataDirError::OpenToOthers {
        dir: dir.to_owned(),
        first: first.clone(),
        mode,
        more,
    })
}

/// Collects `path` and everything under it that group or others may access. Symbolic links
/// are not followed (their own mode means nothing).
fn walk(path: &Path, open: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if group_or_other(path)?.is_some() {
        open.push(path.to_owned());
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            walk(&entry?.path(), open)?;
        }
    }
    Ok(())
}

/// The permission bits of `path` when group or others have any of them.
#[cfg(unix)]
fn group_or_other(path: &Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(path)?.permissions().mode() & 0o777;
    Ok((mode & 0o077 != 0).then_some(mode))
}

#[cfg(not(unix))]
fn group_or_other(_path: &Path) -> std::io::Result<Option<u32>> {
    Ok(None)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_directory_others_may_only_list_is_made_private_and_open_data_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        // Missing: created 0700.
        check_private(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // 0755 (mkdir, tempfile) with a process log and a private store: tightened.
        set_mode(&dir, 0o755).unwrap();
        std::fs::write(dir.join("store-process.log"), b"x").unwrap();
        create_private_dir(&dir.join("store")).unwrap();
        let table = dir.join("store/00001.jnl");
        std::fs::write(&table, b"x").unwrap();
        set_mode(&table, 0o600).unwrap();
        check_private(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // A store file readable by others: refused, and left as it was.
        set_mode(&table, 0o644).unwrap();
        let e = check_private(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&format!("chmod -R go-rwx {}", dir.display())),
            "{e}"
        );
        assert!(e.contains("00001.jnl has mode 644"), "{e}");
        assert_eq!(mode(&table), 0o644);
        set_mode(&table, 0o600).unwrap();
        check_private(&dir).unwrap();
        // The directory writable by its group (the store could have been swapped): refused.
        set_mode(&dir, 0o775).unwrap();
        let e = check_private(&dir).unwrap_err().to_string();
        assert!(e.contains("has mode 775"), "{e}");
        assert_eq!(mode(&dir), 0o775);
    }
}
