//! Role trees on the server's disk: walking `install/<version>/<role>/` without following
//! symlinks, hashing regular files (in parallel), and the manifest cache.
//!
//! A tree's manifest is computed once and kept in memory. Every manifest request walks the
//! tree again with `lstat` only (tens of milliseconds for 20,000 entries); when every entry's
//! stat (inode, size, mtime, ctime, mode, owner) and xattrs are what they were, the cached
//! manifest is answered. Otherwise only the files whose stat changed are hashed again.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub use rdeploy_configure::tree_wire::open_nofollow;
use rdeploy_configure::tree_wire::{hash_file, hex, Entry, EntryKind, Manifest};
use sha2::{Digest, Sha256};

/// Why a tree cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A walk or read failed.
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    /// The tree does not exist.
    #[error("no tree at {0}")]
    Missing(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |err| TreeError::Io {
        path: path.to_owned(),
        err,
    }
}

/// What identifies a regular file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StatKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
}

impl StatKey {
    fn of(m: &std::fs::Metadata) -> StatKey {
        StatKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec(),
        }
    }
}

/// One entry as walked (before hashing).
#[derive(Debug, Clone, PartialEq)]
struct Walked {
    entry: Entry,
    key: StatKey,
}

/// Walks `root` (not following symlinks), parents before children, names sorted bytewise.
/// Names that are not UTF-8 are skipped with a warning (a manifest path is a string).
fn walk(root: &Path) -> Result<Vec<Walked>, TreeError> {
    let meta = std::fs::symlink_metadata(root).map_err(|_| TreeError::Missing(root.to_owned()))?;
    if !meta.is_dir() {
        return Err(TreeError::Missing(root.to_owned()));
    }
    let mut out = Vec::new();
    // Inodes of regular files with more than one link: the first path seen.
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    walk_dir(root, "", &mut out, &mut links)?;
    Ok(out)
}

fn walk_dir(
    dir: &Path,
    rel: &str,
    out: &mut Vec<Walked>,
    links: &mut HashMap<(u64, u64), String>,
) -> Result<(), TreeError> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let Some(n) = name.to_str() else {
            tracing::warn!(dir = %dir.display(), name = ?name, "a name that is not UTF-8 is left out of the manifest");
            continue;
        };
        let path = dir.join(&name);
        let rel_path = if rel.is_empty() {
            n.to_owned()
        } else {
            format!("{rel}/{n}")
        };
        let m = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let ft = m.file_type();
        let (kind, target, rdev) = if ft.is_dir() {
            (EntryKind::Dir, None, None)
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&path).map_err(io(&path))?;
            let Some(t) = t.to_str() else {
                tracing::warn!(path = %path.display(), "a symlink whose target is not UTF-8 is left out of the manifest");
                continue;
            };
            (EntryKind::Symlink, Some(t.to_owned()), None)
        } else if ft.is_file() {
            if m.nlink() > 1 {
                match links.get(&(m.dev(), m.ino())) {
                    Some(first) => (EntryKind::Hardlink, Some(first.clone()), None),
                    None => {
                        links.insert((m.dev(), m.ino()), rel_path.clone());
                        (EntryKind::File, None, None)
                    }
                }
            } else {
                (EntryKind::File, None, None)
            }
        } else if ft.is_char_device() {
            (EntryKind::Char, None, Some(m.rdev()))
        } else if ft.is_block_device() {
            (EntryKind::Block, None, Some(m.rdev()))
        } else if ft.is_fifo() {
            (EntryKind::Fifo, None, None)
        } else {
            tracing::warn!(path = %path.display(), "a socket is left out of the manifest");
            continue;
        };
        let entry = Entry {
            path: rel_path.clone(),
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: if kind == EntryKind::File { m.size() } else { 0 },
            mtime: m.mtime(),
            mtime_ns: u32::try_from(m.mtime_nsec()).unwrap_or(0),
            sha256: None,
            target,
            rdev,
            xattrs: read_xattrs(&path),
        };
        out.push(Walked {
            entry,
            key: StatKey::of(&m),
        });
        if kind == EntryKind::Dir {
            walk_dir(&path, &rel_path, out, links)?;
        }
    }
    Ok(())
}

