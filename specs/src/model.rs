//! The inventory model (lists of 4-tuples) and specs files, read with every shape problem
//! reported at once.
//!
//! An inventory line is `(category, name, key, value)`, e.g.
//! `('disk', 'sda', 'size', '300')`. A specs file is a list of the same 4-tuples whose
//! elements may hold variables (`$disk`) and tests (`gt(100)`).

use crate::syntax::{self, Node, Pos, SyntaxError};
use crate::value::{to_python_lines, Value};
use std::fmt;

/// One inventory line.
pub type Line = [Value; 4];

/// A machine's hardware inventory, in the order the agent reported it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    pub lines: Vec<Line>,
}

/// One spec line with the place it was written.
#[derive(Clone, Debug)]
pub struct SpecLine {
    pub elems: Line,
    pub pos: Pos,
    /// Elements after the fourth (eDeploy ignores them; `rdeploy check` warns).
    pub extra: usize,
}

/// A problem found in a file, with its position. The caller adds the file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

impl From<SyntaxError> for Problem {
    fn from(e: SyntaxError) -> Problem {
        Problem {
            pos: e.pos,
            message: e.message,
        }
    }
}

/// All the problems of one file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Inventory {
    /// Reads an inventory: a Python-literal or JSON list of 4-element lists.
    pub fn parse(text: &str) -> Result<Inventory, Problems> {
        let node = syntax::parse(text).map_err(|e| Problems(vec![e.into()]))?;
        let lines = four_tuples(&node, "inventory", false)?;
        Ok(Inventory {
            lines: lines.into_iter().map(|s| s.elems).collect(),
        })
    }

    /// The inventory as the Python literal eDeploy stored (`.hw` files).
    pub fn to_python(&self) -> String {
        let items: Vec<Value> = self
            .lines
            .iter()
            .map(|l| Value::Tuple(l.to_vec()))
            .collect();
        to_python_lines(&items)
    }

    /// The inventory as JSON (a list of 4-element arrays).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.lines
                .iter()
                .map(|l| serde_json::Value::Array(l.iter().map(Value::to_json).collect()))
                .collect(),
        )
    }

    /// The value of the first line `(category, name, key, _)`, if any.
    pub fn get(&self, category: &str, name: &str, key: &str) -> Option<&Value> {
        self.lines
            .iter()
            .find(|l| {
                l[0].as_str() == Some(category)
                    && l[1].as_str() == Some(name)
                    && l[2].as_str() == Some(key)
            })
            .map(|l| &l[3])
    }
}

/// Reads a specs file: a list of 4-tuples.
pub fn parse_specs(text: &str) -> Result<Vec<SpecLine>, Problems> {
    let node = syntax::parse(text).map_err(|e| Problems(vec![e.into()]))?;
    four_tuples(&node, "specs file", true)
}

fn four_tuples(node: &Node, what: &str, allow_longer: bool) -> Result<Vec<SpecLine>, Problems> {
    let Some(items) = node.seq() else {
        return Err(Problems(vec![Problem {
            pos: node.pos,
            message: format!(
                "a {what} must be a list of 4-tuples like ('disk', 'sda', 'size', '100'), found {}",
                node.describe()
            ),
        }]));
    };
    let mut out = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item.seq() {
            Some(elems) if elems.len() == 4 || (allow_longer && elems.len() > 4) => {
                let extra = elems.len() - 4;
                let mut values = Vec::with_capacity(4);
                for e in &elems[..4] {
                    match e.to_value() {
                        Ok(v) => values.push(v),
                        Err(err) => problems.push(err.into()),
                    }
                }
                if let Ok(elems) = <[Value; 4]>::try_from(values) {
                    out.push(SpecLine {
                        elems,
                        pos: item.pos,
                        extra,
                    });
                }
            }
            _ => problems.push(Problem {
                pos: item.pos,
                message: format!(
                    "entry {} must be a 4-tuple (category, name, key, value), found {}",
                    index + 1,
                    item.describe()
                ),
            }),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inventories_in_both_syntaxes() {
        let py =
            Inventory::parse("[('disk', 'sda', 'size', '100'), ('ipmi', 'lan', 'channel', 2)]")
                .unwrap();
        let js =
            Inventory::parse(r#"[["disk", "sda", "size", "100"], ["ipmi", "lan", "channel", 2]]"#)
                .unwrap();
        assert_eq!(py, js);
        assert_eq!(py.get("ipmi", "lan", "channel"), Some(&Value::Int(2)));
    }

    #[test]
    fn every_bad_entry_is_reported_with_its_position() {
        let text = "[\n ('disk', 'sda', 'size'),\n ('disk', 'sda', 'size', '1'),\n 'oops',\n]";
        let err = parse_specs(text).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert_eq!(err.0[0].pos, Pos { line: 2, col: 2 });
        assert!(
            err.0[0].message.contains("entry 1 must be a 4-tuple"),
            "{err}"
        );
        assert!(err.0[0].message.contains("3-tuple"), "{err}");
        assert_eq!(err.0[1].pos, Pos { line: 4, col: 2 });
    }

    #[test]
    fn writes_hw_files_edeploy_reads() {
        let inv = Inventory::parse(r#"[["a", "b", "c", "d"], ["x", "y", "z", 1]]"#).unwrap();
        assert_eq!(
            inv.to_python(),
            "[('a', 'b', 'c', 'd'),\n ('x', 'y', 'z', 1)]\n"
        );
        assert_eq!(Inventory::parse(&inv.to_python()).unwrap(), inv);
    }
}
