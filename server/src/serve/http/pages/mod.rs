//! The web console (`docs/console.md`): plain server-rendered HTML with one layout and one
//! navigation bar, one small embedded script (`/ui/console.js`: it follows `GET /events` and
//! re-reads the page's live part when a node changes) and no external request. Everything
//! that comes from a machine (test output, names, inventories) is HTML-escaped through
//! [`esc`]; CMDB values whose key is secret (`access::Secrets`, `--secret-pattern`) are masked.
//!
//! - [`console`]: `GET /` (the nodes), `/ui/nodes/<id>` (one node), `/ui/profiles`,
//!   `/ui/systems` (registered systems and role trees);
//! - [`session`]: the admin token kept in a cookie, CSRF tokens, and the actions
//!   (`POST /ui/nodes/<id>/boot`);
//! - [`tests`]: PXE Manager's test pages under `/tests/`.

pub mod console;
pub mod session;
pub mod tests;

pub use crate::serve::markup::escape as esc;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::super::AppState;

/// The console's routes (the test pages are in `http/testing.rs`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(console::nodes))
        .route("/ui/console.js", get(script))
        .route("/ui/nodes/{id}", get(console::node))
        .route("/ui/nodes/{id}/boot", post(session::boot))
        .route("/ui/profiles", get(console::profiles))
        .route("/ui/systems", get(console::systems))
        .route("/ui/login", get(session::login_page).post(session::login))
}

/// Escapes a path segment for a link (`/tests/systems/<name>`).
pub use crate::serve::markup::segment as seg;

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Nodes,
    Profiles,
    Systems,
    Tests,
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#233;color:#fff;padding:.5em 1em;display:flex;gap:1.5em;align-items:baseline}
header a{color:#cde;text-decoration:none}header a.on{color:#fff;font-weight:bold}
header .brand{font-weight:bold;color:#fff;margin-right:1em}
main{padding:1em 1.5em}
td pre{margin:0;white-space:pre-wrap;word-break:break-word;max-width:60em}
td.ev{max-width:24em;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
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
.counts a{display:inline-block;margin:0 .4em .4em 0;padding:.2em .6em;border-radius:.3em;background:#eef;color:#123;text-decoration:none}
.counts a.on{background:#233;color:#fff}
tr.failed td{background:#fdd}tr.stuck td,.stuck-tag{background:#ffd}
.state-failed{color:#a00;font-weight:bold}.state-installed{color:#060}
.state-installing,.state-configuring{color:#036}.state-matched{color:#335}
.bar{display:inline-block;width:10em;height:.8em;background:#ddd;vertical-align:middle}
.bar span{display:block;height:100%;background:#48a}
form.inline{display:inline}
.live{font-size:.8em;color:#9ab}
.step-failed{color:#a00;font-weight:bold}.step-succeeded{color:#060}
.why{background:#fff3e0;padding:.5em .8em;white-space:pre-wrap;font-family:monospace}
";

/// A whole page: the layout around `body` (already HTML).
pub fn page(title: &str, section: Section, body: &str) -> Response {
    let on = |s: Section| if s == section { " class=\"on\"" } else { "" };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · rdeploy</title><style>{STYLE}</style>\
         <script src=\"/ui/console.js\" defer></script></head>\n<body>\
         <header><span class=\"brand\">rdeploy</span>\
         <a href=\"/\"{nodes}>Nodes</a><a href=\"/ui/profiles\"{profiles}>Profiles</a>\
         <a href=\"/ui/systems\"{systems}>Systems &amp; roles</a><a href=\"/tests/\"{tests}>Tests</a>\
         <a href=\"/ui/login\">Admin token</a><span class=\"live\" id=\"live-status\"></span></header>\n\
         <main>\n<h1>{title}</h1>\n{body}</main></body></html>\n",
        title = esc(title),
        nodes = on(Section::Nodes),
        profiles = on(Section::Profiles),
        systems = on(Section::Systems),
        tests = on(Section::Tests),
    );
    let mut resp = Html(html).into_response();
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    resp
}

/// `GET /ui/console.js`: the console's one script (embedded in the binary).
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("console.js"),
    )
        .into_response()
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
