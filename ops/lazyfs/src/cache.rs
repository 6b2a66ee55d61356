//! The not-yet-fsync'd state of one regular file: what the application has written (and
//! truncated) since the file's last fsync, kept in memory over the unchanged backing file.
//!
//! The model is the one of a page cache with no writeback at all:
//! - the backing file holds exactly the file's content as of its last fsync;
//! - [`Pending`] holds the dirty pages (whole 4 KiB pages, read from the backing file when a
//!   write covers only part of one), the file's current size, and how much of the backing
//!   file is still valid after truncates;
//! - a read is served from the dirty pages where there are some, else from the valid part of
//!   the backing file, else zeros (a hole, or the space between a truncate and a later
//!   extension);
//! - [`Pending::apply`] writes it all to the backing file (fsync), after which the pending
//!   state is empty; dropping a [`Pending`] is a power loss for that file.
//!
//! Invariants: `valid <= size` once anything was truncated below the old size, and every byte
//! of a dirty page at or past `size` is zero, so growing a file again never resurrects data.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The page size of the cache, in bytes.
pub const PAGE: u64 = 4096;

/// What one file's writers did since its last fsync.
#[derive(Debug)]
pub struct Pending {
    /// The backing file's length when this state began (the fsync'd size).
    base: u64,
    /// Bytes of the backing file below this offset still belong to the file; truncates lower
    /// it, so data cut off and later re-extended reads as zeros.
    valid: u64,
    /// The file's size as the application sees it.
    size: u64,
    /// Dirty pages by page index, each exactly [`PAGE`] bytes.
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Pending {
    /// An empty pending state over a backing file of `backing_len` bytes.
    pub fn new(backing_len: u64) -> Pending {
        Pending {
            base: backing_len,
            valid: backing_len,
            size: backing_len,
            pages: BTreeMap::new(),
        }
    }

    /// The file's size as the application sees it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many dirty pages are held.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// Whether there is nothing to apply (no dirty page, size and content as on the backing
    /// file).
    pub fn is_clean(&self) -> bool {
        self.pages.is_empty() && self.valid == self.base && self.size == self.base
    }

    /// Reads page `index` as the backing file holds it (zeros past the valid part).
    fn load(&self, backing: &File, index: u64) -> io::Result<Box<[u8]>> {
        let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
        let start = index * PAGE;
        if start < self.valid {
            let n = (self.valid - start).min(PAGE) as usize;
            read_full_at(backing, &mut page[..n], start)?;
        }
        Ok(page)
    }

    /// Records a write of `data` at `offset` (nothing reaches the backing file).
    pub fn write(&mut self, backing: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(nix::libc::EFBIG))?;
        let mut pos = offset;
        while pos < end {
            let index = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = (PAGE as usize - in_page).min((end - pos) as usize);
            let mut page = match self.pages.remove(&index) {
                Some(p) => p,
                None if in_page == 0 && n == PAGE as usize => {
                    vec![0u8; PAGE as usize].into_boxed_slice()
                }
                None => self.load(backing, index)?,
            };
            let from = (pos - offset) as usize;
            page[in_page..in_page + n].copy_from_slice(&data[from..from + n]);
            self.pages.insert(index, page);
            pos += n as u64;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Records a truncate (or extension) to `new_size`.
    pub fn truncate(&mut self, new_size: u64) {
        if new_size < self.size {
            let first_gone = new_size.div_ceil(PAGE);
            self.pages.retain(|&i, _| i < first_gone);
            let tail = (new_size % PAGE) as usize;
            if tail != 0
                && let Some(p) = self.pages.get_mut(&(new_size / PAGE))
            {
                p[tail..].fill(0);
            }
            self.valid = self.valid.min(new_size);
        }
        self.size = new_size;
    }

    /// Reads up to `len` bytes at `offset` as the application sees the file now.
    pub fn read(&self, backing: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        if offset >= self.size {
            return Ok(Vec::new());
        }
        let end = self.size.min(offset.saturating_add(len as u64));
        let mut out = vec![0u8; (end - offset) as usize];
        let mut pos = offset;
        while pos < end {
            let index = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = (PAGE as usize - in_page).min((end - pos) as usize);
            let at = (pos - offset) as usize;
            match self.pages.get(&index) {
                Some(p) => out[at..at + n].copy_from_slice(&p[in_page..in_page + n]),
                None if pos < self.valid => {
                    let m = (self.valid - pos).min(n as u64) as usize;
                    read_full_at(backing, &mut out[at..at + m], pos)?;
                }
                None => {}
            }
            pos += n as u64;
        }
        Ok(out)
    }

    /// Writes everything to the backing file (which must be open for writing), as fsync
    /// would. Afterwards the backing file holds the file as the application sees it; the
    /// caller drops this state. On an error the state is kept, so nothing is lost twice.
    pub fn apply(&self, backing: &File) -> io::Result<()> {
        if self.valid < self.base {
            backing.set_len(self.valid)?;
        }
        for (&index, page) in &self.pages {
            let start = index * PAGE;
            if start >= self.size {
                continue;
            }
            let n = (self.size - start).min(PAGE) as usize;
            backing.write_all_at(&page[..n], start)?;
        }
        if backing.metadata()?.len() != self.size {
            backing.set_len(self.size)?;
        }
        Ok(())
    }
}

/// Reads into all of `buf` from `offset`, stopping early only at the end of the file (the
/// rest of `buf` is left as it was). Returns the bytes read.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn backing(content: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(content).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(t.path())
            .unwrap();
        (t, f)
    }

