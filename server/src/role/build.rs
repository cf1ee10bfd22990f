//! `rdeploy role build FILE`: a role tree from a role file, the way eDeploy's `make` built
//! them, into `DATA_DIR/install/<version>/<role>/`.
//!
//! Steps: the base (a Debian suite bootstrapped by `mmdebstrap` and cached as a tarball keyed
//! by the base section, or a copy of a built role), the packages (`apt-get` in a chroot),
//! the files, the commands, the strip list and the build's own traces, then every time
//! clamped to the epoch. All of it happens in `install/<version>/.<role>.build-<pid>/`; the
//! finished tree is renamed into place, and a build that fails deletes its directory.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rdeploy_configure::tree_wire::{hash_file, hex};
use sha2::{Digest, Sha256};

use super::chroot::Chroot;
use super::file::{parse_mode, render, BaseKind, RoleFile};

/// The build's own traces, always removed (after the role's `strip`): package lists and
/// caches, logs of the build, backup files of the user databases, temporary files, and what
/// identifies one machine (`/etc/hostname`, SSH host keys, the random seed). The machine id
/// is emptied, not removed: systemd makes one at first boot.
pub const TRACES: &[&str] = &[
    "/var/lib/apt/lists/*",
    "/var/cache/apt/*.bin",
    "/var/cache/apt/archives/*.deb",
    "/var/cache/apt/archives/partial/*",
    "/var/cache/debconf/*-old",
    "/var/lib/dpkg/*-old",
    "/var/log/apt/*",
    "/var/log/dpkg.log",
    "/var/log/alternatives.log",
    "/var/log/bootstrap.log",
    "/var/cache/ldconfig/aux-cache",
    "/etc/passwd-",
    "/etc/group-",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/subuid-",
    "/etc/subgid-",
    "/root/.bash_history",
    "/tmp/*",
    "/tmp/.[!.]*",
    "/var/tmp/*",
    "/etc/hostname",
    "/etc/ssh/ssh_host_*",
    "/var/lib/systemd/random-seed",
    "/var/lib/dbus/machine-id",
    "/usr/sbin/policy-rc.d",
];

/// What a build needs besides the role file.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's data dir.
    pub data_dir: PathBuf,
    /// Where bootstrapped bases are kept.
    pub cache_dir: PathBuf,
    /// Replace an existing tree of the same role and version.
    pub force: bool,
    /// Bootstrap the base again even when it is cached.
    pub refresh_base: bool,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    /// `DATA_DIR/install/<version>/<role>`.
    pub tree: PathBuf,
    /// The manifest's id.
    pub manifest_id: String,
    /// Entries in the manifest.
    pub entries: usize,
    /// Bytes of content.
    pub bytes: u64,
}

/// The console: one line per step with the seconds since the build began.
struct Progress {
    started: Instant,
    what: String,
}

