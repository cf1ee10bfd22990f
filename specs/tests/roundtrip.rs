//! Property tests: whatever rdeploy writes, it (and therefore eDeploy's `literal_eval`)
//! reads back identically — tuples stay tuples, ints stay ints, strings keep every byte.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rdeploy_specs::syntax::{parse_value, to_python, to_python_lines};
use rdeploy_specs::Value;

/// Structural equality: unlike Python's `==`, a tuple is not a list and 1 is not 1.0.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Tuple(x), Value::Tuple(y)) | (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| same(k, k2) && same(v, v2)))
        }
        _ => false,
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1), Just(0)].prop_map(Value::Int),
        any::<f64>()
            .prop_filter("a number (no reader gives a NaN)", |f| !f.is_nan())
            .prop_map(Value::Float),
        prop_oneof![
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(5e-324)
        ]
        .prop_map(Value::Float),
        ".*".prop_map(Value::Str),
        "[a-z0-9:._$()=-]{0,12}".prop_map(Value::Str),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            prop::collection::btree_map("[a-z_]{1,8}", inner.clone(), 0..5).prop_map(|m| {
                Value::Dict(m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect())
            }),
            // Keys of every hashable kind: numbers, None, tuples.
            prop::collection::vec((any::<i64>(), inner), 0..4).prop_map(|kv| {
                Value::Dict(
                    kv.into_iter()
                        .enumerate()
                        .map(|(i, (k, v))| {
                            let key = match i % 3 {
                                0 => Value::Int(k),
                                1 => Value::Tuple(vec![Value::Int(k), Value::None]),
                                _ => Value::Float(k as f64 + 0.5),
                            };
                            (key, v)
                        })
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn write_then_read_gives_the_same_value(v in value()) {
        let text = to_python(&v);
        let back = parse_value(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert!(same(&v, &back), "{} read back as {}", text, to_python(&back));
    }

    #[test]
    fn one_entry_per_line_files_read_back(items in prop::collection::vec(value(), 0..8)) {
        let text = to_python_lines(&items);
        let back = parse_value(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert!(same(&Value::List(items.clone()), &back));
        prop_assert_eq!(text.lines().count(), items.len().max(1), "one entry per line");
    }

    #[test]
    fn reading_arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = parse_value(&text);
    }
}
