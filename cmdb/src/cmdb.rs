//! A profile's CMDB (`<profile>.cmdb`): the settings handed out to matched machines, and
//! eDeploy's allocation rules.
//!
//! The file is a list of dicts, or `generate({...})` that expands to one (see
//! [`crate::generate`]). Allocation:
//!
//! - the lookup keys are the `$$` variables when the specs bound any (*forced*: no entry
//!   found is an error), else every bound variable (so a machine that comes back finds
//!   the entry it was given; a profile that binds nothing always gets entry 0);
//! - the first entry holding every lookup key with an equal value is reused, even if used;
//! - else the first entry without a `used` key is taken (`'used': 0` counts as used);
//! - the chosen entry becomes entry ∪ variables (variables win) plus `'used': 1`, and the
//!   variables handed to the configure script are that same dict.

use crate::generate::{self, GenerateError};
use rdeploy_specs::syntax::{self, Node, NodeKind, SyntaxError};
use rdeploy_specs::{Value, Vars};

/// The entries of a CMDB file, and whether it was written as a `generate()` model.
#[derive(Clone, Debug, PartialEq)]
pub struct Cmdb {
    pub entries: Vec<Value>,
    /// The file held `generate(...)`: saving it keeps the original as `.orig`.
    pub generated: bool,
}

/// Why a CMDB file cannot be used.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CmdbError {
    #[error("{0}")]
    Syntax(#[from] SyntaxError),
    #[error("{pos}: {source}")]
    Generate {
        pos: rdeploy_specs::Pos,
        #[source]
        source: GenerateError,
    },
    #[error("{pos}: a CMDB must be a list of dicts or generate({{...}}), found {found}")]
    Shape {
        pos: rdeploy_specs::Pos,
        found: String,
    },
    #[error("entry {index} is {found}, not a dict")]
    NotADict { index: usize, found: String },
}

/// What reading a CMDB file gives: eDeploy treats a missing, unparsable or empty CMDB as
/// "no CMDB" (matched machines get only their bound variables).
#[derive(Debug)]
pub enum Loaded {
    Present(Cmdb),
    /// No file, or `[]`.
    Absent,
    /// The file does not parse: eDeploy ignores it (a quirk kept; `rdeploy check` reports it).
    Unusable(CmdbError),
}

impl Cmdb {
    /// Reads CMDB text. `Ok(None)` for an empty list.
    pub fn parse(text: &str) -> Result<Option<Cmdb>, CmdbError> {
        let node = syntax::parse(text)?;
        let generated = contains_call(&node);
        let entries = if generated {
            generate::expand_cmdb(&node).map_err(|source| CmdbError::Generate {
                pos: node.pos,
                source,
            })?
        } else {
            match node.to_value()? {
                Value::List(items) | Value::Tuple(items) => items,
                _ => {
                    return Err(CmdbError::Shape {
                        pos: node.pos,
                        found: node.describe(),
                    })
                }
            }
        };
        for (i, e) in entries.iter().enumerate() {
            if !matches!(e, Value::Dict(_)) {
                return Err(CmdbError::NotADict {
                    index: i + 1,
                    found: e.to_string(),
                });
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let mut entries = entries;
        if generated {
            // eDeploy saved the expansion with pprint (keys sorted) before using it: the
            // entries are what reading that file back gives.
            for e in &mut entries {
                if let Value::Dict(items) = e {
                    if items.iter().all(|(k, _)| k.as_str().is_some()) {
                        items.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
                    }
                }
            }
        }
        Ok(Some(Cmdb { entries, generated }))
    }

    /// Reads CMDB text with eDeploy's tolerance (see [`Loaded`]).
    pub fn load(text: Option<&str>) -> Loaded {
        match text {
            None => Loaded::Absent,
            Some(t) => match Cmdb::parse(t) {
                Ok(Some(c)) => Loaded::Present(c),
                Ok(None) => Loaded::Absent,
                Err(e) => Loaded::Unusable(e),
            },
        }
    }

    /// The file text: the expanded list, one entry per line, keys sorted like `pprint`.
    pub fn to_python(&self) -> String {
        syntax::to_python_lines(&self.entries)
    }

    /// How many entries are marked used.
    pub fn used(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.dict_get("used").is_some())
            .count()
    }
}

fn contains_call(node: &Node) -> bool {
    match &node.kind {
        NodeKind::Call { .. } => true,
        NodeKind::Add(a, b) => contains_call(a) || contains_call(b),
        _ => false,
    }
}

/// Why no entry could be given.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AllocError {
    #[error("no more entry in the CMDB ({total} entries, all used)")]
    Exhausted { total: usize },
    #[error("no entry matched in the CMDB for the $$ keys {keys}")]
    NoForcedEntry { keys: String },
}

/// The entry chosen for a machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Allocated {
    /// Index of the entry in the CMDB.
    pub index: usize,
    /// The new content of the entry, which is also the machine's variables.
    pub vars: Vars,
    /// The entry was already used by this machine (or one with the same keys).
    pub reused: bool,
}

/// eDeploy's `update_cmdb`: picks the entry for `vars` (pure; apply with [`Cmdb::apply`]).
pub fn allocate(entries: &[Value], vars: &Vars, forced: &Vars) -> Result<Allocated, AllocError> {
    let lookup = if forced.is_empty() { vars } else { forced };
    let found = entries.iter().position(|e| is_included(lookup, e));
    let (index, reused) = match found {
        Some(i) => (i, true),
        None if !forced.is_empty() => {
            return Err(AllocError::NoForcedEntry {
                keys: forced.to_json().to_string(),
            })
        }
        None => match entries.iter().position(|e| e.dict_get("used").is_none()) {
            Some(i) => (i, false),
            None => {
                return Err(AllocError::Exhausted {
                    total: entries.len(),
                })
            }
        },
    };
    Ok(Allocated {
        index,
        vars: merge(&entries[index], vars),
        reused,
    })
}

