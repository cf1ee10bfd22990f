//! Role trees end to end: the real `rdeploy serve` serving `install/<version>/<role>/`, the real
//! `rdeploy-agent` installing version 1 into a temporary root, then `upgrade list`,
//! `test-upgrade`, `upgrade`, `verify` against it, an upgrade killed half way and run
//! again, and an install whose transfers stall (a relay that stops forwarding) and go on
//! from where they stopped. Every assertion is on files and exit codes; nothing is timed
//! but the stalling install's bound.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use rdeploy_tests::{binary, copy_dir, run_binary, run_binary_env, workspace_path, Output, Server};

/// Files under `var/data/` in both versions (all of them change): enough work that a kill
/// lands in the middle of an upgrade.
const DATA_FILES: usize = 3000;

fn write(root: &Path, rel: &str, content: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&p, content)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Gives every regular file under `root` the modification time `secs` (Unix seconds): real
/// versions of a tree are built at different times, and rsync's quick check (size and
/// whole-second mtime, as eDeploy used it) would skip a same-size file changed within the
/// same second as its previous version.
fn set_mtimes(root: &Path, secs: u64) -> Result<()> {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                std::fs::File::options()
                    .write(true)
                    .open(entry.path())?
                    .set_modified(when)?;
            }
        }
    }
    Ok(())
}

fn am_root(dir: &Path) -> Result<bool> {
    let probe = dir.join(".uid-probe");
    std::fs::write(&probe, "")?;
    let uid = std::fs::metadata(&probe)?.uid();
    std::fs::remove_file(&probe)?;
    Ok(uid == 0)
}

/// Version 1 of role `base`.
fn build_v1(t: &Path) -> Result<()> {
    write(t, "etc/motd", "welcome to v1\n", 0o644)?;
    write(t, "etc/app.conf", "setting = v1\n", 0o644)?;
    write(t, "etc/old.txt", "only in v1\n", 0o644)?;
    write(t, "usr/bin/tool", "#!/bin/sh\necho v1\n", 0o755)?;
    std::fs::hard_link(t.join("usr/bin/tool"), t.join("usr/bin/tool-again"))?;
    write(t, "usr/lib/libx.so.1", "lib v1", 0o644)?;
    std::os::unix::fs::symlink("libx.so.1", t.join("usr/lib/libx.so"))?;
    write(t, "gone/deep/file", "removed in v2", 0o600)?;
    for i in 0..DATA_FILES {
        write(
            t,
            &format!("var/data/f{i:04}"),
            &format!("v1 data {i}\n"),
            0o644,
        )?;
    }
    set_mtimes(t, 1_700_000_000)
}

/// Version 2: changed, new, removed and renamed entries; a config file under `exclude`; two
/// files only `add_only` creates; an owner change.
fn build_v2(t: &Path, root: bool) -> Result<()> {
    write(t, "etc/motd", "welcome to v2, now longer\n", 0o600)?;
    write(t, "etc/app.conf", "setting = v2\n", 0o644)?;
    write(t, "etc/new.txt", "new in v2\n", 0o644)?;
    write(t, "etc/seed.conf", "seed from v2\n", 0o644)?;
    write(t, "etc/local.seed", "seed from v2\n", 0o644)?;
    write(t, "usr/bin/tool", "#!/bin/sh\necho v2\n", 0o755)?;
    std::fs::hard_link(t.join("usr/bin/tool"), t.join("usr/bin/tool-again"))?;
    write(t, "usr/lib/libx.so.2", "lib v2", 0o644)?;
    std::os::unix::fs::symlink("libx.so.2", t.join("usr/lib/libx.so"))?;
    write(t, "srv/www/index.html", "<p>v2</p>\n", 0o644)?;
    if root {
        std::os::unix::fs::chown(t.join("srv/www/index.html"), Some(1234), Some(5678))?;
    }
    for i in 0..DATA_FILES {
        write(
            t,
            &format!("var/data/f{i:04}"),
            &format!("v2 data {i}, changed\n"),
            0o644,
        )?;
    }
    set_mtimes(t, 1_700_003_600)
}

