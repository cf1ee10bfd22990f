//! JSON shapes for role trees: the manifest the server computes for `install/<version>/<role>/`,
//! the split of a tree into parallel stream parts, the install/upgrade report an agent sends,
//! and the path rules both sides enforce.
//!
//! A manifest lists every entry of a tree below its root (the root itself is not listed), in
//! walk order: a directory comes before everything inside it, names sorted bytewise. A regular
//! file that is a hard link to a file listed earlier appears as [`EntryKind::Hardlink`] whose
//! `target` is that earlier path, so content travels once.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file (content by `sha256`).
    File,
    /// A symbolic link (`target` is its text, never followed).
    Symlink,
    /// A hard link to the regular file `target` (a path listed earlier).
    Hardlink,
    /// A character device (`rdev`).
    Char,
    /// A block device (`rdev`).
    Block,
    /// A named pipe.
    Fifo,
}

impl EntryKind {
    /// The short name people read in listings and diffs (`dir`, `file`, `symlink`, `link`,
    /// `chardev`, `blkdev`, `fifo`).
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Dir => "dir",
            EntryKind::File => "file",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "link",
            EntryKind::Char => "chardev",
            EntryKind::Block => "blkdev",
            EntryKind::Fifo => "fifo",
        }
    }
}

/// One entry of a role tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path, `/`-separated, no leading `/` (see [`check_path`]).
    pub path: String,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Permission bits with setuid/setgid/sticky (`0o7777` at most).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Content size in bytes (regular files; 0 otherwise).
    #[serde(default)]
    pub size: u64,
    /// Modification time, seconds since the epoch.
    #[serde(default)]
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    #[serde(default)]
    pub mtime_ns: u32,
    /// Content hash, lowercase hex (regular files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlink text, or the path a hard link shares its inode with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Device number (char and block devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Extended attributes: name → value in hex.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
}

impl Entry {
    /// Whether the entry carries content of its own (a regular file, not a hard link).
    pub fn has_content(&self) -> bool {
        self.kind == EntryKind::File
    }
}

/// A role tree: `GET /roles/{role}/{version}/manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The role.
    pub role: String,
    /// The version.
    pub version: String,
    /// Identifies this state of the tree (a hash over the entries); blobs and streams are
    /// asked for with it, so a tree that changed in between is noticed.
    pub id: String,
    /// Entries (the root excluded).
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Sum of the regular files' sizes (hard links counted once).
    pub fn bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.has_content())
            .map(|e| e.size)
            .sum()
    }

    /// Checks what an agent relies on before writing anything: every path is relative and
    /// clean, appears once, has its parent directory listed before it (so nothing is ever
    /// written through a symlink), hard links name an earlier regular file, files have a
    /// hash, modes fit in `0o7777`.
    pub fn validate(&self) -> Result<(), BadManifest> {
        let mut kinds: BTreeMap<&str, EntryKind> = BTreeMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            let bad = |why: String| BadManifest {
                index: i,
                path: e.path.clone(),
                why,
            };
            check_path(&e.path).map_err(|err| bad(err.to_string()))?;
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                if kinds.get(parent) != Some(&EntryKind::Dir) {
                    return Err(bad(format!(
                        "its parent {parent:?} is not a directory listed before it"
                    )));
                }
            }
            if e.mode & !0o7777 != 0 {
                return Err(bad(format!("mode {:o} has bits beyond 7777", e.mode)));
            }
            match e.kind {
                EntryKind::File => match &e.sha256 {
                    Some(h) if is_sha256(h) => {}
                    _ => return Err(bad("a regular file without a sha256".into())),
                },
                EntryKind::Symlink => match &e.target {
                    Some(t) if !t.is_empty() && !t.contains('\0') => {}
                    _ => return Err(bad("a symlink without a target".into())),
                },
                EntryKind::Hardlink => {
                    let t = e.target.as_deref().unwrap_or("");
                    if kinds.get(t) != Some(&EntryKind::File) {
                        return Err(bad(format!(
                            "a hard link to {t:?}, which is not a regular file listed before it"
                        )));
                    }
                }
                EntryKind::Char | EntryKind::Block => {
                    if e.rdev.is_none() {
                        return Err(bad("a device without rdev".into()));
                    }
                }
                EntryKind::Dir | EntryKind::Fifo => {}
            }
            if kinds.insert(&e.path, e.kind).is_some() {
                return Err(bad("listed twice".into()));
            }
        }
        Ok(())
    }

    /// Splits the regular files (by index into `entries`) into at most `parts` groups of about
    /// the same number of bytes, in manifest order: part `i` of
    /// `GET /roles/{role}/{version}/stream?manifest=ID&part=i&parts=N` is the concatenation of
    /// the contents of group `i`. Server and agent compute the same split.
    pub fn stream_parts(&self, parts: usize) -> Vec<Vec<usize>> {
        let parts = parts.clamp(1, MAX_PARTS);
        let total = self.bytes();
        // Every file also costs a little (open, create), so count 4 KiB per file.
        let files: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].has_content())
            .collect();
        let weight = |i: usize| self.entries[i].size + 4096;
        let total_weight = total + 4096 * files.len() as u64;
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); parts];
        let mut acc = 0u64;
        for i in files {
            // The part this file starts in, by its cumulative weight.
            let p = ((acc as u128 * parts as u128) / (total_weight.max(1) as u128)) as usize;
            out[p.min(parts - 1)].push(i);
            acc += weight(i);
        }
        out
    }
}

