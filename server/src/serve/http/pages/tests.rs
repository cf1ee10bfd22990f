//! PXE Manager's test pages: `/tests/` (the systems and their latest results, the tests,
//! the latest runs), `/tests/systems/<name>` (one system's history), `/tests/runs/<id>`
//! (one run: its errors and warnings first, then every parsed line), its raw output at
//! `/tests/runs/<id>/raw`, and `/tests/results.xml` (JUnit).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::super::super::error::ApiError;
use super::super::super::testing::junit::junit;
use super::super::super::testing::run::{RunState, TestRun};
use super::super::super::AppState;
use super::super::testing::parse_id;
use super::{esc, page, seg, Section};
use crate::wire::TestRunSummary;

fn state_cell(state: &str) -> String {
    format!("<td class=\"state-{0}\">{0}</td>", esc(state))
}

fn count_cell(n: usize, class: &str) -> String {
    if n > 0 {
        format!("<td class=\"n {class}\">{n}</td>")
    } else {
        "<td class=\"n\">0</td>".to_owned()
    }
}

fn run_link(id: u64, test: &str) -> String {
    format!("<a href=\"/tests/runs/{id}\">{} #{id}</a>", esc(test))
}

fn system_link(name: &str) -> String {
    format!("<a href=\"/tests/systems/{}\">{}</a>", seg(name), esc(name))
}

const RUN_HEAD: &str = "<tr><th>run</th><th>system</th><th>state</th><th>errors</th><th>warnings</th><th>infos</th><th>version</th><th>updated</th></tr>\n";

fn run_row(out: &mut String, r: &TestRunSummary) {
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td>{}</td>{}{}{}{}<td>{}</td><td>{}</td></tr>",
        run_link(r.id, &r.test),
        system_link(&r.system),
        state_cell(&r.state),
        count_cell(r.errors, "has-errors"),
        count_cell(r.warnings, "has-warnings"),
        count_cell(r.infos, ""),
        esc(r.version.as_deref().unwrap_or("-")),
        esc(&r.updated_at),
    );
    if let Some(e) = &r.error {
        let _ = writeln!(
            out,
            "<tr><td></td><td colspan=\"7\"><div class=\"problem\">{}</div></td></tr>",
            esc(e)
        );
    }
}

/// `GET /tests/`.
pub async fn index(State(app): State<AppState>) -> Result<Response, ApiError> {
    let runs = app.core.test_runs(None).await?.runs;
    let names = app.core.test_names().await;
    let systems = app.core.test_system_names().await;
    let mut latest: BTreeMap<&str, &TestRunSummary> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.state != "queued") {
        latest.insert(r.system.as_str(), r);
    }
    let mut body = String::new();
    body.push_str("<h2>Systems</h2>\n<table>\n<tr><th>system</th><th>latest run</th><th>state</th><th>errors</th><th>warnings</th><th>infos</th><th>version</th><th>updated</th><th>queued</th></tr>\n");
    for s in &systems {
        let queued = runs
            .iter()
            .filter(|r| r.system == *s && r.state == "queued")
            .count();
        match latest.get(s.as_str()) {
            Some(r) => {
                let _ = writeln!(
                    body,
                    "<tr><td>{}</td><td>{}</td>{}{}{}{}<td>{}</td><td>{}</td><td class=\"n\">{queued}</td></tr>",
                    system_link(s),
                    run_link(r.id, &r.test),
                    state_cell(&r.state),
                    count_cell(r.errors, "has-errors"),
                    count_cell(r.warnings, "has-warnings"),
                    count_cell(r.infos, ""),
                    esc(r.version.as_deref().unwrap_or("-")),
                    esc(&r.updated_at),
                );
            }
            None => {
                let _ = writeln!(
                    body,
                    "<tr><td>{}</td><td colspan=\"7\" class=\"muted\">no test run yet</td><td class=\"n\">{queued}</td></tr>",
                    system_link(s)
                );
            }
        }
    }
    body.push_str("</table>\n");

    let _ = write!(
        body,
        "<h2>Tests</h2>\n<p class=\"muted\">From {} (<code>pxemngr synctestnames</code> or <code>rdeploy test sync</code> learns new ones).</p>\n<table>\n<tr><th>test</th><th>available</th><th>problem</th></tr>\n",
        esc(&names.dir)
    );
    if names.missing_wait {
        body.push_str("<tr><td colspan=\"3\"><div class=\"problem\">wait.test is missing: systems with nothing queued get the built-in one (sleep 60)</div></td></tr>\n");
    }
    for t in &names.tests {
        let problem = t.problem.as_deref().map_or(String::new(), |p| {
            format!("<div class=\"problem\">{}</div>", esc(p))
        });
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{problem}</td></tr>",
            esc(&t.name),
            if t.available { "yes" } else { "no (file gone)" }
        );
    }
    body.push_str("</table>\n<h2>Latest runs</h2>\n<table>\n");
    body.push_str(RUN_HEAD);
    for r in runs.iter().rev().take(50) {
        run_row(&mut body, r);
    }
    body.push_str("</table>\n<p><a href=\"/tests/results.xml\">All results as JUnit XML</a></p>\n");
    Ok(page("Tests", Section::Tests, &body))
}

