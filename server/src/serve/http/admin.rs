//! Operator endpoints: what `rdeploy quota`, `nextboot`, `system add|del|show|list|profiles`
//! and the `pxemngr` verbs call. Every change needs the admin token ([`Admin`]) when the
//! server has one.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::super::core::LabRequest;
use super::super::error::ApiError;
use super::super::AppState;
use super::extract::{Admin, Body, Cred, Shape, UrlPath as Path};

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

/// The `addsystem` body; with `ip` or `auto`, a lab host (see [`LabRequest`]).
#[derive(Debug, Deserialize)]
pub struct AddSystem {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    macs: Vec<String>,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    auto: bool,
    #[serde(default)]
    range: Option<String>,
    #[serde(default)]
    name_pattern: Option<String>,
}

impl Shape for AddSystem {
    const CODE: &'static str = "bad_system";
    const EXAMPLE: &'static str =
        r#"{"name": "rack1-u12", "macs": ["52:54:00:12:34:56"], "addresses": ["10.0.0.12"]}"#;
}

/// `POST /systems` `{"name": "rack1-u12", "macs": ["52:54:00:..."], "addresses": [...]}`:
/// PXE Manager's `addsystem NAME MAC|IP...`. With `"ip": "10.0.0.5"` or `"auto": true`
/// (and optionally `"range"`, `"name_pattern"`, no `name`, no `macs`): a lab host, its
/// address checked or chosen, its name and MAC made when absent (`docs/labs.md`).
pub async fn add_system(
    State(app): State<AppState>,
    _admin: Admin,
    Body(req): Body<AddSystem>,
) -> Result<Response, ApiError> {
    if req.ip.is_some() || req.auto {
        if !req.addresses.is_empty() {
            return Err(ApiError::bad_request(
                "bad_system",
                "a lab host (ip or auto) takes no other addresses",
            ));
        }
        let lab = LabRequest {
            name: req.name,
            macs: req.macs,
            ip: req.ip,
            auto: req.auto,
            range: req.range,
            name_pattern: req.name_pattern,
        };
        return Ok(Json(app.core.add_lab_system(&lab).await?).into_response());
    }
    let Some(name) = req.name else {
        return Err(ApiError::bad_request(
            "bad_system",
            "a system needs a name (or ip / auto, to make one)",
        ));
    };
    let system = app
        .core
        .add_system(&name, &req.macs, &req.addresses)
        .await?;
    Ok(Json(system).into_response())
}

/// `GET /systems/{key}`: the system (or node) named, or holding that MAC or address
/// (PXE Manager's `dpysystem`).
pub async fn system(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(app.core.system(&key).await?).into_response())
}

/// `DELETE /systems/{name}`: PXE Manager's `delsystem`.
pub async fn delete_system(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(app.core.delete_system(&name).await?).into_response())
}

/// `GET /boot-profiles`: the boot profiles and what is missing (PXE Manager's
/// `syncbootnames`).
pub async fn boot_profiles(State(app): State<AppState>) -> Response {
    Json(app.core.boot_profiles()).into_response()
}

/// `GET /dhcp-hosts`: the machines a DHCP server should give a fixed address
/// (`rdeploy dhcp-config`); a read, as `GET /nodes`.
pub async fn dhcp_hosts(
    State(app): State<AppState>,
    Cred(cred): Cred,
) -> Result<Response, ApiError> {
    app.core.authorize_read(&cred)?;
    Ok(Json(app.core.dhcp_hosts().await?).into_response())
}

/// `GET /systems`.
pub async fn systems(State(app): State<AppState>) -> Response {
    Json(app.core.systems().await).into_response()
}
