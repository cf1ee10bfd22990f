//! The HTTP side: each handler parses its request (typed extractors in [`extract`]), calls
//! one method of the [`Core`](super::core::Core), and renders the answer. No policy here.
//!
//! - [`upload`]: `POST /upload` (eDeploy's contract) and `GET /healthz`;
//! - [`nodes`]: `GET /nodes`, `GET /nodes/{id}`, the agent's events and log;
//! - [`boot`]: iPXE scripts, PXE Manager (`/localboot`, `/profile`) and PXE Pilot
//!   (`/configurations`);
//! - [`admin`]: operator endpoints (`/quota`, `/nextboot`, `/systems`, OMF's `/pxe/...`);
//! - [`guard`]: around every route: request size limits, and every error answered as JSON.

pub mod admin;
pub mod boot;
pub mod extract;
pub mod guard;
pub mod nodes;
pub mod upload;

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

/// A plain-text answer.
pub fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Whether the client asked for JSON (`Accept: application/json`).
pub fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}
