//! The file system itself, mounted for real by the `vigil-lazyfs` binary: what was not
//! fsync'd is gone after `clear-cache`, what was fsync'd stays, and the backing directory
//! holds exactly the fsync'd state all along.
//!
//! Needs `/dev/fuse` and the right to mount (root, or Debian's `fuse3` for `fusermount3`);
//! where the machine has no FUSE at all the test says so and passes without running.

// Test code: a panic here is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Mount {
    _dir: tempfile::TempDir,
    backing: PathBuf,
    mnt: PathBuf,
    child: Option<Child>,
}

impl Mount {
    fn start() -> Option<Mount> {
        if !Path::new("/dev/fuse").exists() {
            eprintln!("skipped: this machine has no /dev/fuse");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("backing");
        let mnt = dir.path().join("mnt");
        fs::create_dir_all(&backing).unwrap();
        fs::create_dir_all(&mnt).unwrap();
        let log = dir.path().join("lazyfs.log");
        let child = Command::new(env!("CARGO_BIN_EXE_vigil-lazyfs"))
            .arg(&backing)
            .arg(&mnt)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Owned by the guard at once: a failed start is cleaned up too.
        let mut m = Mount {
            _dir: dir,
            backing,
            mnt,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if fs::metadata(m.mnt.join(".lazyfs-control")).is_ok() {
                return Some(m);
            }
            if let Some(c) = m.child.as_mut()
                && c.try_wait().unwrap().is_some()
            {
                panic!(
                    "vigil-lazyfs did not mount: {}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("vigil-lazyfs did not mount within 10 s");
    }

    fn m(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    fn b(&self, rel: &str) -> PathBuf {
        self.backing.join(rel)
    }

    fn command(&self, cmd: &str) -> std::io::Result<()> {
        fs::write(self.m(".lazyfs-control"), cmd)
    }

    fn clear_cache(&self) {
        self.command("clear-cache").unwrap();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn append(path: &Path, data: &[u8]) -> File {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(data).unwrap();
    f
}

#[test]
fn unsynced_writes_are_lost_and_synced_ones_kept() {
    let Some(m) = Mount::start() else { return };

    // Written, never fsync'd: readable through the mount, absent from the backing
    // directory, and gone after the power loss (the file too: it was never made durable).
    fs::write(m.m("gone"), b"never synced").unwrap();
    assert_eq!(fs::read(m.m("gone")).unwrap(), b"never synced");
    assert_eq!(fs::read(m.b("gone")).unwrap(), b"");
    // Written and fsync'd, then more without fsync.
    let mut f = File::create(m.m("kept")).unwrap();
    f.write_all(b"synced").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let f = append(&m.m("kept"), b" and not");
    assert_eq!(fs::read(m.m("kept")).unwrap(), b"synced and not");
    assert_eq!(fs::read(m.b("kept")).unwrap(), b"synced");
    // fdatasync counts as well (the store's journal uses it).
    let g = append(&m.m("kept"), b"; datasynced");
    g.sync_data().unwrap();
    assert_eq!(
        fs::read(m.b("kept")).unwrap(),
        b"synced and not; datasynced"
    );
    drop((f, g));
    append(&m.m("kept"), b"; lost");

    m.clear_cache();
    assert!(!m.m("gone").exists(), "a never-synced file must vanish");
    assert!(!m.b("gone").exists());
    assert_eq!(
        fs::read(m.m("kept")).unwrap(),
        b"synced and not; datasynced"
    );
    assert_eq!(
        fs::read(m.b("kept")).unwrap(),
        b"synced and not; datasynced"
    );
}

#[test]
fn truncates_renames_directories_and_the_sync_command() {
    let Some(m) = Mount::start() else { return };

    // A truncate is pending like a write.
    let f = File::create(m.m("t")).unwrap();
    (&f).write_all(&[7u8; 10_000]).unwrap();
    f.sync_all().unwrap();
    f.set_len(10).unwrap();
    assert_eq!(fs::metadata(m.m("t")).unwrap().len(), 10);
    assert_eq!(fs::metadata(m.b("t")).unwrap().len(), 10_000);
    drop(f);
    m.clear_cache();
    assert_eq!(fs::read(m.m("t")).unwrap(), vec![7u8; 10_000]);

    // An overwrite that was read back (so the kernel cached it) is gone after a reopen.
    let f = OpenOptions::new().write(true).open(m.m("t")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"overwritten", 0).unwrap();
    drop(f);
    assert_eq!(&fs::read(m.m("t")).unwrap()[..11], b"overwritten");
    m.clear_cache();
    assert_eq!(fs::read(m.m("t")).unwrap(), vec![7u8; 10_000]);

    // The atomic-rename pattern (write a temp file, fsync, rename, fsync the directory).
    fs::create_dir(m.m("d")).unwrap();
    let tmp = File::create(m.m("d/v.tmp")).unwrap();
    (&tmp).write_all(b"version 2").unwrap();
    tmp.sync_all().unwrap();
    fs::rename(m.m("d/v.tmp"), m.m("d/v")).unwrap();
    File::open(m.m("d")).unwrap().sync_all().unwrap();
    // A file created in a directory that is then fsync'd survives, empty.
    File::create(m.m("d/empty"))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    File::open(m.m("d")).unwrap().sync_all().unwrap();
    m.clear_cache();
    assert_eq!(fs::read(m.m("d/v")).unwrap(), b"version 2");
    assert!(!m.m("d/v.tmp").exists());
    assert_eq!(fs::read(m.m("d/empty")).unwrap(), b"");

    // `sync` applies everything.
    fs::write(m.m("s"), b"synced by command").unwrap();
    m.command("lazyfs::sync").unwrap();
    assert_eq!(fs::read(m.b("s")).unwrap(), b"synced by command");
    m.clear_cache();
    assert_eq!(fs::read(m.m("s")).unwrap(), b"synced by command");

    // An unknown command is refused, and the counters can be read.
    assert!(m.command("format-disk").is_err());
    let counters = fs::read_to_string(m.m(".lazyfs-control")).unwrap();
    assert!(counters.contains("clears 4"), "{counters}");
    // The control file is not listed.
    let names: Vec<_> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!names.iter().any(|n| n == ".lazyfs-control"), "{names:?}");
}

#[test]
fn an_unlinked_open_file_stays_readable() {
    let Some(m) = Mount::start() else { return };
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.m("u"))
        .unwrap();
    f.write_all(b"still here").unwrap();
    fs::remove_file(m.m("u")).unwrap();
    assert!(!m.b("u").exists());
    let mut buf = [0u8; 10];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 0).unwrap();
    assert_eq!(&buf, b"still here");
}
