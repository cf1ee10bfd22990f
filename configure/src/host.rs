//! The one side-effect boundary of a configure run: the `Host` trait and its recording (dry-run) implementation.
//!
//! A configure script never touches the machine itself: every command it runs and every file it
//! writes goes through a [`Host`]. [`RecordingHost`] records them in order and answers with canned
//! results (dry runs, `rdeploy check`, tests); [`crate::SystemHost`] does them for real.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A command to run: the argument vector (no shell unless `argv[0]` is one) and its time limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// The command is killed (with its whole process group) after this long.
    #[serde(with = "duration_secs")]
    pub timeout: Duration,
}

impl Command {
    /// A command from its argument vector.
    pub fn new<I, S>(argv: I, timeout: Duration) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            timeout,
        }
    }

    /// The command line as a person would type it in a POSIX shell (arguments quoted where needed).
    pub fn line(&self) -> String {
        command_line(&self.argv)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

/// Quotes an argument vector for a POSIX shell: plain words stay bare, others get single quotes.
pub fn command_line(argv: &[String]) -> String {
    let mut out = String::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&shell_quote(arg));
    }
    out
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | '+' | ',' | '%' | '@')
        });
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// Exit status; a command killed by signal N reports `128 + N`, as a shell does.
    pub status: i32,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

impl CommandOutput {
    /// A successful run that printed `stdout`.
    pub fn ok(stdout: impl Into<String>) -> Self {
        Self {
            status: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    /// A failed run with exit `status` that printed `stderr`.
    pub fn failed(status: i32, stderr: impl Into<String>) -> Self {
        Self {
            status,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A file to write into the target tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWrite {
    /// Absolute path inside the target tree (`/etc/hosts`).
    pub path: String,
    /// The whole content.
    pub contents: String,
    /// Permission bits (at most `0o7777`).
    pub mode: u32,
    /// `user:group` (names or numbers); `None` keeps the writer's.
    pub owner: Option<String>,
}

/// Why a host could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The program could not be started.
    #[error("cannot start `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Waiting for the program failed.
    #[error("cannot wait for `{command}`")]
    Wait {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The program ran past its time limit and was killed.
    #[error("`{command}` timed out after {}s and was killed", .timeout.as_secs())]
    Timeout {
        /// The command line.
        command: String,
        /// The limit it ran past.
        timeout: Duration,
    },
    /// The command vector was empty.
    #[error("empty command")]
    EmptyCommand,
    /// A path is not absolute, contains `..`, or leads outside the target root through a symlink.
    #[error("path {path:?} escapes the target root")]
    PathEscapesRoot {
        /// The offending path.
        path: String,
    },
    /// Writing a file failed.
    #[error("cannot write {path}")]
    WriteFile {
        /// Path inside the target tree.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading a file failed.
    #[error("cannot read {path}")]
    ReadFile {
        /// Path inside the target tree.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An owner could not be resolved to numeric ids.
    #[error("unknown owner {owner:?}: {reason}")]
    Owner {
        /// The `user:group` asked for.
        owner: String,
        /// What went wrong.
        reason: String,
    },
}

/// Everything a configure run may do to a machine.
///
/// Implementations take `&self` so one host can be shared by the engine and its caller; the
/// recording host keeps its journal behind a mutex.
pub trait Host {
    /// Runs a command to completion (or until its timeout kills it).
    fn run(&self, command: &Command) -> Result<CommandOutput, HostError>;
    /// Writes a whole file into the target tree, creating parent directories.
    fn write_file(&self, file: &FileWrite) -> Result<(), HostError>;
    /// Reads a file of the target tree.
    fn read_file(&self, path: &str) -> Result<String, HostError>;
}

/// One thing a [`RecordingHost`] was asked to do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// A command run.
    Run(Command),
    /// A file written.
    Write(FileWrite),
}

/// Renders actions as [`RecordingHost::render`] does.
pub fn render_actions(actions: &[Action]) -> String {
    let mut out = String::new();
    for a in actions {
        match a {
            Action::Run(c) => {
                out.push_str("$ ");
                out.push_str(&c.line());
                out.push('\n');
            }
            Action::Write(f) => {
                out.push_str(&format!("--- {} (mode {:04o}", f.path, f.mode));
                if let Some(o) = &f.owner {
                    out.push_str(&format!(", owner {o}"));
                }
                out.push_str(")\n");
                out.push_str(&f.contents);
                if !f.contents.is_empty() && !f.contents.ends_with('\n') {
                    out.push_str("\n\\ no newline at end of file\n");
                }
                out.push_str("--- end\n");
            }
        }
    }
    out
}

/// A canned answer of a [`RecordingHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Canned {
    /// The command finishes with this output.
    Output(CommandOutput),
    /// The command runs past its timeout.
    Timeout,
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Prefix(String),
}

impl Matcher {
    fn matches(&self, line: &str) -> bool {
        match self {
            Matcher::Exact(s) => line == s,
            Matcher::Prefix(s) => line.starts_with(s.as_str()),
        }
    }
}

/// The dry-run host: records every command and file in order and changes nothing.
///
/// Commands succeed with empty output unless a canned answer matches their command line
/// ([`Command::line`]); the first matching answer wins. Files written are recorded and can be
/// read back; [`RecordingHost::with_file`] pre-loads files for `read_file`.
#[derive(Debug, Default)]
pub struct RecordingHost {
    journal: Mutex<Vec<Action>>,
    answers: Vec<(Matcher, Canned)>,
    files: Mutex<BTreeMap<String, String>>,
}

impl RecordingHost {
    /// A host on which every command succeeds with empty output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers the command whose line is exactly `line` with `output`.
    pub fn respond(mut self, line: impl Into<String>, output: CommandOutput) -> Self {
        self.answers
            .push((Matcher::Exact(line.into()), Canned::Output(output)));
        self
    }

    /// Answers every command whose line starts with `prefix` with `output`.
    pub fn respond_prefix(mut self, prefix: impl Into<String>, output: CommandOutput) -> Self {
        self.answers
            .push((Matcher::Prefix(prefix.into()), Canned::Output(output)));
        self
    }

    /// Makes the command whose line is exactly `line` time out.
    pub fn time_out(mut self, line: impl Into<String>) -> Self {
        self.answers
            .push((Matcher::Exact(line.into()), Canned::Timeout));
        self
    }

    /// Pre-loads a file that `read_file` will return.
    pub fn with_file(self, path: impl Into<String>, contents: impl Into<String>) -> Self {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.into(), contents.into());
        self
    }

    /// Everything done so far, in order.
    pub fn actions(&self) -> Vec<Action> {
        self.journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The command lines run so far, in order.
    pub fn command_lines(&self) -> Vec<String> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Run(c) => Some(c.line()),
                Action::Write(_) => None,
            })
            .collect()
    }

    /// The journal as text, one `$ COMMAND` line per command and each file as
    /// `--- PATH (mode 0644[, owner USER:GROUP])`, its content, `--- end`: what a dry run prints.
    pub fn render(&self) -> String {
        render_actions(&self.actions())
    }

    /// The files written so far, in order.
    pub fn files_written(&self) -> Vec<FileWrite> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Write(f) => Some(f),
                Action::Run(_) => None,
            })
            .collect()
    }
}