/// Every entry under `root` (except `skip` prefixes): type, mode, owner, mtime for files,
/// content or link target; hard links as `link to FIRST`.
fn describe(root: &Path, skip: &[&str]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(root.join(&rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let key = r.to_string_lossy().into_owned();
            if skip
                .iter()
                .any(|s| key == *s || key.starts_with(&format!("{s}/")))
            {
                continue;
            }
            let p = root.join(&r);
            let m = std::fs::symlink_metadata(&p)?;
            let owner = format!("{}:{}", m.uid(), m.gid());
            let mode = m.mode() & 0o7777;
            let d = if m.is_dir() {
                stack.push(r.clone());
                format!("dir {mode:o} {owner}")
            } else if m.file_type().is_symlink() {
                format!("symlink -> {}", std::fs::read_link(&p)?.display())
            } else if let Some(first) = inodes.get(&(m.dev(), m.ino())) {
                format!("link to {first}")
            } else {
                inodes.insert((m.dev(), m.ino()), key.clone());
                format!(
                    "file {mode:o} {owner} mtime {} {:?}",
                    m.mtime(),
                    std::fs::read_to_string(&p)?
                )
            };
            out.insert(key, d);
        }
    }
    Ok(out)
}

fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("only in expected: {k} {v}")),
            Some(w) if w != v => out.push(format!("{k}: expected {v}, got {w}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push(format!("only in actual: {k} {v}"));
        }
    }
    out
}

/// A tree description without the agent's own records (`var/lib/rdeploy/`: conf, saved
/// rules, hook logs), which a refused or dry upgrade may still write.
fn without_records(tree: BTreeMap<String, String>) -> BTreeMap<String, String> {
    tree.into_iter()
        .filter(|(k, _)| !k.starts_with("var/lib/rdeploy/"))
        .collect()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.code, o.stdout, o.stderr
    )
}

/// A server with versions 1 and 2 of role `base`, upgrade metadata 1 → 2 (and a broken
/// 1 → 3 without an exclude file), a node, and an empty root to install into.
struct Env {
    dir: tempfile::TempDir,
    server: Server,
    node: String,
    /// The node's token (its upload reply's): the install keeps it for upgrade reports.
    token: String,
    root: PathBuf,
    as_root: bool,
}

