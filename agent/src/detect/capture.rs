//! `capture`: writes the reads a recording [`Root`](super::Root) saw into a directory
//! that `detect --root` reads back to the same inventory.
//!
//! Representation (what a fixture tree looks like):
//! - a file read is written with the bytes detection read, at the path it has once every
//!   symlink on the way is resolved;
//! - symlinks under `/sys` and `/dev` are recreated as symlinks with the same (relative)
//!   target text, so `sys/class/net/eth0 -> ../../devices/pci0000:00/.../net/eth0` works
//!   inside the tree; the target exists in the tree only if detection read something below it;
//! - under `/proc` nothing is a symlink: `/proc/net/route` (really `/proc/self/net/route`) is
//!   written as `proc/net/route`;
//! - a directory listing recreates its subdirectories (empty unless read) and symlinks; plain
//!   files of a listed directory are written only if detection read them.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::root::{Access, EntryKind};

/// Errors writing a captured tree.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot write {path} in the capture")]
    Write {
        path: PathBuf,
        #[source]
        err: io::Error,
    },
    #[error("cannot resolve {path} on this machine")]
    Resolve {
        path: PathBuf,
        #[source]
        err: io::Error,
    },
    #[error("too many levels of symbolic links resolving {path}")]
    Loop { path: PathBuf },
}

/// Counts of what a capture wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub files: usize,
    pub links: usize,
    pub dirs: usize,
}

/// Writes `record` (live path → what was read) below `out`.
pub fn write_tree(
    out: &Path,
    record: &BTreeMap<PathBuf, Access>,
) -> Result<CaptureStats, CaptureError> {
    let mut w = Writer {
        out,
        stats: CaptureStats::default(),
    };
    // Listings first (placeholders), then links, then files (which overwrite nothing else).
    for (path, access) in record {
        if let Access::Dir(entries) = access {
            let dir = w.resolve(path, 0)?;
            w.mkdir(&dir)?;
            for (name, kind) in entries {
                let live = dir.join(name);
                match kind {
                    EntryKind::Dir => w.mkdir(&live)?,
                    EntryKind::Symlink(target) if keeps_links(&live) => w.symlink(&live, target)?,
                    _ => {}
                }
            }
        }
    }
    for (path, access) in record {
        if let Access::Link(target) = access {
            let parent = path.parent().unwrap_or(Path::new("/"));
            let dir = w.resolve(parent, 0)?;
            let name = path.file_name().unwrap_or_default();
            w.mkdir(&dir)?;
            let live = dir.join(name);
            if keeps_links(&live) {
                w.symlink(&live, target)?;
            }
        }
    }
    for (path, access) in record {
        if let Access::File(bytes) = access {
            let resolved = w.resolve(path, 0)?;
            if let Some(parent) = resolved.parent() {
                w.mkdir(parent)?;
            }
            let host = w.host(&resolved);
            fs::write(&host, bytes).map_err(|err| CaptureError::Write { path: host, err })?;
            w.stats.files += 1;
        }
    }
    Ok(w.stats)
}

/// Symlinks are kept under `/sys` and `/dev`; `/proc`'s (`self`, `net`) are flattened.
fn keeps_links(live: &Path) -> bool {
    !live.starts_with("/proc")
}

struct Writer<'a> {
    out: &'a Path,
    stats: CaptureStats,
}

impl Writer<'_> {
    fn host(&self, live: &Path) -> PathBuf {
        self.out.join(live.strip_prefix("/").unwrap_or(live))
    }

    fn mkdir(&mut self, live: &Path) -> Result<(), CaptureError> {
        let host = self.host(live);
        if host.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(&host).map_err(|err| CaptureError::Write { path: host, err })?;
        self.stats.dirs += 1;
        Ok(())
    }

    fn symlink(&mut self, live: &Path, target: &Path) -> Result<(), CaptureError> {
        let host = self.host(live);
        if fs::symlink_metadata(&host).is_ok() {
            return Ok(());
        }
        if let Some(parent) = live.parent() {
            self.mkdir(parent)?;
        }
        std::os::unix::fs::symlink(target, &host)
            .map_err(|err| CaptureError::Write { path: host, err })?;
        self.stats.links += 1;
        Ok(())
    }

    /// The live path with every symlink resolved (outside `/proc`), recreating the symlinks
    /// met on the way in the capture.
    fn resolve(&mut self, path: &Path, depth: usize) -> Result<PathBuf, CaptureError> {
        if depth > 40 {
            return Err(CaptureError::Loop { path: path.into() });
        }
        let mut cur = PathBuf::from("/");
        for comp in path.components() {
            let name = match comp {
                Component::Normal(n) => n,
                Component::ParentDir => {
                    cur.pop();
                    continue;
                }
                _ => continue,
            };
            let next = cur.join(name);
            if !keeps_links(&next) {
                cur = next;
                continue;
            }
            match fs::symlink_metadata(&next) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = fs::read_link(&next).map_err(|err| CaptureError::Resolve {
                        path: next.clone(),
                        err,
                    })?;
                    self.symlink(&next, &target)?;
                    let joined = if target.is_absolute() {
                        target
                    } else {
                        cur.join(target)
                    };
                    cur = self.resolve(&normalize(&joined), depth + 1)?;
                }
                _ => cur = next,
            }
        }
        Ok(cur)
    }
}

/// `a/b/../c` → `a/c`, without touching the file system (the prefix is already resolved).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for comp in path.components() {
        match comp {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_dot_dot() {
        assert_eq!(
            normalize(Path::new("/sys/class/net/../../devices/x")),
            PathBuf::from("/sys/devices/x")
        );
    }
}
