//! The target tree on the agent's side: writing entries (content verified against its hash,
//! then owner, mode, xattrs, times, then an atomic rename into place) and walking what is
//! there (for upgrades and `verify`).
//!
//! Every path is joined under the target root from a validated manifest path, and parents are
//! created as real directories before their children, so nothing is written through a symlink.
//! A new entry is made under a temporary name in its directory (`.rdeploy.<pid>.<n>`) and
//! renamed over the old one: an interrupted run leaves either the old or the new entry, plus
//! temporary files the next run deletes. A file is created readable by its owner only and gets
//! its mode once its content and owner are right, so a secret being written is never readable
//! by others on a running host.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use rdeploy_configure::tree_wire::{hex, unhex, Entry, EntryKind};
use sha2::{Digest, Sha256};

/// Where entries are written.
#[derive(Debug)]
pub struct Target {
    /// The root (`/chroot`, `/`, a test directory).
    pub root: PathBuf,
    /// Whether owners can be set (running as root).
    pub as_root: bool,
    /// A fresh install: a file whose path is free is written in place (no temporary name,
    /// no rename); one in the way is still replaced atomically.
    pub fresh: bool,
    counter: AtomicU64,
    pid: u32,
}

/// Prefix of temporary names (`.rdeploy.<pid>.<n>`); a walk treats them as leftovers.
pub const TMP_PREFIX: &str = ".rdeploy.";

impl Target {
    /// A target rooted at `root`.
    pub fn new(root: &Path) -> Target {
        Target {
            root: root.to_owned(),
            as_root: rustix::process::geteuid().is_root(),
            fresh: false,
            counter: AtomicU64::new(0),
            pid: std::process::id(),
        }
    }

    /// A target for a fresh install (see [`Target::fresh`]).
    pub fn fresh(root: &Path) -> Target {
        Target {
            fresh: true,
            ..Target::new(root)
        }
    }

