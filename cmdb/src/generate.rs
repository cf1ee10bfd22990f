//! eDeploy's `generate()`: expands a model dict with ranges into a list of dicts.
//!
//! A CMDB file may be written as `generate({'hostname': 'node1-10', 'ip': '10.0.0.1-10'})`.
//! This module gives the list eDeploy's `hardware.generate.generate()` (PyPI `hardware`
//! 0.33) gives for the same model, rules and corner cases included:
//!
//! - A model whose values are all strings without a `digits-digits` range is the result on
//!   its own: `[model]` (so `{}` gives `[{}]`).
//! - Otherwise every value becomes a sequence and entry *i* takes the *i*-th element of each;
//!   the result stops with the shortest sequence. A string without a range stays the same; a
//!   string with a range yields `head + number + foot` for its *first* range only
//!   (`rack1-2-node1-3` gives `rack1-node1-3`, `rack2-node1-3`); a string made of digits,
//!   `.`, `-` and `:` with exactly three dots is an IPv4 range, the cartesian product of its
//!   four parts, first part slowest, with no 0-255 check; a list yields its elements as they
//!   are (`[]` gives `[]`); a nested dict yields `{}` (eDeploy empties it); any other value
//!   (int, float, bool, `None`, tuple) repeats, [`REPEAT_COUNT`] times.
//! - One range part (`_generate_range`) is split on `:`; each piece `a-b` counts from `a` to
//!   `b` inclusive, downwards when `b < a`, zero-padded to the width of `a` when `a` starts
//!   with `0`; any other piece (no dash, two dashes, `5-`) yields the *whole part* once.
//!   A piece with nothing before its dash (`-5`) crashes eDeploy (`IndexError`) when the
//!   expansion reaches it; here it is [`GenerateError::BadRange`].
//!
//! The lengths are computed before anything is built, so a model that would produce more
//! than [`MAX_ENTRIES`] entries, or that has no range or list at all, is refused without
//! allocating it. Numbers are decimal strings of any size, as Python's ints are.

use rdeploy_specs::syntax::{to_python, Node, NodeKind, Pos, SyntaxError};
use rdeploy_specs::Value;
use regex::Regex;
use std::cmp::Ordering;
use std::sync::LazyLock;

/// The most entries one `generate()` call (or one CMDB file) may produce.
pub const MAX_ENTRIES: usize = 1_000_000;

/// How many times eDeploy repeats a value that is neither a string nor a list nor a dict.
pub const REPEAT_COUNT: u64 = 16_387_064;

/// Python's `int()` refuses strings of more digits than this (`sys.get_int_max_str_digits()`),
/// which eDeploy's range reader takes as "not a number".
const INT_MAX_STR_DIGITS: usize = 4300;

/// Counts of values, saturating (eDeploy's numbers have no size limit).
type Count = u128;

/// eDeploy's `_RANGE_REGEXP`; Python's `$` also matches before a final newline, which the
/// `\n?\z` spells out (the newline is then in no group, so eDeploy drops it).
static RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(.*?)([0-9]+-[0-9]+(?::[0-9]+-[0-9]+)*)(.*)\n?\z").expect("valid range regex")
});

/// eDeploy's `_IPV4_RANGE_REGEXP`, with Python's `$` spelled out as above.
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9:.\-]+\n?\z").expect("valid ipv4 regex"));

/// Why a model or a CMDB file cannot be expanded.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GenerateError {
    /// `generate()` was given something else than a dict.
    #[error("generate() takes a dict, found {found}")]
    NotADict { found: &'static str },
    /// The result would be longer than [`MAX_ENTRIES`]; `key` holds the shortest sequence.
    #[error(
        "generate() would produce {entries} entries, more than the limit of {max}: \
         key '{key}' with value {value} has the fewest values"
    )]
    TooMany {
        key: String,
        value: String,
        /// Saturates at `u128::MAX`.
        entries: u128,
        max: usize,
    },
    /// Every value repeats: eDeploy would emit [`REPEAT_COUNT`] copies of the model (or
    /// loop forever when the only non-strings are nested dicts).
    #[error(
        "generate() model has no range or list: it would produce {REPEAT_COUNT} copies \
         (or never stop when its only non-strings are dicts)"
    )]
    NoFiniteRange,
    /// A range piece eDeploy crashes on (`-5`: nothing before the dash).
    #[error("generate() key '{key}' has a range eDeploy cannot read in {value}: {reason}")]
    BadRange {
        key: String,
        /// The Python literal of the whole value.
        value: String,
        reason: String,
    },
    /// A CMDB file is not a list, a `generate()` call or a `+` of those.
    #[error(
        "{pos}: a cmdb is a list of dicts, a generate({{...}}) call or a '+' of those, \
         found {found}"
    )]
    NotACmdb { pos: Pos, found: String },
    /// An element of a CMDB list is not a dict.
    #[error("{pos}: a cmdb entry must be a dict, found {found}")]
    NotAnEntry { pos: Pos, found: String },
    /// A call to something else than `generate`.
    #[error("{pos}: unknown function {name}() in a cmdb: only generate() is allowed")]
    UnknownCall { pos: Pos, name: String },
    /// `generate()` called with something else than one dict literal.
    #[error("{pos}: generate() takes one dict (the model), found {found}")]
    BadCall { pos: Pos, found: String },
    /// A `generate()` call of a CMDB file failed.
    #[error("{pos}: cannot expand this generate() call")]
    InGenerate {
        pos: Pos,
        #[source]
        source: Box<GenerateError>,
    },
    /// The CMDB file as a whole would hold more than [`MAX_ENTRIES`] entries.
    #[error("{pos}: the cmdb would hold more than {max} entries")]
    CmdbTooLarge { pos: Pos, max: usize },
    /// A dict of the CMDB holds a call or a `+`.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
}

