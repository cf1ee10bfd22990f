//! The network model of a profile (ethernets, bonds, VLANs, static addresses) and its two renderers:
//! Debian's `/etc/network/interfaces` (ifupdown, ifenslave, vlan) and netplan YAML.
//!
//! Both renderers take the same model, read from the script's map through serde with unknown
//! keys refused, so a typo (`adress`) is an error instead of a silently unconfigured NIC.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;

use crate::tools::ArgError;

/// A whole network configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// netplan only: `networkd` or `NetworkManager`.
    #[serde(default)]
    pub renderer: Option<String>,
    /// Physical interfaces by name.
    #[serde(default)]
    pub ethernets: BTreeMap<String, Iface>,
    /// Bonds by name.
    #[serde(default)]
    pub bonds: BTreeMap<String, Iface>,
    /// VLANs by name (`bond0.100`, `vlan100`).
    #[serde(default)]
    pub vlans: BTreeMap<String, Iface>,
}

/// One interface; the bond and VLAN keys are only allowed in their sections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Iface {
    /// DHCPv4.
    #[serde(default, alias = "dhcp4")]
    pub dhcp: bool,
    /// DHCPv6.
    #[serde(default)]
    pub dhcp6: bool,
    /// One address, CIDR (`10.0.0.5/24`) or bare with `netmask`.
    #[serde(default)]
    pub address: Option<String>,
    /// The netmask of a bare `address` (`255.255.255.0`).
    #[serde(default)]
    pub netmask: Option<String>,
    /// More addresses, CIDR.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The default gateway (IPv4 or IPv6).
    #[serde(default)]
    pub gateway: Option<String>,
    /// DNS servers.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// DNS search domains.
    #[serde(default)]
    pub search: Vec<String>,
    /// MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Bonds: member interfaces (declared under `ethernets`).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Bonds: `balance-rr`, `active-backup`, `balance-xor`, `broadcast`, `802.3ad`, `balance-tlb`, `balance-alb`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Bonds: link monitoring interval in ms.
    #[serde(default)]
    pub miimon: Option<u32>,
    /// Bonds: `slow` or `fast` (802.3ad).
    #[serde(default)]
    pub lacp_rate: Option<String>,
    /// Bonds: `layer2`, `layer3+4`, `layer2+3`, `encap2+3`, `encap3+4`.
    #[serde(default)]
    pub xmit_hash_policy: Option<String>,
    /// Bonds: preferred member (active-backup).
    #[serde(default)]
    pub primary: Option<String>,
    /// VLANs: the VLAN id.
    #[serde(default)]
    pub id: Option<u16>,
    /// VLANs: the parent interface.
    #[serde(default)]
    pub link: Option<String>,
}

/// An interface checked and with its addresses in CIDR form.
struct Checked<'a> {
    name: &'a str,
    iface: &'a Iface,
    v4: Vec<String>,
    v6: Vec<String>,
    gateway: Option<IpAddr>,
}

fn err(msg: impl Into<String>) -> ArgError {
    ArgError(msg.into())
}

fn check_name(name: &str) -> Result<(), ArgError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'))
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(err(format!(
            "interface name {name:?} must be 1-15 letters, digits, '_', '.', '-' or ':'"
        )))
    }
}

fn prefix_of(mask: &str) -> Result<u32, ArgError> {
    let m: Ipv4Addr = mask
        .parse()
        .map_err(|_| err(format!("netmask {mask:?} is not an IPv4 netmask")))?;
    let bits = u32::from(m);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(err(format!("netmask {mask:?} is not contiguous")));
    }
    Ok(bits.leading_ones())
}

fn cidr(s: &str) -> Result<(IpAddr, String), ArgError> {
    let bad = || err(format!("address {s:?} is not ADDRESS/PREFIX"));
    let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok((ip, format!("{ip}/{prefix}")))
}

