//! Network interfaces from `/sys/class/net`, IPv4 addresses from `/proc/net`.
//!
//! Interfaces: those with a `device` link (a NIC on a bus); `lo`, bridges, bonds, veth, tun
//! and other virtual interfaces have none and are left out, as eDeploy's lshw-based
//! detection left them. Keys, as eDeploy (lshw) wrote them:
//! - `businfo`: `pci@0000:02:00.0`, `virtio@0`;
//! - `size`: the link speed in bit/s (`'1000000000'`), `speed`: lshw's form (`'1Gbit/s'`,
//!   `'10Gbit/s'`, `'100Mbit/s'`, `'2500Mbit/s'`), `duplex` (`full`/`half`): only while the
//!   link is up with a known speed (virtio has none);
//! - `serial`: the MAC address, lower case; `link`: `yes`/`no` (carrier); `driver`: the
//!   bound kernel driver (`ixgbe`, `virtio_net`);
//! - `ipv4`, `ipv4-netmask`, `ipv4-cidr` (a string: `'24'`), `ipv4-network`.
//!
//! IPv4 without external tools or netlink: `/proc/net/fib_trie` lists the machine's local
//! addresses (`/32 host LOCAL`), `/proc/net/route` each interface's connected networks; an
//! interface's address is the first local address inside one of its connected networks.
//! Both are files, so a captured tree has them too. An address without a prefix route (a
//! `/32` or `noprefixroute` address) is not seen; with several addresses in an interface's
//! networks, the lowest is reported (lshw gave the primary one).

use std::net::Ipv4Addr;

use super::{log_failure, read_line_logged, Lines, Root};

const NET: &str = "/sys/class/net";

/// lshw's speed text for a speed in Mbit/s (`1000` → `1Gbit/s`).
pub fn speed_text(mbits: u64) -> String {
    // lshw's decimalkilos(bits) + "bit/s"
    let mut value = mbits.saturating_mul(1_000_000);
    let prefixes = ['K', 'M', 'G', 'T', 'P', 'E'];
    let mut i = 0;
    while i < prefixes.len() && value > 0 && (value > 10_000 || value % 1000 == 0) {
        value /= 1000;
        i += 1;
    }
    match i {
        0 => format!("{value}bit/s"),
        _ => format!("{value}{}bit/s", prefixes[i - 1]),
    }
}

/// The interfaces eDeploy reports (with a `device` link), sorted by name.
pub fn physical_interfaces(root: &Root) -> Vec<String> {
    let names = match root.read_dir(NET) {
        Ok(n) => n,
        Err(e) => {
            log_failure(root, NET, &e);
            return Vec::new();
        }
    };
    names
        .into_iter()
        .filter(|n| root.read_link(&format!("{NET}/{n}/device")).is_ok())
        .collect()
}

/// The first NIC's MAC without colons (eDeploy's last-resort serial number).
pub fn first_mac(root: &Root) -> Option<String> {
    let first = physical_interfaces(root).into_iter().next()?;
    let mac = root.read_line(&format!("{NET}/{first}/address")).ok()?;
    Some(mac.to_lowercase().replace(':', ""))
}

/// Adds the network lines.
pub fn detect(root: &Root, out: &mut Lines) {
    let addrs = ipv4_addresses(root);
    for name in physical_interfaces(root) {
        let base = format!("{NET}/{name}");
        if let Some(b) = businfo(root, &base) {
            out.push("network", &name, "businfo", b);
        }
        let carrier = root.read_line(&format!("{base}/carrier")).ok();
        let up = carrier.as_deref() == Some("1");
        let speed = if up {
            root.read_line(&format!("{base}/speed"))
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s > 0)
        } else {
            None
        };
        if let Some(s) = speed {
            out.push("network", &name, "size", (s * 1_000_000).to_string());
        }
        if let Some(mac) = read_line_logged(root, &format!("{base}/address")) {
            out.push("network", &name, "serial", mac.to_lowercase());
        }
        if let Some(a) = addrs.iter().find(|a| a.iface == name) {
            let cidr = u32::from(a.mask).leading_ones();
            let network = Ipv4Addr::from(u32::from(a.addr) & u32::from(a.mask));
            out.push("network", &name, "ipv4", a.addr.to_string());
            out.push("network", &name, "ipv4-netmask", a.mask.to_string());
            out.push("network", &name, "ipv4-cidr", cidr.to_string());
            out.push("network", &name, "ipv4-network", network.to_string());
        }
        out.push("network", &name, "link", if up { "yes" } else { "no" });
        if let Ok(driver) = root.link_name(&format!("{base}/device/driver")) {
            out.push("network", &name, "driver", driver);
        }
        if speed.is_some() {
            if let Ok(d) = root.read_line(&format!("{base}/duplex")) {
                if d == "full" || d == "half" {
                    out.push("network", &name, "duplex", d);
                }
            }
        }
        if let Some(s) = speed {
            out.push("network", &name, "speed", speed_text(s as u64));
        }
    }
}

