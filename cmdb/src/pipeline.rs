//! eDeploy's `find_match`: from an inventory to a profile, its variables and its CMDB
//! entry, with quotas — as a pure function over loaded files.
//!
//! Profiles are tried in `state` order (a profile listed twice counts separately); a
//! profile whose quota is used up is skipped; a missing or broken `.specs` never matches
//! but counts as available. The first matching profile wins. Its CMDB (if it has one)
//! gives an entry; when it cannot, the upload fails with that error and later profiles
//! are *not* tried. Nothing changes unless everything succeeded: [`find_match`] only
//! plans, [`Plan::apply`] changes the loaded state and CMDB. Matching has one budget for
//! the whole upload; an upload that spends it is refused, naming the profile and spec
//! line it was matching.

use crate::cmdb::{allocate, AllocError, Allocated, Cmdb, CmdbError, Loaded};
use crate::state::State;
use rdeploy_specs::matcher::{
    display_line, explain_spec, match_all_with_budget, MatchResult, NoMatch, DEFAULT_STEP_BUDGET,
};
use rdeploy_specs::{Inventory, Specs, Vars};
use std::fmt;
use std::sync::Arc;

/// Where `find_match` gets a profile's files (the store reads them from the config dir;
/// tests and the server's cache hand them in from memory).
pub trait ProfileSource {
    /// The compiled specs, or why there are none (missing file, syntax error).
    fn specs(&mut self, profile: &str) -> Result<Arc<Specs>, String>;
    /// The CMDB with eDeploy's tolerance: missing, empty or unparsable is "no CMDB".
    fn cmdb(&mut self, profile: &str) -> Result<Option<&Cmdb>, CmdbError>;
    /// Matches the inventory against a profile's specs within `budget` steps. A source may
    /// answer from a match made earlier with the same specs (the server matches before
    /// the writer's turn, see `snapshot::Prematch`).
    fn match_specs(
        &mut self,
        _profile: &str,
        specs: &Arc<Specs>,
        inventory: &Inventory,
        budget: u64,
    ) -> MatchResult {
        match_all_with_budget(inventory, specs, budget)
    }
}

/// What an upload gets.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub profile: String,
    /// Index of the `state` entry that matched.
    pub state_index: usize,
    /// The variables handed to the configure script (CMDB fields and `used` included when
    /// the profile has a CMDB).
    pub vars: Vars,
    /// The `$$` variables (CMDB lookup keys).
    pub forced: Vars,
    /// The CMDB entry given, if the profile has a CMDB.
    pub cmdb: Option<Allocated>,
}

impl Plan {
    /// Counts the install and stores the CMDB entry.
    pub fn apply(&self, state: &mut State, cmdb: Option<&mut Cmdb>) {
        state.decrement(self.state_index);
        if let (Some(c), Some(a)) = (cmdb, &self.cmdb) {
            c.apply(a);
        }
    }
}

/// Why a profile was passed over.
#[derive(Clone, Debug, PartialEq)]
pub enum Skip {
    /// Its quota is used up.
    Quota { left: i64 },
    /// Its specs cannot be read.
    Specs(String),
    /// Spec line `index` (0-based) could not be satisfied.
    Spec {
        index: usize,
        spec: String,
        line: u32,
        why: Vec<String>,
    },
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Quota { left } => write!(f, "quota used up ({left} left)"),
            Skip::Specs(e) => write!(f, "specs unusable: {e}"),
            Skip::Spec {
                index,
                spec,
                line,
                why,
            } => {
                write!(f, "spec #{} {spec}", index + 1)?;
                if *line > 0 {
                    write!(f, " (line {line})")?;
                }
                write!(f, " not satisfied")?;
                if let Some(first) = why.first() {
                    write!(f, ": {first}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why an upload got nothing.
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    /// Every profile's quota is used up.
    #[error("no more role available: every profile's quota is used up")]
    NoMoreRole { tried: Vec<(String, Skip)> },
    /// No available profile matched.
    #[error("unable to match requirements on the available roles: {}", available(.tried))]
    UnableToMatch { tried: Vec<(String, Skip)> },
    /// The matched profile's CMDB could not give an entry (later profiles not tried).
    #[error(
        "profile '{profile}' matched but its CMDB ({profile}.cmdb) cannot give an entry: {source}"
    )]
    Cmdb {
        profile: String,
        #[source]
        source: AllocError,
        tried: Vec<(String, Skip)>,
    },
    /// The matched profile's CMDB file could not be expanded.
    #[error("profile '{profile}' matched but {profile}.cmdb is unusable: {source}")]
    CmdbFile {
        profile: String,
        #[source]
        source: CmdbError,
    },
    /// Matching spent the upload's whole budget (a search that backtracks too much, or a
    /// regular expression too costly on this inventory): the upload is refused.
    #[error(
        "matching this inventory spent its budget of {budget} steps on profile '{profile}', spec #{} {spec}{}: refused (the specs backtrack too much for this inventory, or a regular expression is too costly on it)",
        .index + 1,
        if *.line > 0 { format!(" (line {})", .line) } else { String::new() }
    )]
    TooCostly {
        profile: String,
        /// The spec being matched (0-based).
        index: usize,
        spec: String,
        line: u32,
        budget: u64,
        tried: Vec<(String, Skip)>,
    },
}

