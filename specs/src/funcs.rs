//! The test functions of specs files (`gt ge lt le range network regexp in not and or`)
//! with eDeploy's calling convention.
//!
//! A spec element such as `and(gt(1), lt(5))` is a call when it has the shape
//! `name(first[, rest...])`. The inventory value is passed first (the *implicit*
//! argument), quotes are stripped from every argument, and an argument that itself looks
//! like a call of a known function is evaluated with the same implicit value. Numbers are
//! parsed the way Python's `float()` parses them, addresses the way `ipaddress` does, and
//! regular expressions are searched (unanchored) like `re.search`.
//!
//! Where eDeploy raises an exception (a non-number given to `gt`, a bad network, a wrong
//! argument count), evaluation returns [`EvalError`]; the matcher treats the element as not
//! matching and `rdeploy check` reports it.

use crate::value::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A known function name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Gt,
    Ge,
    Lt,
    Le,
    Range,
    Network,
    Regexp,
    In,
    Not,
    And,
    Or,
    /// `extract_result(x)`: eDeploy's internal helper is reachable from specs; it returns
    /// its (evaluated) argument.
    ExtractResult,
    /// Names that exist inside eDeploy's matcher module but raise when called from a spec
    /// (`adder`, `appender`, `call_func`, `FUNC_REGEXP`, module dunders).
    Raises,
}

impl Func {
    /// The function for a name as written before `(`; `None` when eDeploy does not know it.
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "gt" => Func::Gt,
            "ge" => Func::Ge,
            "lt" => Func::Lt,
            "le" => Func::Le,
            "range" => Func::Range,
            "network" => Func::Network,
            "regexp" => Func::Regexp,
            "in" => Func::In,
            "not" => Func::Not,
            "and" => Func::And,
            "or" => Func::Or,
            "extract_result" => Func::ExtractResult,
            "adder" | "appender" | "call_func" | "FUNC_REGEXP" | "_name__" | "_doc__"
            | "_package__" | "_loader__" | "_spec__" | "_file__" | "_cached__" | "_builtins__" => {
                Func::Raises
            }
            _ => return None,
        })
    }

    /// The public names, for `--help` and suggestions.
    pub const NAMES: &'static [&'static str] = &[
        "gt", "ge", "lt", "le", "range", "network", "regexp", "in", "not", "and", "or",
    ];
}

/// Why a function call raised in eDeploy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// A parsed call: `name(arg, ...)` with the arguments as written (quotes stripped).
#[derive(Clone, Debug)]
pub struct Call {
    pub name: String,
    pub func: Func,
    pub args: Vec<Arg>,
    /// Pre-parsed constant arguments for the common shapes (`gt(500)`, `in(a, b)`).
    fast: Option<Fast>,
}

/// A call whose explicit arguments are constants, evaluated without allocating.
#[derive(Clone, Debug)]
enum Fast {
    Compare(Func, f64),
    Range(f64, f64),
    In,
    Regexp,
    Network(u32, u32),
}

impl Fast {
    fn for_call(func: Func, args: &[Arg]) -> Option<Fast> {
        if args.iter().any(|a| a.call.is_some()) {
            return None;
        }
        let num = |i: usize| args.get(i).and_then(|a| python_float(&a.text));
        match (func, args.len()) {
            (Func::Gt | Func::Ge | Func::Lt | Func::Le, 1) => Some(Fast::Compare(func, num(0)?)),
            (Func::Range, 2) => Some(Fast::Range(num(0)?, num(1)?)),
            (Func::In, _) => Some(Fast::In),
            (Func::Regexp, 1) => Some(Fast::Regexp),
            (Func::Network, 1) => {
                let (net, prefix) = ipv4_network(&Obj::Str(args[0].text.as_str().into())).ok()?;
                Some(Fast::Network(net, prefix))
            }
            _ => None,
        }
    }
}

/// One explicit argument.
#[derive(Clone, Debug)]
pub struct Arg {
    pub text: String,
    /// Set when the text is itself a call of a known function.
    pub call: Option<Call>,
    /// The compiled pattern, when this argument is used as a `regexp` pattern.
    regex: OnceLock<Result<Arc<Pattern>, String>>,
}

/// The shape eDeploy recognises as a call.
fn call_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // `\n?\z` stands for Python's `$`, which also matches before a final newline.
        regex::Regex::new(r"^([^(]+)\(\s*([^,]+)(?:\s*,\s*(.+))?\)\n?\z")
            .expect("the call pattern is valid")
    })
}

fn comma_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"\s*,\s*").expect("the comma pattern is valid"))
}

