//! A configure script really partitioning, formatting and mirroring disks: `SystemHost` on
//! loop devices over sparse files, checked with `sgdisk -p`, `blkid` and `mdadm --examine`.
//!
//! Needs root, `/dev/loop-control` and the tools of `scripts/apt-packages` (`scripts/deps`
//! installs them); the RAID part also needs the md driver (`/proc/mdstat`). When the machine
//! does not allow it, the test says why and returns.

use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use anyhow::{bail, ensure, Context, Result};
use rdeploy_configure::{compile, run, Options, SystemHost};

/// A loop device over a file, detached when dropped.
struct Loop {
    dev: String,
}

impl Loop {
    fn attach(file: &Path) -> Result<Loop> {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--partscan"])
            .arg(file)
            .output()
            .context("cannot run losetup")?;
        ensure!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Loop {
            dev: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// An md array, stopped when dropped (before the loop devices under it are detached: declare
/// it after them).
struct Md {
    dev: String,
}

impl Drop for Md {
    fn drop(&mut self) {
        let _ = Command::new("mdadm").args(["--stop", &self.dev]).output();
    }
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || ["/sbin", "/usr/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_run() -> Option<String> {
    if !is_root() {
        return Some("not root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control (no loop devices)".into());
    }
    let missing: Vec<&str> = [
        "losetup",
        "sgdisk",
        "partx",
        "mkfs.ext4",
        "mkfs.vfat",
        "blkid",
    ]
    .into_iter()
    .filter(|t| !which(t))
    .collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing tools {missing:?} (bash scripts/deps installs them)"
        ));
    }
    None
}

fn output(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{} exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const SCRIPT: &str = r#"
// Two disks: an EFI partition each and a RAID member each; a mirror of the members when
// the machine has the md driver, else ext4 straight on the first member.
let a = partition(var.disk1, [#{size: "8M", type: "efi", name: "boot"}, #{type: "raid", name: "data"}]);
run(["partx", "-u", var.disk1]);   // no udev here: ask the kernel for the new partitions
let b = partition(var.disk2, [#{size: "8M", type: "efi"}, #{type: "raid"}]);
run(["partx", "-u", var.disk2]);
mkfs(a[0], "vfat", "boot");
if var.raid {
    let md = raid(var.md, 1, [a[1], b[1]]);
    mkfs(md, "ext4", "root");
} else {
    mkfs(a[1], "ext4", "root");
}
set_role("base", "1.0", var.disk1);
"#;

#[test]
fn partition_mkfs_and_raid_on_loop_devices() -> Result<()> {
    if let Some(why) = cannot_run() {
        eprintln!("skipping the loop-device test: {why}");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut loops = Vec::new();
    for name in ["disk1.img", "disk2.img"] {
        let path = dir.path().join(name);
        std::fs::File::create(&path)?.set_len(64 << 20)?;
        loops.push(Loop::attach(&path)?);
    }
    let raid = Path::new("/proc/mdstat").exists() && which("mdadm");
    if !raid {
        eprintln!("no md driver (/proc/mdstat) or mdadm: the RAID part is left out");
    }
    let md_dev = "/dev/md97";
    // Declared after the loops: dropped (stopped) before they are detached.
    let _md = raid.then(|| Md {
        dev: md_dev.to_owned(),
    });

    let vars = serde_json::json!({
        "disk1": loops[0].dev, "disk2": loops[1].dev, "raid": raid, "md": md_dev,
    });
    let vars = vars.as_object().cloned().unwrap_or_default();
    let script = compile("loop.configure", SCRIPT).map_err(|e| anyhow::anyhow!("{e}"))?;
    let host = Rc::new(SystemHost::new(dir.path().join("staging")));
    let options = Options {
        target_root: dir.path().join("chroot").to_string_lossy().into_owned(),
        ..Options::default()
    };
    let outcome = run(&script, &vars, host, &options).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(
        outcome.commands.iter().all(|c| c.status == Some(0)),
        "{outcome:#?}"
    );

    let (d1, d2) = (&loops[0].dev, &loops[1].dev);
    let table = output(&["sgdisk", "-p", d1])?;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Number"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(
        (rows[0][5], rows[0].get(6).copied()),
        ("EF00", Some("boot")),
        "{table}"
    );
    assert_eq!(
        (rows[1][5], rows[1].get(6).copied()),
        ("FD00", Some("data")),
        "{table}"
    );
    assert!(output(&["sgdisk", "-p", d2])?.contains("FD00"));

    let blkid = |dev: &str, tag: &str| -> Result<String> {
        Ok(output(&["blkid", "-o", "value", "-s", tag, dev])?
            .trim()
            .to_owned())
    };
    let p1 = format!("{d1}p1");
    assert_eq!(blkid(&p1, "TYPE")?, "vfat");
    assert_eq!(blkid(&p1, "LABEL")?, "boot");
    let root = if raid {
        let examine = output(&["mdadm", "--examine", &format!("{d2}p2")])?;
        assert!(examine.contains("Raid Level : raid1"), "{examine}");
        md_dev.to_owned()
    } else {
        format!("{d1}p2")
    };
    assert_eq!(blkid(&root, "TYPE")?, "ext4");
    assert_eq!(blkid(&root, "LABEL")?, "root");
    Ok(())
}