fn available(tried: &[(String, Skip)]) -> String {
    let names: Vec<&str> = tried
        .iter()
        .filter(|(_, s)| !matches!(s, Skip::Quota { .. }))
        .map(|(n, _)| n.as_str())
        .collect();
    names.join(", ")
}

impl MatchError {
    /// Each profile tried, and why it was passed over.
    pub fn tried(&self) -> &[(String, Skip)] {
        match self {
            MatchError::NoMoreRole { tried }
            | MatchError::UnableToMatch { tried }
            | MatchError::Cmdb { tried, .. }
            | MatchError::TooCostly { tried, .. } => tried,
            MatchError::CmdbFile { .. } => &[],
        }
    }

    /// A multi-line explanation: one line per profile.
    pub fn explain(&self) -> String {
        let mut out = self.to_string();
        for (name, why) in self.tried() {
            out.push_str(&format!("\n  {name}: {why}"));
        }
        out
    }
}

/// eDeploy's `State.find_match`, planned without changing anything, within
/// [`DEFAULT_STEP_BUDGET`] matching steps for the whole upload.
pub fn find_match(
    state: &State,
    inventory: &Inventory,
    source: &mut dyn ProfileSource,
) -> Result<Plan, MatchError> {
    find_match_with_budget(state, inventory, source, DEFAULT_STEP_BUDGET)
}

/// [`find_match`] with `budget` matching steps for the whole upload (every profile tried
/// takes its share); an upload that spends it is refused ([`MatchError::TooCostly`]).
pub fn find_match_with_budget(
    state: &State,
    inventory: &Inventory,
    source: &mut dyn ProfileSource,
    budget: u64,
) -> Result<Plan, MatchError> {
    let mut left = budget;
    let mut tried = Vec::new();
    let mut any_available = false;
    for (index, entry) in state.entries.iter().enumerate() {
        if !entry.quota.available() {
            let left = match entry.quota {
                crate::state::Quota::Left(n) => n,
                crate::state::Quota::Unlimited => 0,
            };
            tried.push((entry.profile.clone(), Skip::Quota { left }));
            continue;
        }
        any_available = true;
        let specs = match source.specs(&entry.profile) {
            Ok(s) => s,
            Err(e) => {
                tried.push((entry.profile.clone(), Skip::Specs(e)));
                continue;
            }
        };
        let result = source.match_specs(&entry.profile, &specs, inventory, left);
        left = left.saturating_sub(result.steps);
        let vars = match result.outcome {
            Ok(v) => v,
            Err(NoMatch::Spec { index }) => {
                tried.push((entry.profile.clone(), spec_skip(inventory, &specs, index)));
                continue;
            }
            Err(NoMatch::GaveUp { spec, .. }) => {
                return Err(too_costly(&entry.profile, &specs, spec, budget, tried));
            }
        };
        let forced = result.forced;
        let cmdb = match source.cmdb(&entry.profile) {
            Ok(c) => c,
            Err(source) => {
                return Err(MatchError::CmdbFile {
                    profile: entry.profile.clone(),
                    source,
                })
            }
        };
        let (vars, allocated) = match cmdb {
            None => (vars, None),
            Some(c) => match allocate(&c.entries, &vars, &forced) {
                Ok(a) => (a.vars.clone(), Some(a)),
                Err(source) => {
                    return Err(MatchError::Cmdb {
                        profile: entry.profile.clone(),
                        source,
                        tried,
                    })
                }
            },
        };
        return Ok(Plan {
            profile: entry.profile.clone(),
            state_index: index,
            vars,
            forced,
            cmdb: allocated,
        });
    }
    if any_available {
        Err(MatchError::UnableToMatch { tried })
    } else {
        Err(MatchError::NoMoreRole { tried })
    }
}

