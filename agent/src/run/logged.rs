//! A [`Host`] that logs every command and file as it happens, so a long or hung command is
//! visible on the console and the log says which command a timeout killed.

use std::rc::Rc;

use rdeploy_configure::{Command, CommandOutput, FileWrite, Host, HostError};

use super::console::Console;

/// Logs, then delegates to the inner host (the real one, or the recording one of a dry run).
pub struct LoggedHost {
    inner: Rc<dyn Host>,
    console: Rc<Console>,
    echo: bool,
}

impl std::fmt::Debug for LoggedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedHost")
            .field("echo", &self.echo)
            .finish()
    }
}

impl LoggedHost {
    /// With `echo`, each command line is also said on the console (real runs); a dry run only
    /// logs it, since it prints the whole plan.
    pub fn new(inner: Rc<dyn Host>, console: Rc<Console>, echo: bool) -> Self {
        Self {
            inner,
            console,
            echo,
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Host for LoggedHost {
    fn run(&self, command: &Command) -> Result<CommandOutput, HostError> {
        let line = format!(
            "$ {} (time limit {} s)",
            command.line(),
            command.timeout.as_secs()
        );
        if self.echo {
            self.console.say(&line);
        } else {
            self.console.log(&line);
        }
        let result = self.inner.run(command);
        match &result {
            Ok(out) => {
                if !out.stdout.trim().is_empty() {
                    self.console.log(&tail(&out.stdout, 50));
                }
                if !out.stderr.trim().is_empty() {
                    self.console.log(&tail(&out.stderr, 50));
                }
                if out.status != 0 {
                    self.console.log(&format!("exit status {}", out.status));
                }
            }
            Err(e) => self.console.say(&format!("error: {e}")),
        }
        result
    }

    fn write_file(&self, file: &FileWrite) -> Result<(), HostError> {
        self.console.log(&format!(
            "write {} (mode {:04o}, {} bytes)",
            file.path,
            file.mode,
            file.contents.len()
        ));
        let r = self.inner.write_file(file);
        if let Err(e) = &r {
            self.console.say(&format!("error: {e}"));
        }
        r
    }

    fn read_file(&self, path: &str) -> Result<String, HostError> {
        self.inner.read_file(path)
    }
}
