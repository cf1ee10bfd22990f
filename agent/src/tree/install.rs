//! A fresh install of a role tree onto a mounted target: directories, links and devices from
//! the manifest, file contents from N parallel stream parts (each file checked against its
//! sha256 before it is renamed into place; a part whose transfer fails or stalls goes on
//! from the file it stopped at, see [`super::fetch`]), hard links, then directory modes and times, then
//! `/var/lib/rdeploy/conf`.
//!
//! An `rsync://` server is handled the eDeploy way: `rsync -aHAXS --numeric-ids` from
//! `SERVER/install/<version>/<role>/`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdeploy_configure::tree_wire::{
    Entry, EntryKind, Manifest, TreeAction, TreeReport, TreeStatus,
};

use super::client::Client;
use super::conf::Conf;
use super::fetch;
use super::local::Target;
use super::{InstallSpec, InstallStats};

/// Parallel streams when the spec does not say.
pub const DEFAULT_JOBS: usize = 4;

/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Installs `spec` (see [`super::install`]).
pub fn install(
    spec: &InstallSpec,
    dry_run: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<InstallStats> {
    if spec.server.starts_with("rsync://") {
        return install_rsync(spec, dry_run, progress);
    }
    let client = Client::new(&spec.server, &spec.trust, spec.stall)?.with_token(spec.token.clone());
    let manifest = client.manifest(&spec.role, &spec.version)?;
    let tree_bytes = manifest.bytes();
    let entries = manifest.entries.len() as u64;
    if dry_run {
        progress(&format!(
            "would install {}/{} from {}: {entries} entries, {tree_bytes} bytes into {}",
            spec.role,
            spec.version,
            spec.server,
            spec.target.display()
        ));
        return Ok(InstallStats {
            files: entries,
            bytes: tree_bytes,
        });
    }
    report(&client, spec, TreeStatus::Started, 0, tree_bytes, 0, "");
    let started = Instant::now();
    let r = install_http(&client, &manifest, spec, progress);
    match &r {
        Ok(stats) => {
            let secs = started.elapsed().as_secs_f64();
            progress(&format!(
                "installed {}/{}: {} entries, {} bytes in {secs:.1} s ({:.1} MB/s)",
                spec.role,
                spec.version,
                stats.files,
                stats.bytes,
                stats.bytes as f64 / secs.max(1e-6) / 1e6
            ));
            report(
                &client,
                spec,
                TreeStatus::Succeeded,
                stats.bytes,
                tree_bytes,
                stats.files,
                "",
            );
        }
        Err(e) => report(
            &client,
            spec,
            TreeStatus::Failed,
            0,
            tree_bytes,
            0,
            &format!("{e:#}"),
        ),
    }
    r
}

fn report(
    client: &Client,
    spec: &InstallSpec,
    status: TreeStatus,
    bytes: u64,
    tree_bytes: u64,
    changes: u64,
    message: &str,
) {
    let Some(node) = &spec.node else { return };
    let r = TreeReport {
        action: TreeAction::Install,
        status,
        role: spec.role.clone(),
        from: None,
        version: spec.version.clone(),
        bytes,
        tree_bytes,
        changes,
        message: message.to_owned(),
    };
    if let Err(e) = client.report(node, &r) {
        tracing::warn!(error = %format!("{e:#}"), "install report not delivered");
    }
}

fn install_http(
    client: &Client,
    m: &Manifest,
    spec: &InstallSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<InstallStats> {
    let root = &spec.target;
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let target = Target::fresh(root);
    let mut made = 0u64;
    for e in m.entries.iter().filter(|e| e.kind == EntryKind::Dir) {
        target.ensure_dir(&e.path)?;
        made += 1;
    }
    for e in m.entries.iter().filter(|e| {
        matches!(
            e.kind,
            EntryKind::Symlink | EntryKind::Char | EntryKind::Block | EntryKind::Fifo
        )
    }) {
        target.write_special(e)?;
        made += 1;
    }
    let jobs = if spec.jobs == 0 {
        DEFAULT_JOBS
    } else {
        spec.jobs
    };
    let parts = m.stream_parts(jobs);
    let bytes = AtomicU64::new(0);
    let files = AtomicU64::new(0);
    let total_files = parts.iter().map(Vec::len).sum::<usize>();
    let total_bytes = m.bytes();
    let started = Instant::now();
    let (done_tx, done_rx) = mpsc::channel::<Result<()>>();
    let (say_tx, say_rx) = mpsc::channel::<String>();
    std::thread::scope(|s| -> Result<()> {
        let n = parts.iter().filter(|p| !p.is_empty()).count();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            let (tx, say_tx, target, bytes, files) =
                (done_tx.clone(), say_tx.clone(), &target, &bytes, &files);
            let count = parts.len();
            s.spawn(move || {
                let entries: Vec<&Entry> = part.iter().map(|&k| &m.entries[k]).collect();
                let open = || client.stream(m, i, count);
                let r = fetch::contents(
                    client,
                    &m.role,
                    &m.version,
                    &entries,
                    Some(&open),
                    &mut |j, body| {
                        let n = target.write_file(entries[j], body)?;
                        bytes.fetch_add(n, Ordering::Relaxed);
                        files.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    },
                    &|line| {
                        let _ = say_tx.send(format!("part {} of {count}: {line}", i + 1));
                    },
                )
                .map(|_| ())
                .with_context(|| format!("part {} of {count} of the tree", i + 1));
                let _ = tx.send(r);
            });
        }
        drop(done_tx);
        drop(say_tx);
        let mut finished = 0;
        let mut first_err = None;
        while finished < n {
            for line in say_rx.try_iter() {
                progress(&line);
            }
            match done_rx.recv_timeout(PROGRESS_EVERY) {
                Ok(r) => {
                    finished += 1;
                    if let Err(e) = r {
                        first_err.get_or_insert(e);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let b = bytes.load(Ordering::Relaxed);
                    let secs = started.elapsed().as_secs_f64().max(1e-6);
                    progress(&format!(
                        "installing {}/{}: {}/{total_files} files, {b}/{total_bytes} bytes, {:.1} MB/s",
                        m.role,
                        m.version,
                        files.load(Ordering::Relaxed),
                        b as f64 / secs / 1e6
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        for line in say_rx.try_iter() {
            progress(&line);
        }
        first_err.map_or(Ok(()), Err)
    })?;
    for e in m.entries.iter().filter(|e| e.kind == EntryKind::Hardlink) {
        target.write_hardlink(e)?;
        made += 1;
    }
    for e in m.entries.iter().rev().filter(|e| e.kind == EntryKind::Dir) {
        target.finish_dir(e)?;
    }
    Conf {
        server: spec.server.clone(),
        role: spec.role.clone(),
        version: spec.version.clone(),
        profile: spec.profile.clone(),
        node: spec.node.clone(),
    }
    .save(root)?;
    if let Some(token) = &spec.token {
        super::conf::save_token(root, token)?;
    }
    Ok(InstallStats {
        files: made + files.load(Ordering::Relaxed),
        bytes: bytes.load(Ordering::Relaxed),
    })
}

/// eDeploy's way: `rsync -aHAXS --numeric-ids rsync://SERVER/install/<version>/<role>/ TARGET/`.
fn install_rsync(
    spec: &InstallSpec,
    dry_run: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<InstallStats> {
    let src = format!(
        "{}/install/{}/{}/",
        spec.server.trim_end_matches('/'),
        spec.version,
        spec.role
    );
    let dest = format!("{}/", spec.target.display());
    let mut cmd = std::process::Command::new("rsync");
    cmd.args(["-aHAXS", "--numeric-ids", "--stats"]);
    if dry_run {
        cmd.arg("--dry-run");
    }
    cmd.arg(&src).arg(&dest);
    progress(&format!("rsync -aHAXS --numeric-ids {src} {dest}"));
    let out = cmd
        .output()
        .context("cannot run rsync (is it installed?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "rsync {src} {dest}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let stat = |key: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .map(|v| v.replace(',', ""))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stats = InstallStats {
        files: stat("Number of files transferred: ")
            .max(stat("Number of regular files transferred: ")),
        bytes: stat("Total transferred file size: "),
    };
    if !dry_run {
        Conf {
            server: spec.server.clone(),
            role: spec.role.clone(),
            version: spec.version.clone(),
            profile: spec.profile.clone(),
            node: spec.node.clone(),
        }
        .save(Path::new(&spec.target))?;
        if let Some(token) = &spec.token {
            super::conf::save_token(Path::new(&spec.target), token)?;
        }
    }
    progress(&format!(
        "rsync: {} files, {} bytes transferred",
        stats.files, stats.bytes
    ));
    Ok(stats)
}