/// What a text that looks like a call turned out to be.
#[derive(Debug)]
pub enum Parsed {
    /// Not of the shape `name(args)`.
    NotACall,
    /// The shape of a call, but eDeploy has no such function.
    Unknown(String),
    Call(Call),
}

/// Parses `text` as eDeploy does: `name(first[, rest])`.
pub fn parse_call(text: &str) -> Parsed {
    let Some(caps) = call_regex().captures(text) else {
        return Parsed::NotACall;
    };
    let name = caps.get(1).map_or("", |m| m.as_str());
    let Some(func) = Func::from_name(name) else {
        return Parsed::Unknown(name.to_owned());
    };
    let mut raw: Vec<&str> = vec![caps.get(2).map_or("", |m| m.as_str())];
    if let Some(rest) = caps.get(3) {
        raw.extend(comma_regex().split(rest.as_str()));
    }
    let args: Vec<Arg> = raw
        .into_iter()
        .map(|a| {
            let text = strip_quotes(a).to_owned();
            let call = match parse_call(&text) {
                Parsed::Call(c) => Some(c),
                _ => None,
            };
            Arg {
                text,
                call,
                regex: OnceLock::new(),
            }
        })
        .collect();
    let fast = Fast::for_call(func, &args);
    Parsed::Call(Call {
        name: name.to_owned(),
        func,
        args,
        fast,
    })
}

/// Python's `s.strip('\'"')`.
pub fn strip_quotes(s: &str) -> &str {
    s.trim_matches(|c| c == '\'' || c == '"')
}

/// Nesting bound of evaluation (eDeploy hit Python's recursion limit instead).
const MAX_EVAL_DEPTH: u32 = 200;

/// A value during evaluation: eDeploy's functions take and return strings and booleans.
#[derive(Clone, Debug, PartialEq)]
pub enum Obj<'a> {
    Str(std::borrow::Cow<'a, str>),
    Bool(bool),
}

impl Obj<'_> {
    fn truthy(&self) -> bool {
        match self {
            Obj::Str(s) => !s.is_empty(),
            Obj::Bool(b) => *b,
        }
    }
}

impl Call {
    /// Evaluates the call against one inventory value and returns its truth.
    pub fn test(&self, value: &Value) -> Result<bool, EvalError> {
        self.test_metered(value, &mut Meter::unlimited())
    }

    /// [`Call::test`], adding what regular expressions cost to the meter (matcher steps, see
    /// [`LINEAR_BYTES_PER_STEP`]); a search the meter cannot afford fails.
    pub fn test_metered(&self, value: &Value, meter: &mut Meter) -> Result<bool, EvalError> {
        if let (Some(fast), Value::Str(raw)) = (&self.fast, value) {
            let v = strip_quotes(raw);
            // A value that itself looks like a call takes the general path.
            if !(v.ends_with(')') || v.ends_with(")\n")) {
                return self.fast_test(fast, v, meter);
            }
        }
        Ok(self.eval(value, 0, meter)?.truthy())
    }

    fn fast_test(&self, fast: &Fast, v: &str, meter: &mut Meter) -> Result<bool, EvalError> {
        let num = || {
            python_float(v)
                .ok_or_else(|| EvalError(format!("could not convert string to float: '{v}'")))
        };
        Ok(match fast {
            Fast::Compare(func, r) => {
                let l = num()?;
                match func {
                    Func::Gt => l > *r,
                    Func::Ge => l >= *r,
                    Func::Lt => l < *r,
                    _ => l <= *r,
                }
            }
            Fast::Range(lo, hi) => {
                let x = num()?;
                *lo <= x && x <= *hi
            }
            Fast::In => self.args.iter().any(|a| a.text == v),
            Fast::Regexp => {
                let a = &self.args[0];
                let re = a.regex.get_or_init(|| compile_python_regex(&a.text));
                re.as_ref()
                    .map_err(|e| EvalError(e.clone()))?
                    .search(v, meter)?
            }
            Fast::Network(net, prefix) => {
                let addr = parse_ipv4(v).ok_or_else(|| {
                    EvalError(format!("'{v}' does not appear to be an IPv4 address"))
                })?;
                prefix_mask(*prefix) & addr == *net
            }
        })
    }

