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
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use nix::libc;

use crate::cache::{Pending, read_full_at};

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

impl Inner {
    fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.backing.clone()
        } else {
            self.backing.join(rel)
        }
    }

    fn path_of(&self, ino: u64) -> Res<PathBuf> {
        self.nodes
            .get(&ino)
            .and_then(|n| n.path.clone())
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Res<PathBuf> {
        if name.as_bytes().contains(&b'/') || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        Ok(self.path_of(parent)?.join(name))
    }

    fn ino_for(&mut self, rel: &Path) -> u64 {
        if let Some(&ino) = self.by_path.get(rel) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_path.insert(rel.to_owned(), ino);
        self.nodes.insert(
            ino,
            Node {
                path: Some(rel.to_owned()),
                ..Node::default()
            },
        );
        ino
    }

    /// Forgets the entry at `rel` (unlinked or replaced); its node lives on while open.
    fn detach(&mut self, rel: &Path) {
        if let Some(ino) = self.by_path.remove(rel)
            && let Some(n) = self.nodes.get_mut(&ino)
        {
            n.path = None;
            n.unsynced_create = false;
            if n.open == 0 {
                self.nodes.remove(&ino);
            }
        }
    }

    /// Forgets `rel` and every entry under it (a removed directory, a replaced tree).
    fn detach_tree(&mut self, rel: &Path) {
        let under: Vec<PathBuf> = self
            .by_path
            .keys()
            .filter(|k| k.starts_with(rel))
            .cloned()
            .collect();
        for k in under {
            self.detach(&k);
        }
    }

    fn new_fh(&mut self, h: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        fh
    }

    /// The backing path of `ino`, while it has one.
    fn abs_of(&self, ino: u64) -> Option<PathBuf> {
        self.nodes
            .get(&ino)
            .and_then(|n| n.path.as_deref())
            .map(|p| self.abs(p))
    }

    fn control_attr(&self) -> FileAttr {
        let (uid, gid) = std::fs::metadata(&self.backing)
            .map(|m| (m.uid(), m.gid()))
            .unwrap_or((0, 0));
        FileAttr {
            ino: INodeNo(CONTROL),
            size: 0,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: FileType::RegularFile,
            perm: 0o600,
            nlink: 1,
            uid,
            gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn attr(&self, ino: u64, fh: Option<u64>) -> Res<FileAttr> {
        if ino == CONTROL {
            return Ok(self.control_attr());
        }
        let node = self.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        let size = node.pending.as_ref().map(Pending::size);
        let md = match (&node.path, fh.and_then(|fh| self.handles.get(&fh))) {
            (_, Some(Handle::File { file, .. })) => file.metadata(),
            (Some(p), _) => std::fs::symlink_metadata(self.abs(p)),
            (None, _) => file_of(&self.handles, ino, None, None)?.metadata(),
        }
        .map_err(errno)?;
        Ok(attr_of(ino, &md, size))
    }

    /// The attributes of the entry at `rel`, registering it.
    fn entry(&mut self, rel: &Path) -> Res<FileAttr> {
        let md = std::fs::symlink_metadata(self.abs(rel)).map_err(errno)?;
        let ino = self.ino_for(rel);
        let size = self
            .nodes
            .get(&ino)
            .and_then(|n| n.pending.as_ref())
            .map(Pending::size);
        Ok(attr_of(ino, &md, size))
    }

    /// The pending state of `ino`, begun over `file` when there is none.
    fn pending_mut<'a>(
        nodes: &'a mut HashMap<u64, Node>,
        ino: u64,
        file: &File,
    ) -> Res<&'a mut Pending> {
        let node = nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        match &mut node.pending {
            Some(p) => Ok(p),
            slot @ None => {
                let len = file.metadata().map_err(errno)?.len();
                Ok(slot.insert(Pending::new(len)))
            }
        }
    }

    /// Applies `ino`'s pending state to its backing file (fsync).
    fn apply(&mut self, ino: u64, fh: Option<u64>, datasync: bool) -> Res<()> {
        let file = file_of(&self.handles, ino, fh, self.abs_of(ino))?;
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        if let Some(p) = &node.pending
            && !p.is_clean()
        {
            p.apply(&file).map_err(errno)?;
        }
        node.pending = None;
        node.unsynced_create = false;
        if self.fsync_backing {
            if datasync {
                file.sync_data().map_err(errno)?;
            } else {
                file.sync_all().map_err(errno)?;
            }
        }
        self.stats.fsyncs += 1;
        Ok(())
    }

    /// Power loss: every pending write is dropped, and every never-durable created file
    /// removed.
    fn clear_cache(&mut self) {
        self.stats.clears += 1;
        let (mut files, mut pages) = (0u64, 0u64);
        let mut named = Vec::new();
        for n in self.nodes.values_mut() {
            if let Some(p) = n.pending.take()
                && !p.is_clean()
            {
                files += 1;
                pages += p.pages() as u64;
                if named.len() < 8 {
                    let name = n
                        .path
                        .as_deref()
                        .map_or("(unlinked)".into(), |p| p.display().to_string());
                    named.push(format!("{name} ({} pages, size {})", p.pages(), p.size()));
                }
            }
        }
        let doomed: Vec<PathBuf> = self
            .nodes
            .values()
            .filter(|n| n.unsynced_create)
            .filter_map(|n| n.path.clone())
            .collect();
        let mut removed = 0u64;
        for rel in doomed {
            match std::fs::remove_file(self.abs(&rel)) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => eprintln!(
                    "vigil-lazyfs: clear-cache could not remove the never-synced file {}: {e}",
                    rel.display()
                ),
            }
            self.detach(&rel);
        }
        self.stats.dropped_files += files;
        self.stats.dropped_pages += pages;
        self.stats.removed_files += removed;
        eprintln!(
            "vigil-lazyfs: clear-cache: dropped the unsynced writes of {files} files ({pages} pages), removed {removed} never-synced files{}{}",
            if named.is_empty() { "" } else { ": " },
            named.join(", ")
        );
    }

    /// Applies every pending write, as `sync(2)` would.
    fn sync_all(&mut self) -> Res<()> {
        self.stats.syncs += 1;
        let inos: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.pending.is_some())
            .map(|(i, _)| *i)
            .collect();
        for ino in inos {
            self.apply(ino, None, false)?;
        }
        for n in self.nodes.values_mut() {
            n.unsynced_create = false;
        }
        Ok(())
    }

    fn report(&self) -> String {
        let pending: Vec<&Pending> = self
            .nodes
            .values()
            .filter_map(|n| n.pending.as_ref())
            .filter(|p| !p.is_clean())
            .collect();
        let s = self.stats;
        format!(
            "pending_files {}\npending_pages {}\nunsynced_created {}\nfsyncs {}\nsyncs {}\nclears {}\ndropped_files {}\ndropped_pages {}\nremoved_files {}\n",
            pending.len(),
            pending.iter().map(|p| p.pages()).sum::<usize>(),
            self.nodes.values().filter(|n| n.unsynced_create).count(),
            s.fsyncs,
            s.syncs,
            s.clears,
            s.dropped_files,
            s.dropped_pages,
            s.removed_files
        )
    }

    fn command(&mut self, data: &[u8]) -> Res<()> {
        let text = String::from_utf8_lossy(data);
        let cmd = text.trim();
        let cmd = cmd.strip_prefix("lazyfs::").unwrap_or(cmd);
        match cmd {
            "clear-cache" => {
                self.clear_cache();
                Ok(())
            }
            "sync" | "cache-checkpoint" => self.sync_all(),
            _ => {
                eprintln!("vigil-lazyfs: unknown command {cmd:?} (clear-cache, sync)");
                Err(Errno::EINVAL)
            }
        }
    }

    fn setattr(
        &mut self,
        ino: u64,
        fh: Option<u64>,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
        size: Option<u64>,
        times: (Option<TimeOrNow>, Option<TimeOrNow>),
    ) -> Res<FileAttr> {
        if ino == CONTROL {
            return Ok(self.control_attr());
        }
        let path = self.nodes.get(&ino).ok_or(Errno::ENOENT)?.path.clone();
        let abs = path.as_deref().map(|p| self.abs(p));
        let is_link = abs
            .as_deref()
            .and_then(|a| std::fs::symlink_metadata(a).ok())
            .is_some_and(|m| m.file_type().is_symlink());
        if let Some(mode) = mode
            && !is_link
        {
            let perm = std::fs::Permissions::from_mode(mode & 0o7777);
            match &abs {
                Some(a) => std::fs::set_permissions(a, perm),
                None => file_of(&self.handles, ino, fh, None)?.set_permissions(perm),
            }
            .map_err(errno)?;
        }
        if owner.0.is_some() || owner.1.is_some() {
            let a = abs.as_deref().ok_or(Errno::ENOENT)?;
            std::os::unix::fs::lchown(a, owner.0, owner.1).map_err(errno)?;
        }
        if let Some(size) = size {
            let file = file_of(&self.handles, ino, fh, abs.clone())?;
            let p = Self::pending_mut(&mut self.nodes, ino, &file)?;
            p.truncate(size);
        }
        if (times.0.is_some() || times.1.is_some()) && !is_link {
            let now = SystemTime::now();
            let pick = |t: TimeOrNow| match t {
                TimeOrNow::SpecificTime(t) => t,
                TimeOrNow::Now => now,
            };
            let mut ft = std::fs::FileTimes::new();
            if let Some(t) = times.0 {
                ft = ft.set_accessed(pick(t));
            }
            if let Some(t) = times.1 {
                ft = ft.set_modified(pick(t));
            }
            let file = match &abs {
                Some(a) => FileRef::Owned(File::open(a).map_err(errno)?),
                None => file_of(&self.handles, ino, fh, None)?,
            };
            file.set_times(ft).map_err(errno)?;
        }
        self.attr(ino, fh)
    }

    fn rename(&mut self, from: (u64, &OsStr), to: (u64, &OsStr), flags: RenameFlags) -> Res<()> {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let old = self.child(from.0, from.1)?;
        let new = self.child(to.0, to.1)?;
        if old == new {
            return Ok(());
        }
        let (old_abs, new_abs) = (self.abs(&old), self.abs(&new));
        if flags.contains(RenameFlags::RENAME_NOREPLACE)
            && std::fs::symlink_metadata(&new_abs).is_ok()
        {
            return Err(Errno::EEXIST);
        }
        std::fs::rename(&old_abs, &new_abs).map_err(errno)?;
        self.detach_tree(&new);
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(k, _)| k.starts_with(&old))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (k, ino) in moved {
            self.by_path.remove(&k);
            let rest = k.strip_prefix(&old).unwrap_or(Path::new(""));
            let moved_to = if rest.as_os_str().is_empty() {
                new.clone()
            } else {
                new.join(rest)
            };
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.path = Some(moved_to.clone());
            }
            self.by_path.insert(moved_to, ino);
        }
        Ok(())
    }

    fn create(&mut self, parent: u64, name: &OsStr, mode: u32, flags: i32) -> Res<(FileAttr, u64)> {
        let rel = self.child(parent, name)?;
        let abs = self.abs(&rel);
        let (file, created) = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&abs)
        {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && flags & libc::O_EXCL == 0 => {
                (open_backing(&abs, false).map_err(errno)?, false)
            }
            Err(e) => return Err(errno(e)),
        };
        if created {
            // A new file is a new inode, whatever was known at this name before.
            self.detach(&rel);
        }
        let ino = self.ino_for(&rel);
        if created {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.unsynced_create = true;
            }
        } else if flags & libc::O_TRUNC != 0 {
            Self::pending_mut(&mut self.nodes, ino, &file)?.truncate(0);
        }
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open += 1;
        }
        let fh = self.new_fh(Handle::File { ino, file });
        Ok((self.attr(ino, Some(fh))?, fh))
    }

    fn opendir(&mut self, ino: u64) -> Res<u64> {
        let rel = self.path_of(ino)?;
        let parent = match rel.parent() {
            Some(p) => self.ino_for(p),
            None => ROOT,
        };
        let mut entries = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (parent, FileType::Directory, OsString::from("..")),
        ];
        for e in std::fs::read_dir(self.abs(&rel)).map_err(errno)? {
            let e = e.map_err(errno)?;
            let name = e.file_name();
            let kind = e
                .file_type()
                .ok()
                .and_then(FileType::from_std)
                .unwrap_or(FileType::RegularFile);
            let child = self.ino_for(&rel.join(&name));
            entries.push((child, kind, name));
        }
        Ok(self.new_fh(Handle::Dir { entries }))
    }
}

