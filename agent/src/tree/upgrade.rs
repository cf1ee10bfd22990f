//! Upgrades of a deployed host, eDeploy's way over HTTP: compare the local tree with the new
//! version's manifest, fetch only the files whose content differs, and apply the rules of
//! `metadata/<from>/<role>/<to>/` (`exclude`, `add_only`, `pre`, `post`).
//!
//! [`plan`] decides, [`apply`] acts. The same plan, computed against the current version with
//! every file hashed, is what `verify` reports. A plan is recomputed from what is on disk on
//! every run, so an interrupted upgrade is finished by running it again: entries already
//! replaced compare equal, temporary files left behind are deleted like any entry the new
//! version does not have.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use rdeploy_configure::tree_wire::{hash_file, Entry, EntryKind, Manifest};

use super::client::Client;
use super::fetch;
use super::filter::Filter;
use super::local::{Local, Target};

/// Paths an upgrade never touches whatever the `exclude` file says: the kernel's and the
/// runtime's file systems, and rdeploy's own records.
pub const IMPLICIT_EXCLUDES: &str = "/proc/*\n/sys/*\n/dev/*\n/run/*\n/var/lib/rdeploy/\n";

/// The rules of an upgrade (or of `verify`).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `IMPLICIT_EXCLUDES` then the `exclude` file.
    pub exclude: Filter,
    /// The `add_only` file: created when missing, never replaced nor deleted.
    pub add_only: Filter,
}

impl Rules {
    /// Rules from the texts of `exclude` and `add_only` (the latter read as eDeploy read it,
    /// [`super::filter::add_only_rules`]).
    pub fn new(exclude: &str, add_only: &str) -> Rules {
        let mut ex = Filter::parse(IMPLICIT_EXCLUDES);
        ex.extend(&Filter::parse(exclude));
        Rules {
            exclude: ex,
            add_only: Filter::parse(&super::filter::add_only_rules(add_only)),
        }
    }
}

/// What to do with one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Create (it is missing).
    Create,
    /// Replace (content, type or link target differ).
    Update,
    /// Owner, mode or times differ; content is the same.
    Meta,
    /// Not in the new version: delete.
    Delete,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What to do.
    pub op: Op,
    /// The path.
    pub path: String,
    /// Index of the manifest entry (not for deletes).
    pub entry: Option<usize>,
    /// What differs, for a person.
    pub why: String,
}

impl Change {
    /// One line, rsync `--itemize-changes` in spirit: `create file etc/motd`.
    pub fn line(&self, m: &Manifest) -> String {
        let kind = self
            .entry
            .map(|i| m.entries[i].kind.name())
            .unwrap_or("entry");
        let op = match self.op {
            Op::Create => "create",
            Op::Update => "update",
            Op::Meta => "attrs ",
            Op::Delete => "delete",
        };
        if self.why.is_empty() {
            format!("{op} {kind:<7} {}", self.path)
        } else {
            format!("{op} {kind:<7} {} ({})", self.path, self.why)
        }
    }
}

/// The changes that make the local tree the manifest's, and the bytes they need.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// In manifest order, deletes last (deepest first).
    pub changes: Vec<Change>,
    /// Bytes of content to fetch.
    pub fetch_bytes: u64,
}

