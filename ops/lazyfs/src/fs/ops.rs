//! The FUSE callbacks (`impl Filesystem for LazyFs`): each takes the state's lock, does its
//! work through [`Inner`] or on the backing directory, and answers the kernel with an errno
//! on failure; what is refused is listed in the module docs of `fs`.

use crate::cache::read_full_at;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use nix::libc;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{CONTROL, CONTROL_NAME, Handle, Inner, LazyFs, ROOT, Res, TTL, errno, open_backing};

/// The backing file of `ino`: the handle's, another open handle's, or opened by its backing
/// path `abs`.
pub(super) fn file_of(
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
pub(super) enum FileRef<'a> {
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