impl Host for RecordingHost {
    fn run(&self, command: &Command) -> Result<CommandOutput, HostError> {
        if command.argv.is_empty() {
            return Err(HostError::EmptyCommand);
        }
        self.journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Action::Run(command.clone()));
        let line = command.line();
        match self.answers.iter().find(|(m, _)| m.matches(&line)) {
            Some((_, Canned::Output(out))) => Ok(out.clone()),
            Some((_, Canned::Timeout)) => Err(HostError::Timeout {
                command: line,
                timeout: command.timeout,
            }),
            None => Ok(CommandOutput::default()),
        }
    }

    fn write_file(&self, file: &FileWrite) -> Result<(), HostError> {
        self.journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Action::Write(file.clone()));
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(file.path.clone(), file.contents.clone());
        Ok(())
    }

    fn read_file(&self, path: &str) -> Result<String, HostError> {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .cloned()
            .ok_or_else(|| HostError::ReadFile {
                path: path.to_owned(),
                source: io::Error::from(io::ErrorKind::NotFound),
            })
    }
}

mod duration_secs {
    //! Serde for a `Duration` as whole seconds.
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_only_what_needs_it() {
        let c = Command::new(
            ["sh", "-c", "echo 'hi' > /tmp/x", "--level=1", ""],
            Duration::from_secs(1),
        );
        assert_eq!(c.line(), r"sh -c 'echo '\''hi'\'' > /tmp/x' --level=1 ''");
    }

    #[test]
    fn recording_host_answers_and_records_in_order() {
        let host = RecordingHost::new()
            .respond("false", CommandOutput::failed(1, "no"))
            .respond_prefix("cat ", CommandOutput::ok("meow"))
            .time_out("sleep 100");
        let t = Duration::from_secs(5);
        assert_eq!(
            host.run(&Command::new(["false"], t)).ok().map(|o| o.status),
            Some(1)
        );
        assert_eq!(
            host.run(&Command::new(["cat", "x"], t))
                .ok()
                .map(|o| o.stdout),
            Some("meow".to_owned())
        );
        assert!(matches!(
            host.run(&Command::new(["sleep", "100"], t)),
            Err(HostError::Timeout { .. })
        ));
        let f = FileWrite {
            path: "/etc/x".into(),
            contents: "y".into(),
            mode: 0o644,
            owner: None,
        };
        assert!(host.write_file(&f).is_ok());
        assert_eq!(host.read_file("/etc/x").ok().as_deref(), Some("y"));
        assert!(host.read_file("/etc/nope").is_err());
        assert_eq!(host.command_lines(), ["false", "cat x", "sleep 100"]);
        assert_eq!(host.files_written(), [f]);
    }
}
