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

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use sha2::{Digest, Sha256};

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

/// Compares two hex digests of equal length without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
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

/// Whether a console request may act: no admin token on the server, the session cookie, or
/// `Authorization: Bearer <token>` (for scripts posting the forms).
pub fn may_act(app: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &app.admin_token else {
        return true;
    };
    let expected = session_value(token);
    if cookie(headers, COOKIE).is_some_and(|c| same(&c, &expected)) {
        return true;
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|g| same(&session_value(g.trim()), &expected))
}

/// Whether the page should offer the login (a token is needed and this browser has none).
pub fn needs_login(app: &AppState, headers: &HeaderMap) -> bool {
    !may_act(app, headers)
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
        "<p>Actions need the server's admin token (the content of its <code>--admin-token-file</code>). It is asked once and kept in a cookie scripts cannot read, sent to this server only.</p>"
    };
    let body = format!(
        "{state}\n<form method=\"post\" action=\"/ui/login\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Admin token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\"></label> \
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
    if !same(&form.csrf, &csrf()) {
        return refused(
            StatusCode::FORBIDDEN,
            "bad_csrf",
            "this form did not come from this server's console (reload the page)",
        );
    }
    let Some(token) = &app.admin_token else {
        return Redirect::to("/").into_response();
    };
    let given = session_value(form.token.trim());
    let expected = session_value(token);
    if !same(&given, &expected) {
        return refused(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this is not the server's admin token",
        );
    }
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={expected}; HttpOnly; SameSite=Strict; Path=/"
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
    if !same(&form.csrf, &csrf()) {
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
        assert!(same(&session_value("t1"), &session_value("t1")));
        assert!(!same(&csrf(), &session_value("csrf")));
    }
}
