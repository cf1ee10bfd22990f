//! The one door to `/sys`, `/proc`, `/dev`: a live root or a captured tree, optionally
//! recording every read so `capture` can copy exactly what detection used.
//!
//! Paths are given as absolute live paths (`/sys/block/sda/size`); a [`Root`] on a directory
//! reads `DIR/sys/block/sda/size` instead. Symlinks inside a captured tree are relative, as
//! in sysfs, so `DIR/sys/class/net/eth0` → `../../devices/.../net/eth0` stays inside `DIR`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a directory entry is (as seen through `lstat`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink(PathBuf),
    Other,
}

/// One successful read, kept by a recording root (see [`Root::recording`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// A file's bytes, as detection read them.
    File(Vec<u8>),
    /// A directory listing.
    Dir(Vec<(String, EntryKind)>),
    /// A symlink read with `readlink`.
    Link(PathBuf),
}

/// Where detection reads from: `/` (live) or a captured tree.
#[derive(Debug)]
pub struct Root {
    base: PathBuf,
    live: bool,
    record: Option<Mutex<BTreeMap<PathBuf, Access>>>,
}

impl Root {
    /// The running machine's `/sys`, `/proc` and `/dev`. Only a live root runs `ipmitool`.
    pub fn live() -> Root {
        Root {
            base: PathBuf::from("/"),
            live: true,
            record: None,
        }
    }

    /// A captured tree (`DIR/sys`, `DIR/proc`, `DIR/dev`), as `capture` writes it or as a
    /// fixture is written by hand.
    pub fn dir(dir: impl Into<PathBuf>) -> Root {
        Root {
            base: dir.into(),
            live: false,
            record: None,
        }
    }

    /// The live root, remembering every successful read for [`Root::take_record`].
    pub fn recording() -> Root {
        Root {
            record: Some(Mutex::new(BTreeMap::new())),
            ..Root::live()
        }
    }

    /// True for the running machine (not a captured tree).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The directory this root reads from (`/` when live).
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The reads recorded so far, by live path (empty unless [`Root::recording`]).
    pub fn take_record(&self) -> BTreeMap<PathBuf, Access> {
        match &self.record {
            Some(m) => std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner())),
            None => BTreeMap::new(),
        }
    }

    /// Where `path` (an absolute live path) is on this machine's file system.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.base.join(path.trim_start_matches('/'))
    }

    fn note(&self, path: &str, access: Access) {
        if let Some(m) = &self.record {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(PathBuf::from(path), access);
        }
    }

    /// Records a value detection computed from something that is not a file (the live
    /// machine's architecture when the kernel has no `/proc/sys/kernel/arch`), so a capture
    /// writes it as that file.
    pub fn note_synthetic(&self, path: &str, content: &str) {
        self.note(path, Access::File(content.as_bytes().to_vec()));
    }

    /// A file's content (invalid UTF-8 replaced, as eDeploy's `clean_str` does).
    pub fn read(&self, path: &str) -> io::Result<String> {
        let bytes = fs::read(self.host_path(path))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.note(path, Access::File(bytes));
        Ok(text)
    }

    /// The first line of a file without its newline and surrounding blanks (what eDeploy
    /// does with `readline().rstrip('\n').strip()`).
    pub fn read_line(&self, path: &str) -> io::Result<String> {
        let text = self.read(path)?;
        Ok(text.lines().next().unwrap_or("").trim().to_string())
    }

    /// The names in a directory, sorted.
    pub fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(self.host_path(path))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = match entry.file_type() {
                Ok(t) if t.is_symlink() => match fs::read_link(entry.path()) {
                    Ok(target) => EntryKind::Symlink(target),
                    Err(_) => EntryKind::Other,
                },
                Ok(t) if t.is_dir() => EntryKind::Dir,
                Ok(t) if t.is_file() => EntryKind::File,
                _ => EntryKind::Other,
            };
            entries.push((name, kind));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let names = entries.iter().map(|(n, _)| n.clone()).collect();
        self.note(path, Access::Dir(entries));
        Ok(names)
    }

    /// A symlink's target, as written in the link.
    pub fn read_link(&self, path: &str) -> io::Result<PathBuf> {
        let target = fs::read_link(self.host_path(path))?;
        self.note(path, Access::Link(target.clone()));
        Ok(target)
    }

    /// The last component of a symlink's target (`driver` → `ixgbe`).
    pub fn link_name(&self, path: &str) -> io::Result<String> {
        let target = self.read_link(path)?;
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "link without a name"))
    }

    /// Whether a path exists (following symlinks), like Python's `os.path.exists`.
    pub fn exists(&self, path: &str) -> bool {
        self.host_path(path).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_root_reads_below_its_directory() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        fs::create_dir_all(dir.path().join("sys/block/sda"))?;
        fs::write(dir.path().join("sys/block/sda/size"), "  42 \nnext\n")?;
        let root = Root::dir(dir.path());
        assert!(!root.is_live());
        assert_eq!(root.read_line("/sys/block/sda/size")?, "42");
        assert_eq!(root.read_dir("/sys/block")?, vec!["sda".to_string()]);
        assert!(root.exists("/sys/block/sda"));
        assert!(!root.exists("/sys/block/sdb"));
        Ok(())
    }

    #[test]
    fn a_recording_root_keeps_what_was_read() -> io::Result<()> {
        let root = Root::recording();
        let _ = root.read("/proc/cmdline");
        let _ = root.read("/proc/does-not-exist");
        let record = root.take_record();
        assert!(record.contains_key(Path::new("/proc/cmdline")));
        assert!(!record.contains_key(Path::new("/proc/does-not-exist")));
        Ok(())
    }
}
