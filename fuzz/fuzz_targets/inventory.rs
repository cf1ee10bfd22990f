//! An inventory as a machine uploads it (JSON or Python literal): it reads back equal from
//! both of its written forms, and the server's identity (name, MACs, addresses) of it is a
//! safe file name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdeploy_server::identity::{sanitize, Identity};
use rdeploy_specs::Inventory;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(inventory) = Inventory::parse(text) else {
        return;
    };
    let lines: Vec<rdeploy_specs::Value> = inventory
        .lines
        .iter()
        .map(|l| rdeploy_specs::Value::Tuple(l.to_vec()))
        .collect();
    let all_finite = lines.iter().all(rdeploy_fuzz::finite);
    if all_finite {
        let python = inventory.to_python();
        let back = Inventory::parse(&python).expect("the written inventory reads back");
        assert!(back == inventory, "{python}");
        let json = inventory.to_json().to_string();
        let back = Inventory::parse(&json).expect("the JSON inventory reads back");
        assert!(back == inventory, "{json}");
    }
    let id = Identity::of(&inventory);
    assert_eq!(sanitize(&id.name).as_deref(), Some(id.name.as_str()));
    assert!(!id.name.contains('/') && !id.name.starts_with('.'));
    for a in &id.addresses {
        assert!(a.parse::<std::net::Ipv4Addr>().is_ok(), "{a}");
    }
});
