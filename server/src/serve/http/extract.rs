//! Typed extractors: a handler that takes one of these gets a checked value or never runs,
//! and the client gets the one [`ApiError`] answer with a stable code.
//!
//! - [`Admin`]: the admin token (`Authorization: Bearer <token>`) when the server has one;
//! - [`Cred`]: what the request proves (its bearer token, admin or reader, its address),
//!   for the [`Core`](super::super::core::Core) to decide with (`core/guard.rs`);
//! - [`NodeId`]: a node id from the URL (it names a file: letters, digits, `.`, `_`, `-`);
//! - [`Mac`]: a MAC address from the URL, normalized (`52:54:00:12:34:56`);
//! - [`Body`]: a JSON body of a known shape, read whatever the `Content-Type` (PXE Pilot's
//!   users send it with curl's default form type);
//! - [`Query`], [`UrlPath`]: axum's extractors answering the one [`ApiError`] (`bad_query`,
//!   `bad_path`) instead of plain text.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use super::super::access::{same_token, Credential};
use super::super::error::ApiError;
use super::super::identity::{normalize_mac, sanitize};
use super::super::AppState;

/// Proof that the request carries the admin token (or that the server has none).
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Admin, ApiError> {
        let Some(token) = &app.admin_token else {
            return Ok(Admin);
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if given.is_some_and(|g| same_token(g, token)) {
            Ok(Admin)
        } else {
            Err(super::super::core::guard::needs_admin())
        }
    }
}

/// The bearer token of a request (`Authorization: Bearer <token>`).
fn bearer(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// What the request proves about itself (never refused: the core decides).
#[derive(Debug, Clone)]
pub struct Cred(pub Credential);

impl FromRequestParts<AppState> for Cred {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Cred, ApiError> {
        let token = bearer(parts);
        let is = |t: &Option<String>| match (&token, t) {
            (Some(given), Some(t)) => same_token(given, t),
            _ => false,
        };
        let admin = is(&app.admin_token);
        let operator = admin || app.admin_token.is_none();
        // The console's session cookie lets a browser read (acting needs its forms' CSRF
        // token, checked by the console itself).
        let session = super::pages::session::session(app, &parts.headers);
        let reader = admin
            || is(&app.read_token)
            || !app.read_protected
            || session != super::pages::session::Session::None;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        Ok(Cred(Credential {
            token,
            admin,
            operator,
            reader,
            peer,
        }))
    }
}

/// The single path parameter of a route, as text.
async fn path_param(parts: &mut Parts, app: &AppState) -> Result<String, ApiError> {
    Path::<String>::from_request_parts(parts, app)
        .await
        .map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))
}

/// A node id from the URL.
#[derive(Debug, Clone)]
pub struct NodeId(pub String);

/// Checks a node id: it names a file, so it must already be a sanitized name.
pub fn check_id(id: &str) -> Result<(), ApiError> {
    if sanitize(id).as_deref() == Some(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "bad_node_id",
            format!(
                "{id:?} is not a node id (letters, digits, '.', '_', '-'; not starting with '.')"
            ),
        ))
    }
}

impl FromRequestParts<AppState> for NodeId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<NodeId, ApiError> {
        let id = path_param(parts, app).await?;
        check_id(&id)?;
        tracing::Span::current().record("node", id.as_str());
        Ok(NodeId(id))
    }
}

/// A MAC address from the URL, normalized.
#[derive(Debug, Clone)]
pub struct Mac(pub String);

/// Normalizes a MAC, or says it is not one (`400 bad_mac`).
pub fn parse_mac(text: &str) -> Result<String, ApiError> {
    normalize_mac(text)
        .ok_or_else(|| ApiError::bad_request("bad_mac", format!("{text:?} is not a MAC address")))
}

impl FromRequestParts<AppState> for Mac {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Mac, ApiError> {
        let text = path_param(parts, app).await?;
        let mac = parse_mac(&text)?;
        tracing::Span::current().record("node", mac.as_str());
        Ok(Mac(mac))
    }
}

/// A query string of shape `T` (`400 bad_query` when it is not one).
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Query<T>, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Query(q))
            .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))
    }
}

/// The path parameters of a route as `T` (`400 bad_path` when they are not: a non-UTF-8
/// segment, a wrong count).
#[derive(Debug, Clone)]
pub struct UrlPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for UrlPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<UrlPath<T>, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| UrlPath(p))
            .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))
    }
}

/// A JSON body's shape, for the error a malformed one gets.
pub trait Shape {
    /// The stable error code (`bad_nextboot`, ...).
    const CODE: &'static str;
    /// An example of a good body, shown in the error message.
    const EXAMPLE: &'static str;
}

/// A JSON body of shape `T`, whatever the request's `Content-Type`.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + Shape> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _app: &AppState) -> Result<Body<T>, ApiError> {
        let bytes = super::upload::read_limited(req.into_body()).await?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            ApiError::bad_request(T::CODE, format!("the body must be {}: {e}", T::EXAMPLE))
        })
    }
}