    /// The path of a tree-relative path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn tmp_for(&self, rel: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("{TMP_PREFIX}{}.{n}", self.pid);
        match rel.rsplit_once('/') {
            Some((dir, _)) => self.root.join(dir).join(name),
            None => self.root.join(name),
        }
    }

    /// Makes sure a directory exists at `rel` (replacing anything else there); a new one is
    /// private (0700) until [`Target::finish_dir`] sets its mode.
    pub fn ensure_dir(&self, rel: &str) -> Result<()> {
        let path = self.path(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => remove(&path)?,
            Err(_) => {}
        }
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))
    }

    /// Sets a directory's owner, mode, xattrs and times (after its contents are in place).
    pub fn finish_dir(&self, e: &Entry) -> Result<()> {
        let path = self.path(&e.path);
        self.set_meta(&path, e, true)
    }

    /// Writes a regular file from `content` (exactly `e.size` bytes), checking its sha256,
    /// then renames it into place. Returns the bytes read.
    pub fn write_file(&self, e: &Entry, content: &mut dyn Read) -> Result<u64> {
        if self.fresh {
            let path = self.path(&e.path);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => {
                    let r = self.write_open(f, &path, e, content);
                    if r.is_err() {
                        let _ = std::fs::remove_file(&path);
                    }
                    return r.map(|()| e.size);
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot create {}", path.display()))
                }
            }
        }
        let tmp = self.tmp_for(&e.path);
        let r = self.write_tmp(&tmp, e, content);
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r?;
        self.replace(&tmp, &e.path)?;
        Ok(e.size)
    }

    fn write_tmp(&self, tmp: &Path, e: &Entry, content: &mut dyn Read) -> Result<()> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        self.write_open(f, tmp, e, content)
    }

    /// Writes `e`'s content from `content` into the new file `f` (at `tmp`), checks it, sets
    /// the metadata.
    fn write_open(
        &self,
        mut f: std::fs::File,
        tmp: &Path,
        e: &Entry,
        content: &mut dyn Read,
    ) -> Result<()> {
        let mut h = Sha256::new();
        let mut holes = false;
        let mut left = e.size;
        let mut buf = vec![0u8; (e.size.min(256 * 1024) as usize).max(1)];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
            let n = content
                .read(&mut buf[..want])
                .with_context(|| format!("{}: reading its content from the server", e.path))?;
            anyhow::ensure!(
                n > 0,
                "{}: the server's data ended {left} bytes short",
                e.path
            );
            h.update(&buf[..n]);
            holes |= write_sparse(&mut f, &buf[..n])
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            left -= n as u64;
        }
        if holes {
            f.set_len(e.size)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        let got = hex(&h.finalize());
        let want = e.sha256.as_deref().unwrap_or("");
        anyhow::ensure!(
            got == want,
            "{}: content does not match the manifest (sha256 {got}, expected {want})",
            e.path
        );
        self.set_file_meta(&f, tmp, e)
    }

    /// Owner, mode, xattrs and times of a regular file through its open descriptor (no path
    /// lookups).
    fn set_file_meta(&self, f: &std::fs::File, path: &Path, e: &Entry) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        if self.as_root {
            std::os::unix::fs::fchown(f, Some(e.uid), Some(e.gid))
                .with_context(|| format!("cannot chown {}", path.display()))?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(e.mode))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
        for (name, value) in &e.xattrs {
            let Some(v) = unhex(value) else { continue };
            if let Err(err) =
                rustix::fs::fsetxattr(f, name.as_str(), &v, rustix::fs::XattrFlags::empty())
            {
                tracing::warn!(path = %path.display(), xattr = %name, error = %err, "extended attribute not set");
            }
        }
        let t = std::time::UNIX_EPOCH
            .checked_add(std::time::Duration::new(
                u64::try_from(e.mtime).unwrap_or(0),
                e.mtime_ns.min(999_999_999),
            ))
            .unwrap_or(std::time::UNIX_EPOCH);
        let times = std::fs::FileTimes::new().set_accessed(t).set_modified(t);
        if e.mtime >= 0 {
            f.set_times(times)
                .with_context(|| format!("cannot set the times of {}", path.display()))
        } else {
            set_mtime(path, e)
        }
    }

    /// Creates a symlink, device or fifo under a temporary name and renames it into place.
    pub fn write_special(&self, e: &Entry) -> Result<()> {
        let tmp = self.tmp_for(&e.path);
        let r = (|| -> Result<()> {
            match e.kind {
                EntryKind::Symlink => {
                    let t = e.target.as_deref().unwrap_or("");
                    std::os::unix::fs::symlink(t, &tmp)
                        .with_context(|| format!("cannot create symlink {}", tmp.display()))?;
                }
                EntryKind::Char | EntryKind::Block | EntryKind::Fifo => {
                    use rustix::fs::FileType;
                    let ft = match e.kind {
                        EntryKind::Char => FileType::CharacterDevice,
                        EntryKind::Block => FileType::BlockDevice,
                        _ => FileType::Fifo,
                    };
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &tmp,
                        ft,
                        rustix::fs::Mode::from_raw_mode(e.mode),
                        e.rdev.unwrap_or(0),
                    )
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                }
                other => anyhow::bail!("{}: {other:?} is not a special entry", e.path),
            }
            self.set_meta(&tmp, e, false)
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r?;
        self.replace(&tmp, &e.path)
    }

    /// Makes `e.path` a hard link to `e.target`.
    pub fn write_hardlink(&self, e: &Entry) -> Result<()> {
        let target = self.path(e.target.as_deref().unwrap_or(""));
        let tmp = self.tmp_for(&e.path);
        std::fs::hard_link(&target, &tmp)
            .with_context(|| format!("cannot link {} to {}", tmp.display(), target.display()))?;
        self.replace(&tmp, &e.path)
    }

    /// Renames `tmp` over `rel`; a directory in the way is removed first.
    fn replace(&self, tmp: &Path, rel: &str) -> Result<()> {
        let path = self.path(rel);
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            if m.is_dir() {
                remove(&path)?;
            }
        }
        std::fs::rename(tmp, &path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    }

    /// Owner, mode, xattrs, times of `path` as `e` says (not following a symlink).
    pub fn set_meta(&self, path: &Path, e: &Entry, skip_xattrs_if_same: bool) -> Result<()> {
        let link = e.kind == EntryKind::Symlink;
        if self.as_root {
            std::os::unix::fs::lchown(path, Some(e.uid), Some(e.gid))
                .with_context(|| format!("cannot chown {}", path.display()))?;
        }
        if !link {
            // After chown, which clears setuid bits.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode))
                .with_context(|| format!("cannot chmod {}", path.display()))?;
        }
        if !(skip_xattrs_if_same && e.xattrs.is_empty()) {
            for (name, value) in &e.xattrs {
                let Some(v) = unhex(value) else { continue };
                if let Err(err) =
                    rustix::fs::lsetxattr(path, name.as_str(), &v, rustix::fs::XattrFlags::empty())
                {
                    tracing::warn!(path = %path.display(), xattr = %name, error = %err, "extended attribute not set");
                }
            }
        }
        set_mtime(path, e)
    }

    /// Removes `rel` (a directory with its contents).
    pub fn remove(&self, rel: &str) -> Result<()> {
        remove(&self.path(rel))
    }
}

/// Size of the zero blocks left as holes (rsync's `--sparse`).
const SPARSE_BLOCK: usize = 4096;

/// Writes `data`, seeking over whole blocks of zeros instead of writing them; returns
/// whether it seeked (the caller then sets the file's length, in case it ends in a hole).
fn write_sparse(f: &mut std::fs::File, data: &[u8]) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    // Runs of data blocks are written with one call; runs of zero blocks are one seek.
    let mut holes = false;
    let mut run_start = 0;
    let mut zeros = 0usize;
    for (i, block) in data.chunks(SPARSE_BLOCK).enumerate() {
        let at = i * SPARSE_BLOCK;
        if block.len() == SPARSE_BLOCK && block.iter().all(|&b| b == 0) {
            if zeros == 0 {
                f.write_all(&data[run_start..at])?;
            }
            zeros += SPARSE_BLOCK;
        } else if zeros > 0 {
            f.seek(SeekFrom::Current(zeros as i64))?;
            holes = true;
            zeros = 0;
            run_start = at;
        }
    }
    if zeros > 0 {
        f.seek(SeekFrom::Current(zeros as i64))?;
        holes = true;
    } else {
        f.write_all(&data[run_start..])?;
    }
    Ok(holes)
}

