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
    }
}