/// The extended attributes of `path` (not following a symlink), values in hex; none where
/// the filesystem has none or does not support them.
fn read_xattrs(path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(len) = rustix::fs::llistxattr_query(path) else {
        return out;
    };
    if len == 0 {
        return out;
    }
    let mut names = vec![0u8; len];
    let Ok(len) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return out;
    };
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name_str) = std::str::from_utf8(name) else {
            continue;
        };
        let name_os = OsStr::from_bytes(name);
        let Ok(vlen) = rustix::fs::lgetxattr_query(path, name_os) else {
            continue;
        };
        let mut value = vec![0u8; vlen];
        if let Ok(vlen) = rustix::fs::lgetxattr(path, name_os, &mut value[..]) {
            out.insert(name_str.to_owned(), hex(&value[..vlen]));
        }
    }
    out
}

/// A tree's manifest, with what serving it needs.
#[derive(Debug)]
pub struct Served {
    /// The manifest as the agents get it.
    pub manifest: Manifest,
    /// The manifest's JSON (answered as is).
    pub json: Vec<u8>,
    /// Where the tree is.
    pub root: PathBuf,
    /// Content hash → index of the first regular file with it.
    pub by_hash: HashMap<String, usize>,
    walked: Vec<Walked>,
}

impl Served {
    /// The on-disk path of entry `i`.
    pub fn path_of(&self, i: usize) -> PathBuf {
        self.root.join(&self.manifest.entries[i].path)
    }

    /// Whether entry `i` still has the size and times it had when hashed.
    pub fn unchanged(&self, i: usize, m: &std::fs::Metadata) -> bool {
        self.walked.get(i).is_some_and(|w| w.key == StatKey::of(m))
    }
}

#[derive(Debug, Default)]
struct Slot {
    served: Option<Arc<Served>>,
    /// When the walk that checked `served` began.
    walked_at: Option<std::time::Instant>,
}

/// Every tree's slot: one lock per tree, so concurrent requests compute a manifest once.
fn slots() -> &'static Mutex<HashMap<PathBuf, Arc<Mutex<Slot>>>> {
    static SLOTS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<Slot>>>>> = OnceLock::new();
    SLOTS.get_or_init(Default::default)
}

fn slot(root: &Path) -> Arc<Mutex<Slot>> {
    let mut all = slots().lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(all.entry(root.to_owned()).or_default())
}

/// The tree's manifest: the cached one if nothing changed since, else a new one (only
/// changed files hashed again). Blocking: call from a blocking thread.
///
/// Requests that waited for the lock while another walked the tree take that walk's answer
/// when the walk began after they arrived (a boot storm of manifest requests walks the tree
/// a few times, not once per request).
pub fn manifest(root: &Path, role: &str, version: &str) -> Result<Arc<Served>, TreeError> {
    let arrived = std::time::Instant::now();
    let slot = slot(root);
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let (Some(s), Some(at)) = (&slot.served, slot.walked_at) {
        if at >= arrived {
            return Ok(Arc::clone(s));
        }
    }
    let started = std::time::Instant::now();
    let walked = walk(root)?;
    if let Some(s) = &slot.served {
        if same_walk(&s.walked, &walked) {
            let s = Arc::clone(s);
            slot.walked_at = Some(started);
            return Ok(s);
        }
    }
    let old: HashMap<StatKey, String> = slot
        .served
        .iter()
        .flat_map(|s| s.walked.iter())
        .filter_map(|w| Some((w.key, w.entry.sha256.clone()?)))
        .collect();
    let served = build(root, role, version, walked, &old)?;
    tracing::info!(
        root = %root.display(),
        entries = served.manifest.entries.len(),
        bytes = served.manifest.bytes(),
        ms = started.elapsed().as_millis() as u64,
        "role tree manifest computed"
    );
    let served = Arc::new(served);
    slot.served = Some(Arc::clone(&served));
    slot.walked_at = Some(started);
    Ok(served)
}

/// The cached manifest if its id is `id`, without walking the tree (the stream and blob
/// requests that follow a manifest request).
pub fn cached(root: &Path, id: &str) -> Option<Arc<Served>> {
    let slot = slot(root);
    let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    slot.served
        .as_ref()
        .filter(|s| s.manifest.id == id)
        .map(Arc::clone)
}

/// The last manifest computed for the tree, if any (no walk).
pub fn last(root: &Path) -> Option<Arc<Served>> {
    let slot = slot(root);
    let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    slot.served.as_ref().map(Arc::clone)
}