/// Sets a path's access and modification times to `e.mtime` (not following a symlink).
pub fn set_mtime(path: &Path, e: &Entry) -> Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: e.mtime,
        tv_nsec: e.mtime_ns.into(),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("cannot set the times of {}", path.display()))
}

fn remove(path: &Path) -> Result<()> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
    };
    if m.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
    .with_context(|| format!("cannot remove {}", path.display()))
}

/// What is at a path of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// Its kind (`File` for every regular file, whatever its link count).
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub dev: u64,
    pub ino: u64,
    pub rdev: u64,
    /// Symlink text.
    pub target: Option<String>,
}

impl Local {
    /// Reads what is at `path` (not following a symlink); `None` for a socket.
    pub fn stat(path: &Path) -> std::io::Result<Option<Local>> {
        let m = std::fs::symlink_metadata(path)?;
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_char_device() {
            EntryKind::Char
        } else if ft.is_block_device() {
            EntryKind::Block
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            return Ok(None);
        };
        let target = if kind == EntryKind::Symlink {
            Some(std::fs::read_link(path)?.to_string_lossy().into_owned())
        } else {
            None
        };
        Ok(Some(Local {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_ns: u32::try_from(m.mtime_nsec()).unwrap_or(0),
            dev: m.dev(),
            ino: m.ino(),
            rdev: m.rdev(),
            target,
        }))
    }
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every entry not skipped.
    pub entries: BTreeMap<String, Local>,
    /// Directories holding something skipped (at any depth): they cannot be deleted.
    pub holders: std::collections::HashSet<String>,
}

/// Walks `root`, not following symlinks and not descending into directories `skip` says to
/// leave alone (`skip(path, is_dir)` is also asked for every entry, which is then left out).
/// Names that are not UTF-8 are reported by their lossy form.
pub fn scan(root: &Path, skip: &dyn Fn(&str, bool) -> bool) -> Result<Scan> {
    let mut out = Scan::default();
    scan_dir(root, "", skip, &mut out)?;
    Ok(out)
}

/// Returns whether `dir` holds something skipped.
fn scan_dir(
    dir: &Path,
    rel: &str,
    skip: &dyn Fn(&str, bool) -> bool,
    out: &mut Scan,
) -> Result<bool> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !rel.is_empty() => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut held = false;
    for entry in rd {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel_path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        let Some(l) =
            Local::stat(&path).with_context(|| format!("cannot stat {}", path.display()))?
        else {
            continue;
        };
        let is_dir = l.kind == EntryKind::Dir;
        if skip(&rel_path, is_dir) {
            held = true;
            continue;
        }
        out.entries.insert(rel_path.clone(), l);
        if is_dir && scan_dir(&path, &rel_path, skip, out)? {
            out.holders.insert(rel_path);
            held = true;
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o640,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            size: content.len() as u64,
            mtime: 1_600_000_000,
            mtime_ns: 123,
            sha256: Some(hex(&Sha256::digest(content))),
            target: None,
            rdev: None,
            xattrs: BTreeMap::new(),
        }
    }

    #[test]
    fn a_file_lands_with_its_metadata_or_not_at_all() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let t = Target::new(tmp.path());
        let e = file("a", b"hello");
        t.write_file(&e, &mut &b"hello"[..])?;
        let l = Local::stat(&tmp.path().join("a"))?.context("missing")?;
        assert_eq!(
            (l.mode, l.size, l.mtime, l.mtime_ns),
            (0o640, 5, 1_600_000_000, 123)
        );
        // Wrong content: refused, the old file kept, no temporary file left.
        let bad = file("a", b"world");
        let err = t.write_file(&bad, &mut &b"xorld"[..]).err();
        assert!(err.is_some_and(|e| e.to_string().contains("does not match")));
        assert_eq!(std::fs::read(tmp.path().join("a"))?, b"hello");
        // Zeros become holes; the content reads back the same.
        let mut sparse = vec![0u8; 64 * 1024];
        sparse[0] = 1;
        let mut big = file("big", b"");
        big.size = sparse.len() as u64;
        big.sha256 = Some(hex(&Sha256::digest(&sparse)));
        t.write_file(&big, &mut &sparse[..])?;
        assert_eq!(std::fs::read(tmp.path().join("big"))?, sparse);
        let blocks =
            std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(tmp.path().join("big"))?);
        assert!(blocks * 512 < 64 * 1024, "{blocks} blocks: not sparse");
        std::fs::remove_file(tmp.path().join("big"))?;
        // Short content: refused.
        assert!(t.write_file(&bad, &mut &b"wor"[..]).is_err());
        let names: Vec<String> = std::fs::read_dir(tmp.path())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a"]);
        Ok(())
    }
}
