//! Hardware detection on fixture trees (exact expected inventories), on this machine (live ==
//! its capture), and against specs files a user writes for eDeploy.
//!
//! Regenerate the expected inventories on purpose with
//! `UPDATE_EXPECT=1 cargo test -p rdeploy-agent --test detect`.

use std::path::{Path, PathBuf};
use std::process::Command;

use rdeploy_agent::detect::{capture, detect, to_json_lines, Root};
use rdeploy_specs::{match_all, model::parse_specs, Inventory, Specs, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn sysroot(machine: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysroot")
        .join(machine)
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn check_expected(machine: &str) -> TestResult {
    let got = to_json_lines(&detect(&Root::dir(sysroot(machine))));
    let expected_path = sysroot(&format!("{machine}.expected.json"));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&expected_path, &got)?;
    }
    let expected = std::fs::read_to_string(&expected_path)
        .map_err(|e| format!("{}: {e}", expected_path.display()))?;
    if got != expected {
        let diff: Vec<String> = diff_lines(&expected, &got);
        panic!(
            "{machine}: inventory differs from {} (- expected, + got):\n{}",
            expected_path.display(),
            diff.join("\n")
        );
    }
    Ok(())
}

fn diff_lines(expected: &str, got: &str) -> Vec<String> {
    let e: Vec<&str> = expected.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut out = Vec::new();
    for l in &e {
        if !g.contains(l) {
            out.push(format!("- {l}"));
        }
    }
    for l in &g {
        if !e.contains(l) {
            out.push(format!("+ {l}"));
        }
    }
    if out.is_empty() {
        out.push("(same lines, different order)".into());
    }
    out
}

#[test]
fn dell_r630_inventory_is_exactly_the_expected_one() -> TestResult {
    check_expected("dell-r630")
}

#[test]
fn qemu_kvm_guest_inventory_is_exactly_the_expected_one() -> TestResult {
    check_expected("qemu-kvm-guest")
}

#[test]
fn captured_firecracker_guest_inventory_is_exactly_the_expected_one() -> TestResult {
    check_expected("firecracker-kvm-guest")
}

fn get<'a>(inv: &'a Inventory, c: &str, n: &str, k: &str) -> Option<&'a str> {
    inv.get(c, n, k).and_then(Value::as_str)
}

#[test]
fn the_server_fixture_is_a_two_socket_machine_with_8_disks_and_4_nics() {
    let inv = detect(&Root::dir(sysroot("dell-r630")));
    assert_eq!(inv.get("cpu", "physical", "number"), Some(&Value::Int(2)));
    assert_eq!(inv.get("cpu", "logical", "number"), Some(&Value::Int(40)));
    assert_eq!(get(&inv, "disk", "logical", "count"), Some("8"));
    let nics: std::collections::BTreeSet<&str> = inv
        .lines
        .iter()
        .filter(|l| l[0].as_str() == Some("network"))
        .filter_map(|l| l[1].as_str())
        .collect();
    assert_eq!(
        nics.into_iter().collect::<Vec<_>>(),
        ["em1", "em2", "em3", "em4"]
    );
    // lo is virtual; loop0 (size 0) and sr0 are not disks; sda1 (a by-id -part1 link) is
    // not sda
    assert!(inv.lines.iter().all(|l| l[1].as_str() != Some("lo")));
    assert!(get(&inv, "disk", "sr0", "size").is_none());
    assert!(get(&inv, "disk", "loop0", "size").is_none());
    let sda_ids = inv
        .lines
        .iter()
        .filter(|l| l[1].as_str() == Some("sda") && l[2].as_str() == Some("wwn-id"))
        .count();
    assert_eq!(sda_ids, 1);
    assert_eq!(get(&inv, "network", "em4", "link"), Some("no"));
    assert_eq!(get(&inv, "network", "em4", "speed"), None);
}

