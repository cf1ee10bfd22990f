//! The `state` file: the ordered list of `(profile, quota)` pairs.
//!
//! ```text
//! [('hp', 4), ('vm', '*')]
//! ```
//!
//! A quota is the number of installs left (counted down on each match, skipped at 0 or
//! below) or `'*'` (never counted). eDeploy accepted any value Python's `int()` takes
//! (`'2'`, `2.0`); such a value is rewritten as a plain integer when it changes.

use rdeploy_specs::syntax::{self, Pos};
use rdeploy_specs::{Problem, Problems, Value};
use std::fmt;

/// Installs left for a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    Unlimited,
    Left(i64),
}

impl Quota {
    /// Whether the profile may be tried (`'*'` or more than zero left).
    pub fn available(self) -> bool {
        match self {
            Quota::Unlimited => true,
            Quota::Left(n) => n > 0,
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quota::Unlimited => f.write_str("*"),
            Quota::Left(n) => write!(f, "{n}"),
        }
    }
}

/// One line of `state`.
#[derive(Clone, Debug, PartialEq)]
pub struct StateEntry {
    pub profile: String,
    pub quota: Quota,
    /// The quota as written, kept so untouched entries are written back unchanged.
    raw_quota: Value,
    pub pos: Pos,
}

impl StateEntry {
    pub fn new(profile: &str, quota: Quota) -> StateEntry {
        StateEntry {
            profile: profile.to_owned(),
            quota,
            raw_quota: quota_value(quota),
            pos: Pos::default(),
        }
    }

    fn set_quota(&mut self, quota: Quota) {
        self.quota = quota;
        self.raw_quota = quota_value(quota);
    }
}

fn quota_value(q: Quota) -> Value {
    match q {
        Quota::Unlimited => Value::from("*"),
        Quota::Left(n) => Value::Int(n),
    }
}

/// The whole `state` file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub entries: Vec<StateEntry>,
}

impl State {
    /// Reads a `state` file, reporting every bad entry.
    pub fn parse(text: &str) -> Result<State, Problems> {
        let node = syntax::parse(text).map_err(|e| Problems(vec![e.into()]))?;
        let Some(items) = node.seq() else {
            return Err(Problems(vec![Problem {
                pos: node.pos,
                message: format!(
                    "state must be a list of (profile, quota) pairs like [('hp', 4), ('vm', '*')], found {}",
                    node.describe()
                ),
            }]));
        };
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let pair = match item.seq() {
                Some(p) if p.len() == 2 => p,
                _ => {
                    problems.push(Problem {
                        pos: item.pos,
                        message: format!(
                            "entry {} must be a pair (profile, quota), found {}",
                            i + 1,
                            item.describe()
                        ),
                    });
                    continue;
                }
            };
            let name = match pair[0].to_value() {
                Ok(Value::Str(s)) => match check_profile_name(&s) {
                    Ok(()) => Some(s),
                    Err(why) => {
                        problems.push(Problem {
                            pos: pair[0].pos,
                            message: format!("entry {}: profile name '{s}' {why}", i + 1),
                        });
                        None
                    }
                },
                _ => {
                    problems.push(Problem {
                        pos: pair[0].pos,
                        message: format!(
                            "entry {}: the profile name must be a quoted string, found {}",
                            i + 1,
                            pair[0].describe()
                        ),
                    });
                    None
                }
            };
            let raw = pair[1].to_value();
            let quota = raw.as_ref().ok().and_then(parse_quota);
            match (name, quota, raw) {
                (Some(profile), Some(quota), Ok(raw_quota)) => entries.push(StateEntry {
                    profile,
                    quota,
                    raw_quota,
                    pos: item.pos,
                }),
                (_, None, _) => problems.push(Problem {
                    pos: pair[1].pos,
                    message: format!(
                        "entry {}: the quota must be a number of installs or '*', found {}",
                        i + 1,
                        pair[1].describe()
                    ),
                }),
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(State { entries })
        } else {
            Err(Problems(problems))
        }
    }

    /// The file text: one entry per line, readable by eDeploy.
    pub fn to_python(&self) -> String {
        let items: Vec<Value> = self
            .entries
            .iter()
            .map(|e| Value::Tuple(vec![Value::from(e.profile.as_str()), e.raw_quota.clone()]))
            .collect();
        syntax::to_python_lines(&items)
    }

    /// Counts one install of entry `index` (no change for `'*'`).
    pub fn decrement(&mut self, index: usize) {
        if let Some(e) = self.entries.get_mut(index) {
            if let Quota::Left(n) = e.quota {
                e.set_quota(Quota::Left(n - 1));
            }
        }
    }

