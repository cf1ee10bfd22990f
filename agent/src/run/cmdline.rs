//! The kernel command line of the installer: where the server is and what to do at the end.
//!
//! rdeploy's own parameters are `rdeploy.*`; eDeploy's (`SERV=`, `HTTP_PORT=`, `HTTP_PATH=`,
//! `ONSUCCESS=`, `ONFAILURE=`) are accepted so an existing PXE setup keeps working. When both
//! are given, the `rdeploy.*` one wins; a flag of `rdeploy-agent run` wins over both.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What the agent does when the run ends (`rdeploy.onsuccess=`, `rdeploy.onfailure=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EndAction {
    /// Reboot the machine (`reboot -f`): it boots its disk, as the server now says.
    Reboot,
    /// Load the installed kernel and jump into it (`kexec`): no firmware POST.
    Kexec,
    /// Power off (`poweroff -f`).
    Halt,
    /// Stay in the installer and leave the console to a person.
    Console,
}

impl FromStr for EndAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "reboot" => Ok(Self::Reboot),
            "kexec" => Ok(Self::Kexec),
            "halt" | "poweroff" => Ok(Self::Halt),
            "console" => Ok(Self::Console),
            _ => Err(format!("{s:?} is not reboot, kexec, halt or console")),
        }
    }
}

impl fmt::Display for EndAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reboot => "reboot",
            Self::Kexec => "kexec",
            Self::Halt => "halt",
            Self::Console => "console",
        })
    }
}

/// What the kernel command line says about the run. Every field is optional: a flag or a
/// default fills the gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelParams {
    /// The server's base URL (`rdeploy.server=`, or built from `SERV=`/`HTTP_PORT=`/`HTTP_PATH=`).
    pub server: Option<String>,
    /// `rdeploy.onsuccess=` / `ONSUCCESS=`.
    pub onsuccess: Option<EndAction>,
    /// `rdeploy.onfailure=` / `ONFAILURE=`.
    pub onfailure: Option<EndAction>,
    /// `rdeploy.command_timeout=` (seconds, or `10m`, `1h30m`).
    pub command_timeout: Option<Duration>,
    /// `rdeploy.retry_for=`: how long to wait for the server.
    pub retry_for: Option<Duration>,
    /// `rdeploy.ca=`: the CA file (in the initramfs) the server's certificate must chain to.
    pub ca: Option<std::path::PathBuf>,
    /// The MAC the machine booted from (`BOOTIF=01-52-54-00-12-34-56`, set by PXELINUX and by
    /// rdeploy's iPXE script), as `52:54:00:12:34:56`.
    pub boot_mac: Option<String>,
    /// Parameters that were recognised but had a bad value, as `name=value: why`.
    pub problems: Vec<String>,
}

/// Splits a command line into words; double quotes group (`a="b c"` is one word `a=b c`), as
/// the kernel does.
pub fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// A duration as `600` (seconds) or humantime (`10m`, `1h 30m`, `90s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration (600, 10m, 1h): {e}"))
}

impl KernelParams {
    /// Reads the parameters the agent knows from a kernel command line; others are ignored.
    pub fn parse(cmdline: &str) -> Self {
        let mut p = Self::default();
        let (mut serv, mut port, mut path) = (None, None, None);
        let (mut ed_success, mut ed_failure) = (None, None);
        for word in words(cmdline) {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let mut action = |slot: &mut Option<EndAction>| match value.parse() {
                Ok(a) => *slot = Some(a),
                Err(why) => p.problems.push(format!("{key}={value}: {why}")),
            };
            match key {
                "rdeploy.server" => p.server = Some(value.trim_end_matches('/').to_owned()),
                "rdeploy.ca" if !value.is_empty() => p.ca = Some(value.into()),
                "rdeploy.onsuccess" => action(&mut p.onsuccess),
                "rdeploy.onfailure" => action(&mut p.onfailure),
                "ONSUCCESS" => action(&mut ed_success),
                "ONFAILURE" => action(&mut ed_failure),
                "rdeploy.command_timeout" | "rdeploy.retry_for" => match parse_duration(value) {
                    Ok(d) if key == "rdeploy.retry_for" => p.retry_for = Some(d),
                    Ok(d) => p.command_timeout = Some(d),
                    Err(why) => p.problems.push(format!("{key}={value}: {why}")),
                },
                "SERV" => serv = Some(value.to_owned()),
                "HTTP_PORT" => port = Some(value.to_owned()),
                "HTTP_PATH" => path = Some(value.to_owned()),
                "BOOTIF" => match boot_mac(value) {
                    Some(mac) => p.boot_mac = Some(mac),
                    None => p.problems.push(format!(
                        "{key}={value}: not 01-xx-xx-xx-xx-xx-xx (PXELINUX's form)"
                    )),
                },
                _ => {}
            }
        }
        p.onsuccess = p.onsuccess.or(ed_success);
        p.onfailure = p.onfailure.or(ed_failure);
        if p.server.is_none() {
            if let Some(host) = serv.filter(|s| !s.is_empty()) {
                let port = port
                    .filter(|s| !s.is_empty() && s != "80")
                    .map(|s| format!(":{s}"))
                    .unwrap_or_default();
                p.server = Some(format!("http://{host}{port}{}", base_path(path.as_deref())));
            }
        }
        p
    }
}

