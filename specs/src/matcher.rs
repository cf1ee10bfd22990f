//! eDeploy's matcher (`match_all`): binds a profile's specs to an inventory's lines.
//!
//! The search is eDeploy's, step for step, because operators depend on *which* line a
//! variable binds when several could (`$disk1` takes the first disk in inventory order):
//!
//! 1. Specs are taken in order. For each spec, a line equal to the whole spec is consumed
//!    first (no binding); otherwise the first line (in the current order) whose four
//!    elements all match is consumed, binding its variables.
//! 2. When a spec binds a new variable, a retry point is recorded: the remaining specs
//!    (this one included), the lines with the chosen one moved to the end, and the
//!    variables as they were before.
//! 3. When a spec matches nothing, the retry points are tried most recent first, each as
//!    a nested search; nesting stops at depth 50.
//! 4. On success, every `$$name` key is renamed `name` and reported as *forced*. Keys bound
//!    by an abandoned attempt stay in the result (eDeploy's quirk).
//!
//! eDeploy's search can take exponential time before it gives up. This one returns the
//! same answers but prunes a retry point when no assignment of the remaining specs to
//! distinct remaining lines exists even ignoring variables not bound yet (a bipartite
//! matching test, which every successful continuation satisfies), and remembers retry
//! states that already failed at a given depth. A step budget bounds what is left: every
//! line checked is a step, and a test adds what it cost (a regular expression: its text's
//! length on the linear-time engine, the backtracking it was allowed otherwise; see
//! [`funcs::LINEAR_BYTES_PER_STEP`]). The search that spends its budget stops at once and
//! says which spec it was matching ([`NoMatch::GaveUp`]).
//!
//! Before any retry the lines are still in inventory order, so that first pass looks only
//! at the lines of a spec's (category, key) and rebuilds retry points only when needed;
//! the order of candidates, hence every answer, is unchanged.

use crate::funcs::{self, Call, Parsed};
use crate::model::{Inventory, Line, SpecLine};
use crate::syntax::Pos;
use crate::value::Value;
use std::collections::HashMap;
use std::fmt;

/// eDeploy stops nesting retries at this depth.
pub const MAX_LEVEL: u32 = 50;

/// Default number of line checks before the search gives up.
pub const DEFAULT_STEP_BUDGET: u64 = 20_000_000;

/// How one spec element is matched against a line's element (the second pass).
#[derive(Clone, Debug)]
enum Elem {
    /// Compare with the spec element as written.
    Literal,
    /// Never matches in the second pass (eDeploy `break`s).
    Never,
    /// `$name`: binds, or must equal an earlier binding.
    Var(String),
    /// `func(...)`: must be true.
    Test(Call),
    /// `$name=func(...)`: binds when true, else compares literally.
    VarTest(String, Call),
}

#[derive(Clone, Debug)]
struct CompiledSpec {
    raw: Line,
    elems: [Elem; 4],
    /// No variable nor test: the first pass equals the second, skip it.
    pure_literal: bool,
    /// More than four elements: never equal to a line as a whole.
    longer: bool,
}

/// How serious a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// eDeploy accepts it and so do we, but it is probably not what was meant.
    Warning,
    /// The element can never match (eDeploy would raise or skip it).
    Error,
}

/// A problem found while compiling a specs file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Pos,
    /// Index of the spec line (0-based).
    pub spec: usize,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}: {sev}: {}", self.pos, self.message)
    }
}

/// A profile's specs, compiled once and matched against many inventories.
#[derive(Clone, Debug)]
pub struct Specs {
    specs: Vec<CompiledSpec>,
    lines: Vec<SpecLine>,
    diagnostics: Vec<Diagnostic>,
}

impl Specs {
    /// Compiles spec lines. Never fails: elements eDeploy would choke on are compiled to
    /// "never matches" and described in [`Specs::diagnostics`].
    pub fn compile(lines: Vec<SpecLine>) -> Specs {
        let mut diagnostics = Vec::new();
        let specs = lines
            .iter()
            .enumerate()
            .map(|(i, line)| compile_spec(i, line, &mut diagnostics))
            .collect();
        Specs {
            specs,
            lines,
            diagnostics,
        }
    }

