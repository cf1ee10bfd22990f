//! `rdeploy role build` and `rdeploy role diff` for real: Debian trees bootstrapped with
//! mmdebstrap from Debian's mirror, served by `rdeploy serve`, installed and upgraded by
//! `rdeploy-agent` into a directory.
//!
//! - The example base role built again gives the manifest of the build scripts/build-roles
//!   made (on CI, that one bootstrapped the base and this one takes it from the cache).
//! - Two versions of a small role (`tests/fixtures/roles/app-{1,2}.toml`): version 1
//!   installed, the host's own files written, the upgrade prepared with `rdeploy role diff`,
//!   applied by `rdeploy-agent upgrade`: the tree is then exactly version 2's, except the
//!   excluded paths, which are as the host left them.
//!
//! Needs root, mmdebstrap and the mirror (`bash scripts/deps`), and the base role built by
//! `bash scripts/build-roles` (which `bash scripts/test` runs first). Nothing is timed.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{ensure, Context, Result};
use rdeploy_agent::tree::upgrade::Rules;
use rdeploy_tests::{run_binary, workspace_path, Output, Server};
use serde_json::Value;

/// One build at a time: each takes both cores while it runs apt and dpkg.
static ONE_BUILD_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Where scripts/build-roles keeps the bootstrapped bases (shared with the builds here).
const CACHE: &str = "target/rdeploy-cache";

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr (last lines)\n{}",
        o.code,
        o.stdout,
        o.stderr
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn build(file: &Path, data: &Path) -> Result<()> {
    let cache = workspace_path(CACHE).display().to_string();
    let out = run_binary(
        "rdeploy",
        &[
            "role",
            "build",
            &file.display().to_string(),
            "--data-dir",
            &data.display().to_string(),
            "--cache-dir",
            &cache,
        ],
    )?;
    ensure!(
        out.code == Some(0),
        "rdeploy role build {}: {}",
        file.display(),
        show(&out)
    );
    Ok(())
}

fn prerequisites() -> Result<()> {
    ensure!(
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n")),
        "building role trees needs root"
    );
    ensure!(
        Path::new("/usr/bin/mmdebstrap").exists(),
        "no mmdebstrap: run `bash scripts/deps` (as root)"
    );
    Ok(())
}

/// The manifest the server answers for `role` `version`.
fn manifest(server: &Server, role: &str, version: &str) -> Result<Value> {
    let m = server.get_json(&format!("/roles/{role}/{version}/manifest"))?;
    ensure!(
        m["entries"].is_array(),
        "no manifest for {role} {version}: {m}"
    );
    Ok(m)
}

#[test]
fn two_builds_of_the_base_role_give_the_same_manifest() -> Result<()> {
    let _one = ONE_BUILD_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    prerequisites()?;
    let first = workspace_path("target/roles/install/D12-1.0/base");
    ensure!(
        workspace_path("target/roles/.base.stamp").exists(),
        "no {}: run `bash scripts/build-roles`",
        first.display()
    );
    let dir = tempfile::Builder::new().prefix("rdeploy-role-").tempdir()?;
    let data = dir.path().join("data");
    build(&workspace_path("examples/roles/base.toml"), &data)?;
    // The first build beside it (hard links: same entries), under another version name.
    std::fs::create_dir_all(data.join("install/first"))?;
    let cp = std::process::Command::new("cp")
        .arg("-al")
        .arg(&first)
        .arg(data.join("install/first/"))
        .status()?;
    ensure!(cp.success(), "cp -al {}", first.display());
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config)?;
    std::fs::write(config.join("state"), "[]\n")?;
    let server = Server::start(&config, &data, &[])?;
    let a = manifest(&server, "base", "first")?;
    let b = manifest(&server, "base", "D12-1.0")?;
    let (ea, eb) = (
        a["entries"].as_array().cloned().unwrap_or_default(),
        b["entries"].as_array().cloned().unwrap_or_default(),
    );
    let by_path = |es: &[Value]| -> BTreeMap<String, Value> {
        es.iter()
            .map(|e| (e["path"].as_str().unwrap_or("").to_owned(), e.clone()))
            .collect()
    };
    let (pa, pb) = (by_path(&ea), by_path(&eb));
    let differ: Vec<String> = pa
        .keys()
        .chain(pb.keys())
        .filter(|p| pa.get(*p) != pb.get(*p))
        .take(20)
        .map(|p| format!("{p}: {:?} / {:?}", pa.get(p), pb.get(p)))
        .collect();
    assert!(
        differ.is_empty(),
        "the two builds differ:\n{}",
        differ.join("\n")
    );
    assert_eq!(a["id"], b["id"]);
    assert!(ea.len() > 5000, "a whole system: {} entries", ea.len());
    // What cannot be reproduced is not in the tree.
    for p in [
        "etc/hostname",
        "etc/ssh/ssh_host_ed25519_key",
        "var/lib/apt/lists/lock",
    ] {
        assert!(!pa.contains_key(p), "{p} is in the tree");
    }
    assert_eq!(pa["etc/machine-id"]["size"], 0);
    eprintln!(
        "role_build: base D12-1.0 built twice: {} entries, manifest {}",
        ea.len(),
        a["id"]
    );
    Ok(())
}

/// What a path is, for comparing trees: type, mode, owner, size, time, content or target.
fn describe(root: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let p = e?.path();
            let rel = p
                .strip_prefix(root)?
                .to_str()
                .context("a path that is not UTF-8")?
                .to_owned();
            let m = std::fs::symlink_metadata(&p)?;
            let what = if m.is_dir() {
                stack.push(p.clone());
                format!(
                    "dir {:o} {}:{} {}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    m.mtime()
                )
            } else if m.file_type().is_symlink() {
                format!("symlink -> {}", std::fs::read_link(&p)?.display())
            } else if m.is_file() {
                format!(
                    "file {:o} {}:{} {} bytes {}.{:09} {}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    rdeploy_configure::tree_wire::hash_file(&p)?
                )
            } else {
                format!(
                    "special {:o} {:o} {}",
                    m.mode(),
                    m.mode() & 0o7777,
                    m.rdev()
                )
            };
            out.insert(rel, what);
        }
    }
    Ok(out)
}

