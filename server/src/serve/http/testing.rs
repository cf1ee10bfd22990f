//! PXE Manager's test endpoints: a system asks for its next test (`GET /nexttest/`, or
//! `/nexttest/<mac>/`) and uploads the output (`POST /upload/`, `/upload/<testid>/`, with
//! the slash: `POST /upload` is eDeploy's inventory upload); operators list and queue tests
//! (`/testnames`, `/testruns`). Every URL answers with and without its trailing slash.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::super::core::testing::{summary, Caller};
use super::super::error::ApiError;
use super::super::testing::run::RunId;
use super::super::AppState;
use super::extract::{Admin, Body, Mac, Shape};
use super::{accepts_json, text};

/// Largest test output accepted (`POST /upload/`).
pub const OUTPUT_LIMIT: usize = 16 * 1024 * 1024;

/// `GET /nexttest/`: the caller (found by its address) gets its next test script.
pub async fn next_by_address(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    next(&app, Caller::Address(peer.ip())).await
}

/// `GET /nexttest/<mac>/`.
pub async fn next_by_mac(State(app): State<AppState>, Mac(mac): Mac) -> Result<Response, ApiError> {
    next(&app, Caller::Mac(mac)).await
}

async fn next(app: &AppState, caller: Caller) -> Result<Response, ApiError> {
    let next = app.core.next_test(caller).await?;
    let mut resp = text(next.script);
    if let Some(run) = next.run {
        let h = resp.headers_mut();
        h.insert("x-rdeploy-test-id", HeaderValue::from(run.id));
        if let Ok(v) = HeaderValue::from_str(&run.test) {
            h.insert("x-rdeploy-test", v);
        }
    }
    Ok(resp)
}

/// `POST /upload/`: the output of the caller's running test.
pub async fn upload_for_caller(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    upload(&app, None, peer, &headers, request).await
}

/// `POST /upload/<testid>/`.
pub async fn upload_for_run(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let id: RunId = id.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_run_id",
            format!("{id:?} is not a test id (a number: /upload/<testid>/)"),
        )
    })?;
    upload(&app, Some(id), peer, &headers, request).await
}

async fn upload(
    app: &AppState,
    id: Option<RunId>,
    peer: SocketAddr,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let (output, exit) = read_output(headers, request).await?;
    let run = app.core.test_result(id, peer.ip(), output, exit).await?;
    if accepts_json(headers) {
        return Ok(Json(summary(&run)).into_response());
    }
    Ok(text(format!(
        "uploaded: test run {} ({} on {}): {} errors, {} warnings, {} infos\n",
        run.id, run.test, run.system, run.counts.errors, run.counts.warnings, run.counts.infos
    )))
}

/// The output: the multipart field `file` (and an optional `exit`), or the raw body.
async fn read_output(
    headers: &HeaderMap,
    request: Request,
) -> Result<(Vec<u8>, Option<i32>), ApiError> {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, OUTPUT_LIMIT)
        .await
        .map_err(|_| too_large())?;
    if !multipart {
        if body.is_empty() {
            return Err(missing_file());
        }
        return Ok((body.to_vec(), None));
    }
    let request = Request::from_parts(parts, axum::body::Body::from(body));
    let mut mp = Multipart::from_request(request, &()).await.map_err(|e| {
        ApiError::bad_request("bad_multipart", format!("malformed multipart form: {e}"))
    })?;
    let mut file: Option<Bytes> = None;
    let mut exit = None;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(super::upload::multipart_error(&e)),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let data = field
            .bytes()
            .await
            .map_err(|e| super::upload::multipart_error(&e))?;
        match name.as_str() {
            "file" => file = Some(data),
            "exit" => {
                let t = String::from_utf8_lossy(&data).trim().to_owned();
                exit = Some(t.parse::<i32>().map_err(|_| {
                    ApiError::bad_request(
                        "bad_exit",
                        format!("the field `exit` must be the script's exit status (a number), not {t:?}"),
                    )
                })?);
            }
            _ => {}
        }
    }
    let file = file.ok_or_else(missing_file)?;
    Ok((file.to_vec(), exit))
}

fn missing_file() -> ApiError {
    ApiError::bad_request(
        "missing_file",
        "no output: send it as the multipart field `file` (curl -F \"file=@$output\" URL/upload/<testid>/)",
    )
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("a test output is at most {OUTPUT_LIMIT} bytes"),
    )
}

/// `GET /testnames`: the tests known (`dpytest -l`).
pub async fn names(State(app): State<AppState>) -> Response {
    Json(app.core.test_names().await).into_response()
}

/// `POST /testnames/sync`: learn the tests of the tests dir (`synctestnames`).
pub async fn sync(State(app): State<AppState>, _admin: Admin) -> Result<Response, ApiError> {
    Ok(Json(app.core.sync_tests().await?).into_response())
}

#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    system: Option<String>,
}

/// `GET /testruns[?system=NAME]`: runs, oldest first (`dpytest SYSTEM`).
pub async fn runs(
    State(app): State<AppState>,
    Query(q): Query<RunsQuery>,
) -> Result<Response, ApiError> {
    let system = q.system.filter(|s| !s.is_empty());
    Ok(Json(app.core.test_runs(system.as_deref()).await?).into_response())
}

/// The `nexttest` body.
#[derive(Debug, Deserialize)]
pub struct Queue {
    system: String,
    tests: Vec<String>,
}

impl Shape for Queue {
    const CODE: &'static str = "bad_queue";
    const EXAMPLE: &'static str = r#"{"system": "rack1-u12", "tests": ["burnin", "hello"]}"#;
}

/// `POST /testruns` `{"system": NAME, "tests": [TEST...]}`: queue tests (`nexttest`).
pub async fn queue(
    State(app): State<AppState>,
    _admin: Admin,
    Body(q): Body<Queue>,
) -> Result<Response, ApiError> {
    let runs = app.core.queue_tests(&q.system, &q.tests).await?;
    let runs: Vec<_> = runs.iter().map(summary).collect();
    Ok((StatusCode::CREATED, Json(runs)).into_response())
}

/// `GET /testruns/{id}`: one run, with its parsed lines.
pub async fn run(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(app.core.test_run(id).await?).into_response())
}

/// A run id from the URL.
pub fn parse_id(id: &str) -> Result<RunId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request("bad_run_id", format!("{id:?} is not a test run id")))
}

/// The routes of the test system: the systems' calls, the operators' JSON, and the pages.
pub fn routes() -> axum::Router<AppState> {
    use super::pages;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post};
    let limit = || DefaultBodyLimit::max(OUTPUT_LIMIT);
    axum::Router::new()
        .route("/nexttest", get(next_by_address))
        .route("/nexttest/", get(next_by_address))
        .route("/nexttest/{mac}", get(next_by_mac))
        .route("/nexttest/{mac}/", get(next_by_mac))
        .route("/upload/", post(upload_for_caller).layer(limit()))
        .route("/upload/{id}", post(upload_for_run).layer(limit()))
        .route("/upload/{id}/", post(upload_for_run).layer(limit()))
        .route("/testnames", get(names))
        .route("/testnames/sync", post(sync))
        .route("/testruns", get(runs).post(queue))
        .route("/testruns/{id}", get(run))
        .route("/tests", get(pages::tests::index))
        .route("/tests/", get(pages::tests::index))
        .route("/tests/systems/{name}", get(pages::tests::system))
        .route("/tests/runs/{id}", get(pages::tests::run))
        .route("/tests/runs/{id}/raw", get(pages::tests::raw))
        .route("/tests/results.xml", get(pages::tests::results_xml))
}
