//! Whatever an upload carries, every file the allocation writes reads back: arbitrary
//! inventory values (huge exponents, i64's extremes, control characters, nested tuples and
//! dicts, JSON and Python-literal forms) are bound by a `$var`, allocated through the
//! snapshot the server uses, and `state`, the CMDB and the `.hw` text are read again by
//! rdeploy (same value) and by Python's `ast.literal_eval` (eDeploy's reader).
//!
//! An inventory value that cannot be written back is refused when the inventory is read
//! (with its position), before anything is allocated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rdeploy_cmdb::store::ConfigDir;
use rdeploy_cmdb::{Cmdb, Snapshot, State};
use rdeploy_specs::syntax::to_python;
use rdeploy_specs::{Inventory, Value};
use std::cell::RefCell;
use std::path::Path;
use std::process::Command;

/// Structural equality: a tuple is not a list, 1 is not 1.0, floats bit for bit, dicts in
/// any order.
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
        // Keys are written sorted, as pprint writes them.
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| same(k, k2) && same(v, v2)))
        }
        _ => false,
    }
}

/// The text of one inventory value as an uploader may write it.
fn value_text() -> impl Strategy<Value = String> {
    let tricky = prop_oneof![
        Just("1e999999".to_owned()),
        Just("-1e999999".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("-0x8000000000000000".to_owned()),
        Just("0o777".to_owned()),
        Just("1_000".to_owned()),
        Just("-0.0".to_owned()),
        Just("5e-324".to_owned()),
        Just("2.5e-310".to_owned()),
        Just("--5".to_owned()),
        Just("'\\x00\\x1f\\x7f\\x85\\u2028\\ufeff'".to_owned()),
        Just("\"it's\"".to_owned()),
        Just("r'\\d+$'".to_owned()),
        Just("{(1, 2): [3], None: (), 1.5: {'a': -1e999}}".to_owned()),
        Just("{[1]: 2}".to_owned()),
        Just("((1,),)".to_owned()),
        Just("True".to_owned()),
        Just("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]".to_owned()),
    ];
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        "[0-9]{1,40}(\\.[0-9]{0,5})?(e[+-]?[0-9]{1,7})?".prop_map(|s| s),
        any::<String>().prop_map(|s| to_python(&Value::Str(s))),
        "\\PC{0,12}".prop_map(|s| to_python(&Value::Str(s))),
        tricky,
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|v| format!("({},)", v.join(", "))),
            prop::collection::vec(("[a-z]{1,4}", inner), 0..3).prop_map(|kv| {
                let items: Vec<String> = kv.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
                format!("{{{}}}", items.join(", "))
            }),
        ]
    })
}

/// The same inventory in the JSON form agents send, when the value text is also JSON.
fn as_json(value: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(value).ok()?;
    Some(format!(
        r#"[["a", "b", "c", {v}], ["system", "product", "serial", "S1"]]"#
    ))
}

