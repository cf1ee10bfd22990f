//! The agent's console and log: every line said to the person at the console is also kept
//! (in memory, and in `--log-file` when given), uploaded to the server when the run fails and
//! saved on the installed system when it succeeds.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

/// The console and the log of one run.
#[derive(Debug)]
pub struct Console {
    start: Instant,
    lines: RefCell<Vec<String>>,
    file: RefCell<Option<File>>,
    quiet: bool,
}

impl Console {
    /// A console printing on stderr; with `file`, every line is appended there too.
    pub fn new(file: Option<&Path>) -> anyhow::Result<Self> {
        let file = file
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open the log file {}", p.display()))
            })
            .transpose()?;
        Ok(Self {
            start: Instant::now(),
            lines: RefCell::new(Vec::new()),
            file: RefCell::new(file),
            quiet: false,
        })
    }

    /// A console that only keeps the log (tests).
    pub fn silent() -> Self {
        Self {
            start: Instant::now(),
            lines: RefCell::new(Vec::new()),
            file: RefCell::new(None),
            quiet: true,
        }
    }

    /// Says `line` on the console (`rdeploy-agent: LINE` on stderr) and logs it.
    pub fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("rdeploy-agent: {line}");
        }
        self.log(line);
    }

    /// Logs `text` (one or more lines) without printing it: command output, details.
    pub fn log(&self, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        let mut lines = self.lines.borrow_mut();
        let mut file = self.file.borrow_mut();
        for l in text.lines() {
            let line = format!("[{t:8.2}] {l}");
            if let Some(f) = file.as_mut() {
                // The log file is a convenience; the in-memory log is the record.
                let _ = writeln!(f, "{line}");
            }
            lines.push(line);
        }
    }

    /// The whole log so far.
    pub fn text(&self) -> String {
        let mut out = self.lines.borrow().join("\n");
        out.push('\n');
        out
    }

    /// Seconds since the run started.
    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_line_with_its_time() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("agent.log");
        let c = Console::new(Some(&path))?;
        c.say("upload: matched profile kvm");
        c.log("line one\nline two");
        let text = c.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].ends_with("] upload: matched profile kvm"),
            "{text}"
        );
        assert!(lines[2].ends_with("] line two"));
        assert_eq!(std::fs::read_to_string(&path)?, text);
        Ok(())
    }
}
