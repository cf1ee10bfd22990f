//! The Rhai engine of configure scripts: an engine set to the run's limits, compilation
//! (syntax check) and runs against a `Host`.

use std::cell::RefCell;
use std::rc::Rc;

use rhai::{Dynamic, Engine, EvalAltResult, OptimizationLevel, Position, AST};

use crate::api::{self, ApiError, Session};
use crate::convert::object_to_map;
use crate::error::{ErrorKind, RunError, ScriptError};
use crate::host::{Host, RecordingHost};
use crate::options::{Limits, Options};
use crate::outcome::Outcome;

/// A compiled configure script.
#[derive(Debug, Clone)]
pub struct Script {
    name: String,
    ast: AST,
}

impl Script {
    /// The file name errors are reported with.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// An engine with the limits set, `var` bound to `var`, and everything outside the configure
/// API turned off.
fn engine(limits: &Limits, var: Dynamic) -> Engine {
    let mut e = Engine::new();
    // `var` is a reserved keyword in Rhai, so it cannot be a plain variable: it is a custom
    // syntax evaluating to the bound map. As an expression, `var.ip` and `var["ip"]` work, and
    // it is visible inside script functions too (script functions do not see the global scope).
    // Registration only fails for an invalid symbol list, and `["var"]` is a valid one.
    let _ = e.register_custom_syntax(["var"], false, move |_, _| Ok(var.clone()));
    e.set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_depth)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_variables(limits.max_variables)
        .set_max_functions(limits.max_functions)
        .set_fail_on_invalid_map_property(true)
        .set_optimization_level(OptimizationLevel::Simple);
    e.disable_symbol("eval");
    // Until a run replaces them, print and debug go nowhere (never to the process's stdout).
    e.on_print(|_| {});
    e.on_debug(|_, _, _| {});
    register_printing(&mut e, limits.max_value_depth);
    e
}

/// Printing arrays and maps (`print`, `debug`, `to_string`, `to_debug`, and so string
/// interpolation): Rhai's own functions recurse once per level of the value, and a value
/// nested a few thousand levels deep would overflow the stack. These measure the value
/// first (no deeper than `limit`) and refuse one nested deeper ([`ErrorKind::Limit`]).
fn register_printing(e: &mut Engine, limit: usize) {
    fn too_deep(limit: usize) -> Box<EvalAltResult> {
        EvalAltResult::ErrorRuntime(
            Dynamic::from(ApiError {
                kind: ErrorKind::Limit,
                message: format!(
                    "a value with more than {limit} levels of arrays and maps inside each other cannot be printed"
                ),
                failure: None,
            }),
            Position::NONE,
        )
        .into()
    }
    for name in ["print", "debug", "to_string", "to_debug"] {
        e.register_fn(
            name,
            move |a: &mut rhai::Array| -> Result<String, Box<EvalAltResult>> {
                if crate::convert::items_nesting(a.iter(), limit) > limit {
                    return Err(too_deep(limit));
                }
                Ok(format!("{a:?}"))
            },
        );
        e.register_fn(
            name,
            move |m: &mut rhai::Map| -> Result<String, Box<EvalAltResult>> {
                if crate::convert::items_nesting(m.values(), limit) > limit {
                    return Err(too_deep(limit));
                }
                Ok(format!("#{m:?}"))
            },
        );
    }
}

/// Parses a script without running it (`rdeploy check`): syntax errors come back located.
pub fn compile(name: &str, source: &str) -> Result<Script, ScriptError> {
    compile_with(name, source, &Limits::default())
}

/// [`compile`] with explicit limits (expression depth is checked while parsing).
pub fn compile_with(name: &str, source: &str, limits: &Limits) -> Result<Script, ScriptError> {
    let mut ast = engine(limits, Dynamic::UNIT)
        .compile(source)
        .map_err(|err| {
            let pos = err.1;
            ScriptError {
                file: name.to_owned(),
                line: pos.line(),
                column: pos.position(),
                kind: ErrorKind::Syntax,
                message: err.0.to_string(),
                call_stack: Vec::new(),
                failure: None,
            }
        })?;
    ast.set_source(name);
    Ok(Script {
        name: name.to_owned(),
        ast,
    })
}