    fn eval<'a>(
        &'a self,
        implicit: &'a Value,
        depth: u32,
        meter: &mut Meter,
    ) -> Result<Obj<'a>, EvalError> {
        if depth > MAX_EVAL_DEPTH {
            // eDeploy recurses until Python's RecursionError (a value that looks like a call).
            return Err(EvalError("maximum recursion depth exceeded".into()));
        }
        let Value::Str(raw) = implicit else {
            return Err(EvalError(format!(
                "{}() needs a string but the inventory value is the {} {}",
                self.name,
                implicit.type_name(),
                implicit
            )));
        };
        let first = extract(
            implicit,
            Obj::Str(strip_quotes(raw).into()),
            depth + 1,
            meter,
        )?;
        let mut args = Vec::with_capacity(self.args.len() + 1);
        args.push(first);
        for a in &self.args {
            args.push(match &a.call {
                Some(c) => c.eval(implicit, depth + 1, meter)?,
                None => Obj::Str(a.text.as_str().into()),
            });
        }
        self.apply(args, depth, meter)
    }

    fn arity(&self, args: &[Obj<'_>], want: usize) -> Result<(), EvalError> {
        if args.len() == want {
            Ok(())
        } else {
            Err(EvalError(format!(
                "{}() takes {} argument{} but was given {}",
                self.name,
                want - 1,
                if want == 2 { "" } else { "s" },
                args.len() - 1
            )))
        }
    }

    fn apply<'a>(
        &'a self,
        args: Vec<Obj<'a>>,
        depth: u32,
        meter: &mut Meter,
    ) -> Result<Obj<'a>, EvalError> {
        let b = |x: bool| Ok(Obj::Bool(x));
        match self.func {
            Func::Gt | Func::Ge | Func::Lt | Func::Le => {
                self.arity(&args, 2)?;
                let l = to_float(&args[0])?;
                let r = to_float(&args[1])?;
                b(match self.func {
                    Func::Gt => l > r,
                    Func::Ge => l >= r,
                    Func::Lt => l < r,
                    _ => l <= r,
                })
            }
            Func::Range => {
                self.arity(&args, 3)?;
                let x = to_float(&args[0])?;
                let lo = to_float(&args[1])?;
                let hi = to_float(&args[2])?;
                b(lo <= x && x <= hi)
            }
            Func::Not => {
                self.arity(&args, 2)?;
                b(!args[1].truthy())
            }
            Func::And | Func::Or => {
                self.arity(&args, 3)?;
                let mut it = args.into_iter().skip(1);
                let (l, r) = match (it.next(), it.next()) {
                    (Some(l), Some(r)) => (l, r),
                    _ => return Err(EvalError("missing argument".into())),
                };
                let pick_left = if self.func == Func::And {
                    !l.truthy()
                } else {
                    l.truthy()
                };
                Ok(if pick_left { l } else { r })
            }
            Func::Network => {
                self.arity(&args, 2)?;
                let addr = ipv4_address(&args[0])?;
                let (net, prefix) = ipv4_network(&args[1])?;
                b(prefix_mask(prefix) & addr == net)
            }
            Func::Regexp => {
                self.arity(&args, 2)?;
                let (Obj::Str(text), Obj::Str(pattern)) = (&args[0], &args[1]) else {
                    return Err(EvalError("regexp() needs strings".into()));
                };
                // A constant pattern is compiled once per spec; a computed one each time.
                let found = match self.args.first().filter(|a| a.call.is_none()) {
                    Some(a) => {
                        let re = a.regex.get_or_init(|| compile_python_regex(&a.text));
                        re.as_ref()
                            .map_err(|e| EvalError(e.clone()))?
                            .search(text, meter)?
                    }
                    None => {
                        meter.spent += COMPILE_STEPS;
                        compile_python_regex(pattern)
                            .map_err(EvalError)?
                            .search(text, meter)?
                    }
                };
                b(found)
            }
            Func::In => b(args[1..].iter().any(|x| *x == args[0])),
            Func::ExtractResult => {
                self.arity(&args, 2)?;
                let mut it = args.into_iter();
                let (Some(Obj::Str(first)), Some(expr)) = (it.next(), it.next()) else {
                    return Err(EvalError("extract_result() needs a string".into()));
                };
                // eDeploy re-evaluates the argument with the stripped value as implicit.
                extract(&Value::Str(first.into_owned()), expr, depth + 1, meter)
            }
            Func::Raises => Err(EvalError(format!(
                "{}() is an internal name of eDeploy's matcher and cannot be called from a spec",
                self.name
            ))),
        }
    }
}

