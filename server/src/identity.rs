//! Who sent an inventory: the eDeploy file name (`<product>-<serial>-<mac>`), the MACs
//! and the DMI names, and the sanitizing that keeps every name inside its directory.

use rdeploy_specs::{Inventory, Value};

/// What identifies a machine, read from its inventory.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// eDeploy's name for the `.hw` file, sanitized: also the node id.
    pub name: String,
    /// Every `('network', IFACE, 'serial', MAC)`, lowercased, in inventory order (the first
    /// [`MAX_MACS`]).
    pub macs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The addresses the machine is known by besides its CMDB `ip`: every
    /// `('network', IFACE, 'ipv4', ADDR)` of its inventory, then the address its last upload
    /// came from (PXE Manager finds a caller by any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// Longest node name kept (file names stay well under the 255-byte limit).
const MAX_NAME: usize = 128;

/// Most MACs kept of one inventory (each gets PXELINUX files).
pub const MAX_MACS: usize = 64;

/// Longest DMI name or MAC kept (characters).
const MAX_FIELD: usize = 256;

fn text(v: &Value) -> String {
    let full = match v {
        Value::Str(s) => s.clone(),
        other => other.to_string(),
    };
    match full.char_indices().nth(MAX_FIELD) {
        Some((end, _)) => full[..end].to_owned(),
        None => full,
    }
}

/// Python's `re.sub(r'\W+', '', s)`: keeps letters, digits and `_`.
fn word_chars(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Keeps `[A-Za-z0-9._-]`, never a leading `.`, at most [`MAX_NAME`] bytes; `None` if
/// nothing is left.
pub fn sanitize(s: &str) -> Option<String> {
    let kept: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(MAX_NAME)
        .collect();
    let kept = kept.trim_start_matches('.').to_owned();
    (!kept.is_empty()).then_some(kept)
}

impl Identity {
    /// eDeploy's `generate_filename_and_macs` (the `hardware` package's version): the
    /// vendor, replaced by the product name when there is one (an eDeploy quirk kept),
    /// then the serial, then the first MAC with dashes; sanitized. A machine with none of
    /// these gets `unknown-<hash of its inventory>`.
    pub fn of(inventory: &Inventory) -> Identity {
        let get = |k: &str| inventory.get("system", "product", k).map(text);
        let vendor = get("vendor");
        let product = get("name");
        let serial = get("serial");
        let uuid = get("uuid");
        let macs: Vec<String> = inventory
            .lines
            .iter()
            .filter(|l| l[0].as_str() == Some("network") && l[2].as_str() == Some("serial"))
            .map(|l| text(&l[3]).to_ascii_lowercase())
            .take(MAX_MACS)
            .collect();
        let mut name = String::new();
        if let Some(v) = &vendor {
            name.push_str(&word_chars(v));
            name.push('-');
        }
        if let Some(p) = &product {
            name = word_chars(p) + "-";
        }
        if let Some(s) = &serial {
            name.push_str(&word_chars(s));
            name.push('-');
        }
        if let Some(mac) = inventory
            .lines
            .iter()
            .find(|l| l[0].as_str() == Some("network") && l[2].as_str() == Some("serial"))
        {
            name.push_str(&text(&mac[3]).replace(':', "-"));
        }
        let name = sanitize(&name)
            .unwrap_or_else(|| format!("unknown-{:016x}", fnv1a(&inventory.to_python())));
        let mut addresses: Vec<String> = Vec::new();
        for l in &inventory.lines {
            if l[0].as_str() == Some("network") && l[2].as_str() == Some("ipv4") {
                let a = text(&l[3]);
                if a.parse::<std::net::Ipv4Addr>().is_ok() && !addresses.contains(&a) {
                    addresses.push(a);
                }
            }
        }
        Identity {
            name,
            macs,
            serial,
            vendor,
            product,
            uuid,
            addresses,
        }
    }

    /// Adds the address a request came from (kept once, last).
    pub fn seen_from(&mut self, ip: std::net::IpAddr) {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        }
        .to_string();
        self.addresses.retain(|a| *a != ip);
        self.addresses.push(ip);
    }
}