/// One upload of `text` through a fresh config dir in `dir`: the files it wrote, or `None`
/// when the inventory is refused as it is read.
fn allocate(dir: &Path, text: &str) -> Result<Option<Vec<(String, String)>>, TestCaseError> {
    let inventory = match Inventory::parse(text) {
        Ok(i) => i,
        Err(problems) => {
            prop_assert!(
                problems.0.iter().all(|p| p.pos.line >= 1),
                "a refusal says where: {problems}"
            );
            return Ok(None);
        }
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("state"), "[('p', 5)]\n").unwrap();
    std::fs::write(
        dir.join("p.specs"),
        "[('a', 'b', 'c', '$v'), ('system', 'product', 'serial', '$serial')]\n",
    )
    .unwrap();
    std::fs::write(dir.join("p.configure"), "// nothing\n").unwrap();
    std::fs::write(
        dir.join("p.cmdb"),
        "[{'ip': '10.0.0.1'}, {'ip': '10.0.0.2'}]\n",
    )
    .unwrap();
    let mut snap = Snapshot::new(ConfigDir::new(dir));
    let alloc = snap
        .batch(|b| b.upload(&inventory, None))
        .map_err(|e| TestCaseError::fail(format!("commit: {e}")))?
        .map_err(|e| TestCaseError::fail(format!("{text}: refused: {e}")))?;
    let value = &inventory.lines[0][3];
    prop_assert!(same(alloc.plan.vars.get("v").unwrap(), value));

    // rdeploy reads every file back, with the value intact.
    let state = std::fs::read_to_string(dir.join("state")).unwrap();
    let state = State::parse(&state).map_err(|e| TestCaseError::fail(format!("state: {e}")))?;
    prop_assert_eq!(state.entries[0].quota.to_string(), "4");
    let cmdb_text = std::fs::read_to_string(dir.join("p.cmdb")).unwrap();
    let cmdb = Cmdb::parse(&cmdb_text)
        .map_err(|e| TestCaseError::fail(format!("{cmdb_text}: {e}")))?
        .unwrap();
    let back = cmdb.entries[0].dict_get("v").unwrap();
    prop_assert!(
        same(back, value),
        "{} read back as {}",
        to_python(value),
        to_python(back)
    );
    let hw = inventory.to_python();
    let hw_back = Inventory::parse(&hw).map_err(|e| TestCaseError::fail(format!("{hw}: {e}")))?;
    prop_assert!(same(&hw_back.lines[0][3], value), "{hw}");
    // So does a server starting on these files: no problem reported.
    let mut fresh = Snapshot::new(ConfigDir::new(dir));
    fresh.refresh();
    let health = fresh.health();
    prop_assert!(health.problems.is_empty(), "{:?}", health.problems);
    Ok(Some(vec![
        (
            "state".into(),
            std::fs::read_to_string(dir.join("state")).unwrap(),
        ),
        ("p.cmdb".into(), cmdb_text),
        ("hw".into(), hw),
    ]))
}

#[test]
fn every_file_an_upload_writes_reads_back_in_rdeploy_and_python() {
    let tmp = tempfile::tempdir().unwrap();
    let written: RefCell<Vec<(String, String)>> = RefCell::new(Vec::new());
    let refused = RefCell::new(0usize);
    let case = RefCell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: 150,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&value_text(), |value| {
        let forms = [
            Some(format!(
                "[('a', 'b', 'c', {value}), ('system', 'product', 'serial', 'S1')]"
            )),
            as_json(&value),
        ];
        for text in forms.into_iter().flatten() {
            let n = {
                let mut c = case.borrow_mut();
                *c += 1;
                *c
            };
            match allocate(&tmp.path().join(n.to_string()), &text)? {
                Some(files) => written.borrow_mut().extend(
                    files
                        .into_iter()
                        .map(|(name, text)| (format!("{n}/{name}"), text)),
                ),
                None => *refused.borrow_mut() += 1,
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let written = written.into_inner();
    assert!(
        written.len() > 150,
        "too few uploads allocated: {}",
        written.len()
    );

    // eDeploy's reader: Python's ast.literal_eval, on every file at once.
    let check = tmp.path().join("python");
    std::fs::create_dir_all(&check).unwrap();
    for (i, (_, text)) in written.iter().enumerate() {
        std::fs::write(check.join(format!("{i}.py")), text).unwrap();
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import ast, pathlib, sys\n\
             bad = []\n\
             for f in sorted(pathlib.Path(sys.argv[1]).iterdir()):\n\
             \x20   try:\n\
             \x20       ast.literal_eval(f.read_text(encoding='utf-8'))\n\
             \x20   except Exception as e:\n\
             \x20       bad.append(f'{f.name}: {type(e).__name__}: {e}')\n\
             print(len(bad))\n\
             print('\\n'.join(bad[:20]))\n",
        )
        .arg(&check)
        .output()
        .expect("python3 runs (scripts/apt-packages installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = report.lines().next().unwrap_or("?");
    assert_eq!(first, "0", "files Python cannot read:\n{report}");
    eprintln!(
        "{} files read back by rdeploy and Python; {} inventories refused as read",
        written.len(),
        refused.into_inner()
    );
}