impl Network {
    /// Checks the model as a whole: names, addresses, bond members and VLAN parents exist.
    fn check(&self) -> Result<Vec<Checked<'_>>, ArgError> {
        let mut masters: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, bond) in &self.bonds {
            if bond.interfaces.is_empty() {
                return Err(err(format!("bond {name} has no interfaces")));
            }
            for member in &bond.interfaces {
                if !self.ethernets.contains_key(member) {
                    return Err(err(format!(
                        "bond {name} member {member} is not declared under ethernets"
                    )));
                }
                if let Some(other) = masters.insert(member, name) {
                    return Err(err(format!(
                        "{member} is a member of both {other} and {name}"
                    )));
                }
            }
            if let Some(p) = &bond.primary {
                if !bond.interfaces.contains(p) {
                    return Err(err(format!(
                        "bond {name} primary {p} is not one of its interfaces"
                    )));
                }
            }
        }
        let mut out = Vec::new();
        let sections = [
            ("ethernets", &self.ethernets),
            ("bonds", &self.bonds),
            ("vlans", &self.vlans),
        ];
        let mut seen = BTreeMap::new();
        for (section, ifaces) in sections {
            for (name, iface) in ifaces {
                check_name(name)?;
                if let Some(prev) = seen.insert(name.as_str(), section) {
                    return Err(err(format!(
                        "{name} is declared in both {prev} and {section}"
                    )));
                }
                let bond_keys = !iface.interfaces.is_empty()
                    || iface.mode.is_some()
                    || iface.miimon.is_some()
                    || iface.lacp_rate.is_some()
                    || iface.xmit_hash_policy.is_some()
                    || iface.primary.is_some();
                let vlan_keys = iface.id.is_some() || iface.link.is_some();
                if bond_keys && section != "bonds" {
                    return Err(err(format!("{name}: bond settings belong under bonds")));
                }
                if vlan_keys && section != "vlans" {
                    return Err(err(format!("{name}: id and link belong under vlans")));
                }
                if section == "vlans" {
                    let link = iface
                        .link
                        .as_deref()
                        .ok_or_else(|| err(format!("vlan {name} has no link")))?;
                    if !(self.ethernets.contains_key(link) || self.bonds.contains_key(link)) {
                        return Err(err(format!(
                            "vlan {name} link {link} is not a declared ethernet or bond"
                        )));
                    }
                    match iface.id {
                        Some(1..=4094) => {}
                        _ => return Err(err(format!("vlan {name} id must be 1-4094"))),
                    }
                }
                out.push(self.check_one(name, iface, masters.get(name.as_str()).copied())?);
            }
        }
        Ok(out)
    }

    fn check_one<'a>(
        &'a self,
        name: &'a str,
        iface: &'a Iface,
        master: Option<&'a str>,
    ) -> Result<Checked<'a>, ArgError> {
        let mut all = Vec::new();
        if let Some(a) = &iface.address {
            if a.contains('/') {
                if iface.netmask.is_some() {
                    return Err(err(format!(
                        "{name}: give either {a} or a netmask, not both"
                    )));
                }
                all.push(cidr(a)?);
            } else {
                let mask = iface.netmask.as_deref().ok_or_else(|| {
                    err(format!("{name}: address {a} needs a /prefix or a netmask"))
                })?;
                all.push(cidr(&format!("{a}/{}", prefix_of(mask)?))?);
            }
        } else if iface.netmask.is_some() {
            return Err(err(format!("{name}: netmask without address")));
        }
        for a in &iface.addresses {
            all.push(cidr(a)?);
        }
        let gateway = iface
            .gateway
            .as_deref()
            .map(|g| {
                g.parse::<IpAddr>()
                    .map_err(|_| err(format!("{name}: gateway {g:?} is not an IP address")))
            })
            .transpose()?;
        for ns in &iface.nameservers {
            ns.parse::<IpAddr>()
                .map_err(|_| err(format!("{name}: nameserver {ns:?} is not an IP address")))?;
        }
        for s in iface
            .search
            .iter()
            .chain(&iface.mode)
            .chain(&iface.lacp_rate)
        {
            if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err(format!("{name}: {s:?} is not a single word")));
            }
        }
        if let Some(m) = &iface.mode {
            const MODES: [&str; 7] = [
                "balance-rr",
                "active-backup",
                "balance-xor",
                "broadcast",
                "802.3ad",
                "balance-tlb",
                "balance-alb",
            ];
            if !MODES.contains(&m.as_str()) {
                return Err(err(format!(
                    "{name}: bond mode {m:?} is not one of {MODES:?}"
                )));
            }
        }
        if let Some(p) = &iface.xmit_hash_policy {
            const POLICIES: [&str; 5] = ["layer2", "layer2+3", "layer3+4", "encap2+3", "encap3+4"];
            if !POLICIES.contains(&p.as_str()) {
                return Err(err(format!(
                    "{name}: xmit_hash_policy {p:?} is not one of {POLICIES:?}"
                )));
            }
        }
        if let Some(r) = &iface.lacp_rate {
            if r != "slow" && r != "fast" {
                return Err(err(format!("{name}: lacp_rate {r:?} is not slow or fast")));
            }
        }
        let configured = iface.dhcp || iface.dhcp6 || !all.is_empty() || gateway.is_some();
        if let (Some(m), true) = (master, configured) {
            return Err(err(format!(
                "{name} is a member of {m} and cannot have addresses of its own"
            )));
        }
        if let Some(g) = gateway {
            if !all.iter().any(|(ip, _)| ip.is_ipv4() == g.is_ipv4()) {
                return Err(err(format!(
                    "{name}: gateway {g} has no static address of its family"
                )));
            }
        }
        let (v4, v6) = all
            .into_iter()
            .partition::<Vec<_>, _>(|(ip, _)| ip.is_ipv4());
        Ok(Checked {
            name,
            iface,
            v4: v4.into_iter().map(|(_, s)| s).collect(),
            v6: v6.into_iter().map(|(_, s)| s).collect(),
            gateway,
        })
    }
}

