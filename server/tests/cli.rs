//! The `rdeploy` command line as scripts use it: real processes, real files.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn rdeploy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rdeploy"))
}

fn run(args: &[&str]) -> Output {
    rdeploy().args(args).output().expect("rdeploy runs")
}

/// `rdeploy match --config-dir DIR HW`.
fn match_in(dir: &Path, hw: &Path) -> Output {
    run(&[
        "match",
        "--config-dir",
        dir.to_str().unwrap(),
        hw.to_str().unwrap(),
    ])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn kvm_inventory(serial: &str, mac: &str) -> String {
    format!(
        "[('system', 'product', 'name', 'KVM'),
 ('system', 'product', 'serial', '{serial}'),
 ('disk', 'vda', 'size', '20'),
 ('disk', 'vdb', 'size', '20'),
 ('network', 'eth0', 'serial', '{mac}'),
 ('network', 'eth0', 'link', 'yes'),
 ('ipmi', 'lan', 'channel', 2)]"
    )
}

/// A config dir with a `vm` profile and a generated CMDB of `n` entries.
fn config_dir(quota: &str, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    fs::write(p.join("state"), format!("[('hp', 2), ('vm', {quota})]\n")).unwrap();
    fs::write(
        p.join("hp.specs"),
        "[('system', 'product', 'name', 'ProLiant DL360 Gen9'), ('disk', '$disk', 'size', 'gt(100)')]\n",
    )
    .unwrap();
    fs::write(
        p.join("vm.specs"),
        "# KVM guests\n[\n ('system', 'product', 'name', 'KVM'),\n ('system', 'product', 'serial', '$serial'),\n ('disk', '$disk1', 'size', '$size1'),\n ('network', '$eth', 'serial', '$mac'),\n]\n",
    )
    .unwrap();
    fs::write(
        p.join("vm.cmdb"),
        format!("generate({{'ip': '10.0.{}.1-{}', 'hostname': 'vm001-{:03}', 'gateway': '10.0.0.254'}})\n", 0, n, n),
    )
    .unwrap();
    fs::write(p.join("vm.configure"), "// vm\n").unwrap();
    fs::write(p.join("hp.configure"), "// hp\n").unwrap();
    dir
}

fn write_hw(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn try_match_prints_variables_and_explains_no_match() {
    let dir = config_dir("'*'", 3);
    let hw = write_hw(
        dir.path(),
        "node.hw",
        &kvm_inventory("S1", "52:54:00:00:00:01"),
    );
    let o = run(&[
        "try-match",
        hw.to_str().unwrap(),
        dir.path().join("vm.specs").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"serial": "S1", "disk1": "vda", "size1": "20", "eth": "eth0", "mac": "52:54:00:00:00:01"})
    );

    let o = run(&[
        "try-match",
        hw.to_str().unwrap(),
        dir.path().join("hp.specs").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("hp.specs:1:2: spec #1 ('system', 'product', 'name', 'ProLiant DL360 Gen9') is not satisfied"), "{err}");
    assert!(err.contains("'KVM' != 'ProLiant DL360 Gen9'"), "{err}");
}

#[test]
fn match_allocates_saves_and_gives_the_same_entry_back() {
    let dir = config_dir("3", 5);
    let p = dir.path();
    let hw = write_hw(p, "a.hw", &kvm_inventory("S1", "52:54:00:00:00:01"));
    let o = match_in(p, &hw);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["profile"], "vm");
    assert_eq!(v["var"]["ip"], "10.0.0.1");
    assert_eq!(v["var"]["hostname"], "vm001");
    assert_eq!(v["var"]["used"], 1);
    assert_eq!(
        fs::read_to_string(p.join("state")).unwrap(),
        "[('hp', 2),\n ('vm', 2)]\n"
    );
    // The generate() model is kept, the CMDB rewritten expanded, one entry per line.
    assert!(fs::read_to_string(p.join("vm.cmdb.orig"))
        .unwrap()
        .starts_with("generate("));
    let cmdb = fs::read_to_string(p.join("vm.cmdb")).unwrap();
    assert_eq!(cmdb.lines().count(), 5, "{cmdb}");
    assert!(cmdb.starts_with("[{'disk1': 'vda', 'eth': 'eth0', 'gateway': '10.0.0.254', 'hostname': 'vm001', 'ip': '10.0.0.1', 'mac': '52:54:00:00:00:01', 'serial': 'S1', 'size1': '20', 'used': 1},\n {'gateway': '10.0.0.254', 'hostname': 'vm002', 'ip': '10.0.0.2'},"), "{cmdb}");

    // Same machine again: same entry (eDeploy's lookup by all bound variables).
    let o = match_in(p, &hw);
    let v2: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v2["var"]["ip"], "10.0.0.1");
    // Another machine: next entry.
    let hw2 = write_hw(p, "b.hw", &kvm_inventory("S2", "52:54:00:00:00:02"));
    let o = match_in(p, &hw2);
    let v3: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v3["var"]["ip"], "10.0.0.2");
    assert_eq!(
        fs::read_to_string(p.join("state")).unwrap(),
        "[('hp', 2),\n ('vm', 0)]\n"
    );

    // Quota used up: exit 1, one line, nothing written.
    let hw3 = write_hw(p, "c.hw", &kvm_inventory("S3", "52:54:00:00:00:03"));
    let before = snapshot(p);
    let o = match_in(p, &hw3);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unable to match") && err.contains("vm: quota used up"),
        "{err}"
    );
    assert_eq!(snapshot(p), before);

    // A failure report gives one install back.
    let o = run(&[
        "match",
        "--config-dir",
        p.to_str().unwrap(),
        "--failure",
        "vm",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        fs::read_to_string(p.join("state")).unwrap(),
        "[('hp', 2),\n ('vm', 1)]\n"
    );
}

