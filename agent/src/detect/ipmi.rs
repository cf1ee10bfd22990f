//! The BMC through `ipmitool` (live machines only): `system ipmi channel` and `ipmi lan ...`.
//!
//! As eDeploy: when an IPMI device node exists (`/dev/ipmi0`, `/dev/ipmi/0`,
//! `/dev/ipmidev/0`), the first channel 0..15 whose `ipmitool channel info N` mentions
//! `Volatile` is the LAN channel (`('system', 'ipmi', 'channel', '1')`), and `ipmitool lan
//! print` gives `('ipmi', 'lan', 'ip-address', '10.1.2.31')` and the other `lan` lines.
//! Each `ipmitool` run has a time limit ([`TIMEOUT`]): a wedged BMC must not stop the
//! provisioning. Without `ipmitool` or a device node there are no IPMI lines. The kernel
//! modules (`ipmi_si`, `ipmi_devintf`) are the initramfs' business, not loaded here.
//!
//! Older eDeploy also answered `('system', 'ipmi-fake', 'channel', '0')` on machines without
//! a BMC booted with `FAKEIPMI` on the kernel command line (the real inventory
//! `tests/fixtures/hw/kvm-guest.json` has it); so does [`fake_from_cmdline`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Lines, Root};

/// The time one `ipmitool` run may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the BMC: which `ipmitool`, which device nodes say a BMC exists, how long a
/// run may take. [`Ipmitool::default`] is the real machine's.
#[derive(Clone, Debug)]
pub struct Ipmitool {
    pub program: PathBuf,
    pub devices: Vec<PathBuf>,
    pub timeout: Duration,
}

impl Default for Ipmitool {
    fn default() -> Ipmitool {
        Ipmitool {
            program: PathBuf::from("ipmitool"),
            devices: ["/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            timeout: TIMEOUT,
        }
    }
}

/// Adds the IPMI lines of the live machine.
pub fn detect(out: &mut Lines) {
    Ipmitool::default().detect(out);
}

impl Ipmitool {
    /// Adds `system ipmi channel` and the `ipmi lan` lines, if a BMC answers.
    pub fn detect(&self, out: &mut Lines) {
        if !self.devices.iter().any(|d| d.exists()) {
            tracing::debug!("no IPMI device node: no BMC lines");
            return;
        }
        for channel in 0..16 {
            match self.run(&["channel", "info", &channel.to_string()]) {
                Some(text) if text.contains("Volatile") => {
                    out.push("system", "ipmi", "channel", channel.to_string());
                    break;
                }
                Some(_) => {}
                None => return,
            }
        }
        if let Some(text) = self.run(&["lan", "print"]) {
            for (key, value) in parse_lan_print(&text) {
                out.push("ipmi", "lan", &key, value);
            }
        }
    }
}

/// eDeploy's test hook: with `FAKEIPMI` (any case) on the kernel command line and no BMC,
/// `('system', 'ipmi-fake', 'channel', '0')`, so specs of VMs can stand in for servers.
/// Read from `/proc/cmdline`, so it works on captured trees too.
pub fn fake_from_cmdline(root: &Root, out: &mut Lines) {
    if let Ok(cmdline) = root.read("/proc/cmdline") {
        if cmdline.to_lowercase().contains("fakeipmi") {
            out.push("system", "ipmi-fake", "channel", "0");
        }
    }
}

/// `ipmitool lan print` lines `IP Address Source       : Static Address` as eDeploy's keys
/// (`ip-address-source`) and values.
pub fn parse_lan_print(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim_end(), v.trim());
        if k.is_empty() || k.starts_with(' ') || v.is_empty() {
            continue;
        }
        let key = k
            .split(' ')
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join("-");
        out.push((key, v.to_string()));
    }
    out
}

impl Ipmitool {
    /// Runs `ipmitool ARGS` within the time limit: stdout and stderr (empty when it exits
    /// with an error), `None` when it cannot run or takes too long (logged).
    fn run(&self, args: &[&str]) -> Option<String> {
        run_with_timeout(&self.program, args, self.timeout)
    }
}

