//! `rdeploy role diff ROLE FROM TO`: what changed between two versions of a role tree, and the
//! skeleton of the upgrade's metadata (`metadata/<from>/<role>/<to>/exclude`), eDeploy's
//! upgrade preparation.
//!
//! [`diff`] and [`default_exclude`] are pure (manifests in, values out); [`run`] reads the
//! trees and writes the file.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rdeploy_configure::tree_wire::{check_name, Entry, EntryKind, Manifest};

/// How an entry changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    /// Only in TO.
    Added(&'a Entry),
    /// Only in FROM.
    Removed(&'a Entry),
    /// In both, different: content, type, link target, device, mode or owner (`why`).
    Changed {
        from: &'a Entry,
        to: &'a Entry,
        why: String,
    },
}

/// The differences between two manifests, in path order.
#[derive(Debug, Clone, Default)]
pub struct Diff<'a> {
    /// Every change but time-only ones.
    pub changes: Vec<Change<'a>>,
    /// Entries whose only difference is their modification time.
    pub times_only: usize,
}

impl Diff<'_> {
    /// (count, bytes) of added regular files.
    pub fn added(&self) -> (usize, u64) {
        self.sum(
            |c| matches!(c, Change::Added(_)),
            |c| match c {
                Change::Added(e) => e.size,
                _ => 0,
            },
        )
    }

    /// (count, bytes) of removed entries.
    pub fn removed(&self) -> (usize, u64) {
        self.sum(
            |c| matches!(c, Change::Removed(_)),
            |c| match c {
                Change::Removed(e) => e.size,
                _ => 0,
            },
        )
    }

    /// (count, bytes of the new contents) of changed entries.
    pub fn changed(&self) -> (usize, u64) {
        self.sum(
            |c| matches!(c, Change::Changed { .. }),
            |c| match c {
                Change::Changed { from, to, .. } if from.sha256 != to.sha256 => to.size,
                _ => 0,
            },
        )
    }

    fn sum(
        &self,
        pick: impl Fn(&Change<'_>) -> bool,
        bytes: impl Fn(&Change<'_>) -> u64,
    ) -> (usize, u64) {
        self.changes
            .iter()
            .filter(|c| pick(c))
            .fold((0, 0), |(n, b), c| (n + 1, b + bytes(c)))
    }
}

/// What differs between two entries of the same path other than times ("" when nothing).
fn what_differs(a: &Entry, b: &Entry) -> String {
    let mut why = Vec::new();
    if a.kind != b.kind {
        why.push(format!("{} -> {}", a.kind.name(), b.kind.name()));
    } else {
        if a.sha256 != b.sha256 {
            why.push(format!("content, {} -> {} bytes", a.size, b.size));
        }
        if a.target != b.target {
            why.push(format!(
                "-> {} instead of {}",
                b.target.as_deref().unwrap_or(""),
                a.target.as_deref().unwrap_or("")
            ));
        }
        if a.rdev != b.rdev {
            why.push("device number".to_owned());
        }
    }
    if a.mode != b.mode && b.kind != EntryKind::Symlink {
        why.push(format!("mode {:o} -> {:o}", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        why.push(format!("owner {}:{} -> {}:{}", a.uid, a.gid, b.uid, b.gid));
    }
    if a.xattrs != b.xattrs {
        why.push("xattrs".to_owned());
    }
    why.join(", ")
}

/// The changes from `from` to `to`.
pub fn diff<'a>(from: &'a Manifest, to: &'a Manifest) -> Diff<'a> {
    let a: BTreeMap<&str, &Entry> = from.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let b: BTreeMap<&str, &Entry> = to.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut paths: Vec<&str> = a.keys().chain(b.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    let mut out = Diff::default();
    for p in paths {
        match (a.get(p), b.get(p)) {
            (None, Some(e)) => out.changes.push(Change::Added(e)),
            (Some(e), None) => out.changes.push(Change::Removed(e)),
            (Some(x), Some(y)) => {
                let why = what_differs(x, y);
                if !why.is_empty() {
                    out.changes.push(Change::Changed {
                        from: x,
                        to: y,
                        why,
                    });
                } else if (x.mtime, x.mtime_ns) != (y.mtime, y.mtime_ns) && x.kind != EntryKind::Dir
                {
                    out.times_only += 1;
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// One line per change: `+ file usr/bin/x (120 bytes)`, `- dir etc/old`, `~ file etc/motd
/// (content, 14 -> 20 bytes)`.
pub fn lines(d: &Diff<'_>) -> Vec<String> {
    d.changes
        .iter()
        .map(|c| match c {
            Change::Added(e) if e.kind == EntryKind::File => {
                format!("+ {:<7} {} ({} bytes)", e.kind.name(), e.path, e.size)
            }
            Change::Added(e) => format!("+ {:<7} {}", e.kind.name(), e.path),
            Change::Removed(e) => format!("- {:<7} {}", e.kind.name(), e.path),
            Change::Changed { to, why, .. } => {
                format!("~ {:<7} {} ({why})", to.kind.name(), to.path)
            }
        })
        .collect()
}

/// Data directories kept when either version has them.
const DATA_DIRS: &[&str] = &[
    "var/lib/mysql",
    "var/lib/postgresql",
    "var/lib/mongodb",
    "var/lib/redis",
    "var/lib/rabbitmq",
    "var/lib/elasticsearch",
    "var/lib/etcd",
    "var/lib/docker",
    "var/lib/containerd",
    "var/lib/libvirt",
    "var/lib/ceph",
];

/// The `exclude` skeleton for an upgrade of `role` from `from` to `to`: host identity, what
/// the installer wrote, logs and data, and the data directories either version has.
pub fn default_exclude(role: &str, from: &Manifest, to: &Manifest) -> String {
    let mut s = format!(
        "# Paths the upgrade of {role} from {} to {} leaves as they are on each host (rsync\n\
         # patterns, docs/upgrades.md). Written by `rdeploy role diff {role} {} {}`: edit it,\n\
         # it is not overwritten (unless --force). Patterns for files a host should only get\n\
         # when missing go to add_only beside it.\n\
         #\n\
         # Host identity, written by the installer (configure script, fstab, boot loader) or at\n\
         # first boot:\n",
        from.version, to.version, from.version, to.version
    );
    for p in [
        "/etc/hostname",
        "/etc/hosts",
        "/etc/fstab",
        "/etc/machine-id",
        "/etc/network/interfaces",
        "/etc/network/interfaces.d/",
        "/etc/netplan/",
        "/etc/resolv.conf",
        "/etc/ssh/ssh_host_*",
        "/etc/mdadm/mdadm.conf",
        "/var/lib/dbus/machine-id",
        "/var/lib/systemd/random-seed",
    ] {
        s.push_str(p);
        s.push('\n');
    }
    s.push_str(
        "# The boot loader: grub-install and grub-mkconfig wrote these on the host, and the\n\
         # installer appended the profile's grub_options() to /etc/default/grub.\n\
         /etc/default/grub\n/boot/grub/\n/boot/efi/\n\
         # Logs and data:\n\
         /var/log/\n/home/\n/root/\n/srv/\n/tmp/\n/var/tmp/\n/var/spool/\n/var/mail/\n/var/backups/\n",
    );
    let has = |m: &Manifest, d: &str| m.entries.iter().any(|e| e.path == d);
    for d in DATA_DIRS {
        if has(from, d) || has(to, d) {
            s.push_str(&format!("/{d}/\n"));
        }
    }
    s.push_str(
        "# Not excluded: /etc/passwd, /etc/shadow, /etc/group come from the new version (its\n\
         # packages may add system users); accounts made by hand on a host are replaced.\n",
    );
    s
}

/// `rdeploy role diff`: prints the changes and writes the exclude skeleton.
pub fn run(
    data_dir: &Path,
    role: &str,
    from: &str,
    to: &str,
    force: bool,
    quiet: bool,
) -> Result<()> {
    for n in [role, from, to] {
        if !check_name(n) {
            bail!("{n:?} is not a name (letters, digits, '.', '_', '-', '+', ':', '~')");
        }
    }
    let manifest = |version: &str| -> Result<std::sync::Arc<crate::serve::roles::tree::Served>> {
        let root = crate::serve::roles::tree_root(data_dir, role, version);
        crate::serve::roles::tree::manifest(&root, role, version)
            .with_context(|| format!("{role} {version}: cannot read {}", root.display()))
    };
    let (a, b) = (manifest(from)?, manifest(to)?);
    let d = diff(&a.manifest, &b.manifest);
    if !quiet {
        for l in lines(&d) {
            println!("{l}");
        }
    }
    let (na, ba) = d.added();
    let (nr, br) = d.removed();
    let (nc, bc) = d.changed();
    println!(
        "{role} {from} -> {to}: {na} added ({ba} bytes), {nr} removed ({br} bytes), {nc} changed ({bc} bytes of new content), {} with only new times; {} bytes to transfer of a {}-byte tree",
        d.times_only,
        ba + bc,
        b.manifest.bytes()
    );
    let dir = data_dir.join("metadata").join(from).join(role).join(to);
    let exclude = dir.join("exclude");
    if exclude.exists() && !force {
        println!(
            "kept {} (edited by hand? --force rewrites it)",
            exclude.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = default_exclude(role, &a.manifest, &b.manifest);
    let tmp = dir.join(".exclude.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all())?;
    std::fs::rename(&tmp, &exclude)
        .with_context(|| format!("cannot write {}", exclude.display()))?;
    println!(
        "wrote {}: review it, then hosts can run `rdeploy-agent upgrade {to}`",
        exclude.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: EntryKind, size: u64, sha: Option<&str>, mtime: i64) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size,
            mtime,
            mtime_ns: 0,
            sha256: sha.map(str::to_owned),
            target: None,
            rdev: None,
            xattrs: BTreeMap::new(),
        }
    }

    fn m(version: &str, entries: Vec<Entry>) -> Manifest {
        Manifest {
            role: "base".into(),
            version: version.into(),
            id: String::new(),
            entries,
        }
    }

    #[test]
    fn diff_lists_added_removed_and_changed_and_counts_time_only_changes() {
        let from = m(
            "1",
            vec![
                e("etc", EntryKind::Dir, 0, None, 1),
                e("etc/motd", EntryKind::File, 3, Some("aa"), 1),
                e("etc/old", EntryKind::File, 5, Some("bb"), 1),
                e("etc/same", EntryKind::File, 1, Some("cc"), 1),
            ],
        );
        let mut mode = e("etc/same", EntryKind::File, 1, Some("cc"), 2);
        mode.mode = 0o600;
        let to = m(
            "2",
            vec![
                e("etc", EntryKind::Dir, 0, None, 2),
                e("etc/motd", EntryKind::File, 4, Some("dd"), 2),
                e("etc/new", EntryKind::File, 7, Some("ee"), 2),
                mode,
                e("var/lib/mysql", EntryKind::Dir, 0, None, 2),
            ],
        );
        let d = diff(&from, &to);
        assert_eq!(
            lines(&d),
            [
                "~ file    etc/motd (content, 3 -> 4 bytes)",
                "+ file    etc/new (7 bytes)",
                "- file    etc/old",
                "~ file    etc/same (mode 644 -> 600)",
                "+ dir     var/lib/mysql",
            ]
        );
        assert_eq!(d.added(), (2, 7));
        assert_eq!(d.removed(), (1, 5));
        assert_eq!(d.changed(), (2, 4));
        assert_eq!(d.times_only, 0, "directories' times are not counted");
        let ex = default_exclude("base", &from, &to);
        for want in [
            "/etc/hostname\n",
            "/etc/ssh/ssh_host_*\n",
            "/var/log/\n",
            "/var/lib/mysql/\n",
            "/etc/fstab\n",
        ] {
            assert!(ex.contains(want), "no {want:?} in\n{ex}");
        }
        assert!(!ex.contains("postgresql"), "{ex}");
    }
}