/// `GET /tests/systems/{name}`: the system's runs, newest first.
pub async fn system(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let list = app.core.test_runs(Some(&name)).await?;
    let mut body = String::new();
    if list.names.len() > 1 {
        let others: Vec<String> = list
            .names
            .iter()
            .filter(|n| **n != name)
            .map(|n| esc(n))
            .collect();
        let _ = writeln!(
            body,
            "<p class=\"muted\">Also known as {} (same MAC address).</p>",
            others.join(", ")
        );
    }
    let done = list.runs.iter().filter(|r| r.state == "done").count();
    let errors: usize = list.runs.iter().map(|r| r.errors).sum();
    let warnings: usize = list.runs.iter().map(|r| r.warnings).sum();
    let _ = write!(
        body,
        "<p>{} runs, {done} done; {errors} error lines and {warnings} warning lines in all.</p>\n<table>\n",
        list.runs.len()
    );
    body.push_str(
        "<tr><th>run</th><th>state</th><th>errors</th><th>warnings</th><th>infos</th><th>version</th><th>queued</th><th>updated</th></tr>\n",
    );
    for r in list.runs.iter().rev() {
        let _ = writeln!(
            body,
            "<tr><td>{}</td>{}{}{}{}<td>{}</td><td>{}</td><td>{}</td></tr>",
            run_link(r.id, &r.test),
            state_cell(&r.state),
            count_cell(r.errors, "has-errors"),
            count_cell(r.warnings, "has-warnings"),
            count_cell(r.infos, ""),
            esc(r.version.as_deref().unwrap_or("-")),
            esc(&r.queued_at),
            esc(&r.updated_at),
        );
        if let Some(e) = &r.error {
            let _ = writeln!(
                body,
                "<tr><td></td><td colspan=\"7\"><div class=\"problem\">template error: {}</div></td></tr>",
                esc(e)
            );
        }
        problem_lines(&mut body, r);
    }
    body.push_str("</table>\n");
    Ok(page(&format!("System {name}"), Section::Tests, &body))
}

/// A run's first error and warning lines, under its row.
fn problem_lines(body: &mut String, r: &TestRunSummary) {
    if r.problems.is_empty() {
        return;
    }
    body.push_str("<tr><td></td><td colspan=\"7\"><ol class=\"lines\">");
    for p in &r.problems {
        let kind = if p.starts_with("E: ") { "E" } else { "W" };
        let _ = write!(body, "<li class=\"kind-{kind}\">{}</li>", esc(p));
    }
    body.push_str("</ol>");
    let more = (r.errors + r.warnings).saturating_sub(r.problems.len());
    if more > 0 {
        let _ = write!(
            body,
            "<a href=\"/tests/runs/{}\">{more} more on the run's page</a>",
            r.id
        );
    }
    body.push_str("</td></tr>\n");
}

