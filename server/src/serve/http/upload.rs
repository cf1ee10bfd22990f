//! `POST /upload` and eDeploy's `POST /cgi-bin/upload.py` (eDeploy's contract: an
//! inventory, a failure report, or, as a `file` named `*.log.gz`, the agent's log) and
//! `GET /healthz`.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rdeploy_configure::wire::UploadReply;
use rdeploy_server::form::{read_upload_form, FormError, UploadForm};
use rdeploy_specs::Inventory;
use serde::Deserialize;

use rdeploy_cmdb::snapshot::FailureOutcome;

use super::super::access::Credential;
use super::super::error::ApiError;
use super::super::{AppState, UPLOAD_LIMIT};
use super::extract::{Cred, Query};
use super::{accepts_json, text};

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    failure: Option<String>,
}

/// `POST /upload`: multipart (`curl -F file=@hw.json [-F failure=PROFILE]`) or the
/// inventory as the raw body (`?failure=PROFILE` for a failure report).
pub async fn upload(
    State(app): State<AppState>,
    Query(query): Query<UploadQuery>,
    Cred(cred): Cred,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let wants_json = accepts_json(&headers);
    let from = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let mut form = read_form(&headers, request).await?;
    if let Some((name, bytes)) = form.log {
        let saved = app.core.save_upload_log(&name, bytes).await?;
        return Ok(text(format!("// log saved as {saved}\n")));
    }
    if form.failure.is_none() {
        form.failure = query.failure;
    }
    let inventory = match &form.file {
        Some(text) => Some(parse_inventory(text)?),
        None => None,
    };
    if let Some(profile) = form.failure {
        return report_failure(&app, profile, inventory, &cred, wants_json).await;
    }
    let inventory = inventory.ok_or_else(|| {
        ApiError::bad_request(
            "missing_file",
            "no inventory: send it as the multipart field `file` (curl -F file=@hw.json URL/upload) or as the request body",
        )
    })?;
    let up = app.core.upload(inventory, from).await?;
    let profile = up.allocation.plan.profile;
    if wants_json {
        return Ok(Json(UploadReply {
            profile,
            var: up.var,
            script: up.allocation.script,
            node: Some(up.node.id),
            token: Some(up.token),
        })
        .into_response());
    }
    // The text answer (eDeploy's) carries the node and its token in headers.
    let mut resp = text(render_script(&profile, &up.var, &up.allocation.script));
    for (name, value) in [(NODE_HEADER, up.node.id), (TOKEN_HEADER, up.token)] {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    Ok(resp)
}

/// The header of a text upload answer naming the node.
pub const NODE_HEADER: &str = "x-rdeploy-node";
/// The header of a text upload answer carrying the node's token.
pub const TOKEN_HEADER: &str = "x-rdeploy-token";

async fn report_failure(
    app: &AppState,
    profile: String,
    inventory: Option<Inventory>,
    cred: &Credential,
    wants_json: bool,
) -> Result<Response, ApiError> {
    let outcome = app
        .core
        .report_failure_as(&profile, inventory, cred)
        .await?;
    let returned = outcome == FailureOutcome::QuotaReturned;
    let message = if returned {
        format!("gave one install back to profile '{profile}'")
    } else {
        format!("profile '{profile}' unchanged (unlimited quota or not in state)")
    };
    if wants_json {
        return Ok(Json(FailureReply {
            profile,
            quota_returned: returned,
            message,
        })
        .into_response());
    }
    Ok(text(format!("// {message}\n")))
}

/// The answer to a failure report.
#[derive(Debug, serde::Serialize)]
struct FailureReply {
    profile: String,
    quota_returned: bool,
    message: String,
}

async fn read_form(headers: &HeaderMap, request: Request) -> Result<UploadForm, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let body = read_limited(request.into_body()).await?;
    read_upload_form(content_type, body)
        .await
        .map_err(|e| match e {
            FormError::Rejected(_) => ApiError::bad_request("bad_multipart", e.to_string()),
            FormError::Field(e) => multipart_error(&e),
            FormError::NotUtf8(_) => ApiError::bad_request("bad_inventory", e.to_string()),
        })
}

/// Reads at most [`UPLOAD_LIMIT`] bytes. A larger body is read on (and dropped) up to
/// [`DRAIN_LIMIT`] so the client, still sending, gets to read the `413` answer.
pub async fn read_limited(mut body: axum::body::Body) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(&e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= UPLOAD_LIMIT {
            buf.extend_from_slice(&data);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > UPLOAD_LIMIT {
        return Err(too_large());
    }
    Ok(Bytes::from(buf))
}

/// How much of an oversized body is read and dropped before the connection is closed.
const DRAIN_LIMIT: usize = 16 * UPLOAD_LIMIT;

/// A request body that could not be read: `408 request_timeout` when the client was too
/// slow sending it (`conn.rs`), else `400 bad_body`.
pub fn body_error(e: &(dyn std::error::Error + 'static)) -> ApiError {
    if super::super::conn::is_body_timeout(e) {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("{e}: send the body without pausing"),
        )
    } else {
        ApiError::bad_request("bad_body", format!("cannot read the request body: {e}"))
    }
}

pub fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else if super::super::conn::is_body_timeout(e) {
        body_error(e)
    } else {
        ApiError::bad_request(
            "bad_multipart",
            format!("malformed multipart form: {}", e.body_text()),
        )
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the upload is larger than {} bytes", UPLOAD_LIMIT),
    )
}

