//! Conversions between JSON values (CMDB settings, facts, wire types) and Rhai values.

use rhai::{Array, Dynamic, Map};
use serde_json::Value;

/// A JSON value as a Rhai value: objects become maps, arrays arrays, null `()`.
///
/// Integers outside `i64` become floats, as JSON readers usually treat them.
pub fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from_array(a.iter().map(to_dynamic).collect::<Array>()),
        Value::Object(o) => Dynamic::from_map(object_to_map(o)),
    }
}

/// A JSON object as a Rhai map.
pub fn object_to_map(o: &serde_json::Map<String, Value>) -> Map {
    o.iter()
        .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
        .collect()
}

/// How many levels of arrays and maps `v` has (a scalar: 0), looked at no deeper than
/// `limit + 1` (so measuring a value nested thousands deep recurses at most that far).
pub fn nesting(v: &Dynamic, limit: usize) -> usize {
    if !(v.is_array() || v.is_map()) {
        return 0;
    }
    if limit == 0 {
        return 1;
    }
    if let Some(a) = v.read_lock::<rhai::Array>() {
        items_nesting(a.iter(), limit)
    } else if let Some(m) = v.read_lock::<Map>() {
        items_nesting(m.values(), limit)
    } else {
        0
    }
}

/// [`nesting`] of an array or a map given by its elements.
pub fn items_nesting<'a>(items: impl Iterator<Item = &'a Dynamic>, limit: usize) -> usize {
    let mut deepest = 0;
    for x in items {
        if deepest >= limit {
            break;
        }
        deepest = deepest.max(nesting(x, limit.saturating_sub(1)));
    }
    1 + deepest
}

/// A Rhai value as JSON: `()` is null, non-finite floats null, other types their string form.
pub fn to_json(v: &Dynamic) -> Value {
    if v.is_unit() {
        return Value::Null;
    }
    if let Ok(b) = v.as_bool() {
        return Value::Bool(b);
    }
    if let Ok(i) = v.as_int() {
        return Value::from(i);
    }
    if let Ok(f) = v.as_float() {
        return serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    }
    if let Ok(s) = v.clone().into_string() {
        return Value::String(s);
    }
    if v.is_array() {
        if let Ok(a) = v.clone().into_array() {
            return Value::Array(a.iter().map(to_json).collect());
        }
    }
    if let Some(m) = v.read_lock::<Map>() {
        return Value::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect());
    }
    Value::String(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_rhai() {
        let v = serde_json::json!({
            "ip": "10.0.0.5", "n": 3, "f": 1.5, "ok": true, "none": null,
            "disks": ["sda", "sdb"], "nested": {"a": {"b": [1, 2]}}
        });
        assert_eq!(to_json(&to_dynamic(&v)), v);
        assert_eq!(nesting(&to_dynamic(&v), 64), 4);
    }

    #[test]
    fn nesting_is_measured_no_deeper_than_asked() {
        let mut v = Dynamic::from_array(Vec::new());
        for _ in 0..100_000 {
            v = Dynamic::from_array(vec![v]);
        }
        assert_eq!(nesting(&v, 64), 65);
        assert_eq!(nesting(&Dynamic::from_int(1), 64), 0);
        // Dropping a value nested that deep recurses too: take it apart by hand.
        while let Ok(mut a) = v.into_array() {
            v = a.pop().unwrap_or(Dynamic::UNIT);
        }
    }
}
