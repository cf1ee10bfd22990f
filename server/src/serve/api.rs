//! The agent-facing handlers: `POST /upload` (eDeploy's contract) and `GET /healthz`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rdeploy_configure::wire::UploadReply;
use rdeploy_specs::Inventory;
use serde::Deserialize;

use super::error::ApiError;
use super::identity::Identity;
use super::lifecycle::Transition;
use super::writer::UploadJob;
use super::{AppState, UPLOAD_LIMIT};
use rdeploy_cmdb::snapshot::FailureOutcome;

/// What an upload carried.
#[derive(Debug, Default)]
struct UploadForm {
    /// The inventory text (Python literal or JSON).
    file: Option<String>,
    /// `failure=<profile>`: the install of that profile failed.
    failure: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    failure: Option<String>,
}

/// `POST /upload`: multipart (`curl -F file=@hw.json [-F failure=PROFILE]`) or the
/// inventory as the raw body (`?failure=PROFILE` for a failure report).
pub async fn upload(
    State(app): State<AppState>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let wants_json = accepts_json(&headers);
    let mut form = read_form(&headers, request).await?;
    if form.failure.is_none() {
        form.failure = query.failure;
    }
    let inventory = match &form.file {
        Some(text) => Some(parse_inventory(text)?),
        None => None,
    };
    if let Some(profile) = form.failure {
        return report_failure(&app, profile, inventory, wants_json).await;
    }
    let inventory = inventory.ok_or_else(|| {
        ApiError::bad_request(
            "missing_file",
            "no inventory: send it as the multipart field `file` (curl -F file=@hw.json URL/upload) or as the request body",
        )
    })?;
    let identity = Identity::of(&inventory);
    tracing::Span::current().record("node", identity.name.as_str());
    app.metrics.upload();
    if let Err(illegal) = app.nodes.check(&identity, &Transition::Discovered) {
        // The re-install loop guard, from the life cycle's table: an installed node is only
        // installed again when an operator asks for it (`rdeploy nextboot NODE install`).
        let err = ApiError::upload_refused(illegal);
        app.metrics.refused(err.code);
        let _ = app
            .nodes
            .change(
                &identity.name,
                Transition::Alert {
                    message: "installed node uploaded its inventory again: refused (use nextboot install to reinstall)".into(),
                },
            )
            .await;
        return Err(err);
    }
    if let Err(full) = app.slots.admit(&identity.name) {
        let err = ApiError::from(full);
        app.metrics.refused(err.code);
        return Err(err);
    }
    let holds = app.nodes.install_in_progress(&identity.name);
    let started = std::time::Instant::now();
    // The inventory file is a record, the allocation is the answer: both go to disk at once,
    // so an upload waits for the slower of the two instead of their sum.
    let hw_text = inventory.to_python();
    let (saved, result) = tokio::join!(
        app.save_hw(&identity, hw_text),
        app.writer.upload(UploadJob { inventory, holds })
    );
    app.metrics.allocation(started.elapsed());
    if saved.is_err() {
        // The allocation may already be committed: answering it (and recording the node)
        // keeps the entry with its machine. The write error is in the log already.
        tracing::error!("inventory not saved under hw/; answering the allocation anyway");
    }
    let alloc = match result {
        Ok(a) => a,
        Err(refusal) => {
            app.slots.release(&identity.name);
            let err = ApiError::from(refusal);
            app.metrics.refused(err.code);
            app.nodes
                .record_all(
                    &identity,
                    vec![
                        Transition::Discovered,
                        Transition::Refused {
                            code: err.code.to_owned(),
                            message: err.message.clone(),
                        },
                    ],
                )
                .await?;
            return Err(err);
        }
    };
    app.metrics.matched(&alloc.plan.profile);
    let var = vars_object(&alloc.plan.vars.to_json());
    tracing::info!(profile = %alloc.plan.profile, counted = alloc.counted, "matched");
    let node = app
        .nodes
        .record_all(
            &identity,
            vec![
                Transition::Discovered,
                Transition::Matched {
                    profile: alloc.plan.profile.clone(),
                    var: var.clone(),
                },
            ],
        )
        .await?;
    super::boot::sync(&app, &node).await;
    if wants_json {
        return Ok(Json(UploadReply {
            profile: alloc.plan.profile,
            var,
            script: alloc.script,
            node: Some(node.id.clone()),
        })
        .into_response());
    }
    let text = render_script(&alloc.plan.profile, &var, &alloc.script);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn report_failure(
    app: &AppState,
    profile: String,
    inventory: Option<Inventory>,
    wants_json: bool,
) -> Result<Response, ApiError> {
    if let Err(why) = rdeploy_cmdb::state::check_profile_name(&profile) {
        return Err(ApiError::bad_request(
            "bad_profile",
            format!("failure=<profile>: the profile name {profile:?} {why}"),
        ));
    }
    let failed = inventory.map(|inventory| {
        let message = format!("failure reported for profile '{profile}'");
        (Identity::of(&inventory), Transition::Failed { message })
    });
    // A report the life cycle refuses (the node is installed) gives nothing back either.
    if let Some((identity, t)) = &failed {
        app.nodes.check(identity, t)?;
    }
    let outcome = app.writer.failure(profile.clone()).await?;
    if let Some((identity, t)) = failed {
        app.nodes.record(&identity, t).await?;
    }
    let returned = outcome == FailureOutcome::QuotaReturned;
    tracing::info!(%profile, returned, "failure reported");
    let message = if returned {
        format!("gave one install back to profile '{profile}'")
    } else {
        format!("profile '{profile}' unchanged (unlimited quota or not in state)")
    };
    if wants_json {
        return Ok(Json(serde_json::json!({
            "profile": profile,
            "quota_returned": returned,
            "message": message,
        }))
        .into_response());
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("// {message}\n"),
    )
        .into_response())
}

fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

async fn read_form(headers: &HeaderMap, request: Request) -> Result<UploadForm, ApiError> {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (parts, body) = request.into_parts();
    let body = read_limited(body).await?;
    if !multipart {
        if body.is_empty() {
            return Ok(UploadForm::default());
        }
        return Ok(UploadForm {
            file: Some(utf8(body, "the request body")?),
            failure: None,
        });
    }
    let request = Request::from_parts(parts, axum::body::Body::from(body));
    let mut mp = Multipart::from_request(request, &()).await.map_err(|e| {
        ApiError::bad_request("bad_multipart", format!("malformed multipart form: {e}"))
    })?;
    let mut form = UploadForm::default();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(&e)),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let data = field.bytes().await.map_err(|e| multipart_error(&e))?;
        match name.as_str() {
            "file" => form.file = Some(utf8(data, "the field `file`")?),
            "failure" => form.failure = Some(utf8(data, "the field `failure`")?.trim().to_owned()),
            // eDeploy agents also sent `session` and `name`: accepted and ignored.
            _ => {}
        }
    }
    Ok(form)
}

/// Reads at most [`UPLOAD_LIMIT`] bytes. A larger body is read on (and dropped) up to
/// [`DRAIN_LIMIT`] so the client, still sending, gets to read the `413` answer.
pub(super) async fn read_limited(mut body: axum::body::Body) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request("bad_body", format!("cannot read the request body: {e}"))
        })?;
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

fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
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

fn utf8(bytes: Bytes, what: &str) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::bad_request("bad_inventory", format!("{what} is not UTF-8 text")))
}

fn parse_inventory(text: &str) -> Result<Inventory, ApiError> {
    Inventory::parse(text).map_err(|problems| {
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

fn vars_object(v: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    }
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
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `GET /healthz`: looks at the config files now; `200` with `"status": "ok"` or
/// `"degraded"` (a file does not parse: its last good version is used), `503` when there is
/// no usable `state`.
pub async fn healthz(State(app): State<AppState>) -> Response {
    let config = app.writer.refresh().await;
    let usable = !config.profiles.is_empty() || config.problems.iter().all(|p| p.file != "state");
    let mut boot_problems = Vec::new();
    if let Some(root) = &app.boot.tftp_root {
        let local = app.boot.profiles_dir.join("local.prof");
        if !local.is_file() {
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
            "public_url": app.boot.public_url,
            "tftp_root": app.boot.tftp_root.as_ref().map(|p| p.display().to_string()),
            "problems": boot_problems,
        },
        "nodes": app.nodes.count(),
        "installs_in_flight": app.slots.in_flight(),
    });
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_start_with_the_variables_as_a_rhai_map() {
        let var = serde_json::json!({"ip": "10.0.0.5", "n": 3, "q": "a\"b\\c\n", "l": ["x", 1.5, null, true]});
        let text = render_script("kvm", &vars_object(&var), "run(\"true\");\n");
        assert_eq!(
            text,
            "// profile: kvm\nlet var = #{\"ip\": \"10.0.0.5\", \"n\": 3, \"q\": \"a\\\"b\\\\c\\n\", \"l\": [\"x\", 1.5, (), true]};\nrun(\"true\");\n"
        );
    }
}
