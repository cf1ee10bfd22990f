//! The file-based subcommands: `try-match`, `match`, `generate`, `convert-configure`.

use crate::cli::{ConvertConfigureArgs, GenerateArgs, MatchArgs, TryMatchArgs};
use anyhow::{Context, Result};
use rdeploy_cmdb::snapshot::FailureOutcome;
use rdeploy_cmdb::store::ConfigDir;
use rdeploy_cmdb::{generate, MatchError, Refusal, Snapshot};
use rdeploy_specs::matcher::{display_line, explain_spec, NoMatch, Severity};
use rdeploy_specs::{match_all, model, syntax, Inventory, Problems, Specs};
use std::path::Path;
use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    NoMatch,
    Error,
    /// Matching the inventory spent its whole budget: refused (`422 too_costly` in the
    /// server).
    TooCostly,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        match o {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::NoMatch => ExitCode::from(1),
            Outcome::Error => ExitCode::from(2),
            Outcome::TooCostly => ExitCode::from(3),
        }
    }
}

/// An input file that did not parse: every problem, one line each, `file:line:col: what`.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.path, .problems))]
pub struct BadFile {
    pub path: std::path::PathBuf,
    pub problems: Problems,
}

fn render(path: &Path, problems: &Problems) -> String {
    problems
        .0
        .iter()
        .map(|p| format!("{}:{}: {}", path.display(), p.pos, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn read_inventory(path: &Path) -> Result<Inventory> {
    let text = read(path)?;
    Inventory::parse(&text).map_err(|problems| {
        BadFile {
            path: path.to_owned(),
            problems,
        }
        .into()
    })
}

pub fn read_specs(path: &Path) -> Result<Specs> {
    let text = read(path)?;
    let lines = model::parse_specs(&text).map_err(|problems| BadFile {
        path: path.to_owned(),
        problems,
    })?;
    Ok(Specs::compile(lines))
}

pub fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string(v).unwrap_or_else(|_| "null".into())
    );
}

pub fn try_match(args: &TryMatchArgs) -> Result<Outcome> {
    let inventory = read_inventory(&args.hw)?;
    let specs = read_specs(&args.specs)?;
    for d in specs.diagnostics() {
        if d.severity == Severity::Error {
            eprintln!("{}:{}: warning: {}", args.specs.display(), d.pos, d.message);
        }
    }
    let result = match_all(&inventory, &specs);
    match result.outcome {
        Ok(vars) => {
            print_json(&vars.to_json());
            Ok(Outcome::Ok)
        }
        Err(NoMatch::Spec { index }) => {
            let line = &specs.lines()[index];
            let why = explain_spec(&inventory, &specs, index, 3);
            eprintln!(
                "no match: {}:{}: spec #{} {} is not satisfied by {}{}",
                args.specs.display(),
                line.pos,
                index + 1,
                display_line(&line.elems),
                args.hw.display(),
                why.first().map(|w| format!(": {w}")).unwrap_or_default()
            );
            Ok(Outcome::NoMatch)
        }
        Err(NoMatch::GaveUp { steps, spec }) => {
            let at = specs.lines().get(spec).map_or_else(String::new, |l| {
                format!(":{} (spec #{} {})", l.pos, spec + 1, display_line(&l.elems))
            });
            eprintln!(
                "refused: matching {} spent its budget ({steps} steps) at {}{at}: the specs backtrack too much for this inventory, or a regular expression is too costly on it (eDeploy would search for minutes here)",
                args.hw.display(),
                args.specs.display(),
            );
            Ok(Outcome::TooCostly)
        }
    }
}

/// `rdeploy match`: one upload (or failure report) as a batch of one through the same
/// [`Snapshot`] the server keeps, so both give the same answers and the same refusals.
pub fn match_cmd(args: &MatchArgs) -> Result<Outcome> {
    let mut snap = Snapshot::new(ConfigDir::new(&args.config_dir));
    if let Some(profile) = &args.failure {
        return match snap.batch(|b| b.failure(profile, None))? {
            Ok(FailureOutcome::QuotaReturned) => {
                eprintln!("gave one install back to profile '{profile}'");
                Ok(Outcome::Ok)
            }
            Ok(FailureOutcome::Unchanged) => {
                eprintln!("profile '{profile}' unchanged (unlimited quota or not in state)");
                Ok(Outcome::Ok)
            }
            Err(refusal) => {
                eprintln!("rdeploy: failure report for '{profile}' refused: {refusal}");
                Ok(Outcome::Error)
            }
        };
    }
    let hw = args
        .hw
        .as_deref()
        .context("an inventory file is required")?;
    let inventory = read_inventory(hw)?;
    match snap.batch(|b| b.upload(&inventory, None))? {
        Ok(alloc) => {
            print_json(&serde_json::json!({
                "profile": alloc.plan.profile,
                "var": alloc.plan.vars.to_json(),
            }));
            Ok(Outcome::Ok)
        }
        Err(refusal) => {
            let why = match &refusal {
                Refusal::Match(e) => one_line(e),
                other => other.to_string(),
            };
            if refusal.is_config_error() {
                eprintln!("rdeploy: cannot match {}: {why}", hw.display());
                Ok(Outcome::Error)
            } else if matches!(&refusal, Refusal::Match(m) if matches!(**m, MatchError::TooCostly { .. }))
            {
                eprintln!("rdeploy: {} refused: {why}", hw.display());
                Ok(Outcome::TooCostly)
            } else {
                eprintln!("rdeploy: no match for {}: {why}", hw.display());
                Ok(Outcome::NoMatch)
            }
        }
    }
}

/// The error and each profile's reason on one line.
pub fn one_line(e: &MatchError) -> String {
    let mut s = e.to_string();
    let reasons: Vec<String> = e
        .tried()
        .iter()
        .map(|(n, why)| format!("{n}: {why}"))
        .collect();
    if !reasons.is_empty() {
        s.push_str(" [");
        s.push_str(&reasons.join("; "));
        s.push(']');
    }
    s
}

pub fn generate(args: &GenerateArgs) -> Result<Outcome> {
    let text = read(&args.model)?;
    let node = syntax::parse(&text).map_err(|e| BadFile {
        path: args.model.clone(),
        problems: Problems(vec![e.into()]),
    })?;
    let entries = match &node.kind {
        syntax::NodeKind::Dict(_) => {
            let model = node.to_value().map_err(|e| BadFile {
                path: args.model.clone(),
                problems: Problems(vec![e.into()]),
            })?;
            generate::generate(&model)
        }
        _ => generate::expand_cmdb(&node),
    }
    .map_err(|e| anyhow::anyhow!("{}:{}: {e}", args.model.display(), node.pos))?;
    let mut out = String::from("[");
    for (i, e) in entries.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&serde_json::to_string(&e.to_json())?);
    }
    out.push_str("\n]");
    println!("{out}");
    Ok(Outcome::Ok)
}

