//! The BMC through `ipmitool` (live machines only): `system ipmi channel` and `ipmi lan ...`.
//!
//! As eDeploy: when an IPMI device node exists (`/dev/ipmi0`, `/dev/ipmi/0`,
//! `/dev/ipmidev/0`), the first channel 0..15 whose `ipmitool channel info N` mentions
//! `Volatile` is the LAN channel (`('system', 'ipmi', 'channel', '1')`), and `ipmitool lan
//! print` gives `('ipmi', 'lan', 'ip-address', '10.1.2.31')` and the other `lan` lines.
//! Each `ipmitool` run has a time limit ([`TIMEOUT`]): a wedged BMC must not stop the
//! provisioning. Without `ipmitool` or a device node there are no IPMI lines. The kernel
//! modules (`ipmi_si`, `ipmi_devintf`) are the initramfs' business, not loaded here.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Lines;

/// The time one `ipmitool` run may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Adds the IPMI lines of the live machine.
pub fn detect(out: &mut Lines) {
    let devices = ["/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0"];
    if !devices.iter().any(|d| Path::new(d).exists()) {
        tracing::debug!("no IPMI device node: no BMC lines");
        return;
    }
    for channel in 0..16 {
        match run_ipmitool(&["channel", "info", &channel.to_string()]) {
            Some(text) if text.contains("Volatile") => {
                out.push("system", "ipmi", "channel", channel.to_string());
                break;
            }
            Some(_) => {}
            None => return,
        }
    }
    if let Some(text) = run_ipmitool(&["lan", "print"]) {
        for (key, value) in parse_lan_print(&text) {
            out.push("ipmi", "lan", &key, value);
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

/// Runs `ipmitool ARGS` with [`TIMEOUT`]; stdout+stderr on success, `None` when it cannot
/// run, fails or takes too long (logged).
fn run_ipmitool(args: &[&str]) -> Option<String> {
    let mut child = match Command::new("ipmitool")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("ipmitool not usable ({e}): no BMC lines");
            return None;
        }
    };
    let mut stdout = child.stdout.take()?;
    let mut stderr = child.stderr.take()?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        let mut e = String::new();
        let _ = stderr.read_to_string(&mut e);
        s.push_str(&e);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                tracing::warn!("ipmitool {} took over {TIMEOUT:?}: killed", args.join(" "));
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
    let text = reader.join().ok()?;
    match status {
        Some(s) if s.success() => Some(text),
        Some(s) => {
            tracing::debug!("ipmitool {}: {s}", args.join(" "));
            Some(String::new())
        }
        None => None,
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
}