fn parse_inventory(text: &str) -> Result<Inventory, ApiError> {
    Inventory::parse(text).map_err(|problems| {
        if super::super::testing::parse::looks_like_output(text) {
            // PXE Manager's test results go to `/upload/` (with the slash).
            return ApiError::bad_request(
                "test_output_to_inventory_upload",
                "this is a test output (it has `I: `, `W: `, `E: ` or `V: ` lines), not an inventory: POST /upload takes eDeploy inventories; test results go to /upload/ with the slash (curl -F \"file=@$output\" http://SERVER/upload/<testid>/)",
            );
        }
        let lines: Vec<String> = problems
            .0
            .iter()
            .take(10)
            .map(|p| format!("{}: {}", p.pos, p.message))
            .collect();
        ApiError::bad_request(
            "bad_inventory",
            format!(
                "the inventory must be a JSON or Python-literal list of 4-element lists: {}",
                lines.join("; ")
            ),
        )
    })
}

/// The text answer: a header naming the profile, the variables as a Rhai map, the script.
pub fn render_script(
    profile: &str,
    var: &serde_json::Map<String, serde_json::Value>,
    script: &str,
) -> String {
    let mut out = format!("// profile: {}\nlet var = ", profile.replace('\n', " "));
    rhai_map(var, &mut out);
    out.push_str(";\n");
    out.push_str(script);
    out
}

fn rhai_map(m: &serde_json::Map<String, serde_json::Value>, out: &mut String) {
    out.push_str("#{");
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        rhai_string(k, out);
        out.push_str(": ");
        rhai_value(v, out);
    }
    out.push('}');
}

fn rhai_value(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match v {
        J::Null => out.push_str("()"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) if i != i64::MIN => out.push_str(&i.to_string()),
            (_, Some(f)) if f.is_finite() => {
                let s = format!("{f:?}");
                out.push_str(&s);
            }
            _ => out.push_str("()"),
        },
        J::String(s) => rhai_string(s, out),
        J::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                rhai_value(x, out);
            }
            out.push(']');
        }
        J::Object(m) => rhai_map(m, out),
    }
}

fn rhai_string(s: &str, out: &mut String) {
    out.push_str(&rdeploy_configure::rhai_string(s));
}

/// `GET /healthz`: looks at the config files now; `200` with `"status": "ok"` or
/// `"degraded"` (a file does not parse: its last good version is used), `503` when there is
/// no usable `state`.
pub async fn healthz(State(app): State<AppState>) -> Response {
    let config = app.core.health().await;
    let usable = !config.profiles.is_empty() || config.problems.iter().all(|p| p.file != "state");
    let boot = app.core.boot();
    let mut boot_problems = Vec::new();
    if let Some(root) = &boot.tftp_root {
        let local = boot.profiles_dir.join("local.prof");
        if !boot.has_local() {
            boot_problems.push(format!(
                "{} is missing (PXE Manager requires it): local boots use a built-in LOCALBOOT 0",
                local.display()
            ));
        }
        if !root.is_dir() {
            boot_problems.push(format!("{}: the TFTP root does not exist", root.display()));
        }
    }
    let status = if !usable {
        "unavailable"
    } else if config.problems.is_empty() && config.last_error.is_none() && boot_problems.is_empty()
    {
        "ok"
    } else {
        "degraded"
    };
    let code = if usable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "config": config,
        "boot": {
            "public_url": boot.config.public_url,
            "tftp_root": boot.tftp_root.as_ref().map(|p| p.display().to_string()),
            "problems": boot_problems,
        },
        "nodes": app.core.node_count(),
        "installs_in_flight": app.core.installs_in_flight(),
    });
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_start_with_the_variables_as_a_rhai_map() {
        let var = serde_json::json!({"ip": "10.0.0.5", "n": 3, "q": "a\"b\\c\n", "l": ["x", 1.5, null, true]});
        let var = var.as_object().cloned().unwrap_or_default();
        let text = render_script("kvm", &var, "run(\"true\");\n");
        assert_eq!(
            text,
            "// profile: kvm\nlet var = #{\"ip\": \"10.0.0.5\", \"n\": 3, \"q\": \"a\\\"b\\\\c\\n\", \"l\": [\"x\", 1.5, (), true]};\nrun(\"true\");\n"
        );
    }
}
