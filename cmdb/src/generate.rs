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
#[derive(Debug, thiserror::Error)]
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
            if shortest.as_ref().is_none_or(|(_, _, best)| extent.len < best.len) {
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

/// The first `n` addresses of an IPv4 product, first part slowest.
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
                    let width = if first.starts_with('0') { first.len() } else { 0 };
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
            let sub = small.0.len().checked_sub(i + 1).map_or(0, |j| small.0[j] - b'0') + borrow;
            if *digit - b'0' >= sub {
                *digit -= sub;
                borrow = 0;
            } else {
                *digit = *digit + 10 - sub;
                borrow = 1;
            }
        }
        diff.iter().try_fold(0, |acc: Count, digit| {
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