    /// Gives back the install counted against entry `index` (the entry must still be
    /// `profile`'s; else the first entry of `profile`). Returns whether anything changed.
    pub fn give_back(&mut self, index: usize, profile: &str) -> bool {
        let i = match self.entries.get(index) {
            Some(e) if e.profile == profile => index,
            _ => match self.entries.iter().position(|e| e.profile == profile) {
                Some(i) => i,
                None => return false,
            },
        };
        match self.entries.get_mut(i).map(|e| (e.quota, e)) {
            Some((Quota::Left(n), e)) => {
                e.set_quota(Quota::Left(n + 1));
                true
            }
            _ => false,
        }
    }

    /// A failure report: gives one install back to the first entry of `profile`.
    /// Returns whether anything changed (`'*'` and unknown profiles change nothing).
    pub fn failed_profile(&mut self, profile: &str) -> bool {
        match self.entries.iter_mut().find(|e| e.profile == profile) {
            Some(e) => match e.quota {
                Quota::Left(n) => {
                    e.set_quota(Quota::Left(n + 1));
                    true
                }
                Quota::Unlimited => false,
            },
            None => false,
        }
    }
}

/// A profile name becomes a file name (`<name>.specs`): it must not leave the directory.
pub fn check_profile_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("is empty")
    } else if name.contains('/') || name.contains('\\') || name.contains('\0') {
        Err("must not contain '/' (it names files in the config dir)")
    } else if name.starts_with('.') {
        Err("must not start with '.'")
    } else {
        Ok(())
    }
}

/// A quota the way eDeploy read it: `'*'`, or what Python's `int()` accepts.
fn parse_quota(v: &Value) -> Option<Quota> {
    match v {
        Value::Str(s) if s == "*" => Some(Quota::Unlimited),
        Value::Str(s) => python_int(s).map(Quota::Left),
        Value::Int(i) => Some(Quota::Left(*i)),
        Value::Bool(b) => Some(Quota::Left(i64::from(*b))),
        Value::Float(f) if f.is_finite() => {
            #[allow(clippy::cast_possible_truncation)]
            let n = f.trunc() as i64;
            Some(Quota::Left(n))
        }
        _ => None,
    }
}

/// Python's `int(str)`: blanks around, optional sign, digits with single `_` between.
fn python_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body.is_empty()
        || body.starts_with('_')
        || body.ends_with('_')
        || body.contains("__")
        || !body.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    t.replace('_', "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quotas_like_edeploy() {
        let s = State::parse("[('hp', 4), ('vm', '*'), ('dell', '2'), ('old', 0)]").unwrap();
        let q: Vec<Quota> = s.entries.iter().map(|e| e.quota).collect();
        assert_eq!(
            q,
            vec![
                Quota::Left(4),
                Quota::Unlimited,
                Quota::Left(2),
                Quota::Left(0)
            ]
        );
        assert!(!Quota::Left(0).available());
        assert!(!Quota::Left(-1).available());
    }

    #[test]
    fn untouched_entries_are_written_back_as_they_were() {
        let mut s = State::parse("[('hp', 4), ('dell', '2'), ('vm', '*')]").unwrap();
        assert_eq!(
            s.to_python(),
            "[('hp', 4),\n ('dell', '2'),\n ('vm', '*')]\n"
        );
        s.decrement(1);
        s.decrement(2);
        assert_eq!(s.to_python(), "[('hp', 4),\n ('dell', 1),\n ('vm', '*')]\n");
    }

    #[test]
    fn failure_gives_one_back_to_the_first_entry() {
        let mut s = State::parse("[('hp', 0), ('hp', 3), ('vm', '*')]").unwrap();
        assert!(s.failed_profile("hp"));
        assert_eq!(s.entries[0].quota, Quota::Left(1));
        assert_eq!(s.entries[1].quota, Quota::Left(3));
        assert!(!s.failed_profile("vm"));
        assert!(!s.failed_profile("nope"));
    }

    #[test]
    fn bad_entries_are_all_reported() {
        let err =
            State::parse("[('hp', 'many'),\n ('../etc', 1),\n ('x',),\n (3, 1)]").unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        assert_eq!(err.0[0].pos.line, 1);
        assert!(err.0[0].message.contains("quota"), "{err}");
        assert!(err.0[1].message.contains("must not contain '/'"), "{err}");
        assert!(err.0[2].message.contains("pair"), "{err}");
        assert!(err.0[3].message.contains("quoted string"), "{err}");
    }

    #[test]
    fn python_int_rules() {
        assert_eq!(python_int(" 2 "), Some(2));
        assert_eq!(python_int("1_0"), Some(10));
        assert_eq!(python_int("-3"), Some(-3));
        assert_eq!(python_int("2.0"), None);
        assert_eq!(python_int("_1"), None);
    }
}
