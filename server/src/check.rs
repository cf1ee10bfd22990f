//! `rdeploy check`: lint a config dir, compile its configure scripts, and explain which
//! profile inventories would get, with the plan of commands and files their script would run.
//!
//! Read-only: it takes no lock and writes nothing. Matching uses the pure pipeline on a memory
//! copy of the files (no CMDB entry is saved) and scripts run on a recording host (nothing is
//! executed).

use crate::cli::CheckArgs;
use crate::commands::{read_inventory, Outcome};
use anyhow::{Context, Result};
use rdeploy_cmdb::snapshot::{Finding, Level};
use rdeploy_cmdb::store::ConfigDir;
use rdeploy_cmdb::{MatchError, Refusal, Snapshot};
use rdeploy_specs::matcher::Severity;
use rdeploy_specs::Pos;
use std::path::Path;
use std::rc::Rc;

/// Collected findings, printed as `file:line:col: level: message`.
#[derive(Debug, Default)]
struct Report {
    errors: usize,
    warnings: usize,
}

impl Report {
    fn finding(&mut self, dir: &Path, f: &Finding) {
        let severity = match f.level {
            Level::Error => Severity::Error,
            Level::Warning => Severity::Warning,
        };
        let pos = (f.line > 0).then_some(Pos {
            line: f.line,
            col: f.col,
        });
        self.say(severity, &dir.join(&f.file), pos, &f.message);
    }

    fn say(&mut self, severity: Severity, file: &Path, pos: Option<Pos>, message: &str) {
        let level = match severity {
            Severity::Error => {
                self.errors += 1;
                "error"
            }
            Severity::Warning => {
                self.warnings += 1;
                "warning"
            }
        };
        match pos {
            Some(p) if p.line > 0 => println!("{}:{p}: {level}: {message}", file.display()),
            _ => println!("{}: {level}: {message}", file.display()),
        }
    }
}

pub fn run(args: &CheckArgs) -> Result<Outcome> {
    let dir = ConfigDir::new(&args.config_dir);
    let mut report = Report::default();
    if !dir.path().is_dir() {
        anyhow::bail!("{}: not a directory", dir.path().display());
    }
    // The same snapshot the server and `rdeploy match` plan with, read without the lock.
    let mut snap = Snapshot::new(dir.clone()).with_script_check(script_errors);
    snap.refresh();
    for f in snap.findings() {
        report.finding(dir.path(), &f);
    }
    check_other_scripts(&dir, &snap, &mut report)?;

    let mut unmatched = 0;
    for hw in &args.hw {
        let inventory = match read_inventory(hw) {
            Ok(i) => i,
            Err(e) => {
                report.errors += 1;
                println!("{e:#}");
                continue;
            }
        };
        match snap.plan(&inventory) {
            Ok(plan) => {
                let vars = plan.vars.to_json();
                println!(
                    "{}: matches profile '{}' with {}",
                    hw.display(),
                    plan.profile,
                    serde_json::to_string(&vars).unwrap_or_default()
                );
                let vars = vars.as_object().cloned().unwrap_or_default();
                dry_run_profile(&dir, &plan.profile, &vars, &mut report)?;
            }
            Err(Refusal::Match(e)) if matches!(*e, MatchError::TooCostly { .. }) => {
                // The specs (or a regular expression) cost too much on this inventory: a
                // problem of the config dir the server would answer `422 too_costly`.
                report.errors += 1;
                println!("{}: refused: {}", hw.display(), e.explain());
            }
            Err(Refusal::Match(e)) => {
                unmatched += 1;
                println!("{}: no match: {}", hw.display(), e.explain());
            }
            Err(e) => {
                unmatched += 1;
                println!("{}: not matched: {e}", hw.display());
            }
        }
    }
    println!(
        "{} error{}, {} warning{}",
        report.errors,
        if report.errors == 1 { "" } else { "s" },
        report.warnings,
        if report.warnings == 1 { "" } else { "s" }
    );
    Ok(if report.errors > 0 {
        Outcome::Error
    } else if unmatched > 0 {
        Outcome::NoMatch
    } else {
        Outcome::Ok
    })
}

/// The configure crate's compiler as the snapshot's script check: each error at its
/// position (the server's `/healthz` and `rdeploy check` both use it).
pub fn script_errors(name: &str, text: &str) -> Vec<(Option<Pos>, String)> {
    match rdeploy_configure::compile(name, text) {
        Ok(_) => Vec::new(),
        Err(e) => vec![script_error(&e)],
    }
}

fn script_error(e: &rdeploy_configure::ScriptError) -> (Option<Pos>, String) {
    let pos = e.line.map(|line| Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: e.column.and_then(|c| u32::try_from(c).ok()).unwrap_or(0),
    });
    let mut message = format!("{}: {}", e.kind, e.message);
    for (func, line, col) in &e.call_stack {
        message.push_str(&format!(" (in function {func} called at {line}:{col})"));
    }
    (pos, message)
}

/// Compiles the `*.configure` files no profile of `state` uses (the snapshot checks the
/// others): syntax errors at `file:line:column`.
fn check_other_scripts(dir: &ConfigDir, snap: &Snapshot, report: &mut Report) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .with_context(|| format!("cannot list {}", dir.path().display()))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".configure") && !n.starts_with('.'))
        .filter(|n| {
            n.strip_suffix(".configure")
                .is_none_or(|p| snap.script(p).is_none())
        })
        .collect();
    names.sort();
    for name in names {
        let Some(text) = dir.read(&name)? else {
            continue;
        };
        for (pos, message) in script_errors(&name, &text) {
            report.say(Severity::Error, &dir.file(&name), pos, &message);
        }
    }
    Ok(())
}

/// Runs the profile's script with the matched variables on a recording host and prints the
/// plan: settings (`# role: ...`), then each command (`$ ...`) and file, indented.
fn dry_run_profile(
    dir: &ConfigDir,
    profile: &str,
    vars: &serde_json::Map<String, serde_json::Value>,
    report: &mut Report,
) -> Result<()> {
    let name = format!("{profile}.configure");
    let Some(text) = dir.read(&name)? else {
        return Ok(()); // already reported as missing
    };
    let Ok(script) = rdeploy_configure::compile(&name, &text) else {
        return Ok(()); // already reported by check_scripts
    };
    let host = Rc::new(rdeploy_configure::RecordingHost::new());
    match rdeploy_configure::run(
        &script,
        vars,
        host.clone(),
        &rdeploy_configure::Options::default(),
    ) {
        Ok(outcome) => {
            println!("  plan of {name} (dry run, nothing executed):");
            for line in outcome.summary().lines().chain(host.render().lines()) {
                println!("    {line}");
            }
        }
        Err(e) => {
            let (pos, message) = script_error(&e.error);
            report.say(Severity::Error, &dir.file(&name), pos, &message);
        }
    }
    Ok(())
}