/// Most stream parts one install may ask for.
pub const MAX_PARTS: usize = 64;

/// A manifest entry an agent must not act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest entry {index} ({path:?}): {why}")]
pub struct BadManifest {
    /// Position in `entries`.
    pub index: usize,
    /// The entry's path.
    pub path: String,
    /// What is wrong.
    pub why: String,
}

/// A path that could leave its tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {path:?} {why}")]
pub struct BadPath {
    /// The path as given.
    pub path: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Checks a tree-relative path: not empty, not absolute, no NUL, no empty, `.` or `..`
/// component, at most 4096 bytes.
pub fn check_path(path: &str) -> Result<(), BadPath> {
    let bad = |why| {
        Err(BadPath {
            path: path.to_owned(),
            why,
        })
    };
    if path.is_empty() {
        return bad("is empty");
    }
    if path.len() > 4096 {
        return bad("is longer than 4096 bytes");
    }
    if path.contains('\0') {
        return bad("contains NUL");
    }
    if path.starts_with('/') {
        return bad("is absolute");
    }
    for c in path.split('/') {
        match c {
            "" => return bad("has an empty component"),
            "." | ".." => return bad("has a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// A role or version name: letters, digits, `.`, `_`, `-`, `+`, `:`, `~`; not starting with
/// `.`; at most 128 bytes (never a path).
pub fn check_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | ':' | '~'))
}

/// Whether `s` is 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Opens a regular file for reading; a symlink in its place is an error (data is never
/// followed out of a tree).
pub fn open_nofollow(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// The manifest's `sha256` of a file (lowercase hex), read without following a symlink: the
/// one definition the server (manifests) and the agent (verify, upgrades) share.
pub fn hash_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut f = open_nofollow(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The bytes of a hex string (`None` when it is not hex).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// One role and its versions: `GET /roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleVersion {
    /// The role.
    pub role: String,
    /// The version.
    pub version: String,
    /// Entries in the tree.
    pub files: u64,
    /// Bytes of regular files.
    pub bytes: u64,
}

/// `GET /roles/{role}/{from}/upgrades`: the versions a host at `from` can upgrade to
/// (`metadata/<from>/<role>/<to>/` exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradePaths {
    /// The role.
    pub role: String,
    /// The current version.
    pub from: String,
    /// Versions with upgrade metadata, sorted.
    pub to: Vec<String>,
}

/// What a tree report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TreeAction {
    /// A fresh install from the provisioning run.
    Install,
    /// An upgrade asked for by a deployed host.
    Upgrade,
}

/// Where a tree action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TreeStatus {
    /// It began.
    Started,
    /// It finished; the host now runs `version`.
    Succeeded,
    /// It failed; the host stays at (or is partly moved from) `from`.
    Failed,
}

