//! Boot endpoints: the iPXE script of each machine (`/boot.ipxe`, `/boot/<mac>.ipxe`), PXE
//! Manager's `/localboot/` and `/profile/` (with or without the trailing slash its scripts
//! and eDeploy's use; the caller found by any address it is known by, or named by MAC), and
//! the operator's `POST /nodes/{id}/boot`. PXE Pilot's endpoints are in
//! [`super::pxe_pilot`].
//!
//! An `installed` node that network-boots again gets `local` and an alert event: never a
//! silent re-install. Only an operator (`POST /nodes/{id}/boot`, PXE Pilot's deploy) sends
//! it back to `install`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::super::core::Machine;
use super::super::error::ApiError;
use super::super::AppState;
use super::extract::{parse_mac, Admin, Body, Cred, Mac, NodeId, Shape, UrlPath as Path};
use super::{accepts_json, text};
use crate::wire::NodeBoot;

/// `GET /boot.ipxe`: chains to the script of the booting machine's MAC.
pub async fn generic_ipxe(State(app): State<AppState>) -> Response {
    text(app.core.boot().config.chain_ipxe())
}

/// `GET /boot/{mac}.ipxe`: the machine's next boot as an iPXE script.
pub async fn mac_ipxe(
    State(app): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let mac = file.strip_suffix(".ipxe").ok_or_else(|| {
        ApiError::not_found("no_such_endpoint", "boot scripts are /boot/<mac>.ipxe")
    })?;
    let mac = parse_mac(mac)?;
    tracing::Span::current().record("node", mac.as_str());
    Ok(text(app.core.boot_script(&mac).await))
}

/// Answers in JSON when asked, else one line of text (the PXE Manager way).
fn answer(headers: &HeaderMap, machine: &Machine, line: String) -> Response {
    if accepts_json(headers) {
        Json(machine.node_boot()).into_response()
    } else {
        text(line + "\n")
    }
}

/// `GET /localboot/`: the caller (found by any address it is known by) boots locally from
/// now on.
pub async fn localboot_caller(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let machine = app.core.caller(peer.ip()).await?;
    let why = format!("localboot from {}", peer.ip());
    let machine = app.core.localboot_machine(machine, &why).await?;
    let line = format!("{}: next boot local", machine.name());
    Ok(answer(&headers, &machine, line))
}

/// `GET /localboot/{mac}/`: from the machine itself (its address or its node token) or
/// an admin (`core/guard.rs`).
pub async fn localboot_mac(
    State(app): State<AppState>,
    Mac(mac): Mac,
    Cred(cred): Cred,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let why = format!("localboot for {mac}");
    let machine = app.core.localboot_mac_as(&mac, &why, &cred).await?;
    let line = format!("{}: next boot local", machine.name());
    Ok(answer(&headers, &machine, line))
}

/// `GET /profile/`: the caller's next boot (`install`, `local` or a profile name).
pub async fn profile_caller(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let machine = app.core.caller(peer.ip()).await?;
    Ok(answer(&headers, &machine, machine.boot().to_string()))
}

/// `GET /profile/{mac}/`: that machine's next boot.
pub async fn profile_mac(
    State(app): State<AppState>,
    Mac(mac): Mac,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let machine = app.core.find(&mac).await.ok_or_else(|| {
        ApiError::not_found(
            "no_such_node",
            format!("no node or registered system has the MAC {mac}"),
        )
    })?;
    Ok(answer(&headers, &machine, machine.boot().to_string()))
}

/// The operator's `nextboot`/`reinstall` body.
#[derive(Debug, Deserialize)]
pub struct SetBoot {
    target: String,
}

impl Shape for SetBoot {
    const CODE: &'static str = "bad_boot";
    const EXAMPLE: &'static str = r#"{"target": "install"}"#;
}

/// `POST /nodes/{id}/boot` `{"target": "install" | "local" | PROFILE}`: the operator's
/// `nextboot`/`reinstall`.
pub async fn set_node_boot(
    State(app): State<AppState>,
    _admin: Admin,
    NodeId(id): NodeId,
    Body(req): Body<SetBoot>,
) -> Result<Response, ApiError> {
    let target = app.core.target(&req.target)?;
    let node = app
        .core
        .change(
            &id,
            super::super::lifecycle::Transition::Boot {
                target,
                why: "operator".into(),
            },
        )
        .await?;
    Ok(Json(NodeBoot {
        id: node.id,
        state: None,
        boot: node.boot.to_string(),
    })
    .into_response())
}