/// eDeploy's `_extract_result(implicit, expr)`: evaluate `expr` when it looks like a call
/// of a known function, else return it unchanged.
fn extract<'a>(
    implicit: &Value,
    expr: Obj<'a>,
    depth: u32,
    meter: &mut Meter,
) -> Result<Obj<'a>, EvalError> {
    let Obj::Str(text) = &expr else {
        return Err(EvalError(
            "expected a string where a boolean was given".into(),
        ));
    };
    // Quick reject: every call ends with ')' (possibly followed by one newline).
    if !(text.ends_with(')') || text.ends_with(")\n")) {
        return Ok(expr);
    }
    match parse_call(text) {
        Parsed::Call(call) => match call.eval(implicit, depth + 1, meter)? {
            Obj::Str(s) => Ok(Obj::Str(s.into_owned().into())),
            Obj::Bool(b) => Ok(Obj::Bool(b)),
        },
        _ => Ok(expr),
    }
}

/// Python's `float(x)` for a string or a boolean.
fn to_float(o: &Obj<'_>) -> Result<f64, EvalError> {
    match o {
        Obj::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Obj::Str(s) => python_float(s)
            .ok_or_else(|| EvalError(format!("could not convert string to float: '{s}'"))),
    }
}

/// Parses a number the way Python's `float()` does: blanks around it, `_` between digits,
/// `inf`/`infinity`/`nan` in any case, an optional sign.
pub fn python_float(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c));
    if t.is_empty() {
        return None;
    }
    let cleaned;
    let t = if t.contains('_') {
        // Underscores only between two digits.
        let b = t.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if c == b'_'
                && !(i > 0
                    && b[i - 1].is_ascii_digit()
                    && b.get(i + 1).is_some_and(u8::is_ascii_digit))
            {
                return None;
            }
        }
        cleaned = t.replace('_', "");
        cleaned.as_str()
    } else {
        t
    };
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if ["inf", "infinity", "nan"]
        .iter()
        .any(|w| body.eq_ignore_ascii_case(w))
    {
        return t.parse::<f64>().ok();
    }
    // Only the decimal forms Python accepts: digits, one '.', an exponent.
    if !body
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    t.parse::<f64>().ok()
}

/// `ipaddress.IPv4Address(x)`: four decimal octets, no leading zeros; a boolean is the
/// integer 0 or 1.
fn ipv4_address(o: &Obj<'_>) -> Result<u32, EvalError> {
    match o {
        Obj::Bool(b) => Ok(u32::from(*b)),
        Obj::Str(s) => parse_ipv4(s)
            .ok_or_else(|| EvalError(format!("'{s}' does not appear to be an IPv4 address"))),
    }
}

/// Parses a dotted quad with Python's strictness.
pub fn parse_ipv4(s: &str) -> Option<u32> {
    let mut n: u32 = 0;
    let mut count = 0;
    for part in s.split('.') {
        count += 1;
        if count > 4
            || part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        if part.len() > 1 && part.starts_with('0') {
            return None;
        }
        let octet: u32 = part.parse().ok()?;
        if octet > 255 {
            return None;
        }
        n = (n << 8) | octet;
    }
    (count == 4).then_some(n)
}

fn prefix_mask(prefix: u32) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// `ipaddress.IPv4Network(x)` (strict): returns the network address and prefix length.
fn ipv4_network(o: &Obj<'_>) -> Result<(u32, u32), EvalError> {
    let s = match o {
        Obj::Bool(b) => return Ok((u32::from(*b), 32)),
        Obj::Str(s) => s.as_ref(),
    };
    let bad = || EvalError(format!("'{s}' does not appear to be an IPv4 network"));
    let mut parts = s.split('/');
    let addr_text = parts.next().unwrap_or("");
    let mask_text = parts.next();
    if parts.next().is_some() {
        return Err(bad());
    }
    let addr = parse_ipv4(addr_text).ok_or_else(bad)?;
    let prefix = match mask_text {
        None => 32,
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => {
            let p: u32 = m.parse().map_err(|_| bad())?;
            if p > 32 {
                return Err(bad());
            }
            p
        }
        Some(m) => {
            let mask = parse_ipv4(m).ok_or_else(bad)?;
            let ones = mask.leading_ones();
            if prefix_mask(ones) == mask {
                ones
            } else {
                // A host mask (0.0.0.255) is accepted as the inverse of a netmask.
                let inv = !mask;
                let ones = inv.leading_ones();
                if prefix_mask(ones) == inv {
                    ones
                } else {
                    return Err(bad());
                }
            }
        }
    };
    if addr & !prefix_mask(prefix) != 0 {
        return Err(EvalError(format!("{s} has host bits set")));
    }
    Ok((addr, prefix))
}

