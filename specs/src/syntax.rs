//! The eDeploy file syntax: a reader for the Python-literal subset (plus JSON) with
//! line/column positions. Writing back is [`Value`]'s Python `repr` ([`to_python`],
//! [`to_python_lines`], defined in [`crate::value`]): Python literals eDeploy's own tools
//! read back.
//!
//! The reader builds a [`Node`] tree so that callers can report *where* a badly shaped
//! entry sits (a 3-tuple in a specs file, a quota that is not a number). `generate(...)`
//! calls and `+` concatenation, which eDeploy CMDB files use, are kept as nodes; plain
//! value files reject them through [`Node::to_value`].

use crate::value::Value;
use std::fmt;

/// The writer lives with [`Value`] (its Python `repr`); callers that read and write eDeploy
/// files find it here as well.
pub use crate::value::{to_python, to_python_lines};

/// A position in a file, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A syntax error: where, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// A parsed expression with its position.
#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

/// What a [`Node`] is.
#[derive(Clone, Debug)]
pub enum NodeKind {
    Value(Value),
    Tuple(Vec<Node>),
    List(Vec<Node>),
    Dict(Vec<(Node, Node)>),
    /// `name(args...)`, as in `generate({...})`.
    Call {
        name: String,
        args: Vec<Node>,
    },
    /// `left + right`.
    Add(Box<Node>, Box<Node>),
}

impl Node {
    /// The plain value of this node; calls and `+` are errors here.
    pub fn to_value(&self) -> Result<Value, SyntaxError> {
        Ok(match &self.kind {
            NodeKind::Value(v) => v.clone(),
            NodeKind::Tuple(items) => Value::Tuple(nodes_to_values(items)?),
            NodeKind::List(items) => Value::List(nodes_to_values(items)?),
            NodeKind::Dict(items) => Value::Dict(
                items
                    .iter()
                    .map(|(k, v)| Ok((k.to_key()?, v.to_value()?)))
                    .collect::<Result<_, SyntaxError>>()?,
            ),
            NodeKind::Call { name, .. } => {
                return Err(SyntaxError {
                    pos: self.pos,
                    message: format!("a function call ({name}(...)) is not allowed here"),
                })
            }
            NodeKind::Add(..) => {
                return Err(SyntaxError {
                    pos: self.pos,
                    message: "an expression with '+' is not allowed here".into(),
                })
            }
        })
    }

    /// A dict key: a value Python can hash (a list or a dict, even inside a tuple, is
    /// refused as `literal_eval` refuses it, so nothing read here is unreadable there).
    fn to_key(&self) -> Result<Value, SyntaxError> {
        let key = self.to_value()?;
        if hashable(&key) {
            Ok(key)
        } else {
            Err(SyntaxError {
                pos: self.pos,
                message: format!(
                    "a dict key must be a string, a number, True, False, None or a tuple of those (Python cannot hash {})",
                    self.describe()
                ),
            })
        }
    }

    /// The elements when this node is a list or a tuple.
    pub fn seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Tuple(v) | NodeKind::List(v) => Some(v),
            _ => None,
        }
    }

    /// A short description of what the node is, for error messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Value(v) => format!("{} {}", v.type_name(), truncate(&to_python(v), 40)),
            NodeKind::Tuple(v) => format!("a {}-tuple", v.len()),
            NodeKind::List(v) => format!("a list of {}", v.len()),
            NodeKind::Dict(_) => "a dict".into(),
            NodeKind::Call { name, .. } => format!("a call to {name}()"),
            NodeKind::Add(..) => "a '+' expression".into(),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}

/// Whether Python can hash the value (use it as a dict key).
fn hashable(v: &Value) -> bool {
    match v {
        Value::List(_) | Value::Dict(_) => false,
        Value::Tuple(items) => items.iter().all(hashable),
        _ => true,
    }
}

fn nodes_to_values(items: &[Node]) -> Result<Vec<Value>, SyntaxError> {
    items.iter().map(Node::to_value).collect()
}

/// Parses a whole file: one expression, then only blanks and comments.
///
/// JSON is read as JSON (a file that starts with `[` or `{` and is valid JSON); anything
/// else goes through the Python-literal reader, which also accepts `true`, `false`, `null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(text) {
            return Ok(json_node(&j, first_pos(text)));
        }
    }
    let mut p = Parser::new(text);
    p.skip_blanks();
    if p.at_end() {
        return Err(p.error("the file is empty: expected a Python literal"));
    }
    let node = p.expr()?;
    p.skip_blanks();
    if !p.at_end() {
        return Err(p.error(&format!(
            "unexpected {} after the end of the value",
            p.describe_here()
        )));
    }
    Ok(node)
}

