//! Node endpoints: `GET /nodes`, `GET /nodes/{id}`, and the agent's calls on its node:
//! `POST /nodes/{id}/events` (progress reports), `POST /nodes/{id}/log`. Each passes what
//! the request proves ([`Cred`]) to the core, which decides (`core/guard.rs`): a node's
//! calls need its token, reads need the read token on a non-loopback listener.

use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rdeploy_configure::wire::ProgressEvent;

use super::super::core::NodeFilter;
use super::super::error::ApiError;
use super::super::AppState;
use super::extract::{Body, Cred, NodeId, Shape};
use crate::wire::NodeBoot;

impl Shape for ProgressEvent {
    const CODE: &'static str = "bad_event";
    const EXAMPLE: &'static str = "{\"step\": detect|upload|configure|install_role|bootloader|localboot|finish, \"status\": started|succeeded|failed, \"time\": UNIX-SECONDS or RFC 3339, \"message\": TEXT}";
}

/// `GET /nodes`: every node, short form (`?state=&profile=&q=&after=&limit=`).
pub async fn list(
    State(app): State<AppState>,
    Cred(cred): Cred,
    Query(filter): Query<NodeFilter>,
) -> Result<Response, ApiError> {
    app.core.authorize_read(&cred)?;
    Ok(Json(app.core.node_list(&filter)).into_response())
}

/// `GET /nodes/{id}`: the whole record.
/// Secret variables are masked unless the caller is the node (its token) or an admin.
pub async fn show(
    State(app): State<AppState>,
    NodeId(id): NodeId,
    Cred(cred): Cred,
) -> Result<Response, ApiError> {
    Ok(Json(app.core.node_view(&id, &cred)?).into_response())
}

/// `GET /nodes/{id}/inventory`: the inventory the node sent last, as eDeploy saved it
/// (a Python literal, one line per entry).
pub async fn inventory(
    State(app): State<AppState>,
    NodeId(id): NodeId,
    Cred(cred): Cred,
) -> Result<Response, ApiError> {
    app.core.authorize_read(&cred)?;
    Ok(super::text(app.core.inventory(&id).await?))
}

/// `POST /nodes/{id}/events`: records a progress report and moves the life cycle; a
/// `finish`/`succeeded` report makes the next boot `local`. A report the life cycle refuses
/// (`configure/started` on an installed node) is `409 illegal_transition` and changes
/// nothing.
pub async fn event(
    State(app): State<AppState>,
    NodeId(id): NodeId,
    Cred(cred): Cred,
    Body(ev): Body<ProgressEvent>,
) -> Result<Response, ApiError> {
    app.core.authorize_node(&id, &cred)?;
    let node = app.core.progress(&id, ev).await?;
    Ok(Json(NodeBoot {
        id: node.id,
        state: Some(node.state),
        boot: node.boot.to_string(),
    })
    .into_response())
}

/// The answer to a log upload.
#[derive(Debug, serde::Serialize)]
struct LogReply {
    id: String,
    log: String,
    bytes: usize,
}

/// `POST /nodes/{id}/log`: the agent's log, raw or as the multipart field `file`, gzipped
/// (`<data-dir>/nodes/<id>.log.gz`, as eDeploy's agent sent it) or plain (`<id>.log`).
pub async fn log(
    State(app): State<AppState>,
    NodeId(id): NodeId,
    Cred(cred): Cred,
    request: Request,
) -> Result<Response, ApiError> {
    app.core.authorize_node(&id, &cred)?;
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    // The whole body first (read on and dropped past the limit, so a client still sending
    // gets its `413 too_large`), then the form in it.
    let (parts, body) = request.into_parts();
    let body = super::upload::read_limited(body).await?;
    let bytes = if multipart {
        let request = Request::from_parts(parts, axum::body::Body::from(body));
        let mut mp = Multipart::from_request(request, &()).await.map_err(|e| {
            ApiError::bad_request("bad_multipart", format!("malformed multipart form: {e}"))
        })?;
        let mut file = None;
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| super::upload::multipart_error(&e))?
        {
            if field.name() == Some("file") {
                file = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|e| super::upload::multipart_error(&e))?,
                );
            }
        }
        file.ok_or_else(|| ApiError::bad_request("missing_file", "no multipart field `file`"))?
    } else {
        body
    };
    let len = bytes.len();
    let name = app.core.save_log(&id, bytes).await?;
    Ok(Json(LogReply {
        id,
        log: name,
        bytes: len,
    })
    .into_response())
}