/// Our Dell R630 tree against the inventory eDeploy recorded on a real R630: every line both
/// have must carry the same value, except where the source differs for a known reason.
#[test]
fn the_server_fixture_speaks_edeploys_vocabulary() -> TestResult {
    let real = Inventory::parse(&std::fs::read_to_string(repo_file(
        "tests/fixtures/hw/dell-r630.json",
    ))?)
    .map_err(|e| e.to_string())?;
    let ours = detect(&Root::dir(sysroot("dell-r630")));
    // (category, key): why the values differ
    let known = [
        ("system", "version"),    // kernel: CentOS 7's then, the rdeploy initramfs' now
        ("system", "cmdline"),    // eDeploy's PXE arguments vs rdeploy's
        ("disk", "scheduler"),    // deadline (3.10 single queue) vs mq-deadline
        ("cpu", "vendor"),        // lshw said "Intel Corp."; hardware 0.33 (lscpu) GenuineIntel
        ("network", "link"),      // em4 has no cable in our tree
        ("network", "ipv4-cidr"), // old eDeploy wrote the int 24; 0.33 writes '24'
    ];
    let mut compared = 0;
    for line in &ours.lines {
        let (Some(c), Some(n), Some(k)) = (line[0].as_str(), line[1].as_str(), line[2].as_str())
        else {
            continue;
        };
        let Some(theirs) = real.get(c, n, k) else {
            continue;
        };
        compared += 1;
        if known.contains(&(c, k)) {
            continue;
        }
        assert_eq!(&line[3], theirs, "({c}, {n}, {k})");
    }
    assert!(
        compared > 100,
        "only {compared} lines in common with the real inventory"
    );
    Ok(())
}

