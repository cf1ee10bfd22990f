//! The console's admin side: the admin token asked once and kept in a cookie, CSRF tokens,
//! and the actions (`POST /ui/nodes/<id>/boot`).
//!
//! Design: `POST /ui/login` checks the token and sets `rdeploy_session`, `HttpOnly;
//! SameSite=Strict; Path=/`, whose value is `sha256(server key, "session", token)`: scripts in
//! the page cannot read it, other sites cannot send it, and it is not the token itself (a
//! stolen cookie dies with the server process: the key is random at each start). Every form
//! that changes something carries a CSRF token, `sha256(server key, "csrf")`, checked before
//! anything else: without it a page elsewhere could post to a loopback server that has no
//! admin token. The pages also forbid being framed and posting forms elsewhere (CSP). With no
//! `--admin-token-file`, actions are open, as the JSON API is.
//!
//! The read token (`--read-token-file`) can be given the same way: its session lets the
//! browser read the pages and `GET /events` where reading needs a token (a non-loopback
//! listener), and act on nothing. A session cookie only ever counts as a reader outside the
//! console's forms ([`super::super::extract::Cred`]): acting needs a form with its CSRF token.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use sha2::{Digest, Sha256};

use super::super::super::access::same_token;
use super::super::super::error::ApiError;
use super::super::super::lifecycle::Transition;
use super::super::super::AppState;
use super::super::extract::NodeId;
use super::{esc, page, seg, Section};

/// The cookie that carries the session.
pub const COOKIE: &str = "rdeploy_session";

/// This process's key: random at each start.
fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        if getrandom::fill(&mut k).is_err() {
            // No randomness at all: derive from the clock and the process, and say so.
            tracing::warn!("no random source: the console's session key is weak");
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            k.copy_from_slice(&Sha256::digest(seed.as_bytes()));
        }
        k
    })
}

fn derive(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(key());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The CSRF token every console form carries.
pub fn csrf() -> String {
    derive(&[b"csrf"])
}

fn session_value(token: &str) -> String {
    derive(&[b"session", token.as_bytes()])
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// What a browser's session cookie proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// No cookie, or one of another process or token.
    None,
    /// It was made from the read token: the pages may be read.
    Reader,
    /// It was made from the admin token: the pages may be read and the forms act.
    Admin,
}

/// The session `headers` carry.
pub fn session(app: &AppState, headers: &HeaderMap) -> Session {
    let Some(c) = cookie(headers, COOKIE) else {
        return Session::None;
    };
    let made_from = |t: &Option<String>| {
        t.as_deref()
            .is_some_and(|t| same_token(&c, &session_value(t)))
    };
    if made_from(&app.admin_token) {
        Session::Admin
    } else if made_from(&app.read_token) {
        Session::Reader
    } else {
        Session::None
    }
}

/// Whether a console form may act: no admin token on the server, the admin session, or
/// `Authorization: Bearer <admin token>` (for scripts posting the forms).
pub fn may_act(app: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &app.admin_token else {
        return true;
    };
    session(app, headers) == Session::Admin
        || headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|g| same_token(g.trim(), token))
}

/// Whether the page should offer the login (a token is needed and this browser has none).
pub fn needs_login(app: &AppState, headers: &HeaderMap) -> bool {
    !may_act(app, headers)
}

/// The page a reader without the read token gets instead of node details.
pub fn needs_reader() -> Response {
    refused(
        StatusCode::UNAUTHORIZED,
        "read_token_required",
        "reading node details on this server needs its read token or its admin token",
    )
}

fn refused(status: StatusCode, code: &'static str, message: &str) -> Response {
    let body = format!(
        "<p class=\"problem\" id=\"refused\" data-code=\"{code}\">{}</p>\n<p><a href=\"/ui/login\">Give the admin token</a> · <a href=\"/\">Nodes</a></p>\n",
        esc(message)
    );
    let mut resp = page("Refused", Section::Nodes, &body);
    *resp.status_mut() = status;
    resp
}

/// `GET /ui/login`.
pub async fn login_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let state = if app.admin_token.is_none() {
        "<p>This server has no admin token (<code>--admin-token-file</code>): actions are open, as the JSON API is.</p>"
    } else if may_act(&app, &headers) {
        "<p>This browser holds the admin token: actions are allowed.</p>"
    } else {
        "<p>Actions need the server's admin token (the content of its <code>--admin-token-file</code>); where reading node details needs a token, its read token (<code>--read-token-file</code>) lets this browser read. It is asked once and kept in a cookie scripts cannot read, sent to this server only.</p>"
    };
    let body = format!(
        "{state}\n<form method=\"post\" action=\"/ui/login\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Admin or read token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\"></label> \
         <button type=\"submit\" id=\"login\">Keep it in this browser</button></form>\n",
        csrf()
    );
    page("Admin token", Section::Nodes, &body)
}

/// The login form.
#[derive(Debug, serde::Deserialize)]
pub struct Login {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

/// `POST /ui/login`: checks the token, sets the session cookie, back to the nodes.
pub async fn login(State(app): State<AppState>, Form(form): Form<Login>) -> Response {
    if !same_token(&form.csrf, &csrf()) {
        return refused(
            StatusCode::FORBIDDEN,
            "bad_csrf",
            "this form did not come from this server's console (reload the page)",
        );
    }
    if app.admin_token.is_none() && app.read_token.is_none() {
        return Redirect::to("/").into_response();
    }
    let given = form.token.trim();
    let is = |t: &Option<String>| t.as_deref().is_some_and(|t| same_token(given, t));
    if !(is(&app.admin_token) || is(&app.read_token)) {
        return refused(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this is neither the server's admin token nor its read token",
        );
    }
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        session_value(given)
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// A boot action's form: `target` is `install`, `local` or a boot profile's name.
#[derive(Debug, serde::Deserialize)]
pub struct BootForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    target: String,
}

/// `POST /ui/nodes/<id>/boot`: re-install, boot local or boot a named profile, through the
/// core as `POST /nodes/<id>/boot` does; back to the node's page.
pub async fn boot(
    State(app): State<AppState>,
    NodeId(id): NodeId,
    headers: HeaderMap,
    Form(form): Form<BootForm>,
) -> Response {
    if !same_token(&form.csrf, &csrf()) {
        return refused(
            StatusCode::FORBIDDEN,
            "bad_csrf",
            "this form did not come from this server's console (reload the page)",
        );
    }
    if !may_act(&app, &headers) {
        return refused(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this action needs the server's admin token",
        );
    }
    let result: Result<(), ApiError> = async {
        let target = app.core.target(form.target.trim())?;
        app.core
            .change(
                &id,
                Transition::Boot {
                    target,
                    why: "console".into(),
                },
            )
            .await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Redirect::to(&format!("/ui/nodes/{}", seg(&id))).into_response(),
        Err(e) => refused(e.status, e.code, &e.message),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; rdeploy_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn the_session_is_not_the_token_and_depends_on_it() {
        assert_ne!(session_value("t1"), "t1");
        assert_ne!(session_value("t1"), session_value("t2"));
        assert!(same_token(&session_value("t1"), &session_value("t1")));
        assert!(!same_token(&csrf(), &session_value("csrf")));
        assert_ne!(session_value("t1"), csrf());
    }
}