/// The backing file of `ino`: the handle's, another open handle's, or opened by its backing
/// path `abs`.
fn file_of(
    handles: &HashMap<u64, Handle>,
    ino: u64,
    fh: Option<u64>,
    abs: Option<PathBuf>,
) -> Res<FileRef<'_>> {
    if let Some(Handle::File { file, .. }) = fh.and_then(|fh| handles.get(&fh)) {
        return Ok(FileRef::Borrowed(file));
    }
    let any = handles.values().find_map(|h| match h {
        Handle::File { ino: i, file } if *i == ino => Some(file),
        _ => None,
    });
    if let Some(file) = any {
        return Ok(FileRef::Borrowed(file));
    }
    let abs = abs.ok_or(Errno::ENOENT)?;
    open_backing(&abs, true).map(FileRef::Owned).map_err(errno)
}

/// A backing file, borrowed from an open handle or opened for the occasion.
enum FileRef<'a> {
    Borrowed(&'a File),
    Owned(File),
}

impl std::ops::Deref for FileRef<'_> {
    type Target = File;
    fn deref(&self) -> &File {
        match self {
            FileRef::Borrowed(f) => f,
            FileRef::Owned(f) => f,
        }
    }
}

fn reply_entry(reply: ReplyEntry, r: Res<FileAttr>) {
    match r {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Res<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut g = self.lock();
        if parent.0 == ROOT && name == CONTROL_NAME {
            let attr = g.control_attr();
            return reply.entry(&TTL, &attr, Generation(0));
        }
        let r = g.child(parent.0, name).and_then(|rel| g.entry(&rel));
        reply_entry(reply, r);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().attr(ino.0, fh.map(|f| f.0)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.lock().setattr(
            ino.0,
            fh.map(|f| f.0),
            mode,
            (uid, gid),
            size,
            (atime, mtime),
        );
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let g = self.lock();
        let r = g
            .path_of(ino.0)
            .and_then(|p| std::fs::read_link(g.abs(&p)).map_err(errno));
        match r {
            Ok(t) => reply.data(t.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let mut g = self.lock();
        let r = g
            .create(parent.0, name, mode & !umask & 0o7777, libc::O_EXCL)
            .map(|(attr, fh)| {
                // mknod does not open: close again what `create` opened.
                if let Some(Handle::File { ino, .. }) = g.handles.remove(&fh)
                    && let Some(n) = g.nodes.get_mut(&ino)
                {
                    n.open -= 1;
                }
                attr
            });
        reply_entry(reply, r);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut g = self.lock();
        let r = g.child(parent.0, name).and_then(|rel| {
            std::fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(g.abs(&rel))
                .map_err(errno)?;
            g.detach(&rel);
            g.entry(&rel)
        });
        reply_entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut g = self.lock();
        if parent.0 == ROOT && name == CONTROL_NAME {
            return reply.error(Errno::EPERM);
        }
        let r = g.child(parent.0, name).and_then(|rel| {
            std::fs::remove_file(g.abs(&rel)).map_err(errno)?;
            g.detach(&rel);
            Ok(())
        });
        reply_empty(reply, r);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut g = self.lock();
        let r = g.child(parent.0, name).and_then(|rel| {
            std::fs::remove_dir(g.abs(&rel)).map_err(errno)?;
            g.detach_tree(&rel);
            Ok(())
        });
        reply_empty(reply, r);
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut g = self.lock();
        let r = g.child(parent.0, link_name).and_then(|rel| {
            std::os::unix::fs::symlink(target, g.abs(&rel)).map_err(errno)?;
            g.detach(&rel);
            g.entry(&rel)
        });
        reply_entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let control = |p: INodeNo, n: &OsStr| p.0 == ROOT && n == CONTROL_NAME;
        if control(parent, name) || control(newparent, newname) {
            return reply.error(Errno::EPERM);
        }
        let r = self
            .lock()
            .rename((parent.0, name), (newparent.0, newname), flags);
        reply_empty(reply, r);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // One path per inode keeps the bookkeeping simple; fjall makes no hard links.
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut g = self.lock();
        if ino.0 == CONTROL {
            let fh = g.new_fh(Handle::Control);
            return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
        }
        let r = (|| {
            let rel = g.path_of(ino.0)?;
            let read_only = flags.0 & libc::O_ACCMODE == libc::O_RDONLY;
            let file = open_backing(&g.abs(&rel), read_only).map_err(errno)?;
            if flags.0 & libc::O_TRUNC != 0 {
                Inner::pending_mut(&mut g.nodes, ino.0, &file)?.truncate(0);
            }
            if let Some(n) = g.nodes.get_mut(&ino.0) {
                n.open += 1;
            }
            Ok(g.new_fh(Handle::File { ino: ino.0, file }))
        })();
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let g = self.lock();
        let r = match g.handles.get(&fh.0) {
            Some(Handle::Control) => {
                let report = g.report().into_bytes();
                let from = (offset as usize).min(report.len());
                let to = from.saturating_add(size as usize).min(report.len());
                Ok(report[from..to].to_vec())
            }
            Some(Handle::File { file, .. }) => {
                match g.nodes.get(&ino.0).and_then(|n| n.pending.as_ref()) {
                    Some(p) => p.read(file, offset, size as usize).map_err(errno),
                    None => {
                        let mut buf = vec![0u8; size as usize];
                        read_full_at(file, &mut buf, offset)
                            .map(|n| {
                                buf.truncate(n);
                                buf
                            })
                            .map_err(errno)
                    }
                }
            }
            _ => Err(Errno::EBADF),
        };
        match r {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut g = self.lock();
        let inner = &mut *g;
        let r = match inner.handles.get(&fh.0) {
            Some(Handle::Control) => None,
            Some(Handle::File { file, .. }) => Some(
                Inner::pending_mut(&mut inner.nodes, ino.0, file)
                    .and_then(|p| p.write(file, offset, data).map_err(errno)),
            ),
            None | Some(Handle::Dir { .. }) => Some(Err(Errno::EBADF)),
        };
        let r = match r {
            None => inner.command(data),
            Some(Ok(())) if flags.0 & (libc::O_SYNC | libc::O_DSYNC) != 0 => {
                inner.apply(ino.0, Some(fh.0), true)
            }
            Some(r) => r,
        };
        match r {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut g = self.lock();
        if let Some(Handle::File { ino, .. }) = g.handles.remove(&fh.0)
            && let Some(n) = g.nodes.get_mut(&ino)
        {
            n.open = n.open.saturating_sub(1);
            if n.open == 0 && n.path.is_none() {
                g.nodes.remove(&ino);
            }
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        if ino.0 == CONTROL {
            return reply.ok();
        }
        let r = self.lock().apply(ino.0, Some(fh.0), datasync);
        reply_empty(reply, r);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.lock().opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let g = self.lock();
        let Some(Handle::Dir { entries }) = g.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut g = self.lock();
        let r = g.path_of(ino.0).and_then(|dir| {
            // The entries of this directory are durable now, the files created in it too.
            for n in g.nodes.values_mut() {
                if n.path.as_deref().and_then(Path::parent) == Some(dir.as_path()) {
                    n.unsynced_create = false;
                }
            }
            if g.fsync_backing {
                File::open(g.abs(&dir))
                    .and_then(|d| d.sync_all())
                    .map_err(errno)?;
            }
            Ok(())
        });
        reply_empty(reply, r);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let backing = self.lock().backing.clone();
        match nix::sys::statvfs::statvfs(&backing) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        let g = self.lock();
        if ino.0 == CONTROL || g.nodes.contains_key(&ino.0) {
            reply.ok();
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if parent.0 == ROOT && name == CONTROL_NAME {
            return reply.error(Errno::EEXIST);
        }
        match self
            .lock()
            .create(parent.0, name, mode & !umask & 0o7777, flags)
        {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Plain allocation only changes the size (which stays pending like a truncate);
        // KEEP_SIZE changes nothing visible. Punching holes, zeroing or collapsing ranges is
        // refused rather than half done.
        let r = match mode {
            0 => {
                let mut g = self.lock();
                let inner = &mut *g;
                let abs = inner.abs_of(ino.0);
                match file_of(&inner.handles, ino.0, Some(fh.0), abs) {
                    Ok(file) => Inner::pending_mut(&mut inner.nodes, ino.0, &file).map(|p| {
                        let end = offset.saturating_add(length);
                        if end > p.size() {
                            p.truncate(end);
                        }
                    }),
                    Err(e) => Err(e),
                }
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(Errno::from_i32(libc::EOPNOTSUPP)),
        };
        reply_empty(reply, r);
    }
}
