//! Errors of a configure script, located at `file:line:column`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;

/// What kind of problem stopped a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The script does not parse.
    Syntax,
    /// A function that neither the API nor the script defines.
    MissingFunction,
    /// An API function called with arguments of the wrong types.
    WrongType,
    /// An API function refused an argument's value (bad device name, unknown filesystem...).
    InvalidArgument,
    /// A command exited non-zero under `run`.
    CommandFailed,
    /// The host could not run a command or write a file (timeout, missing program, bad path).
    Host,
    /// An engine limit was hit (operations, call depth, sizes).
    Limit,
    /// Any other run-time error (unknown variable, `throw`, out-of-bounds index...).
    Runtime,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Syntax => "syntax error",
            ErrorKind::MissingFunction => "unknown function",
            ErrorKind::WrongType => "wrong argument types",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::CommandFailed => "command failed",
            ErrorKind::Host => "host error",
            ErrorKind::Limit => "limit exceeded",
            ErrorKind::Runtime => "runtime error",
        })
    }
}

/// The command that made `run` abort the script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandFailure {
    /// Command line.
    pub command: String,
    /// Exit status.
    pub status: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// An error in a configure script, at `file:line:column`.
///
/// Displays as `FILE:LINE:COLUMN: KIND: MESSAGE` (line and column omitted when unknown), with
/// one ` (in function F called at L:C)` per script function the error passed through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ScriptError {
    /// Script name as given to `compile` (the `.configure` file).
    pub file: String,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// What kind of problem.
    pub kind: ErrorKind,
    /// What happened, in words.
    pub message: String,
    /// Script functions the error unwound through, innermost first: `(function, line, column)`.
    pub call_stack: Vec<(String, usize, usize)>,
    /// For [`ErrorKind::CommandFailed`]: the command and its output.
    pub failure: Option<Box<CommandFailure>>,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}: {}", self.kind, self.message)?;
        for (func, line, col) in &self.call_stack {
            write!(f, " (in function {func} called at {line}:{col})")?;
        }
        Ok(())
    }
}

/// A run that stopped on an error, with what it had done before stopping (for the log).
#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    /// The error.
    pub error: Box<ScriptError>,
    /// Commands, files and settings up to the error.
    pub partial: Box<Outcome>,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for RunError {}
