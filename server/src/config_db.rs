//! `rdeploy config push DIR` and `rdeploy config pull DIR`: the config of servers that
//! share a PostgreSQL database (`serve/pg.rs`, docs/ha.md).
//!
//! Push checks DIR as `rdeploy check` does, then, in one transaction under the lock every
//! server's allocations take, replaces the database's `state`, CMDBs and `.cmdb.orig` with
//! DIR's. It is refused, changing nothing, when it would take back what was given out: an
//! entry in use (`used` set) that is missing or different at its place in the new CMDB, or
//! an install under way whose `state` entry would now name another profile. Pull writes the
//! database's files into DIR (atomically each), for an operator to edit and push back.

use anyhow::{Context as _, Result};
use postgres::Client;
use rdeploy_cmdb::ledger::Ledger;
use rdeploy_cmdb::{Cmdb, State};
use std::collections::BTreeMap;

use crate::cli::{CheckArgs, ConfigDbArgs};
use crate::commands::Outcome;
use crate::serve::pg::{self, Database};

/// The ledger of the servers of a database.
fn ledger_name() -> String {
    rdeploy_cmdb::ledger::file_name(pg::OWNER)
}

pub fn push(args: &ConfigDbArgs) -> Result<Outcome> {
    let check = crate::check::run(&CheckArgs {
        config_dir: args.dir.clone(),
        hw: Vec::new(),
    })?;
    if matches!(check, Outcome::Error) {
        eprintln!(
            "rdeploy config push: {} has errors (above): nothing pushed",
            args.dir.display()
        );
        return Ok(Outcome::Error);
    }
    let files = pg::mutable_files(&args.dir)?;
    anyhow::ensure!(
        files.iter().any(|(n, _)| n == "state"),
        "{}: no state file: nothing pushed",
        args.dir.display()
    );
    let db = Database::open(&args.database_url)?;
    let mut client = db.connect()?;
    let taken = apply(&mut client, &files).with_context(|| db.label().to_owned())?;
    if taken.is_empty() {
        eprintln!(
            "rdeploy config push: {} is the config of {} ({} files)",
            args.dir.display(),
            db.label(),
            files.len()
        );
        Ok(Outcome::Ok)
    } else {
        for t in &taken {
            eprintln!("{t}");
        }
        eprintln!(
            "rdeploy config push: refused, it would take back {} entr{} given out: nothing pushed",
            taken.len(),
            if taken.len() == 1 { "y" } else { "ies" }
        );
        Ok(Outcome::Error)
    }
}

/// In one transaction: what would be taken back, or the new files in place.
fn apply(client: &mut Client, files: &[(String, String)]) -> Result<Vec<String>> {
    let mut tx = client.transaction()?;
    let row = tx.query_one(
        "SELECT version FROM config_lock WHERE id = 1 FOR UPDATE",
        &[],
    )?;
    let version: i64 = row.get(0);
    let mut current = BTreeMap::new();
    for row in tx.query("SELECT name, text FROM config_files", &[])? {
        current.insert(row.get::<_, String>(0), row.get::<_, String>(1));
    }
    let new: BTreeMap<&str, &str> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let taken = taken_back(&current, &new);
    if !taken.is_empty() {
        return Ok(taken);
    }
    let next = version + 1;
    let ledger = ledger_name();
    for name in current.keys() {
        if *name != ledger && !new.contains_key(name.as_str()) {
            tx.execute("DELETE FROM config_files WHERE name = $1", &[name])?;
        }
    }
    for (name, text) in &new {
        tx.execute(
            "INSERT INTO config_files (name, text, version) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET text = EXCLUDED.text, version = EXCLUDED.version",
            &[name, text, &next],
        )?;
    }
    tx.execute(
        "UPDATE config_lock SET version = $1, seeded = true WHERE id = 1",
        &[&next],
    )?;
    tx.commit()?;
    Ok(Vec::new())
}

fn cmdb_entries(text: Option<&str>) -> Vec<rdeploy_specs::Value> {
    match text.map(Cmdb::parse) {
        Some(Ok(Some(c))) => c.entries,
        _ => Vec::new(),
    }
}

/// Every entry given out (in use in the database's CMDB, or held by an install under way)
/// that the new files would change or drop, as a line naming it.
fn taken_back(current: &BTreeMap<String, String>, new: &BTreeMap<&str, &str>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in current {
        let Some(profile) = name.strip_suffix(".cmdb") else {
            continue;
        };
        let old = cmdb_entries(Some(text));
        let replacement = cmdb_entries(new.get(name.as_str()).copied());
        for (i, entry) in old.iter().enumerate() {
            if entry.dict_get("used").is_none() {
                continue;
            }
            if replacement.get(i) != Some(entry) {
                out.push(format!(
                    "{profile}.cmdb entry {i} is given out ({}) and would be {}",
                    rdeploy_specs::syntax::to_python(entry),
                    match replacement.get(i) {
                        Some(e) => format!("replaced by {}", rdeploy_specs::syntax::to_python(e)),
                        None => "removed".to_owned(),
                    }
                ));
            }
        }
    }
    let holds = current
        .get(&ledger_name())
        .and_then(|t| Ledger::parse(t).ok())
        .unwrap_or_default();
    let state = new.get("state").and_then(|t| State::parse(t).ok());
    for (node, hold) in &holds.holds {
        let same = state
            .as_ref()
            .and_then(|s| s.entries.get(hold.state_index))
            .is_some_and(|e| e.profile == hold.profile);
        if !same {
            out.push(format!(
                "{node} has an install of '{}' under way, counted against state entry {}, which the new state would not keep",
                hold.profile, hold.state_index
            ));
        }
    }
    out
}

pub fn pull(args: &ConfigDbArgs) -> Result<Outcome> {
    let db = Database::open(&args.database_url)?;
    let mut client = db.connect()?;
    let rows = client
        .query(
            "SELECT name, text FROM config_files WHERE name NOT LIKE '.%' ORDER BY name",
            &[],
        )
        .with_context(|| format!("{}: cannot read the config", db.label()))?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut n = 0;
    for row in rows {
        let (name, text): (String, String) = (row.get(0), row.get(1));
        if !rdeploy_cmdb::shared::is_shared_name(&name) || name.contains('/') {
            continue;
        }
        rdeploy_cmdb::store::write_atomic(&args.dir, &name, &text)
            .with_context(|| format!("cannot write {}", args.dir.join(&name).display()))?;
        n += 1;
    }
    eprintln!(
        "rdeploy config pull: wrote {n} files of {} into {}",
        db.label(),
        args.dir.display()
    );
    Ok(Outcome::Ok)
}
