//! Operator endpoints (what `rdeploy nodes`, `nextboot`, `system add`, `quota` call) and the
//! bearer token that guards every mutating operator endpoint.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::identity::{normalize_mac, sanitize};
use super::lifecycle::Transition;
use super::nodes::{parse_boot, BootTarget};
use super::AppState;

/// Checks `Authorization: Bearer <token>` when the server has an admin token.
pub fn require_admin(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &app.admin_token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <token>` (the server's --admin-token-file)",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_error(e: &JsonRejection, code: &'static str, shape: &str) -> ApiError {
    ApiError::new(
        e.status(),
        code,
        format!("the body must be {shape}: {}", e.body_text()),
    )
}

/// `GET /quota`: each profile in `state` order with its quota, CMDB use and nodes.
pub async fn quota(State(app): State<AppState>) -> Response {
    let health = app.writer.refresh().await;
    let nodes = app.nodes.all();
    let rows: Vec<serde_json::Value> = health
        .profiles
        .iter()
        .map(|(profile, left)| {
            let cmdb = health.cmdbs.iter().find(|c| &c.profile == profile);
            serde_json::json!({
                "profile": profile,
                "quota": left,
                "cmdb_used": cmdb.map(|c| c.used),
                "cmdb_total": cmdb.map(|c| c.total),
                "nodes": nodes.iter().filter(|n| n.profile.as_deref() == Some(profile.as_str())).count(),
            })
        })
        .collect();
    Json(serde_json::json!({ "profiles": rows })).into_response()
}

#[derive(Debug, Deserialize)]
pub struct NextBoot {
    name: String,
    target: String,
}

/// `POST /nextboot` `{"name": NODE|SYSTEM|MAC, "target": "install"|"local"|PROFILE}`.
pub async fn nextboot(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NextBoot>, JsonRejection>,
) -> Result<Response, ApiError> {
    require_admin(&app, &headers)?;
    let Json(req) = body.map_err(|e| {
        json_error(
            &e,
            "bad_nextboot",
            r#"{"name": "node1", "target": "install"}"#,
        )
    })?;
    let target = parse_boot(&req.target)
        .filter(|t| app.boot.knows(t))
        .ok_or_else(|| {
            ApiError::not_found(
                "no_such_configuration",
                format!(
                    "no boot configuration '{}' (see GET /configurations)",
                    req.target
                ),
            )
        })?;
    let answer = set_boot_by_name(&app, &req.name, target, "operator nextboot").await?;
    Ok(Json(answer).into_response())
}

/// Sets the next boot of a node (by id), a registered system (by name) or a MAC.
async fn set_boot_by_name(
    app: &AppState,
    name: &str,
    target: BootTarget,
    why: &str,
) -> Result<serde_json::Value, ApiError> {
    if sanitize(name).as_deref() == Some(name) {
        if let Some(node) = app
            .nodes
            .change(
                name,
                Transition::Boot {
                    target: target.clone(),
                    why: why.into(),
                },
            )
            .await?
        {
            super::boot::sync(app, &node).await;
            return Ok(serde_json::json!({"node": node.id, "boot": node.boot.to_string()}));
        }
        if app.systems.set_boot(name, target.clone()).await? {
            return Ok(serde_json::json!({"system": name, "boot": target.to_string()}));
        }
    }
    if normalize_mac(name).is_some() {
        let node = super::boot::set_boot_by_mac(app, name, target.clone(), why).await?;
        if let Some(n) = &node {
            super::boot::sync(app, n).await;
        }
        return Ok(serde_json::json!({
            "node": node.map(|n| n.id),
            "mac": normalize_mac(name),
            "boot": target.to_string(),
        }));
    }
    Err(ApiError::not_found(
        "no_such_node",
        format!("'{name}' is neither a node, a registered system nor a MAC address"),
    ))
}

#[derive(Debug, Deserialize)]
pub struct OmfQuery {
    node: Option<String>,
}

/// OMF's `GET /pxe/setBootImage?node=NAME` (boot the installer next) and
/// `GET /pxe/clearBootImage?node=NAME` (boot the local disk).
pub async fn omf_set(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<OmfQuery>,
) -> Result<Response, ApiError> {
    omf(&app, &headers, q, BootTarget::Install).await
}

pub async fn omf_clear(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<OmfQuery>,
) -> Result<Response, ApiError> {
    omf(&app, &headers, q, BootTarget::Local).await
}

async fn omf(
    app: &AppState,
    headers: &HeaderMap,
    q: OmfQuery,
    target: BootTarget,
) -> Result<Response, ApiError> {
    require_admin(app, headers)?;
    let name = q
        .node
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing_node", "?node=NAME is required"))?;
    let answer = set_boot_by_name(app, &name, target, "OMF").await?;
    Ok(Json(answer).into_response())
}

#[derive(Debug, Deserialize)]
pub struct AddSystem {
    name: String,
    macs: Vec<String>,
}

/// `POST /systems` `{"name": "rack1-u12", "macs": ["52:54:00:..."]}`: PXE Manager's
/// `addsystem`.
pub async fn add_system(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<AddSystem>, JsonRejection>,
) -> Result<Response, ApiError> {
    require_admin(&app, &headers)?;
    let Json(req) = body.map_err(|e| {
        json_error(
            &e,
            "bad_system",
            r#"{"name": "rack1-u12", "macs": ["52:54:00:12:34:56"]}"#,
        )
    })?;
    if sanitize(&req.name).as_deref() != Some(req.name.as_str()) {
        return Err(ApiError::bad_request(
            "bad_system",
            format!(
                "{:?} is not a system name (letters, digits, '.', '_', '-')",
                req.name
            ),
        ));
    }
    if req.macs.is_empty() {
        return Err(ApiError::bad_request(
            "bad_system",
            "a system needs at least one MAC address",
        ));
    }
    let system = app.systems.add(&req.name, &req.macs).await?;
    Ok(Json(
        serde_json::json!({"name": req.name, "macs": system.macs, "boot": system.boot.to_string()}),
    )
    .into_response())
}

/// `GET /systems`.
pub async fn systems(State(app): State<AppState>) -> Response {
    let systems: Vec<serde_json::Value> = app
        .systems
        .all()
        .await
        .into_iter()
        .map(|(name, s)| serde_json::json!({"name": name, "macs": s.macs, "boot": s.boot.to_string()}))
        .collect();
    Json(serde_json::json!({ "systems": systems })).into_response()
}