impl Env {
    fn new() -> Result<Env> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let as_root = am_root(dir.path())?;
        build_v1(&data.join("install/1/base"))?;
        build_v2(&data.join("install/2/base"), as_root)?;
        build_v2(&data.join("install/3/base"), as_root)?;
        let meta = data.join("metadata/1/base/2");
        write(
            &meta,
            "exclude",
            "# local configuration stays\n/etc/app.conf\n/srv/keep/\n",
            0o644,
        )?;
        write(
            &meta,
            "add_only",
            "/etc/seed.conf\n/etc/local.seed\n",
            0o644,
        )?;
        write(
            &meta,
            "pre",
            "#!/bin/sh\necho \"pre $RDEPLOY_FROM $RDEPLOY_TO\" >> \"$RDEPLOY_ROOT/var/lib/rdeploy/hooks.log\"\n",
            0o755,
        )?;
        write(
            &meta,
            "post",
            "#!/bin/sh\necho \"post $RDEPLOY_ROLE $RDEPLOY_TO\" >> \"$RDEPLOY_ROOT/var/lib/rdeploy/hooks.log\"\n",
            0o755,
        )?;
        std::fs::create_dir_all(data.join("metadata/1/base/3"))?;
        let config = dir.path().join("config");
        copy_dir(&workspace_path("examples/config"), &config)?;
        let server = Server::start(&config, &data, &[])?;
        let hw = std::fs::read_to_string(workspace_path("examples/hw/kvm.json"))?;
        let reply: serde_json::Value = reqwest::blocking::Client::new()
            .post(server.url("/upload"))
            .header("Accept", "application/json")
            .body(hw)
            .send()?
            .json()?;
        let node = reply["node"]
            .as_str()
            .with_context(|| format!("no node id in {reply}"))?
            .to_owned();
        let token = reply["token"]
            .as_str()
            .with_context(|| format!("no token in {reply}"))?
            .to_owned();
        let root = dir.path().join("root");
        Ok(Env {
            dir,
            server,
            node,
            token,
            root,
            as_root,
        })
    }

    fn agent(&self, args: &[&str]) -> Result<Output> {
        let root = self.root.to_string_lossy().into_owned();
        let mut all = vec!["upgrade", "--root", root.as_str()];
        all.extend_from_slice(args);
        run_binary("rdeploy-agent", &all)
    }

    fn install_v1(&self) -> Result<()> {
        let root = self.root.to_string_lossy().into_owned();
        let out = run_binary_env(
            "rdeploy-agent",
            &[
                "upgrade",
                "--root",
                root.as_str(),
                "--server",
                &self.server.base,
                "install",
                "--role",
                "base",
                "--version",
                "1",
                "--profile",
                "kvm",
                "--node",
                &self.node,
            ],
            &[("RDEPLOY_NODE_TOKEN", self.token.as_str())],
        )?;
        ensure!(out.code == Some(0), "install: {}", show(&out));
        Ok(())
    }

    fn data(&self, rel: &str) -> PathBuf {
        self.dir.path().join("data").join(rel)
    }

    /// What the root must hold after the upgrade to 2: version 2's tree, except the
    /// excluded config file (still version 1's), the add_only file that existed (kept), and
    /// the excluded directory's local file.
    fn expected_v2(&self) -> Result<BTreeMap<String, String>> {
        let mut want = describe(&self.data("install/2/base"), &[])?;
        let v1 = describe(&self.data("install/1/base"), &[])?;
        let conf = v1
            .get("etc/app.conf")
            .context("v1 has etc/app.conf")?
            .clone();
        want.insert("etc/app.conf".into(), conf);
        want.insert(
            "etc/local.seed".into(),
            describe_one(&self.root, "etc/local.seed")?,
        );
        want.insert("srv/keep".into(), describe_one(&self.root, "srv/keep")?);
        want.insert(
            "srv/keep/state".into(),
            describe_one(&self.root, "srv/keep/state")?,
        );
        want.insert("var/lib".into(), describe_one(&self.root, "var/lib")?);
        want.insert(
            "var/lib/rdeploy".into(),
            describe_one(&self.root, "var/lib/rdeploy")?,
        );
        Ok(want)
    }

    fn actual(&self) -> Result<BTreeMap<String, String>> {
        describe(&self.root, &["var/lib/rdeploy"]).map(|mut d| {
            if let Ok(v) = describe_one(&self.root, "var/lib/rdeploy") {
                d.insert("var/lib/rdeploy".into(), v);
            }
            d
        })
    }

    /// Local changes made by hand after the install: an add_only file that already exists,
    /// a file in an excluded directory, a stray file the upgrade deletes.
    fn local_edits(&self) -> Result<()> {
        write(&self.root, "etc/local.seed", "mine, keep it\n", 0o640)?;
        write(&self.root, "srv/keep/state", "local state\n", 0o600)?;
        write(&self.root, "stray.txt", "not in any version\n", 0o644)?;
        Ok(())
    }
}

fn describe_one(root: &Path, rel: &str) -> Result<String> {
    let parent = Path::new(rel).parent().unwrap_or(Path::new(""));
    let d = describe(&root.join(parent), &[])?;
    let name = Path::new(rel)
        .file_name()
        .context("no file name")?
        .to_string_lossy()
        .into_owned();
    d.get(&name)
        .cloned()
        .with_context(|| format!("{rel} missing"))
}

