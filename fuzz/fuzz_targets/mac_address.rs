//! MAC addresses (URLs, inventories, PXE Manager's names) and PXELINUX's hex names of
//! IPv4 addresses and prefixes: normalizing is idempotent and gives `aa:bb:cc:dd:ee:ff`;
//! a hex prefix has two digits per octet and agrees with the standard address parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdeploy_server::identity::{hex_prefix, normalize_mac, sanitize};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(mac) = normalize_mac(text) {
        assert_eq!(mac.len(), 17, "{mac}");
        assert!(mac.bytes().enumerate().all(|(i, b)| if i % 3 == 2 {
            b == b':'
        } else {
            matches!(b, b'0'..=b'9' | b'a'..=b'f')
        }));
        assert_eq!(normalize_mac(&mac).as_deref(), Some(mac.as_str()));
        assert_eq!(
            normalize_mac(&mac.replace(':', "-")).as_deref(),
            Some(mac.as_str())
        );
    }
    if let Some(hex) = hex_prefix(text) {
        let octets = text.split('.').count();
        assert_eq!(hex.len(), 2 * octets, "{text} -> {hex}");
        assert!(hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')));
        if let Ok(ip) = text.parse::<std::net::Ipv4Addr>() {
            let want: String = ip.octets().iter().map(|o| format!("{o:02X}")).collect();
            assert_eq!(hex, want);
        }
    }
    if let Ok(ip) = text.parse::<std::net::Ipv4Addr>() {
        assert!(hex_prefix(text).is_some(), "{ip} has no PXELINUX name");
    }
    if let Some(name) = sanitize(text) {
        assert_eq!(sanitize(&name).as_deref(), Some(name.as_str()));
        assert!(!name.starts_with('.') && name.len() <= 128);
    }
});