/// `entry.update(var); var.update(entry); var['used'] = 1`, keeping Python's key order:
/// the variables first, then the entry's other keys, then `used`.
fn merge(entry: &Value, vars: &Vars) -> Vars {
    let mut out = vars.clone();
    if let Value::Dict(items) = entry {
        for (k, v) in items {
            let key = match k {
                Value::Str(s) => s.clone(),
                other => other.to_string(),
            };
            if out.get(&key).is_none() {
                out.set(&key, v.clone());
            }
        }
    }
    out.set("used", Value::Int(1));
    out
}

/// Whether every lookup key is in the entry with an equal value.
fn is_included(lookup: &Vars, entry: &Value) -> bool {
    lookup
        .iter()
        .all(|(k, v)| entry.dict_get(k).is_some_and(|ev| ev == v))
}

impl Cmdb {
    /// Stores an allocation in the entries.
    pub fn apply(&mut self, a: &Allocated) {
        if let Some(slot) = self.entries.get_mut(a.index) {
            *slot = a.vars.to_value();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, Value)]) -> Vars {
        let mut v = Vars::default();
        for (k, val) in pairs {
            v.set(k, val.clone());
        }
        v
    }

    fn cmdb(text: &str) -> Cmdb {
        Cmdb::parse(text).unwrap().unwrap()
    }

    #[test]
    fn first_unused_entry_is_taken_and_merged() {
        let c = cmdb("[{'ip': '10.0.0.1', 'used': 1}, {'ip': '10.0.0.2'}, {'ip': '10.0.0.3'}]");
        let a = allocate(
            &c.entries,
            &vars(&[("disk", "sda".into())]),
            &Vars::default(),
        )
        .unwrap();
        assert_eq!(a.index, 1);
        assert!(!a.reused);
        assert_eq!(
            a.vars.to_json().to_string(),
            r#"{"disk":"sda","ip":"10.0.0.2","used":1}"#
        );
    }

    #[test]
    fn a_machine_that_comes_back_gets_its_entry() {
        let mut c = cmdb("[{'ip': '10.0.0.1'}, {'ip': '10.0.0.2'}]");
        let v = vars(&[("serial", "ABC".into())]);
        let a = allocate(&c.entries, &v, &Vars::default()).unwrap();
        c.apply(&a);
        let again = allocate(&c.entries, &v, &Vars::default()).unwrap();
        assert_eq!(again.index, 0);
        assert!(again.reused);
        let other = allocate(
            &c.entries,
            &vars(&[("serial", "XYZ".into())]),
            &Vars::default(),
        )
        .unwrap();
        assert_eq!(other.index, 1);
    }

    #[test]
    fn no_variables_always_gets_entry_zero() {
        let c = cmdb("[{'ip': '10.0.0.1', 'used': 1}, {'ip': '10.0.0.2'}]");
        let a = allocate(&c.entries, &Vars::default(), &Vars::default()).unwrap();
        assert_eq!(a.index, 0);
    }

    #[test]
    fn used_zero_counts_as_used() {
        let c = cmdb("[{'ip': '1', 'used': 0}, {'ip': '2'}]");
        let a = allocate(&c.entries, &vars(&[("x", "y".into())]), &Vars::default()).unwrap();
        assert_eq!(a.index, 1);
    }

    #[test]
    fn forced_keys_select_or_fail() {
        let c = cmdb("[{'mac': 'aa', 'ip': '1'}, {'mac': 'bb', 'ip': '2'}]");
        let forced = vars(&[("mac", "bb".into())]);
        let v = vars(&[("mac", "bb".into()), ("disk", "sda".into())]);
        assert_eq!(allocate(&c.entries, &v, &forced).unwrap().index, 1);
        let missing = vars(&[("mac", "cc".into())]);
        assert!(matches!(
            allocate(&c.entries, &missing, &missing),
            Err(AllocError::NoForcedEntry { .. })
        ));
    }

    #[test]
    fn exhausted() {
        let c = cmdb("[{'ip': '1', 'used': 1}]");
        assert_eq!(
            allocate(&c.entries, &vars(&[("x", "y".into())]), &Vars::default()),
            Err(AllocError::Exhausted { total: 1 })
        );
    }

    #[test]
    fn int_values_compare_like_python() {
        let c = cmdb("[{'channel': 2, 'ip': '1'}]");
        let v = vars(&[("channel", Value::Int(2))]);
        assert!(allocate(&c.entries, &v, &Vars::default()).unwrap().reused);
        let s = vars(&[("channel", "2".into())]);
        assert!(!allocate(&c.entries, &s, &Vars::default()).unwrap().reused);
    }

    #[test]
    fn empty_missing_and_broken_files() {
        assert!(matches!(Cmdb::load(None), Loaded::Absent));
        assert!(matches!(Cmdb::load(Some("[]")), Loaded::Absent));
        assert!(matches!(Cmdb::load(Some("[{'a': 1}")), Loaded::Unusable(_)));
        assert!(matches!(
            Cmdb::load(Some("['x']")),
            Loaded::Unusable(CmdbError::NotADict { .. })
        ));
    }

    #[test]
    fn writes_one_entry_per_line_with_sorted_keys() {
        let c = cmdb("[{'ip': '10.0.0.1', 'hostname': 'a'}, {'ip': '10.0.0.2', 'hostname': 'b'}]");
        assert_eq!(
            c.to_python(),
            "[{'hostname': 'a', 'ip': '10.0.0.1'},\n {'hostname': 'b', 'ip': '10.0.0.2'}]\n"
        );
    }
}
