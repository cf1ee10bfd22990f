//! Differential test: `match_all` against answers recorded from eDeploy's own matcher
//! (PyPI `hardware` 0.33), in `tests/fixtures/edeploy-diff/match_all.jsonl`.
//!
//! Regenerate the expectations with `tools/edeploy-ref/` (see its README). Cases where
//! the reference raised or timed out are run too: rdeploy must answer them (no panic, no
//! hang), but the answer is not compared.

#![allow(clippy::unwrap_used)]

use rdeploy_specs::{match_all, model, syntax, Inventory, Specs};
use std::path::PathBuf;

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/edeploy-diff")
        .join(name)
}

/// Cases where rdeploy differs on purpose, with the reason.
const DEVIATIONS: &[(&str, &str)] = &[
    (
        "feature/pytypes-spec-as-list",
        "a list never equals a tuple in Python; rdeploy treats arrays as tuples (EDEPLOY-SEMANTICS.md)",
    ),
    (
        "feature/pytypes-inventory-as-list",
        "same: list vs tuple typing artifact",
    ),
];

#[test]
fn match_all_agrees_with_edeploy() {
    let path = corpus("match_all.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (see tools/edeploy-ref/README.md)", path.display()));
    let mut compared = 0;
    let mut failures = Vec::new();
    let mut rejected: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let case: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
        let id = case["id"].as_str().unwrap_or("?").to_owned();
        let hw_text = case["hw"].as_str().expect("hw");
        let specs_text = case["specs"].as_str().expect("specs");
        let expect = &case["expect"];
        if DEVIATIONS.iter().any(|(d, _)| *d == id) {
            continue;
        }
        // rdeploy rejects malformed input with an error by design (an inventory line that
        // is not a 4-tuple, a spec with fewer than 4 elements): listed, not compared.
        let Ok(inventory) = Inventory::parse(hw_text) else {
            rejected.push(id);
            continue;
        };
        let Ok(lines) = model::parse_specs(specs_text) else {
            rejected.push(id);
            continue;
        };
        let specs = Specs::compile(lines);
        let result = match_all(&inventory, &specs);
        if expect.get("error").is_some() || expect.get("timeout").is_some() {
            continue;
        }
        compared += 1;
        let want_match = expect["match"].as_bool().expect("match flag");
        let got = match &result.outcome {
            Ok(vars) => serde_json::json!({
                "match": true,
                "var": vars.to_json(),
                "var2": result.forced.to_json(),
            }),
            Err(_) => serde_json::json!({"match": false}),
        };
        let want = if want_match {
            serde_json::json!({"match": true, "var": expect["var"], "var2": expect["var2"]})
        } else {
            serde_json::json!({"match": false})
        };
        // Compare the serialised text: key order is part of eDeploy's answer.
        let (got_text, want_text) = (got.to_string(), want.to_string());
        if got_text != want_text {
            failures.push(format!(
                "line {} {id}:\n  want {want}\n  got  {got}\n  specs {}",
                n + 1,
                syntax::to_python(&syntax::parse_value(specs_text).expect("parsed above"))
            ));
        }
    }
    assert!(compared > 0, "no case compared");
    assert!(
        failures.is_empty(),
        "{} of {compared} cases differ from eDeploy:\n{}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("{compared} cases identical to eDeploy; rejected as malformed input: {rejected:?}");
    assert!(
        rejected.len() < 20,
        "too many inputs rejected: {rejected:?}"
    );
}