/// Matching cost, in the matcher's steps (one step: one line checked against one spec,
/// about 10–20 ns), of what `regexp()` does. A search with the linear-time engine costs one
/// step per [`LINEAR_BYTES_PER_STEP`] bytes of text; a backtracking search costs
/// [`STEPS_PER_BACKTRACK`] steps per backtrack it was allowed (the measured cost of a
/// backtrack that calls the inner engine is ~170 ns on a busy 2-core machine).
pub const LINEAR_BYTES_PER_STEP: u64 = 4;
/// See [`LINEAR_BYTES_PER_STEP`].
pub const STEPS_PER_BACKTRACK: u64 = 16;
/// What a test may spend, and has spent, in matcher steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meter {
    pub spent: u64,
    /// What may be spent (the matcher's budget left).
    pub limit: u64,
}

impl Meter {
    /// A meter allowing `limit` steps.
    pub fn new(limit: u64) -> Meter {
        Meter { spent: 0, limit }
    }

    /// A meter that only counts.
    pub fn unlimited() -> Meter {
        Meter::new(u64::MAX)
    }
}

/// What compiling a computed pattern (a `regexp()` whose argument is itself a call) costs.
const COMPILE_STEPS: u64 = 1_000;

/// The backtracking limits tried in turn: a search is charged for the limit it finished
/// under, so an ordinary pattern costs little and a catastrophic one at most the last.
/// Past the last one the search fails (an element that does not match, as a pattern that
/// raised in eDeploy).
const BACKTRACK_LIMITS: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];

/// A compiled `regexp()` pattern (Python syntax), searched with the linear-time engine
/// whenever that gives Python's answer, else with a backtracking engine under a limit.
#[derive(Debug)]
pub struct Pattern {
    /// The same pattern for the linear-time `regex` engine: when it has no look-around,
    /// backreference, atomic group or conditional. Python's `$` is `(?m:$)` there.
    linear: Option<regex::Regex>,
    /// The pattern has a `$`: `(?m:$)` is Python's `$` only in a text with no newline
    /// before its last character; other texts take the backtracking engine.
    dollar: bool,
    /// The exact translation (`$` as `(?=\n?\z)`) for `fancy_regex`, compiled per limit of
    /// [`BACKTRACK_LIMITS`] on first use.
    exact: String,
    backtracking: [OnceLock<Result<fancy_regex::Regex, String>>; BACKTRACK_LIMITS.len()],
}

impl Pattern {
    fn compile(pattern: &str) -> Result<Pattern, String> {
        let invalid =
            |e: &dyn std::fmt::Display| format!("invalid regular expression '{pattern}': {e}");
        let (exact, dollar) = translate_regex(pattern, false)?;
        let (lineable, _) = translate_regex(pattern, true)?;
        let first = fancy_regex::RegexBuilder::new(&exact)
            .backtrack_limit(BACKTRACK_LIMITS[0])
            .build()
            .map_err(|e| invalid(&e))?;
        let linear = fancy_regex::Expr::parse_tree(&lineable)
            .ok()
            .and_then(|tree| {
                let mut text = String::new();
                linear_text(&tree.expr, &mut text).then_some(text)
            })
            .and_then(|text| regex::Regex::new(&text).ok());
        let backtracking = std::array::from_fn(|i| {
            let cell = OnceLock::new();
            if i == 0 {
                let _ = cell.set(Ok(first.clone()));
            }
            cell
        });
        Ok(Pattern {
            linear,
            dollar,
            exact,
            backtracking,
        })
    }

    /// The answer of the backtracking engine alone (no limit beyond the last): what every
    /// search gave before the linear-time engine, kept for differential tests.
    #[doc(hidden)]
    pub fn search_backtracking(&self, text: &str) -> Result<bool, EvalError> {
        fancy_regex::RegexBuilder::new(&self.exact)
            .backtrack_limit(BACKTRACK_LIMITS[BACKTRACK_LIMITS.len() - 1])
            .build()
            .map_err(|e| EvalError(e.to_string()))?
            .is_match(text)
            .map_err(|e| EvalError(e.to_string()))
    }

    /// Whether this pattern is searched with the linear-time engine in a text without
    /// newlines (for tests and `rdeploy check`).
    pub fn is_linear(&self) -> bool {
        self.linear.is_some()
    }