/// Expands a model the way eDeploy's `generate(model)` does; see the module documentation.
///
/// Duplicate keys are merged as Python does (first position, last value).
pub fn generate(model: &Value) -> Result<Vec<Value>, GenerateError> {
    let Value::Dict(items) = model else {
        return Err(GenerateError::NotADict {
            found: model.type_name(),
        });
    };
    let items = python_dict(items);
    if items
        .iter()
        .all(|(_, value)| matches!(value, Value::Str(s) if !RANGE.is_match(s)))
    {
        return Ok(vec![Value::Dict(items)]);
    }
    let columns: Vec<(&Value, &Value, Column<'_>)> = items
        .iter()
        .map(|(key, value)| (key, value, Column::read(value)))
        .collect();
    if columns.iter().all(|(_, _, column)| !column.has_end()) {
        return Err(GenerateError::NoFiniteRange);
    }

    // eDeploy stops at the first key, in model order, whose sequence runs out first; if
    // that sequence ends on a bad piece, eDeploy crashes instead.
    let mut shortest: Option<(&Value, &Value, Extent)> = None;
    for (key, value, column) in &columns {
        if let Some(extent) = column.extent() {
            if shortest
                .as_ref()
                .is_none_or(|(_, _, best)| extent.len < best.len)
            {
                shortest = Some((key, value, extent));
            }
        }
    }
    let Some((key, value, extent)) = shortest else {
        return Err(GenerateError::NoFiniteRange);
    };
    if let Some(reason) = extent.failure {
        return Err(GenerateError::BadRange {
            key: key_text(key),
            value: to_python(value),
            reason,
        });
    }
    let n = usize::try_from(extent.len)
        .ok()
        .filter(|&n| n <= MAX_ENTRIES)
        .ok_or_else(|| GenerateError::TooMany {
            key: key_text(key),
            value: short_repr(value),
            entries: extent.len,
            max: MAX_ENTRIES,
        })?;

    let mut entries: Vec<Vec<(Value, Value)>> =
        (0..n).map(|_| Vec::with_capacity(columns.len())).collect();
    for (key, _, column) in &columns {
        match column.take(n) {
            Filled::Same(value) => {
                for entry in &mut entries {
                    entry.push(((*key).clone(), value.clone()));
                }
            }
            Filled::Each(values) => {
                for (entry, value) in entries.iter_mut().zip(values) {
                    entry.push(((*key).clone(), value));
                }
            }
        }
    }
    Ok(entries.into_iter().map(Value::Dict).collect())
}

/// Evaluates a parsed CMDB file the way eDeploy's server did: a list of dicts, a
/// `generate({...})` call, or `+` concatenations of those (`[{...}] + generate({...})`).
pub fn expand_cmdb(node: &Node) -> Result<Vec<Value>, GenerateError> {
    // `a + b + c` nests to the left; walk it with a stack so a long chain cannot overflow.
    let mut pending = vec![node];
    let mut entries = Vec::new();
    while let Some(node) = pending.pop() {
        match &node.kind {
            NodeKind::Add(left, right) => {
                pending.push(right);
                pending.push(left);
                continue;
            }
            NodeKind::List(items) => {
                for item in items {
                    if !matches!(item.kind, NodeKind::Dict(_)) {
                        return Err(GenerateError::NotAnEntry {
                            pos: item.pos,
                            found: item.describe(),
                        });
                    }
                    entries.push(python_value(item.to_value()?));
                }
            }
            NodeKind::Call { name, args } if name == "generate" => {
                let model = match args.as_slice() {
                    [model] if matches!(model.kind, NodeKind::Dict(_)) => model,
                    [other] => {
                        return Err(GenerateError::BadCall {
                            pos: other.pos,
                            found: other.describe(),
                        })
                    }
                    _ => {
                        return Err(GenerateError::BadCall {
                            pos: node.pos,
                            found: format!("{} arguments", args.len()),
                        })
                    }
                };
                let model = python_value(model.to_value()?);
                let expanded = generate(&model).map_err(|err| GenerateError::InGenerate {
                    pos: node.pos,
                    source: Box::new(err),
                })?;
                entries.extend(expanded);
            }
            NodeKind::Call { name, .. } => {
                return Err(GenerateError::UnknownCall {
                    pos: node.pos,
                    name: name.clone(),
                })
            }
            NodeKind::Value(_) | NodeKind::Tuple(_) | NodeKind::Dict(_) => {
                return Err(GenerateError::NotACmdb {
                    pos: node.pos,
                    found: node.describe(),
                })
            }
        }
        if entries.len() > MAX_ENTRIES {
            return Err(GenerateError::CmdbTooLarge {
                pos: node.pos,
                max: MAX_ENTRIES,
            });
        }
    }
    Ok(entries)
}

/// A dict's items as Python keeps them: a repeated key stays at its first position and
/// takes its last value (`1`, `1.0` and `True` are the same key).
fn python_dict(items: &[(Value, Value)]) -> Vec<(Value, Value)> {
    let mut out: Vec<(Value, Value)> = Vec::with_capacity(items.len());
    for (key, value) in items {
        match out.iter_mut().find(|(seen, _)| seen == key) {
            Some(slot) => slot.1 = value.clone(),
            None => out.push((key.clone(), value.clone())),
        }
    }
    out
}

/// [`python_dict`] applied to every dict inside a value.
fn python_value(value: Value) -> Value {
    match value {
        Value::Dict(items) => Value::Dict(
            python_dict(&items)
                .into_iter()
                .map(|(k, v)| (k, python_value(v)))
                .collect(),
        ),
        Value::List(items) => Value::List(items.into_iter().map(python_value).collect()),
        Value::Tuple(items) => Value::Tuple(items.into_iter().map(python_value).collect()),
        other => other,
    }
}

/// A key as an operator reads it in a message: the text of a string key, else its literal.
fn key_text(key: &Value) -> String {
    key.as_str().map_or_else(|| to_python(key), str::to_owned)
}

/// The Python literal of a value, cut to a readable length.
fn short_repr(value: &Value) -> String {
    const MAX: usize = 60;
    let text = to_python(value);
    if text.chars().count() <= MAX {
        text
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

/// What one model value becomes.
enum Column<'a> {
    /// The same value for as long as the other keys go on: a string without a range, or
    /// `{}` for a nested dict.
    Endless(Value),
    /// A value eDeploy repeats [`REPEAT_COUNT`] times (int, float, bool, `None`, tuple).
    Repeat(&'a Value),
    /// A list: its elements, as they are.
    Items(&'a [Value]),
    /// A string with a range: `head`, then each value of the range, then `foot`.
    Range {
        head: &'a str,
        numbers: Part<'a>,
        foot: &'a str,
    },
    /// An IPv4 range: every combination of the four parts, the first one slowest.
    Ipv4(Box<[Part<'a>; 4]>),
}

/// How far a sequence goes: `len` values, then the end, or eDeploy's crash when `failure`
/// is set.
struct Extent {
    len: Count,
    failure: Option<String>,
}

impl Extent {
    fn new(len: Count, failure: Option<String>) -> Self {
        Extent { len, failure }
    }
}

/// The first `n` values of a column.
enum Filled {
    Same(Value),
    Each(Vec<Value>),
}

impl<'a> Column<'a> {
    fn read(value: &'a Value) -> Column<'a> {
        match value {
            Value::Str(text) => {
                let Some(caps) = RANGE.captures(text) else {
                    return Column::Endless(value.clone());
                };
                let parts: Vec<&str> = text.split('.').collect();
                if let [a, b, c, d] = parts[..] {
                    if IPV4.is_match(text) && text.contains([':', '-']) {
                        return Column::Ipv4(Box::new([
                            Part::read(a),
                            Part::read(b),
                            Part::read(c),
                            Part::read(d),
                        ]));
                    }
                }
                let (_, [head, numbers, foot]) = caps.extract();
                Column::Range {
                    head,
                    numbers: Part::read(numbers),
                    foot,
                }
            }
            Value::List(items) => Column::Items(items),
            Value::Dict(_) => Column::Endless(Value::Dict(Vec::new())),
            other => Column::Repeat(other),
        }
    }

    /// Whether this column ends by itself (a range or a list), as opposed to repeating.
    fn has_end(&self) -> bool {
        matches!(
            self,
            Column::Items(_) | Column::Range { .. } | Column::Ipv4(_)
        )
    }

    /// The length of the sequence; `None` when it never ends.
    fn extent(&self) -> Option<Extent> {
        match self {
            Column::Endless(_) => None,
            Column::Repeat(_) => Some(Extent::new(Count::from(REPEAT_COUNT), None)),
            Column::Items(items) => Some(Extent::new(count(items.len()), None)),
            Column::Range { numbers, .. } => {
                Some(Extent::new(numbers.len(), numbers.failure.clone()))
            }
            Column::Ipv4(parts) => Some(ipv4_extent(parts)),
        }
    }

    /// The first `n` values (`n` is at most the extent's length).
    fn take(&self, n: usize) -> Filled {
        match self {
            Column::Endless(value) => Filled::Same(value.clone()),
            Column::Repeat(value) => Filled::Same((*value).clone()),
            Column::Items(items) => Filled::Each(items.iter().take(n).cloned().collect()),
            Column::Range {
                head,
                numbers,
                foot,
            } => Filled::Each(
                numbers
                    .take(n)
                    .into_iter()
                    .map(|number| Value::Str(format!("{head}{number}{foot}")))
                    .collect(),
            ),
            Column::Ipv4(parts) => Filled::Each(ipv4_take(parts, n)),
        }
    }
}

/// The extent of an IPv4 product. eDeploy nests one loop per part; a part that crashes
/// does so after its good values, and inside the first round of the loops around it.
fn ipv4_extent(parts: &[Part<'_>; 4]) -> Extent {
    // Going from the innermost part out: `complete` is what the inner loops yield when
    // they finish, `failure` where and why they crash.
    let mut complete: Count = 1;
    let mut failure: Option<(Count, &str)> = None;
    for part in parts.iter().rev() {
        let len = part.len();
        failure = if len == 0 {
            part.failure.as_deref().map(|reason| (0, reason))
        } else if failure.is_some() {
            failure
        } else {
            part.failure
                .as_deref()
                .map(|reason| (len.saturating_mul(complete), reason))
        };
        complete = complete.saturating_mul(len);
    }
    match failure {
        Some((len, reason)) => Extent::new(len, Some(reason.to_owned())),
        None => Extent::new(complete, None),
    }
}

/// The first `n` addresses of an IPv4 product, first part slowest: address `i` is `i`
/// written in the mixed radix of the part lengths. `n` is at most the product's extent, so
/// every index is below both its part's length and `n` (the fallbacks are never taken).
fn ipv4_take(parts: &[Part<'_>; 4], n: usize) -> Vec<Value> {
    let values: Vec<Vec<String>> = parts.iter().map(|part| part.take(n)).collect();
    let lens: Vec<Count> = parts.iter().map(|part| part.len().max(1)).collect();
    (0..n)
        .map(|i| {
            let mut rest = count(i);
            let mut octets = [""; 4];
            for j in (0..4).rev() {
                let index = usize::try_from(rest % lens[j]).unwrap_or(usize::MAX);
                octets[j] = values[j].get(index).map_or("", String::as_str);
                rest /= lens[j];
            }
            Value::Str(octets.join("."))
        })
        .collect()
}

fn count(n: usize) -> Count {
    Count::try_from(n).unwrap_or(Count::MAX)
}

/// One range text as eDeploy's `_generate_range` reads it: `10-12:20-30`.
struct Part<'a> {
    /// The whole text, which a piece that is not `a-b` yields.
    text: &'a str,
    /// The pieces before any bad one.
    pieces: Vec<Piece>,
    /// Why eDeploy crashes after those pieces, if it does.
    failure: Option<String>,
}

enum Piece {
    /// `start` to `stop` inclusive, counting down when `stop < start`; `width` is the
    /// zero-padding width (0 for none); `len` the number of values.
    Numbers {
        start: Decimal,
        stop: Decimal,
        width: usize,
        len: Count,
    },
    /// The whole part text, once.
    Whole,
}

impl<'a> Part<'a> {
    fn read(text: &'a str) -> Part<'a> {
        let mut pieces = Vec::new();
        for piece in text.split(':') {
            let bounds: Vec<&str> = piece.split('-').collect();
            let [first, second] = bounds[..] else {
                pieces.push(Piece::Whole);
                continue;
            };
            if first.is_empty() {
                let reason = format!(
                    "{} has no number before its '-'",
                    to_python(&Value::Str(piece.to_owned()))
                );
                return Part {
                    text,
                    pieces,
                    failure: Some(reason),
                };
            }
            match (Decimal::parse(first), Decimal::parse(second)) {
                (Some(start), Some(stop)) => {
                    let width = if first.starts_with('0') {
                        first.len()
                    } else {
                        0
                    };
                    let len = start.distance(&stop).saturating_add(1);
                    pieces.push(Piece::Numbers {
                        start,
                        stop,
                        width,
                        len,
                    });
                }
                _ => pieces.push(Piece::Whole),
            }
        }
        Part {
            text,
            pieces,
            failure: None,
        }
    }

    /// How many values the part yields (before its failure, if any).
    fn len(&self) -> Count {
        self.pieces.iter().fold(0, |total: Count, piece| {
            total.saturating_add(match piece {
                Piece::Numbers { len, .. } => *len,
                Piece::Whole => 1,
            })
        })
    }

    /// The first `n` values.
    fn take(&self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            let room = n - out.len();
            if room == 0 {
                break;
            }
            match piece {
                Piece::Whole => out.push(self.text.to_owned()),
                Piece::Numbers {
                    start,
                    stop,
                    width,
                    len,
                } => {
                    let wanted = usize::try_from(*len).map_or(room, |len| len.min(room));
                    let down = stop < start;
                    let mut current = start.clone();
                    for i in 0..wanted {
                        out.push(current.padded(*width));
                        if i + 1 < wanted {
                            if down {
                                current.decrement();
                            } else {
                                current.increment();
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// A non-negative integer of any size, as ASCII decimal digits without leading zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Decimal(Vec<u8>);

impl Decimal {
    /// Python's `int(text)` for the texts a range piece can hold (ASCII digits, maybe a
    /// trailing newline); `None` where Python raises `ValueError`, including for more than
    /// 4300 digits.
    fn parse(text: &str) -> Option<Decimal> {
        let digits = text.trim_matches(char::is_whitespace);
        if digits.is_empty()
            || digits.len() > INT_MAX_STR_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let significant = digits.trim_start_matches('0');
        let significant = if significant.is_empty() {
            "0"
        } else {
            significant
        };
        Some(Decimal(significant.as_bytes().to_vec()))
    }

    /// `|self - other|`, saturating.
    fn distance(&self, other: &Decimal) -> Count {
        let (big, small) = if self >= other {
            (self, other)
        } else {
            (other, self)
        };
        let mut diff = big.0.clone();
        let mut borrow = 0u8;
        for (i, digit) in diff.iter_mut().rev().enumerate() {
            let sub = small
                .0
                .len()
                .checked_sub(i + 1)
                .map_or(0, |j| small.0[j] - b'0')
                + borrow;
            if *digit - b'0' >= sub {
                *digit -= sub;
                borrow = 0;
            } else {
                *digit = *digit + 10 - sub;
                borrow = 1;
            }
        }
        diff.iter()
            .try_fold(0, |acc: Count, digit| {
                acc.checked_mul(10)?.checked_add(Count::from(digit - b'0'))
            })
            .unwrap_or(Count::MAX)
    }

    fn increment(&mut self) {
        for digit in self.0.iter_mut().rev() {
            if *digit == b'9' {
                *digit = b'0';
            } else {
                *digit += 1;
                return;
            }
        }
        self.0.insert(0, b'1');
    }

    /// Subtracts one; `self` must not be zero.
    fn decrement(&mut self) {
        for digit in self.0.iter_mut().rev() {
            if *digit == b'0' {
                *digit = b'9';
            } else {
                *digit -= 1;
                break;
            }
        }
        if self.0.len() > 1 && self.0[0] == b'0' {
            self.0.remove(0);
        }
    }

    /// Python's `'%0{width}d' % self` (`'%d'` for width 0).
    fn padded(&self, width: usize) -> String {
        let zeros = width.saturating_sub(self.0.len());
        let mut text = "0".repeat(zeros);
        text.extend(self.0.iter().map(|&d| char::from(d)));
        text
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rdeploy_specs::syntax::{parse, parse_value};

    /// Python's `repr`, dicts in insertion order (`to_python` sorts keys like `pprint`).
    fn repr(value: &Value) -> String {
        fn join(items: &[Value]) -> String {
            items.iter().map(repr).collect::<Vec<_>>().join(", ")
        }
        match value {
            Value::Dict(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|(k, v)| format!("{}: {}", repr(k), repr(v)))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
            Value::List(items) => format!("[{}]", join(items)),
            Value::Tuple(items) if items.len() == 1 => format!("({},)", join(items)),
            Value::Tuple(items) => format!("({})", join(items)),
            other => to_python(other),
        }
    }

    fn expand(model: &str) -> Result<Vec<Value>, GenerateError> {
        generate(&parse_value(model).expect("model parses"))
    }

    fn expand_repr(model: &str) -> String {
        match expand(model) {
            Ok(entries) => repr(&Value::List(entries)),
            Err(err) => format!("error: {err}"),
        }
    }

    /// `(model, repr(generate(model)))`, the right side printed by eDeploy's reference
    /// (`hardware` 0.33) for the left side.
    const REFERENCE: &[(&str, &str)] = &[
        (r#"{}"#, r#"[{}]"#),
        (r#"{'a': 'x', 'b': 'y'}"#, r#"[{'a': 'x', 'b': 'y'}]"#),
        (
            r#"{'hostname': 'node1', 'ip': '10.0.0.1'}"#,
            r#"[{'hostname': 'node1', 'ip': '10.0.0.1'}]"#,
        ),
        (
            r#"{'a': 'rack1-2-node1-3'}"#,
            r#"[{'a': 'rack1-node1-3'}, {'a': 'rack2-node1-3'}]"#,
        ),
        (
            r#"{'a': '1-3\n'}"#,
            r#"[{'a': '1'}, {'a': '2'}, {'a': '3'}]"#,
        ),
        (r#"{'a': '1-3\nx'}"#, r#"[{'a': '1-3\nx'}]"#),
        (r#"{'a': 'x\n1-3'}"#, r#"[{'a': 'x\n1-3'}]"#),
        (
            r#"{'ip': '10.0.0.1-3\n'}"#,
            r#"[{'ip': '10.0.0.1'}, {'ip': '10.0.0.2'}, {'ip': '10.0.0.3'}]"#,
        ),
        (
            r#"{'ip': '10.0.0.1-3:5\n'}"#,
            r#"[{'ip': '10.0.0.1'}, {'ip': '10.0.0.2'}, {'ip': '10.0.0.3'}, {'ip': '10.0.0.1-3:5\n'}]"#,
        ),
        (
            r#"{'ip': '1-2.0.0.5-\n'}"#,
            r#"[{'ip': '1.0.0.5-\n'}, {'ip': '2.0.0.5-\n'}]"#,
        ),
        (
            r#"{'h': 'n1-3:7'}"#,
            r#"[{'h': 'n1:7'}, {'h': 'n2:7'}, {'h': 'n3:7'}]"#,
        ),
        (
            r#"{'h': 'p5-3'}"#,
            r#"[{'h': 'p5'}, {'h': 'p4'}, {'h': 'p3'}]"#,
        ),
        (
            r#"{'h': 'h01-03'}"#,
            r#"[{'h': 'h01'}, {'h': 'h02'}, {'h': 'h03'}]"#,
        ),
        (
            r#"{'h': 'h8-011'}"#,
            r#"[{'h': 'h8'}, {'h': 'h9'}, {'h': 'h10'}, {'h': 'h11'}]"#,
        ),
        (
            r#"{'h': 'h008-11'}"#,
            r#"[{'h': 'h008'}, {'h': 'h009'}, {'h': 'h010'}, {'h': 'h011'}]"#,
        ),
        (
            r#"{'h': 'h3-0'}"#,
            r#"[{'h': 'h3'}, {'h': 'h2'}, {'h': 'h1'}, {'h': 'h0'}]"#,
        ),
        (r#"{'h': 'h00-0'}"#, r#"[{'h': 'h00'}]"#),
        (r#"{'h': 'h5-5'}"#, r#"[{'h': 'h5'}]"#),
        (
            r#"{'a': '1-2', 'b': {'x': '1-3'}, 'c': [1, {'q': 1}], 'd': 5, 'e': None, 'f': (1, 2), 'g': 2.5, 'h': True}"#,
            r#"[{'a': '1', 'b': {}, 'c': 1, 'd': 5, 'e': None, 'f': (1, 2), 'g': 2.5, 'h': True}, {'a': '2', 'b': {}, 'c': {'q': 1}, 'd': 5, 'e': None, 'f': (1, 2), 'g': 2.5, 'h': True}]"#,
        ),
        (r#"{'n': [], 'ip': '1-2.0.0.-5'}"#, r#"[]"#),
        (
            r#"{'n': [1], 'ip': '1-2.0.0.1:-5'}"#,
            r#"[{'n': 1, 'ip': '1.0.0.1:-5'}]"#,
        ),
        (
            r#"{'ip': '1-2:-5.0.0.1-2', 'n': [1, 2, 3]}"#,
            r#"[{'ip': '1.0.0.1', 'n': 1}, {'ip': '1.0.0.2', 'n': 2}, {'ip': '2.0.0.1', 'n': 3}]"#,
        ),
        (
            r#"{'ip': '1-2.0.0.1-2:5-'}"#,
            r#"[{'ip': '1.0.0.1'}, {'ip': '1.0.0.2'}, {'ip': '1.0.0.1-2:5-'}, {'ip': '2.0.0.1'}, {'ip': '2.0.0.2'}, {'ip': '2.0.0.1-2:5-'}]"#,
        ),
        (
            r#"{'ip': '1-2.0.0.5-6-7'}"#,
            r#"[{'ip': '1.0.0.5-6-7'}, {'ip': '2.0.0.5-6-7'}]"#,
        ),
        (
            r#"{'ip': '1-2.0.0.'}"#,
            r#"[{'ip': '1.0.0.'}, {'ip': '2.0.0.'}]"#,
        ),
        (
            r#"{'ip': '1-2.0..1'}"#,
            r#"[{'ip': '1.0..1'}, {'ip': '2.0..1'}]"#,
        ),
        (
            r#"{'ip': '1-2.0.0.0.1'}"#,
            r#"[{'ip': '1.0.0.0.1'}, {'ip': '2.0.0.0.1'}]"#,
        ),
        (
            r#"{'ip': '10.0.1-2.1-3'}"#,
            r#"[{'ip': '10.0.1.1'}, {'ip': '10.0.1.2'}, {'ip': '10.0.1.3'}, {'ip': '10.0.2.1'}, {'ip': '10.0.2.2'}, {'ip': '10.0.2.3'}]"#,
        ),
        (
            r#"{'ip': '10.0-1.0.1-2:8-9'}"#,
            r#"[{'ip': '10.0.0.1'}, {'ip': '10.0.0.2'}, {'ip': '10.0.0.8'}, {'ip': '10.0.0.9'}, {'ip': '10.1.0.1'}, {'ip': '10.1.0.2'}, {'ip': '10.1.0.8'}, {'ip': '10.1.0.9'}]"#,
        ),
        (
            r#"{'ip': '192.168.254-256.1'}"#,
            r#"[{'ip': '192.168.254.1'}, {'ip': '192.168.255.1'}, {'ip': '192.168.256.1'}]"#,
        ),
        (
            r#"{'ip': '300-301.0.0.1'}"#,
            r#"[{'ip': '300.0.0.1'}, {'ip': '301.0.0.1'}]"#,
        ),
        (
            r#"{'ip': '10.0.0.1-3', 'host': 'node1-5'}"#,
            r#"[{'ip': '10.0.0.1', 'host': 'node1'}, {'ip': '10.0.0.2', 'host': 'node2'}, {'ip': '10.0.0.3', 'host': 'node3'}]"#,
        ),
        (
            r#"{'a': '1-2', 'b': '3-1'}"#,
            r#"[{'a': '1', 'b': '3'}, {'a': '2', 'b': '2'}]"#,
        ),
        (r#"{'a': [], 'b': 1}"#, r#"[]"#),
        (
            r#"{'a': 1, 'b': [1, 2, 3]}"#,
            r#"[{'a': 1, 'b': 1}, {'a': 1, 'b': 2}, {'a': 1, 'b': 3}]"#,
        ),
        (r#"{'a': 'x', 'b': ['1-3']}"#, r#"[{'a': 'x', 'b': '1-3'}]"#),
        (
            r#"{'a': '1-2:5-4 z'}"#,
            r#"[{'a': '1 z'}, {'a': '2 z'}, {'a': '5 z'}, {'a': '4 z'}]"#,
        ),
        (
            r#"{'a': 'a1-2:3-4:5'}"#,
            r#"[{'a': 'a1:5'}, {'a': 'a2:5'}, {'a': 'a3:5'}, {'a': 'a4:5'}]"#,
        ),
        (r#"{1: '1-2', True: 'x'}"#, r#"[{1: 'x'}]"#),
        (r#"{'a': '1-2', 'a': 'x'}"#, r#"[{'a': 'x'}]"#),
        (
            r#"{'a': 'x', 'a': '1-2', 'b': 'y'}"#,
            r#"[{'a': '1', 'b': 'y'}, {'a': '2', 'b': 'y'}]"#,
        ),
        (
            r#"{'a': '0x1-3'}"#,
            r#"[{'a': '0x1'}, {'a': '0x2'}, {'a': '0x3'}]"#,
        ),
        (
            r#"{'a': '1-3', 'b': '10.0.0.1:5'}"#,
            r#"[{'a': '1', 'b': '10.0.0.1:5'}, {'a': '2', 'b': '10.0.0.1:5'}, {'a': '3', 'b': '10.0.0.1:5'}]"#,
        ),
        (r#"{'a': '\u0663-5'}"#, r#"[{'a': '٣-5'}]"#),
        (
            r#"{'a': '1-3', 'b': {}}"#,
            r#"[{'a': '1', 'b': {}}, {'a': '2', 'b': {}}, {'a': '3', 'b': {}}]"#,
        ),
        (
            r#"{'b': {'k': 'v'}, 'a': [{'x': 1}, (1, 2), None]}"#,
            r#"[{'b': {}, 'a': {'x': 1}}, {'b': {}, 'a': (1, 2)}, {'b': {}, 'a': None}]"#,
        ),
        (
            r#"{'a': 'node-1-3'}"#,
            r#"[{'a': 'node-1'}, {'a': 'node-2'}, {'a': 'node-3'}]"#,
        ),
        (
            r#"{'a': '12-3'}"#,
            r#"[{'a': '12'}, {'a': '11'}, {'a': '10'}, {'a': '9'}, {'a': '8'}, {'a': '7'}, {'a': '6'}, {'a': '5'}, {'a': '4'}, {'a': '3'}]"#,
        ),
        (r#"{'a': '1-2-3'}"#, r#"[{'a': '1-3'}, {'a': '2-3'}]"#),
        (
            r#"{'a': 'x1-2y3-4'}"#,
            r#"[{'a': 'x1y3-4'}, {'a': 'x2y3-4'}]"#,
        ),
        (
            r#"{'a': '2001:db8::1-3'}"#,
            r#"[{'a': '2001:db8::1'}, {'a': '2001:db8::2'}, {'a': '2001:db8::3'}]"#,
        ),
        (
            r#"{'a': '1-3', 'z': 'a\nb'}"#,
            r#"[{'a': '1', 'z': 'a\nb'}, {'a': '2', 'z': 'a\nb'}, {'a': '3', 'z': 'a\nb'}]"#,
        ),
        (
            r#"{'a': '10.0.0.1-3', 'b': '10.0.0.7-9'}"#,
            r#"[{'a': '10.0.0.1', 'b': '10.0.0.7'}, {'a': '10.0.0.2', 'b': '10.0.0.8'}, {'a': '10.0.0.3', 'b': '10.0.0.9'}]"#,
        ),
        (
            r#"{'a': '10.0.0.0-255', 'b': [1, 2]}"#,
            r#"[{'a': '10.0.0.0', 'b': 1}, {'a': '10.0.0.1', 'b': 2}]"#,
        ),
        (
            r#"{'ip': '10.0.0.1-2', 'x': 1.0, 'y': -3, 'z': False}"#,
            r#"[{'ip': '10.0.0.1', 'x': 1.0, 'y': -3, 'z': False}, {'ip': '10.0.0.2', 'x': 1.0, 'y': -3, 'z': False}]"#,
        ),
        (
            r#"{'mac': ['00:11', '00:12'], 'ip': '10.0.0.1-3', 'name': 'n'}"#,
            r#"[{'mac': '00:11', 'ip': '10.0.0.1', 'name': 'n'}, {'mac': '00:12', 'ip': '10.0.0.2', 'name': 'n'}]"#,
        ),
        (
            r#"{'a': '1-2.3.4.5\n'}"#,
            r#"[{'a': '1.3.4.5\n'}, {'a': '2.3.4.5\n'}]"#,
        ),
        (
            r#"{'a': '1-2.3.4.\n'}"#,
            r#"[{'a': '1.3.4.\n'}, {'a': '2.3.4.\n'}]"#,
        ),
        (
            r#"{'a': '1-2.3.4.7-\n'}"#,
            r#"[{'a': '1.3.4.7-\n'}, {'a': '2.3.4.7-\n'}]"#,
        ),
        (
            r#"{'a': '1-2.3.4.:'}"#,
            r#"[{'a': '1.3.4.:'}, {'a': '1.3.4.:'}, {'a': '2.3.4.:'}, {'a': '2.3.4.:'}]"#,
        ),
        (
            r#"{'a': '1-2.3.4.1:2'}"#,
            r#"[{'a': '1.3.4.1:2'}, {'a': '1.3.4.1:2'}, {'a': '2.3.4.1:2'}, {'a': '2.3.4.1:2'}]"#,
        ),
        (
            r#"{'a': '1-2:3.4.5.6'}"#,
            r#"[{'a': '1.4.5.6'}, {'a': '2.4.5.6'}, {'a': '1-2:3.4.5.6'}]"#,
        ),
    ];

    #[test]
    fn matches_the_reference() {
        for (model, expected) in REFERENCE {
            assert_eq!(expand_repr(model), *expected, "generate({model})");
        }
    }

    #[test]
    fn numbers_have_no_size_limit() {
        // Beyond u128, as Python ints (reference answers).
        let big = "9".repeat(41);
        let model = format!("{{'a': '{big}-{}8'}}", "9".repeat(40));
        assert_eq!(
            expand_repr(&model),
            format!("[{{'a': '{big}'}}, {{'a': '{}8'}}]", "9".repeat(40))
        );
        let model = format!("{{'a': '0-{}', 'b': [1, 2]}}", "9".repeat(45));
        assert_eq!(
            expand_repr(&model),
            "[{'a': '0', 'b': 1}, {'a': '1', 'b': 2}]"
        );
        assert_eq!(
            expand_repr("{'a': '100-98', 'b': '0100-98', 'c': '99-101', 'd': '0099-101'}"),
            "[{'a': '100', 'b': '0100', 'c': '99', 'd': '0099'}, \
             {'a': '99', 'b': '0099', 'c': '100', 'd': '0100'}, \
             {'a': '98', 'b': '0098', 'c': '101', 'd': '0101'}]"
        );
    }

    #[test]
    fn more_than_4300_digits_is_not_a_number() {
        // Python's int() refuses more than 4300 digits (leading zeros count): the piece is
        // then not a range and yields the whole range text.
        let long = "1".repeat(4301);
        let text = format!("x{long}-2y");
        let out = expand(&format!("{{'a': '{text}'}}")).expect("expands");
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].dict_get("a").and_then(Value::as_str),
            Some(text.as_str())
        );

        let out = expand(&format!("{{'a': 'x1-2:{long}-2y'}}")).expect("expands");
        let got: Vec<&str> = out
            .iter()
            .filter_map(|e| e.dict_get("a")?.as_str())
            .collect();
        assert_eq!(got, ["x1y", "x2y", &format!("x1-2:{long}-2y")]);

        let zeros = "0".repeat(4300);
        let out = expand(&format!("{{'a': '{zeros}-1'}}")).expect("expands");
        let got: Vec<&str> = out
            .iter()
            .filter_map(|e| e.dict_get("a")?.as_str())
            .collect();
        assert_eq!(got, [zeros.clone(), format!("{}1", &zeros[1..])]);
        let text = format!("0{zeros}-1");
        let out = expand(&format!("{{'a': '{text}'}}")).expect("expands");
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].dict_get("a").and_then(Value::as_str),
            Some(text.as_str())
        );
    }

    #[test]
    fn a_piece_with_nothing_before_its_dash_is_an_error_when_reached() {
        // eDeploy raises IndexError for these (reference), once the expansion reaches them.
        for model in [
            "{'ip': '1-2.0.0.-5'}",
            "{'ip': '1-2.0.0.-5', 'n': []}",
            "{'ip': '1-2.0.0.1:-5', 'n': [1]}",
            "{'ip': '1-2:-5.0.0.1-2', 'n': [1, 2, 3, 4]}",
            "{'ip': '1-2:-5.0.0.1-2', 'n': [1, 2, 3, 4, 5]}",
            "{'ip': '-5.0.0.1-2:-1', 'n': [1, 2]}",
            "{'ip': '1-2.0.0.1-2:-'}",
            "{'a': '1-2.3.4.-\\n'}",
        ] {
            match expand(model) {
                Err(GenerateError::BadRange { key, value, reason }) => {
                    assert!(key == "ip" || key == "a", "{model}: {key}");
                    assert!(value.starts_with('\''), "{model}: {value}");
                    assert!(reason.contains("no number before"), "{model}: {reason}");
                }
                other => panic!("generate({model}) gave {other:?}"),
            }
        }
        let err = expand("{'ip': '1-2.0.0.1:-5'}").expect_err("bad range");
        assert_eq!(
            err.to_string(),
            "generate() key 'ip' has a range eDeploy cannot read in '1-2.0.0.1:-5': \
             '-5' has no number before its '-'"
        );
        // Not reached: a shorter sequence before it stops the expansion (reference).
        assert_eq!(expand_repr("{'n': [], 'ip': '1-2.0.0.-5'}"), "[]",);
        assert_eq!(
            expand_repr("{'ip': '1-2:-5.0.0.1-2', 'n': [1, 2, 3]}"),
            "[{'ip': '1.0.0.1', 'n': 1}, {'ip': '1.0.0.2', 'n': 2}, {'ip': '2.0.0.1', 'n': 3}]"
        );
    }

    #[test]
    fn models_that_only_repeat_are_refused() {
        for model in [
            "{'a': 1}",
            "{'a': 'x', 'b': None}",
            "{'a': (1, 2), 'b': 2.5, 'c': True}",
            "{'a': {'x': '1-3'}}",
            "{'a': 'plain', 'b': {}}",
        ] {
            let err = expand(model).expect_err(model);
            assert!(
                matches!(err, GenerateError::NoFiniteRange),
                "{model}: {err:?}"
            );
        }
        assert!(GenerateError::NoFiniteRange.to_string().starts_with(
            "generate() model has no range or list: it would produce 16387064 copies"
        ));
    }

    #[test]
    fn too_many_entries_are_refused_before_building_them() {
        let err = expand("{'name': 'n', 'ip': '10.0-15.0-255.0-255'}").expect_err("too many");
        match err {
            GenerateError::TooMany {
                key, entries, max, ..
            } => {
                assert_eq!(
                    (key.as_str(), entries, max),
                    ("ip", 16 * 256 * 256, MAX_ENTRIES)
                );
            }
            other => panic!("{other:?}"),
        }
        // A repeating scalar caps the length at eDeploy's 16387064.
        let err = expand("{'a': 1, 'b': '0-99999999'}").expect_err("too many");
        assert!(
            matches!(err, GenerateError::TooMany { ref key, entries: 16_387_064, .. } if key == "a"),
            "{err:?}"
        );
        // Far more than fits any integer type.
        let err = expand(&format!("{{'a': '0-{}'}}", "9".repeat(50))).expect_err("too many");
        assert!(
            matches!(
                err,
                GenerateError::TooMany {
                    entries: u128::MAX,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            expand("{'h': 'n1-1000001'}")
                .expect_err("too many")
                .to_string(),
            "generate() would produce 1000001 entries, more than the limit of 1000000: \
             key 'h' with value 'n1-1000001' has the fewest values"
        );
        assert_eq!(
            expand("{'h': '1-1000000'}").map(|v| v.len()).ok(),
            Some(MAX_ENTRIES)
        );
    }

    #[test]
    fn only_dicts_can_be_expanded() {
        let err = generate(&Value::List(vec![])).expect_err("not a dict");
        assert_eq!(err.to_string(), "generate() takes a dict, found list");
    }

    #[test]
    fn values_keep_their_types() {
        let out = expand("{'n': [1, 2.5, None, (1,), [3], {'k': 'v'}], 'x': 7, 'r': 'a1-6'}")
            .expect("expands");
        let kinds: Vec<&str> = out
            .iter()
            .filter_map(|e| e.dict_get("n").map(Value::type_name))
            .collect();
        assert_eq!(kinds, ["int", "float", "None", "tuple", "list", "dict"]);
        assert!(out
            .iter()
            .all(|e| matches!(e.dict_get("x"), Some(Value::Int(7)))));
    }

    fn expand_file(text: &str) -> Result<Vec<Value>, GenerateError> {
        expand_cmdb(&parse(text).expect("cmdb parses"))
    }

    #[test]
    fn cmdb_files_are_lists_generate_calls_or_sums() {
        let out = expand_file("[{'a': 1}] + generate({'b': '1-2'}) + []").expect("expands");
        assert_eq!(
            repr(&Value::List(out)),
            "[{'a': 1}, {'b': '1'}, {'b': '2'}]"
        );
        let out =
            expand_file("generate({'ip': '10.0.0.1-2'}) + generate({'n': [7]})").expect("expands");
        assert_eq!(
            repr(&Value::List(out)),
            "[{'ip': '10.0.0.1'}, {'ip': '10.0.0.2'}, {'n': 7}]"
        );
        // Literal entries are not expanded; repeated keys keep the last value.
        let out = expand_file("[{'h': 'n1-3', 'h': 'x1-2'}]").expect("expands");
        assert_eq!(repr(&Value::List(out)), "[{'h': 'x1-2'}]");
        assert!(expand_file("[]").expect("expands").is_empty());
        let chain = vec!["[{'a': 1}]"; 2000].join(" + ");
        assert_eq!(expand_file(&chain).expect("expands").len(), 2000);
    }

    #[test]
    fn bad_cmdb_files_say_where() {
        let cases: &[(&str, &str)] = &[
            ("'abc'", "1:1: a cmdb is a list of dicts"),
            ("{'a': 1}", "1:1: a cmdb is a list of dicts"),
            (
                "[{'a': 1},\n 2]",
                "2:2: a cmdb entry must be a dict, found int 2",
            ),
            ("range({'a': '1-2'})", "1:1: unknown function range()"),
            (
                "generate({'a': 1}, 'x')",
                "1:1: generate() takes one dict (the model), found 2 arguments",
            ),
            (
                "generate([{'a': 1}])",
                "1:10: generate() takes one dict (the model), found a list of 1",
            ),
            (
                "[] + generate({'a': 1})",
                "1:6: cannot expand this generate() call",
            ),
            (
                "[{'a': generate({})}]",
                "1:8: a function call (generate(...)) is not allowed here",
            ),
        ];
        for (text, expected) in cases {
            let err = expand_file(text).expect_err(text);
            assert!(err.to_string().starts_with(expected), "{text}: {err}");
        }
        let err = expand_file("generate({'a': 1})").expect_err("no range");
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            source.is_some_and(|s| s.contains("no range or list")),
            "{err:?}"
        );
    }

    /// The expected values of one `a-b:c-d` part, computed the obvious way.
    fn part_values(ranges: &[(u32, u32)]) -> Vec<u32> {
        ranges
            .iter()
            .flat_map(|&(a, b)| -> Vec<u32> {
                if a <= b {
                    (a..=b).collect()
                } else {
                    (b..=a).rev().collect()
                }
            })
            .collect()
    }

    fn part_text(ranges: &[(u32, u32)]) -> String {
        let pieces: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        pieces.join(":")
    }

    fn strings(entries: &[Value], key: &str) -> Vec<String> {
        entries
            .iter()
            .filter_map(|e| e.dict_get(key)?.as_str().map(str::to_owned))
            .collect()
    }

    fn expand_one(key: &str, text: String) -> Result<Vec<String>, TestCaseError> {
        let model = Value::Dict(vec![(Value::from(key), Value::Str(text))]);
        let entries = generate(&model).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let values = strings(&entries, key);
        prop_assert_eq!(values.len(), entries.len());
        Ok(values)
    }

    /// The number after `prefix` in `text`.
    fn number(prefix: char, text: &str) -> Result<u64, TestCaseError> {
        text.strip_prefix(prefix)
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(|| TestCaseError::fail(format!("{text:?} is not {prefix}<number>")))
    }

    /// `start`, `start ± 1`, ... `stop`.
    fn counting(start: u64, stop: u64) -> Vec<u64> {
        if start <= stop {
            (start..=stop).collect()
        } else {
            (stop..=start).rev().collect()
        }
    }

    fn check_numeric_range(n: u64, m: u64) -> Result<(), TestCaseError> {
        let names = expand_one("h", format!("p{n}-{m}"))?;
        prop_assert_eq!(names.len() as u64, n.abs_diff(m) + 1);
        let numbers = names
            .iter()
            .map(|name| number('p', name))
            .collect::<Result<Vec<_>, _>>()?;
        prop_assert_eq!(numbers, counting(n, m));
        Ok(())
    }

    fn check_ipv4_product(parts: &[Vec<(u32, u32)>]) -> Result<(), TestCaseError> {
        let text: Vec<String> = parts.iter().map(|p| part_text(p)).collect();
        let ips = expand_one("ip", text.join("."))?;
        let values: Vec<Vec<u32>> = parts.iter().map(|p| part_values(p)).collect();
        let lens: Vec<usize> = values.iter().map(Vec::len).collect();
        prop_assert_eq!(ips.len(), lens.iter().product::<usize>());
        for (i, ip) in ips.iter().enumerate() {
            // First part slowest: i is a mixed-radix number over the part lengths.
            let mut rest = i;
            let mut octets = [0u32; 4];
            for j in (0..4).rev() {
                octets[j] = values[j][rest % lens[j]];
                rest /= lens[j];
            }
            let [a, b, c, d] = octets;
            prop_assert_eq!(ip, &format!("{a}.{b}.{c}.{d}"));
        }
        Ok(())
    }

    fn check_zero_padding(width: usize, start: u64, stop: u64) -> Result<(), TestCaseError> {
        let names = expand_one("h", format!("h{start:0width$}-{stop}"))?;
        for name in &names {
            prop_assert_eq!(name.len(), width + 1, "{}", name);
        }
        let numbers = names
            .iter()
            .map(|name| number('h', name))
            .collect::<Result<Vec<_>, _>>()?;
        prop_assert_eq!(numbers, counting(start, stop));
        Ok(())
    }

    /// One IPv4 part: one to three `a-b` ranges of one to five numbers, either way.
    fn ipv4_part() -> impl Strategy<Value = Vec<(u32, u32)>> {
        let range = (0u32..300, 0u32..5, any::<bool>()).prop_map(|(a, len, down)| {
            if down {
                (a, a.saturating_sub(len))
            } else {
                (a, a + len)
            }
        });
        prop::collection::vec(range, 1..3)
    }

    proptest! {
        #[test]
        fn a_numeric_range_yields_each_number_in_order(n in 0u64..4000, m in 0u64..4000) {
            check_numeric_range(n, m)?;
        }

        #[test]
        fn an_ipv4_range_is_the_product_of_its_parts(
            parts in prop::collection::vec(ipv4_part(), 4),
        ) {
            check_ipv4_product(&parts)?;
        }

        #[test]
        fn zero_padding_keeps_the_width(
            width in 2usize..7,
            start in 0u64..1000,
            delta in 0u64..3000,
            down: bool,
        ) {
            // The padded start begins with '0'; the stop has at most `width` digits.
            let top = 10u64.pow(width as u32 - 1);
            let start = start % top;
            let stop = if down { start.saturating_sub(delta) } else { (start + delta).min(top * 10 - 1) };
            check_zero_padding(width, start, stop)?;
        }
    }
}