/// Parses a file into a plain value (no calls).
pub fn parse_value(text: &str) -> Result<Value, SyntaxError> {
    parse(text)?.to_value()
}

fn first_pos(text: &str) -> Pos {
    let mut pos = Pos { line: 1, col: 1 };
    for c in text.chars() {
        if c == '\n' {
            pos.line += 1;
            pos.col = 1;
        } else if c.is_whitespace() {
            pos.col += 1;
        } else {
            break;
        }
    }
    pos
}

fn json_node(j: &serde_json::Value, pos: Pos) -> Node {
    use serde_json::Value as J;
    // serde_json does not give positions; elements inherit the file's start position
    // (JSON files come from programs, not hands, and are valid here by construction).
    let kind = match j {
        J::Array(a) => NodeKind::List(a.iter().map(|e| json_node(e, pos)).collect()),
        J::Object(o) => NodeKind::Dict(
            o.iter()
                .map(|(k, v)| {
                    (
                        Node {
                            pos,
                            kind: NodeKind::Value(Value::Str(k.clone())),
                        },
                        json_node(v, pos),
                    )
                })
                .collect(),
        ),
        other => NodeKind::Value(Value::from_json(other)),
    };
    Node { pos, kind }
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset.
    at: usize,
    line: u32,
    col: u32,
    depth: u32,
}

