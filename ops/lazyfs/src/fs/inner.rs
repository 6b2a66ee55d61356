//! The state behind the mount ([`Inner`]): inode numbers of backing paths, open handles, the
//! pending writes of each file, and the operations on them that the FUSE callbacks share
//! (attributes, applying a file's pending state on fsync, `clear-cache`, `sync`, the control
//! file's commands, setattr, rename, create, opendir).

use crate::cache::Pending;
use fuser::{Errno, FileAttr, FileType, INodeNo, RenameFlags, TimeOrNow};
use nix::libc;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::ops::{FileRef, file_of};
use super::{CONTROL, Handle, Inner, Node, ROOT, Res, attr_of, errno, open_backing};

impl Inner {
    pub(super) fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.backing.clone()
        } else {
            self.backing.join(rel)
        }
    }

    pub(super) fn path_of(&self, ino: u64) -> Res<PathBuf> {
        self.nodes
            .get(&ino)
            .and_then(|n| n.path.clone())
            .ok_or(Errno::ENOENT)
    }

    pub(super) fn child(&self, parent: u64, name: &OsStr) -> Res<PathBuf> {
        if name.as_bytes().contains(&b'/') || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        Ok(self.path_of(parent)?.join(name))
    }

    pub(super) fn ino_for(&mut self, rel: &Path) -> u64 {
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
    pub(super) fn detach(&mut self, rel: &Path) {
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
    pub(super) fn detach_tree(&mut self, rel: &Path) {
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

    pub(super) fn new_fh(&mut self, h: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        fh
    }

    /// The backing path of `ino`, while it has one.
    pub(super) fn abs_of(&self, ino: u64) -> Option<PathBuf> {
        self.nodes
            .get(&ino)
            .and_then(|n| n.path.as_deref())
            .map(|p| self.abs(p))
    }

    pub(super) fn control_attr(&self) -> FileAttr {
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

    pub(super) fn attr(&self, ino: u64, fh: Option<u64>) -> Res<FileAttr> {
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
    pub(super) fn entry(&mut self, rel: &Path) -> Res<FileAttr> {
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
    pub(super) fn pending_mut<'a>(
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
    pub(super) fn apply(&mut self, ino: u64, fh: Option<u64>, datasync: bool) -> Res<()> {
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
    pub(super) fn clear_cache(&mut self) {
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
    pub(super) fn sync_all(&mut self) -> Res<()> {
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

    pub(super) fn report(&self) -> String {
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

    pub(super) fn command(&mut self, data: &[u8]) -> Res<()> {
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

    pub(super) fn setattr(
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

    pub(super) fn rename(
        &mut self,
        from: (u64, &OsStr),
        to: (u64, &OsStr),
        flags: RenameFlags,
    ) -> Res<()> {
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

    pub(super) fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Res<(FileAttr, u64)> {
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

    pub(super) fn opendir(&mut self, ino: u64) -> Res<u64> {
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