fn run_with_timeout(program: &Path, args: &[&str], timeout: Duration) -> Option<String> {
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("{} not usable ({e}): no BMC lines", program.display());
            return None;
        }
    };
    let mut stdout = child.stdout.take()?;
    let mut stderr = child.stderr.take()?;
    // one thread per pipe, so a chatty stderr cannot block stdout
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                tracing::warn!(
                    "{} {} took over {timeout:?}: killed",
                    program.display(),
                    args.join(" ")
                );
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => {
                tracing::warn!("waiting for ipmitool: {e}");
                break None;
            }
        }
    };
    // after a kill the readers are left behind: a child of ipmitool may hold the pipes
    let status = status?;
    let mut text = out_reader.join().ok()?;
    text.push_str(&err_reader.join().ok()?);
    if status.success() {
        Some(text)
    } else {
        tracing::debug!("ipmitool {}: {status}", args.join(" "));
        Some(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_print_keys_as_edeploy() {
        let text = "Set in Progress         : Set Complete\n\
                    IP Address Source       : Static Address\n\
                    IP Address              : 10.1.2.31\n\
                    MAC Address             : 18:66:da:10:20:a0\n\
                    802.1q VLAN ID          : Disabled\n\
                    Auth Type Enable        : Callback : MD2 MD5\n\
                    \x20                       : User     : MD2 MD5\n";
        let got = parse_lan_print(text);
        assert_eq!(got[0], ("set-in-progress".into(), "Set Complete".into()));
        assert_eq!(got[2], ("ip-address".into(), "10.1.2.31".into()));
        assert_eq!(got[3], ("mac-address".into(), "18:66:da:10:20:a0".into()));
        assert_eq!(got[4], ("802.1q-vlan-id".into(), "Disabled".into()));
        assert_eq!(got.len(), 6);
    }

    fn fake(dir: &Path, script: &str) -> std::io::Result<Ipmitool> {
        use std::os::unix::fs::PermissionsExt;
        let program = dir.join("ipmitool");
        std::fs::write(&program, format!("#!/bin/sh\n{script}\n"))?;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))?;
        let device = dir.join("ipmi0");
        std::fs::write(&device, "")?;
        Ok(Ipmitool {
            program,
            devices: vec![device],
            timeout: Duration::from_millis(500),
        })
    }

    #[test]
    fn a_bmc_on_channel_1_gives_the_channel_and_lan_lines() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let bmc = fake(
            dir.path(),
            r#"case "$*" in
  "channel info 1") printf 'Channel 0x1 info:\n  Volatile(active) Settings\n' ;;
  "channel info "*) echo "Channel is not valid" >&2; exit 1 ;;
  "lan print") printf 'Set in Progress         : Set Complete\nIP Address              : 10.1.2.31\n' ;;
esac"#,
        )?;
        let mut out = Lines::default();
        bmc.detect(&mut out);
        assert_eq!(
            out.get("system", "ipmi", "channel"),
            Some(&rdeploy_specs::Value::from("1"))
        );
        assert_eq!(
            out.get("ipmi", "lan", "ip-address"),
            Some(&rdeploy_specs::Value::from("10.1.2.31"))
        );
        assert_eq!(out.0.len(), 3);
        Ok(())
    }

    #[test]
    fn a_wedged_bmc_is_given_up_after_the_time_limit() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let bmc = fake(dir.path(), "exec sleep 600")?;
        let mut out = Lines::default();
        bmc.detect(&mut out);
        assert!(out.0.is_empty());
        Ok(())
    }

    #[test]
    fn no_device_node_means_no_ipmitool_run() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut bmc = fake(dir.path(), "touch \"$0.ran\"")?;
        bmc.devices = vec![dir.path().join("absent")];
        bmc.detect(&mut Lines::default());
        assert!(!dir.path().join("ipmitool.ran").exists());
        Ok(())
    }
}