/// FNV-1a, a stable hash for naming machines that carry no identity.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A MAC address normalized to `aa:bb:cc:dd:ee:ff`, from colons, dashes or bare hex.
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    let parts: Vec<&str> = (0..6).map(|i| &hex[i * 2..i * 2 + 2]).collect();
    Some(parts.join(":"))
}

/// PXELINUX's name for an IPv4 address or the first octets of one (`10.34` → `0A22`, a
/// prefix PXELINUX tries for every address of that subnet; PXE Manager's `simplify_ip`).
/// `None` for anything else.
pub fn hex_prefix(addr: &str) -> Option<String> {
    let octets: Vec<&str> = addr.split('.').collect();
    if octets.is_empty() || octets.len() > 4 {
        return None;
    }
    octets
        .iter()
        .map(|o| {
            (!o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()))
                .then(|| o.parse::<u8>().ok())
                .flatten()
                .map(|v| format!("{v:02X}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(text: &str) -> Inventory {
        Inventory::parse(text).expect("inventory")
    }

    #[test]
    fn names_like_edeploy() {
        let i = Identity::of(&inv(
            "[('system', 'product', 'vendor', 'HP'), ('system', 'product', 'name', 'ProLiant DL360 Gen9 (1234)'),
              ('system', 'product', 'serial', 'CZ 34/04'), ('network', 'eth0', 'serial', '52:54:00:AA:bb:cc'),
              ('network', 'eth1', 'serial', '52:54:00:aa:bb:cd')]",
        ));
        // The product name replaces the vendor: eDeploy's quirk.
        assert_eq!(i.name, "ProLiantDL360Gen91234-CZ3404-52-54-00-AA-bb-cc");
        assert_eq!(i.macs, ["52:54:00:aa:bb:cc", "52:54:00:aa:bb:cd"]);
        assert_eq!(i.serial.as_deref(), Some("CZ 34/04"));
        assert!(i.addresses.is_empty());
    }

    #[test]
    fn addresses_come_from_the_inventory_and_the_upload() {
        let mut i = Identity::of(&inv(
            "[('network', 'eth0', 'serial', '52:54:00:aa:bb:cc'), ('network', 'eth0', 'ipv4', '192.168.122.45'),
              ('network', 'eth0', 'ipv4-netmask', '255.255.255.0'), ('network', 'eth1', 'ipv4', 'dhcp')]",
        ));
        assert_eq!(i.addresses, ["192.168.122.45"]);
        i.seen_from("10.0.0.9".parse().expect("ip"));
        i.seen_from("::ffff:10.0.0.9".parse().expect("ip"));
        assert_eq!(i.addresses, ["192.168.122.45", "10.0.0.9"]);
    }

    #[test]
    fn names_never_escape_the_directory() {
        let i = Identity::of(&inv(
            "[('system', 'product', 'serial', '../../etc'), ('network', 'e', 'serial', '/../x')]",
        ));
        assert_eq!(i.name, "etc-..x");
        let i = Identity::of(&inv("[('network', 'e', 'serial', '../..')]"));
        assert!(i.name.starts_with("unknown-"), "{}", i.name);
        let i = Identity::of(&inv("[('disk', 'sda', 'size', '1')]"));
        assert!(i.name.starts_with("unknown-"), "{}", i.name);
        assert_eq!(sanitize("..."), None);
        assert_eq!(sanitize(".hidden/../x").as_deref(), Some("hidden..x"));
    }

    #[test]
    fn macs_normalize() {
        assert_eq!(
            normalize_mac("52-54-00-AA-BB-CC").as_deref(),
            Some("52:54:00:aa:bb:cc")
        );
        assert_eq!(
            normalize_mac("525400aabbcc").as_deref(),
            Some("52:54:00:aa:bb:cc")
        );
        assert_eq!(normalize_mac("52:54:00:aa:bb"), None);
        assert_eq!(normalize_mac("zz:54:00:aa:bb:cc"), None);
    }
}
