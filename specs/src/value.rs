//! Python-literal values as eDeploy files hold them, with Python's equality rules and
//! Python's `repr`.
//!
//! eDeploy read its files with `ast.literal_eval`, so a value is one of Python's literal
//! types. Comparisons follow Python: `2 == 2.0 == True` (numbers compare across types),
//! `'2' != 2`, and — as the semantics page fixes — lists and tuples compare as sequences
//! (JSON arrays stand for tuples). [`to_python`] and [`to_python_lines`] write values back
//! as Python literals eDeploy's own tools read (dict keys sorted as `pprint` sorts them);
//! every value the reader gives is written in a form both readers give back (an infinity
//! is `1e999`, not Python's unreadable `inf`).

use std::fmt::{self, Write as _};

/// One Python-literal value.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// A dict in insertion order (Python 3.7+ semantics).
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of a list or tuple.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// Python's name for the type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
        }
    }

    /// Numeric view used for Python's cross-type number equality.
    fn as_number(&self) -> Option<Num> {
        match *self {
            Value::Bool(b) => Some(Num::Int(i64::from(b))),
            Value::Int(i) => Some(Num::Int(i)),
            Value::Float(f) => Some(Num::Float(f)),
            _ => None,
        }
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Tuple(v) | Value::List(v) => !v.is_empty(),
            Value::Dict(v) => !v.is_empty(),
        }
    }

    /// Look a string key up in a dict value.
    pub fn dict_get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Converts to JSON the way Python's `json.dumps` does (tuples become arrays,
    /// non-string dict keys become their string form).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Tuple(v) | Value::List(v) => J::Array(v.iter().map(Value::to_json).collect()),
            Value::Dict(items) => {
                let mut map = serde_json::Map::new();
                for (k, v) in items {
                    map.insert(k.json_key(), v.to_json());
                }
                J::Object(map)
            }
        }
    }

    /// The string `json.dumps` uses for a dict key.
    fn json_key(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::None => "null".into(),
            Value::Bool(true) => "true".into(),
            Value::Bool(false) => "false".into(),
            other => to_python(other),
        }
    }

    /// Builds a value from JSON: arrays become lists, objects dicts (order kept).
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::None,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Dict(
                o.iter()
                    .map(|(k, v)| (Value::Str(k.clone()), Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl PartialEq for Value {
    /// Python's `==`.
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::None, Value::None) => true,
            (Value::Tuple(a) | Value::List(a), Value::Tuple(b) | Value::List(b)) => a == b,
            (Value::Dict(a), Value::Dict(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v == v2))
            }
            _ => match (self.as_number(), other.as_number()) {
                (Some(Num::Int(a)), Some(Num::Int(b))) => a == b,
                (Some(Num::Float(a)), Some(Num::Float(b))) => a == b,
                (Some(Num::Int(a)), Some(Num::Float(b)))
                | (Some(Num::Float(b)), Some(Num::Int(a))) => int_eq_float(a, b),
                _ => false,
            },
        }
    }
}

/// Exact comparison of an integer with a float, as Python does it (no rounding of the int).
fn int_eq_float(i: i64, f: f64) -> bool {
    if !f.is_finite() || f.fract() != 0.0 {
        return false;
    }
    // Floats outside the i64 range cannot equal an i64.
    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
        return false;
    }
    #[allow(clippy::cast_possible_truncation)]
    let as_int = f as i64;
    as_int == i
}

impl fmt::Display for Value {
    /// The Python-literal form (`repr`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_python(self))
    }
}

// --- the Python-literal form: how eDeploy files are written back --------------------------

/// The Python `repr` of a value, on one line.
pub fn to_python(v: &Value) -> String {
    let mut s = String::new();
    write_python(&mut s, v);
    s
}

fn write_python(out: &mut String, v: &Value) {
    match v {
        Value::None => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        // Python writes an infinity as `inf`, which neither `literal_eval` nor rdeploy reads
        // back; `1e999` reads back as the same infinity in both. (A NaN has no literal: no
        // reader produces one.)
        Value::Float(f) if f.is_infinite() => {
            out.push_str(if *f > 0.0 { "1e999" } else { "-1e999" });
        }
        Value::Float(f) => out.push_str(&python_float_repr(*f)),
        Value::Str(s) => write_python_str(out, s),
        Value::Tuple(items) => {
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(out, item);
            }
            if items.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(out, item);
            }
            out.push(']');
        }
        Value::Dict(items) => {
            out.push('{');
            for (i, (k, val)) in sorted_items(items).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(out, k);
                out.push_str(": ");
                write_python(out, val);
            }
            out.push('}');
        }
    }
}