/// Our disk lines against what eDeploy's `hardware.diskinfo.detect()` (0.33) says about the
/// same trees (recorded by `edeploy-diskinfo.py`): same lines, same values, same order within
/// a disk (eDeploy lists disks in directory order, we sort them by name).
#[test]
fn disk_lines_are_the_ones_edeploy_reports_on_the_same_tree() -> TestResult {
    for machine in ["dell-r630", "qemu-kvm-guest", "firecracker-kvm-guest"] {
        let path = sysroot(&format!("{machine}.edeploy-disk.json"));
        let theirs = Inventory::parse(&std::fs::read_to_string(&path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let ours = detect(&Root::dir(sysroot(machine)));
        let by_disk = |inv: &Inventory| {
            let mut lines: Vec<_> = inv
                .lines
                .iter()
                .filter(|l| l[0].as_str() == Some("disk"))
                .cloned()
                .collect();
            lines.sort_by(|a, b| a[1].as_str().cmp(&b[1].as_str()));
            lines
        };
        let (ours, theirs) = (by_disk(&ours), by_disk(&theirs));
        assert!(theirs.len() > 1, "{machine}: nothing recorded");
        assert_eq!(ours, theirs, "{machine}");
    }
    Ok(())
}

/// The captured guest against what eDeploy's `hardware.system.detect()` (0.33, with lshw,
/// lscpu) said on the same machine when it was captured (`edeploy-system-live.py`): every
/// line eDeploy gave is ours too, with the same value and type, except the ones listed.
#[test]
fn the_captured_guest_gives_edeploys_system_lines() -> TestResult {
    let path = sysroot("firecracker-kvm-guest.edeploy-system.json");
    let theirs = Inventory::parse(&std::fs::read_to_string(&path)?)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let ours = detect(&Root::dir(sysroot("firecracker-kvm-guest")));
    // why not: autonegotiation comes from an ethtool ioctl, not sysfs; the cache lines are
    // lscpu's own formatting; `system os` describes the initramfs, not the machine; `uname
    // -i` (eDeploy's arch) is "unknown" on Debian, we give `uname -m`
    let skipped = |c: &str, n: &str, k: &str| {
        (c, k) == ("network", "autonegotiation")
            || (c == "cpu" && k.ends_with(" cache"))
            || (c, n) == ("system", "os")
            || (c, n, k) == ("system", "kernel", "arch")
    };
    let mut compared = 0;
    for line in &theirs.lines {
        let (Some(c), Some(n), Some(k)) = (line[0].as_str(), line[1].as_str(), line[2].as_str())
        else {
            continue;
        };
        if skipped(c, n, k) {
            continue;
        }
        assert_eq!(ours.get(c, n, k), Some(&line[3]), "({c}, {n}, {k})");
        compared += 1;
    }
    assert!(compared >= 25, "compared only {compared} lines");
    Ok(())
}

fn specs(path: &Path) -> Result<Specs, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    let lines = parse_specs(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Specs::compile(lines))
}

#[test]
fn the_kvm_guest_matches_the_edeploy_example_vm_profile() -> TestResult {
    let inv = detect(&Root::dir(sysroot("qemu-kvm-guest")));
    let vm = specs(&repo_file("tests/fixtures/config/edeploy-example/vm.specs"))?;
    let result = match_all(&inv, &vm);
    let vars = result.outcome.map_err(|e| format!("vm.specs: {e:?}"))?;
    assert_eq!(vars.get("mac"), Some(&Value::from("52:54:00:1b:3c:5d")));
    assert_eq!(vars.get("ip"), Some(&Value::from("192.168.122.100")));
    assert_eq!(vars.get("disk"), Some(&Value::from("vda")));
    // the server is not a VM, and a guest without DMI is not a QEMU "KVM" product
    for other in ["dell-r630", "firecracker-kvm-guest"] {
        let inv = detect(&Root::dir(sysroot(other)));
        assert!(!match_all(&inv, &vm).matched(), "{other} matched vm.specs");
    }
    Ok(())
}

#[test]
fn the_server_matches_a_dell_profile_written_for_edeploy() -> TestResult {
    // edeploy-example/dell.specs without the megaraid and ipmi lines (RAID controller and
    // BMC tools are not part of /sys detection)
    let inv = detect(&Root::dir(sysroot("dell-r630")));
    let dell = specs(&sysroot("dell-r630.specs"))?;
    let vars = match_all(&inv, &dell)
        .outcome
        .map_err(|e| format!("dell-r630.specs: {e:?}"))?;
    assert_eq!(vars.get("eth"), Some(&Value::from("em1")));
    assert_eq!(vars.get("mac"), Some(&Value::from("18:66:da:10:20:90")));
    assert_eq!(vars.get("eth1"), Some(&Value::from("em2")));
    assert_eq!(vars.get("ncpus"), Some(&Value::Int(40)));
    assert_eq!(vars.get("disk8"), Some(&Value::from("sdh")));
    // hp.specs asks for an HP: no match
    let hp = specs(&repo_file("tests/fixtures/config/edeploy-example/hp.specs"))?;
    assert!(!match_all(&inv, &hp).matched());
    Ok(())
}

fn agent(args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new(env!("CARGO_BIN_EXE_rdeploy-agent"))
        .args(args)
        .env("RDEPLOY_LOG", "error")
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "rdeploy-agent {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn the_command_line_prints_json_and_python() -> TestResult {
    let dir = sysroot("dell-r630");
    let dir = dir.to_str().ok_or("non-UTF-8 path")?;
    let json = agent(&["detect", "--root", dir])?;
    let expected = std::fs::read_to_string(sysroot("dell-r630.expected.json"))?;
    assert_eq!(json, expected);
    assert_eq!(agent(&["detect", "--root", dir, "--json"])?, expected);
    let python = agent(&["detect", "--root", dir, "--python"])?;
    assert!(python.starts_with("[('disk', 'logical', 'count', '8'),\n"));
    assert!(python.contains("('cpu', 'physical', 'number', 2),"));
    let from_python = Inventory::parse(&python).map_err(|e| e.to_string())?;
    let from_json = Inventory::parse(&json).map_err(|e| e.to_string())?;
    assert_eq!(from_python, from_json);
    Ok(())
}

#[test]
fn a_missing_root_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_rdeploy-agent"))
        .args(["detect", "--root", "/nonexistent/rdeploy-capture"])
        .output()
        .expect("run rdeploy-agent");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rdeploy-capture"));
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let t = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, dest)?;
        } else if t.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

