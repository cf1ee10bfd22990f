//! Node endpoints: `GET /nodes`, `GET /nodes/{id}`, `POST /nodes/{id}/events` (the agent's
//! progress reports).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rdeploy_configure::wire::ProgressEvent;

use super::error::ApiError;
use super::identity::sanitize;
use super::lifecycle::Transition;
use super::nodes::NodeState;
use super::AppState;

/// A node id from a URL: it names a file, so it must already be a sanitized name.
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

/// `GET /nodes`: every node, short form.
pub async fn list(State(app): State<AppState>) -> Response {
    let nodes: Vec<serde_json::Value> = app.nodes.all().iter().map(|n| n.summary()).collect();
    Json(serde_json::json!({ "nodes": nodes })).into_response()
}

/// `GET /nodes/{id}`: the whole record.
pub async fn show(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let node = app
        .nodes
        .get(&id)
        .ok_or_else(|| ApiError::not_found("no_such_node", format!("no node '{id}'")))?;
    Ok(Json(node).into_response())
}

/// `POST /nodes/{id}/events`: records a progress report and moves the life cycle; a
/// `finish`/`succeeded` report makes the next boot `local`. A report the life cycle refuses
/// (`configure/started` on an installed node) is `409 illegal_transition` and changes
/// nothing.
pub async fn event(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<ProgressEvent>, JsonRejection>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    tracing::Span::current().record("node", id.as_str());
    let Json(ev) = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "bad_event",
            format!(
                "an event is {{\"step\": detect|upload|configure|install_role|bootloader|localboot|finish, \"status\": started|succeeded|failed, \"time\": UNIX-SECONDS or RFC 3339, \"message\": TEXT}}: {}",
                e.body_text()
            ),
        )
    })?;
    let state = ev.node_state();
    let node = app
        .nodes
        .change(&id, Transition::Progress(ev))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "no_such_node",
                format!("no node '{id}': upload its inventory first"),
            )
        })?;
    if state == Some(NodeState::Installed) {
        super::boot::sync(&app, &node).await;
    }
    Ok(Json(serde_json::json!({
        "id": node.id,
        "state": node.state,
        "boot": node.boot.to_string(),
    }))
    .into_response())
}

/// `POST /nodes/{id}/log`: the agent's log, raw or as the multipart field `file`, gzipped
/// (`<data-dir>/nodes/<id>.log.gz`, as eDeploy's agent sent it) or plain (`<id>.log`).
pub async fn log(
    State(app): State<AppState>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    if app.nodes.get(&id).is_none() {
        return Err(ApiError::not_found(
            "no_such_node",
            format!("no node '{id}'"),
        ));
    }
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let bytes =
        if multipart {
            use axum::extract::FromRequest;
            let mut mp = axum::extract::Multipart::from_request(request, &())
                .await
                .map_err(|e| {
                    ApiError::bad_request("bad_multipart", format!("malformed multipart form: {e}"))
                })?;
            let mut file = None;
            while let Some(field) = mp
                .next_field()
                .await
                .map_err(|e| ApiError::new(e.status(), "bad_multipart", e.body_text()))?
            {
                if field.name() == Some("file") {
                    file =
                        Some(field.bytes().await.map_err(|e| {
                            ApiError::new(e.status(), "bad_multipart", e.body_text())
                        })?);
                }
            }
            file.ok_or_else(|| ApiError::bad_request("missing_file", "no multipart field `file`"))?
        } else {
            super::api::read_limited(request.into_body()).await?
        };
    if bytes.is_empty() {
        return Err(ApiError::bad_request("missing_file", "the log is empty"));
    }
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let name = if gz {
        format!("{id}.log.gz")
    } else {
        format!("{id}.log")
    };
    let dir = app.data_dir.join("nodes");
    let file = name.clone();
    let len = bytes.len();
    tokio::task::spawn_blocking(move || write_bytes_atomic(&dir, &file, &bytes))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    app.nodes
        .change(
            &id,
            Transition::Log {
                message: format!("log received: {name} ({len} bytes)"),
            },
        )
        .await?;
    Ok(Json(serde_json::json!({"id": id, "log": name, "bytes": len})).into_response())
}

/// Temp file, fsync, rename, fsync of the directory (for binary content).
fn write_bytes_atomic(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = dir.join(format!(".{name}.rdeploy-new"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}