/// Runs a script: `var` is bound to `vars`, every command and file goes through `host`.
///
/// On error, the [`RunError`] carries what the script did before it stopped. Writers opened
/// with `config(path)` and not closed are written when the script ends without error.
pub fn run(
    script: &Script,
    vars: &serde_json::Map<String, serde_json::Value>,
    host: Rc<dyn Host>,
    options: &Options,
) -> Result<Outcome, RunError> {
    let session = Rc::new(RefCell::new(Session::new(host, options)));
    let mut engine = engine(&options.limits, Dynamic::from_map(object_to_map(vars)));
    api::register(&mut engine, &session);
    let result = engine
        .run_ast(&script.ast)
        .and_then(|()| Session::finish(&session));
    drop(engine);
    let outcome = session.borrow_mut().take_outcome();
    match result {
        Ok(()) => Ok(outcome),
        Err(err) => Err(RunError {
            error: Box::new(script_error(&script.name, &err)),
            partial: Box::new(outcome),
        }),
    }
}

/// Runs a script on a fresh [`RecordingHost`] (every command succeeds, prints nothing).
pub fn dry_run(
    script: &Script,
    vars: &serde_json::Map<String, serde_json::Value>,
    options: &Options,
) -> Result<Outcome, RunError> {
    run(script, vars, Rc::new(RecordingHost::new()), options)
}

/// The message of an engine error without Rhai's ` (line L, position C)` suffix.
fn bare_message(err: &EvalAltResult) -> String {
    let text = err.to_string();
    match text.rfind(" (line ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    }
}

/// Rhai's spelling of argument types in a signature, in the words of the API documentation.
fn plain_types(sig: &str) -> String {
    sig.replace("&str | ImmutableString | String", "string")
        .replace("ImmutableString", "string")
        .replace("&mut ", "")
        .replace("i64", "int")
        .replace("f64", "float")
        .replace("()", "unit")
}

fn script_error(file: &str, err: &EvalAltResult) -> ScriptError {
    let mut stack = Vec::new();
    let mut e = err;
    while let EvalAltResult::ErrorInFunctionCall(name, _, inner, pos) = e {
        stack.push((
            name.clone(),
            pos.line().unwrap_or(0),
            pos.position().unwrap_or(0),
        ));
        e = inner;
    }
    stack.reverse();
    let pos: Position = e.position();
    let mut failure = None;
    let (kind, message) = match e {
        EvalAltResult::ErrorRuntime(v, _) => match v.read_lock::<ApiError>() {
            Some(api) => {
                failure.clone_from(&api.failure);
                (api.kind, api.message.clone())
            }
            None => (ErrorKind::Runtime, format!("script threw {v}")),
        },
        EvalAltResult::ErrorFunctionNotFound(sig, _) => {
            let name = sig.split(['(', ' ']).next().unwrap_or(sig.as_str());
            let sig = plain_types(sig);
            match api::usage(name) {
                Some(usage) => (
                    ErrorKind::WrongType,
                    format!("`{sig}` does not match {usage}"),
                ),
                None => (ErrorKind::MissingFunction, format!("no function `{sig}`")),
            }
        }
        EvalAltResult::ErrorMismatchDataType(..) | EvalAltResult::ErrorMismatchOutputType(..) => {
            (ErrorKind::WrongType, bare_message(e))
        }
        EvalAltResult::ErrorTooManyOperations(_)
        | EvalAltResult::ErrorTooManyVariables(_)
        | EvalAltResult::ErrorTooManyModules(_)
        | EvalAltResult::ErrorStackOverflow(_)
        | EvalAltResult::ErrorDataTooLarge(..)
        | EvalAltResult::ErrorTerminated(..) => (ErrorKind::Limit, bare_message(e)),
        EvalAltResult::ErrorParsing(t, _) => (ErrorKind::Syntax, t.to_string()),
        _ => (ErrorKind::Runtime, bare_message(e)),
    };
    ScriptError {
        file: file.to_owned(),
        line: pos.line(),
        column: pos.position(),
        kind,
        message,
        call_stack: stack,
        failure,
    }
}
