//! `rdeploy check`: lint a config dir, compile its configure scripts, and explain which
//! profile inventories would get, with the plan of commands and files their script would run.
//!
//! Read-only: it takes no lock and writes nothing. Matching uses the pure pipeline on a memory
//! copy of the files (no CMDB entry is saved) and scripts run on a recording host (nothing is
//! executed).

use crate::cli::CheckArgs;
use crate::commands::{read_inventory, Outcome};
use anyhow::{Context, Result};
use rdeploy_cmdb::cmdb::{Cmdb, CmdbError};
use rdeploy_cmdb::pipeline::{find_match, MemorySource};
use rdeploy_cmdb::store::ConfigDir;
use rdeploy_cmdb::State;
use rdeploy_specs::matcher::Severity;
use rdeploy_specs::{model, Pos, Specs};
use std::collections::BTreeSet;
use std::path::Path;
use std::rc::Rc;

/// Collected findings, printed as `file:line:col: level: message`.
#[derive(Debug, Default)]
struct Report {
    errors: usize,
    warnings: usize,
}

impl Report {
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
    if dir.has_pending_commit() {
        report.say(
            Severity::Warning,
            &dir.file(".rdeploy-journal"),
            None,
            "an interrupted commit is pending; the next `rdeploy match` or the server finishes it",
        );
    }
    let state_path = dir.file("state");
    let state = match dir.read("state")? {
        None => {
            report.say(
                Severity::Error,
                &state_path,
                None,
                "missing: the state file lists the profiles to try, e.g. [('hp', 4), ('vm', '*')]",
            );
            None
        }
        Some(text) => match State::parse(&text) {
            Ok(s) => Some(s),
            Err(problems) => {
                for p in problems.0 {
                    report.say(Severity::Error, &state_path, Some(p.pos), &p.message);
                }
                None
            }
        },
    };
    let mut source = MemorySource::default();
    let mut seen = BTreeSet::new();
    if let Some(state) = &state {
        if state.entries.is_empty() {
            report.say(
                Severity::Warning,
                &state_path,
                None,
                "no profile listed: every upload will fail",
            );
        }
        for entry in &state.entries {
            if seen.insert(entry.profile.clone()) {
                check_profile(&dir, &entry.profile, entry.pos, &mut report, &mut source)?;
            }
        }
    }
    // Profiles present on disk but not tried.
    if let Ok(read) = std::fs::read_dir(dir.path()) {
        let mut orphans: Vec<String> = read
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".specs"))
                    .map(str::to_owned)
            })
            .filter(|p| !seen.contains(p))
            .collect();
        orphans.sort();
        for p in orphans {
            report.say(
                Severity::Warning,
                &dir.file(&format!("{p}.specs")),
                None,
                &format!("profile '{p}' is not listed in state, so it is never tried"),
            );
        }
    }

    check_scripts(&dir, &mut report)?;

    let mut unmatched = 0;
    if let Some(state) = &state {
        for hw in &args.hw {
            let inventory = match read_inventory(hw) {
                Ok(i) => i,
                Err(e) => {
                    report.errors += 1;
                    println!("{e:#}");
                    continue;
                }
            };
            match find_match(state, &inventory, &mut source) {
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
                Err(e) => {
                    unmatched += 1;
                    println!("{}: no match: {}", hw.display(), e.explain());
                }
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

fn check_profile(
    dir: &ConfigDir,
    profile: &str,
    state_pos: Pos,
    report: &mut Report,
    source: &mut MemorySource,
) -> Result<()> {
    let state_path = dir.file("state");
    if let Err(why) = rdeploy_cmdb::state::check_profile_name(profile) {
        report.say(
            Severity::Error,
            &state_path,
            Some(state_pos),
            &format!("profile name '{profile}' {why}"),
        );
        return Ok(());
    }
    let specs_name = format!("{profile}.specs");
    let specs_path = dir.file(&specs_name);
    let specs_text = dir.read(&specs_name)?;
    let cmdb_name = format!("{profile}.cmdb");
    let cmdb_path = dir.file(&cmdb_name);
    let cmdb_text = dir.read(&cmdb_name)?;
    let mut binds = true;
    match &specs_text {
        None => report.say(
            Severity::Error,
            &state_path,
            Some(state_pos),
            &format!("profile '{profile}' has no {specs_name}: it never matches"),
        ),
        Some(text) => match model::parse_specs(text) {
            Err(problems) => {
                for p in problems.0 {
                    report.say(Severity::Error, &specs_path, Some(p.pos), &p.message);
                }
                report.say(
                    Severity::Warning,
                    &specs_path,
                    None,
                    "eDeploy never matches a specs file it cannot read",
                );
            }
            Ok(lines) => {
                let specs = Specs::compile(lines);
                for d in specs.diagnostics() {
                    report.say(d.severity, &specs_path, Some(d.pos), &d.message);
                }
                binds = specs.binds_variables();
                if specs.is_empty() {
                    report.say(
                        Severity::Warning,
                        &specs_path,
                        None,
                        "no spec: every inventory matches this profile",
                    );
                }
            }
        },
    }
    let mut cmdb_entries = None;
    if let Some(text) = &cmdb_text {
        match Cmdb::parse(text) {
            Ok(Some(c)) => {
                let left = c.entries.len() - c.used();
                if left == 0 {
                    report.say(
                        Severity::Warning,
                        &cmdb_path,
                        None,
                        &format!(
                            "all {} entries are used: the next match of '{profile}' fails",
                            c.entries.len()
                        ),
                    );
                }
                cmdb_entries = Some(c.entries.len());
            }
            Ok(None) => report.say(
                Severity::Warning,
                &cmdb_path,
                None,
                "empty: eDeploy treats it as no CMDB",
            ),
            Err(CmdbError::Syntax(e)) => {
                report.say(
                    Severity::Error,
                    &cmdb_path,
                    Some(e.pos),
                    &format!("{} (eDeploy would ignore the whole CMDB)", e.message),
                );
            }
            Err(CmdbError::Generate { pos, source }) => {
                report.say(
                    Severity::Error,
                    &cmdb_path,
                    Some(pos),
                    &format!("generate(): {}", error_chain(&source)),
                );
            }
            Err(e) => report.say(Severity::Error, &cmdb_path, None, &e.to_string()),
        }
    }
    if !binds && cmdb_entries.is_some() {
        report.say(
            Severity::Warning,
            &specs_path,
            None,
            &format!("binds no variable: eDeploy hands every node matching '{profile}' the first CMDB entry (kept for compatibility); bind e.g. ('system', 'product', 'serial', '$serial')"),
        );
    }
    if dir.read(&format!("{profile}.configure"))?.is_none() {
        report.say(
            Severity::Error,
            &dir.file(&format!("{profile}.configure")),
            None,
            &format!("missing: a node matching '{profile}' would get no configure script"),
        );
    }
    source.add(profile, specs_text.as_deref(), cmdb_text.as_deref());
    Ok(())
}

/// Compiles every `*.configure` of the dir: syntax errors at `file:line:column`.
fn check_scripts(dir: &ConfigDir, report: &mut Report) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .with_context(|| format!("cannot list {}", dir.path().display()))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".configure") && !n.starts_with('.'))
        .collect();
    names.sort();
    for name in names {
        let Some(text) = dir.read(&name)? else {
            continue;
        };
        if let Err(e) = rdeploy_configure::compile(&name, &text) {
            report_script_error(report, &dir.file(&name), &e);
        }
    }
    Ok(())
}

fn report_script_error(report: &mut Report, path: &Path, e: &rdeploy_configure::ScriptError) {
    let pos = e.line.map(|line| Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: e.column.and_then(|c| u32::try_from(c).ok()).unwrap_or(0),
    });
    let mut message = format!("{}: {}", e.kind, e.message);
    for (func, line, col) in &e.call_stack {
        message.push_str(&format!(" (in function {func} called at {line}:{col})"));
    }
    report.say(Severity::Error, path, pos, &message);
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
        Err(e) => report_script_error(report, &dir.file(&name), &e.error),
    }
    Ok(())
}

/// An error and its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
