//! Lab hosts: the rules for a machine added with an address (`rdeploy system add --ip` /
//! `--auto`, `rdeploy vm create`), in one place the server applies (the command line only
//! asks it): which address is free, what the machine is called, which MAC it gets.
//!
//! Pure: the core hands in what is taken (registered systems, nodes, CMDB entries) and the
//! resolver's answer; nothing here reads a file but [`LabConfig::load`].
//!
//! - The range: `range` of `<config-dir>/labs.toml`, or the request's own (`--range`).
//! - A free address: the first of the range that no registered system holds, no node has
//!   as its `ip`, and no CMDB entry of the config dir has as its `ip` (used or not).
//! - The name: the pattern's first free name (`lab-{n:03}` → `lab-001`, `lab-002`, ...);
//!   without a pattern asked for, the resolver's name for the address when it has one.
//! - The MAC, when none is given: locally administered, unicast, derived from the name
//!   (SHA-256), so the same name always gets the same MAC; the next derivation when another
//!   machine holds it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::identity::sanitize;

/// The file of the config dir that holds the lab settings.
pub const LAB_FILE: &str = "labs.toml";

/// The name pattern when neither the request nor `labs.toml` has one.
pub const DEFAULT_PATTERN: &str = "lab-{n:03}";

/// Why a lab host was not added (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("{text:?} is not an address range: {why} (e.g. 10.0.0.100-10.0.0.199, 10.0.0.100-199 or 10.0.0.0/24)")]
    BadRange { text: String, why: String },
    #[error(
        "no address range: set `range = \"10.0.0.100-10.0.0.199\"` in {path}, or give --range"
    )]
    NoRange { path: String },
    #[error("no free address in {range} ({origin}): all {size} taken ({summary})")]
    Exhausted {
        range: String,
        origin: String,
        size: u64,
        summary: String,
    },
    #[error("{ip} is taken by {by}")]
    Taken { ip: String, by: String },
    #[error("{text:?} is not an IPv4 address")]
    BadIp { text: String },
    #[error("{pattern:?} is not a name pattern: {why} (e.g. lab-{{n:03}}, pxe-{{ip}})")]
    BadPattern { pattern: String, why: String },
    #[error("no free name for the pattern {pattern:?}")]
    NoName { pattern: String },
    #[error("{mac} is not a unicast MAC address (the first octet is odd: a multicast address)")]
    Multicast { mac: String },
}

/// `<config-dir>/labs.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    /// The addresses `--auto` hands out.
    pub range: Option<String>,
    /// The default name pattern.
    pub name_pattern: Option<String>,
}

impl LabConfig {
    /// Reads `<dir>/labs.toml`; no file is an empty config.
    pub fn load(dir: &Path) -> Result<LabConfig, LabError> {
        let path: PathBuf = dir.join(LAB_FILE);
        let config_error = |message: String| LabError::Config {
            path: path.display().to_string(),
            message,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LabConfig::default()),
            Err(e) => return Err(config_error(format!("cannot read: {e}"))),
        };
        toml::from_str(&text).map_err(|e| config_error(e.to_string().trim().to_owned()))
    }
}

/// A range of IPv4 addresses, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl AddressRange {
    /// `10.0.0.100-10.0.0.199`, `10.0.0.100-199` (the last octet), or `10.0.0.0/24` (its
    /// hosts: network and broadcast addresses left out).
    pub fn parse(text: &str) -> Result<AddressRange, LabError> {
        let bad = |why: &str| LabError::BadRange {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let ip = |s: &str| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| bad(&format!("{:?} is not an IPv4 address", s.trim())))
        };
        let (first, last) = if let Some((net, len)) = text.split_once('/') {
            let net = u32::from(ip(net)?);
            let len: u32 = len
                .trim()
                .parse()
                .ok()
                .filter(|l| (8..=30).contains(l))
                .ok_or_else(|| bad("the prefix length must be 8 to 30"))?;
            let mask = u32::MAX << (32 - len);
            if net & !mask != 0 {
                return Err(bad("host bits are set in the network address"));
            }
            (net + 1, (net | !mask) - 1)
        } else if let Some((a, b)) = text.split_once('-') {
            let first = u32::from(ip(a)?);
            let last = if b.contains('.') {
                u32::from(ip(b)?)
            } else {
                let octet: u8 = b.trim().parse().map_err(|_| {
                    bad(&format!(
                        "{:?} is neither an address nor an octet",
                        b.trim()
                    ))
                })?;
                (first & !0xff) | u32::from(octet)
            };
            (first, last)
        } else {
            let one = u32::from(ip(text)?);
            (one, one)
        };
        if first > last {
            return Err(bad("the range ends before it starts"));
        }
        Ok(AddressRange {
            first: first.into(),
            last: last.into(),
        })
    }

    pub fn size(&self) -> u64 {
        u64::from(u32::from(self.last)) - u64::from(u32::from(self.first)) + 1
    }

    fn iter(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }
}