/// Compares the tree at `root` with `m` under `rules`. A regular file is taken as unchanged
/// when its size and mtime match (rsync's quick check) unless `checksum`; otherwise it is
/// hashed, and only a different hash makes it travel.
pub fn plan(
    m: &Manifest,
    root: &Path,
    rules: &Rules,
    checksum: bool,
    as_root: bool,
) -> Result<Plan> {
    let scan = super::local::scan(root, &|p, d| rules.exclude.excluded(p, d))?;
    let local = &scan.entries;
    let mut out = Plan::default();
    let mut replaced: HashMap<&str, bool> = HashMap::new();
    let in_manifest: std::collections::HashSet<&str> =
        m.entries.iter().map(|e| e.path.as_str()).collect();
    // Directories of the manifest that will not be real directories after the sync (an
    // add_only directory that exists locally as something else, a symlink say): nothing is
    // written below them, so nothing is ever written through a symlink.
    let mut blocked: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (i, e) in m.entries.iter().enumerate() {
        let is_dir = e.kind == EntryKind::Dir;
        if rules.exclude.excluded(&e.path, is_dir) {
            continue;
        }
        if e.path
            .rsplit_once('/')
            .is_some_and(|(parent, _)| blocked.contains(parent))
        {
            if is_dir {
                blocked.insert(&e.path);
            }
            continue;
        }
        let l = local.get(&e.path);
        let add_only = rules.add_only.excluded(&e.path, is_dir);
        let push = |out: &mut Plan, op, why: String| {
            if (op == Op::Create || op == Op::Update) && e.kind == EntryKind::File {
                out.fetch_bytes += e.size;
            }
            out.changes.push(Change {
                op,
                path: e.path.clone(),
                entry: Some(i),
                why,
            });
        };
        let Some(l) = l else {
            replaced.insert(&e.path, true);
            push(&mut out, Op::Create, String::new());
            continue;
        };
        if add_only {
            if is_dir && l.kind != EntryKind::Dir {
                blocked.insert(&e.path);
            }
            continue;
        }
        let same_kind =
            l.kind == e.kind || (e.kind == EntryKind::Hardlink && l.kind == EntryKind::File);
        if !same_kind {
            replaced.insert(&e.path, true);
            push(&mut out, Op::Update, format!("was a {}", l.kind.name()));
            continue;
        }
        let content = match e.kind {
            EntryKind::File => {
                let quick = l.size == e.size && l.mtime == e.mtime && l.mtime_ns == e.mtime_ns;
                if l.size != e.size {
                    Some(format!("size {} -> {}", l.size, e.size))
                } else if quick && !checksum {
                    None
                } else {
                    let path = root.join(&e.path);
                    let h = hash_file(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    (Some(h.as_str()) != e.sha256.as_deref()).then(|| "content".to_owned())
                }
            }
            EntryKind::Symlink => (l.target != e.target).then(|| {
                format!(
                    "-> {} instead of {}",
                    l.target.as_deref().unwrap_or(""),
                    e.target.as_deref().unwrap_or("")
                )
            }),
            EntryKind::Char | EntryKind::Block => {
                (Some(l.rdev) != e.rdev).then(|| "device number".to_owned())
            }
            EntryKind::Hardlink => {
                let t = e.target.as_deref().unwrap_or("");
                let linked = !replaced.get(t).copied().unwrap_or(false)
                    && local
                        .get(t)
                        .is_some_and(|tl| tl.dev == l.dev && tl.ino == l.ino);
                (!linked).then(|| format!("not linked to {t}"))
            }
            EntryKind::Dir | EntryKind::Fifo => None,
        };
        if let Some(why) = content {
            replaced.insert(&e.path, true);
            push(&mut out, Op::Update, why);
            continue;
        }
        if e.kind == EntryKind::Hardlink {
            continue;
        }
        let why = meta_diff(e, l, as_root);
        if !why.is_empty() {
            push(&mut out, Op::Meta, why);
        }
    }
    let mut deletes: Vec<&String> = local
        .keys()
        .filter(|p| !in_manifest.contains(p.as_str()))
        // A directory holding something excluded stays (rsync cannot delete it either).
        .filter(|p| !scan.holders.contains(p.as_str()))
        .filter(|p| {
            let is_dir = local.get(*p).is_some_and(|l| l.kind == EntryKind::Dir);
            !rules.add_only.excluded(p, is_dir)
        })
        .collect();
    deletes.reverse();
    for p in deletes {
        out.changes.push(Change {
            op: Op::Delete,
            path: p.clone(),
            entry: None,
            why: String::new(),
        });
    }
    Ok(out)
}

/// Owner, mode and (except directories, whose times move as their contents change) mtime.
fn meta_diff(e: &Entry, l: &Local, as_root: bool) -> String {
    let mut why = Vec::new();
    if e.kind != EntryKind::Symlink && l.mode != e.mode {
        why.push(format!("mode {:o} -> {:o}", l.mode, e.mode));
    }
    if as_root && (l.uid, l.gid) != (e.uid, e.gid) {
        why.push(format!("owner {}:{} -> {}:{}", l.uid, l.gid, e.uid, e.gid));
    }
    if e.kind != EntryKind::Dir && (l.mtime, l.mtime_ns) != (e.mtime, e.mtime_ns) {
        why.push("mtime".to_owned());
    }
    why.join(", ")
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Changes made.
    pub changes: u64,
    /// Bytes of content received.
    pub bytes: u64,
    /// Directories not deleted because something excluded is still inside.
    pub kept_dirs: Vec<String>,
}

/// Carries out `plan` on `root`, fetching contents from `client` with `jobs` parallel
/// requests; `item` gets one line per change made, as it is made.
pub fn apply(
    plan: &Plan,
    m: &Manifest,
    root: &Path,
    client: &Client,
    jobs: usize,
    item: &(dyn Fn(&str) + Sync),
) -> Result<Applied> {
    let target = Target::new(root);
    let changes = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let entry = |c: &Change| c.entry.map(|i| &m.entries[i]);
    let done = |c: &Change| {
        changes.fetch_add(1, Ordering::Relaxed);
        item(&c.line(m));
    };
    // Directories first, in order (parents before children).
    for c in &plan.changes {
        let Some(e) = entry(c) else { continue };
        if e.kind == EntryKind::Dir && c.op != Op::Meta {
            target.ensure_dir(&e.path)?;
            done(c);
        }
    }
    // Contents: `jobs` parallel transfers, each for a run of files of about the same bytes,
    // at most `fetch::BATCH` files per request, resumed where one fails or stalls.
    let wanted: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.op != Op::Meta && entry(c).is_some_and(|e| e.kind == EntryKind::File))
        .collect();
    let groups = split_by_bytes(&wanted, jobs.clamp(1, 32), |c| {
        entry(c).map_or(0, |e| e.size)
    });
    let first_err: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for group in &groups {
            let (first_err, target, bytes) = (&first_err, &target, &bytes);
            s.spawn(move || {
                let entries: Vec<&Entry> = group.iter().filter_map(|c| entry(c)).collect();
                let changes: Vec<&Change> = group
                    .iter()
                    .copied()
                    .filter(|c| entry(c).is_some())
                    .collect();
                let r = fetch::contents(
                    client,
                    &m.role,
                    &m.version,
                    &entries,
                    None,
                    &mut |j, body| {
                        if first_err.lock().map(|e| e.is_some()).unwrap_or(true) {
                            anyhow::bail!("stopped: another transfer failed");
                        }
                        let n = target.write_file(entries[j], body)?;
                        bytes.fetch_add(n, Ordering::Relaxed);
                        done(changes[j]);
                        Ok(())
                    },
                    &|line| item(&format!("# {line}")),
                );
                if let Err(err) = r {
                    if let Ok(mut slot) = first_err.lock() {
                        slot.get_or_insert(err);
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().ok().flatten() {
        return Err(e);
    }
    // Links and devices, then hard links (their targets are in place now).
    for c in &plan.changes {
        let Some(e) = entry(c) else { continue };
        if c.op != Op::Meta
            && matches!(
                e.kind,
                EntryKind::Symlink | EntryKind::Char | EntryKind::Block | EntryKind::Fifo
            )
        {
            target.write_special(e)?;
            done(c);
        }
    }
    for c in &plan.changes {
        let Some(e) = entry(c) else { continue };
        if c.op != Op::Meta && e.kind == EntryKind::Hardlink {
            target.write_hardlink(e)?;
            done(c);
        }
    }
    for c in &plan.changes {
        let Some(e) = entry(c) else { continue };
        if c.op == Op::Meta && e.kind != EntryKind::Dir {
            target.set_meta(&target.path(&e.path), e, true)?;
            done(c);
        }
    }
    // Delete after (rsync's --delete-after), deepest first; a directory that still holds
    // something excluded stays, as with rsync.
    let mut kept_dirs = Vec::new();
    for c in plan.changes.iter().filter(|c| c.op == Op::Delete) {
        if !under_real_dirs(root, &c.path) {
            // Its directory was replaced (by a symlink, a file) and went with it: never
            // delete through what replaced it.
            continue;
        }
        let path = target.path(&c.path);
        let r = match std::fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => std::fs::remove_dir(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => done(c),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                kept_dirs.push(c.path.clone());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot delete {}", path.display())),
        }
    }
    // Directory owners, modes and times last, deepest first.
    for c in plan.changes.iter().rev() {
        let Some(e) = entry(c) else { continue };
        if e.kind == EntryKind::Dir {
            target.finish_dir(e)?;
            if c.op == Op::Meta {
                done(c);
            }
        }
    }
    Ok(Applied {
        changes: changes.into_inner(),
        bytes: bytes.into_inner(),
        kept_dirs,
    })
}

/// Whether every directory above `rel` under `root` is a real directory (not a symlink).
fn under_real_dirs(root: &Path, rel: &str) -> bool {
    let mut end = 0;
    while let Some(i) = rel[end..].find('/') {
        let dir = root.join(&rel[..end + i]);
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return false;
        }
        end += i + 1;
    }
    true
}

/// Splits `items` into at most `n` runs of about the same weight (plus 4 KiB per item), in
/// order.
fn split_by_bytes<T>(items: &[T], n: usize, size: impl Fn(&T) -> u64) -> Vec<&[T]> {
    let weight = |t: &T| size(t) + 4096;
    let total: u64 = items.iter().map(&weight).sum();
    let mut out = Vec::new();
    let mut start = 0;
    let mut acc = 0u64;
    for (i, t) in items.iter().enumerate() {
        acc += weight(t);
        let boundary = total * (out.len() as u64 + 1) / n as u64;
        if acc >= boundary && out.len() + 1 < n {
            out.push(&items[start..=i]);
            start = i + 1;
        }
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Saves an upgrade's metadata files under `root/var/lib/rdeploy/upgrade/<to>/` (`pre` and
/// `post` executable) and returns that directory.
pub fn save_metadata(
    root: &Path,
    to: &str,
    files: &BTreeMap<&str, Vec<u8>>,
) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = root.join("var/lib/rdeploy/upgrade").join(to);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, bytes) in files {
        let path = dir.join(name);
        super::conf::write_atomic(&path, bytes)?;
        let mode = if matches!(*name, "pre" | "post") {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    }
    Ok(dir)
}

/// Runs a `pre` or `post` script with the upgrade described in its environment; returns its
/// exit code.
pub fn run_script(script: &Path, root: &Path, env: &[(&str, &str)]) -> Result<i32> {
    let _ = std::io::stdout().flush();
    let status = std::process::Command::new(script)
        .current_dir(root)
        .env("RDEPLOY_ROOT", root)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    Ok(status.code().unwrap_or(128))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdeploy_configure::tree_wire::hex;
    use sha2::{Digest, Sha256};

    fn file(path: &str, content: &str, mtime: i64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: content.len() as u64,
            mtime,
            mtime_ns: 0,
            sha256: Some(hex(&Sha256::digest(content.as_bytes()))),
            target: None,
            rdev: None,
            xattrs: BTreeMap::new(),
        }
    }

    /// Plans against a real directory: what differs, what excluded and add_only paths do.
    fn dir(path: &str) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            mode: 0o755,
            size: 0,
            sha256: None,
            ..file(path, "", 0)
        }
    }

    fn symlink(path: &str, target: &str) -> Entry {
        Entry {
            kind: EntryKind::Symlink,
            size: 0,
            sha256: None,
            target: Some(target.into()),
            ..file(path, "", 0)
        }
    }

    /// A directory that becomes a symlink: its old contents are deleted, never through the
    /// new symlink; an add_only directory that is a symlink locally gets nothing written
    /// below it.
    #[test]
    fn nothing_is_written_or_deleted_through_a_symlink() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside)?;
        let t = Target::new(&root);
        std::fs::create_dir_all(root.join("usr/lib"))?;
        std::fs::create_dir_all(root.join("lib"))?;
        let x = file("usr/lib/x", "keep", 10);
        t.write_file(&x, &mut "keep".as_bytes())?;
        std::fs::write(root.join("lib/x"), "old")?;
        std::os::unix::fs::symlink(&outside, root.join("opt"))?;
        let as_root = rustix::process::geteuid().is_root();
        let uid = if as_root {
            0
        } else {
            rustix::process::geteuid().as_raw()
        };
        let gid = if as_root {
            0
        } else {
            rustix::process::getegid().as_raw()
        };
        let mut entries = vec![
            symlink("lib", "usr/lib"),
            dir("opt"),
            file("opt/x", "planted", 20),
            dir("usr"),
            dir("usr/lib"),
            x.clone(),
        ];
        for e in &mut entries {
            (e.uid, e.gid) = (uid, gid);
        }
        let m = Manifest {
            role: "r".into(),
            version: "2".into(),
            id: "i".into(),
            entries,
        };
        let rules = Rules::new("", "/opt/\n");
        let p = plan(&m, &root, &rules, false, as_root)?;
        let got: Vec<(Op, &str)> = p
            .changes
            .iter()
            .filter(|c| c.op != Op::Meta)
            .map(|c| (c.op, c.path.as_str()))
            .collect();
        assert_eq!(got, [(Op::Update, "lib"), (Op::Delete, "lib/x")]);
        let client = Client::new(
            "http://127.0.0.1:9",
            &crate::tls::Trust::system(),
            std::time::Duration::ZERO,
        )?;
        apply(&p, &m, &root, &client, 1, &|_| {})?;
        assert_eq!(std::fs::read_link(root.join("lib"))?, Path::new("usr/lib"));
        assert_eq!(std::fs::read_to_string(root.join("usr/lib/x"))?, "keep");
        assert!(std::fs::read_dir(&outside)?.next().is_none());
        Ok(())
    }

    #[test]
    fn splits_cover_everything_in_order() {
        let items: Vec<u64> = (0..100).map(|i| i * 1000).collect();
        for n in [1, 2, 3, 7, 200] {
            let parts = split_by_bytes(&items, n, |x| *x);
            assert!(parts.len() <= n && !parts.is_empty());
            assert_eq!(parts.concat(), items);
        }
        assert!(split_by_bytes(&[] as &[u64], 4, |x| *x).is_empty());
    }

    #[test]
    fn plan_follows_exclude_and_add_only() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        let t = Target::new(root);
        let same = file("same", "s", 10);
        t.write_file(&same, &mut "s".as_bytes())?;
        let edited = file("edited", "old!", 10);
        t.write_file(&edited, &mut "old!".as_bytes())?;
        let conf = file("app.conf", "local", 10);
        t.write_file(&conf, &mut "local".as_bytes())?;
        let seed = file("seed", "mine", 10);
        t.write_file(&seed, &mut "mine".as_bytes())?;
        std::fs::write(root.join("gone"), "x")?;
        std::fs::write(root.join("keep.log"), "x")?;
        let m = Manifest {
            role: "r".into(),
            version: "2".into(),
            id: "i".into(),
            entries: vec![
                file("app.conf", "upstream", 20),
                file("edited", "new!", 20),
                file("fresh", "f", 20),
                file("same", "s", 10),
                file("seed", "theirs", 20),
                file("seed2", "theirs", 20),
            ],
        };
        let rules = Rules::new("app.conf\n*.log\n", "/seed*\n");
        let as_root = rustix::process::geteuid().is_root();
        let p = plan(&m, root, &rules, false, as_root)?;
        let got: Vec<(Op, &str)> = p.changes.iter().map(|c| (c.op, c.path.as_str())).collect();
        assert_eq!(
            got,
            [
                (Op::Update, "edited"),
                (Op::Create, "fresh"),
                (Op::Create, "seed2"),
                (Op::Delete, "gone"),
            ]
        );
        assert_eq!(p.fetch_bytes, 4 + 1 + 6);
        // Same size, other mtime: hashed, same content, only the times move.
        std::fs::write(root.join("same"), "s")?;
        let p = plan(&m, root, &rules, false, as_root)?;
        assert!(p
            .changes
            .iter()
            .any(|c| c.path == "same" && c.op == Op::Meta && c.why == "mtime"));
        Ok(())
    }
}