fn same_walk(a: &[Walked], b: &[Walked]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let mut e = x.entry.clone();
            e.sha256 = None;
            x.key == y.key && e == y.entry
        })
}

fn build(
    root: &Path,
    role: &str,
    version: &str,
    mut walked: Vec<Walked>,
    old: &HashMap<StatKey, String>,
) -> Result<Served, TreeError> {
    let todo: Vec<usize> = (0..walked.len())
        .filter(|&i| walked[i].entry.kind == EntryKind::File)
        .collect();
    let mut hashes: Vec<Option<String>> = vec![None; walked.len()];
    let mut need = Vec::new();
    for i in todo {
        match old.get(&walked[i].key) {
            Some(h) => hashes[i] = Some(h.clone()),
            None => need.push(i),
        }
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<String, TreeError>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&i) = need.get(k) else { break };
                let path = root.join(&walked[i].entry.path);
                let r = hash_file(&path).map_err(io(&path));
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, r));
            });
        }
    });
    for (i, r) in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        hashes[i] = Some(r?);
    }
    let mut by_hash = HashMap::new();
    for (i, (w, h)) in walked.iter_mut().zip(hashes).enumerate() {
        if let Some(h) = h {
            by_hash.entry(h.clone()).or_insert(i);
            w.entry.sha256 = Some(h);
        }
    }
    let entries: Vec<Entry> = walked.iter().map(|w| w.entry.clone()).collect();
    let entries_json = serde_json::to_vec(&entries).map_err(|e| TreeError::Io {
        path: root.to_owned(),
        err: std::io::Error::other(e),
    })?;
    let id = hex(&Sha256::digest(&entries_json))[..32].to_owned();
    let manifest = Manifest {
        role: role.to_owned(),
        version: version.to_owned(),
        id,
        entries,
    };
    let json = serde_json::to_vec(&manifest).map_err(|e| TreeError::Io {
        path: root.to_owned(),
        err: std::io::Error::other(e),
    })?;
    Ok(Served {
        manifest,
        json,
        root: root.to_owned(),
        by_hash,
        walked,
    })
}

/// Entries and bytes of a tree by a stat walk (no hashing): `rdeploy roles`, `GET /roles`.
pub fn count(root: &Path) -> Result<(u64, u64), TreeError> {
    let walked = walk(root)?;
    let bytes = walked
        .iter()
        .filter(|w| w.entry.kind == EntryKind::File)
        .map(|w| w.entry.size)
        .sum();
    Ok((walked.len() as u64, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_lists_links_as_data_and_hashes_once() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("t");
        std::fs::create_dir_all(root.join("etc"))?;
        std::fs::write(root.join("etc/a"), "hello")?;
        std::fs::hard_link(root.join("etc/a"), root.join("etc/b"))?;
        std::os::unix::fs::symlink("/etc/shadow", root.join("shadow"))?;
        let s = manifest(&root, "r", "1")?;
        let m = &s.manifest;
        let paths: Vec<(&str, EntryKind)> = m
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind))
            .collect();
        assert_eq!(
            paths,
            [
                ("etc", EntryKind::Dir),
                ("etc/a", EntryKind::File),
                ("etc/b", EntryKind::Hardlink),
                ("shadow", EntryKind::Symlink)
            ]
        );
        assert_eq!(
            m.entries[1].sha256.as_deref(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
        assert_eq!(m.entries[2].target.as_deref(), Some("etc/a"));
        assert_eq!(m.entries[3].target.as_deref(), Some("/etc/shadow"));
        m.validate()?;
        // Cached while nothing changes; a change gives a new id.
        let again = manifest(&root, "r", "1")?;
        assert!(Arc::ptr_eq(&s, &again));
        std::fs::write(root.join("new"), "x")?;
        let changed = manifest(&root, "r", "1")?;
        assert_ne!(changed.manifest.id, s.manifest.id);
        assert_eq!(changed.manifest.entries.len(), 5);
        // Concurrent requests get the same manifest.
        let many: Vec<Arc<Served>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| sc.spawn(|| manifest(&root, "r", "1")))
                .collect();
            hs.into_iter().filter_map(|h| h.join().ok()?.ok()).collect()
        });
        assert_eq!(many.len(), 8);
        assert!(many.iter().all(|m| Arc::ptr_eq(m, &changed)));
        // A symlink is never read through.
        assert!(open_nofollow(&root.join("shadow")).is_err());
        Ok(())
    }
}