#[test]
fn an_upgrade_prepared_with_role_diff_leaves_the_new_tree_but_the_excluded_paths() -> Result<()> {
    let _one = ONE_BUILD_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    prerequisites()?;
    let dir = tempfile::Builder::new().prefix("rdeploy-role-").tempdir()?;
    let data = dir.path().join("data");
    build(&workspace_path("tests/fixtures/roles/app-1.toml"), &data)?;
    build(&workspace_path("tests/fixtures/roles/app-2.toml"), &data)?;
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config)?;
    std::fs::write(config.join("state"), "[]\n")?;
    let server = Server::start(&config, &data, &[])?;
    let root = dir.path().join("host");
    std::fs::create_dir_all(&root)?;
    let r = root.display().to_string();

    // A host at version 1, with what a host writes for itself.
    let out = run_binary(
        "rdeploy-agent",
        &[
            "upgrade",
            "--root",
            &r,
            "--server",
            &server.base,
            "install",
            "--role",
            "app",
            "--version",
            "1",
        ],
    )?;
    ensure!(out.code == Some(0), "install: {}", show(&out));
    std::fs::write(root.join("etc/hostname"), "host-a\n")?;
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n10.0.0.7 host-a\n",
    )?;
    std::fs::write(
        root.join("etc/ssh_host_like_key_not_excluded"),
        "gone after\n",
    )?;
    std::fs::create_dir_all(root.join("var/log/app"))?;
    std::fs::write(root.join("var/log/app/app.log"), "a host's log\n")?;
    std::fs::create_dir_all(root.join("home/alice"))?;
    std::fs::write(root.join("home/alice/notes"), "a user's data\n")?;
    let host_before = describe(&root)?;

    // The upgrade, prepared on the server.
    let d = data.display().to_string();
    let out = run_binary(
        "rdeploy",
        &["role", "diff", "app", "1", "2", "--data-dir", &d],
    )?;
    ensure!(out.code == Some(0), "role diff: {}", show(&out));
    for want in [
        "~ file    etc/app.conf (content, 14 -> 14 bytes)",
        "- file    etc/app/only-in-1",
        "+ file    etc/app/only-in-2 (21 bytes)",
        "+ file    usr/bin/tree",
        "app 1 -> 2: ",
    ] {
        assert!(out.stdout.contains(want), "no {want:?} in:\n{}", out.stdout);
    }
    let exclude_file = data.join("metadata/1/app/2/exclude");
    let exclude = std::fs::read_to_string(&exclude_file)?;
    // An operator's edit is kept by the next diff.
    std::fs::write(&exclude_file, format!("{exclude}# edited\n"))?;
    let again = run_binary(
        "rdeploy",
        &["role", "diff", "-q", "app", "1", "2", "--data-dir", &d],
    )?;
    ensure!(again.code == Some(0), "{}", show(&again));
    assert!(std::fs::read_to_string(&exclude_file)?.ends_with("# edited\n"));
    assert!(again.stdout.contains("kept"), "{}", again.stdout);

    // The upgrade on the host.
    let out = run_binary("rdeploy-agent", &["upgrade", "--root", &r, "upgrade", "2"])?;
    ensure!(out.code == Some(0), "upgrade: {}", show(&out));
    let verify = run_binary("rdeploy-agent", &["upgrade", "--root", &r, "verify"])?;
    ensure!(
        verify.code == Some(0),
        "verify after the upgrade: {}",
        show(&verify)
    );

    // Exactly version 2, but the excluded paths, which are as the host left them.
    let rules = Rules::new(&exclude, "");
    let host = describe(&root)?;
    let v2 = describe(&data.join("install/2/app"))?;
    let is_dir =
        |t: &BTreeMap<String, String>, p: &str| t.get(p).is_some_and(|w| w.starts_with("dir "));
    let mut wrong = Vec::new();
    let paths: std::collections::BTreeSet<&String> = host.keys().chain(v2.keys()).collect();
    // The agent's own records (the conf, the upgrade's rules) are not part of a tree.
    for p in paths
        .into_iter()
        .filter(|p| !p.starts_with("var/lib/rdeploy"))
    {
        let excluded = rules
            .exclude
            .excluded(p, is_dir(&host, p) || is_dir(&v2, p));
        let (got, want) = if excluded {
            (host.get(p), host_before.get(p))
        } else {
            (host.get(p), v2.get(p))
        };
        // A directory that holds excluded entries keeps its own time (rsync's too).
        let same = match (got, want) {
            (Some(g), Some(w)) if g.starts_with("dir ") && w.starts_with("dir ") && !excluded => {
                g.rsplit_once(' ').map(|x| x.0) == w.rsplit_once(' ').map(|x| x.0)
            }
            (g, w) => g == w,
        };
        if !same {
            wrong.push(format!(
                "{p}: {got:?}, expected {want:?} (excluded: {excluded})"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} paths differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname"))?,
        "host-a\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app.conf"))?,
        "setting = two\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("var/log/app/app.log"))?,
        "a host's log\n"
    );
    assert!(!root.join("etc/app/only-in-1").exists());
    assert!(!root.join("etc/ssh_host_like_key_not_excluded").exists());
    assert!(root.join("usr/bin/tree").is_file());
    Ok(())
}