/// What holds each address: `system lab-001`, `node N`, `hp.cmdb (hostname h1)`.
#[derive(Debug, Default)]
pub struct Taken {
    by: BTreeMap<Ipv4Addr, String>,
}

impl Taken {
    /// Records that `who` holds `ip` (the first holder is kept); text that is not an IPv4
    /// address (a prefix such as `10.34`) holds nothing.
    pub fn add(&mut self, ip: &str, who: impl Into<String>) {
        if let Ok(ip) = ip.trim().parse::<Ipv4Addr>() {
            self.by.entry(ip).or_insert_with(|| who.into());
        }
    }

    pub fn holder(&self, ip: Ipv4Addr) -> Option<&str> {
        self.by.get(&ip).map(String::as_str)
    }

    /// The first free address of `range`; `origin` says where the range came from.
    pub fn first_free(&self, range: AddressRange, origin: &str) -> Result<Ipv4Addr, LabError> {
        if let Some(ip) = range.iter().find(|ip| !self.by.contains_key(ip)) {
            return Ok(ip);
        }
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, who) in self.by.range(range.first..=range.last) {
            let kind = who.split_whitespace().next().unwrap_or("other");
            *kinds.entry(kind).or_default() += 1;
        }
        let summary = kinds
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(LabError::Exhausted {
            range: range.to_string(),
            origin: origin.to_owned(),
            size: range.size(),
            summary,
        })
    }

    /// An address asked for by hand: free, or an error naming its holder.
    pub fn check_free(&self, text: &str) -> Result<Ipv4Addr, LabError> {
        let ip: Ipv4Addr = text.trim().parse().map_err(|_| LabError::BadIp {
            text: text.to_owned(),
        })?;
        match self.holder(ip) {
            Some(by) => Err(LabError::Taken {
                ip: ip.to_string(),
                by: by.to_owned(),
            }),
            None => Ok(ip),
        }
    }
}

/// A checked name pattern: text with `{n}` (a counter), `{n:0W}` (zero-padded to W
/// digits) and `{ip}` (the address, dots as dashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Counter { width: usize },
    Ip,
}

impl NamePattern {
    pub fn parse(text: &str) -> Result<NamePattern, LabError> {
        let bad = |why: &str| LabError::BadPattern {
            pattern: text.to_owned(),
            why: why.to_owned(),
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| bad("a '{' is not closed"))?;
            let field = &rest[open + 1..close];
            parts.push(match field {
                "n" => Part::Counter { width: 0 },
                "ip" => Part::Ip,
                f => match f.strip_prefix("n:") {
                    Some(w) => Part::Counter {
                        width: w
                            .trim_start_matches('0')
                            .parse()
                            .ok()
                            .filter(|w| (1..=9).contains(w))
                            .ok_or_else(|| bad(&format!("{{{f}}}: the width must be 01 to 09")))?,
                    },
                    None => {
                        return Err(bad(&format!(
                            "unknown field {{{f}}} (only {{n}}, {{n:03}}, {{ip}})"
                        )))
                    }
                },
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if !parts.iter().any(|p| !matches!(p, Part::Text(_))) {
            return Err(bad(
                "it needs {n} or {ip}, or every host gets the same name",
            ));
        }
        let pattern = NamePattern {
            text: text.to_owned(),
            parts,
        };
        let sample = pattern.render(1, Ipv4Addr::new(10, 0, 0, 1));
        if sanitize(&sample).as_deref() != Some(sample.as_str()) {
            return Err(bad(&format!(
                "it makes {sample:?}: names are letters, digits, '.', '_', '-'"
            )));
        }
        Ok(pattern)
    }

    fn render(&self, n: u32, ip: Ipv4Addr) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Counter { width } => format!("{n:0width$}"),
                Part::Ip => ip.to_string().replace('.', "-"),
            })
            .collect()
    }

    /// The first name the pattern makes (counter from 1) that `taken` refuses not.
    pub fn first_free(
        &self,
        ip: Ipv4Addr,
        taken: impl Fn(&str) -> bool,
    ) -> Result<String, LabError> {
        let counts = self.parts.iter().any(|p| matches!(p, Part::Counter { .. }));
        let last = if counts { 1_000_000 } else { 1 };
        (1..=last)
            .map(|n| self.render(n, ip))
            .find(|name| !taken(name))
            .ok_or_else(|| LabError::NoName {
                pattern: self.text.clone(),
            })
    }
}

/// The name a resolver gave an address, as a system name: its first label, if that is a
/// usable name.
pub fn name_from_dns(fqdn: &str) -> Option<String> {
    let label = fqdn.trim_end_matches('.').split('.').next()?;
    sanitize(label).filter(|s| s == label && !s.is_empty())
}

