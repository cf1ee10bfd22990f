//! A specs (or any eDeploy) file written as JSON: what `serde_json` reads, the file reader
//! reads as the same value; specs files read without panicking; values read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdeploy_specs::model::parse_specs;
use rdeploy_specs::{syntax, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_specs(text);
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let from_json = Value::from_json(&json);
    if json.is_array() || json.is_object() {
        let read = syntax::parse_value(text).expect("valid JSON reads as a value");
        if rdeploy_fuzz::finite(&from_json) {
            assert!(read == from_json, "{read:?} != {from_json:?}");
        }
    }
    rdeploy_fuzz::assert_reads_back(&from_json);
    // JSON written back from the value is the same JSON.
    if rdeploy_fuzz::finite(&from_json) {
        assert_eq!(Value::from_json(&from_json.to_json()), from_json);
    }
});
