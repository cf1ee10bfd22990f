//! `generate()` models: a model dict read from the bytes (Python literal), or one built
//! from range-like strings so the fuzzer spends its time in the range reader. The
//! expansion never exceeds its limit and every entry has the model's keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdeploy_cmdb::generate::{generate, MAX_ENTRIES};
use rdeploy_specs::{syntax, Value};

/// A model of up to four keys whose values are strings over the alphabet of ranges.
fn range_model(data: &[u8]) -> Value {
    const ALPHABET: &[u8] = b"0123456789-:.-0019ab\n -";
    let mut items = Vec::new();
    for (i, chunk) in data.split(|&b| b == 0xff).take(4).enumerate() {
        let s: String = chunk
            .iter()
            .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
            .collect();
        items.push((Value::Str(format!("k{i}")), Value::Str(s)));
    }
    Value::Dict(items)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let model = if mode % 2 == 0 {
        range_model(rest)
    } else {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        match syntax::parse_value(text) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    let Ok(entries) = generate(&model) else {
        return;
    };
    assert!(entries.len() <= MAX_ENTRIES);
    let Value::Dict(model_items) = &model else {
        panic!("generate() expanded a {}", model.type_name());
    };
    for e in entries.iter().take(100) {
        let Value::Dict(items) = e else {
            panic!("an entry is not a dict: {e:?}");
        };
        for (k, _) in model_items {
            assert!(items.iter().any(|(ek, _)| ek == k), "key {k:?} missing");
        }
    }
});