fn businfo(root: &Root, base: &str) -> Option<String> {
    let dev = root.link_name(&format!("{base}/device")).ok()?;
    let bus = root.link_name(&format!("{base}/device/subsystem")).ok()?;
    match bus.as_str() {
        "pci" => Some(format!("pci@{dev}")),
        "virtio" => dev.strip_prefix("virtio").map(|n| format!("virtio@{n}")),
        _ => None,
    }
}

/// An interface's IPv4 address and netmask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub iface: String,
    pub addr: Ipv4Addr,
    pub mask: Ipv4Addr,
}

/// The local addresses listed in `/proc/net/fib_trie` (`/32 host LOCAL` entries).
pub fn parse_fib_trie_locals(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// Connected networks from `/proc/net/route`: (interface, network, mask) of the routes
/// without a gateway.
pub fn parse_route(text: &str) -> Vec<(String, Ipv4Addr, Ipv4Addr)> {
    let hex = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.swap_bytes()))
    };
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Some(dest), Some(gw), Some(mask)) = (hex(f[1]), hex(f[2]), hex(f[7])) else {
            continue;
        };
        if gw.is_unspecified() && !mask.is_unspecified() {
            out.push((f[0].to_string(), dest, mask));
        }
    }
    out
}

/// Each interface's IPv4 addresses, from the two `/proc/net` files.
pub fn ipv4_addresses(root: &Root) -> Vec<Ipv4> {
    let Some(trie) = super::read_logged(root, "/proc/net/fib_trie") else {
        return Vec::new();
    };
    let Some(route) = super::read_logged(root, "/proc/net/route") else {
        return Vec::new();
    };
    let locals = parse_fib_trie_locals(&trie);
    let mut out = Vec::new();
    for (iface, net, mask) in parse_route(&route) {
        for addr in &locals {
            if u32::from(*addr) & u32::from(mask) == u32::from(net)
                && !out
                    .iter()
                    .any(|o: &Ipv4| o.iface == iface && o.addr == *addr)
            {
                out.push(Ipv4 {
                    iface: iface.clone(),
                    addr: *addr,
                    mask,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_in_lshw_form() {
        assert_eq!(speed_text(10), "10Mbit/s");
        assert_eq!(speed_text(100), "100Mbit/s");
        assert_eq!(speed_text(1000), "1Gbit/s");
        assert_eq!(speed_text(2500), "2500Mbit/s");
        assert_eq!(speed_text(10000), "10Gbit/s");
        assert_eq!(speed_text(25000), "25Gbit/s");
        assert_eq!(speed_text(100000), "100Gbit/s");
    }

    #[test]
    fn addresses_from_proc_net() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
                    \x20    +-- 10.1.0.0/24 2 0 2\n        |-- 10.1.0.0\n           /24 link UNICAST\n\
                    \x20       |-- 10.1.0.101\n           /32 host LOCAL\n\
                    \x20    |-- 127.0.0.0\n        /8 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
        assert_eq!(
            parse_fib_trie_locals(trie),
            vec![Ipv4Addr::new(10, 1, 0, 101), Ipv4Addr::new(127, 0, 0, 1)]
        );
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eno1\t00000000\t0100010A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eno1\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            parse_route(route),
            vec![(
                "eno1".to_string(),
                Ipv4Addr::new(10, 1, 0, 0),
                Ipv4Addr::new(255, 255, 255, 0)
            )]
        );
    }
}