/// Why a profile whose spec `index` matched no line was passed over.
pub fn spec_skip(inventory: &Inventory, specs: &Specs, index: usize) -> Skip {
    let line = specs.lines().get(index);
    Skip::Spec {
        index,
        spec: line.map(|l| display_line(&l.elems)).unwrap_or_default(),
        line: line.map_or(0, |l| l.pos.line),
        why: explain_spec(inventory, specs, index, 3),
    }
}

/// The refusal of an upload whose matching spent `budget` on spec `index` of `profile`.
pub fn too_costly(
    profile: &str,
    specs: &Specs,
    index: usize,
    budget: u64,
    tried: Vec<(String, Skip)>,
) -> MatchError {
    let line = specs.lines().get(index);
    MatchError::TooCostly {
        profile: profile.to_owned(),
        index,
        spec: line.map(|l| display_line(&l.elems)).unwrap_or_default(),
        line: line.map_or(0, |l| l.pos.line),
        budget,
        tried,
    }
}

/// A [`ProfileSource`] over files already in memory (tests, the server's cache).
#[derive(Debug, Default)]
pub struct MemorySource {
    pub specs: std::collections::HashMap<String, Result<Arc<Specs>, String>>,
    pub cmdbs: std::collections::HashMap<String, Cmdb>,
}

impl MemorySource {
    /// Adds a profile from file texts (`None` for a missing file).
    pub fn add(&mut self, profile: &str, specs: Option<&str>, cmdb: Option<&str>) {
        let compiled = match specs {
            None => Err(format!("{profile}.specs not found")),
            Some(t) => rdeploy_specs::model::parse_specs(t)
                .map(|l| Arc::new(Specs::compile(l)))
                .map_err(|e| format!("{profile}.specs: {e}")),
        };
        self.specs.insert(profile.to_owned(), compiled);
        if let Loaded::Present(c) = Cmdb::load(cmdb) {
            self.cmdbs.insert(profile.to_owned(), c);
        }
    }
}

impl ProfileSource for MemorySource {
    fn specs(&mut self, profile: &str) -> Result<Arc<Specs>, String> {
        self.specs
            .get(profile)
            .cloned()
            .unwrap_or_else(|| Err(format!("{profile}.specs not found")))
    }