    /// `re.search(pattern, text)`, adding what it cost to the meter (see
    /// [`LINEAR_BYTES_PER_STEP`]). A backtracking search is not tried under a limit the
    /// meter cannot afford: it fails, charged as if tried (so the matcher sees its budget
    /// spent).
    pub fn search(&self, text: &str, meter: &mut Meter) -> Result<bool, EvalError> {
        let scan = 1 + text.len() as u64 / LINEAR_BYTES_PER_STEP;
        if let Some(linear) = &self.linear {
            let inner_newline = text.strip_suffix('\n').unwrap_or(text).contains('\n');
            if !(self.dollar && inner_newline) {
                meter.spent += scan;
                return Ok(linear.is_match(text));
            }
        }
        for (i, limit) in BACKTRACK_LIMITS.iter().enumerate() {
            let charge = scan + *limit as u64 * STEPS_PER_BACKTRACK;
            meter.spent += charge;
            if meter.spent > meter.limit {
                return Err(EvalError(
                    "regular expression not tried: the matching budget is spent".into(),
                ));
            }
            let re = self.backtracking[i].get_or_init(|| {
                fancy_regex::RegexBuilder::new(&self.exact)
                    .backtrack_limit(*limit)
                    .build()
                    .map_err(|e| e.to_string())
            });
            let re = re.as_ref().map_err(|e| EvalError(e.clone()))?;
            match re.is_match(text) {
                Ok(found) => return Ok(found),
                Err(fancy_regex::Error::RuntimeError(
                    fancy_regex::RuntimeError::BacktrackLimitExceeded,
                )) => continue,
                Err(e) => return Err(EvalError(format!("regular expression failed: {e}"))),
            }
        }
        Err(EvalError(format!(
            "regular expression failed: more than {} backtracking steps",
            BACKTRACK_LIMITS[BACKTRACK_LIMITS.len() - 1]
        )))
    }
}

/// The regular expression `expr` (as `fancy_regex` parsed it) for the `regex` crate, when
/// it has nothing that needs backtracking. Every node is written explicitly (`\A`, `\z`,
/// non-capturing groups around everything), so no flag of the surroundings changes it.
fn linear_text(expr: &fancy_regex::Expr, out: &mut String) -> bool {
    use fancy_regex::{Assertion as A, Expr as E};
    match expr {
        E::Empty => {}
        E::Any { newline } => out.push_str(if *newline { "(?s:.)" } else { "(?-s:.)" }),
        E::Literal { val, casei } => {
            out.push_str(if *casei { "(?i:" } else { "(?-i:" });
            out.push_str(&regex::escape(val));
            out.push(')');
        }
        E::Assertion(a) => out.push_str(match a {
            A::StartText => r"\A",
            A::EndText => r"\z",
            A::StartLine { crlf: false } => "(?m:^)",
            A::EndLine { crlf: false } => "(?m:$)",
            A::StartLine { crlf: true } => "(?Rm:^)",
            A::EndLine { crlf: true } => "(?Rm:$)",
            A::LeftWordBoundary => r"\b{start}",
            A::RightWordBoundary => r"\b{end}",
            A::WordBoundary => r"\b",
            A::NotWordBoundary => r"\B",
        }),
        E::Concat(children) => {
            out.push_str("(?:");
            for c in children {
                if !linear_text(c, out) {
                    return false;
                }
            }
            out.push(')');
        }
        E::Alt(children) => {
            out.push_str("(?:");
            for (i, c) in children.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                if !linear_text(c, out) {
                    return false;
                }
            }
            out.push(')');
        }
        E::Group(child) => {
            out.push('(');
            if !linear_text(child, out) {
                return false;
            }
            out.push(')');
        }
        E::Repeat {
            child,
            lo,
            hi,
            greedy,
        } => {
            out.push_str("(?:");
            if !linear_text(child, out) {
                return false;
            }
            out.push(')');
            if *hi == usize::MAX {
                out.push_str(&format!("{{{lo},}}"));
            } else {
                out.push_str(&format!("{{{lo},{hi}}}"));
            }
            if !greedy {
                out.push('?');
            }
        }
        E::Delegate { inner, casei, .. } => {
            out.push_str(if *casei { "(?i:" } else { "(?-i:" });
            out.push_str(inner);
            out.push(')');
        }
        E::Backref(_)
        | E::LookAround(..)
        | E::AtomicGroup(_)
        | E::KeepOut
        | E::ContinueFromPreviousMatchEnd
        | E::BackrefExistsCondition(_)
        | E::Conditional { .. } => return false,
    }
    true
}

/// A compiled pattern, or why it does not compile.
type Compiled = Result<Arc<Pattern>, String>;

/// Compiles a Python regular expression (cached: specs use few patterns, evaluated on many
/// lines).
pub fn compile_python_regex(pattern: &str) -> Result<Arc<Pattern>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(map) = cache.lock() {
        if let Some(r) = map.get(pattern) {
            return r.clone();
        }
    }
    let result = Pattern::compile(pattern).map(Arc::new);
    if let Ok(mut map) = cache.lock() {
        if map.len() < 4096 {
            map.insert(pattern.to_owned(), result.clone());
        }
    }
    result
}