/// `rdeploy convert-configure FILE [-o OUT]`: the Rhai script on stdout (or in OUT), the
/// report on stderr; exit 0 when everything converted, 1 when some statements did not.
pub fn convert_configure(args: &ConvertConfigureArgs) -> Result<Outcome> {
    let text = read(&args.file)?;
    let name = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let conversion = rdeploy_configure::python::convert(&name, &text)
        .map_err(|e| anyhow::anyhow!("{}:{}: {}", args.file.display(), e.line, e.message))?;
    // The output always compiles (statements not converted are comments and `throw`s); if
    // it did not, that is a bug of the converter, said as such.
    if let Err(e) = rdeploy_configure::compile(&name, &conversion.rhai) {
        anyhow::bail!("the converted script does not compile (a bug of convert-configure, please report it with the file): {e}");
    }
    match &args.output {
        Some(out) => {
            let dir = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let file = out
                .file_name()
                .with_context(|| format!("{}: not a file name", out.display()))?
                .to_string_lossy();
            rdeploy_cmdb::store::write_atomic(dir, &file, &conversion.rhai)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        None => print!("{}", conversion.rhai),
    }
    eprint!("{}", conversion.report(&args.file.display().to_string()));
    Ok(if conversion.complete() {
        Outcome::Ok
    } else {
        Outcome::NoMatch
    })
}
