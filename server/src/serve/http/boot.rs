//! Boot endpoints: the iPXE script of each machine (`/boot.ipxe`, `/boot/<mac>.ipxe`), PXE
//! Manager's `/localboot` and `/profile` (the caller found by its address, or named by MAC),
//! PXE Pilot's `/configurations`, and the operator's `POST /nodes/{id}/boot`.
//!
//! An `installed` node that network-boots again gets `local` and an alert event: never a
//! silent re-install. Only an operator (`POST /nodes/{id}/boot`, PXE Pilot's deploy) sends
//! it back to `install`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::super::boot::BootTarget;
use super::super::error::ApiError;
use super::super::record::Node;
use super::super::AppState;
use super::extract::{parse_mac, Admin, Body, Mac, NodeId, Shape, UrlPath as Path};
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
fn answer(headers: &HeaderMap, node: &Node, line: String) -> Response {
    if accepts_json(headers) {
        Json(NodeBoot {
            id: node.id.clone(),
            state: Some(node.state),
            boot: node.boot.to_string(),
        })
        .into_response()
    } else {
        text(line + "\n")
    }
}

/// `GET /localboot`: the caller (identified by its address, the IP its CMDB entry gave it)
/// boots locally from now on.
pub async fn localboot_caller(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let node = app.core.caller(peer.ip())?;
    let why = format!("localboot from {}", peer.ip());
    let node = app.core.localboot(&node, &why).await?;
    Ok(answer(
        &headers,
        &node,
        format!("{}: next boot local", node.id),
    ))
}

/// `GET /localboot/{mac}`.
pub async fn localboot_mac(
    State(app): State<AppState>,
    Mac(mac): Mac,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match app.core.node_by_mac(&mac) {
        Some(node) => {
            let why = format!("localboot for {mac}");
            let node = app.core.localboot(&node, &why).await?;
            Ok(answer(
                &headers,
                &node,
                format!("{}: next boot local", node.id),
            ))
        }
        None => {
            app.core
                .set_boot_by_mac(&mac, BootTarget::Local, "localboot")
                .await?;
            Ok(text(format!("{mac}: next boot local\n")))
        }
    }
}

/// `GET /profile`: the caller's next boot profile (`install`, `local` or a name).
pub async fn profile_caller(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let node = app.core.caller(peer.ip())?;
    Ok(answer(&headers, &node, node.boot.to_string()))
}

/// One boot configuration (PXE Pilot's `GET /configurations`).
#[derive(Debug, Serialize)]
struct Configuration {
    name: String,
}

/// `GET /configurations` (PXE Pilot): the boot configurations there are.
pub async fn configurations(State(app): State<AppState>) -> Response {
    let mut names = vec!["install".to_owned(), "local".to_owned()];
    names.extend(
        app.core
            .boot()
            .profiles()
            .into_iter()
            .filter(|n| n != "local" && n != "install"),
    );
    let list: Vec<Configuration> = names
        .into_iter()
        .map(|name| Configuration { name })
        .collect();
    Json(list).into_response()
}

/// PXE Pilot's deploy body.
#[derive(Debug, Deserialize)]
pub struct Deploy {
    hosts: Vec<DeployHost>,
}

#[derive(Debug, Deserialize)]
pub struct DeployHost {
    #[serde(rename = "macAddress")]
    mac_address: String,
}

impl Shape for Deploy {
    const CODE: &'static str = "bad_deploy";
    const EXAMPLE: &'static str = r#"{"hosts": [{"macAddress": "52:54:00:12:34:56"}]}"#;
}

/// One host of a deploy's answer.
#[derive(Debug, Serialize)]
struct Deployed {
    #[serde(rename = "macAddress")]
    mac_address: String,
    node: Option<String>,
    configuration: String,
}

#[derive(Debug, Serialize)]
struct DeployReply {
    hosts: Vec<Deployed>,
}

/// `PUT /configurations/{name}/deploy` (PXE Pilot): `{"hosts": [{"macAddress": MAC}]}` boot
/// that configuration next.
pub async fn deploy(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
    Body(deploy): Body<Deploy>,
) -> Result<Response, ApiError> {
    let target = app.core.target(&name)?;
    let macs = deploy
        .hosts
        .iter()
        .map(|h| parse_mac(&h.mac_address))
        .collect::<Result<Vec<_>, _>>()?;
    let mut hosts = Vec::new();
    let why = format!("PXE Pilot deploy {name}");
    for mac in macs {
        let node = app.core.set_boot_by_mac(&mac, target.clone(), &why).await?;
        hosts.push(Deployed {
            mac_address: mac,
            node: node.map(|n| n.id),
            configuration: target.to_string(),
        });
    }
    Ok(Json(DeployReply { hosts }).into_response())
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