/// The MAC derived from a name: SHA-256 of the name (and an attempt number), first six
/// bytes, marked locally administered (`x2`, `x6`, `xa`, `xe` first octet) and unicast.
/// The first attempt that `taken` does not refuse.
pub fn derived_mac(name: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut attempt: u32 = 0;
    loop {
        let mut h = Sha256::new();
        h.update(b"rdeploy lab mac\0");
        h.update(name.as_bytes());
        if attempt > 0 {
            h.update(attempt.to_be_bytes());
        }
        let d = h.finalize();
        let mut b = [0u8; 6];
        b.copy_from_slice(&d[..6]);
        b[0] = (b[0] & 0xfc) | 0x02;
        let mac = b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        if !taken(&mac) || attempt == u32::MAX {
            return mac;
        }
        attempt += 1;
    }
}

/// Refuses a multicast MAC (a machine's own address is unicast); `mac` is normalized.
pub fn check_unicast(mac: &str) -> Result<(), LabError> {
    let first = u8::from_str_radix(mac.get(..2).unwrap_or("01"), 16).unwrap_or(1);
    if first & 1 == 1 {
        return Err(LabError::Multicast {
            mac: mac.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_three_ways_and_say_what_is_wrong() -> Result<(), LabError> {
        let r = AddressRange::parse("10.0.0.100-10.0.0.102")?;
        assert_eq!(r.size(), 3);
        assert_eq!(AddressRange::parse("10.0.0.100-102")?, r);
        let net = AddressRange::parse("192.168.7.0/24")?;
        assert_eq!(net.to_string(), "192.168.7.1-192.168.7.254");
        for (bad, why) in [
            ("10.0.0.9-10.0.0.1", "ends before"),
            ("10.0.0.1/33", "prefix length"),
            ("10.0.0.1/24", "host bits"),
            ("10.0.0.x-5", "not an IPv4"),
            ("10.0.0.1-300", "neither"),
        ] {
            match AddressRange::parse(bad) {
                Err(e) => assert!(e.to_string().contains(why), "{bad}: {e}"),
                Ok(r) => panic!("{bad} gave {r}"),
            }
        }
        Ok(())
    }

    #[test]
    fn the_first_free_address_skips_every_holder() -> Result<(), LabError> {
        let r = AddressRange::parse("10.0.0.1-3")?;
        let mut t = Taken::default();
        t.add("10.0.0.1", "system a");
        t.add("10.34", "system subnet");
        t.add("10.0.0.2", "hp.cmdb (hostname h2)");
        assert_eq!(t.first_free(r, "labs.toml")?, Ipv4Addr::new(10, 0, 0, 3));
        t.add("10.0.0.3", "node n3");
        let e = t
            .first_free(r, "/etc/rdeploy/labs.toml")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("no free address in 10.0.0.1-10.0.0.3 (/etc/rdeploy/labs.toml): all 3 taken (hp.cmdb: 1, node: 1, system: 1)")
        );
        let e = t.check_free("10.0.0.2").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("10.0.0.2 is taken by hp.cmdb (hostname h2)")
        );
        assert_eq!(t.check_free("10.0.0.9")?, Ipv4Addr::new(10, 0, 0, 9));
        assert!(matches!(
            t.check_free("10.0.0"),
            Err(LabError::BadIp { .. })
        ));
        Ok(())
    }

    #[test]
    fn patterns_count_pad_and_name_the_address() -> Result<(), LabError> {
        let ip = Ipv4Addr::new(10, 0, 0, 7);
        let p = NamePattern::parse("lab-{n:03}")?;
        assert_eq!(p.first_free(ip, |_| false)?, "lab-001");
        assert_eq!(
            p.first_free(ip, |n| n == "lab-001" || n == "lab-002")?,
            "lab-003"
        );
        assert_eq!(
            NamePattern::parse("pxe-{ip}")?.first_free(ip, |_| false)?,
            "pxe-10-0-0-7"
        );
        assert!(NamePattern::parse("pxe-{ip}")?
            .first_free(ip, |_| true)
            .is_err());
        assert_eq!(
            NamePattern::parse("n{n}")?.first_free(ip, |n| n == "n1")?,
            "n2"
        );
        for bad in ["lab", "lab-{x}", "lab-{n", "lab {n}", "lab-{n:0}"] {
            assert!(NamePattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(name_from_dns("ws1.lab.example.").as_deref(), Some("ws1"));
        assert_eq!(name_from_dns("bad name.example"), None);
        Ok(())
    }

    #[test]
    fn derived_macs_are_stable_local_unicast_and_unique() {
        let a = derived_mac("lab-001", |_| false);
        assert_eq!(a, derived_mac("lab-001", |_| false));
        assert_ne!(a, derived_mac("lab-002", |_| false));
        let first = u8::from_str_radix(&a[..2], 16).unwrap_or(1);
        assert_eq!(first & 0x03, 0x02, "{a}: locally administered, unicast");
        let other = derived_mac("lab-001", |m| m == a);
        assert_ne!(other, a);
        assert!(check_unicast(&a).is_ok());
        assert!(check_unicast("01:00:5e:00:00:01").is_err());
    }
}