#[test]
fn install_then_upgrade_gives_the_exact_tree() -> Result<()> {
    let env = Env::new()?;
    env.install_v1()?;

    // The install is version 1's tree exactly, plus the conf.
    let got = describe(&env.root, &["var/lib"])?;
    let want = describe(&env.data("install/1/base"), &[])?;
    let diff = differences(&want, &got);
    ensure!(diff.is_empty(), "install differs:\n{}", diff.join("\n"));
    let conf = std::fs::read_to_string(env.root.join("var/lib/rdeploy/conf"))?;
    for line in ["VERS=1", "ROLE=base", "PROFILE=kvm", "RSERV=127.0.0.1"] {
        ensure!(
            conf.lines().any(|l| l == line),
            "{line} missing from:\n{conf}"
        );
    }
    assert_eq!(env.agent(&["version"])?.stdout, "1\n");
    assert_eq!(env.agent(&["role"])?.stdout, "base\n");
    assert_eq!(env.agent(&["profile"])?.stdout, "kvm\n");
    let nodes = env.server.get_json("/nodes")?;
    let me = nodes["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["id"] == env.node.as_str()))
        .context("node missing")?;
    assert_eq!(
        (me["role"].as_str(), me["version"].as_str()),
        (Some("base"), Some("1"))
    );

    env.local_edits()?;
    let out = env.agent(&["list"])?;
    assert_eq!(out.stdout, "2\n3\n", "{}", show(&out));

    // test-upgrade says what would change and changes nothing.
    let before = env.actual()?;
    let out = env.agent(&["test-upgrade", "2"])?;
    ensure!(out.code == Some(0), "{}", show(&out));
    for line in [
        "update file    etc/motd (size 14 -> 26)",
        "create file    etc/seed.conf",
        "delete entry   stray.txt",
        "delete entry   gone",
        "update symlink usr/lib/libx.so (-> libx.so.1 instead of libx.so.2)",
    ] {
        ensure!(
            out.stdout.lines().any(|l| l == line),
            "no {line:?} in {}",
            show(&out)
        );
    }
    ensure!(
        !out.stdout.contains("app.conf")
            && !out.stdout.contains("local.seed")
            && !out.stdout.contains("srv/keep"),
        "excluded or add_only paths planned: {}",
        show(&out)
    );
    ensure!(
        out.stdout.contains("bytes to transfer of a"),
        "{}",
        show(&out)
    );
    assert_eq!(differences(&before, &env.actual()?), Vec::<String>::new());

    // No exclude file: refused, nothing written.
    let out = env.agent(&["upgrade", "3"])?;
    assert_eq!(out.code, Some(2), "{}", show(&out));
    ensure!(
        out.stderr.contains("has no exclude file: refusing"),
        "{}",
        show(&out)
    );
    assert_eq!(differences(&before, &env.actual()?), Vec::<String>::new());

    // The upgrade, in its short form (`rdeploy-agent upgrade 2`).
    let out = env.agent(&["2"])?;
    ensure!(out.code == Some(0), "upgrade: {}", show(&out));
    ensure!(
        out.stdout.contains("bytes transferred of a"),
        "{}",
        show(&out)
    );
    let diff = differences(&env.expected_v2()?, &env.actual()?);
    ensure!(
        diff.is_empty(),
        "upgraded tree differs:\n{}",
        diff.join("\n")
    );
    let hooks = std::fs::read_to_string(env.root.join("var/lib/rdeploy/hooks.log"))?;
    assert_eq!(hooks, "pre 1 2\npost base 2\n");
    assert_eq!(env.agent(&["version"])?.stdout, "2\n");
    if env.as_root {
        let m = std::fs::metadata(env.root.join("srv/www/index.html"))?;
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
    }
    let a = std::fs::metadata(env.root.join("usr/bin/tool"))?;
    let b = std::fs::metadata(env.root.join("usr/bin/tool-again"))?;
    assert_eq!(a.ino(), b.ino(), "the hard link was not kept");

    // Only what changed travelled: the data files, motd, tool, lib, new files; not the
    // unchanged ones. The node shows version 2 and the upgrade's events.
    let node = env.server.get_json(&format!("/nodes/{}", env.node))?;
    assert_eq!(node["version"], "2");
    let events: Vec<String> = node["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter(|e| e["kind"] == "upgrade")
        .map(|e| e["status"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(events, ["started", "succeeded"]);

    // verify: clean, then a file modified by hand is reported; excluded ones are not.
    let out = env.agent(&["verify"])?;
    assert_eq!(out.code, Some(0), "{}", show(&out));
    write(&env.root, "etc/motd", "welcome to v2, now LONGER\n", 0o600)?;
    std::fs::remove_file(env.root.join("etc/new.txt"))?;
    let out = env.agent(&["verify"])?;
    assert_eq!(out.code, Some(1), "{}", show(&out));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "differs etc/motd (content)",
            "missing etc/new.txt",
            "base 2: 2 differences"
        ],
        "{}",
        show(&out)
    );
    Ok(())
}

#[test]
fn an_upgrade_killed_half_way_finishes_when_run_again() -> Result<()> {
    let env = Env::new()?;
    env.install_v1()?;
    env.local_edits()?;
    let mut child = Command::new(binary("rdeploy-agent")?)
        .args(["upgrade", "--jobs", "2", "--root"])
        .arg(&env.root)
        .args(["upgrade", "2", "--itemize"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // Wait for the first data file, then stop reading: the agent blocks on its full pipe
    // long before the last of the data files, and is killed there.
    let mut seen = 0;
    for line in lines.by_ref() {
        let line = line?;
        if line.contains("var/data/f") {
            seen += 1;
            if seen == 20 {
                break;
            }
        }
    }
    ensure!(seen == 20, "the agent ended before 20 data files");
    child.kill()?;
    child.wait()?;
    drop(lines);

    // Half way: still version 1, some data files new, some old.
    assert_eq!(env.agent(&["version"])?.stdout, "1\n");
    let data: Vec<String> = (0..DATA_FILES)
        .map(|i| std::fs::read_to_string(env.root.join(format!("var/data/f{i:04}"))))
        .collect::<Result<_, _>>()?;
    let new = data.iter().filter(|d| d.starts_with("v2")).count();
    ensure!(
        new > 0 && new < DATA_FILES,
        "{new} of {DATA_FILES} data files are new"
    );

    let out = env.agent(&["upgrade", "2"])?;
    ensure!(out.code == Some(0), "second run: {}", show(&out));
    let diff = differences(&env.expected_v2()?, &env.actual()?);
    ensure!(
        diff.is_empty(),
        "tree after the second run differs:\n{}",
        diff.join("\n")
    );
    assert_eq!(env.agent(&["version"])?.stdout, "2\n");
    let out = env.agent(&["verify"])?;
    assert_eq!(out.code, Some(0), "{}", show(&out));
    Ok(())
}

#[test]
fn the_server_lists_roles_and_refuses_paths_out_of_a_tree() -> Result<()> {
    let env = Env::new()?;
    let roles = env.server.get_json("/roles")?;
    let versions: Vec<&str> = roles["roles"]
        .as_array()
        .context("roles")?
        .iter()
        .filter_map(|r| r["version"].as_str())
        .collect();
    assert_eq!(versions, ["1", "2", "3"]);
    let data = env.dir.path().join("data");
    let out = run_binary("rdeploy", &["roles", "--data-dir", &data.to_string_lossy()])?;
    ensure!(
        out.code == Some(0) && out.stdout.contains("base"),
        "{}",
        show(&out)
    );
    for bad in [
        "/roles/base/..%2F..%2Fetc/manifest",
        "/roles/..%2Fbase/1/manifest",
        "/roles/base/1/blob/..%2F..%2Fetc%2Fpasswd",
        "/roles/base/1/upgrades/2/..%2F..%2Fsecret",
    ] {
        let v = env.server.get_json(bad)?;
        let code = v["error"].as_str().unwrap_or("");
        ensure!(
            matches!(code, "bad_name" | "bad_hash" | "bad_metadata_file"),
            "{bad}: {v}"
        );
    }
    let post = |body: serde_json::Value| -> Result<serde_json::Value> {
        Ok(reqwest::blocking::Client::new()
            .post(env.server.url("/roles/base/1/blobs"))
            .json(&body)
            .send()?
            .json()?)
    };
    let v = post(serde_json::json!({"sha256": ["../../etc/passwd"]}))?;
    assert_eq!(v["error"], "bad_hash", "{v}");
    let v = post(serde_json::json!({"sha256": ["0".repeat(64)]}))?;
    assert_eq!(v["error"], "no_such_blob", "{v}");
    // The manifest lists the symlink as data.
    let m = env.server.get_json("/roles/base/1/manifest")?;
    let link = m["entries"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["path"] == "usr/lib/libx.so"))
        .context("symlink missing")?;
    assert_eq!(
        (link["type"].as_str(), link["target"].as_str()),
        (Some("symlink"), Some("libx.so.1"))
    );
    Ok(())
}

/// A tree edited on the server under an install: a stream already asked for ends early (the
/// file no longer matches what was hashed), and once the manifest was computed again, a
/// stream for the old manifest is refused.
#[test]
fn a_tree_that_changed_is_never_served_as_a_mix() -> Result<()> {
    let env = Env::new()?;
    let m = env.server.get_json("/roles/base/1/manifest")?;
    let id = m["id"].as_str().context("no id")?.to_owned();
    write(
        &env.data("install/1/base"),
        "etc/motd",
        "edited on the server\n",
        0o644,
    )?;
    // etc/ comes first in the manifest: part 0 of 1 holds etc/motd.
    let early = reqwest::blocking::get(env.server.url(&format!(
        "/roles/base/1/stream?manifest={id}&part=0&parts=1"
    )));
    // Either the server has not looked at the tree again yet (it streams the old manifest
    // and cuts the connection at the changed file: before or after the status line,
    // depending on how fast it gets there) or it has (409 tree_changed): never a whole body
    // that mixes the two versions.
    match early {
        Err(e) => ensure!(
            !e.is_connect() && !e.is_timeout(),
            "stream of a changed tree: {e:#}"
        ),
        Ok(r) if r.status() == 200 => ensure!(r.bytes().is_err(), "the stream did not end early"),
        Ok(r) if r.status() == 409 => {
            let v: serde_json::Value = r.json()?;
            assert_eq!(v["error"], "tree_changed", "{v}");
        }
        Ok(r) => anyhow::bail!("stream of a changed tree: status {}", r.status()),
    }
    let again = env.server.get_json("/roles/base/1/manifest")?;
    assert_ne!(again["id"], m["id"]);
    let v = env.server.get_json(&format!(
        "/roles/base/1/stream?manifest={id}&part=0&parts=2"
    ))?;
    assert_eq!(v["error"], "tree_changed", "{v}");
    Ok(())
}

/// An rsync daemon on loopback serving the data dir's `install` and `metadata` modules,
/// killed when dropped.
struct RsyncDaemon {
    child: std::process::Child,
    url: String,
    port: u16,
}

impl RsyncDaemon {
    fn start(env: &Env) -> Result<RsyncDaemon> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = env.dir.path().join("rsyncd.conf");
        let mut text = String::from("use chroot = no\nuid = 0\ngid = 0\n");
        for module in ["install", "metadata"] {
            text.push_str(&format!(
                "[{module}]\npath = {}\nread only = yes\n",
                env.data(module).display()
            ));
        }
        std::fs::write(&conf, text)?;
        let child = Command::new("rsync")
            .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--config={}", conf.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start an rsync daemon: install rsync (scripts/apt-packages)")?;
        let daemon = RsyncDaemon {
            child,
            url: format!("rsync://127.0.0.1:{port}"),
            port,
        };
        // The daemon is up when it accepts a connection.
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(daemon);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        anyhow::bail!("the rsync daemon does not accept connections")
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// eDeploy's transfer: an `rsync://` server makes the agent run rsync against a real rsync
/// daemon, for the install and for every upgrade command, with the same result as over HTTP.
#[test]
fn an_rsync_server_installs_and_upgrades_with_rsync() -> Result<()> {
    let env = Env::new()?;
    let daemon = RsyncDaemon::start(&env)?;
    let out = env.agent(&[
        "--server",
        &daemon.url,
        "install",
        "--role",
        "base",
        "--version",
        "1",
        "--profile",
        "kvm",
    ])?;
    ensure!(out.code == Some(0), "{}", show(&out));
    let got = describe(&env.root, &["var/lib"])?;
    let want = describe(&env.data("install/1/base"), &[])?;
    let diff = differences(&want, &got);
    ensure!(
        diff.is_empty(),
        "rsync install differs:\n{}",
        diff.join("\n")
    );
    let conf = std::fs::read_to_string(env.root.join("var/lib/rdeploy/conf"))?;
    ensure!(
        conf.contains(&format!("\nRSERV_PORT={}\n", daemon.port)) && conf.contains("\nVERS=1\n"),
        "{conf}"
    );

    env.local_edits()?;
    let out = env.agent(&["list"])?;
    assert_eq!(out.stdout, "2\n3\n", "{}", show(&out));
    let before = env.actual()?;
    let out = env.agent(&["test-upgrade", "2"])?;
    ensure!(
        out.code == Some(0) && out.stdout.contains("etc/motd"),
        "{}",
        show(&out)
    );
    assert_eq!(
        differences(&without_records(before), &without_records(env.actual()?)),
        Vec::<String>::new()
    );
    let out = env.agent(&["upgrade", "3"])?;
    ensure!(
        out.code == Some(2) && out.stderr.contains("has no exclude file"),
        "{}",
        show(&out)
    );

    let out = env.agent(&["upgrade", "2"])?;
    ensure!(out.code == Some(0), "rsync upgrade: {}", show(&out));
    let diff = differences(&env.expected_v2()?, &env.actual()?);
    ensure!(
        diff.is_empty(),
        "tree after an rsync upgrade differs:\n{}",
        diff.join("\n")
    );
    let hooks = std::fs::read_to_string(env.root.join("var/lib/rdeploy/hooks.log"))?;
    assert_eq!(hooks, "pre 1 2\npost base 2\n");
    assert_eq!(env.agent(&["version"])?.stdout, "2\n");
    let out = env.agent(&["verify"])?;
    assert_eq!(out.code, Some(0), "{}", show(&out));
    write(&env.root, "etc/motd", "welcome to v2, now LONGER\n", 0o600)?;
    let out = env.agent(&["verify"])?;
    ensure!(
        out.code == Some(1) && out.stdout.contains("etc/motd"),
        "{}",
        show(&out)
    );
    Ok(())
}

/// `pre` failing stops the upgrade before anything changes; `post` exiting 100 asks for a
/// reboot (exit 100; with `--root` other than `/` nothing reboots) after the version is
/// recorded. Both attempts are events on the node.
#[test]
fn pre_can_refuse_and_post_can_ask_for_a_reboot() -> Result<()> {
    let env = Env::new()?;
    // Versions 4 and 5 are version 2's tree under other names.
    std::os::unix::fs::symlink("2", env.data("install/4"))?;
    std::os::unix::fs::symlink("2", env.data("install/5"))?;
    let m4 = env.data("metadata/1/base/4");
    write(&m4, "exclude", "", 0o644)?;
    write(&m4, "post", "#!/bin/sh\nexit 100\n", 0o755)?;
    let m5 = env.data("metadata/1/base/5");
    write(&m5, "exclude", "", 0o644)?;
    write(&m5, "pre", "#!/bin/sh\necho not now >&2\nexit 3\n", 0o755)?;
    env.install_v1()?;
    let before = env.actual()?;

    let out = env.agent(&["upgrade", "5"])?;
    assert_eq!(out.code, Some(2), "{}", show(&out));
    ensure!(
        out.stderr
            .contains("pre exited with 3: upgrade not started"),
        "{}",
        show(&out)
    );
    assert_eq!(
        differences(&without_records(before), &without_records(env.actual()?)),
        Vec::<String>::new()
    );
    assert_eq!(env.agent(&["version"])?.stdout, "1\n");

    let out = env.agent(&["upgrade", "4"])?;
    assert_eq!(out.code, Some(100), "{}", show(&out));
    ensure!(
        out.stdout.contains("post asked for a reboot (exit 100)"),
        "{}",
        show(&out)
    );
    assert_eq!(env.agent(&["version"])?.stdout, "4\n");
    let out = env.agent(&["verify"])?;
    assert_eq!(out.code, Some(0), "{}", show(&out));

    let node = env.server.get_json(&format!("/nodes/{}", env.node))?;
    let events: Vec<(String, String)> = node["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter(|e| e["kind"] == "upgrade")
        .map(|e| {
            (
                e["status"].as_str().unwrap_or("").to_owned(),
                e["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let statuses: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["started", "failed", "started", "succeeded"]);
    ensure!(events[1].1.contains("pre exited with 3"), "{events:?}");
    ensure!(
        events[3].1.contains("reboot requested by post"),
        "{events:?}"
    );
    assert_eq!(node["version"], "4");
    Ok(())
}

/// A TCP relay to the server that stalls the answers to the first `stalls` tree content
/// requests (stream parts, blobs): after `budget` bytes of the answer it forwards nothing
/// more and holds the connection open, as a relay or a network that stops moving would.
struct StallingRelay {
    base: String,
    stalled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl StallingRelay {
    fn start(server: &str, stalls: usize, budget: u64) -> Result<StallingRelay> {
        use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
        use std::sync::Arc;
        let upstream = server
            .strip_prefix("http://")
            .context("server URL")?
            .to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let stalled = Arc::new(AtomicUsize::new(0));
        let count = stalled.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    return;
                };
                let (count, armed, closed) = (
                    count.clone(),
                    Arc::new(AtomicU64::new(u64::MAX)),
                    Arc::new(AtomicBool::new(false)),
                );
                let sent = Arc::new(AtomicU64::new(0));
                // Client to server: arms the stall when a content request goes by.
                let (Ok(mut from), Ok(mut to)) = (client.try_clone(), server.try_clone()) else {
                    return;
                };
                let (armed_w, closed_w, sent_w) = (armed.clone(), closed.clone(), sent.clone());
                std::thread::spawn(move || {
                    use std::io::{Read as _, Write as _};
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let text = String::from_utf8_lossy(&buf[..n]);
                        if text.contains("/stream?") || text.contains("/blobs") {
                            armed_w.store(sent_w.load(Ordering::SeqCst), Ordering::SeqCst);
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    closed_w.store(true, Ordering::SeqCst);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
                // Server to client: forwards, or stalls past the budget.
                let (mut from, mut to) = (server, client);
                std::thread::spawn(move || {
                    use std::io::{Read as _, Write as _};
                    let mut buf = [0u8; 1024];
                    let mut stalling = false;
                    loop {
                        let at = armed.load(Ordering::SeqCst);
                        let now = sent.load(Ordering::SeqCst);
                        if !stalling && at != u64::MAX && now - at >= budget {
                            stalling = count.fetch_add(1, Ordering::SeqCst) < stalls;
                            armed.store(u64::MAX, Ordering::SeqCst);
                        }
                        if stalling {
                            if closed.load(Ordering::SeqCst) {
                                break;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            continue;
                        }
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Ok(StallingRelay { base, stalled })
    }
}

#[test]
fn an_install_whose_transfers_stall_goes_on_from_where_they_stopped() -> Result<()> {
    let env = Env::new()?;
    // The two stream parts stall after 6 KB, and the first request for what was left too.
    let relay = StallingRelay::start(&env.server.base, 3, 6000)?;
    let root = env.root.to_string_lossy().into_owned();
    let started = std::time::Instant::now();
    let out = run_binary_env(
        "rdeploy-agent",
        &[
            "upgrade",
            "--root",
            root.as_str(),
            "--server",
            &relay.base,
            "--jobs",
            "2",
            "--stall-timeout",
            "2s",
            "install",
            "--role",
            "base",
            "--version",
            "1",
            "--profile",
            "kvm",
            "--node",
            &env.node,
        ],
        &[("RDEPLOY_NODE_TOKEN", env.token.as_str())],
    )?;
    ensure!(out.code == Some(0), "install: {}", show(&out));
    let stalls = relay.stalled.load(std::sync::atomic::Ordering::SeqCst);
    ensure!(stalls >= 3, "{stalls} transfers stalled, 3 expected");
    let retries = out.stdout.matches("transfer failed at file").count();
    ensure!(
        retries == 3,
        "{retries} transfers asked again for, 3 expected: {}",
        show(&out)
    );
    ensure!(
        out.stdout.contains("no data within the stall time-out"),
        "the stall is not named: {}",
        show(&out)
    );
    // Three stalls of 2 s and waits of 1 s, 1 s, 2 s (or so): well under a minute.
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the install took {:?}",
        started.elapsed()
    );
    // The tree is version 1's exactly, as after an unbroken transfer.
    let got = describe(&env.root, &["var/lib"])?;
    let want = describe(&env.data("install/1/base"), &[])?;
    let diff = differences(&want, &got);
    ensure!(diff.is_empty(), "install differs:\n{}", diff.join("\n"));
    Ok(())
}