/// eDeploy's `HTTP_PATH` as a path prefix of the server. eDeploy's default, `/cgi-bin/`,
/// named where its CGI scripts lived; rdeploy serves `/upload` at the root, so that value
/// means no prefix. Any other value is a prefix (a reverse proxy's sub-path).
fn base_path(path: Option<&str>) -> String {
    let p = path.unwrap_or("").trim_matches('/');
    if p.is_empty() || p == "cgi-bin" {
        String::new()
    } else {
        format!("/{p}")
    }
}

/// `01-52-54-00-12-34-56` (ARP type 1, then the MAC) → `52:54:00:12:34:56`.
fn boot_mac(value: &str) -> Option<String> {
    let parts: Vec<&str> = value.split(['-', ':']).collect();
    let mac = match parts.len() {
        7 => &parts[1..],
        6 => &parts[..],
        _ => return None,
    };
    mac.iter()
        .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| mac.join(":").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_the_kernel_quoting() {
        assert_eq!(
            words(r#"  BOOT_IMAGE=/vmlinuz  a="b c" quiet "x y"=z "#),
            ["BOOT_IMAGE=/vmlinuz", "a=b c", "quiet", "x y=z"]
        );
        assert!(words("").is_empty());
    }

    #[test]
    fn rdeploy_parameters() {
        let p = KernelParams::parse(
            "initrd=x rdeploy.server=http://10.0.0.1:8080/ rdeploy.onsuccess=kexec \
             rdeploy.onfailure=halt rdeploy.command_timeout=10m rdeploy.retry_for=90 \
             BOOTIF=01-52-54-00-AB-34-56 rdeploy.ca=/etc/rdeploy/lab-ca.pem quiet",
        );
        assert_eq!(
            p,
            KernelParams {
                server: Some("http://10.0.0.1:8080".into()),
                onsuccess: Some(EndAction::Kexec),
                onfailure: Some(EndAction::Halt),
                command_timeout: Some(Duration::from_secs(600)),
                retry_for: Some(Duration::from_secs(90)),
                ca: Some("/etc/rdeploy/lab-ca.pem".into()),
                boot_mac: Some("52:54:00:ab:34:56".into()),
                problems: vec![],
            }
        );
    }

    #[test]
    fn edeploy_parameters() {
        let p =
            KernelParams::parse("SERV=10.0.0.1 HTTP_PORT=8080 ONSUCCESS=reboot ONFAILURE=console");
        assert_eq!(p.server.as_deref(), Some("http://10.0.0.1:8080"));
        assert_eq!(p.onsuccess, Some(EndAction::Reboot));
        assert_eq!(p.onfailure, Some(EndAction::Console));
        // eDeploy's defaults: port 80 and the CGI directory mean the server's root.
        let p = KernelParams::parse("SERV=deploy HTTP_PORT=80 HTTP_PATH=/cgi-bin/");
        assert_eq!(p.server.as_deref(), Some("http://deploy"));
        let p = KernelParams::parse("SERV=deploy HTTP_PATH=/rdeploy/");
        assert_eq!(p.server.as_deref(), Some("http://deploy/rdeploy"));
    }

    #[test]
    fn rdeploy_names_win_over_edeploy_names() {
        let p = KernelParams::parse(
            "ONSUCCESS=halt rdeploy.onsuccess=reboot SERV=old rdeploy.server=http://new",
        );
        assert_eq!(p.onsuccess, Some(EndAction::Reboot));
        assert_eq!(p.server.as_deref(), Some("http://new"));
    }

    #[test]
    fn bad_values_are_reported_not_guessed() {
        let p = KernelParams::parse(
            "rdeploy.onsuccess=explode rdeploy.command_timeout=soon BOOTIF=xyz",
        );
        assert_eq!(p.onsuccess, None);
        assert_eq!(p.command_timeout, None);
        assert_eq!(p.boot_mac, None);
        assert_eq!(p.problems.len(), 3, "{:?}", p.problems);
        assert!(p.problems[0].starts_with("rdeploy.onsuccess=explode: "));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
    }
}
