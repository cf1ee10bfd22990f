//! Who holds which allocation: the install each machine has under way (its profile, the
//! `state` entry it counted against, the CMDB entry it got and what that entry was before),
//! kept as a hidden file of the config dir (`.rdeploy-holds-<owner>.json`) and written in the
//! same journaled commit as `state` and the CMDB.
//!
//! The file is JSON lines, one change each (`{"node": ID, "hold": {...}}`, or `"hold": null`
//! when the hold ends), replayed in order. A batch appends its changes (a journaled append:
//! it costs what the batch changed, not what the ledger holds); when the file has grown to
//! more than twice the live holds (plus 1,024 lines) the batch rewrites it whole.
//!
//! Because the three change together, a server killed at any instant comes back knowing
//! every allocation it answered: an agent's retry after the crash gets its own entry back
//! without counting its install twice, and a machine never holds two entries. The owner is
//! the server's data dir (its id), so a server with another data dir — a new rollout, a
//! test's fresh server — sees machines as new, as eDeploy did.
//!
//! `rdeploy match` (the eDeploy CGI way) keeps no ledger: every upload counts, as in
//! eDeploy.

use rdeploy_specs::Value;
use std::collections::BTreeMap;

/// One machine's install under way.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub profile: String,
    /// The `state` entry the install counted against.
    pub state_index: usize,
    /// Whether it counted (a numeric quota was decremented).
    pub counted: bool,
    /// The CMDB entry given (index), and the entry as it was before (to give it back).
    pub entry: Option<(usize, Value)>,
}

/// Every hold of one owner, and the changes not yet written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    pub holds: BTreeMap<String, Hold>,
    /// Lines in the file (to decide when to rewrite it whole).
    file_lines: usize,
    /// This batch's changes, as lines.
    pending: Vec<String>,
}

/// A hold's JSON shape (the entry as a Python literal, read back with the CMDB's reader).
#[derive(serde::Serialize, serde::Deserialize)]
struct HoldJson {
    profile: String,
    state_index: usize,
    counted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entry: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original: Option<String>,
}

/// One line of the file.
#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    node: String,
    hold: Option<HoldJson>,
}

/// The file name of an owner's ledger (owner ids are checked to be file-name safe).
pub fn file_name(owner: &str) -> String {
    format!(".rdeploy-holds-{owner}.json")
}

/// Whether an owner id can name a file: `[A-Za-z0-9_-]`, 1 to 64 characters.
pub fn valid_owner(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= 64
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// What a batch writes of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The whole file.
    Rewrite(String),
    /// Lines to add at its end.
    Append(String),
}

fn to_line(node: &str, hold: Option<&Hold>) -> String {
    let hold = hold.map(|h| HoldJson {
        profile: h.profile.clone(),
        state_index: h.state_index,
        counted: h.counted,
        entry: h.entry.as_ref().map(|(i, _)| *i),
        original: h
            .entry
            .as_ref()
            .map(|(_, v)| rdeploy_specs::syntax::to_python(v)),
    });
    let line = Line {
        node: node.to_owned(),
        hold,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

impl Ledger {
    /// Reads a ledger file; a problem says which line.
    pub fn parse(text: &str) -> Result<Ledger, String> {
        let mut holds = BTreeMap::new();
        let mut file_lines = 0;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            file_lines += 1;
            let l: Line = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            let Some(h) = l.hold else {
                holds.remove(&l.node);
                continue;
            };
            let entry = match (h.entry, h.original) {
                (Some(i), Some(text)) => {
                    let value = rdeploy_specs::syntax::parse(&text)
                        .and_then(|n| n.to_value())
                        .map_err(|e| format!("line {}: entry {i}: {e}", n + 1))?;
                    Some((i, value))
                }
                (None, None) => None,
                _ => return Err(format!("line {}: entry and original go together", n + 1)),
            };
            holds.insert(
                l.node,
                Hold {
                    profile: h.profile,
                    state_index: h.state_index,
                    counted: h.counted,
                    entry,
                },
            );
        }
        Ok(Ledger {
            holds,
            file_lines,
            pending: Vec::new(),
        })
    }

    /// Records a hold (replacing the machine's earlier one).
    pub fn insert(&mut self, node: &str, hold: Hold) {
        self.pending.push(to_line(node, Some(&hold)));
        self.holds.insert(node.to_owned(), hold);
    }

    /// Ends a machine's hold.
    pub fn remove(&mut self, node: &str) -> Option<Hold> {
        let hold = self.holds.remove(node)?;
        self.pending.push(to_line(node, None));
        Some(hold)
    }

    /// Whether changes wait to be written.
    pub fn is_dirty(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The whole file: one line per live hold.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (node, h) in &self.holds {
            out.push_str(&to_line(node, Some(h)));
            out.push('\n');
        }
        out
    }

    /// What to write for the changes since the last call: an append, or the whole file
    /// when it has grown past twice the live holds (plus 1,024 lines). Call
    /// [`Ledger::written`] once it is committed.
    pub fn change(&self) -> Option<Change> {
        if self.pending.is_empty() {
            return None;
        }
        if self.file_lines + self.pending.len() > 2 * self.holds.len() + 1024 {
            return Some(Change::Rewrite(self.to_text()));
        }
        let mut out = String::new();
        for l in &self.pending {
            out.push_str(l);
            out.push('\n');
        }
        Some(Change::Append(out))
    }

    /// The change returned by [`Ledger::change`] is on disk.
    pub fn written(&mut self, change: &Change) {
        match change {
            Change::Rewrite(_) => self.file_lines = self.holds.len(),
            Change::Append(_) => self.file_lines += self.pending.len(),
        }
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_reads_back_what_it_wrote() -> Result<(), String> {
        let mut l = Ledger::default();
        let mut file = String::new();
        let entry = rdeploy_specs::syntax::parse("{'f': 1.5, 'ip': '10.0.0.1', 'n': 2}")
            .and_then(|n| n.to_value())
            .map_err(|e| e.to_string())?;
        l.insert(
            "KVM-1-52-54-00-00-00-01",
            Hold {
                profile: "vm".into(),
                state_index: 1,
                counted: true,
                entry: Some((3, entry)),
            },
        );
        l.insert(
            "n\"2",
            Hold {
                profile: "flat".into(),
                state_index: 0,
                counted: false,
                entry: None,
            },
        );
        // Appended changes replay to the same holds as the whole file.
        let Some(Change::Append(a)) = l.change() else {
            return Err("a first change appends".into());
        };
        file.push_str(&a);
        l.written(&Change::Append(a));
        l.remove("n\"2");
        let Some(Change::Append(b)) = l.change() else {
            return Err("a small change appends".into());
        };
        file.push_str(&b);
        l.written(&Change::Append(b));
        assert_eq!(Ledger::parse(&file)?.holds, l.holds);
        assert_eq!(Ledger::parse(&l.to_text())?.holds, l.holds);
        assert_eq!(l.holds.len(), 1);
        assert!(Ledger::parse("{\"node\": \"x\", \"hold\": {\"profile\": \"a\", \"state_index\": 0, \"counted\": true, \"entry\": 1}}").is_err());
        assert!(valid_owner("a1-b_2") && !valid_owner("../x") && !valid_owner(""));
        Ok(())
    }
}
