//! The finished test runs as JUnit XML (`GET /tests/results.xml`), the format CI systems
//! read: one `<testsuite>` per system, one `<testcase>` per run (`done`, `lost` or `error`;
//! queued and running ones are left out). A run with `E:` lines or a non-zero exit status is
//! a `<failure>`; a lost run or a template error is an `<error>`. Pure: runs in, text out.

use std::fmt::Write as _;

use super::run::{RunState, TestRun};
use crate::serve::markup::escape as xml_escape;

/// Seconds from `sent_at` to `done_at`, when both are known.
fn seconds(run: &TestRun) -> Option<u64> {
    let sent = humantime::parse_rfc3339(run.sent_at.as_deref()?).ok()?;
    let done = humantime::parse_rfc3339(run.done_at.as_deref()?).ok()?;
    done.duration_since(sent).ok().map(|d| d.as_secs())
}

/// The JUnit document of `runs` (any order; grouped by system, by run id within).
pub fn junit(runs: &[TestRun]) -> String {
    let mut finished: Vec<&TestRun> = runs
        .iter()
        .filter(|r| matches!(r.state, RunState::Done | RunState::Lost | RunState::Error))
        .collect();
    finished.sort_by(|a, b| a.system.cmp(&b.system).then(a.id.cmp(&b.id)));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let failures = finished.iter().filter(|r| failed(r)).count();
    let errors = finished
        .iter()
        .filter(|r| r.state != RunState::Done)
        .count();
    let _ = writeln!(
        out,
        "<testsuites name=\"rdeploy\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\">",
        finished.len()
    );
    for group in finished.chunk_by(|a, b| a.system == b.system) {
        let system = xml_escape(&group[0].system);
        let _ = writeln!(
            out,
            "  <testsuite name=\"{system}\" tests=\"{}\" failures=\"{}\" errors=\"{}\">",
            group.len(),
            group.iter().filter(|r| failed(r)).count(),
            group.iter().filter(|r| r.state != RunState::Done).count(),
        );
        for run in group {
            testcase(&mut out, &system, run);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn failed(r: &TestRun) -> bool {
    r.state == RunState::Done && (r.counts.errors > 0 || r.exit.is_some_and(|e| e != 0))
}

fn testcase(out: &mut String, system: &str, run: &TestRun) {
    let name = xml_escape(&format!("{} #{}", run.test, run.id));
    let time = seconds(run).map_or(String::new(), |s| format!(" time=\"{s}\""));
    let _ = writeln!(
        out,
        "    <testcase classname=\"{system}\" name=\"{name}\"{time}>"
    );
    match run.state {
        RunState::Lost => {
            let _ = writeln!(
                out,
                "      <error type=\"lost\" message=\"no output came back within the test timeout (sent {})\"/>",
                xml_escape(run.sent_at.as_deref().unwrap_or("-"))
            );
        }
        RunState::Error => {
            let _ = writeln!(
                out,
                "      <error type=\"template\" message=\"{}\"/>",
                xml_escape(
                    run.error
                        .as_deref()
                        .unwrap_or("the template did not render")
                )
            );
        }
        _ if failed(run) => {
            let mut message = format!("{} errors", run.counts.errors);
            if let Some(e) = run.exit.filter(|e| *e != 0) {
                let _ = write!(message, ", exit status {e}");
            }
            let body: Vec<String> = run
                .lines
                .iter()
                .filter(|l| l.kind == "E")
                .map(|l| format!("E: {}", l.text))
                .collect();
            let _ = writeln!(
                out,
                "      <failure type=\"errors\" message=\"{}\">{}</failure>",
                xml_escape(&message),
                xml_escape(&body.join("\n"))
            );
        }
        _ => {}
    }
    let summary: Vec<String> = run
        .lines
        .iter()
        .filter(|l| l.kind != "E")
        .map(|l| format!("{}: {}", l.kind, l.text))
        .collect();
    if !summary.is_empty() || run.version.is_some() {
        let mut text = String::new();
        if let Some(v) = &run.version {
            let _ = writeln!(text, "V: {v}");
        }
        text.push_str(&summary.join("\n"));
        let _ = writeln!(out, "      <system-out>{}</system-out>", xml_escape(&text));
    }
    out.push_str("    </testcase>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::testing::parse::parse;
    use std::time::{Duration, SystemTime};

    #[test]
    fn runs_become_testcases_grouped_by_system() -> Result<(), super::super::run::Refused> {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t1 = t0 + Duration::from_secs(12);
        let ok = TestRun::queued(1, "b<&>", "hello", t0)
            .sent("x", t0)?
            .uploaded(parse("I: fine\nV: 1.0\n"), 10, Some(0), t1)?;
        let bad = TestRun::queued(2, "a", "disk", t0)
            .sent("x", t0)?
            .uploaded(parse("E: sdb \u{1b}[31mfailed\nW: slow\n"), 10, None, t1)?;
        let lost = TestRun::queued(3, "a", "mem", t0)
            .sent("x", t0)?
            .expired(Duration::from_secs(1), t1)
            .ok_or_else(not_lost)?;
        let queued = TestRun::queued(4, "a", "later", t0);
        let xml = junit(&[ok, bad, lost, queued]);
        let expected = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<testsuites name=\"rdeploy\" tests=\"3\" failures=\"1\" errors=\"1\">
  <testsuite name=\"a\" tests=\"2\" failures=\"1\" errors=\"1\">
    <testcase classname=\"a\" name=\"disk #2\" time=\"12\">
      <failure type=\"errors\" message=\"1 errors\">E: sdb [31mfailed</failure>
      <system-out>W: slow</system-out>
    </testcase>
    <testcase classname=\"a\" name=\"mem #3\">
      <error type=\"lost\" message=\"no output came back within the test timeout (sent 2027-01-15T08:00:00Z)\"/>
    </testcase>
  </testsuite>
  <testsuite name=\"b&lt;&amp;&gt;\" tests=\"1\" failures=\"0\" errors=\"0\">
    <testcase classname=\"b&lt;&amp;&gt;\" name=\"hello #1\" time=\"12\">
      <system-out>V: 1.0
I: fine</system-out>
    </testcase>
  </testsuite>
</testsuites>
";
        assert_eq!(xml, expected);
        Ok(())
    }

    fn not_lost() -> super::super::run::Refused {
        super::super::run::Refused {
            id: 3,
            state: RunState::Running,
            why: "expected to be lost",
        }
    }
}