    fn on_disk(t: &tempfile::NamedTempFile) -> Vec<u8> {
        std::fs::read(t.path()).unwrap()
    }

    #[test]
    fn writes_stay_in_memory_until_applied() {
        let (t, f) = backing(b"hello world");
        let mut p = Pending::new(11);
        p.write(&f, 6, b"WORLD, and more").unwrap();
        assert_eq!(p.read(&f, 0, 100).unwrap(), b"hello WORLD, and more");
        assert_eq!(
            on_disk(&t),
            b"hello world",
            "nothing reached the backing file"
        );
        p.apply(&f).unwrap();
        assert_eq!(on_disk(&t), b"hello WORLD, and more");
    }

    #[test]
    fn writes_across_pages_and_holes() {
        let (t, f) = backing(b"");
        let mut p = Pending::new(0);
        let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        p.write(&f, 5000, &big).unwrap();
        assert_eq!(p.size(), 15_000);
        let all = p.read(&f, 0, 20_000).unwrap();
        assert_eq!(all.len(), 15_000);
        assert!(all[..5000].iter().all(|b| *b == 0));
        assert_eq!(&all[5000..], &big[..]);
        p.apply(&f).unwrap();
        assert_eq!(on_disk(&t), all);
    }

    #[test]
    fn truncate_then_extend_reads_zeros_and_is_applied_in_order() {
        let (t, f) = backing(&[7u8; 9000]);
        let mut p = Pending::new(9000);
        p.truncate(100);
        assert_eq!(p.read(&f, 0, 10_000).unwrap(), vec![7u8; 100]);
        p.truncate(9000);
        let r = p.read(&f, 0, 10_000).unwrap();
        assert_eq!(&r[..100], &[7u8; 100]);
        assert!(
            r[100..].iter().all(|b| *b == 0),
            "cut data must not come back"
        );
        p.write(&f, 50, b"xy").unwrap();
        assert_eq!(on_disk(&t), vec![7u8; 9000]);
        p.apply(&f).unwrap();
        let d = on_disk(&t);
        assert_eq!(d.len(), 9000);
        assert_eq!(&d[50..52], b"xy");
        assert!(d[100..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_truncated_dirty_page_keeps_no_stale_tail() {
        let (_t, f) = backing(b"");
        let mut p = Pending::new(0);
        p.write(&f, 0, &[9u8; 3000]).unwrap();
        p.truncate(10);
        p.truncate(3000);
        let r = p.read(&f, 0, 3000).unwrap();
        assert_eq!(&r[..10], &[9u8; 10]);
        assert!(r[10..].iter().all(|b| *b == 0));
    }

    #[test]
    fn clean_state_is_recognised() {
        let (_t, f) = backing(b"abc");
        let mut p = Pending::new(3);
        assert!(p.is_clean());
        p.truncate(3);
        assert!(p.is_clean());
        p.write(&f, 0, b"x").unwrap();
        assert!(!p.is_clean());
    }
}
