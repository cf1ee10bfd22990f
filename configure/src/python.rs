//! eDeploy's Python `.configure` scripts turned into Rhai configure scripts
//! (`rdeploy convert-configure`): pure text in, text and a line-by-line report out.
//!
//! The subset converted is the one eDeploy's own example scripts use: `var[...]`,
//! `run(...)`, `set_role(...)`, `config(path[, mode]).write(text)` and
//! `open('/chroot/...').write(text)`, `%` formatting (`%s`, `%d`, `%(key)s` against `var`,
//! `%%`), `for` over tuples and `range`, `if`/`elif`/`else`, `while`, `try`/`except`,
//! `print`, `ipmi.setup_user`/`ipmi.setup_network`, `sleep`, string methods (`replace`,
//! `strip`, `upper`, `lower`, `split`, `startswith`, `endswith`), `len`, `str`, `int`.
//!
//! What is not converted (eDeploy's `hpacucli` module, `subprocess`, functions, a `var`
//! entry assigned...) is reported with its line and a reason, and written into the output
//! as a comment followed by a `throw`: the converted script compiles, and a run stops at
//! the first line that still needs a person rather than carrying on without it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

// ---- tokens ------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Num(String),
    /// A string literal, decoded; `triple` when written with three quotes.
    Str(String),
    Op(&'static str),
    Newline,
    Indent,
    Dedent,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

/// A script that cannot even be read as Python (an unterminated string, a stray character,
/// inconsistent indentation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct PythonError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

const OPS: &[&str] = &[
    "**=", "//=", ">>=", "<<=", "!=", "==", "<=", ">=", "+=", "-=", "*=", "/=", "%=", "**", "//",
    "<<", ">>", "<>", "(", ")", "[", "]", "{", "}", ",", ":", ".", ";", "=", "+", "-", "*", "/",
    "%", "<", ">", "&", "|", "^", "~", "@", "`",
];

/// Full-line and trailing comments, by line.
#[derive(Debug, Default)]
struct Comments {
    /// `(line, text)` of lines holding only a comment.
    full: Vec<(usize, String)>,
    /// `(line, text)` of comments after code.
    trailing: Vec<(usize, String)>,
}

fn tokenize(file: &str, src: &str) -> Result<(Vec<Token>, Comments), PythonError> {
    let err = |line: usize, message: String| PythonError {
        file: file.to_owned(),
        line,
        message,
    };
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut comments = Comments::default();
    let mut indents = vec![0usize];
    let mut depth = 0usize; // open brackets
    let mut line = 1usize;
    let mut i = 0usize;
    let mut at_line_start = true;
    while i < chars.len() {
        if at_line_start && depth == 0 {
            // Measure indentation; skip blank and comment-only lines.
            let mut width = 0usize;
            let mut j = i;
            while j < chars.len() && (chars[j] == ' ' || chars[j] == '\t' || chars[j] == '\x0c') {
                width = if chars[j] == '\t' {
                    (width / 8 + 1) * 8
                } else {
                    width + 1
                };
                j += 1;
            }
            if j >= chars.len() {
                break;
            }
            if chars[j] == '\n' || chars[j] == '\r' {
                i = j + 1;
                if chars[j] == '\r' && chars.get(i) == Some(&'\n') {
                    i += 1;
                }
                line += 1;
                continue;
            }
            if chars[j] == '#' {
                let mut k = j;
                while k < chars.len() && chars[k] != '\n' {
                    k += 1;
                }
                let text: String = chars[j + 1..k].iter().collect();
                comments.full.push((line, text.trim_end().to_owned()));
                i = k;
                continue;
            }
            let current = indents.last().copied().unwrap_or(0);
            if width > current {
                indents.push(width);
                toks.push(Token {
                    tok: Tok::Indent,
                    line,
                });
            } else {
                while width < indents.last().copied().unwrap_or(0) {
                    indents.pop();
                    toks.push(Token {
                        tok: Tok::Dedent,
                        line,
                    });
                }
                if width != indents.last().copied().unwrap_or(0) {
                    return Err(err(
                        line,
                        "unindent does not match any outer indentation level".into(),
                    ));
                }
            }
            i = j;
            at_line_start = false;
        }
        let c = chars[i];
        match c {
            '\n' => {
                if depth == 0 {
                    toks.push(Token {
                        tok: Tok::Newline,
                        line,
                    });
                    at_line_start = true;
                }
                line += 1;
                i += 1;
            }
            '\r' => i += 1,
            ' ' | '\t' | '\x0c' => i += 1,
            '#' => {
                let mut k = i;
                while k < chars.len() && chars[k] != '\n' {
                    k += 1;
                }
                let text: String = chars[i + 1..k].iter().collect();
                comments.trailing.push((line, text.trim_end().to_owned()));
                i = k;
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                line += 1;
                i += 2;
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                toks.push(Token {
                    tok: Tok::Num(text),
                    line,
                });
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let is_prefix =
                    word.len() <= 2 && lower.chars().all(|c| matches!(c, 'r' | 'u' | 'b'));
                if is_prefix && matches!(chars.get(i), Some('\'' | '"')) {
                    let raw = lower.contains('r');
                    let start_line = line;
                    let (s, next, lines) =
                        string(&chars, i, raw).map_err(|m| err(start_line, m))?;
                    line += lines;
                    i = next;
                    push_str(&mut toks, s, start_line);
                } else {
                    toks.push(Token {
                        tok: Tok::Name(word),
                        line,
                    });
                }
            }
            '\'' | '"' => {
                let start_line = line;
                let (s, next, lines) = string(&chars, i, false).map_err(|m| err(start_line, m))?;
                line += lines;
                i = next;
                push_str(&mut toks, s, start_line);
            }
            _ => {
                let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
                let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                    return Err(err(line, format!("unexpected character {c:?}")));
                };
                match *op {
                    "(" | "[" | "{" => depth += 1,
                    ")" | "]" | "}" => depth = depth.saturating_sub(1),
                    _ => {}
                }
                toks.push(Token {
                    tok: Tok::Op(op),
                    line,
                });
                i += op.chars().count();
            }
        }
    }
    if !matches!(toks.last().map(|t| &t.tok), Some(Tok::Newline) | None) {
        toks.push(Token {
            tok: Tok::Newline,
            line,
        });
    }
    while indents.len() > 1 {
        indents.pop();
        toks.push(Token {
            tok: Tok::Dedent,
            line,
        });
    }
    toks.push(Token {
        tok: Tok::End,
        line,
    });
    Ok((toks, comments))
}

/// Adjacent string literals concatenate (`'a' 'b'`).
fn push_str(toks: &mut Vec<Token>, s: String, line: usize) {
    if let Some(Token {
        tok: Tok::Str(prev),
        ..
    }) = toks.last_mut()
    {
        prev.push_str(&s);
        return;
    }
    toks.push(Token {
        tok: Tok::Str(s),
        line,
    });
}