impl Progress {
    fn say(&self, line: &str) {
        eprintln!(
            "rdeploy role build: {} [{:>5.1} s] {line}",
            self.what,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Deletes the build directory unless the build finished.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

/// Builds the role of the file at `path`.
pub fn build(path: &Path, opts: &Options) -> Result<Built> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = RoleFile::parse(&text).map_err(|p| anyhow::anyhow!("{}:\n{p}", path.display()))?;
    let base = file.base.kind().map_err(anyhow::Error::msg)?;
    let source_dir = path.parent().unwrap_or(Path::new("."));
    if !rustix::process::geteuid().is_root() {
        bail!("building a role tree needs root (file owners, chroot, mounts)");
    }
    let progress = Progress {
        started: Instant::now(),
        what: format!("{} {}", file.role, file.version),
    };
    let epoch = match file.epoch {
        Some(e) => Some(e),
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(s) => Some(
                s.trim()
                    .parse::<i64>()
                    .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number"))?,
            ),
            Err(_) => None,
        },
    };

    let version_dir = opts.data_dir.join("install").join(&file.version);
    let dest = version_dir.join(&file.role);
    if dest.exists() && !opts.force {
        bail!(
            "{} exists: a version is built once (use a new version, or --force to replace it)",
            dest.display()
        );
    }
    std::fs::create_dir_all(&version_dir)
        .with_context(|| format!("cannot create {}", version_dir.display()))?;
    remove_stale_builds(&version_dir, &file.role);
    let work = version_dir.join(format!(".{}.build-{}", file.role, std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let mut cleanup = Cleanup(Some(work.clone()));
    progress.say(&format!("building in {}", work.display()));

    // 1. The base.
    match &base {
        BaseKind::Debian { .. } => {
            let tar = cached_base(&base, &opts.cache_dir, opts.refresh_base, &progress)?;
            progress.say(&format!("base: extracting {}", tar.display()));
            run_host(
                Command::new("tar")
                    .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
                    .arg(&tar)
                    .arg("-C")
                    .arg(&work),
            )?;
        }
        BaseKind::Role { role, version } => {
            let from = opts.data_dir.join("install").join(version).join(role);
            if !std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_dir()) {
                bail!("base role {role} {version}: no tree at {}", from.display());
            }
            progress.say(&format!("base: copying role {role} {version}"));
            run_host(
                Command::new("cp")
                    .args(["-a", "--reflink=auto"])
                    .arg(from.join("."))
                    .arg(&work),
            )?;
        }
    }

    let mut env: Vec<(String, String)> = [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOME", "/root"),
        ("LC_ALL", "C.UTF-8"),
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
        ("TERM", "dumb"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    env.push(("RDEPLOY_ROLE".into(), file.role.clone()));
    env.push(("RDEPLOY_VERSION".into(), file.version.clone()));
    if let Some(e) = epoch {
        env.push(("SOURCE_DATE_EPOCH".into(), e.to_string()));
    }
    let chroot = Chroot { tree: &work, env };
    chroot.prepare()?;
    // Services never start inside a build (invoke-rc.d asks policy-rc.d).
    write_host_file(
        &work.join("usr/sbin/policy-rc.d"),
        b"#!/bin/sh\nexit 101\n",
        0o755,
    )?;

    // 2. Packages (dpkg's excludes first, so they apply to them).
    if let Some(cfg) = file.dpkg_cfg() {
        progress.say("packages: dpkg excludes in /etc/dpkg/dpkg.cfg.d/rdeploy");
        chroot.run_with_input(
            &["/bin/sh", "-c", "set -e; mkdir -p /etc/dpkg/dpkg.cfg.d; cat > /etc/dpkg/dpkg.cfg.d/rdeploy; chmod 644 /etc/dpkg/dpkg.cfg.d/rdeploy"],
            cfg.as_bytes(),
        )?;
    }
    let apt = [
        "apt-get",
        "-q",
        "-y",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ];
    let fresh_debian = matches!(base, BaseKind::Debian { .. });
    let resolv = Resolv::borrow_host(&work)?;
    if fresh_debian || !file.packages.is_empty() {
        progress.say("packages: apt-get update");
        chroot.run(&["apt-get", "-q", "update"])?;
    }
    if fresh_debian {
        progress.say("packages: apt-get dist-upgrade (the cached base to today's versions)");
        chroot.run(&[&apt[..], &["dist-upgrade"]].concat())?;
    }
    if !file.packages.is_empty() {
        progress.say(&format!("packages: {}", file.packages.join(" ")));
        let mut argv: Vec<&str> = apt.to_vec();
        argv.push("install");
        if !file.recommends {
            argv.push("--no-install-recommends");
        }
        argv.extend(file.packages.iter().map(String::as_str));
        chroot.run(&argv)?;
    }
    if fresh_debian || !file.packages.is_empty() {
        chroot.run(&["apt-get", "clean"])?;
    }
    // Only apt needed the network; files and commands see the tree's own resolv.conf.
    resolv.give_back()?;

    // 3. Files.
    let vars = file.template_vars();
    for f in &file.files {
        let bytes = match (&f.content, &f.source) {
            (Some(c), _) if f.template => {
                render(c, &vars).map_err(anyhow::Error::msg)?.into_bytes()
            }
            (Some(c), _) => c.clone().into_bytes(),
            (None, Some(s)) => {
                let p = source_dir.join(s);
                let raw =
                    std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
                if f.template {
                    let t = String::from_utf8(raw)
                        .with_context(|| format!("{}: a template must be UTF-8", p.display()))?;
                    render(&t, &vars).map_err(anyhow::Error::msg)?.into_bytes()
                } else {
                    raw
                }
            }
            (None, None) => Vec::new(),
        };
        let mode = f.mode.as_deref().and_then(parse_mode).unwrap_or(0o644);
        let owner = f.owner.as_deref().unwrap_or("root:root");
        progress.say(&format!(
            "file: {} ({} bytes, {mode:04o}, {owner})",
            f.path,
            bytes.len()
        ));
        // Written from inside the tree, so a symlink in the path resolves within it.
        chroot.run_with_input(
            &[
                "/bin/sh",
                "-c",
                "set -e; mkdir -p -- \"$(dirname -- \"$1\")\"; rm -f -- \"$1\"; cat > \"$1\"; chown \"$3\" \"$1\"; chmod \"$2\" \"$1\"",
                "rdeploy-file",
                &f.path,
                &format!("{mode:o}"),
                owner,
            ],
            &bytes,
        )?;
    }

    // 4. Commands.
    for (i, c) in file.commands.iter().enumerate() {
        progress.say(&format!(
            "command {}: {}",
            i + 1,
            c.lines().next().unwrap_or("")
        ));
        chroot
            .run(&["/bin/sh", "-e", "-c", c])
            .with_context(|| format!("commands[{i}]"))?;
    }

    // 5. Strip: the role's list, then the build's traces.
    let patterns: Vec<&str> = file
        .strip
        .iter()
        .map(String::as_str)
        .chain(TRACES.iter().copied())
        .collect();
    progress.say(&format!("strip: {} patterns", patterns.len()));
    // Patterns are checked (`check_strip`): globs of plain characters, safe to hand the shell.
    chroot.run(&[
        "/bin/sh",
        "-c",
        &format!("rm -rf -- {}", patterns.join(" ")),
    ])?;
    let machine_id = work.join("etc/machine-id");
    if std::fs::symlink_metadata(&machine_id).is_ok_and(|m| m.is_file()) {
        write_host_file(&machine_id, b"", 0o444)?;
    }

    // 6. Times.
    match epoch {
        Some(e) => {
            let n = clamp_times(&work, e)?;
            progress.say(&format!("times: {n} entries newer than the epoch {e} set to it"));
        }
        None => progress.say(
            "times: no epoch (role file `epoch`, or SOURCE_DATE_EPOCH): this build is not reproducible",
        ),
    }

    // 7. The manifest, then the tree into place.
    let served = crate::serve::roles::tree::manifest(&work, &file.role, &file.version)
        .with_context(|| format!("cannot walk {}", work.display()))?;
    let m = &served.manifest;
    let built = Built {
        tree: dest.clone(),
        manifest_id: m.id.clone(),
        entries: m.entries.len(),
        bytes: m.bytes(),
    };
    if dest.exists() {
        let old = version_dir.join(format!(".{}.old-{}", file.role, std::process::id()));
        std::fs::rename(&dest, &old)
            .with_context(|| format!("cannot move {} aside", dest.display()))?;
        std::fs::rename(&work, &dest)
            .with_context(|| format!("cannot rename {} to {}", work.display(), dest.display()))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&work, &dest)
            .with_context(|| format!("cannot rename {} to {}", work.display(), dest.display()))?;
    }
    cleanup.0 = None;
    progress.say(&format!(
        "done: {} ({} entries, {} bytes, manifest {})",
        dest.display(),
        built.entries,
        built.bytes,
        built.manifest_id
    ));
    Ok(built)
}

use std::process::Command;

fn run_host(cmd: &mut Command) -> Result<()> {
    let line = format!("{cmd:?}");
    let status = cmd
        .stdin(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run {line}"))?;
    if !status.success() {
        bail!("{line} failed ({status})");
    }
    Ok(())
}

/// Writes a file of the tree from the host side: never through a symlink (an existing
/// entry is replaced), parents must be real directories of the tree.
fn write_host_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.is_dir() {
            bail!("{} is a directory", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(content)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The host's DNS settings lent to the tree for the build (apt needs them), and the tree's
/// own `/etc/resolv.conf` (if any) put back afterwards.
struct Resolv {
    path: PathBuf,
    saved: Option<PathBuf>,
}

impl Resolv {
    fn borrow_host(tree: &Path) -> Result<Resolv> {
        let path = tree.join("etc/resolv.conf");
        let saved = if std::fs::symlink_metadata(&path).is_ok() {
            let s = tree.join("etc/.rdeploy-resolv.conf");
            std::fs::rename(&path, &s)
                .with_context(|| format!("cannot move {}", path.display()))?;
            Some(s)
        } else {
            None
        };
        let host = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        write_host_file(&path, &host, 0o644)?;
        Ok(Resolv { path, saved })
    }

    fn give_back(self) -> Result<()> {
        let _ = std::fs::remove_file(&self.path);
        if let Some(s) = &self.saved {
            std::fs::rename(s, &self.path)
                .with_context(|| format!("cannot restore {}", self.path.display()))?;
        }
        Ok(())
    }
}

/// Leftovers of builds that were killed (`.<role>.build-<pid>` whose process is gone).
fn remove_stale_builds(version_dir: &Path, role: &str) {
    let prefix = format!(".{role}.build-");
    let Ok(entries) = std::fs::read_dir(version_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            eprintln!(
                "rdeploy role build: removing {} (a build that did not finish)",
                e.path().display()
            );
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The cache file of a Debian base: `bases/debian-<suite>-<variant>-<key>.tar`, where the key
/// hashes everything of the base section that changes what is bootstrapped.
pub fn base_cache_path(base: &BaseKind, cache_dir: &Path) -> Option<PathBuf> {
    let BaseKind::Debian {
        suite,
        variant,
        components,
        sources,
    } = base
    else {
        return None;
    };
    let mut h = Sha256::new();
    h.update(format!(
        "mmdebstrap\n{suite}\n{variant}\n{}\n",
        components.join(",")
    ));
    for s in sources {
        h.update(s.as_bytes());
        h.update(b"\n");
    }
    let key = &hex(&h.finalize())[..16];
    Some(
        cache_dir
            .join("bases")
            .join(format!("debian-{suite}-{variant}-{key}.tar")),
    )
}

/// The base tarball, bootstrapped with mmdebstrap when it is not cached (or `refresh`).
fn cached_base(
    base: &BaseKind,
    cache_dir: &Path,
    refresh: bool,
    progress: &Progress,
) -> Result<PathBuf> {
    let Some(tar) = base_cache_path(base, cache_dir) else {
        bail!("not a Debian base");
    };
    let BaseKind::Debian {
        suite,
        variant,
        components,
        sources,
    } = base
    else {
        bail!("not a Debian base");
    };
    if tar.is_file() && !refresh {
        progress.say(&format!(
            "base: debian {suite} {variant}: cached ({})",
            tar.display()
        ));
        return Ok(tar);
    }
    let dir = tar.parent().unwrap_or(cache_dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tar",
        tar.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    progress.say(&format!(
        "base: debian {suite} {variant}: mmdebstrap (not cached yet)"
    ));
    let result = run_host(
        Command::new("mmdebstrap")
            .args(["--mode=root", "--format=tar", "--verbose"])
            .arg(format!("--variant={variant}"))
            .arg(format!("--components={}", components.join(",")))
            .arg(suite)
            .arg(&tmp)
            .args(sources),
    )
    .context("mmdebstrap failed (is it installed? `apt-get install mmdebstrap`)");
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &tar)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), tar.display()))?;
    progress.say(&format!("base: cached as {}", tar.display()));
    Ok(tar)
}

/// The nanoseconds a clamped file gets: from its content, so two versions' files that differ
/// in content never look alike to the upgrade's quick check (size and time), even with the
/// same epoch.
fn content_nanos(path: &Path) -> Result<i64> {
    let h = hash_file(path).with_context(|| format!("cannot read {}", path.display()))?;
    let n = u32::from_str_radix(&h[..8], 16).unwrap_or(0);
    Ok(i64::from(n % 1_000_000_000))
}

/// Sets every entry modified after `epoch` to `epoch` (regular files: with [`content_nanos`]),
/// never following symlinks. Returns how many entries changed.
pub fn clamp_times(root: &Path, epoch: i64) -> Result<u64> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
    let mut n = 0;
    let mut stack = vec![root.to_owned()];
    let mut dirs = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let e = e?;
            let p = e.path();
            let m = std::fs::symlink_metadata(&p)?;
            if m.is_dir() {
                stack.push(p.clone());
                dirs.push((p, m));
                continue;
            }
            if m.mtime() > epoch || (m.mtime() == epoch && m.mtime_nsec() != 0 && !m.is_file()) {
                let nanos = if m.is_file() { content_nanos(&p)? } else { 0 };
                let t = Timespec {
                    tv_sec: epoch,
                    tv_nsec: nanos as _,
                };
                rustix::fs::utimensat(
                    CWD,
                    &p,
                    &Timestamps {
                        last_access: t,
                        last_modification: t,
                    },
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .with_context(|| format!("cannot set the times of {}", p.display()))?;
                n += 1;
            }
        }
    }
    // Directories last: their times do not move when their entries' times are set.
    for (p, m) in dirs {
        if m.mtime() > epoch || m.mtime_nsec() != 0 && m.mtime() == epoch {
            let t = Timespec {
                tv_sec: epoch,
                tv_nsec: 0,
            };
            rustix::fs::utimensat(
                CWD,
                &p,
                &Timestamps {
                    last_access: t,
                    last_modification: t,
                },
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .with_context(|| format!("cannot set the times of {}", p.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_cache_key_follows_the_base_section() {
        let b = |mirror: &str| BaseKind::Debian {
            suite: "bookworm".into(),
            variant: "minbase".into(),
            components: vec!["main".into()],
            sources: vec![format!("deb {mirror} bookworm main")],
        };
        let dir = Path::new("/c");
        let one = base_cache_path(&b("http://a/debian"), dir);
        assert_eq!(one, base_cache_path(&b("http://a/debian"), dir));
        assert_ne!(one, base_cache_path(&b("http://b/debian"), dir));
        let name = one.map(|p| p.display().to_string()).unwrap_or_default();
        assert!(
            name.starts_with("/c/bases/debian-bookworm-minbase-") && name.ends_with(".tar"),
            "{name}"
        );
    }

    #[test]
    fn clamping_sets_newer_entries_to_the_epoch_with_content_nanoseconds() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir(root.join("d"))?;
        std::fs::write(root.join("d/a"), "one")?;
        std::fs::write(root.join("d/b"), "two")?;
        std::os::unix::fs::symlink("a", root.join("d/link"))?;
        let old = std::fs::File::options()
            .write(true)
            .open(root.join("d/b"))?;
        old.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000))?;
        let n = clamp_times(root, 5000)?;
        assert_eq!(n, 3, "d/a, d/link and d");
        let a = std::fs::symlink_metadata(root.join("d/a"))?;
        assert_eq!(
            (a.mtime(), a.mtime_nsec()),
            (5000, content_nanos(&root.join("d/a"))?)
        );
        assert_ne!(a.mtime_nsec(), 0);
        assert_eq!(
            std::fs::metadata(root.join("d/b"))?.mtime(),
            1000,
            "older: kept"
        );
        assert_eq!(
            std::fs::symlink_metadata(root.join("d/link"))?.mtime(),
            5000
        );
        assert_eq!(std::fs::metadata(root.join("d"))?.mtime(), 5000);
        assert_eq!(clamp_times(root, 5000)?, 0, "a second pass changes nothing");
        Ok(())
    }
}
