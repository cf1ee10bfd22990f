//! Differential tests against answers recorded from eDeploy's reference (PyPI `hardware`
//! 0.33): `generate()` models and whole config-dir scenarios (`find_match` with quotas,
//! CMDB allocation and failure reports), in `tests/fixtures/edeploy-diff/`.

// Serialised texts are compared on purpose: key order is part of eDeploy's answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cmp_owned)]

use rdeploy_cmdb::generate::generate;
use rdeploy_cmdb::snapshot;
use rdeploy_cmdb::store::ConfigDir;
use rdeploy_specs::{syntax, Inventory, Value};
use std::path::PathBuf;

fn corpus(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/edeploy-diff")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cases(name: &str) -> Vec<serde_json::Value> {
    corpus(name)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn generate_agrees_with_edeploy() {
    let mut compared = 0;
    let mut failures = Vec::new();
    for case in cases("generate.jsonl") {
        let id = case["id"].as_str().unwrap_or("?");
        let expect = &case["expect"];
        if expect.get("skipped").is_some() {
            continue;
        }
        let model = syntax::parse_value(case["model"].as_str().unwrap()).expect("model parses");
        let got = generate(&model);
        match (got, expect.get("error")) {
            (Err(_), Some(_)) => {}
            (Ok(list), None) => {
                compared += 1;
                let got = Value::List(list).to_json().to_string();
                if got != expect.to_string() {
                    failures.push(format!("{id}: want {expect}\n  got {got}"));
                }
            }
            (Ok(_), Some(e)) => failures.push(format!("{id}: eDeploy raised {e}, rdeploy did not")),
            (Err(e), None) => failures.push(format!("{id}: rdeploy failed: {e}")),
        }
    }
    assert!(compared > 500, "only {compared} compared");
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Parses a Python literal (as the reference wrote state/CMDB files) to JSON.
fn py_json(text: &str) -> serde_json::Value {
    syntax::parse_value(text).expect("python literal").to_json()
}

/// Scenarios where rdeploy differs on purpose.
const DEVIATIONS: &[(&str, &str)] = &[
    ("hand/specs-int-raises", "a raising spec element does not match that line; later profiles are tried (issue 2)"),
    ("hand/specs-three-tuples-raise", "same: a broken specs file never matches instead of aborting the upload"),
    ("hand/specs-raising-function-aborts-upload", "same"),
    ("hand/specs-raising-on-int-channel", "same"),
    ("hand/unparsable-specs-matches-unknown-line", "eDeploy's placeholder spec ('<unknown>', ...) is not reproduced: an unreadable specs file never matches"),
    ("hand/specs-empty-dict-matches-all", "a dict is not a specs file: rdeploy reports it instead of matching every machine"),
];

#[test]
fn find_match_scenarios_agree_with_edeploy() {
    let mut uploads = 0;
    let mut failures = Vec::new();
    for case in cases("find_match.jsonl") {
        let id = case["id"].as_str().unwrap_or("?").to_owned();
        if DEVIATIONS.iter().any(|(d, _)| *d == id) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("state"), case["state"].as_str().unwrap()).unwrap();
        for (profile, text) in case["specs"].as_object().unwrap() {
            if let Some(t) = text.as_str() {
                std::fs::write(p.join(format!("{profile}.specs")), t).unwrap();
            }
        }
        for (profile, text) in case["cmdb"].as_object().unwrap() {
            std::fs::write(p.join(format!("{profile}.cmdb")), text.as_str().unwrap()).unwrap();
        }
        let config = ConfigDir::new(p);
        let mut timed_out = false;
        for (i, (upload, result)) in case["uploads"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["results"].as_array().unwrap())
            .enumerate()
        {
            uploads += 1;
            if result.get("timeout").is_some() {
                timed_out = true;
                break;
            }
            let what = format!("{id} upload {i}");
            if let Some(profile) = upload["failure"].as_str() {
                match snapshot::report_failure(&config, profile) {
                    Ok(modified) => {
                        if Some(modified) != result["modified"].as_bool() {
                            failures.push(format!(
                                "{what}: failure report modified={modified}, want {result}"
                            ));
                        }
                    }
                    Err(e) => {
                        if result.get("error").is_none() {
                            failures.push(format!("{what}: failure report failed: {e}"));
                        }
                    }
                }
                continue;
            }
            let inventory = Inventory::parse(upload["hw"].as_str().unwrap()).unwrap();
            match (
                snapshot::match_and_save(&config, &inventory),
                result.get("error"),
            ) {
                (Ok(plan), None) => {
                    let got =
                        serde_json::json!({"profile": plan.profile, "var": plan.vars.to_json()});
                    let want =
                        serde_json::json!({"profile": result["profile"], "var": result["var"]});
                    if got != want {
                        failures.push(format!("{what}:\n  want {want}\n  got  {got}"));
                    } else if got.to_string() != want.to_string() {
                        failures.push(format!(
                            "{what}: same values, key order differs:\n  want {want}\n  got  {got}"
                        ));
                    }
                }
                (Err(_), Some(_)) => {}
                (Ok(plan), Some(e)) => failures.push(format!(
                    "{what}: eDeploy failed ({e}), rdeploy gave {}",
                    plan.profile
                )),
                (Err(e), None) => failures.push(format!(
                    "{what}: rdeploy failed ({e}), eDeploy gave {result}"
                )),
            }
        }
        if timed_out {
            continue;
        }
        // Files afterwards: same content (rdeploy's layout is one entry per line).
        if let Some(want_state) = case["final_state"].as_str() {
            let got = std::fs::read_to_string(p.join("state")).unwrap();
            if py_json(&got) != py_json(want_state) {
                failures.push(format!("{id}: state\n  want {want_state}\n  got  {got}"));
            }
        }
        for (profile, want) in case["final_cmdb"].as_object().unwrap() {
            if want.is_null() {
                continue;
            }
            let got = std::fs::read_to_string(p.join(format!("{profile}.cmdb"))).unwrap();
            let got_json = syntax::parse(&got)
                .ok()
                .and_then(|n| n.to_value().ok())
                .map(|v| v.to_json());
            // A generate() file that was never allocated from stays as written.
            let expanded = case.get("expanded").is_some() && got.contains("generate(");
            if !expanded && got_json.as_ref() != Some(want) {
                failures.push(format!("{id}: {profile}.cmdb\n  want {want}\n  got  {got}"));
            }
        }
    }
    assert!(uploads > 500, "only {uploads} uploads");
    assert!(
        failures.is_empty(),
        "{} differences over {uploads} uploads:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
