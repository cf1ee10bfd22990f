//! Operator endpoints (what `rdeploy quota`, `nextboot`, `system add` call) and OMF's
//! `/pxe/setBootImage`, `/pxe/clearBootImage`. Every change needs the admin token
//! ([`Admin`]) when the server has one.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::super::boot::BootTarget;
use super::super::error::ApiError;
use super::super::AppState;
use super::extract::{Admin, Body, Query, Shape};

/// `GET /quota`: each profile in `state` order with its quota, CMDB use and nodes.
pub async fn quota(State(app): State<AppState>) -> Response {
    Json(app.core.quota().await).into_response()
}

/// The `nextboot` body.
#[derive(Debug, Deserialize)]
pub struct NextBoot {
    name: String,
    target: String,
}

impl Shape for NextBoot {
    const CODE: &'static str = "bad_nextboot";
    const EXAMPLE: &'static str = r#"{"name": "node1", "target": "install"}"#;
}

/// `POST /nextboot` `{"name": NODE|SYSTEM|MAC, "target": "install"|"local"|PROFILE}`.
pub async fn nextboot(
    State(app): State<AppState>,
    _admin: Admin,
    Body(req): Body<NextBoot>,
) -> Result<Response, ApiError> {
    let target = app.core.target(&req.target)?;
    let change = app
        .core
        .set_boot(&req.name, target, "operator nextboot")
        .await?;
    Ok(Json(change).into_response())
}

#[derive(Debug, Deserialize)]
pub struct OmfQuery {
    node: Option<String>,
}

/// OMF's `GET /pxe/setBootImage?node=NAME` (boot the installer next).
pub async fn omf_set(
    State(app): State<AppState>,
    _admin: Admin,
    Query(q): Query<OmfQuery>,
) -> Result<Response, ApiError> {
    omf(&app, q, BootTarget::Install).await
}

/// OMF's `GET /pxe/clearBootImage?node=NAME` (boot the local disk).
pub async fn omf_clear(
    State(app): State<AppState>,
    _admin: Admin,
    Query(q): Query<OmfQuery>,
) -> Result<Response, ApiError> {
    omf(&app, q, BootTarget::Local).await
}

async fn omf(app: &AppState, q: OmfQuery, target: BootTarget) -> Result<Response, ApiError> {
    let name = q
        .node
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing_node", "?node=NAME is required"))?;
    let change = app.core.set_boot(&name, target, "OMF").await?;
    Ok(Json(change).into_response())
}

/// The `addsystem` body.
#[derive(Debug, Deserialize)]
pub struct AddSystem {
    name: String,
    macs: Vec<String>,
}

impl Shape for AddSystem {
    const CODE: &'static str = "bad_system";
    const EXAMPLE: &'static str = r#"{"name": "rack1-u12", "macs": ["52:54:00:12:34:56"]}"#;
}

/// `POST /systems` `{"name": "rack1-u12", "macs": ["52:54:00:..."]}`: PXE Manager's
/// `addsystem`.
pub async fn add_system(
    State(app): State<AppState>,
    _admin: Admin,
    Body(req): Body<AddSystem>,
) -> Result<Response, ApiError> {
    let system = app.core.add_system(&req.name, &req.macs).await?;
    Ok(Json(system).into_response())
}

/// `GET /systems`.
pub async fn systems(State(app): State<AppState>) -> Response {
    Json(app.core.systems().await).into_response()
}
