//! The server's web pages: plain server-rendered HTML with one layout and one navigation
//! bar, no script and no external request (the web console will adopt them). Everything
//! that comes from a machine (test output, names) is HTML-escaped through [`esc`].
//!
//! - `GET /`: the index, linking to every page and to the JSON endpoints;
//! - [`tests`]: PXE Manager's test pages under `/tests/`.

pub mod tests;

pub use crate::serve::markup::escape as esc;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// Escapes a path segment for a link (`/tests/systems/<name>`).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Home,
    Tests,
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#233;color:#fff;padding:.5em 1em;display:flex;gap:1.5em;align-items:baseline}
header a{color:#cde;text-decoration:none}header a.on{color:#fff;font-weight:bold}
header .brand{font-weight:bold;color:#fff;margin-right:1em}
main{padding:1em 1.5em;max-width:80em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eee}
td.n{text-align:right}
.state-done{color:#060}.state-lost,.state-error{color:#a00;font-weight:bold}
.state-running{color:#036}.state-queued{color:#666}
.has-errors{background:#fdd;font-weight:bold}.has-warnings{background:#ffd}
ol.lines{font-family:monospace;padding-left:4em}
ol.lines li{white-space:pre-wrap}
li.kind-E{background:#fdd;color:#800}li.kind-W{background:#ffd;color:#650}
li.kind-I{color:#333}li.kind-S,li.kind-T{color:#557}
.problem{background:#fdd;color:#800;padding:.4em .6em;font-family:monospace;white-space:pre-wrap}
.muted{color:#777}
";

/// A whole page: the layout around `body` (already HTML).
pub fn page(title: &str, section: Section, body: &str) -> Response {
    let on = |s: Section| if s == section { " class=\"on\"" } else { "" };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · rdeploy</title><style>{STYLE}</style></head>\n<body>\
         <header><span class=\"brand\">rdeploy</span>\
         <a href=\"/\"{home}>Home</a><a href=\"/tests/\"{tests}>Tests</a>\
         <a href=\"/nodes\">Nodes (JSON)</a><a href=\"/healthz\">Health (JSON)</a></header>\n\
         <main>\n<h1>{title}</h1>\n{body}</main></body></html>\n",
        title = esc(title),
        home = on(Section::Home),
        tests = on(Section::Tests),
    );
    let mut resp = Html(html).into_response();
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    resp
}

/// `GET /`: what this server offers, with links.
pub async fn index() -> Response {
    let body = "\
<p>This is an rdeploy server: machines PXE boot, send their hardware inventory, get their
profile's configure script, and later run the tests queued for them.</p>
<h2>Pages</h2>
<ul>
<li><a href=\"/tests/\">Tests</a>: the systems and their latest test results, each system's
history, each run's parsed output and raw log</li>
<li><a href=\"/tests/results.xml\">Test results as JUnit XML</a></li>
</ul>
<h2>JSON</h2>
<ul>
<li><a href=\"/nodes\">/nodes</a>: node records</li>
<li><a href=\"/systems\">/systems</a>: registered systems</li>
<li><a href=\"/quota\">/quota</a>: profiles, quotas and CMDB use</li>
<li><a href=\"/testnames\">/testnames</a> and <a href=\"/testruns\">/testruns</a>: tests and test runs</li>
<li><a href=\"/healthz\">/healthz</a>: the config dir's health; <a href=\"/metrics\">/metrics</a> (Prometheus)</li>
</ul>
";
    page("rdeploy", Section::Home, body)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn text_from_machines_cannot_become_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(seg("a b/../c"), "a%20b%2F..%2Fc");
    }
}
