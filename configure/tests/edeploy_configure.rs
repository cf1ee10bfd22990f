//! `rdeploy convert-configure` on every configure script of eDeploy's own example config dir
//! (`tests/fixtures/edeploy-configure/`): the Rhai output, the report and a dry run of the
//! output are compared with the files beside each script (`UPDATE_EXPECT=1` rewrites them
//! on purpose). Every output compiles; a script with nothing left unconverted runs to its
//! end and selects its role.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use rdeploy_configure::python::{convert, Severity};
use rdeploy_configure::{compile, run, Options, RecordingHost};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/edeploy-configure")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares `actual` with the file, or rewrites the file under `UPDATE_EXPECT`.
fn expect(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "{} differs (UPDATE_EXPECT=1 rewrites it on purpose)\n--- actual\n{actual}",
            path.display()
        ));
    }
}

#[test]
fn every_edeploy_example_converts_compiles_and_dry_runs() {
    let dir = fixtures();
    let vars: serde_json::Value = serde_json::from_str(&read(&dir.join("vars.json")))
        .unwrap_or_else(|e| panic!("vars.json: {e}"));
    let vars = vars.as_object().cloned().unwrap_or_default();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".configure").map(str::to_owned)
        })
        .collect();
    names.sort();
    // eDeploy's config/ dir has eleven of them: none may go missing silently.
    assert_eq!(names.len(), 11, "{names:?}");

    let mut failures = Vec::new();
    let mut complete = Vec::new();
    for name in &names {
        let file = format!("{name}.configure");
        // NAME.vars.json, when there is one, overrides some of vars.json.
        let mut vars = vars.clone();
        let own = dir.join(format!("{name}.vars.json"));
        if own.exists() {
            let v: serde_json::Value = serde_json::from_str(&read(&own))
                .unwrap_or_else(|e| panic!("{}: {e}", own.display()));
            vars.extend(v.as_object().cloned().unwrap_or_default());
        }
        let conversion = convert(&file, &read(&dir.join(&file)))
            .unwrap_or_else(|e| panic!("{file} does not read as Python: {e}"));
        expect(
            &dir.join(format!("{name}.rhai")),
            &conversion.rhai,
            &mut failures,
        );
        expect(
            &dir.join(format!("{name}.report")),
            &conversion.report(&file),
            &mut failures,
        );
        let rhai_name = format!("{name}.rhai");
        let script = match compile(&rhai_name, &conversion.rhai) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{rhai_name} does not compile: {e}"));
                continue;
            }
        };
        let host = Rc::new(RecordingHost::new());
        let plan = match run(&script, &vars, host.clone(), &Options::default()) {
            Ok(outcome) => {
                if outcome.role.is_none() {
                    failures.push(format!("{rhai_name}: ran to its end without a role"));
                }
                format!("{}\n{}", outcome.summary(), host.render())
            }
            Err(e) => format!(
                "{}\n{}\nerror: {}\n",
                e.partial.summary(),
                host.render(),
                e.error
            ),
        };
        expect(&dir.join(format!("{name}.plan")), &plan, &mut failures);
        if conversion.complete() {
            complete.push(name.clone());
            if plan.contains("\nerror: ") {
                failures.push(format!(
                    "{rhai_name}: fully converted but its dry run failed:\n{plan}"
                ));
            }
        } else {
            // Every statement not converted stops a run: the plan ends with the first one.
            let first = conversion
                .diagnostics
                .iter()
                .find(|d| d.severity == Severity::NotConverted)
                .map(|d| format!("{file}:{} was not converted", d.line));
            if first.is_none_or(|f| !plan.contains(&f)) {
                failures.push(format!("{rhai_name}: the dry run did not stop at the first statement not converted:\n{plan}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The scripts without eDeploy's HP RAID module or subprocess convert whole.
    assert_eq!(
        complete,
        [
            "devstack",
            "kvm-test",
            "kvm-usb",
            "vm",
            "vm-centos",
            "vm-debian"
        ]
    );
}
