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
    ///
    /// Every value read can be written back (`.hw` files, CMDB entries, node records) and
    /// read again by rdeploy and by Python; a value nested deeper than
    /// [`MAX_VALUE_DEPTH`] is refused at its position (a node record is JSON, which
    /// readers stop reading at 128 levels).
    pub fn parse(text: &str) -> Result<Inventory, Problems> {
        let node = syntax::parse(text).map_err(|e| Problems(vec![e.into()]))?;
        let lines = four_tuples(&node, "inventory", false)?;
        let deep: Vec<Problem> = node
            .seq()
            .into_iter()
            .flatten()
            .filter_map(Node::seq)
            .flatten()
            .filter(|e| depth(e) > MAX_VALUE_DEPTH)
            .map(|e| Problem {
                pos: e.pos,
                message: format!(
                    "this value is nested more than {MAX_VALUE_DEPTH} levels deep (lists, tuples and dicts inside each other)"
                ),
            })
            .collect();
        if !deep.is_empty() {
            return Err(Problems(deep));
        }
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

/// Most levels of lists, tuples and dicts inside one inventory value.
pub const MAX_VALUE_DEPTH: usize = 32;

/// How many levels of containers a node holds (a plain value: 0).
fn depth(node: &Node) -> usize {
    use crate::syntax::NodeKind;
    match &node.kind {
        NodeKind::Tuple(items) | NodeKind::List(items) => {
            1 + items.iter().map(depth).max().unwrap_or(0)
        }
        NodeKind::Dict(items) => {
            1 + items
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        NodeKind::Value(v) => value_depth(v),
        NodeKind::Call { .. } | NodeKind::Add(..) => 0,
    }
}

fn value_depth(v: &Value) -> usize {
    match v {
        Value::Tuple(items) | Value::List(items) => {
            1 + items.iter().map(value_depth).max().unwrap_or(0)
        }
        Value::Dict(items) => {
            1 + items
                .iter()
                .map(|(k, v)| value_depth(k).max(value_depth(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
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
    fn values_nested_too_deep_are_refused_where_they_are() {
        let ok = format!("[('a', 'b', 'c', {}1{})]", "[".repeat(32), "]".repeat(32));
        assert!(Inventory::parse(&ok).is_ok());
        let deep = format!(
            "[('a', 'b', 'c', 'd'),\n ('a', 'b', 'c', {}1{})]",
            "[".repeat(33),
            "]".repeat(33)
        );
        let err = Inventory::parse(&deep).unwrap_err();
        assert_eq!(err.0[0].pos, Pos { line: 2, col: 18 }, "{err}");
        assert!(err.0[0].message.contains("nested more than 32"), "{err}");
        let json = format!(
            r#"[["a", "b", "c", {}1{}]]"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(Inventory::parse(&json).is_err());
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