    fn cmdb(&mut self, profile: &str) -> Result<Option<&Cmdb>, CmdbError> {
        Ok(self.cmdbs.get(profile))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HW: &str = "[('disk', 'sda', 'size', '100'), ('network', 'eth0', 'serial', 'aa:bb')]";

    fn source() -> MemorySource {
        let mut s = MemorySource::default();
        s.add("big", Some("[('disk', '$disk', 'size', 'gt(200)')]"), None);
        s.add(
            "small",
            Some("[('disk', '$disk', 'size', 'le(200)'), ('network', '$eth', 'serial', '$$mac')]"),
            Some("[{'mac': 'aa:bb', 'ip': '10.0.0.5'}, {'mac': 'cc', 'ip': '10.0.0.6'}]"),
        );
        s.add(
            "vm",
            Some("[('disk', '$disk', 'size', '$size')]"),
            Some("[{'ip': '1'}]"),
        );
        s
    }

    #[test]
    fn first_matching_profile_wins_and_forced_key_selects_entry() {
        let state = State::parse("[('big', 1), ('small', 2), ('vm', '*')]").unwrap();
        let inv = Inventory::parse(HW).unwrap();
        let mut src = source();
        let plan = find_match(&state, &inv, &mut src).unwrap();
        assert_eq!(plan.profile, "small");
        assert_eq!(plan.state_index, 1);
        assert_eq!(
            plan.vars.to_json().to_string(),
            r#"{"disk":"sda","eth":"eth0","mac":"aa:bb","ip":"10.0.0.5","used":1}"#
        );
        let mut state2 = state.clone();
        let mut cmdb = src.cmdbs["small"].clone();
        plan.apply(&mut state2, Some(&mut cmdb));
        assert_eq!(
            state2.to_python(),
            "[('big', 1),\n ('small', 1),\n ('vm', '*')]\n"
        );
        assert_eq!(cmdb.used(), 1);
    }

    #[test]
    fn exhausted_quotas_say_so() {
        let state = State::parse("[('small', 0), ('vm', 0)]").unwrap();
        let inv = Inventory::parse(HW).unwrap();
        let err = find_match(&state, &inv, &mut source()).unwrap_err();
        assert!(matches!(err, MatchError::NoMoreRole { .. }), "{err}");
    }

    #[test]
    fn no_match_explains_each_profile() {
        let state = State::parse("[('big', 1), ('missing', 1), ('done', 0)]").unwrap();
        let inv = Inventory::parse(HW).unwrap();
        let err = find_match(&state, &inv, &mut source()).unwrap_err();
        let text = err.explain();
        assert!(text.contains("unable to match"), "{text}");
        assert!(text.contains("big: spec #1 ('disk', '$disk', 'size', 'gt(200)') (line 1) not satisfied: line ('disk', 'sda', 'size', '100'): gt(200) is false for '100'"), "{text}");
        assert!(
            text.contains("missing: specs unusable: missing.specs not found"),
            "{text}"
        );
        assert!(text.contains("done: quota used up"), "{text}");
    }

    #[test]
    fn an_upload_that_spends_the_budget_is_refused_at_its_spec() {
        // Issue 11: a backtracking pattern tried on many lines; later profiles are not tried.
        let mut src = source();
        src.add(
            "bench",
            Some("[('disk', '$disk', 'size', '$s'),\n ('bench', '$b', 'score', 'regexp(^(\\\\w+\\\\s?)*\\\\1$)')]"),
            None,
        );
        let mut hw = vec!["('disk', 'sda', 'size', '100')".to_owned()];
        for i in 0..200 {
            hw.push(format!(
                "('bench', 'b{i}', 'score', 'aaaa aaaa aaaa aaaa aaaa aaaa!')"
            ));
        }
        let inv = Inventory::parse(&format!("[{}]", hw.join(", "))).unwrap();
        let state = State::parse("[('big', 1), ('bench', 1), ('vm', '*')]").unwrap();
        let err = find_match_with_budget(&state, &inv, &mut src, 40_000_000).unwrap_err();
        let MatchError::TooCostly {
            profile,
            index,
            line,
            tried,
            ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!((profile.as_str(), *index, *line), ("bench", 1, 2));
        assert_eq!(tried.len(), 1, "big was tried before: {tried:?}");
        let text = err.to_string();
        assert!(
            text.contains("profile 'bench', spec #2 ('bench', '$b', 'score'"),
            "{text}"
        );
        assert!(text.contains("(line 2)"), "{text}");
    }

    #[test]
    fn cmdb_error_stops_at_the_matched_profile() {
        let mut src = MemorySource::default();
        src.add(
            "a",
            Some("[('disk', '$disk', 'size', '$s')]"),
            Some("[{'ip': '1', 'used': 1}]"),
        );
        src.add("b", Some("[('disk', '$disk', 'size', '$s')]"), None);
        let state = State::parse("[('a', 5), ('b', '*')]").unwrap();
        let inv = Inventory::parse(HW).unwrap();
        let err = find_match(&state, &inv, &mut src).unwrap_err();
        assert!(
            matches!(&err, MatchError::Cmdb { profile, source: AllocError::Exhausted { total: 1 }, .. } if profile == "a"),
            "{err}"
        );
    }
}