const HEADER: &str = "# Generated by rdeploy from the profile's configure script.\n";

/// Renders `/etc/network/interfaces` (ifupdown with ifenslave and vlan).
pub fn render_interfaces(net: &Network) -> Result<String, ArgError> {
    let ifaces = net.check()?;
    let mut out = String::from(HEADER);
    out.push_str("auto lo\niface lo inet loopback\n");
    for c in &ifaces {
        let i = c.iface;
        let mut extra = Vec::new();
        if !i.nameservers.is_empty() {
            extra.push(format!("dns-nameservers {}", i.nameservers.join(" ")));
        }
        if !i.search.is_empty() {
            extra.push(format!("dns-search {}", i.search.join(" ")));
        }
        if let Some(mtu) = i.mtu {
            extra.push(format!("mtu {mtu}"));
        }
        if !i.interfaces.is_empty() {
            extra.push(format!("bond-slaves {}", i.interfaces.join(" ")));
            extra.push(format!(
                "bond-mode {}",
                i.mode.as_deref().unwrap_or("balance-rr")
            ));
            extra.push(format!("bond-miimon {}", i.miimon.unwrap_or(100)));
            if let Some(r) = &i.lacp_rate {
                extra.push(format!("bond-lacp-rate {r}"));
            }
            if let Some(p) = &i.xmit_hash_policy {
                extra.push(format!("bond-xmit-hash-policy {p}"));
            }
            if let Some(p) = &i.primary {
                extra.push(format!("bond-primary {p}"));
            }
        }
        if let Some(link) = &i.link {
            extra.push(format!("vlan-raw-device {link}"));
        }
        let mut stanzas: Vec<(String, Vec<String>)> = Vec::new();
        let gw = |v6: bool| {
            c.gateway
                .filter(|g| g.is_ipv6() == v6)
                .map(|g| format!("gateway {g}"))
        };
        if i.dhcp {
            stanzas.push(("inet dhcp".into(), Vec::new()));
        }
        for (n, a) in c.v4.iter().enumerate() {
            let mut lines = vec![format!("address {a}")];
            lines.extend(gw(false).filter(|_| n == 0));
            stanzas.push(("inet static".into(), lines));
        }
        if i.dhcp6 {
            stanzas.push(("inet6 dhcp".into(), Vec::new()));
        }
        for (n, a) in c.v6.iter().enumerate() {
            let mut lines = vec![format!("address {a}")];
            lines.extend(gw(true).filter(|_| n == 0));
            stanzas.push(("inet6 static".into(), lines));
        }
        if stanzas.is_empty() {
            stanzas.push(("inet manual".into(), Vec::new()));
        }
        if let Some(first) = stanzas.first_mut() {
            first.1.extend(extra);
        }
        let _ = writeln!(out, "\nauto {}", c.name);
        for (kind, lines) in stanzas {
            let _ = writeln!(out, "iface {} {kind}", c.name);
            for l in lines {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    Ok(out)
}

/// A YAML scalar: bare when unambiguous, double-quoted otherwise.
fn yaml_str(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '+'))
        && !s.starts_with(['-', '.'])
        && s.parse::<f64>().is_err()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        );
    if bare {
        s.to_owned()
    } else {
        serde_json::Value::String(s.to_owned()).to_string()
    }
}