/// `GET /tests/runs/{id}`: the run, its errors and warnings, then every parsed line.
pub async fn run(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run = app.core.test_run(parse_id(&id)?).await?;
    let mut body = String::new();
    body.push_str("<table>\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(body, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    row("test", esc(&run.test));
    row("system", system_link(&run.system));
    row(
        "state",
        format!("<span class=\"state-{0}\">{0}</span>", run.state),
    );
    row("version", esc(run.version.as_deref().unwrap_or("-")));
    row("queued", esc(&run.queued_at));
    let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or("-"));
    row(
        "sent",
        format!(
            "{} <span class=\"muted\">{}</span>",
            opt(&run.sent_at),
            opt(&run.sent_to)
        ),
    );
    if run.lost_at.is_some() {
        row("lost", opt(&run.lost_at));
    }
    row("uploaded", opt(&run.done_at));
    if let Some(e) = run.exit {
        row("exit status", e.to_string());
    }
    row(
        "lines",
        format!(
            "<span class=\"{}\">{} errors</span>, <span class=\"{}\">{} warnings</span>, {} infos, {} S, {} T",
            if run.counts.errors > 0 { "has-errors" } else { "" },
            run.counts.errors,
            if run.counts.warnings > 0 { "has-warnings" } else { "" },
            run.counts.warnings,
            run.counts.infos,
            run.counts.s,
            run.counts.t
        ),
    );
    body.push_str("</table>\n");
    if let Some(e) = &run.error {
        let _ = write!(
            body,
            "<h2>Template error</h2>\n<div class=\"problem\">{}</div>\n<p>The system got wait.test instead. Fix the template, then queue the test again.</p>\n",
            esc(e)
        );
    }
    if run.state == RunState::Lost {
        body.push_str("<p class=\"problem\">No output came back within the test timeout (a late upload still counts).</p>\n");
    }
    lines_section(&mut body, &run, "E", "Errors");
    lines_section(&mut body, &run, "W", "Warnings");
    if !run.lines.is_empty() {
        body.push_str("<h2>All parsed lines</h2>\n<ol class=\"lines\">\n");
        for l in &run.lines {
            let _ = writeln!(
                body,
                "<li value=\"{}\" class=\"kind-{}\">{}: {}</li>",
                l.line,
                esc(&l.kind),
                esc(&l.kind),
                esc(&l.text)
            );
        }
        body.push_str("</ol>\n");
        if run.lines_dropped > 0 {
            let _ = writeln!(
                body,
                "<p class=\"muted\">{} more lines are only in the raw output.</p>",
                run.lines_dropped
            );
        }
    }
    if let Some(bytes) = run.output_bytes {
        let _ = writeln!(
            body,
            "<p><a href=\"/tests/runs/{}/raw\">Raw output</a> ({bytes} bytes)</p>",
            run.id
        );
    }
    Ok(page(
        &format!("Run {} #{}", run.test, run.id),
        Section::Tests,
        &body,
    ))
}

fn lines_section(body: &mut String, run: &TestRun, kind: &str, title: &str) {
    let lines: Vec<_> = run.lines.iter().filter(|l| l.kind == kind).collect();
    if lines.is_empty() {
        return;
    }
    let _ = write!(
        body,
        "<h2>{title} ({})</h2>\n<ol class=\"lines\">\n",
        lines.len()
    );
    for l in lines {
        let _ = writeln!(
            body,
            "<li value=\"{}\" class=\"kind-{kind}\">{}</li>",
            l.line,
            esc(&l.text)
        );
    }
    body.push_str("</ol>\n");
}

/// `GET /tests/runs/{id}/raw`: the output as uploaded, as plain text (never sniffed as HTML).
pub async fn raw(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let bytes = app.core.test_output(parse_id(&id)?).await?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    Ok(resp)
}

/// `GET /tests/results.xml`: JUnit XML of every finished run.
pub async fn results_xml(State(app): State<AppState>) -> Response {
    let runs = app.core.all_test_runs().await;
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        junit(&runs),
    )
        .into_response()
}