    /// Problems found while compiling.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The spec lines as written.
    pub fn lines(&self) -> &[SpecLine] {
        &self.lines
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Whether any spec binds a variable (a profile that binds none hands every node the
    /// first CMDB entry — eDeploy's behaviour).
    pub fn binds_variables(&self) -> bool {
        self.specs.iter().any(|s| {
            s.elems
                .iter()
                .any(|e| matches!(e, Elem::Var(_) | Elem::VarTest(..)))
        })
    }
}

fn compile_spec(index: usize, line: &SpecLine, diags: &mut Vec<Diagnostic>) -> CompiledSpec {
    let mut diag = |severity, message: String| {
        diags.push(Diagnostic {
            pos: line.pos,
            spec: index,
            severity,
            message,
        })
    };
    let elems: [Elem; 4] = std::array::from_fn(|i| {
        let Value::Str(text) = &line.elems[i] else {
            return Elem::Literal;
        };
        if text.is_empty() {
            diag(
                Severity::Error,
                format!(
                    "element {} is an empty string: eDeploy cannot match it",
                    i + 1
                ),
            );
            return Elem::Never;
        }
        let (var, func) = match text.strip_prefix('$') {
            Some(_) => {
                let parts: Vec<&str> = text.split('=').collect();
                if parts.len() == 2 {
                    (parts[0], parts[1])
                } else {
                    (text.as_str(), text.as_str())
                }
            }
            None => (text.as_str(), text.as_str()),
        };
        let combined = var.len() != text.len();
        if combined && func.is_empty() {
            diag(
                Severity::Error,
                format!("'{text}': nothing after '=' (eDeploy fails on it)"),
            );
            return Elem::Never;
        }
        if func.ends_with(')') {
            match funcs::parse_call(func) {
                Parsed::Call(call) => {
                    check_call(&call, text, &mut diag);
                    return if combined {
                        Elem::VarTest(var[1..].to_owned(), call)
                    } else {
                        Elem::Test(call)
                    };
                }
                Parsed::Unknown(name) => {
                    if combined {
                        diag(
                            Severity::Warning,
                            format!(
                                "'{text}': unknown function '{name}', so the element is compared as plain text{}",
                                suggestion(&name)
                            ),
                        );
                        return Elem::Literal;
                    }
                    diag(
                        Severity::Error,
                        format!(
                            "'{text}': unknown function '{}'{}; eDeploy never matches this element (known: {})",
                            name,
                            suggestion(&name),
                            funcs::Func::NAMES.join(" ")
                        ),
                    );
                    return Elem::Never;
                }
                Parsed::NotACall => {}
            }
        }
        if combined {
            diag(
                Severity::Warning,
                format!("'{text}': the part after '=' is not a function call, so the element is compared as plain text"),
            );
            return Elem::Literal;
        }
        match text.strip_prefix('$') {
            Some(name) => {
                if name.is_empty() {
                    diag(
                        Severity::Warning,
                        "a bare '$' binds a variable with an empty name".into(),
                    );
                }
                Elem::Var(name.to_owned())
            }
            None => Elem::Literal,
        }
    });
    if line.extra > 0 {
        diags.push(Diagnostic {
            pos: line.pos,
            spec: index,
            severity: Severity::Warning,
            message: format!(
                "{} element(s) after the fourth are ignored (eDeploy ignores them too)",
                line.extra
            ),
        });
    }
    let pure_literal = elems.iter().all(|e| matches!(e, Elem::Literal));
    CompiledSpec {
        raw: line.elems.clone(),
        elems,
        pure_literal,
        longer: line.extra > 0,
    }
}

fn suggestion(name: &str) -> String {
    let trimmed = name.trim();
    if trimmed != name && funcs::Func::from_name(trimmed).is_some() {
        return format!(" (did you mean '{trimmed}' without blanks?)");
    }
    funcs::Func::NAMES
        .iter()
        .find(|known| edit_distance(known, name) == 1)
        .map(|k| format!(" (did you mean '{k}'?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Static checks of a call's arguments, for `rdeploy check`.
fn check_call(call: &Call, text: &str, diag: &mut impl FnMut(Severity, String)) {
    use funcs::Func;
    let explicit = call.args.len();
    let want: Option<(usize, &str)> = match call.func {
        Func::Gt | Func::Ge | Func::Lt | Func::Le | Func::Network | Func::Regexp | Func::Not => {
            Some((1, "1 argument"))
        }
        Func::Range | Func::And | Func::Or => Some((2, "2 arguments")),
        Func::ExtractResult => Some((1, "1 argument")),
        Func::In => None,
        Func::Raises => {
            diag(
                Severity::Error,
                format!(
                    "'{text}': {}() is internal to eDeploy's matcher and raises when called",
                    call.name
                ),
            );
            return;
        }
    };
    if let Some((n, words)) = want {
        if explicit != n {
            diag(
                Severity::Error,
                format!(
                    "'{text}': {}() takes {words}, {explicit} given (a comma inside an argument splits it); this element never matches",
                    call.name
                ),
            );
            return;
        }
    }
    for arg in &call.args {
        if let Some(inner) = &arg.call {
            check_call(inner, text, diag);
        }
    }
    let constant = |i: usize| {
        call.args
            .get(i)
            .filter(|a| a.call.is_none())
            .map(|a| a.text.as_str())
    };
    match call.func {
        Func::Gt | Func::Ge | Func::Lt | Func::Le | Func::Range => {
            for i in 0..explicit {
                if let Some(a) = constant(i) {
                    if funcs::python_float(a).is_none() {
                        diag(
                            Severity::Error,
                            format!("'{text}': '{a}' is not a number; this element never matches"),
                        );
                    }
                }
            }
        }
        Func::Network => {
            if let Some(a) = constant(0) {
                // Evaluate against a valid address: only the network can fail.
                if let Err(e) = call.test(&Value::from("0.0.0.0")) {
                    diag(
                        Severity::Error,
                        format!("'{text}': {e} (network '{a}'); this element never matches"),
                    );
                }
            }
        }
        Func::Regexp => {
            if let Some(a) = constant(0) {
                if let Err(e) = funcs::compile_python_regex(a) {
                    diag(
                        Severity::Error,
                        format!("'{text}': {e}; this element never matches"),
                    );
                }
            }
        }
        _ => {}
    }
}

/// An ordered map of bound variables (Python dict semantics: insertion order, replacing a
/// key keeps its place).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vars(pub Vec<(String, Value)>);

impl Vars {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// As a Python dict value.
    pub fn to_value(&self) -> Value {
        Value::Dict(
            self.0
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                .collect(),
        )
    }

    /// As a JSON object (insertion order kept).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.0 {
            m.insert(k.clone(), v.to_json());
        }
        serde_json::Value::Object(m)
    }
}

/// Why a profile did not match.
#[derive(Clone, Debug, PartialEq)]
pub enum NoMatch {
    /// The search (before any retry) stopped at this spec: no remaining line satisfied it.
    Spec { index: usize },
    /// The search was abandoned when it had spent its step budget (eDeploy would have
    /// searched for a very long time), while matching spec `spec` (0-based).
    GaveUp { steps: u64, spec: usize },
}

/// The result of [`match_all`].
#[derive(Clone, Debug, PartialEq)]
pub struct MatchResult {
    /// `Ok` with the bound variables, or why not.
    pub outcome: Result<Vars, NoMatch>,
    /// The `$$` variables (renamed without their extra `$`): CMDB lookup keys.
    pub forced: Vars,
    /// Line checks spent.
    pub steps: u64,
}

impl MatchResult {
    pub fn matched(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// Matches an inventory against specs with eDeploy's semantics.
pub fn match_all(inventory: &Inventory, specs: &Specs) -> MatchResult {
    match_all_with_budget(inventory, specs, DEFAULT_STEP_BUDGET)
}

/// [`match_all`] with an explicit step budget.
pub fn match_all_with_budget(inventory: &Inventory, specs: &Specs, budget: u64) -> MatchResult {
    let mut ctx = Ctx::new(&inventory.lines, &specs.specs, budget);
    let lines: Vec<u32> = (0..inventory.lines.len() as u32).collect();
    let mut arr = Arr(Vec::with_capacity(specs.len() * 2));
    let result = ctx.run(lines, 0, &mut arr, 0);
    let to_vars = |a: &Arr<'_>| {
        Vars(
            a.0.iter()
                .map(|(k, li, ei)| {
                    (
                        (*k).to_owned(),
                        inventory.lines[*li as usize][*ei as usize].clone(),
                    )
                })
                .collect(),
        )
    };
    let outcome = match result {
        Ok(true) => Ok(to_vars(&arr)),
        Ok(false) => Err(NoMatch::Spec {
            index: ctx.first_failure.unwrap_or(0),
        }),
        Err(GaveUp) => Err(NoMatch::GaveUp {
            steps: ctx.steps,
            spec: ctx.exhausted_at.unwrap_or(0),
        }),
    };
    MatchResult {
        forced: if outcome.is_ok() {
            to_vars(&ctx.forced)
        } else {
            Vars::default()
        },
        outcome,
        steps: ctx.steps,
    }
}

/// Bound variables during the search: key, and the (line, element) the value comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Arr<'a>(Vec<(&'a str, u32, u8)>);

impl<'a> Arr<'a> {
    fn get(&self, key: &str) -> Option<(u32, u8)> {
        self.0.iter().find(|e| e.0 == key).map(|e| (e.1, e.2))
    }

    fn set(&mut self, key: &'a str, li: u32, ei: u8) {
        match self.0.iter_mut().find(|e| e.0 == key) {
            Some(slot) => {
                slot.1 = li;
                slot.2 = ei;
            }
            None => self.0.push((key, li, ei)),
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(i) = self.0.iter().position(|e| e.0 == key) {
            self.0.remove(i);
        }
    }
}

#[derive(Debug)]
struct GaveUp;

/// A level-0 candidate list (see [`Ctx::candidates`]).
#[derive(Clone, Copy)]
enum Candidates {
    Key(usize),
    Category(u32),
}

/// The lines of a retry point: copied, or (level 0) rebuilt from the removal order.
enum Retry {
    Lines(Vec<u32>),
    Level0 { taken: usize, chosen: u32 },
}

/// Per-(spec, line) result of the variable-independent checks.
const UNKNOWN: u8 = 0;
const NEVER: u8 = 1;
/// `OK_BASE + mask`: matches when the elements in `mask` agree with the bindings.
const OK_BASE: u8 = 2;

/// The state of one nested search, for the failure memo.
type StateKey<'a> = (Vec<u32>, usize, Vec<(&'a str, u32, u8)>);

struct Ctx<'a> {
    inv: &'a [Line],
    specs: &'a [CompiledSpec],
    /// Category id of each line (interned first element).
    line_cat: Vec<u32>,
    /// Category filter of each spec: `Some(id)` lines must have, `None` any line.
    spec_cat: Vec<Option<u32>>,
    /// Category id of each spec's first element taken literally (first pass).
    spec_cat_exact: Vec<Option<u32>>,
    /// Whether a line could equal the whole spec (first pass): every non-literal element's
    /// text appears among the inventory's unusual values (`$...`, `...)`, empty).
    exact_possible: Vec<bool>,
    /// Static check cache, `specs × lines`.
    cache: Vec<u8>,
    /// Lines exactly equal to each non-literal spec (first pass), computed on demand.
    exact: Vec<Option<Vec<u32>>>,
    /// Lines of category `c`, in inventory order: `cat_order[cat_start[c]..cat_start[c + 1]]`.
    cat_start: Vec<u32>,
    cat_order: Vec<u32>,
    /// Lines of one (category, key), in inventory order, shared by the specs that name
    /// both literally (`('disk', '$d1', 'size', ...)`, `('disk', '$d2', 'size', ...)`).
    key_lines: Vec<(u32, &'a Value, Vec<u32>)>,
    /// Index into `key_lines` per spec, once looked up.
    spec_key_lines: Vec<Option<usize>>,
    /// Level 0 (the first forward pass) never reorders lines: which are still there, and
    /// the order they were taken in (retry points are rebuilt from it on demand).
    present: Vec<bool>,
    removed: Vec<u32>,
    forced: Arr<'a>,
    first_failure: Option<usize>,
    memo: HashMap<StateKey<'a>, u32>,
    steps: u64,
    budget: u64,
    /// The spec being matched when the budget ran out: from then on every check fails at
    /// once and the search unwinds.
    exhausted_at: Option<usize>,
}

const NO_CATEGORY: u32 = u32::MAX;

impl<'a> Ctx<'a> {
    fn new(inv: &'a [Line], specs: &'a [CompiledSpec], budget: u64) -> Self {
        let mut cats: Vec<&str> = Vec::new();
        let mut last: Option<(&str, u32)> = None;
        let line_cat: Vec<u32> = inv
            .iter()
            .map(|l| {
                let Value::Str(c) = &l[0] else {
                    return NO_CATEGORY - 1;
                };
                if let Some((s, id)) = last {
                    if s == c {
                        return id;
                    }
                }
                let id = match cats.iter().position(|k| *k == c) {
                    Some(i) => i as u32,
                    None => {
                        cats.push(c);
                        (cats.len() - 1) as u32
                    }
                };
                last = Some((c, id));
                id
            })
            .collect();
        // Lines grouped by category, in inventory order (a counting sort: one array).
        let mut cat_start = vec![0u32; cats.len() + 1];
        for &c in &line_cat {
            if let Some(n) = cat_start.get_mut(c as usize + 1) {
                *n += 1;
            }
        }
        for i in 1..cat_start.len() {
            cat_start[i] += cat_start[i - 1];
        }
        let mut fill = cat_start.clone();
        let mut cat_order = vec![0u32; cat_start[cats.len()] as usize];
        for (l, &c) in line_cat.iter().enumerate() {
            if let Some(at) = fill.get_mut(c as usize) {
                cat_order[*at as usize] = l as u32;
                *at += 1;
            }
        }
        let cat_id = |c: &str| {
            cats.iter()
                .position(|k| *k == c)
                .map_or(NO_CATEGORY, |i| i as u32)
        };
        let spec_cat = specs
            .iter()
            .map(|s| match (&s.elems[0], &s.raw[0]) {
                (Elem::Literal, Value::Str(c)) => Some(cat_id(c)),
                _ => None,
            })
            .collect();
        let spec_cat_exact = specs
            .iter()
            .map(|s| s.raw[0].as_str().map(cat_id))
            .collect();
        // Values a non-literal spec element could equal: they start with '$', end with ')'
        // or are empty. Real inventories have few (a product name in parentheses).
        let unusual: Vec<&str> = inv
            .iter()
            .flat_map(|l| l.iter())
            .filter_map(Value::as_str)
            .filter(|v| v.is_empty() || v.starts_with('$') || v.ends_with(')'))
            .collect();
        let exact_possible = specs
            .iter()
            .map(|s| {
                !s.pure_literal
                    && !s.longer
                    && s.elems.iter().zip(&s.raw).all(|(e, raw)| match (e, raw) {
                        (Elem::Literal, _) => true,
                        (_, Value::Str(t)) => unusual.contains(&t.as_str()),
                        _ => false,
                    })
            })
            .collect();
        Ctx {
            inv,
            specs,
            cat_start,
            cat_order,
            key_lines: Vec::new(),
            spec_key_lines: vec![None; specs.len()],
            present: vec![true; inv.len()],
            removed: Vec::with_capacity(specs.len()),
            line_cat,
            spec_cat,
            spec_cat_exact,
            exact_possible,
            cache: vec![UNKNOWN; specs.len() * inv.len()],
            exact: vec![None; specs.len()],
            forced: Arr::default(),
            first_failure: None,
            memo: HashMap::new(),
            steps: 0,
            budget,
            exhausted_at: None,
        }
    }

    fn value(&self, li: u32, ei: u8) -> &'a Value {
        &self.inv[li as usize][ei as usize]
    }

    /// The variable-independent part of matching spec `s` against line `l`. What tests
    /// cost (regular expressions) is added to the steps; past the budget every check fails.
    fn static_check(&mut self, s: usize, l: u32) -> u8 {
        let idx = s * self.inv.len() + l as usize;
        let cached = self.cache[idx];
        if cached != UNKNOWN {
            return cached;
        }
        if self.exhausted_at.is_some() {
            return NEVER;
        }
        let mut meter = funcs::Meter::new(self.budget.saturating_sub(self.steps));
        let spec = &self.specs[s];
        let line = &self.inv[l as usize];
        let mut mask = 0u8;
        let mut ok = true;
        // Callers only pass lines of the spec's category when it is a literal.
        let first = usize::from(self.spec_cat[s].is_some());
        for (i, elem) in spec.elems.iter().enumerate().skip(first) {
            let pass = match elem {
                Elem::Literal => line[i] == spec.raw[i],
                Elem::Never => false,
                Elem::Var(_) => {
                    mask |= 1 << i;
                    true
                }
                Elem::Test(call) => matches!(call.test_metered(&line[i], &mut meter), Ok(true)),
                Elem::VarTest(_, call) => {
                    if matches!(call.test_metered(&line[i], &mut meter), Ok(true)) {
                        mask |= 1 << i;
                        true
                    } else {
                        line[i] == spec.raw[i]
                    }
                }
            };
            if !pass {
                ok = false;
                break;
            }
        }
        let code = if ok { OK_BASE + mask } else { NEVER };
        self.cache[idx] = code;
        self.steps += meter.spent;
        if self.steps > self.budget {
            self.exhausted_at = Some(s);
        }
        code
    }

    fn var_name(&self, s: usize, i: usize) -> &'a str {
        match &self.specs[s].elems[i] {
            Elem::Var(n) | Elem::VarTest(n, _) => n,
            _ => "",
        }
    }

    /// Whether line `l` satisfies spec `s` in the second pass under the bindings `arr`.
    fn second_pass_ok(&mut self, s: usize, l: u32, arr: &Arr<'a>) -> Option<u8> {
        if let Some(cat) = self.spec_cat[s] {
            if self.line_cat[l as usize] != cat {
                return None;
            }
        }
        let code = self.static_check(s, l);
        if code == NEVER {
            return None;
        }
        let mask = code - OK_BASE;
        for i in 0..4 {
            if mask & (1 << i) != 0 {
                let name = self.var_name(s, i);
                if let Some((bl, be)) = arr.get(name) {
                    if self.value(bl, be) != &self.inv[l as usize][i] {
                        return None;
                    }
                }
            }
        }
        Some(mask)
    }

    /// Original indices of the lines equal to spec `s` (first pass).
    fn exact_lines(&mut self, s: usize) -> &[u32] {
        if !self.exact_possible[s] {
            return &[];
        }
        if self.exact[s].is_none() {
            let spec = &self.specs[s];
            let filter = self.spec_cat_exact[s];
            let found: Vec<u32> = (0..self.inv.len() as u32)
                .filter(|&l| filter.is_none_or(|c| self.line_cat[l as usize] == c))
                .filter(|&l| self.inv[l as usize] == spec.raw)
                .collect();
            self.steps += self.inv.len() as u64;
            self.exact[s] = Some(found);
        }
        self.exact[s].as_deref().unwrap_or(&[])
    }

    /// eDeploy's `match_spec`: consumes and returns the matching line, binding variables.
    ///
    /// At level 0 the remaining lines are in inventory order, so a spec whose category is
    /// a literal only needs to look at that category's lines: same first line, fewer looks.
    fn match_spec(
        &mut self,
        s: usize,
        lines: &mut Vec<u32>,
        arr: &mut Arr<'a>,
        level0: bool,
    ) -> Option<u32> {
        self.steps += lines.len() as u64;
        let found = self.find_line(s, lines, arr, level0)?;
        let (l, mask) = found;
        for i in 0..4u8 {
            if mask & (1 << i) != 0 {
                arr.set(self.var_name(s, i as usize), l, i);
            }
        }
        if level0 {
            if let Ok(pos) = lines.binary_search(&l) {
                lines.remove(pos);
            }
            self.present[l as usize] = false;
            self.removed.push(l);
        } else if let Some(pos) = lines.iter().position(|&x| x == l) {
            lines.remove(pos);
        }
        Some(l)
    }

    /// The line spec `s` takes (first pass, then second pass) and the elements it binds.
    fn find_line(
        &mut self,
        s: usize,
        lines: &[u32],
        arr: &Arr<'a>,
        level0: bool,
    ) -> Option<(u32, u8)> {
        if self.exact_possible[s] && !self.exact_lines(s).is_empty() {
            let exact = self.exact_lines(s).to_vec();
            let first = if level0 {
                exact.iter().copied().find(|&l| self.present[l as usize])
            } else {
                lines.iter().copied().find(|l| exact.contains(l))
            };
            if let Some(l) = first {
                return Some((l, 0));
            }
        }
        match self.spec_cat[s] {
            Some(cat) if level0 => {
                let list = self.candidates(s, cat);
                let count = self.list_len(list);
                for k in 0..count {
                    let l = self.list_at(list, k);
                    if self.present[l as usize] {
                        if let Some(mask) = self.second_pass_ok(s, l, arr) {
                            return Some((l, mask));
                        }
                    }
                }
                None
            }
            _ => lines
                .iter()
                .find_map(|&l| self.second_pass_ok(s, l, arr).map(|m| (l, m))),
        }
    }

    /// Where spec `s` (category `cat`) finds its candidate lines at level 0: the lines of
    /// its (category, key) when the key is a literal, else all lines of the category.
    fn candidates(&mut self, s: usize, cat: u32) -> Candidates {
        if let Some(i) = self.spec_key_lines[s] {
            return Candidates::Key(i);
        }
        let spec = &self.specs[s];
        if !matches!(spec.elems[2], Elem::Literal) {
            return Candidates::Category(cat);
        }
        let key: &'a Value = &spec.raw[2];
        let i = match self
            .key_lines
            .iter()
            .position(|(c, k, _)| *c == cat && *k == key)
        {
            Some(i) => i,
            None => {
                let lines: Vec<u32> = self
                    .category(cat)
                    .iter()
                    .copied()
                    .filter(|&l| self.inv[l as usize][2] == *key)
                    .collect();
                self.key_lines.push((cat, key, lines));
                self.key_lines.len() - 1
            }
        };
        self.spec_key_lines[s] = Some(i);
        Candidates::Key(i)
    }

    fn list_len(&self, c: Candidates) -> usize {
        match c {
            Candidates::Key(i) => self.key_lines[i].2.len(),
            Candidates::Category(cat) => self.category(cat).len(),
        }
    }

    fn list_at(&self, c: Candidates, k: usize) -> u32 {
        match c {
            Candidates::Key(i) => self.key_lines[i].2[k],
            Candidates::Category(cat) => self.category(cat)[k],
        }
    }

    /// The lines of a category (none for an id no line has).
    fn category(&self, cat: u32) -> &[u32] {
        match (
            self.cat_start.get(cat as usize),
            self.cat_start.get(cat as usize + 1),
        ) {
            (Some(&a), Some(&b)) => &self.cat_order[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The lines of a level-0 retry point: those left before `taken` lines were removed,
    /// minus `chosen`, with `chosen` moved to the end (eDeploy's retry order).
    fn level0_retry_lines(&self, taken: usize, chosen: u32) -> Vec<u32> {
        let mut gone = vec![false; self.inv.len()];
        for &l in &self.removed[..taken] {
            gone[l as usize] = true;
        }
        gone[chosen as usize] = true;
        let mut v: Vec<u32> = (0..self.inv.len() as u32)
            .filter(|&l| !gone[l as usize])
            .collect();
        v.push(chosen);
        v
    }

    /// eDeploy's `match_all` from spec `start` on, at nesting `level`.
    fn run(
        &mut self,
        mut lines: Vec<u32>,
        start: usize,
        arr: &mut Arr<'a>,
        level: u32,
    ) -> Result<bool, GaveUp> {
        if level == MAX_LEVEL {
            return Ok(false);
        }
        if self.steps > self.budget {
            self.exhausted_at.get_or_insert(start);
            return Err(GaveUp);
        }
        let mut copy_len = arr.0.len();
        let level0 = level == 0;
        let mut points: Vec<(Retry, usize, usize)> =
            Vec::with_capacity(self.specs.len().saturating_sub(start));
        for s in start..self.specs.len() {
            let matched = self.match_spec(s, &mut lines, arr, level0);
            if self.exhausted_at.is_some() {
                return Err(GaveUp);
            }
            match matched {
                Some(line) => {
                    // A retry point when the bindings changed (only new keys can change them).
                    if arr.0.len() != copy_len {
                        let retry = if level0 {
                            Retry::Level0 {
                                taken: self.removed.len() - 1,
                                chosen: line,
                            }
                        } else {
                            let mut retry_lines = lines.clone();
                            retry_lines.push(line);
                            Retry::Lines(retry_lines)
                        };
                        points.push((retry, s, copy_len));
                        copy_len = arr.0.len();
                    }
                }
                None => {
                    if level == 0 && self.first_failure.is_none() {
                        self.first_failure = Some(s);
                    }
                    while let Some((retry, retry_spec, len)) = points.pop() {
                        let retry_lines = match retry {
                            Retry::Lines(v) => v,
                            Retry::Level0 { taken, chosen } => {
                                self.level0_retry_lines(taken, chosen)
                            }
                        };
                        let mut retry_arr = Arr(arr.0[..len].to_vec());
                        let feasible = self.feasible(&retry_lines, retry_spec, &retry_arr);
                        if self.exhausted_at.is_some() {
                            return Err(GaveUp);
                        }
                        if !feasible {
                            continue;
                        }
                        let key: StateKey<'a> = (retry_lines, retry_spec, canonical(&retry_arr));
                        if self
                            .memo
                            .get(&key)
                            .is_some_and(|&failed_at| failed_at <= level + 1)
                        {
                            continue;
                        }
                        if self.run(key.0.clone(), retry_spec, &mut retry_arr, level + 1)? {
                            for (k, li, ei) in retry_arr.0 {
                                arr.set(k, li, ei);
                            }
                            return Ok(true);
                        }
                        let slot = self.memo.entry(key).or_insert(u32::MAX);
                        *slot = (*slot).min(level + 1);
                    }
                    return Ok(false);
                }
            }
        }
        // Success: `$$name` keys become `name`, and are the forced CMDB lookup keys.
        let keys: Vec<&'a str> = arr.0.iter().map(|e| e.0).collect();
        for key in keys {
            if let Some(new_key) = key.strip_prefix('$') {
                if let Some((li, ei)) = arr.get(key) {
                    arr.set(new_key, li, ei);
                    self.forced.set(new_key, li, ei);
                    arr.remove(key);
                }
            }
        }
        Ok(true)
    }

    /// A necessary condition for the remaining specs to succeed: each can be given a
    /// distinct remaining line that it could match, ignoring variables not yet bound.
    fn feasible(&mut self, lines: &[u32], start: usize, arr: &Arr<'a>) -> bool {
        let n_specs = self.specs.len() - start;
        if n_specs > lines.len() {
            return false;
        }
        self.steps += (n_specs * lines.len()) as u64;
        let mut candidates: Vec<Vec<u32>> = Vec::with_capacity(n_specs);
        for s in start..self.specs.len() {
            let exact: Vec<u32> = self.exact_lines(s).to_vec();
            let mut c: Vec<u32> = Vec::new();
            for (pos, &l) in lines.iter().enumerate() {
                if exact.contains(&l) || self.second_pass_ok(s, l, arr).is_some() {
                    c.push(pos as u32);
                }
            }
            if c.is_empty() {
                return false;
            }
            candidates.push(c);
        }
        // Kuhn's augmenting paths, most constrained specs first.
        let mut order: Vec<usize> = (0..n_specs).collect();
        order.sort_by_key(|&i| candidates[i].len());
        let mut owner: Vec<Option<usize>> = vec![None; lines.len()];
        for &s in &order {
            let mut seen = vec![false; lines.len()];
            if !augment(s, &candidates, &mut owner, &mut seen) {
                return false;
            }
        }
        true
    }
}

fn augment(s: usize, cand: &[Vec<u32>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for &l in &cand[s] {
        let l = l as usize;
        if seen[l] {
            continue;
        }
        seen[l] = true;
        match owner[l] {
            None => {
                owner[l] = Some(s);
                return true;
            }
            Some(other) => {
                if augment(other, cand, owner, seen) {
                    owner[l] = Some(s);
                    return true;
                }
            }
        }
    }
    false
}

fn canonical<'a>(arr: &Arr<'a>) -> Vec<(&'a str, u32, u8)> {
    let mut v = arr.0.clone();
    v.sort_unstable();
    v
}

/// What explaining a failed spec may cost, in steps: its tests are not run on every line
/// again when they are costly.
const EXPLAIN_BUDGET: u64 = 1_000_000;

/// Why each line of the spec's category failed it, for "why didn't it match" reports.
/// Returns at most `limit` lines of explanation.
pub fn explain_spec(
    inventory: &Inventory,
    specs: &Specs,
    index: usize,
    limit: usize,
) -> Vec<String> {
    let Some(spec) = specs.specs.get(index) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut meter = funcs::Meter::new(EXPLAIN_BUDGET);
    let same_category: Vec<&Line> = inventory
        .lines
        .iter()
        .filter(|l| match (&spec.elems[0], &spec.raw[0]) {
            (Elem::Literal, v) => &l[0] == v,
            _ => true,
        })
        .collect();
    if same_category.is_empty() {
        out.push(format!(
            "the inventory has no '{}' line",
            display_elem(&spec.raw[0])
        ));
        return out;
    }
    for line in same_category {
        if out.len() >= limit || meter.spent > meter.limit {
            break;
        }
        for (i, elem) in spec.elems.iter().enumerate() {
            let reason = match elem {
                Elem::Literal if line[i] != spec.raw[i] => {
                    Some(format!("{} != {}", line[i], spec.raw[i]))
                }
                Elem::Never => Some(format!("{} can never match", spec.raw[i])),
                Elem::Test(call) | Elem::VarTest(_, call) => match call
                    .test_metered(&line[i], &mut meter)
                {
                    Ok(true) => None,
                    Ok(false) if matches!(elem, Elem::VarTest(..)) && line[i] == spec.raw[i] => {
                        None
                    }
                    Ok(false) => Some(format!(
                        "{} is false for {}",
                        display_elem(&spec.raw[i]),
                        line[i]
                    )),
                    Err(e) => Some(format!("{} raised: {e}", display_elem(&spec.raw[i]))),
                },
                _ => None,
            };
            if let Some(r) = reason {
                out.push(format!("line {}: {r}", display_line(line)));
                break;
            }
        }
    }
    if out.is_empty() {
        out.push("candidate lines exist but were used by earlier specs or disagree with variables bound earlier".into());
    }
    out
}

fn display_elem(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `('disk', 'sda', 'size', '100')`.
pub fn display_line(line: &Line) -> String {
    Value::Tuple(line.to_vec()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse_value;

    /// Matches Python-literal inputs; returns the variables and forced keys as JSON.
    fn m(hw: &str, specs: &str) -> Option<(String, String)> {
        let inv = Inventory::parse(hw).expect("inventory");
        let specs = Specs::compile(crate::model::parse_specs(specs).expect("specs"));
        let r = match_all(&inv, &specs);
        r.outcome
            .ok()
            .map(|v| (v.to_json().to_string(), r.forced.to_json().to_string()))
    }

    fn vars(hw: &str, specs: &str) -> Option<String> {
        m(hw, specs).map(|(v, _)| v)
    }

    // Each expectation below was obtained by running eDeploy's matcher (hardware 0.33).

    #[test]
    fn backtracks_when_a_later_spec_contradicts_a_binding() {
        let hw =
            "[('disk','sda','size','100'),('disk','sdb','size','200'),('disk','sdb','slot','1')]";
        assert_eq!(
            vars(hw, "[('disk','$d','size','$s'),('disk','$d','slot','1')]").as_deref(),
            Some(r#"{"d":"sdb","s":"200"}"#)
        );
    }

    #[test]
    fn abandoned_forced_keys_survive_a_backtrack() {
        let hw = "[('net','eth0','serial','aa'),('net','eth1','serial','bb'),('net','eth1','ipv4','1.2.3.4')]";
        let (v, forced) = m(
            hw,
            "[('net','$$eth','serial','$mac'),('net','$$eth','ipv4','$ip')]",
        )
        .unwrap();
        assert_eq!(
            v,
            r#"{"$eth":"eth0","mac":"bb","ip":"1.2.3.4","eth":"eth1"}"#
        );
        assert_eq!(forced, r#"{"eth":"eth1"}"#);
    }

    #[test]
    fn a_line_equal_to_the_spec_is_consumed_first_without_binding() {
        assert_eq!(
            vars(
                "[('a','$x','c','d'),('a','b','c','d')]",
                "[('a','$x','c','d')]"
            )
            .as_deref(),
            Some("{}")
        );
    }

    #[test]
    fn ints_are_kept_and_never_equal_strings() {
        let hw = "[('ipmi','lan','channel',2)]";
        assert_eq!(
            vars(hw, "[('ipmi','lan','channel','$ch')]").as_deref(),
            Some(r#"{"ch":2}"#)
        );
        assert_eq!(vars(hw, "[('ipmi','lan','channel','2')]"), None);
        assert_eq!(
            vars(hw, "[('ipmi','lan','channel','gt(1)')]"),
            None,
            "eDeploy raises on ints"
        );
    }

    #[test]
    fn same_variable_twice_in_one_spec_is_not_cross_checked() {
        assert_eq!(
            vars("[('a','x','y','z')]", "[('a','$v','y','$v')]").as_deref(),
            Some(r#"{"v":"z"}"#)
        );
    }

    #[test]
    fn variable_forms() {
        let hw = "[('a','x','y','z')]";
        assert_eq!(vars(hw, "[('a','$v=abc','y','z')]"), None);
        assert_eq!(
            vars("[('a','$v=abc','y','z')]", "[('a','$v=abc','y','z')]").as_deref(),
            Some("{}")
        );
        assert_eq!(
            vars(hw, "[('a','$a=b=c','y','z')]").as_deref(),
            Some(r#"{"a=b=c":"x"}"#)
        );
        let (v, forced) = m(hw, "[('a','$$','y','z')]").unwrap();
        assert_eq!(
            (v.as_str(), forced.as_str()),
            (r#"{"":"x"}"#, r#"{"":"x"}"#)
        );
    }

    #[test]
    fn var_with_test_binds_only_when_true() {
        let hw = "[('disk','sda','size','50'),('disk','sdb','size','150')]";
        assert_eq!(
            vars(hw, "[('disk','$d','size','$sz=gt(100)')]").as_deref(),
            Some(r#"{"d":"sdb","sz":"150"}"#)
        );
    }

    #[test]
    fn unknown_functions_only_match_a_whole_equal_line() {
        assert_eq!(
            vars(
                "[('disk','sda','size','50')]",
                "[('disk','sda','size','gt (1)')]"
            ),
            None
        );
        assert_eq!(
            vars(
                "[('disk','sda','size','gtt(4)')]",
                "[('disk','sda','size','gtt(4)')]"
            )
            .as_deref(),
            Some("{}")
        );
        assert_eq!(
            vars(
                "[('disk','sda','size','gtt(4)'),('x','y','z','w')]",
                "[('disk','$d','size','gtt(4)')]"
            ),
            None
        );
    }

    #[test]
    fn first_line_in_inventory_order_wins() {
        let hw = "[('disk','sdb','size','100'),('disk','sda','size','100')]";
        assert_eq!(
            vars(hw, "[('disk','$d','size','100')]").as_deref(),
            Some(r#"{"d":"sdb"}"#)
        );
    }

    #[test]
    fn a_spec_without_new_variable_consumes_its_line_for_good() {
        // The literal spec takes sda's size line; no retry can give it back.
        let hw = "[('disk','sda','size','100'),('disk','sda','rot','1')]";
        assert_eq!(
            vars(
                hw,
                "[('disk','sda','size','100'),('disk','$d','size','100')]"
            ),
            None
        );
    }

    #[test]
    fn pigeonhole_failures_are_fast_and_bounded() {
        // 8 identical disks, 9 disk specs: eDeploy explores an exponential tree; the
        // bipartite test rejects it at once.
        let hw: Vec<String> = (0..8)
            .map(|i| format!("('disk','sd{}','size','300')", (b'a' + i) as char))
            .collect();
        let specs: Vec<String> = (0..9)
            .map(|i| format!("('disk','$d{i}','size','300')"))
            .collect();
        let inv = Inventory::parse(&format!("[{}]", hw.join(","))).unwrap();
        let s =
            Specs::compile(crate::model::parse_specs(&format!("[{}]", specs.join(","))).unwrap());
        let r = match_all(&inv, &s);
        assert!(!r.matched());
        assert!(r.steps < 10_000, "steps {}", r.steps);
    }

    #[test]
    fn budget_exhaustion_is_reported_not_hung() {
        // Two NICs with link: feasible in the relaxation, impossible jointly.
        let mut hw = Vec::new();
        for i in 0..4 {
            hw.push(format!("('network','eth{i}','serial','m{i}')"));
            hw.push(format!(
                "('network','eth{i}','link','{}')",
                if i == 0 { "yes" } else { "no" }
            ));
        }
        let specs = "[('network','$a','serial','$ma'),('network','$a','link','yes'),('network','$b','serial','$mb'),('network','$b','link','yes')]";
        let inv = Inventory::parse(&format!("[{}]", hw.join(","))).unwrap();
        let s = Specs::compile(crate::model::parse_specs(specs).unwrap());
        let r = match_all_with_budget(&inv, &s, 1_000_000);
        assert!(!r.matched());
    }

    #[test]
    fn a_costly_pattern_spends_the_budget_and_names_its_spec() {
        // Issue 11: a backtracking pattern and many lines it is tried on. The first spec
        // is cheap; the second spends the budget within a few lines and the search stops.
        let mut hw = vec!["('system','product','name','x')".to_owned()];
        for i in 0..1_000 {
            hw.push(format!(
                "('bench','b{i}','score','aaaa aaaa aaaa aaaa aaaa aaaa!')"
            ));
        }
        let specs =
            r"[('system','product','name','x'), ('bench','$b','score','regexp(^(\\w+\\s?)*\\1$)')]";
        let inv = Inventory::parse(&format!("[{}]", hw.join(","))).unwrap();
        let s = Specs::compile(crate::model::parse_specs(specs).unwrap());
        let r = match_all_with_budget(&inv, &s, DEFAULT_STEP_BUDGET);
        match r.outcome {
            Err(NoMatch::GaveUp { spec, steps }) => {
                assert_eq!(spec, 1);
                assert!(
                    steps > DEFAULT_STEP_BUDGET && steps < 3 * DEFAULT_STEP_BUDGET,
                    "{steps}"
                );
            }
            other => panic!("{other:?} after {} steps", r.steps),
        }
        // The linear engine answers the same shape without a backreference at once.
        let linear = r"[('bench','$b','score','regexp(^(\\w+\\s?)*$)')]";
        let s = Specs::compile(crate::model::parse_specs(linear).unwrap());
        let r = match_all_with_budget(&inv, &s, DEFAULT_STEP_BUDGET);
        assert!(
            matches!(r.outcome, Err(NoMatch::Spec { index: 0 })),
            "{r:?}"
        );
        assert!(r.steps < 100_000, "{}", r.steps);
    }

    #[test]
    fn diagnostics_name_the_problem() {
        let specs = Specs::compile(
            crate::model::parse_specs("[('disk','$d','size','gtt(4)'),\n ('disk','$d','size','gt(abc)'),\n ('a','b','c','gt (1)')]")
                .unwrap(),
        );
        let msgs: Vec<String> = specs
            .diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            msgs[0]
                .starts_with("1:2: error: 'gtt(4)': unknown function 'gtt' (did you mean 'gt'?)"),
            "{msgs:?}"
        );
        assert!(
            msgs[1].starts_with("2:2: error: 'gt(abc)': 'abc' is not a number"),
            "{msgs:?}"
        );
        assert!(
            msgs[2].contains("did you mean 'gt' without blanks?"),
            "{msgs:?}"
        );
        let _ = parse_value("1");
    }
}
