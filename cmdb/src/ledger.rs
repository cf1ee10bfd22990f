//! Who holds which allocation: the install each machine has under way (its profile, the
//! `state` entry it counted against, the CMDB entry it got and what that entry was before),
//! kept as a hidden file of the config dir (`.rdeploy-holds-<owner>.json`) and written in the
//! same journaled commit as `state` and the CMDB.
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

/// Every hold of one owner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    pub holds: BTreeMap<String, Hold>,
}

/// The file's JSON shape (the entry as a Python literal, read back with the CMDB's reader).
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

impl Ledger {
    /// Reads a ledger file; every problem says which node.
    pub fn parse(text: &str) -> Result<Ledger, String> {
        let raw: BTreeMap<String, HoldJson> =
            serde_json::from_str(text).map_err(|e| format!("not a ledger: {e}"))?;
        let mut holds = BTreeMap::new();
        for (node, h) in raw {
            let entry = match (h.entry, h.original) {
                (Some(i), Some(text)) => {
                    let value = rdeploy_specs::syntax::parse(&text)
                        .and_then(|n| n.to_value())
                        .map_err(|e| format!("node {node}: entry {i}: {e}"))?;
                    Some((i, value))
                }
                (None, None) => None,
                _ => return Err(format!("node {node}: entry and original go together")),
            };
            holds.insert(
                node,
                Hold {
                    profile: h.profile,
                    state_index: h.state_index,
                    counted: h.counted,
                    entry,
                },
            );
        }
        Ok(Ledger { holds })
    }

    /// The file text (one node per line).
    pub fn to_text(&self) -> String {
        let mut out = String::from("{");
        for (i, (node, h)) in self.holds.iter().enumerate() {
            let json = HoldJson {
                profile: h.profile.clone(),
                state_index: h.state_index,
                counted: h.counted,
                entry: h.entry.as_ref().map(|(i, _)| *i),
                original: h
                    .entry
                    .as_ref()
                    .map(|(_, v)| rdeploy_specs::syntax::to_python(v)),
            };
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            out.push_str(&serde_json::to_string(node).unwrap_or_default());
            out.push_str(": ");
            out.push_str(&serde_json::to_string(&json).unwrap_or_default());
        }
        out.push_str("\n}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_reads_back_what_it_wrote() -> Result<(), String> {
        let mut l = Ledger::default();
        let entry = rdeploy_specs::syntax::parse("{'ip': '10.0.0.1', 'n': 2, 'f': 1.5}")
            .and_then(|n| n.to_value())
            .map_err(|e| e.to_string())?;
        l.holds.insert(
            "KVM-1-52-54-00-00-00-01".into(),
            Hold {
                profile: "vm".into(),
                state_index: 1,
                counted: true,
                entry: Some((3, entry)),
            },
        );
        l.holds.insert(
            "n\"2".into(),
            Hold {
                profile: "flat".into(),
                state_index: 0,
                counted: false,
                entry: None,
            },
        );
        let back = Ledger::parse(&l.to_text())?;
        assert_eq!(back, l);
        assert!(Ledger::parse(
            "{\"x\": {\"profile\": \"a\", \"state_index\": 0, \"counted\": true, \"entry\": 1}}"
        )
        .is_err());
        assert!(valid_owner("a1-b_2") && !valid_owner("../x") && !valid_owner(""));
        Ok(())
    }
}