/// `POST /nodes/{id}/tree`: an install or upgrade of a node's role tree, and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeReport {
    /// Install or upgrade.
    pub action: TreeAction,
    /// Where it stands.
    pub status: TreeStatus,
    /// The role.
    pub role: String,
    /// The version before (upgrades).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The version installed or aimed at.
    pub version: String,
    /// Bytes of content transferred.
    #[serde(default)]
    pub bytes: u64,
    /// Bytes of regular files in the tree.
    #[serde(default)]
    pub tree_bytes: u64,
    /// Entries created, replaced or deleted.
    #[serde(default)]
    pub changes: u64,
    /// One line for a person.
    #[serde(default)]
    pub message: String,
}

impl fmt::Display for TreeAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TreeAction::Install => "install",
            TreeAction::Upgrade => "upgrade",
        })
    }
}

impl fmt::Display for TreeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TreeStatus::Started => "started",
            TreeStatus::Succeeded => "succeeded",
            TreeStatus::Failed => "failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            mtime_ns: 0,
            sha256: (kind == EntryKind::File).then(|| "0".repeat(64)),
            target: None,
            rdev: None,
            xattrs: BTreeMap::new(),
        }
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            role: "r".into(),
            version: "1".into(),
            id: "x".into(),
            entries,
        }
    }

    #[test]
    fn paths_that_leave_the_tree_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../../b",
            "..",
            "a//b",
            "a/./b",
            "a\0b",
            "a/",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "etc/passwd", "a/..b/c", "...", ".hidden"] {
            assert_eq!(check_path(good), Ok(()), "{good:?}");
        }
        assert!(check_name("1.0-2"));
        assert!(!check_name("../x"));
        assert!(!check_name(".x"));
        assert!(!check_name("a/b"));
    }

    #[test]
    fn a_manifest_cannot_write_through_a_symlink() {
        let mut link = entry("etc", EntryKind::Symlink);
        link.target = Some("/etc".into());
        let m = manifest(vec![link, entry("etc/passwd", EntryKind::File)]);
        let err = m.validate().err().map(|e| e.why);
        assert!(
            err.as_deref()
                .is_some_and(|w| w.contains("not a directory")),
            "{err:?}"
        );
        let ok = manifest(vec![
            entry("etc", EntryKind::Dir),
            entry("etc/passwd", EntryKind::File),
        ]);
        assert_eq!(ok.validate(), Ok(()));
        let mut hl = entry("etc/shadow", EntryKind::Hardlink);
        hl.target = Some("etc".into());
        let m = manifest(vec![entry("etc", EntryKind::Dir), hl]);
        assert!(m.validate().is_err());
        let m = manifest(vec![
            entry("a", EntryKind::File),
            entry("a", EntryKind::File),
        ]);
        assert!(m.validate().is_err());
    }

    #[test]
    fn stream_parts_cover_every_file_once_in_order() {
        let mut entries = vec![entry("d", EntryKind::Dir)];
        for i in 0..100u64 {
            let mut e = entry(&format!("d/f{i:03}"), EntryKind::File);
            e.size = i * 1000;
            entries.push(e);
        }
        let m = manifest(entries);
        for n in [1, 2, 3, 8, 200] {
            let parts = m.stream_parts(n);
            assert_eq!(parts.len(), n.clamp(1, MAX_PARTS));
            let all: Vec<usize> = parts.concat();
            assert_eq!(all, (1..=100).collect::<Vec<_>>());
        }
        let parts = m.stream_parts(2);
        let bytes = |p: &[usize]| p.iter().map(|&i| m.entries[i].size).sum::<u64>();
        let (a, b) = (bytes(&parts[0]), bytes(&parts[1]));
        assert!(a.abs_diff(b) < 200_000, "{a} vs {b}");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
        assert_eq!(unhex("0001abff"), Some(vec![0, 1, 0xab, 0xff]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }
}