fn yaml_list(items: &[String]) -> String {
    let v: Vec<_> = items.iter().map(|s| yaml_str(s)).collect();
    format!("[{}]", v.join(", "))
}

/// Renders a netplan file (`/etc/netplan/50-rdeploy.yaml`).
pub fn render_netplan(net: &Network) -> Result<String, ArgError> {
    let ifaces = net.check()?;
    let mut out = String::from(HEADER);
    out.push_str("network:\n  version: 2\n");
    if let Some(r) = &net.renderer {
        if r != "networkd" && r != "NetworkManager" {
            return Err(err(format!(
                "renderer {r:?} is not networkd or NetworkManager"
            )));
        }
        let _ = writeln!(out, "  renderer: {r}");
    }
    let mut section = "";
    for c in &ifaces {
        let i = c.iface;
        let this = if !i.interfaces.is_empty() {
            "bonds"
        } else if i.link.is_some() {
            "vlans"
        } else {
            "ethernets"
        };
        if this != section {
            section = this;
            let _ = writeln!(out, "  {section}:");
        }
        let mut lines: Vec<String> = Vec::new();
        if let Some(id) = i.id {
            lines.push(format!("id: {id}"));
        }
        if let Some(link) = &i.link {
            lines.push(format!("link: {}", yaml_str(link)));
        }
        if !i.interfaces.is_empty() {
            lines.push(format!("interfaces: {}", yaml_list(&i.interfaces)));
        }
        if i.dhcp {
            lines.push("dhcp4: true".into());
        }
        if i.dhcp6 {
            lines.push("dhcp6: true".into());
        }
        let addrs: Vec<String> = c.v4.iter().chain(&c.v6).cloned().collect();
        if !addrs.is_empty() {
            lines.push(format!("addresses: {}", yaml_list(&addrs)));
        }
        if let Some(g) = c.gateway {
            lines.push("routes:".into());
            lines.push("  - to: default".into());
            lines.push(format!("    via: {}", yaml_str(&g.to_string())));
        }
        if !i.nameservers.is_empty() || !i.search.is_empty() {
            lines.push("nameservers:".into());
            if !i.nameservers.is_empty() {
                lines.push(format!("  addresses: {}", yaml_list(&i.nameservers)));
            }
            if !i.search.is_empty() {
                lines.push(format!("  search: {}", yaml_list(&i.search)));
            }
        }
        if let Some(mtu) = i.mtu {
            lines.push(format!("mtu: {mtu}"));
        }
        if !i.interfaces.is_empty() {
            lines.push("parameters:".into());
            lines.push(format!(
                "  mode: {}",
                yaml_str(i.mode.as_deref().unwrap_or("balance-rr"))
            ));
            lines.push(format!(
                "  mii-monitor-interval: {}",
                i.miimon.unwrap_or(100)
            ));
            if let Some(r) = &i.lacp_rate {
                lines.push(format!("  lacp-rate: {r}"));
            }
            if let Some(p) = &i.xmit_hash_policy {
                lines.push(format!("  transmit-hash-policy: {}", yaml_str(p)));
            }
            if let Some(p) = &i.primary {
                lines.push(format!("  primary: {}", yaml_str(p)));
            }
        }
        if lines.is_empty() {
            let _ = writeln!(out, "    {}: {{}}", yaml_str(c.name));
        } else {
            let _ = writeln!(out, "    {}:", yaml_str(c.name));
            for l in lines {
                let _ = writeln!(out, "      {l}");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(json: serde_json::Value) -> Network {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("bad test model: {e}"))
    }

    fn bonded() -> Network {
        model(serde_json::json!({
            "ethernets": {"eno1": {}, "eno2": {}, "eno3": {"dhcp": true}},
            "bonds": {"bond0": {
                "interfaces": ["eno1", "eno2"], "mode": "802.3ad", "lacp_rate": "fast",
                "xmit_hash_policy": "layer3+4",
                "address": "10.0.0.5", "netmask": "255.255.255.0", "gateway": "10.0.0.1",
                "nameservers": ["10.0.0.2"], "search": ["example.com"], "mtu": 9000
            }},
            "vlans": {"bond0.100": {"id": 100, "link": "bond0",
                                    "addresses": ["192.168.100.5/24", "2001:db8::5/64"]}}
        }))
    }

    #[test]
    fn interfaces_file() {
        let text = render_interfaces(&bonded()).map_err(|e| e.0);
        let expected = "\
# Generated by rdeploy from the profile's configure script.
auto lo
iface lo inet loopback

auto eno1
iface eno1 inet manual

auto eno2
iface eno2 inet manual

auto eno3
iface eno3 inet dhcp

auto bond0
iface bond0 inet static
    address 10.0.0.5/24
    gateway 10.0.0.1
    dns-nameservers 10.0.0.2
    dns-search example.com
    mtu 9000
    bond-slaves eno1 eno2
    bond-mode 802.3ad
    bond-miimon 100
    bond-lacp-rate fast
    bond-xmit-hash-policy layer3+4

auto bond0.100
iface bond0.100 inet static
    address 192.168.100.5/24
    vlan-raw-device bond0
iface bond0.100 inet6 static
    address 2001:db8::5/64
";
        assert_eq!(text.as_deref(), Ok(expected));
    }

    #[test]
    fn netplan_file() {
        let text = render_netplan(&bonded()).map_err(|e| e.0);
        let expected = "\
# Generated by rdeploy from the profile's configure script.
network:
  version: 2
  ethernets:
    eno1: {}
    eno2: {}
    eno3:
      dhcp4: true
  bonds:
    bond0:
      interfaces: [eno1, eno2]
      addresses: [10.0.0.5/24]
      routes:
        - to: default
          via: 10.0.0.1
      nameservers:
        addresses: [10.0.0.2]
        search: [example.com]
      mtu: 9000
      parameters:
        mode: 802.3ad
        mii-monitor-interval: 100
        lacp-rate: fast
        transmit-hash-policy: layer3+4
  vlans:
    bond0.100:
      id: 100
      link: bond0
      addresses: [192.168.100.5/24, \"2001:db8::5/64\"]
";
        assert_eq!(text.as_deref(), Ok(expected));
    }

    #[test]
    fn bad_models_are_refused() {
        let bad = [
            serde_json::json!({"ethernets": {"eno1": {"adress": "10.0.0.1/24"}}}),
            serde_json::json!({"bonds": {"bond0": {"interfaces": ["eno9"]}}}),
            serde_json::json!({"ethernets": {"eno1": {"dhcp": true}},
                               "bonds": {"bond0": {"interfaces": ["eno1"]}}}),
            serde_json::json!({"vlans": {"v": {"id": 5, "link": "nope"}}}),
            serde_json::json!({"ethernets": {"eno1": {"address": "10.0.0.1", "netmask": "255.0.255.0"}}}),
            serde_json::json!({"ethernets": {"eno1": {"address": "10.0.0.1/33"}}}),
            serde_json::json!({"ethernets": {"eno1": {"mode": "802.3ad"}}}),
            serde_json::json!({"ethernets": {"eno1": {"address": "10.0.0.1/24", "gateway": "fe80::1"}}}),
            serde_json::json!({"ethernets": {"a-name-much-too-long": {}}}),
        ];
        for b in bad {
            let r = serde_json::from_value::<Network>(b.clone())
                .map_err(|e| e.to_string())
                .and_then(|n| render_netplan(&n).map_err(|e| e.0));
            assert!(r.is_err(), "{b} was accepted");
        }
    }
}