/// Translates a Python regular expression to one `fancy_regex` parses the same way: `\Z`
/// is the end; `$` (outside a class, unescaped) also matches before a final newline:
/// `(?=\n?\z)` exactly, or `(?m:$)` for `lineable` (the same in a text without a newline
/// before its last character). Returns the translation and whether it had a `$`.
fn translate_regex(pattern: &str, lineable: bool) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    let mut dollar = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    return Err(format!(
                        "invalid regular expression '{pattern}': trailing backslash"
                    ));
                };
                if n == 'Z' && !in_class {
                    out.push_str("\\z");
                } else {
                    out.push('\\');
                    out.push(n);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A ']' right after '[' or '[^' is literal in Python.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '[' if in_class => out.push_str("\\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '$' if !in_class => {
                dollar = true;
                out.push_str(if lineable { "(?m:$)" } else { "(?=\\n?\\z)" });
            }
            c => out.push(c),
        }
    }
    Ok((out, dollar))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(text: &str) -> Call {
        match parse_call(text) {
            Parsed::Call(c) => c,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn t(f: &str, v: &str) -> Result<bool, EvalError> {
        call(f).test(&Value::from(v))
    }

    #[test]
    fn comparisons_parse_numbers_like_python() {
        assert_eq!(t("gt(4)", "5"), Ok(true));
        assert_eq!(t("gt(4)", "4"), Ok(false));
        assert_eq!(t("ge(4)", "4.0"), Ok(true));
        assert_eq!(t("lt(1_000)", " 999 "), Ok(true));
        assert_eq!(t("le(inf)", "1e308"), Ok(true));
        assert_eq!(t("gt(1)", "nan"), Ok(false));
        assert_eq!(t("range(10, 20)", "15"), Ok(true));
        assert_eq!(t("range(10, 20)", "20.5"), Ok(false));
        assert_eq!(
            t("gt(4)", "'5'"),
            Ok(true),
            "quotes are stripped from the value"
        );
        assert_eq!(t("gt('4')", "5"), Ok(true));
        assert!(t("gt(4)", "abc").is_err());
        assert!(t("gt(4)", "1__0").is_err());
        assert!(t("gt(4, 5)", "6").is_err(), "wrong argument count raises");
        assert!(
            call("gt(4)").test(&Value::Int(5)).is_err(),
            "ints raise in eDeploy"
        );
    }

    #[test]
    fn network_is_strict_like_ipaddress() {
        assert_eq!(t("network(10.0.0.0/8)", "10.1.2.3"), Ok(true));
        assert_eq!(t("network(10.0.0.0/8)", "11.1.2.3"), Ok(false));
        assert_eq!(
            t("network(192.168.1.0/255.255.255.0)", "192.168.1.7"),
            Ok(true)
        );
        assert_eq!(t("network(192.168.1.0/0.0.0.255)", "192.168.1.7"), Ok(true));
        assert_eq!(t("network(10.0.0.5)", "10.0.0.5"), Ok(true));
        assert!(
            t("network(10.0.0.1/8)", "10.0.0.1").is_err(),
            "host bits set"
        );
        assert!(
            t("network(10.0.0.0/8)", "010.0.0.1").is_err(),
            "leading zero"
        );
        assert!(t("network(10.0.0.0/33)", "10.0.0.1").is_err());
        assert!(t("network(10.0.0.0/8)", "not-an-ip").is_err());
    }

    #[test]
    fn regexp_searches_unanchored() {
        assert_eq!(t("regexp(^Dell)", "Dell Inc."), Ok(true));
        assert_eq!(t("regexp(Gen9)", "ProLiant DL360 Gen9"), Ok(true));
        assert_eq!(t("regexp(^Gen9)", "ProLiant DL360 Gen9"), Ok(false));
        assert_eq!(
            t("regexp(Gen9$)", "Gen9\n"),
            Ok(true),
            "Python's $ before final newline"
        );
        assert_eq!(t("regexp([$]x)", "$x"), Ok(true));
        assert!(t("regexp(()", "x").is_err());
    }

    #[test]
    fn patterns_take_the_linear_engine_when_they_can() {
        for (pattern, linear) in [
            (r"^(\w+\s?)*$", true),
            (r"\bGen(9|10)\b", true),
            (r"(?i)^dell", true),
            (r"(?m)^b$", true),
            (r"[$]x\Z", true),
            (r"(a)\1", false),
            (r"^(?!SSD)", false),
            (r"(?>a+)b", false),
        ] {
            let re = compile_python_regex(pattern).unwrap();
            assert_eq!(re.is_linear(), linear, "{pattern}");
        }
    }

    #[test]
    fn a_catastrophic_pattern_is_cheap_on_the_linear_engine() {
        // Issue 11: eDeploy's engine (and the backtracking one) takes exponential time here.
        let value = format!("{}!", "aaaa ".repeat(20_000));
        let mut m = Meter::unlimited();
        let re = compile_python_regex(r"^(\w+\s?)*$").unwrap();
        assert_eq!(re.search(&value, &mut m), Ok(false));
        assert!(m.spent < 100_000, "{m:?}");
        // The same shape with a backreference needs backtracking: bounded, and charged.
        let mut m = Meter::unlimited();
        let re = compile_python_regex(r"^(\w+\s?)*\1$").unwrap();
        assert!(re.search("aaaa aaaa aaaa aaaa aaaa aaaa!", &mut m).is_err());
        assert!(m.spent >= 1_000_000 * STEPS_PER_BACKTRACK, "{m:?}");
        // An ordinary one is charged for what it needed, not for the worst case.
        let mut m = Meter::unlimited();
        let re = compile_python_regex(r"^(?!SSD)").unwrap();
        assert_eq!(re.search("HDD 4TB", &mut m), Ok(true));
        assert!(m.spent <= 1_000 * STEPS_PER_BACKTRACK + 10, "{m:?}");
        // A budget too small for the next limit: not tried, charged, failed.
        let mut m = Meter::new(200_000);
        let re = compile_python_regex(r"^(\w+\s?)*\1$").unwrap();
        assert!(re.search("aaaa aaaa aaaa aaaa aaaa aaaa!", &mut m).is_err());
        assert!(m.spent > m.limit && m.spent < 2_000_000, "{m:?}");
    }

    #[test]
    fn dollar_is_pythons_on_both_engines() {
        // (pattern, text, Python's re.search answer)
        let cases = [
            ("a$", "a", true),
            ("a$", "a\n", true),
            ("a$", "a\nb", false),
            ("a$", "a\n\n", false),
            ("a\\n$", "a\n", true),
            ("^a$", "b\na", false),
            ("(?m)^a$", "b\na", true),
            ("a\\Z", "a\n", false),
            ("a$|x", "a\nx", true),
        ];
        for (pattern, text, python) in cases {
            let re = compile_python_regex(pattern).unwrap();
            assert_eq!(
                re.search(text, &mut Meter::unlimited()),
                Ok(python),
                "{pattern} on {text:?}"
            );
        }
    }

    #[test]
    fn in_not_and_or_nest() {
        assert_eq!(t("in(a, b, c)", "b"), Ok(true));
        assert_eq!(t("in(5)", "5.0"), Ok(false), "in() compares strings");
        assert_eq!(t("not(gt(4))", "3"), Ok(true));
        assert_eq!(t("and(gt(1), lt(5))", "3"), Ok(true));
        assert_eq!(t("and(gt(1), lt(5))", "7"), Ok(false));
        assert_eq!(t("or(lt(1), gt(5))", "7"), Ok(true));
        assert_eq!(t("not(network(10.0.0.0/8))", "192.168.0.1"), Ok(true));
        assert_eq!(t("and(x, y)", "v"), Ok(true), "plain strings are truthy");
    }

    #[test]
    fn argument_splitting_keeps_edeploy_blanks() {
        // The first argument keeps a trailing blank before the comma.
        assert_eq!(t("in( a , b )", "a"), Ok(false));
        assert_eq!(t("in( a , b )", "a "), Ok(true));
        assert!(matches!(parse_call("gt (1)"), Parsed::Unknown(n) if n == "gt "));
        assert!(matches!(parse_call("gt()"), Parsed::NotACall));
        assert!(matches!(parse_call("foo(1)"), Parsed::Unknown(_)));
    }

    #[test]
    fn internal_names_raise() {
        assert!(t("adder(1, 2)", "x").is_err());
        assert_eq!(t("extract_result(x)", "v"), Ok(true));
    }

    #[test]
    fn python_float_edge_cases() {
        assert_eq!(python_float("1_000"), Some(1000.0));
        assert_eq!(python_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(python_float(".5"), Some(0.5));
        assert_eq!(python_float("5."), Some(5.0));
        assert_eq!(python_float("1e3"), Some(1000.0));
        assert_eq!(python_float("_1"), None);
        assert_eq!(python_float("0x10"), None);
        assert_eq!(python_float(""), None);
        assert_eq!(python_float("in f"), None);
    }
}