#[test]
fn exhausted_cmdb_is_an_error_that_changes_nothing() {
    let dir = config_dir("'*'", 1);
    let p = dir.path();
    let a = write_hw(p, "a.hw", &kvm_inventory("S1", "m1"));
    let b = write_hw(p, "b.hw", &kvm_inventory("S2", "m2"));
    assert_eq!(match_in(p, &a).status.code(), Some(0));
    let before = snapshot(p);
    let o = match_in(p, &b);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("profile 'vm' matched but its CMDB (vm.cmdb) cannot give an entry: no more entry in the CMDB"), "{}", stderr(&o));
    assert_eq!(snapshot(p), before);
}

#[test]
fn bad_input_says_where_exits_2_and_changes_nothing() {
    let dir = config_dir("3", 3);
    let p = dir.path();
    let before = snapshot(p);
    let bad = write_hw(
        p,
        "bad.hw",
        "[('disk', 'sda', 'size', '1'),\n ('disk', 'sda', 'size')]",
    );
    let o = match_in(p, &bad);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad.hw:2:2: entry 2 must be a 4-tuple"),
        "{}",
        stderr(&o)
    );
    let unbalanced = write_hw(p, "unb.hw", "[('disk', 'sda', 'size', '1'\n");
    let o = match_in(p, &unbalanced);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains("unb.hw:2:1: unexpected end of file: '(' opened at 1:2 is never closed"),
        "{}",
        stderr(&o)
    );
    fs::remove_file(&bad).unwrap();
    fs::remove_file(&unbalanced).unwrap();
    assert_eq!(snapshot(p), before);

    fs::write(p.join("state"), "[('vm', 'lots')]").unwrap();
    let hw = write_hw(p, "ok.hw", &kvm_inventory("S", "m"));
    let o = match_in(p, &hw);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("state:1:9: entry 1: the quota must be a number of installs or '*'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn generate_prints_the_expanded_entries() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_hw(
        dir.path(),
        "model",
        "{'ip': '192.168.122.3-5', 'hostname': 'node03-05'}",
    );
    let o = run(&["generate", model.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"ip": "192.168.122.3", "hostname": "node03"},
            {"ip": "192.168.122.4", "hostname": "node04"},
            {"ip": "192.168.122.5", "hostname": "node05"},
        ])
    );
    let bad = write_hw(dir.path(), "bad", "{'ip': '10.0.0.1-3',");
    let o = run(&["generate", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad:1:21: unexpected end of file: '{' opened at 1:1 is never closed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_reports_every_problem_and_explains_matches() {
    let dir = config_dir("3", 2);
    let p = dir.path();
    fs::write(
        p.join("state"),
        "[('hp', 2), ('vm', 3), ('dell', 1), ('flat', '*')]\n",
    )
    .unwrap();
    fs::write(
        p.join("dell.specs"),
        "[\n ('disk', '$disk', 'size', 'gtt(4)'),\n ('disk', 'sda', 'size'),\n]\n",
    )
    .unwrap();
    fs::write(
        p.join("flat.specs"),
        "[('system', 'product', 'name', 'KVM')]\n",
    )
    .unwrap();
    fs::write(p.join("flat.cmdb"), "generate({'ip': '10.0.0.5-1-'})\n[").unwrap();
    fs::write(p.join("flat.configure"), "").unwrap();
    let hw = write_hw(p, "n.hw", &kvm_inventory("S1", "m1"));
    let before = snapshot(p);
    let o = run(&[
        "check",
        "--config-dir",
        p.to_str().unwrap(),
        hw.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("dell.specs:3:2: error: entry 2 must be a 4-tuple (category, name, key, value), found a 3-tuple"), "{out}");
    assert!(out.contains("dell.configure: error: missing"), "{out}");
    assert!(out.contains("flat.cmdb:2:1: error"), "{out}");
    assert!(out.contains("n.hw: matches profile 'vm'"), "{out}");
    assert_eq!(snapshot(p), before, "check changes nothing");

    fs::write(
        p.join("dell.specs"),
        "[('disk', '$disk', 'size', 'gtt(4)')]\n",
    )
    .unwrap();
    let o = run(&["check", "--config-dir", p.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        out.contains("dell.specs:1:2: error: '$disk'")
            || out.contains(
                "dell.specs:1:2: error: 'gtt(4)': unknown function 'gtt' (did you mean 'gt'?)"
            ),
        "{out}"
    );
}

#[test]
fn check_explains_why_an_inventory_matches_nothing() {
    let dir = config_dir("0", 2);
    let p = dir.path();
    let hw = write_hw(p, "n.hw", &kvm_inventory("S1", "m1"));
    let o = run(&[
        "check",
        "--config-dir",
        p.to_str().unwrap(),
        hw.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("n.hw: no match: unable to match requirements on the available roles: hp"),
        "{out}"
    );
    assert!(out.contains("  hp: spec #1 ('system', 'product', 'name', 'ProLiant DL360 Gen9') (line 1) not satisfied: line ('system', 'product', 'name', 'KVM'): 'KVM' != 'ProLiant DL360 Gen9'"), "{out}");
    assert!(out.contains("  vm: quota used up (0 left)"), "{out}");
}

/// Many `rdeploy match` processes at once on one config dir: every entry handed out once.
#[test]
fn concurrent_processes_never_share_an_entry() {
    let n = 40;
    let dir = config_dir("'*'", n);
    let p = dir.path();
    let hws: Vec<PathBuf> = (0..n)
        .map(|i| {
            write_hw(
                p,
                &format!("n{i}.hw"),
                &kvm_inventory(&format!("S{i}"), &format!("m{i}")),
            )
        })
        .collect();
    let children: Vec<_> = hws
        .iter()
        .map(|hw| {
            rdeploy()
                .args([
                    "match",
                    "--config-dir",
                    p.to_str().unwrap(),
                    hw.to_str().unwrap(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ips = HashSet::new();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert!(
            ips.insert(v["var"]["ip"].as_str().unwrap().to_owned()),
            "duplicate {v}"
        );
    }
    assert_eq!(ips.len(), n);
    let cmdb = fs::read_to_string(p.join("vm.cmdb")).unwrap();
    assert_eq!(cmdb.matches("'used': 1").count(), n);
}

fn quota_and_used(p: &Path) -> (i64, usize) {
    let state = fs::read_to_string(p.join("state")).unwrap();
    let quota: i64 = state
        .split("('vm', ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("state unreadable: {state}"));
    let cmdb = fs::read_to_string(p.join("vm.cmdb")).unwrap();
    let used = if cmdb.starts_with("generate(") {
        0
    } else {
        cmdb.matches("'used': 1").count()
    };
    (quota, used)
}

/// SIGKILL at random instants: `state` and the CMDB are always both before or both after.
#[test]
fn killing_match_never_half_writes() {
    let total = 60;
    let dir = config_dir(&total.to_string(), total);
    let p = dir.path();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..total {
        let hw = write_hw(
            p,
            "k.hw",
            &kvm_inventory(&format!("K{i}"), &format!("mk{i}")),
        );
        let mut child = rdeploy()
            .args([
                "match",
                "--config-dir",
                p.to_str().unwrap(),
                hw.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 6000));
        let _ = child.kill();
        let _ = child.wait();
        // The next transaction (here a no-op failure report) finishes or drops the commit.
        let o = run(&[
            "match",
            "--config-dir",
            p.to_str().unwrap(),
            "--failure",
            "nobody",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let (quota, used) = quota_and_used(p);
        assert_eq!(
            quota + used as i64,
            total as i64,
            "after kill {i}: quota {quota}, used {used}"
        );
        assert_eq!(
            run(&["check", "--config-dir", p.to_str().unwrap()])
                .status
                .code(),
            Some(0),
            "every file parses after kill {i}"
        );
    }
}
