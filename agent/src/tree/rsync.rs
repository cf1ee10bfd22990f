//! eDeploy-style servers: the upgrade commands against an rsync daemon (`rsync://HOST:PORT`,
//! modules `install` and `metadata`), running `rsync` the way eDeploy's `edeploy` script did.
//!
//! Used when the server is an `rsync://` URL: a host installed by eDeploy (its conf has
//! `RSERV=`/`RSERV_PORT=` and no `SERVER=`) keeps upgrading from its rsync daemon. The rules
//! are the same as over HTTP (`docs/upgrades.md`): the implicit excludes, then `exclude`;
//! `add_only` paths are left out of the main sync and then created only when missing
//! (`--ignore-existing`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use super::conf::{write_atomic, Conf};
use super::filter::Filter;
use super::upgrade::{run_script, IMPLICIT_EXCLUDES};

/// Runs rsync with `args`; returns stdout, failing with rsync's stderr. Exit 24 (files
/// vanished) is not a failure.
fn rsync(args: &[String]) -> Result<String> {
    let out = Command::new("rsync")
        .args(args)
        .output()
        .context("cannot run rsync (is it installed?)")?;
    let code = out.status.code().unwrap_or(-1);
    anyhow::ensure!(
        out.status.success() || code == 24,
        "rsync {}: exit {code}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn url(server: &str, path: &str) -> String {
    format!("{}/{path}", server.trim_end_matches('/'))
}

/// `list`: the directories of `metadata/<from>/<role>/`.
pub fn list(server: &str, conf: &Conf) -> Result<Vec<String>> {
    let out = rsync(&[
        "--list-only".into(),
        url(server, &format!("metadata/{}/{}/", conf.version, conf.role)),
    ])?;
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .filter(|n| *n != ".")
        .map(str::to_owned)
        .collect();
    v.sort();
    Ok(v)
}

/// Fetches `metadata/<from>/<role>/<to>/` into `ROOT/var/lib/rdeploy/upgrade/<to>/`.
fn fetch_metadata(server: &str, conf: &Conf, to: &str, root: &Path) -> Result<PathBuf> {
    let dir = root.join("var/lib/rdeploy/upgrade").join(to);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    rsync(&[
        "-a".into(),
        "--delete".into(),
        url(
            server,
            &format!("metadata/{}/{}/{to}/", conf.version, conf.role),
        ),
        format!("{}/", dir.display()),
    ])
    .with_context(|| {
        format!(
            "no upgrade path from {} {} to {to} (metadata/{}/{}/{to}/)",
            conf.role, conf.version, conf.version, conf.role
        )
    })?;
    Ok(dir)
}

/// The exclude-from file for the main sync: implicit excludes, `exclude`, then the
/// `add_only` paths (handled by a second pass; `add_only` read as eDeploy read it).
fn rules_file(dir: &Path, exclude: &str, add_only: &str) -> Result<PathBuf> {
    let path = dir.join("rsync-rules");
    let add_only = super::filter::add_only_rules(add_only);
    write_atomic(
        &path,
        format!("{IMPLICIT_EXCLUDES}{exclude}\n{add_only}\n").as_bytes(),
    )?;
    Ok(path)
}

/// `test-upgrade` (`run` false) and `upgrade`.
pub fn upgrade(
    root: &Path,
    conf: &Conf,
    server: &str,
    to: &str,
    run: bool,
    no_reboot: bool,
) -> Result<ExitCode> {
    let (from, role) = (conf.version.as_str(), conf.role.as_str());
    let dir = fetch_metadata(server, conf, to, root)?;
    let Ok(exclude) = std::fs::read_to_string(dir.join("exclude")) else {
        anyhow::bail!("metadata/{from}/{role}/{to}/ has no exclude file: refusing to upgrade (eDeploy requires one; an empty file excludes nothing)");
    };
    let add_only = match std::fs::read_to_string(dir.join("add_only")) {
        Ok(a) => {
            anyhow::ensure!(
                !Filter::parse(&a).is_empty(),
                "metadata/{from}/{role}/{to}/add_only is empty: refusing to upgrade (eDeploy refuses an empty add_only; delete it instead)"
            );
            a
        }
        Err(_) => String::new(),
    };
    let rules = rules_file(&dir, &exclude, &add_only)?;
    let src = url(server, &format!("install/{to}/{role}/"));
    let dest = format!("{}/", root.display());
    let mut main: Vec<String> = [
        "-aHAXS",
        "--numeric-ids",
        "--delete-after",
        "--itemize-changes",
        "--stats",
    ]
    .map(str::to_owned)
    .to_vec();
    main.push(format!("--exclude-from={}", rules.display()));
    main.extend([src.clone(), dest.clone()]);
    let mut second: Vec<String> = vec![];
    if !add_only.is_empty() {
        let inc = dir.join("rsync-add-only");
        // Excluded paths stay excluded; then the add_only paths; then directories (pruned
        // when nothing inside is wanted); nothing else.
        let mut text = String::new();
        for line in IMPLICIT_EXCLUDES
            .lines()
            .chain(exclude.lines())
            .map(str::trim_end)
        {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with("+ ") || line.starts_with("- ") {
                text.push_str(&format!("{line}\n"));
            } else {
                text.push_str(&format!("- {line}\n"));
            }
        }
        for line in super::filter::add_only_rules(&add_only)
            .lines()
            .map(str::trim_end)
        {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line == "!" {
                text.push_str("!\n");
                continue;
            }
            // A path add_only does not name (eDeploy's `- *`) is left out of this pass.
            if let Some(pat) = line.strip_prefix("+ ") {
                text.push_str(&format!("- {pat}\n"));
                continue;
            }
            text.push_str(&format!("+ {line}\n"));
            if let Some(d) = line.strip_suffix('/') {
                text.push_str(&format!("+ {d}/***\n"));
            }
        }
        text.push_str("+ */\n- *\n");
        write_atomic(&inc, text.as_bytes())?;
        second = [
            "-aHAXS",
            "--numeric-ids",
            "--ignore-existing",
            "--prune-empty-dirs",
            "--itemize-changes",
        ]
        .map(str::to_owned)
        .to_vec();
        second.push(format!("--filter=merge {}", inc.display()));
        second.extend([src, dest]);
    }
    if !run {
        for args in [&mut main, &mut second] {
            if !args.is_empty() {
                args.insert(0, "--dry-run".into());
                print!("{}", rsync(args)?);
            }
        }
        println!("test-upgrade {role} {from} -> {to} (rsync): nothing written");
        return Ok(ExitCode::SUCCESS);
    }
    let env = [
        ("RDEPLOY_ROLE", role),
        ("RDEPLOY_FROM", from),
        ("RDEPLOY_TO", to),
    ];
    if dir.join("pre").exists() {
        let code = run_script(&dir.join("pre"), root, &env)?;
        anyhow::ensure!(code == 0, "pre exited with {code}: upgrade not started");
    }
    let out = rsync(&main)?;
    if !second.is_empty() {
        rsync(&second)?;
    }
    let mut post = 0;
    if dir.join("post").exists() {
        post = run_script(&dir.join("post"), root, &env)?;
        anyhow::ensure!(
            post == 0 || post == 100,
            "post exited with {post}: the tree is synced, the version stays {from}; run the upgrade again"
        );
    }
    let lib = root.join("var/lib/rdeploy");
    write_atomic(&lib.join("exclude"), exclude.as_bytes())?;
    write_atomic(&lib.join("add_only"), add_only.as_bytes())?;
    let mut next = conf.clone();
    next.version = to.to_owned();
    next.save(root)?;
    let received = out
        .lines()
        .find_map(|l| l.strip_prefix("Total bytes received: "))
        .unwrap_or("?")
        .to_owned();
    println!("upgraded {role} {from} -> {to} with rsync: {received} bytes received");
    if post == 100 {
        println!("post asked for a reboot (exit 100)");
        if root == Path::new("/") && !no_reboot {
            let _ = Command::new("reboot").status();
        }
        return Ok(ExitCode::from(100));
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify`: `rsync -c --dry-run --delete` of the current version; exit 1 when anything
/// would change.
pub fn verify(root: &Path, conf: &Conf, server: &str) -> Result<ExitCode> {
    let lib = root.join("var/lib/rdeploy");
    let read = |n: &str| std::fs::read_to_string(lib.join(n)).unwrap_or_default();
    let tmp = lib.join("verify");
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let rules = rules_file(&tmp, &read("exclude"), &read("add_only"))?;
    let out = rsync(&[
        "-aHAXSc".into(),
        "--dry-run".into(),
        "--numeric-ids".into(),
        "--delete".into(),
        "--itemize-changes".into(),
        format!("--exclude-from={}", rules.display()),
        url(server, &format!("install/{}/{}/", conf.version, conf.role)),
        format!("{}/", root.display()),
    ])?;
    // Directory time-only lines (".d..t......") are noise; a directory holding something
    // excluded is kept, as in an upgrade.
    let diffs: Vec<&str> = out
        .lines()
        .filter(|l| {
            !l.trim().is_empty()
                && !l.starts_with(".d..t")
                && !l.starts_with("cannot delete non-empty directory")
        })
        .collect();
    for l in &diffs {
        println!("{l}");
    }
    if diffs.is_empty() {
        println!("{} {}: the tree matches (rsync)", conf.role, conf.version);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} {}: {} differences",
            conf.role,
            conf.version,
            diffs.len()
        );
        Ok(ExitCode::from(1))
    }
}