#[test]
fn an_unreadable_file_loses_its_lines_not_the_inventory() -> TestResult {
    let tmp = tempfile::tempdir()?;
    copy_tree(&sysroot("qemu-kvm-guest"), tmp.path())?;
    // vdb's size becomes unreadable (a directory where a file should be), and so does the
    // CPU list
    let size = tmp
        .path()
        .join("sys/devices/pci0000:00/0000:00:06.0/virtio3/block/vdb/size");
    std::fs::remove_file(&size)?;
    std::fs::create_dir(&size)?;
    std::fs::remove_file(tmp.path().join("proc/cpuinfo"))?;
    std::fs::create_dir(tmp.path().join("proc/cpuinfo"))?;
    let inv = detect(&Root::dir(tmp.path()));
    assert_eq!(get(&inv, "disk", "logical", "count"), Some("3"));
    assert!(get(&inv, "disk", "vdb", "size").is_none());
    assert_eq!(get(&inv, "disk", "vdc", "size"), Some("21"));
    assert!(inv.get("cpu", "logical", "number").is_none());
    assert_eq!(get(&inv, "system", "product", "vendor"), Some("QEMU"));
    assert_eq!(
        get(&inv, "network", "eth0", "ipv4"),
        Some("192.168.122.100")
    );
    Ok(())
}

/// This machine, live, against its own capture: the capture must hold everything detection
/// reads (through symlinks), and nothing live-only may leak into the inventory.
#[test]
fn detecting_this_machine_equals_detecting_its_capture() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (mut while_capturing, stats) = capture(tmp.path())?;
    assert!(stats.files > 0);
    // a BMC answers only live: its lines are not in the capture
    while_capturing
        .lines
        .retain(|l| l[0].as_str() != Some("ipmi") && l[1].as_str() != Some("ipmi"));
    let replayed = detect(&Root::dir(tmp.path()));
    assert_eq!(to_json_lines(&replayed), to_json_lines(&while_capturing));

    // the same through the command line, with a fresh live run
    let out = tmp.path().join("cli");
    let out = out.to_str().ok_or("non-UTF-8 path")?;
    agent(&["capture", "--out", out])?;
    let live = agent(&["detect"])?;
    let captured = agent(&["detect", "--root", out])?;
    // BMC lines are live-only; a VM without cpufreq reports /proc/cpuinfo's "cpu MHz", which
    // may move between two runs: both are left out of this comparison (the first half above
    // compares them from one reading).
    let strip_ipmi = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("\"ipmi\"") && !l.contains("\"frequency\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_ipmi(&captured), strip_ipmi(&live));
    assert!(Inventory::parse(&live).is_ok());
    // a second capture into the same directory is refused (stale files would mix in)
    assert!(agent(&["capture", "--out", out]).is_err());
    Ok(())
}

/// The IPv4 lines read from /proc/net agree with `ip -j -4 addr` (when `ip` is installed).
#[test]
fn ipv4_from_proc_net_agrees_with_ip_addr() -> TestResult {
    let Ok(out) = Command::new("ip").args(["-j", "-4", "addr"]).output() else {
        eprintln!("no ip command: compared nothing");
        return Ok(());
    };
    let addrs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let inv = detect(&Root::live());
    let mut compared = 0;
    for iface in addrs.as_array().ok_or("ip -j: not a list")? {
        let name = iface["ifname"].as_str().unwrap_or_default();
        let Some(ours) = get(&inv, "network", name, "ipv4") else {
            continue;
        };
        let theirs: Vec<(&str, u64)> = iface["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| Some((i["local"].as_str()?, i["prefixlen"].as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let cidr: u64 = get(&inv, "network", name, "ipv4-cidr")
            .ok_or("ipv4 without ipv4-cidr")?
            .parse()?;
        assert!(
            theirs.contains(&(ours, cidr)),
            "{name}: we say {ours}/{cidr}, ip says {theirs:?}"
        );
        compared += 1;
    }
    // every non-virtual interface with a subnet address must have been found (a /32 has no
    // connected route, the documented limit of reading /proc/net)
    for iface in addrs.as_array().ok_or("ip -j: not a list")? {
        let name = iface["ifname"].as_str().unwrap_or_default();
        let physical = Path::new("/sys/class/net")
            .join(name)
            .join("device")
            .exists();
        let subnet = iface["addr_info"].as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["prefixlen"].as_u64().is_some_and(|p| p < 32))
        });
        if physical && subnet {
            assert!(
                get(&inv, "network", name, "ipv4").is_some(),
                "{name}: no ipv4"
            );
        }
    }
    eprintln!("compared {compared} interfaces");
    Ok(())
}
