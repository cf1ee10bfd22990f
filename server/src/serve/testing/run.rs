//! A test run as data, and the pure moves of its life: `queued` (an operator's `nexttest`)
//! → `running` (the script was sent to the system) → `done` (its output was uploaded) or
//! `lost` (no upload within the test timeout); `queued` → `error` when its template does not
//! render (the system got `wait.test` instead). No IO, no clock: the time is a parameter.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::parse::{Counts, Line, Parsed};

/// A run's number: PXE Manager's test id, the `<testid>` of `/upload/<testid>/`.
pub type RunId = u64;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Waiting for the system to ask (`pxemngr nexttest`).
    Queued,
    /// The script was sent; its output has not come back yet.
    Running,
    /// The output was uploaded and parsed.
    Done,
    /// Sent, and no output came back within the test timeout (a late upload still counts).
    Lost,
    /// The template did not render: the system got `wait.test` instead.
    Error,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Lost => "lost",
            RunState::Error => "error",
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One test queued for one system, and what came of it (`<data-dir>/testruns/<id>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRun {
    pub id: RunId,
    /// The system it was queued for (a registered system's name or a node id).
    pub system: String,
    /// The test's name (`<tests-dir>/<test>.test`).
    pub test: String,
    pub state: RunState,
    /// RFC 3339 times of each step.
    pub queued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_at: Option<String>,
    /// Who asked for it: `address 10.0.0.5` or `mac 52:54:00:12:34:56`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_to: Option<String>,
    /// The system under test's version (the last `V: ` line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub counts: Counts,
    /// The `I:`, `W:`, `E:`, `S:`, `T:` lines, in order (the first [`super::parse::MAX_LINES`]).
    #[serde(default)]
    pub lines: Vec<Line>,
    /// Lines beyond the ones kept (counted in `counts` all the same).
    #[serde(default)]
    pub lines_dropped: usize,
    /// The script's exit status, when the uploader sent it (`-F exit=$?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// The raw output's size in bytes (the file is `<id>.log` beside the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    /// Why the template did not render (`hello.test:3: undefined variable ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A move the run's state does not allow (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("test run {id} is {state}: {why}")]
pub struct Refused {
    pub id: RunId,
    pub state: RunState,
    pub why: &'static str,
}

/// RFC 3339, UTC, seconds.
pub fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl TestRun {
    /// A run just queued.
    pub fn queued(id: RunId, system: &str, test: &str, now: SystemTime) -> TestRun {
        TestRun {
            id,
            system: system.to_owned(),
            test: test.to_owned(),
            state: RunState::Queued,
            queued_at: stamp(now),
            sent_at: None,
            done_at: None,
            lost_at: None,
            sent_to: None,
            version: None,
            counts: Counts::default(),
            lines: Vec::new(),
            lines_dropped: 0,
            exit: None,
            output_bytes: None,
            error: None,
        }
    }

    fn refuse(&self, why: &'static str) -> Refused {
        Refused {
            id: self.id,
            state: self.state,
            why,
        }
    }

    /// `queued → running`: the script goes to `to`.
    pub fn sent(&self, to: &str, now: SystemTime) -> Result<TestRun, Refused> {
        if self.state != RunState::Queued {
            return Err(self.refuse("only a queued run is sent"));
        }
        let mut run = self.clone();
        run.state = RunState::Running;
        run.sent_at = Some(stamp(now));
        run.sent_to = Some(to.to_owned());
        Ok(run)
    }

    /// `queued → error`: the template did not render for `to` (it got `wait.test`).
    pub fn render_failed(
        &self,
        to: &str,
        error: &str,
        now: SystemTime,
    ) -> Result<TestRun, Refused> {
        if self.state != RunState::Queued {
            return Err(self.refuse("only a queued run is rendered"));
        }
        let mut run = self.clone();
        run.state = RunState::Error;
        run.sent_at = Some(stamp(now));
        run.sent_to = Some(to.to_owned());
        run.error = Some(error.to_owned());
        Ok(run)
    }

    /// `running | lost → done`: the output came back.
    pub fn uploaded(
        &self,
        parsed: Parsed,
        bytes: u64,
        exit: Option<i32>,
        now: SystemTime,
    ) -> Result<TestRun, Refused> {
        match self.state {
            RunState::Running | RunState::Lost => {}
            RunState::Queued => {
                return Err(self
                    .refuse("its script was never sent (a system gets it from /nexttest/ first)"))
            }
            RunState::Done => return Err(self.refuse("its output was uploaded already")),
            RunState::Error => {
                return Err(self.refuse("its template did not render; queue it again"))
            }
        }
        let mut run = self.clone();
        run.state = RunState::Done;
        run.done_at = Some(stamp(now));
        run.version = parsed.version;
        run.counts = parsed.counts;
        run.lines = parsed.lines;
        run.lines_dropped = parsed.dropped;
        run.exit = exit;
        run.output_bytes = Some(bytes);
        Ok(run)
    }

    /// `running → lost` when it was sent more than `timeout` ago; `None` otherwise. Times
    /// are kept to the second (cut, not rounded), so a run is lost up to one second late,
    /// never early.
    pub fn expired(&self, timeout: Duration, now: SystemTime) -> Option<TestRun> {
        if self.state != RunState::Running {
            return None;
        }
        let sent = humantime::parse_rfc3339(self.sent_at.as_deref()?).ok()?;
        if now.duration_since(sent).ok()? <= timeout + Duration::from_secs(1) {
            return None;
        }
        let mut run = self.clone();
        run.state = RunState::Lost;
        run.lost_at = Some(stamp(now));
        Some(run)
    }

    /// The time of its last step.
    pub fn updated_at(&self) -> &str {
        self.done_at
            .as_deref()
            .or(self.lost_at.as_deref())
            .or(self.sent_at.as_deref())
            .unwrap_or(&self.queued_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::testing::parse::parse;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn a_run_goes_queued_running_done_and_refuses_the_rest() -> Result<(), Refused> {
        let q = TestRun::queued(7, "rack1-u12", "hello", at(0));
        assert!(q.uploaded(parse("I: x\n"), 5, None, at(1)).is_err());
        let r = q.sent("address 10.0.0.5", at(10))?;
        assert_eq!(r.state, RunState::Running);
        assert!(r.sent("again", at(11)).is_err());
        let d = r.uploaded(parse("E: boom\nV: 1.2\n"), 17, Some(1), at(20))?;
        assert_eq!(d.state, RunState::Done);
        assert_eq!(d.counts.errors, 1);
        assert_eq!(d.version.as_deref(), Some("1.2"));
        let twice = d.uploaded(parse(""), 0, None, at(21));
        assert_eq!(
            twice.map_err(|e| e.why),
            Err("its output was uploaded already")
        );
        Ok(())
    }

    #[test]
    fn a_silent_run_is_lost_after_the_timeout_and_a_late_upload_still_counts() -> Result<(), Refused>
    {
        let r = TestRun::queued(1, "s", "t", at(0)).sent("mac x", at(0))?;
        let timeout = Duration::from_secs(60);
        assert!(r.expired(timeout, at(61)).is_none());
        let lost = r.expired(timeout, at(62)).ok_or(r.refuse("not lost"))?;
        assert_eq!(lost.state, RunState::Lost);
        assert!(lost.expired(timeout, at(500)).is_none());
        let late = lost.uploaded(parse("I: ok\n"), 6, None, at(600))?;
        assert_eq!(late.state, RunState::Done);
        assert_eq!(late.lost_at.as_deref(), Some(stamp(at(62)).as_str()));
        Ok(())
    }

    #[test]
    fn a_template_error_ends_a_queued_run() -> Result<(), Refused> {
        let q = TestRun::queued(2, "s", "t", at(0));
        let e = q.render_failed("mac x", "t.test:3: undefined variable `x`", at(1))?;
        assert_eq!(e.state, RunState::Error);
        assert!(e.sent("x", at(2)).is_err());
        assert!(e.uploaded(parse(""), 0, None, at(3)).is_err());
        Ok(())
    }
}