/// Reads a string literal starting at its opening quote: its value, the index after it, and
/// how many new lines it spanned.
fn string(chars: &[char], start: usize, raw: bool) -> Result<(String, usize, usize), String> {
    let q = chars[start];
    let triple = chars.get(start + 1) == Some(&q) && chars.get(start + 2) == Some(&q);
    let mut i = start + if triple { 3 } else { 1 };
    let mut out = String::new();
    let mut lines = 0usize;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("unterminated string".into());
        };
        if triple {
            if c == q && chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q) {
                return Ok((out, i + 3, lines));
            }
        } else if c == q {
            return Ok((out, i + 1, lines));
        } else if c == '\n' {
            return Err("end of line inside a string".into());
        }
        if c == '\n' {
            lines += 1;
        }
        if c == '\\' {
            let Some(&n) = chars.get(i + 1) else {
                return Err("unterminated string".into());
            };
            if raw {
                out.push('\\');
                out.push(n);
                if n == '\n' {
                    lines += 1;
                }
                i += 2;
                continue;
            }
            i += 2;
            match n {
                '\n' => lines += 1,
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                'x' => {
                    let hex: String = chars
                        .get(i..i + 2)
                        .map(|h| h.iter().collect())
                        .unwrap_or_default();
                    let v = u32::from_str_radix(&hex, 16)
                        .map_err(|_| format!("bad escape \\x{hex}"))?;
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    i += 2;
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
}

// ---- syntax tree -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Name(String),
    Num(String),
    Str(String),
    Tuple(Vec<Expr>),
    List(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    Call {
        func: Box<Expr>,
        args: Vec<Expr>,
        kwargs: Vec<(String, Expr)>,
    },
    Attr(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
    Unary(&'static str, Box<Expr>),
    /// `and`, `or`.
    Bool(&'static str, Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `==`, `in`, `not in`, `is`, ...
    Compare(&'static str, Box<Expr>, Box<Expr>),
    /// Anything parsed but with no Rhai form (`lambda`, slices, ...).
    Unsupported(String),
}

#[derive(Debug, Clone)]
enum StmtKind {
    Expr(Expr),
    Assign(Vec<Expr>, Expr),
    AugAssign(Expr, &'static str, Expr),
    Print(Vec<Expr>),
    Import(String),
    Pass,
    Break,
    Continue,
    For {
        target: Expr,
        iter: Expr,
        body: Vec<Stmt>,
    },
    If {
        branches: Vec<(Expr, Vec<Stmt>)>,
        orelse: Option<Vec<Stmt>>,
    },
    While {
        cond: Expr,
        body: Vec<Stmt>,
    },
    Try {
        body: Vec<Stmt>,
        handlers: Vec<(Option<String>, Vec<Stmt>)>,
    },
    /// Parsed far enough to skip, not converted: the reason.
    Unsupported(String),
}

#[derive(Debug, Clone)]
struct Stmt {
    kind: StmtKind,
    /// First and last source line.
    line: usize,
    end: usize,
}

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
}

type PResult<T> = Result<T, String>;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::End, |t| &t.tok)
    }

    fn line(&self) -> usize {
        self.toks.get(self.pos).map_or(0, |t| t.line)
    }

    fn prev_line(&self) -> usize {
        self.toks
            .get(self.pos.saturating_sub(1))
            .map_or(0, |t| t.line)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn is_name(&self, name: &str) -> bool {
        matches!(self.peek(), Tok::Name(n) if n == name)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_name(&mut self, name: &str) -> bool {
        if self.is_name(name) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> PResult<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(format!("expected '{op}'"))
        }
    }

    /// Skips to the end of the current logical line (error recovery).
    fn skip_line(&mut self) {
        while !matches!(self.peek(), Tok::Newline | Tok::End) {
            self.pos += 1;
        }
        self.eat_newline();
    }

    fn eat_newline(&mut self) {
        while matches!(self.peek(), Tok::Newline) {
            self.pos += 1;
        }
    }

    /// Statements until a dedent (or the end).
    fn block_body(&mut self) -> Vec<Stmt> {
        let mut out = Vec::new();
        loop {
            self.eat_newline();
            match self.peek() {
                Tok::Dedent => {
                    self.pos += 1;
                    return out;
                }
                Tok::End => return out,
                _ => out.extend(self.statement()),
            }
        }
    }

    fn program(&mut self) -> Vec<Stmt> {
        let mut out = Vec::new();
        loop {
            self.eat_newline();
            match self.peek() {
                Tok::End => return out,
                Tok::Dedent | Tok::Indent => {
                    self.pos += 1;
                }
                _ => out.extend(self.statement()),
            }
        }
    }

    /// The block after a `:`: an indented block, or simple statements on the same line.
    fn suite(&mut self) -> PResult<Vec<Stmt>> {
        self.expect_op(":")?;
        if matches!(self.peek(), Tok::Newline) {
            self.eat_newline();
            if !matches!(self.peek(), Tok::Indent) {
                return Err("expected an indented block".into());
            }
            self.pos += 1;
            Ok(self.block_body())
        } else {
            Ok(self.simple_line())
        }
    }

    /// Skips a block after a header that could not be parsed.
    fn skip_block(&mut self) {
        self.skip_line();
        if matches!(self.peek(), Tok::Indent) {
            self.pos += 1;
            let mut depth = 1usize;
            while depth > 0 {
                match self.next() {
                    Tok::Indent => depth += 1,
                    Tok::Dedent => depth -= 1,
                    Tok::End => return,
                    _ => {}
                }
            }
        }
    }

    fn statement(&mut self) -> Vec<Stmt> {
        let line = self.line();
        let compound = ["for", "if", "while", "try", "def", "class", "with"];
        let head = match self.peek() {
            Tok::Name(n) if compound.contains(&n.as_str()) => Some(n.clone()),
            Tok::Op("@") => Some("@".into()),
            _ => None,
        };
        let Some(head) = head else {
            return self.simple_line();
        };
        let start = self.pos;
        let result = match head.as_str() {
            "for" => self.for_stmt(),
            "if" => self.if_stmt(),
            "while" => self.while_stmt(),
            "try" => self.try_stmt(),
            other => Err(format!(
                "`{other}` blocks have no conversion (rewrite them with Rhai's fn, or inline them)"
            )),
        };
        match result {
            Ok(kind) => vec![Stmt {
                kind,
                line,
                end: self.prev_line(),
            }],
            Err(reason) => {
                self.pos = start;
                self.skip_block();
                vec![Stmt {
                    kind: StmtKind::Unsupported(reason),
                    line,
                    end: self.prev_line(),
                }]
            }
        }
    }

    fn for_stmt(&mut self) -> PResult<StmtKind> {
        self.next();
        let target = self.target_list()?;
        if !self.eat_name("in") {
            return Err("expected 'in'".into());
        }
        let iter = self.expr_list()?;
        let body = self.suite()?;
        if self.is_name("else") {
            return Err("`for ... else` has no conversion".into());
        }
        Ok(StmtKind::For { target, iter, body })
    }

    fn if_stmt(&mut self) -> PResult<StmtKind> {
        self.next();
        let mut branches = Vec::new();
        let cond = self.test()?;
        branches.push((cond, self.suite()?));
        let mut orelse = None;
        loop {
            self.eat_newline();
            if self.eat_name("elif") {
                let cond = self.test()?;
                branches.push((cond, self.suite()?));
            } else if self.eat_name("else") {
                orelse = Some(self.suite()?);
                break;
            } else {
                break;
            }
        }
        Ok(StmtKind::If { branches, orelse })
    }

    fn while_stmt(&mut self) -> PResult<StmtKind> {
        self.next();
        let cond = self.test()?;
        let body = self.suite()?;
        Ok(StmtKind::While { cond, body })
    }

    fn try_stmt(&mut self) -> PResult<StmtKind> {
        self.next();
        let body = self.suite()?;
        let mut handlers = Vec::new();
        loop {
            self.eat_newline();
            if self.eat_name("except") {
                let what = if self.is_op(":") {
                    None
                } else {
                    let e = self.test()?;
                    if self.eat_name("as") || self.eat_op(",") {
                        self.test()?;
                    }
                    Some(expr_text(&e))
                };
                handlers.push((what, self.suite()?));
            } else if self.is_name("finally") || self.is_name("else") {
                return Err("`try` with `finally` or `else` has no conversion".into());
            } else {
                break;
            }
        }
        if handlers.is_empty() {
            return Err("`try` without `except`".into());
        }
        Ok(StmtKind::Try { body, handlers })
    }

    /// Simple statements separated by `;`, up to the end of the line.
    fn simple_line(&mut self) -> Vec<Stmt> {
        let mut out = Vec::new();
        loop {
            let line = self.line();
            let start = self.pos;
            match self.simple() {
                Ok(kind) => out.push(Stmt {
                    kind,
                    line,
                    end: self.prev_line(),
                }),
                Err(reason) => {
                    self.pos = start;
                    self.skip_line();
                    out.push(Stmt {
                        kind: StmtKind::Unsupported(reason),
                        line,
                        end: self.prev_line(),
                    });
                    return out;
                }
            }
            if self.eat_op(";") && !matches!(self.peek(), Tok::Newline | Tok::End) {
                continue;
            }
            if !matches!(self.peek(), Tok::Newline | Tok::End | Tok::Dedent) {
                let line = self.line();
                self.skip_line();
                out.push(Stmt {
                    kind: StmtKind::Unsupported("unexpected text after the statement".into()),
                    line,
                    end: self.prev_line(),
                });
                return out;
            }
            self.eat_newline();
            return out;
        }
    }

    fn simple(&mut self) -> PResult<StmtKind> {
        match self.peek().clone() {
            Tok::Name(n)
                if n == "print"
                    && !matches!(
                        self.toks.get(self.pos + 1).map(|t| &t.tok),
                        Some(Tok::Op("=" | "." | "["))
                    ) =>
            {
                self.next();
                if self.eat_op(">>") {
                    return Err("`print >>file` has no conversion".into());
                }
                let mut args = Vec::new();
                while !matches!(self.peek(), Tok::Newline | Tok::End | Tok::Op(";")) {
                    args.push(self.test()?);
                    if !self.eat_op(",") {
                        break;
                    }
                }
                // print("a") is a parenthesized expression in Python 2: the same thing.
                if let [Expr::Tuple(items)] = args.as_slice() {
                    args = items.clone();
                }
                Ok(StmtKind::Print(args))
            }
            Tok::Name(n) if n == "import" || n == "from" => {
                let mut words = Vec::new();
                while !matches!(self.peek(), Tok::Newline | Tok::End | Tok::Op(";")) {
                    words.push(match self.next() {
                        Tok::Name(w) | Tok::Num(w) => w,
                        Tok::Op(o) => o.to_owned(),
                        _ => String::new(),
                    });
                }
                Ok(StmtKind::Import(
                    words.join(" ").replace(" . ", ".").replace(" ,", ","),
                ))
            }
            Tok::Name(n) if n == "pass" => {
                self.next();
                Ok(StmtKind::Pass)
            }
            Tok::Name(n) if n == "break" => {
                self.next();
                Ok(StmtKind::Break)
            }
            Tok::Name(n) if n == "continue" => {
                self.next();
                Ok(StmtKind::Continue)
            }
            Tok::Name(n)
                if [
                    "return", "global", "del", "raise", "assert", "exec", "yield", "nonlocal",
                    "lambda",
                ]
                .contains(&n.as_str()) =>
            {
                Err(format!("`{n}` has no conversion"))
            }
            _ => {
                let first = self.expr_list()?;
                if self.is_op("=") {
                    let mut targets = vec![first];
                    let mut value;
                    loop {
                        self.expect_op("=")?;
                        value = self.expr_list()?;
                        if self.is_op("=") {
                            targets.push(value);
                        } else {
                            break;
                        }
                    }
                    return Ok(StmtKind::Assign(targets, value));
                }
                for op in ["+=", "-=", "*=", "/=", "%="] {
                    if self.eat_op(op) {
                        let value = self.expr_list()?;
                        return Ok(StmtKind::AugAssign(first, op, value));
                    }
                }
                Ok(StmtKind::Expr(first))
            }
        }
    }

    /// `a, b` as a target.
    fn target_list(&mut self) -> PResult<Expr> {
        let mut items = vec![self.or_expr()?];
        let mut tuple = false;
        while self.eat_op(",") {
            tuple = true;
            if self.is_name("in") {
                break;
            }
            items.push(self.or_expr()?);
        }
        Ok(if tuple {
            Expr::Tuple(items)
        } else {
            items.remove(0)
        })
    }

    /// Expressions separated by commas (a tuple when there is a comma).
    fn expr_list(&mut self) -> PResult<Expr> {
        let mut items = vec![self.test()?];
        let mut tuple = false;
        while self.eat_op(",") {
            tuple = true;
            if matches!(
                self.peek(),
                Tok::Newline | Tok::End | Tok::Op("=" | ")" | ":" | ";")
            ) {
                break;
            }
            items.push(self.test()?);
        }
        Ok(if tuple {
            Expr::Tuple(items)
        } else {
            items.remove(0)
        })
    }

    fn test(&mut self) -> PResult<Expr> {
        if self.is_name("lambda") {
            return Err("`lambda` has no conversion".into());
        }
        let e = self.or_test()?;
        if self.is_name("if") {
            return Err("conditional expressions (`a if c else b`) have no conversion".into());
        }
        Ok(e)
    }

    fn or_test(&mut self) -> PResult<Expr> {
        let mut e = self.and_test()?;
        while self.eat_name("or") {
            e = Expr::Bool("||", Box::new(e), Box::new(self.and_test()?));
        }
        Ok(e)
    }

    fn and_test(&mut self) -> PResult<Expr> {
        let mut e = self.not_test()?;
        while self.eat_name("and") {
            e = Expr::Bool("&&", Box::new(e), Box::new(self.not_test()?));
        }
        Ok(e)
    }

    fn not_test(&mut self) -> PResult<Expr> {
        if self.eat_name("not") {
            return Ok(Expr::Not(Box::new(self.not_test()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let e = self.or_expr()?;
        let op: &'static str = match self.peek() {
            Tok::Op(o) if ["==", "!=", "<", ">", "<=", ">=", "<>"].contains(o) => {
                let o = *o;
                self.next();
                if o == "<>" {
                    "!="
                } else {
                    o
                }
            }
            Tok::Name(n) if n == "in" => {
                self.next();
                "in"
            }
            Tok::Name(n) if n == "not" => {
                self.next();
                if !self.eat_name("in") {
                    return Err("expected 'in' after 'not'".into());
                }
                "not in"
            }
            Tok::Name(n) if n == "is" => {
                self.next();
                if self.eat_name("not") {
                    "is not"
                } else {
                    "is"
                }
            }
            _ => return Ok(e),
        };
        let rhs = self.or_expr()?;
        if matches!(self.peek(), Tok::Op("==" | "!=" | "<" | ">" | "<=" | ">=")) {
            return Err("chained comparisons have no conversion".into());
        }
        Ok(Expr::Compare(op, Box::new(e), Box::new(rhs)))
    }

    fn or_expr(&mut self) -> PResult<Expr> {
        let mut e = self.arith()?;
        loop {
            let op = match self.peek() {
                Tok::Op(o @ ("|" | "^" | "&" | "<<" | ">>")) => *o,
                _ => return Ok(e),
            };
            self.next();
            e = Expr::Bin(op, Box::new(e), Box::new(self.arith()?));
        }
    }

    fn arith(&mut self) -> PResult<Expr> {
        let mut e = self.term()?;
        loop {
            let op = match self.peek() {
                Tok::Op(o @ ("+" | "-")) => *o,
                _ => return Ok(e),
            };
            self.next();
            e = Expr::Bin(op, Box::new(e), Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> PResult<Expr> {
        let mut e = self.factor()?;
        loop {
            let op = match self.peek() {
                Tok::Op(o @ ("*" | "/" | "%" | "//")) => *o,
                _ => return Ok(e),
            };
            self.next();
            e = Expr::Bin(op, Box::new(e), Box::new(self.factor()?));
        }
    }

    fn factor(&mut self) -> PResult<Expr> {
        match self.peek() {
            Tok::Op(o @ ("-" | "+" | "~")) => {
                let o = *o;
                self.next();
                Ok(Expr::Unary(o, Box::new(self.factor()?)))
            }
            _ => {
                let base = self.postfix()?;
                if self.eat_op("**") {
                    let exp = self.factor()?;
                    return Ok(Expr::Bin("**", Box::new(base), Box::new(exp)));
                }
                Ok(base)
            }
        }
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let mut e = self.atom()?;
        loop {
            if self.eat_op("(") {
                let mut args = Vec::new();
                let mut kwargs = Vec::new();
                while !self.is_op(")") {
                    if self.is_op("*") || self.is_op("**") {
                        return Err("`*args` / `**kwargs` in a call have no conversion".into());
                    }
                    let is_kw = matches!(self.peek(), Tok::Name(_))
                        && matches!(
                            self.toks.get(self.pos + 1).map(|t| &t.tok),
                            Some(Tok::Op("="))
                        );
                    if is_kw {
                        let Tok::Name(k) = self.next() else {
                            return Err("expected a keyword".into());
                        };
                        self.next();
                        kwargs.push((k, self.test()?));
                    } else {
                        args.push(self.test()?);
                    }
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.expect_op(")")?;
                e = Expr::Call {
                    func: Box::new(e),
                    args,
                    kwargs,
                };
            } else if self.eat_op("[") {
                let idx = self.expr_list_or_slice()?;
                self.expect_op("]")?;
                e = Expr::Index(Box::new(e), Box::new(idx));
            } else if self.eat_op(".") {
                let Tok::Name(n) = self.next() else {
                    return Err("expected a name after '.'".into());
                };
                e = Expr::Attr(Box::new(e), n);
            } else {
                return Ok(e);
            }
        }
    }

    fn expr_list_or_slice(&mut self) -> PResult<Expr> {
        if self.is_op(":") {
            while !self.is_op("]") && !matches!(self.peek(), Tok::End) {
                self.next();
            }
            return Ok(Expr::Unsupported("slices".into()));
        }
        let e = self.expr_list()?;
        if self.is_op(":") {
            while !self.is_op("]") && !matches!(self.peek(), Tok::End) {
                self.next();
            }
            return Ok(Expr::Unsupported("slices".into()));
        }
        Ok(e)
    }

    fn atom(&mut self) -> PResult<Expr> {
        match self.next() {
            Tok::Name(n) => Ok(Expr::Name(n)),
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Op("(") => {
                if self.eat_op(")") {
                    return Ok(Expr::Tuple(Vec::new()));
                }
                let mut items = vec![self.test()?];
                let mut tuple = false;
                while self.eat_op(",") {
                    tuple = true;
                    if self.is_op(")") {
                        break;
                    }
                    items.push(self.test()?);
                }
                if self.is_name("for") {
                    return Err("generator expressions have no conversion".into());
                }
                self.expect_op(")")?;
                Ok(if tuple {
                    Expr::Tuple(items)
                } else {
                    items.remove(0)
                })
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                while !self.is_op("]") {
                    items.push(self.test()?);
                    if self.is_name("for") {
                        return Err("list comprehensions have no conversion".into());
                    }
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.expect_op("]")?;
                Ok(Expr::List(items))
            }
            Tok::Op("{") => {
                let mut items = Vec::new();
                while !self.is_op("}") {
                    let k = self.test()?;
                    self.expect_op(":")?;
                    let v = self.test()?;
                    items.push((k, v));
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.expect_op("}")?;
                Ok(Expr::Dict(items))
            }
            Tok::Op("`") => Err("backquotes have no conversion".into()),
            other => Err(format!("unexpected {}", tok_text(&other))),
        }
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Name(n) | Tok::Num(n) => format!("'{n}'"),
        Tok::Str(_) => "a string".into(),
        Tok::Op(o) => format!("'{o}'"),
        Tok::Newline => "end of line".into(),
        Tok::Indent => "indentation".into(),
        Tok::Dedent => "end of block".into(),
        Tok::End => "end of file".into(),
    }
}

/// Why a name has no conversion, with the way to do it in rdeploy when there is one.
fn not_in_api(what: &str) -> String {
    let head = what.split(['.', '(']).next().unwrap_or(what);
    match head {
        "subprocess" | "os" | "system" | "commands" => format!(
            "`{what}` is not part of rdeploy's configure API (run(cmd) runs a command and returns its output, stopping the script if it fails; run_status(cmd) returns its status)"
        ),
        _ => format!("`{what}` is not part of rdeploy's configure API (docs/configure-api.md)"),
    }
}

/// A short Python rendering of an expression, for messages.
fn expr_text(e: &Expr) -> String {
    match e {
        Expr::Name(n) | Expr::Num(n) => n.clone(),
        Expr::Str(s) => format!("{s:?}"),
        Expr::Attr(b, n) => format!("{}.{n}", expr_text(b)),
        Expr::Call { func, .. } => format!("{}(...)", expr_text(func)),
        Expr::Index(b, i) => format!("{}[{}]", expr_text(b), expr_text(i)),
        Expr::Tuple(items) => {
            let parts: Vec<String> = items.iter().map(expr_text).collect();
            format!("({})", parts.join(", "))
        }
        _ => "...".into(),
    }
}

// ---- Rhai output -------------------------------------------------------------------------

/// What kind of report line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The line is not converted: a comment and a `throw` stand in its place.
    NotConverted,
    /// Converted, with a difference worth knowing.
    Note,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub severity: Severity,
    pub message: String,
    /// The Python source line.
    pub source: String,
}

/// A converted script and its report.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The Rhai script.
    pub rhai: String,
    /// In line order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Conversion {
    /// Whether every line was converted (notes allowed).
    pub fn complete(&self) -> bool {
        self.diagnostics
            .iter()
            .all(|d| d.severity == Severity::Note)
    }

    /// The report, one line per diagnostic: `FILE:LINE: not converted: REASON: SOURCE`.
    pub fn report(&self, file: &str) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            let what = match d.severity {
                Severity::NotConverted => "not converted",
                Severity::Note => "note",
            };
            let _ = writeln!(
                out,
                "{file}:{}: {what}: {}: {}",
                d.line,
                d.message,
                d.source.trim()
            );
        }
        out
    }
}

/// Words Rhai reserves: a Python variable of that name gets a `_` added.
const RHAI_RESERVED: &[&str] = &[
    "let",
    "const",
    "if",
    "else",
    "switch",
    "do",
    "while",
    "loop",
    "until",
    "for",
    "in",
    "continue",
    "break",
    "return",
    "throw",
    "try",
    "catch",
    "fn",
    "private",
    "import",
    "export",
    "as",
    "true",
    "false",
    "this",
    "is_def_fn",
    "is_def_var",
    "is_shared",
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "eval",
    "var",
    "global",
    "static",
    "shared",
    "goto",
    "exit",
    "match",
    "case",
    "public",
    "protected",
    "new",
    "use",
    "with",
    "module",
    "package",
    "super",
    "thread",
    "spawn",
    "go",
    "sync",
    "async",
    "await",
    "yield",
    "default",
    "void",
    "null",
    "nil",
];

fn ident(name: &str) -> String {
    if RHAI_RESERVED.contains(&name) {
        format!("{name}_")
    } else {
        name.to_owned()
    }
}

use crate::rhai_string as quoted;

/// A piece of a formatted string.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    /// A Rhai expression.
    Expr(String),
}

/// Text that can go in a Rhai backtick literal as it is (no escapes there).
fn backtick_safe(s: &str) -> bool {
    !s.contains('`')
        && !s.contains("${")
        && !s.contains('\\')
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
}

/// Pieces as one Rhai string expression: a backtick literal with `${...}` when the text
/// allows it (it keeps multi-line files readable), else `"..." + x + "..."`.
fn render_pieces(pieces: &[Piece]) -> String {
    let texts_ok = pieces.iter().all(|p| match p {
        Piece::Text(t) => backtick_safe(t),
        Piece::Expr(_) => true,
    });
    let multi_line = pieces
        .iter()
        .any(|p| matches!(p, Piece::Text(t) if t.contains('\n')));
    let has_expr = pieces.iter().any(|p| matches!(p, Piece::Expr(_)));
    if texts_ok && (has_expr || multi_line) {
        let mut out = String::from("`");
        for p in pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Expr(e) => {
                    let _ = write!(out, "${{{e}}}");
                }
            }
        }
        out.push('`');
        return out;
    }
    let kept: Vec<&Piece> = pieces
        .iter()
        .filter(|p| !matches!(p, Piece::Text(t) if t.is_empty()))
        .collect();
    let mut parts: Vec<String> = kept
        .iter()
        .map(|p| match p {
            Piece::Text(t) => quoted(t),
            Piece::Expr(e) => e.clone(),
        })
        .collect();
    // `"" + x` makes a string of whatever x is, as Python's `%s` did.
    if !matches!(kept.first(), Some(Piece::Text(_))) {
        parts.insert(0, "\"\"".into());
    }
    parts.join(" + ")
}

struct Emitter<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    out: String,
    diagnostics: Vec<Diagnostic>,
    declared: BTreeSet<String>,
    comments: Comments,
    /// Index of the next full-line comment to place.
    next_comment: usize,
    temp: usize,
}

impl Emitter<'_> {
    fn source(&self, line: usize) -> String {
        self.lines
            .get(line.saturating_sub(1))
            .map_or_else(String::new, |l| (*l).to_owned())
    }

    fn note(&mut self, line: usize, message: impl Into<String>) {
        let source = self.source(line);
        self.diagnostics.push(Diagnostic {
            line,
            severity: Severity::Note,
            message: message.into(),
            source,
        });
    }

    fn push(&mut self, indent: usize, text: &str) {
        for l in text.lines() {
            if l.is_empty() {
                self.out.push('\n');
            } else {
                let _ = writeln!(self.out, "{}{l}", "    ".repeat(indent));
            }
        }
        if text.is_empty() {
            self.out.push('\n');
        }
    }

    /// A statement's code, with the line's trailing comment.
    fn push_code(&mut self, indent: usize, code: &str, line: usize) {
        let trailing: Vec<String> = self
            .comments
            .trailing
            .iter()
            .filter(|(l, _)| *l == line)
            .map(|(_, t)| t.clone())
            .collect();
        let pad = "    ".repeat(indent);
        let mut lines: Vec<String> = code.lines().map(str::to_owned).collect();
        if let (Some(last), Some(c)) = (lines.last_mut(), trailing.first()) {
            let _ = write!(last, " //{c}");
        }
        for (i, l) in lines.iter().enumerate() {
            // Only the first line is indented: the others may be inside a backtick literal.
            if i == 0 {
                let _ = writeln!(self.out, "{pad}{l}");
            } else {
                let _ = writeln!(self.out, "{l}");
            }
        }
    }

    /// Full-line comments before `line`.
    fn comments_before(&mut self, line: usize, indent: usize) {
        while let Some((l, text)) = self.comments.full.get(self.next_comment).cloned() {
            if l >= line {
                break;
            }
            self.next_comment += 1;
            let t = text.trim_start();
            if t.starts_with("-*-") {
                continue;
            }
            self.push(indent, &format!("//{text}"));
        }
    }

    fn not_converted(&mut self, stmt_line: usize, end: usize, indent: usize, reason: &str) {
        let source = self.source(stmt_line);
        self.diagnostics.push(Diagnostic {
            line: stmt_line,
            severity: Severity::NotConverted,
            message: reason.to_owned(),
            source: source.clone(),
        });
        self.push(
            indent,
            &format!("// convert-configure: line {stmt_line} not converted: {reason}:"),
        );
        for l in stmt_line..=end.max(stmt_line) {
            let text = self.source(l);
            self.push(indent, &format!("//     {}", text.trim_end()));
        }
        self.push(
            indent,
            &format!(
                "throw {};",
                quoted(&format!(
                    "{}:{stmt_line} was not converted from Python: {}",
                    self.file,
                    source.trim()
                ))
            ),
        );
    }

    fn block(&mut self, stmts: &[Stmt], indent: usize) {
        for s in stmts {
            self.stmt(s, indent);
        }
    }

    /// Names assigned anywhere in these statements (for-loop targets apart).
    fn assigned(stmts: &[Stmt], out: &mut BTreeSet<String>) {
        fn targets(e: &Expr, out: &mut BTreeSet<String>) {
            match e {
                Expr::Name(n) => {
                    out.insert(n.clone());
                }
                Expr::Tuple(items) | Expr::List(items) => {
                    items.iter().for_each(|i| targets(i, out))
                }
                _ => {}
            }
        }
        for s in stmts {
            match &s.kind {
                StmtKind::Assign(ts, _) => ts.iter().for_each(|t| targets(t, out)),
                StmtKind::For { body, .. } | StmtKind::While { body, .. } => {
                    Emitter::assigned(body, out)
                }
                StmtKind::If { branches, orelse } => {
                    for (_, b) in branches {
                        Emitter::assigned(b, out);
                    }
                    if let Some(b) = orelse {
                        Emitter::assigned(b, out);
                    }
                }
                StmtKind::Try { body, handlers } => {
                    Emitter::assigned(body, out);
                    for (_, b) in handlers {
                        Emitter::assigned(b, out);
                    }
                }
                _ => {}
            }
        }
    }

    /// Declares, before a block statement, the names its body assigns (Python's variables
    /// live on after the block; Rhai's `let` would end with it).
    fn hoist(&mut self, body_names: BTreeSet<String>, indent: usize) {
        for n in body_names {
            if self.declared.insert(n.clone()) {
                self.push(indent, &format!("let {} = ();", ident(&n)));
            }
        }
    }

    fn stmt(&mut self, s: &Stmt, indent: usize) {
        self.comments_before(s.line, indent);
        let result = self.try_stmt(s, indent);
        if let Err(reason) = result {
            self.not_converted(s.line, s.end, indent, &reason);
        }
    }

    fn try_stmt(&mut self, s: &Stmt, indent: usize) -> Result<(), String> {
        match &s.kind {
            StmtKind::Unsupported(reason) => Err(reason.clone()),
            StmtKind::Pass => {
                self.push_code(indent, "// pass", s.line);
                Ok(())
            }
            StmtKind::Break => {
                self.push_code(indent, "break;", s.line);
                Ok(())
            }
            StmtKind::Continue => {
                self.push_code(indent, "continue;", s.line);
                Ok(())
            }
            StmtKind::Import(what) => {
                self.note(s.line, format!("`{what}` dropped: Rhai scripts import nothing (the configure API is always there)"));
                Ok(())
            }
            StmtKind::Print(args) => {
                let code = if args.is_empty() {
                    "print(\"\");".to_owned()
                } else {
                    let mut pieces = Vec::new();
                    for (i, a) in args.iter().enumerate() {
                        if i > 0 {
                            pieces.push(Piece::Text(" ".into()));
                        }
                        pieces.extend(self.pieces_of(a, s.line)?);
                    }
                    format!("print({});", render_pieces(&pieces))
                };
                self.push_code(indent, &code, s.line);
                Ok(())
            }
            StmtKind::Expr(e) => {
                let code = self.expr(e, s.line)?;
                self.push_code(indent, &format!("{code};"), s.line);
                Ok(())
            }
            StmtKind::AugAssign(t, op, v) => {
                let t = self.target(t)?;
                let v = self.expr(v, s.line)?;
                self.push_code(indent, &format!("{t} {op} {v};"), s.line);
                Ok(())
            }
            StmtKind::Assign(targets, value) => self.assign(targets, value, s.line, indent),
            StmtKind::For { target, iter, body } => {
                let mut names = BTreeSet::new();
                Emitter::assigned(body, &mut names);
                self.hoist(names, indent);
                let it = match iter {
                    Expr::Tuple(items) | Expr::List(items) => {
                        let parts: Result<Vec<String>, String> =
                            items.iter().map(|i| self.expr(i, s.line)).collect();
                        format!("[{}]", parts?.join(", "))
                    }
                    other => self.expr(other, s.line)?,
                };
                match target {
                    Expr::Name(n) => {
                        self.push_code(indent, &format!("for {} in {it} {{", ident(n)), s.line);
                    }
                    Expr::Tuple(items) => {
                        self.temp += 1;
                        let tmp = format!("py_item{}", self.temp);
                        self.push_code(indent, &format!("for {tmp} in {it} {{"), s.line);
                        for (i, item) in items.iter().enumerate() {
                            let Expr::Name(n) = item else {
                                return Err("only names can be unpacked in a `for`".into());
                            };
                            self.push(indent + 1, &format!("let {} = {tmp}[{i}];", ident(n)));
                        }
                    }
                    _ => return Err("only names can be the target of a `for`".into()),
                }
                self.block(body, indent + 1);
                self.push(indent, "}");
                Ok(())
            }
            StmtKind::While { cond, body } => {
                let mut names = BTreeSet::new();
                Emitter::assigned(body, &mut names);
                self.hoist(names, indent);
                let c = self.expr(cond, s.line)?;
                self.push_code(indent, &format!("while {c} {{"), s.line);
                self.block(body, indent + 1);
                self.push(indent, "}");
                Ok(())
            }
            StmtKind::If { branches, orelse } => {
                let mut names = BTreeSet::new();
                Emitter::assigned(std::slice::from_ref(s), &mut names);
                self.hoist(names, indent);
                let conds: Result<Vec<String>, String> =
                    branches.iter().map(|(c, _)| self.expr(c, s.line)).collect();
                let conds = conds?;
                for (i, ((_, body), c)) in branches.iter().zip(conds).enumerate() {
                    if i == 0 {
                        self.push_code(indent, &format!("if {c} {{"), s.line);
                    } else {
                        self.push(indent, &format!("}} else if {c} {{"));
                    }
                    self.block(body, indent + 1);
                }
                if let Some(body) = orelse {
                    self.push(indent, "} else {");
                    self.block(body, indent + 1);
                }
                self.push(indent, "}");
                Ok(())
            }
            StmtKind::Try { body, handlers } => {
                let mut names = BTreeSet::new();
                Emitter::assigned(std::slice::from_ref(s), &mut names);
                self.hoist(names, indent);
                if handlers.len() > 1 {
                    return Err("`try` with several `except` clauses has no conversion".into());
                }
                self.push_code(indent, "try {", s.line);
                self.block(body, indent + 1);
                self.push(indent, "} catch (err) {");
                if let Some((Some(what), _)) = handlers.first() {
                    self.note(
                        s.line,
                        format!("`except {what}` catches every error in Rhai"),
                    );
                }
                if let Some((_, body)) = handlers.first() {
                    self.block(body, indent + 1);
                }
                self.push(indent, "}");
                Ok(())
            }
        }
    }

    fn target(&mut self, t: &Expr) -> Result<String, String> {
        match t {
            Expr::Name(n) => Ok(ident(n)),
            Expr::Index(base, _) if matches!(base.as_ref(), Expr::Name(n) if n == "var") => Err(
                "`var` is read-only in rdeploy: copy it first (`let v = var;`) and use the copy"
                    .into(),
            ),
            Expr::Index(base, idx) => {
                let b = self.target(base)?;
                let i = self.expr(idx, 0)?;
                Ok(format!("{b}[{i}]"))
            }
            _ => Err("this assignment target has no conversion".into()),
        }
    }

    fn assign(
        &mut self,
        targets: &[Expr],
        value: &Expr,
        line: usize,
        indent: usize,
    ) -> Result<(), String> {
        let v = self.expr(value, line)?;
        let mut code = Vec::new();
        let (value_name, rest) = match targets {
            [Expr::Tuple(items)] => {
                self.temp += 1;
                let tmp = format!("py_tuple{}", self.temp);
                code.push(format!("let {tmp} = {v};"));
                for (i, item) in items.iter().enumerate() {
                    let t = self.target(item)?;
                    code.push(self.bind(item, &t, &format!("{tmp}[{i}]")));
                }
                for (i, c) in code.iter().enumerate() {
                    if i == 0 {
                        self.push_code(indent, c, line);
                    } else {
                        self.push(indent, c);
                    }
                }
                return Ok(());
            }
            [first, rest @ ..] => (first, rest),
            [] => return Err("nothing to assign to".into()),
        };
        let t = self.target(value_name)?;
        code.push(self.bind(value_name, &t, &v));
        for other in rest {
            let o = self.target(other)?;
            code.push(self.bind(other, &o, &t));
        }
        // The first binding may hold a multi-line literal: its lines stay as they are.
        for (i, c) in code.iter().enumerate() {
            if i == 0 {
                self.push_code(indent, c, line);
            } else {
                self.push(indent, c);
            }
        }
        Ok(())
    }

    /// `let x = v;` the first time a name is assigned, `x = v;` after.
    fn bind(&mut self, target: &Expr, rendered: &str, value: &str) -> String {
        match target {
            Expr::Name(n) if self.declared.insert(n.clone()) => {
                format!("let {rendered} = {value};")
            }
            _ => format!("{rendered} = {value};"),
        }
    }

    /// The pieces of a string expression (a literal, `%` formatting, or any expression).
    fn pieces_of(&mut self, e: &Expr, line: usize) -> Result<Vec<Piece>, String> {
        match e {
            Expr::Str(s) => Ok(vec![Piece::Text(s.clone())]),
            Expr::Bin("%", fmt, args) if matches!(fmt.as_ref(), Expr::Str(_)) => {
                let Expr::Str(f) = fmt.as_ref() else {
                    return Err("format".into());
                };
                self.format(f, args, line)
            }
            other => Ok(vec![Piece::Expr(self.expr(other, line)?)]),
        }
    }

    /// Python's `FORMAT % ARGS`.
    fn format(&mut self, fmt: &str, args: &Expr, line: usize) -> Result<Vec<Piece>, String> {
        let positional: Vec<&Expr> = match args {
            Expr::Tuple(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut next = 0usize;
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            let mut key = None;
            if chars.peek() == Some(&'(') {
                chars.next();
                let mut k = String::new();
                loop {
                    match chars.next() {
                        Some(')') => break,
                        Some(ch) => k.push(ch),
                        None => return Err(format!("bad format {fmt:?}")),
                    }
                }
                key = Some(k);
            }
            let mut spec = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_ascii_digit() || matches!(ch, '-' | '+' | ' ' | '#' | '.') {
                    spec.push(ch);
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(conv) = chars.next() else {
                return Err(format!("bad format {fmt:?}"));
            };
            if conv == '%' {
                text.push('%');
                continue;
            }
            if !matches!(conv, 's' | 'd' | 'i' | 'r' | 'u') {
                return Err(format!("the format %{spec}{conv} has no conversion"));
            }
            if !spec.is_empty() {
                return Err(format!(
                    "the format %{spec}{conv} (width or flags) has no conversion"
                ));
            }
            let value = match key {
                Some(k) => match args {
                    Expr::Name(n) if n == "var" => format!("var[{}]", quoted(&k)),
                    Expr::Dict(items) => {
                        let found = items
                            .iter()
                            .find(|(kk, _)| matches!(kk, Expr::Str(s) if *s == k));
                        match found {
                            Some((_, v)) => self.expr(v, line)?,
                            None => return Err(format!("%({k})s: no such key in the dict")),
                        }
                    }
                    Expr::Name(other) => format!("{}[{}]", ident(other), quoted(&k)),
                    _ => return Err("`%(key)s` against this value has no conversion".into()),
                },
                None => {
                    let Some(a) = positional.get(next) else {
                        return Err(format!("not enough values for the format {fmt:?}"));
                    };
                    next += 1;
                    match a {
                        Expr::Num(n) => {
                            text.push_str(n);
                            continue;
                        }
                        Expr::Str(s) if conv != 'r' => {
                            text.push_str(s);
                            continue;
                        }
                        other => self.expr(other, line)?,
                    }
                }
            };
            pieces.push(Piece::Text(std::mem::take(&mut text)));
            pieces.push(Piece::Expr(value));
        }
        pieces.push(Piece::Text(text));
        Ok(pieces)
    }

    fn expr(&mut self, e: &Expr, line: usize) -> Result<String, String> {
        Ok(match e {
            Expr::Name(n) => match n.as_str() {
                "True" => "true".into(),
                "False" => "false".into(),
                "None" => "()".into(),
                "var" => "var".into(),
                other => ident(other),
            },
            Expr::Num(n) => {
                let t = n.trim_end_matches(['L', 'l']);
                if t.len() > 1 && t.starts_with('0') && t.bytes().all(|b| b.is_ascii_digit()) {
                    format!("0o{}", &t[1..])
                } else {
                    t.to_owned()
                }
            }
            Expr::Str(s) => render_pieces(&[Piece::Text(s.clone())]),
            Expr::Tuple(items) | Expr::List(items) => {
                let parts: Result<Vec<String>, String> =
                    items.iter().map(|i| self.expr(i, line)).collect();
                format!("[{}]", parts?.join(", "))
            }
            Expr::Dict(items) => {
                let mut parts = Vec::new();
                for (k, v) in items {
                    let Expr::Str(k) = k else {
                        return Err("dict keys other than strings have no conversion".into());
                    };
                    parts.push(format!("{}: {}", quoted(k), self.expr(v, line)?));
                }
                format!("#{{{}}}", parts.join(", "))
            }
            Expr::Index(base, idx) => {
                let b = self.expr(base, line)?;
                let i = self.expr(idx, line)?;
                format!("{b}[{i}]")
            }
            Expr::Bin("%", fmt, args) if matches!(fmt.as_ref(), Expr::Str(_)) => {
                let Expr::Str(f) = fmt.as_ref() else {
                    return Err("format".into());
                };
                let pieces = self.format(f, args, line)?;
                render_pieces(&pieces)
            }
            Expr::Bin(op, l, r) => {
                // Python 2's `//` and `/` on integers are both Rhai's `/`.
                let op = if *op == "//" { "/" } else { *op };
                let l = self.operand(l, line)?;
                let r = self.operand(r, line)?;
                format!("{l} {op} {r}")
            }
            Expr::Unary(op, x) => {
                if *op == "~" {
                    return Err("the operator `~` has no conversion".into());
                }
                format!("{op}{}", self.operand(x, line)?)
            }
            Expr::Bool(op, l, r) => {
                format!("{} {op} {}", self.operand(l, line)?, self.operand(r, line)?)
            }
            Expr::Not(x) => format!("!{}", self.operand(x, line)?),
            Expr::Compare(op, l, r) => {
                let ls = self.operand(l, line)?;
                let rs = self.operand(r, line)?;
                match *op {
                    "in" => format!("{ls} in {rs}"),
                    "not in" => format!("!({ls} in {rs})"),
                    "is" => format!("{ls} == {rs}"),
                    "is not" => format!("{ls} != {rs}"),
                    other => format!("{ls} {other} {rs}"),
                }
            }
            Expr::Attr(base, name) => {
                return Err(not_in_api(&format!("{}.{name}", expr_text(base))))
            }
            Expr::Call { func, args, kwargs } => self.call(func, args, kwargs, line)?,
            Expr::Unsupported(what) => return Err(format!("{what} have no conversion")),
        })
    }

    /// An operand of an operator: parenthesized when it is itself an operation.
    fn operand(&mut self, e: &Expr, line: usize) -> Result<String, String> {
        let s = self.expr(e, line)?;
        Ok(match e {
            Expr::Bin(..) | Expr::Bool(..) | Expr::Compare(..) | Expr::Not(_) | Expr::Unary(..) => {
                format!("({s})")
            }
            _ => s,
        })
    }

    fn args(&mut self, args: &[Expr], line: usize) -> Result<Vec<String>, String> {
        args.iter().map(|a| self.expr(a, line)).collect()
    }

    /// A value given as an int where the configure API wants one (IPMI channels):
    /// `parse_int(x.to_string())` unless it is a literal.
    fn int_arg(&mut self, e: &Expr, line: usize) -> Result<String, String> {
        match e {
            Expr::Num(_) => self.expr(e, line),
            Expr::Str(s) if s.parse::<i64>().is_ok() => Ok(s.clone()),
            other => Ok(format!(
                "parse_int({}.to_string())",
                self.operand(other, line)?
            )),
        }
    }

    fn call(
        &mut self,
        func: &Expr,
        args: &[Expr],
        kwargs: &[(String, Expr)],
        line: usize,
    ) -> Result<String, String> {
        let name = match func {
            Expr::Name(n) => Some(n.as_str()),
            _ => None,
        };
        let is_sleep = name == Some("sleep")
            || matches!(func, Expr::Attr(b, n) if n == "sleep" && matches!(b.as_ref(), Expr::Name(m) if m == "time"));
        let no_kwargs = |what: &str| -> Result<(), String> {
            match kwargs.first() {
                Some((k, _)) => Err(format!("{what}({k}=...) has no conversion")),
                None => Ok(()),
            }
        };
        match (name, func) {
            (Some("run"), _) => {
                no_kwargs("run")?;
                let [cmd] = args else {
                    return Err("run() takes one command".into());
                };
                Ok(format!("run({})", self.expr(cmd, line)?))
            }
            (Some("set_role"), _) => {
                no_kwargs("set_role")?;
                let a = self.args(args, line)?;
                if a.len() != 3 {
                    return Err("set_role() takes a role, a version and a disk".into());
                }
                Ok(format!("set_role({})", a.join(", ")))
            }
            (Some("config"), _) => {
                let path = args.first().ok_or("config() needs a path")?;
                let mode = args
                    .get(1)
                    .or_else(|| kwargs.iter().find(|(k, _)| k == "mode").map(|(_, v)| v));
                match mode {
                    None | Some(Expr::Str(_)) => {}
                    Some(_) => return Err("config() with a computed mode has no conversion".into()),
                }
                if matches!(mode, Some(Expr::Str(m)) if m.starts_with('a')) {
                    self.note(line, "mode='a' (append) is a whole file in rdeploy: a second config() of the same path replaces it");
                }
                Ok(format!("config({})", self.expr(path, line)?))
            }
            (Some("open"), _) => {
                let path = match args.first() {
                    Some(Expr::Str(p)) => p.clone(),
                    _ => return Err("open() of a computed path has no conversion".into()),
                };
                let mode = args
                    .get(1)
                    .or_else(|| kwargs.iter().find(|(k, _)| k == "mode").map(|(_, v)| v));
                if !matches!(mode, Some(Expr::Str(m)) if m.starts_with('w') || m.starts_with('a')) {
                    return Err(
                        "open() for reading has no conversion (the configure API writes files)"
                            .into(),
                    );
                }
                let target = path
                    .strip_prefix("/chroot")
                    .or_else(|| path.strip_prefix("/post_rsync"))
                    .filter(|p| p.starts_with('/'))
                    .ok_or("open() writes a file of the installer, not of the installed system; rdeploy's config() writes the installed system's")?;
                self.note(
                    line,
                    format!("open({path:?}) is config({target:?}): a file of the installed system"),
                );
                Ok(format!("config({})", quoted(target)))
            }
            _ if is_sleep => {
                let [secs] = args else {
                    return Err("sleep() takes one duration".into());
                };
                let secs = match secs {
                    Expr::Num(n) => quoted(&format!("sleep {n}")),
                    other => format!("\"sleep \" + {}", self.operand(other, line)?),
                };
                Ok(format!("run({secs})"))
            }
            (Some("range"), _) => {
                let a = self.args(args, line)?;
                match a.as_slice() {
                    [n] => Ok(format!("range(0, {n})")),
                    [a, b] => Ok(format!("range({a}, {b})")),
                    [a, b, s] => Ok(format!("range({a}, {b}, {s})")),
                    _ => Err("range() takes 1 to 3 numbers".into()),
                }
            }
            (Some("len"), _) => {
                let [x] = args else {
                    return Err("len() takes one value".into());
                };
                Ok(format!("{}.len()", self.operand(x, line)?))
            }
            (Some("str"), _) => {
                let [x] = args else {
                    return Err("str() takes one value".into());
                };
                Ok(format!("{}.to_string()", self.operand(x, line)?))
            }
            (Some("int"), _) => {
                let [x] = args else {
                    return Err("int() with a base has no conversion".into());
                };
                self.int_arg(x, line)
            }
            (None, Expr::Attr(base, method)) => self.method(base, method, args, kwargs, line),
            (Some(other), _) => Err(not_in_api(&format!("{other}()"))),
            (None, _) => Err("this call has no conversion".into()),
        }
    }

    fn method(
        &mut self,
        base: &Expr,
        method: &str,
        args: &[Expr],
        kwargs: &[(String, Expr)],
        line: usize,
    ) -> Result<String, String> {
        // Modules of eDeploy's configure environment.
        if let Expr::Name(module) = base {
            match (module.as_str(), method) {
                ("ipmi", "setup_user") => {
                    let [ch, user, pw] = args else {
                        return Err("ipmi.setup_user() takes a channel, a user and a password".into());
                    };
                    let ch = self.int_arg(ch, line)?;
                    return Ok(format!(
                        "ipmi_user({ch}, {}, {})",
                        self.expr(user, line)?,
                        self.expr(pw, line)?
                    ));
                }
                ("ipmi", "setup_network") => {
                    let [ch, ip, mask, gw] = args else {
                        return Err("ipmi.setup_network() takes a channel, an address, a netmask and a gateway".into());
                    };
                    let ch = self.int_arg(ch, line)?;
                    return Ok(format!(
                        "ipmi_network({ch}, {}, {}, {})",
                        self.expr(ip, line)?,
                        self.expr(mask, line)?,
                        self.expr(gw, line)?
                    ));
                }
                ("hpacucli" | "cli", _) => {
                    return Err(format!(
                        "`{module}.{method}`: eDeploy's HP Smart Array module is not in rdeploy (run(\"ssacli ...\") drives the controller; raid(...) makes software RAID)"
                    ))
                }
                ("subprocess" | "os", _) => return Err(not_in_api(&format!("{module}.{method}"))),
                _ => {}
            }
        }
        if !kwargs.is_empty() {
            return Err(format!(
                ".{method}() with keyword arguments has no conversion"
            ));
        }
        let recv = self.operand(base, line)?;
        let a = self.args(args, line)?;
        let block = |body: String| format!("{{ let py_s = {recv}; {body}; py_s }}");
        Ok(match (method, a.as_slice()) {
            ("write", [text]) => format!("{recv}.write({text})"),
            ("replace", [from, to]) => block(format!("py_s.replace({from}, {to})")),
            ("strip", []) => block("py_s.trim()".into()),
            ("rstrip" | "lstrip", []) => {
                self.note(line, format!(".{method}() trims both ends in Rhai"));
                block("py_s.trim()".into())
            }
            ("upper", []) => format!("{recv}.to_upper()"),
            ("lower", []) => format!("{recv}.to_lower()"),
            ("split", [sep]) => format!("{recv}.split({sep})"),
            ("startswith", [p]) => format!("{recv}.starts_with({p})"),
            ("endswith", [p]) => format!("{recv}.ends_with({p})"),
            ("append", [x]) => format!("{recv}.push({x})"),
            ("keys", []) => format!("{recv}.keys()"),
            ("has_key", [k]) => format!("({k} in {recv})"),
            _ => {
                return Err(format!(
                    "`.{method}()` ({}) has no conversion",
                    expr_text(base)
                ))
            }
        })
    }
}

/// Converts an eDeploy Python configure script to Rhai. `file` names it in the output and
/// the report. An `Err` is a file that cannot be read as Python at all; anything else
/// converts, with the lines that did not reported in [`Conversion::diagnostics`].
pub fn convert(file: &str, source: &str) -> Result<Conversion, PythonError> {
    let (toks, comments) = tokenize(file, source)?;
    let stmts = Parser {
        toks: &toks,
        pos: 0,
    }
    .program();
    let mut e = Emitter {
        file,
        lines: source.lines().collect(),
        out: String::new(),
        diagnostics: Vec::new(),
        declared: BTreeSet::new(),
        comments,
        next_comment: 0,
        temp: 0,
    };
    e.block(&stmts, 0);
    e.comments_before(usize::MAX, 0);
    let mut diagnostics = e.diagnostics;
    diagnostics.sort_by_key(|d| d.line);
    let missing = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::NotConverted)
        .count();
    let mut head = format!(
        "// Converted from {file} (an eDeploy Python configure script) by `rdeploy convert-configure`.\n"
    );
    if missing > 0 {
        let _ = writeln!(
            head,
            "// {missing} statement(s) could not be converted: each is kept below as a comment followed by\n// a `throw`, so a run stops there until it is rewritten (docs/configure-api.md)."
        );
    }
    head.push('\n');
    Ok(Conversion {
        rhai: head + e.out.trim_start_matches('\n'),
        diagnostics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(src: &str) -> Conversion {
        match convert("t.configure", src) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn body(c: &Conversion) -> String {
        c.rhai
            .lines()
            .filter(|l| !l.starts_with("// Converted") && !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn formats_loops_and_calls() {
        let c = conv(
            "bootable_disk = '/dev/' + var['disk']\nfor disk, path in ((bootable_disk, '/chroot'), ):\n    run('parted -s %s mklabel msdos' % disk)\n    run('mkfs.ext4 %s%d' % (disk, 1))\nset_role('base', 'U12.04-F.1.0.0', bootable_disk)\n",
        );
        assert!(c.complete(), "{:?}", c.diagnostics);
        assert_eq!(
            body(&c),
            "let bootable_disk = \"/dev/\" + var[\"disk\"];\nfor py_item1 in [[bootable_disk, \"/chroot\"]] {\n    let disk = py_item1[0];\n    let path = py_item1[1];\n    run(`parted -s ${disk} mklabel msdos`);\n    run(`mkfs.ext4 ${disk}1`);\n}\nset_role(\"base\", \"U12.04-F.1.0.0\", bootable_disk);"
        );
    }

    #[test]
    fn multi_line_files_keep_their_layout() {
        let c =
            conv("config('/etc/hostname', mode='a').write('''\n%(hostname)s 100%%\n''' % var)\n");
        assert_eq!(
            body(&c),
            "config(\"/etc/hostname\").write(`\n${var[\"hostname\"]} 100%\n`);"
        );
        assert_eq!(c.diagnostics.len(), 1);
        assert_eq!(c.diagnostics[0].severity, Severity::Note);
        let c = conv("config('/etc/fstab').write('%s1 /var ext4 defaults 0 2\\n' % disk2)\n");
        assert_eq!(
            body(&c),
            "config(\"/etc/fstab\").write(`${disk2}1 /var ext4 defaults 0 2\n`);"
        );
        // Text a backtick literal cannot hold is concatenated.
        let c = conv("run('echo \\\\%s `x`' % y)\n");
        assert_eq!(body(&c), "run(\"echo \\\\\" + y + \" `x`\");");
    }

    #[test]
    fn what_cannot_be_converted_is_reported_and_throws() {
        let c = conv("import subprocess\ncli = hpacucli.Cli(debug=True)\ntry:\n    print '# x'\n    cli.ctrl_delete(slot)\nexcept:\n    print 'failed'\n");
        assert!(!c.complete());
        let report = c.report("t.configure");
        assert!(
            report.contains("t.configure:1: note: `import subprocess` dropped"),
            "{report}"
        );
        assert!(
            report.contains("t.configure:2: not converted: `hpacucli.Cli`"),
            "{report}"
        );
        assert!(
            report.contains("t.configure:5: not converted: `cli.ctrl_delete`"),
            "{report}"
        );
        assert!(c.rhai.contains("throw \"t.configure:2 was not converted from Python: cli = hpacucli.Cli(debug=True)\";"), "{}", c.rhai);
        assert!(c.rhai.contains("try {\n    print(\"# x\");"), "{}", c.rhai);
        assert!(
            c.rhai
                .contains("} catch (err) {\n    print(\"failed\");\n}"),
            "{}",
            c.rhai
        );
    }

    #[test]
    fn if_elif_else_and_names_assigned_in_blocks() {
        let c = conv("if var['disk'] == 'sda' and not 'x' in var:\n    d = 1\nelif var['disk'] in ('vda', 'sdb'):\n    d = 2\nelse:\n    d = 3\nrun('echo %d' % d)\n");
        assert!(c.complete(), "{:?}", c.diagnostics);
        assert_eq!(
            body(&c),
            "let d = ();\nif (var[\"disk\"] == \"sda\") && (!(\"x\" in var)) {\n    d = 1;\n} else if var[\"disk\"] in [\"vda\", \"sdb\"] {\n    d = 2;\n} else {\n    d = 3;\n}\nrun(`echo ${d}`);"
        );
    }

    #[test]
    fn unreadable_python_is_an_error_with_its_line() {
        let err = convert("t.configure", "run('x')\nrun('unterminated)\n").err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("t.configure:2: end of line inside a string")
        );
    }
}
