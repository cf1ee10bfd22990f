//! The operator's test commands, as HTTP clients of a running server: `rdeploy test sync`,
//! `test queue SYSTEM TEST...`, `test list [SYSTEM]`, and the same under PXE Manager's
//! names (`pxemngr synctestnames`, `nexttest SYSTEM TEST...`, `dpytest SYSTEM`,
//! `dpytest -l`).

use anyhow::Result;

use crate::cli::ServerArgs;
use crate::commands::Outcome;
use crate::ops::{table, Client};
use crate::wire::{TestNameList, TestRunList, TestRunSummary};

/// `rdeploy test sync` / `pxemngr synctestnames`: the server reads its tests dir again.
/// Prints `registering NAME` per test (PXE Manager's words) and each template's syntax
/// error; exit 2 when a template does not compile or `wait.test` is missing.
pub fn sync(args: &ServerArgs) -> Result<Outcome> {
    let c = Client::new(args)?;
    let list: TestNameList = c.post("/testnames/sync", serde_json::json!({}))?;
    let mut ok = true;
    for t in list.tests.iter().filter(|t| t.available) {
        println!("registering {}", t.name);
        if let Some(p) = &t.problem {
            eprintln!("error: {p}");
            ok = false;
        }
    }
    for t in list.tests.iter().filter(|t| !t.available) {
        println!(
            "unavailable {} (its file is gone from {})",
            t.name, list.dir
        );
    }
    if list.missing_wait {
        eprintln!(
            "error: you must add a wait test ({}/wait.test): systems with nothing queued get the built-in one meanwhile",
            list.dir
        );
        ok = false;
    }
    Ok(if ok { Outcome::Ok } else { Outcome::Error })
}

/// `rdeploy test queue SYSTEM TEST...` / `pxemngr nexttest SYSTEM TEST...`.
pub fn queue(args: &ServerArgs, system: &str, tests: &[String]) -> Result<Outcome> {
    let c = Client::new(args)?;
    let runs: Vec<TestRunSummary> = c.post(
        "/testruns",
        serde_json::json!({"system": system, "tests": tests}),
    )?;
    for r in &runs {
        println!("{}: queued {} (test id {})", r.system, r.test, r.id);
    }
    Ok(Outcome::Ok)
}

/// `rdeploy test list [SYSTEM]` / `pxemngr dpytest SYSTEM`: every test run or scheduled,
/// with its state and its counts of error, warning and information lines.
pub fn list(args: &ServerArgs, system: Option<&str>) -> Result<Outcome> {
    let c = Client::new(args)?;
    let path = match system {
        Some(s) => format!("/testruns?system={}", crate::serve::markup::segment(s)),
        None => "/testruns".to_owned(),
    };
    let list: TestRunList = c.get(&path)?;
    if let Some(s) = &list.system {
        println!("Name: {s}");
        let others: Vec<&String> = list.names.iter().filter(|n| *n != s).collect();
        if !others.is_empty() {
            let others: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
            println!("Also: {}", others.join(", "));
        }
    }
    print!("{}", runs_table(&list.runs, list.system.is_none()));
    Ok(Outcome::Ok)
}

fn runs_table(runs: &[TestRunSummary], with_system: bool) -> String {
    let mut head = vec!["ID"];
    if with_system {
        head.push("SYSTEM");
    }
    head.extend([
        "TEST", "STATE", "QUEUED", "UPDATED", "ERRORS", "WARNINGS", "INFOS", "VERSION",
    ]);
    let mut rows = vec![head.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>()];
    let mut notes = Vec::new();
    for r in runs {
        let mut row = vec![r.id.to_string()];
        if with_system {
            row.push(r.system.clone());
        }
        row.extend([
            r.test.clone(),
            r.state.clone(),
            r.queued_at.clone(),
            r.updated_at.clone(),
            r.errors.to_string(),
            r.warnings.to_string(),
            r.infos.to_string(),
            r.version.clone().unwrap_or_else(|| "-".into()),
        ]);
        rows.push(row);
        if let Some(e) = &r.error {
            notes.push(format!("run {}: template error: {e}", r.id));
        }
        for p in &r.problems {
            notes.push(format!("run {}: {p}", r.id));
        }
        let shown = r.problems.len();
        if r.errors + r.warnings > shown {
            notes.push(format!(
                "run {}: ... {} more error and warning lines (GET /testruns/{})",
                r.id,
                r.errors + r.warnings - shown,
                r.id
            ));
        }
    }
    let mut out = table(&rows);
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// `pxemngr dpytest -l`: the tests known, one per line (unavailable ones marked).
pub fn names(args: &ServerArgs) -> Result<Outcome> {
    let c = Client::new(args)?;
    let list: TestNameList = c.get("/testnames")?;
    for t in &list.tests {
        match (&t.problem, t.available) {
            (_, false) => println!("{} (unavailable: no file)", t.name),
            (Some(p), true) => println!("{} (does not compile: {p})", t.name),
            (None, true) => println!("{}", t.name),
        }
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_read_as_a_table_with_template_errors_below() {
        let run = |id, state: &str, error: Option<&str>| TestRunSummary {
            id,
            system: "rack1".into(),
            test: "hello".into(),
            state: state.into(),
            queued_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:01:00Z".into(),
            version: None,
            errors: 2,
            warnings: 1,
            infos: 0,
            exit: None,
            error: error.map(str::to_owned),
            problems: vec!["E: sdb failed".into(), "W: slow".into()],
        };
        let text = runs_table(
            &[
                run(1, "done", None),
                run(2, "error", Some("hello.test:3: undefined")),
            ],
            false,
        );
        assert_eq!(
            text,
            "ID  TEST   STATE  QUEUED                UPDATED               ERRORS  WARNINGS  INFOS  VERSION\n\
             1   hello  done   2026-01-01T00:00:00Z  2026-01-01T00:01:00Z  2       1         0      -\n\
             2   hello  error  2026-01-01T00:00:00Z  2026-01-01T00:01:00Z  2       1         0      -\n\
             run 1: E: sdb failed\n\
             run 1: W: slow\n\
             run 1: ... 1 more error and warning lines (GET /testruns/1)\n\
             run 2: template error: hello.test:3: undefined\n\
             run 2: E: sdb failed\n\
             run 2: W: slow\n\
             run 2: ... 1 more error and warning lines (GET /testruns/2)\n"
        );
        assert_eq!(crate::serve::markup::segment("a b&c"), "a%20b%26c");
    }
}