/// Dict items in the order `pprint` writes them: sorted by key when keys are all strings
/// (eDeploy saved files with `pprint`), else as given.
fn sorted_items(items: &[(Value, Value)]) -> Vec<&(Value, Value)> {
    let mut v: Vec<&(Value, Value)> = items.iter().collect();
    if items.iter().all(|(k, _)| k.as_str().is_some()) {
        v.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
    }
    v
}

fn write_python_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `repr(float)`: shortest round-trip digits, scientific below 1e-4 and from 1e16.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{f:e}"); // e.g. "1.5e-5", "-1e20"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..16).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    }
}

/// Writes a top-level list with one entry per line, the way eDeploy's tools read them and
/// operators diff them:
///
/// ```text
/// [('hp', 3),
///  ('vm', '*')]
/// ```
pub fn to_python_lines(items: &[Value]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n ");
        }
        write_python(&mut out, item);
    }
    out.push_str("]\n");
    out
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_equality_across_number_types() {
        assert_eq!(Value::Int(2), Value::Float(2.0));
        assert_eq!(Value::Bool(true), Value::Int(1));
        assert_ne!(Value::Int(2), Value::from("2"));
        assert_ne!(Value::Float(f64::NAN), Value::Float(f64::NAN));
        assert_ne!(Value::Int(i64::MAX), Value::Float(9.223_372_036_854_776e18));
    }

    #[test]
    fn lists_and_tuples_compare_as_sequences() {
        let t = Value::Tuple(vec!["a".into(), Value::Int(1)]);
        let l = Value::List(vec!["a".into(), Value::Int(1)]);
        assert_eq!(t, l);
    }

    #[test]
    fn dict_equality_ignores_order() {
        let a = Value::Dict(vec![("x".into(), 1.into()), ("y".into(), 2.into())]);
        let b = Value::Dict(vec![("y".into(), 2.into()), ("x".into(), 1.into())]);
        assert_eq!(a, b);
    }

    #[test]
    fn json_conversion_keeps_ints_and_order() {
        let v = Value::Dict(vec![("b".into(), 2.into()), ("a".into(), "x".into())]);
        assert_eq!(v.to_json().to_string(), r#"{"b":2,"a":"x"}"#);
    }

    #[test]
    fn writes_python_literals() {
        let pair = |a: &str, b: Value| Value::Tuple(vec![a.into(), b]);
        let val = Value::List(vec![
            pair("hp", 3.into()),
            pair("vm", "*".into()),
            Value::Dict(vec![
                ("b".into(), 1.into()),
                (
                    "a".into(),
                    Value::List(vec![
                        Value::Float(1.5),
                        Value::None,
                        Value::Bool(true),
                        Value::Tuple(vec![2.into()]),
                    ]),
                ),
            ]),
        ]);
        assert_eq!(
            to_python(&val),
            "[('hp', 3), ('vm', '*'), {'a': [1.5, None, True, (2,)], 'b': 1}]"
        );
        assert_eq!(to_python(&Value::from("it's")), "\"it's\"");
        assert_eq!(to_python(&Value::from("a'b\"c")), r#"'a\'b"c'"#);
        assert_eq!(to_python(&Value::from("x\ny\x01")), r"'x\ny\x01'");
        assert_eq!(python_float_repr(1e20), "1e+20");
        assert_eq!(python_float_repr(1.5e-5), "1.5e-05");
        assert_eq!(python_float_repr(0.0001), "0.0001");
        assert_eq!(python_float_repr(2.0), "2.0");
        assert_eq!(python_float_repr(1e16), "1e+16");
        assert_eq!(python_float_repr(123456789012345.6), "123456789012345.6");
        assert_eq!(to_python(&Value::Float(f64::INFINITY)), "1e999");
        assert_eq!(to_python(&Value::Float(f64::NEG_INFINITY)), "-1e999");
    }

    #[test]
    fn one_entry_per_line() {
        let items = vec![
            Value::Tuple(vec!["hp".into(), 3.into()]),
            Value::Tuple(vec!["vm".into(), "*".into()]),
        ];
        assert_eq!(to_python_lines(&items), "[('hp', 3),\n ('vm', '*')]\n");
        assert_eq!(to_python_lines(&[]), "[]\n");
    }
}