const MAX_DEPTH: u32 = 200;

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            at: 0,
            line: 1,
            col: 1,
            depth: 0,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError {
            pos: self.pos(),
            message: message.to_owned(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn at_end(&self) -> bool {
        self.at >= self.src.len()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn describe_here(&self) -> String {
        match self.peek() {
            None => "end of file".into(),
            Some(c) if c.is_control() => format!("character {c:?}"),
            Some(c) => format!("'{c}'"),
        }
    }

    /// Skips blanks, newlines, comments and backslash line continuations.
    fn skip_blanks(&mut self) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else if c == '\\' && matches!(self.peek2(), Some('\n' | '\r')) {
                self.bump();
                if self.peek() == Some('\r') {
                    self.bump();
                }
                if self.peek() == Some('\n') {
                    self.bump();
                }
            } else if c.is_whitespace() || c == '\u{feff}' {
                self.bump();
            } else {
                break;
            }
        }
    }

    fn expr(&mut self) -> Result<Node, SyntaxError> {
        let mut left = self.unary()?;
        loop {
            self.skip_blanks();
            if self.peek() == Some('+') {
                let pos = self.pos();
                self.bump();
                self.skip_blanks();
                let right = self.unary()?;
                left = Node {
                    pos,
                    kind: NodeKind::Add(Box::new(left), Box::new(right)),
                };
            } else {
                return Ok(left);
            }
        }
    }

    /// A value with any number of signs before it (`-5`, `- -5`, `+1.5`). Signs are read in
    /// a loop (a long run of them is no deeper than one), and a sign before a literal
    /// number is part of it, so `-9223372036854775808` (i64's minimum) reads back.
    fn unary(&mut self) -> Result<Node, SyntaxError> {
        self.skip_blanks();
        let pos = self.pos();
        let mut neg = false;
        let mut signed = false;
        while let Some(c @ ('-' | '+')) = self.peek() {
            self.bump();
            neg ^= c == '-';
            signed = true;
            self.skip_blanks();
        }
        if !signed {
            return self.atom();
        }
        let number_follows = match self.peek() {
            Some(c) if c.is_ascii_digit() => true,
            Some('.') => self.peek2().is_some_and(|d| d.is_ascii_digit()),
            _ => false,
        };
        if number_follows {
            return self.number(pos, neg);
        }
        let inner = self.atom()?;
        let value = match inner.kind {
            NodeKind::Value(Value::Int(i)) if neg => {
                Value::Int(i.checked_neg().ok_or_else(|| SyntaxError {
                    pos,
                    message: "integer out of range".into(),
                })?)
            }
            NodeKind::Value(Value::Float(f)) if neg => Value::Float(-f),
            NodeKind::Value(v @ (Value::Int(_) | Value::Float(_))) => v,
            _ => {
                return Err(SyntaxError {
                    pos,
                    message: "a sign must be followed by a number".into(),
                })
            }
        };
        Ok(value_node(pos, value))
    }

    fn atom(&mut self) -> Result<Node, SyntaxError> {
        self.skip_blanks();
        let pos = self.pos();
        let Some(c) = self.peek() else {
            return Err(self.error("unexpected end of file: expected a value"));
        };
        match c {
            '[' => {
                self.enter()?;
                self.bump();
                let items = self.sequence(']')?;
                self.depth -= 1;
                Ok(Node {
                    pos,
                    kind: NodeKind::List(items.0),
                })
            }
            '(' => {
                self.enter()?;
                self.bump();
                let (items, trailing_comma) = self.sequence(')')?;
                self.depth -= 1;
                if items.len() == 1 && !trailing_comma {
                    let mut only = items
                        .into_iter()
                        .next()
                        .ok_or_else(|| self.error("empty"))?;
                    only.pos = pos;
                    Ok(only)
                } else {
                    Ok(Node {
                        pos,
                        kind: NodeKind::Tuple(items),
                    })
                }
            }
            '{' => {
                self.enter()?;
                self.bump();
                let items = self.dict()?;
                self.depth -= 1;
                Ok(Node {
                    pos,
                    kind: NodeKind::Dict(items),
                })
            }
            '\'' | '"' => self.strings(pos),
            c if c.is_ascii_digit()
                || (c == '.' && self.peek2().is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.number(pos, false)
            }
            c if c.is_alphabetic() || c == '_' => {
                let word = self.word();
                // String prefixes: r'', u'', b'', rb'' ...
                if matches!(self.peek(), Some('\'' | '"'))
                    && word.len() <= 2
                    && word.chars().all(|c| "rRuUbB".contains(c))
                {
                    return self.strings_with_prefix(pos, &word);
                }
                match word.as_str() {
                    "True" | "true" => Ok(value_node(pos, Value::Bool(true))),
                    "False" | "false" => Ok(value_node(pos, Value::Bool(false))),
                    "None" | "null" => Ok(value_node(pos, Value::None)),
                    _ => {
                        self.skip_blanks();
                        if self.peek() == Some('(') {
                            self.enter()?;
                            self.bump();
                            let (args, _) = self.sequence(')')?;
                            self.depth -= 1;
                            Ok(Node {
                                pos,
                                kind: NodeKind::Call { name: word, args },
                            })
                        } else {
                            Err(SyntaxError {
                                pos,
                                message: format!(
                                    "unknown name '{word}': expected a value (a quoted string, a number, True, False, None, a list, a tuple or a dict)"
                                ),
                            })
                        }
                    }
                }
            }
            _ => Err(self.error(&format!(
                "unexpected {}: expected a value",
                self.describe_here()
            ))),
        }
    }

    /// End of file inside a bracket opened at `open_pos`.
    fn unclosed(&self, open: char, open_pos: Pos) -> SyntaxError {
        SyntaxError {
            pos: self.pos(),
            message: format!(
                "unexpected end of file: '{open}' opened at {open_pos} is never closed"
            ),
        }
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting is too deep"));
        }
        Ok(())
    }

    fn word(&mut self) -> String {
        let mut w = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                w.push(c);
                self.bump();
            } else {
                break;
            }
        }
        w
    }

    /// Elements up to `close`; returns them and whether a trailing comma was seen.
    fn sequence(&mut self, close: char) -> Result<(Vec<Node>, bool), SyntaxError> {
        let open_pos = Pos {
            line: self.line,
            col: self.col - 1,
        };
        let mut items = Vec::new();
        let mut trailing = false;
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Err(self.unclosed(opening(close), open_pos)),
                Some(c) if c == close => {
                    self.bump();
                    return Ok((items, trailing));
                }
                _ => {}
            }
            items.push(self.expr()?);
            trailing = false;
            self.skip_blanks();
            match self.peek() {
                Some(',') => {
                    self.bump();
                    trailing = true;
                }
                Some(c) if c == close => {}
                None => return Err(self.unclosed(opening(close), open_pos)),
                Some(_) => {
                    return Err(self.error(&format!(
                        "expected ',' or '{close}', found {}",
                        self.describe_here()
                    )))
                }
            }
        }
    }

    fn dict(&mut self) -> Result<Vec<(Node, Node)>, SyntaxError> {
        let open_pos = Pos {
            line: self.line,
            col: self.col - 1,
        };
        let mut items = Vec::new();
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Err(self.unclosed('{', open_pos)),
                Some('}') => {
                    self.bump();
                    return Ok(items);
                }
                _ => {}
            }
            let key = self.expr()?;
            self.skip_blanks();
            if self.peek() != Some(':') {
                return Err(self.error(&format!(
                    "expected ':' after a dict key, found {}",
                    self.describe_here()
                )));
            }
            self.bump();
            let value = self.expr()?;
            items.push((key, value));
            self.skip_blanks();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {}
                None => return Err(self.unclosed('{', open_pos)),
                Some(_) => {
                    return Err(self.error(&format!(
                        "expected ',' or '}}', found {}",
                        self.describe_here()
                    )))
                }
            }
        }
    }

    /// A number literal; `neg` when a `-` came before it (applied before the range check).
    fn number(&mut self, pos: Pos, neg: bool) -> Result<Node, SyntaxError> {
        let start = self.at;
        let rest = self.rest();
        let radix = if rest.len() > 1 && rest.starts_with('0') {
            match rest.as_bytes()[1] {
                b'x' | b'X' => 16,
                b'o' | b'O' => 8,
                b'b' | b'B' => 2,
                _ => 10,
            }
        } else {
            10
        };
        if radix != 10 {
            self.bump();
            self.bump();
            let digits_start = self.at;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.bump();
            }
            let digits: String = self.src[digits_start..self.at].replace('_', "");
            let digits = if neg { format!("-{digits}") } else { digits };
            return i64::from_str_radix(&digits, radix)
                .map(|i| value_node(pos, Value::Int(i)))
                .map_err(|_| SyntaxError {
                    pos,
                    message: format!("invalid number '{}'", &self.src[start..self.at]),
                });
        }
        let mut is_float = false;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || c == '_' {
                self.bump();
            } else if c == '.' && !is_float {
                is_float = true;
                self.bump();
            } else if (c == 'e' || c == 'E')
                && (self
                    .peek2()
                    .is_some_and(|d| d.is_ascii_digit() || d == '+' || d == '-'))
            {
                is_float = true;
                self.bump();
                if matches!(self.peek(), Some('+' | '-')) {
                    self.bump();
                }
            } else {
                break;
            }
        }
        if self.peek().is_some_and(|c| c.is_alphanumeric()) {
            let c = self.peek().unwrap_or(' ');
            return Err(self.error(&format!("invalid character '{c}' in a number")));
        }
        let text = &self.src[start..self.at];
        let clean = text.replace('_', "");
        if clean.contains("__") || text.ends_with('_') {
            return Err(SyntaxError {
                pos,
                message: format!("invalid number '{text}'"),
            });
        }
        if is_float {
            clean
                .parse::<f64>()
                .map(|f| value_node(pos, Value::Float(if neg { -f } else { f })))
                .map_err(|_| SyntaxError {
                    pos,
                    message: format!("invalid number '{text}'"),
                })
        } else {
            if clean.len() > 1 && clean.starts_with('0') && clean.bytes().any(|b| b != b'0') {
                return Err(SyntaxError {
                    pos,
                    message: format!(
                        "invalid number '{text}': leading zeros are not allowed (quote it as a string)"
                    ),
                });
            }
            let signed = if neg { format!("-{clean}") } else { clean };
            signed
                .parse::<i64>()
                .map(|i| value_node(pos, Value::Int(i)))
                .map_err(|_| SyntaxError {
                    pos,
                    message: format!("integer '{text}' is out of range"),
                })
        }
    }

    /// One or more adjacent string literals (Python concatenates them).
    fn strings(&mut self, pos: Pos) -> Result<Node, SyntaxError> {
        self.strings_with_prefix(pos, "")
    }

    fn strings_with_prefix(&mut self, pos: Pos, prefix: &str) -> Result<Node, SyntaxError> {
        let mut out = String::new();
        let mut prefix = prefix.to_owned();
        loop {
            let raw = prefix.contains(['r', 'R']);
            self.string_literal(raw, &mut out)?;
            // Adjacent literal?
            let save = (self.at, self.line, self.col);
            self.skip_blanks();
            match self.peek() {
                Some('\'' | '"') => prefix.clear(),
                Some(c) if "rRuUbB".contains(c) => {
                    let wsave = (self.at, self.line, self.col);
                    let w = self.word();
                    if w.len() <= 2
                        && w.chars().all(|c| "rRuUbB".contains(c))
                        && matches!(self.peek(), Some('\'' | '"'))
                    {
                        prefix = w;
                    } else {
                        (self.at, self.line, self.col) = wsave;
                        (self.at, self.line, self.col) = save;
                        break;
                    }
                }
                _ => {
                    (self.at, self.line, self.col) = save;
                    break;
                }
            }
        }
        Ok(value_node(pos, Value::Str(out)))
    }

    fn string_literal(&mut self, raw: bool, out: &mut String) -> Result<(), SyntaxError> {
        let start = self.pos();
        let quote = self.bump().ok_or_else(|| self.error("expected a string"))?;
        let triple = self.peek() == Some(quote) && self.peek2() == Some(quote);
        if triple {
            self.bump();
            self.bump();
        }
        loop {
            let Some(c) = self.bump() else {
                return Err(SyntaxError {
                    pos: start,
                    message: "unterminated string: the closing quote is missing".into(),
                });
            };
            if c == quote {
                if !triple {
                    return Ok(());
                }
                if self.peek() == Some(quote) && self.peek2() == Some(quote) {
                    self.bump();
                    self.bump();
                    return Ok(());
                }
                out.push(c);
            } else if c == '\n' && !triple {
                return Err(SyntaxError {
                    pos: start,
                    message: "unterminated string: the line ends before the closing quote".into(),
                });
            } else if c == '\\' {
                if raw {
                    out.push('\\');
                    if let Some(n) = self.bump() {
                        out.push(n);
                    }
                } else {
                    self.escape(out)?;
                }
            } else {
                out.push(c);
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let pos = self.pos();
        let Some(c) = self.bump() else {
            return Err(self.error("unterminated string"));
        };
        match c {
            '\n' => {}
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '0'..='7' => {
                let mut n = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            n = n * 8 + d;
                            self.bump();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(n).unwrap_or('\u{fffd}'));
            }
            'x' | 'u' | 'U' => {
                let len = match c {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut n: u32 = 0;
                for _ in 0..len {
                    let d =
                        self.peek()
                            .and_then(|d| d.to_digit(16))
                            .ok_or_else(|| SyntaxError {
                                pos,
                                message: format!(
                                    "truncated \\{c} escape: expected {len} hex digits"
                                ),
                            })?;
                    n = n * 16 + d;
                    self.bump();
                }
                // A surrogate pair written as two \u escapes (JSON style).
                if (0xD800..0xDC00).contains(&n) && self.rest().starts_with("\\u") {
                    let hex = self.rest().get(2..6).unwrap_or("");
                    if let Ok(low) = u32::from_str_radix(hex, 16) {
                        if (0xDC00..0xE000).contains(&low) {
                            for _ in 0..6 {
                                self.bump();
                            }
                            n = 0x10000 + ((n - 0xD800) << 10) + (low - 0xDC00);
                        }
                    }
                }
                out.push(char::from_u32(n).ok_or_else(|| SyntaxError {
                    pos,
                    message: format!("invalid character code \\{c}{n:x}"),
                })?);
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        Ok(())
    }
}

fn opening(close: char) -> char {
    match close {
        ']' => '[',
        ')' => '(',
        _ => '{',
    }
}

fn value_node(pos: Pos, v: Value) -> Node {
    Node {
        pos,
        kind: NodeKind::Value(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        match parse_value(text) {
            Ok(v) => v,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn reads_the_literal_subset() {
        assert_eq!(
            v("[('disk', 'sda', 'size', '100'), ('cpu', 'logical', 'number', 8),]"),
            Value::List(vec![
                Value::Tuple(vec![
                    "disk".into(),
                    "sda".into(),
                    "size".into(),
                    "100".into()
                ]),
                Value::Tuple(vec![
                    "cpu".into(),
                    "logical".into(),
                    "number".into(),
                    8.into()
                ]),
            ])
        );
        assert_eq!(v("(1,)"), Value::Tuple(vec![1.into()]));
        assert_eq!(v("(1)"), Value::Int(1));
        assert_eq!(v("-5"), Value::Int(-5));
        assert_eq!(v("1.5e3"), Value::Float(1500.0));
        assert_eq!(v("0x1f"), Value::Int(31));
        assert_eq!(v("1_000"), Value::Int(1000));
        assert_eq!(
            v("[True, False, None]").to_json().to_string(),
            "[true,false,null]"
        );
    }

    #[test]
    fn reads_strings_like_python() {
        assert_eq!(v(r#"'a\'b'"#), Value::from("a'b"));
        assert_eq!(v(r#""it's""#), Value::from("it's"));
        assert_eq!(v(r"'\x41\n\t\101'"), Value::from("A\n\tA"));
        assert_eq!(v(r"r'\d+'"), Value::from("\\d+"));
        assert_eq!(v(r"u'caf\xe9'"), Value::from("café"));
        assert_eq!(v("'ab' 'cd'"), Value::from("abcd"));
        assert_eq!(v("'''a\nb'''"), Value::from("a\nb"));
        assert_eq!(v(r"'\q'"), Value::from("\\q"));
        assert_eq!(v(r#""\ud83d\ude00""#), Value::from("😀"));
    }

    #[test]
    fn comments_and_continuations_are_blanks() {
        let text = "# state of the lab\n[('hp', 4),  # four left\n ('vm', '*')]\n";
        assert_eq!(
            v(text),
            Value::List(vec![
                Value::Tuple(vec!["hp".into(), 4.into()]),
                Value::Tuple(vec!["vm".into(), "*".into()]),
            ])
        );
    }

    #[test]
    fn json_is_accepted() {
        assert_eq!(
            v(r#"[["disk", "sda", "size", "10"], ["a", "b", "c", 2]]"#)
                .to_json()
                .to_string(),
            r#"[["disk","sda","size","10"],["a","b","c",2]]"#
        );
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = parse("[('a', 'b',\n  'c', 'd'\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        assert!(e.message.contains("opened at 1:2"), "{}", e.message);
        let e = parse("[('a' 'b' x)]").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 11 });
        assert!(e.message.contains("expected ',' or ')'"), "{}", e.message);
        let e = parse("{'a': 1, 'b' 2}").unwrap_err();
        assert!(e.message.contains("expected ':'"), "{}", e.message);
        let e = parse("[1, 2] 3").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 8 });
        let e = parse("'abc").unwrap_err();
        assert!(e.message.contains("unterminated"), "{}", e.message);
        let e = parse("").unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = parse("[foo]").unwrap_err();
        assert!(e.message.contains("unknown name 'foo'"), "{}", e.message);
    }

    #[test]
    fn calls_are_nodes_but_not_values() {
        let node = parse("generate({'ip': '10.0.0.1-3'})").unwrap();
        assert!(matches!(node.kind, NodeKind::Call { ref name, .. } if name == "generate"));
        assert!(node.to_value().is_err());
        let node = parse("[{'a': 1}] + generate({'b': '1-2'})").unwrap();
        assert!(matches!(node.kind, NodeKind::Add(..)));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(10_000);
        assert!(parse(&text).unwrap_err().message.contains("too deep"));
        // Python's parser stops at 200 nested brackets too.
        let ok = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(201), "]".repeat(201));
        assert!(parse(&deep).is_err());
        // A long run of signs is read in a loop, not by recursion.
        let signs = format!("{}5", "-".repeat(1_000_000));
        assert_eq!(v(&signs), Value::Int(5));
    }

    #[test]
    fn extreme_numbers_read_back() {
        assert_eq!(v("-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(v("- 9223372036854775807"), Value::Int(-i64::MAX));
        assert_eq!(v("-0x8000000000000000"), Value::Int(i64::MIN));
        assert!(parse("9223372036854775808").is_err());
        assert!(parse("--9223372036854775808").is_err());
        assert_eq!(v("-(5)"), Value::Int(-5));
        assert_eq!(v("1e999"), Value::Float(f64::INFINITY));
        assert_eq!(v("-1e999"), Value::Float(f64::NEG_INFINITY));
        assert!(parse("-'a'").is_err());
    }

    #[test]
    fn dict_keys_python_cannot_hash_are_refused_where_they_are() {
        let e = parse_value("{'a': 1,\n [1]: 2}").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 2 });
        assert!(e.message.contains("cannot hash a list"), "{}", e.message);
        assert!(parse_value("{(1, [2]): 3}").is_err());
        assert!(parse_value("{(1, (2, 'x')): 3, None: 1, 1.5: 2}").is_ok());
    }
}
