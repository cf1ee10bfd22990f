//! The HTTP side: each handler parses its request (typed extractors in [`extract`]), calls
//! one method of the [`Core`](super::core::Core), and renders the answer. No policy here.
//!
//! - [`upload`]: `POST /upload` (eDeploy's contract) and `GET /healthz`;
//! - [`nodes`]: `GET /nodes`, `GET /nodes/{id}`, the agent's events and log;
//! - [`boot`]: iPXE scripts, PXE Manager (`/localboot/`, `/profile/`, with or without the
//!   slash);
//! - [`pxe_pilot`]: PXE Pilot (`/configurations`, `/hosts`, `/healthcheck`, and `/v1/...`);
//! - [`omf`]: OMF's PXE service (`/pxe/setBootImage`, `/pxe/clearBootImage`, `...NS`);
//! - [`admin`]: operator endpoints (`/quota`, `/nextboot`, `/systems`, `/boot-profiles`).
//! - [`testing`]: PXE Manager's test system (`/nexttest/`, `/upload/<testid>/`,
//!   `/testnames`, `/testruns`); [`pages`]: the web console (`/`, `/ui/...`, `/tests/...`);
//! - [`events`]: `GET /events`, node changes as server-sent events.
//! - [`guard`]: around every route: request size limits, and every error answered as JSON.

pub mod admin;
pub mod boot;
pub mod events;
pub mod extract;
pub mod guard;
pub mod nodes;
pub mod omf;
pub mod pages;
pub mod pxe_pilot;
pub mod testing;
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
