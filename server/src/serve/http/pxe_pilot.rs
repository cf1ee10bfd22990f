//! PXE Pilot's API, at its first paths (`/configurations`, 2017) and its later `/v1/...`
//! ones, with its answer shapes and status codes:
//!
//! - `GET /configurations`: `[{"name": ...}]`;
//! - `GET /v1/configurations/{name}`: `{"name", "content"}` (`404` for an unknown one);
//! - `PUT /configurations/{name}/deploy` `{"hosts": [{"macAddress": MAC} | {"name": NAME}]}`:
//!   the body is read as JSON whatever its `Content-Type` (PXE Pilot's README sends it with
//!   curl's default form type, and PXE Pilot read it anyway);
//! - `GET /hosts`: `[{"name", "macAddresses", "configuration": {"name"}}]`;
//! - `GET /healthcheck`: `204`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::super::core::HostRef;
use super::super::error::ApiError;
use super::super::AppState;
use super::extract::{Admin, Body, Shape};
use crate::wire::PilotDeployReply;

/// `GET /configurations`: the boot configurations there are.
pub async fn configurations(State(app): State<AppState>) -> Response {
    Json(app.core.configurations()).into_response()
}

/// `GET /v1/configurations/{name}`: a configuration's PXELINUX text.
pub async fn configuration(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(app.core.configuration(&name)?).into_response())
}

/// `GET /hosts`: the machines and what each boots next.
pub async fn hosts(State(app): State<AppState>) -> Response {
    Json(app.core.hosts().await).into_response()
}

/// `GET /healthcheck`: `204 No Content`, as PXE Pilot answered.
pub async fn healthcheck() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// PXE Pilot's deploy body.
#[derive(Debug, Deserialize)]
pub struct Deploy {
    hosts: Vec<DeployHost>,
}

/// One host: `macAddress` (what PXE Pilot read; its README also wrote `mac_address`) or
/// `name`.
#[derive(Debug, Deserialize)]
pub struct DeployHost {
    #[serde(rename = "macAddress", alias = "mac_address", default)]
    mac_address: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

impl Shape for Deploy {
    const CODE: &'static str = "bad_deploy";
    const EXAMPLE: &'static str =
        r#"{"hosts": [{"macAddress": "52:54:00:12:34:56"}, {"name": "rack1-u12"}]}"#;
}

/// `PUT /configurations/{name}/deploy`: those hosts boot that configuration next.
pub async fn deploy(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
    Body(deploy): Body<Deploy>,
) -> Result<Response, ApiError> {
    let hosts = deploy
        .hosts
        .into_iter()
        .map(|h| match (h.mac_address, h.name) {
            (Some(mac), _) if !mac.is_empty() => Ok(HostRef::Mac(mac)),
            (_, Some(name)) if !name.is_empty() => Ok(HostRef::Name(name)),
            _ => Err(ApiError::bad_request(
                "bad_deploy",
                format!(
                    "each host needs a macAddress or a name: {}",
                    Deploy::EXAMPLE
                ),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hosts = app.core.deploy(&name, &hosts).await?;
    Ok(Json(PilotDeployReply { hosts }).into_response())
}
