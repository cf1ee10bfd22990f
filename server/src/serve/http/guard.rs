//! Around every route: the request's own size limits (checked before routing) and one
//! form for every error answer.
//!
//! - A URI over [`MAX_URI`] bytes is `414 uri_too_long`; more than [`MAX_HEADERS`] header
//!   lines or over [`MAX_HEADER_BYTES`] of them is `431 headers_too_large`. (The HTTP layer
//!   underneath has its own, larger limits, answered with a bare status line: a URI over
//!   64 KiB, a head over ~400 KiB, more than [`conn::MAX_HEAD_LINES`] lines.)
//! - An error answer that is not already the JSON of an [`ApiError`] (axum's `405` for a
//!   wrong method, a `413` from a body limit, any plain-text rejection) becomes one, with a
//!   stable code per status, keeping its `Allow` and `Retry-After` headers. The web
//!   console's HTML pages (its refusals too) keep their form.
//!
//! [`conn::MAX_HEAD_LINES`]: super::super::conn::MAX_HEAD_LINES

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::super::error::ApiError;

/// Longest request URI (path and query), in bytes.
pub const MAX_URI: usize = 8 * 1024;

/// Most header lines in a request.
pub const MAX_HEADERS: usize = 100;

/// Most bytes of header names and values in a request.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The middleware (`axum::middleware::from_fn`).
pub async fn guard(req: Request, next: Next) -> Response {
    if let Some(refused) = over_limits(&req) {
        return refused.into_response();
    }
    as_json(next.run(req).await).await
}

fn over_limits(req: &Request) -> Option<ApiError> {
    let uri = req.uri().to_string().len();
    if uri > MAX_URI {
        return Some(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the URI is {uri} bytes long; at most {MAX_URI} are accepted"),
        ));
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "{} header lines of {bytes} bytes; at most {MAX_HEADERS} lines and {MAX_HEADER_BYTES} bytes are accepted",
                headers.len()
            ),
        ));
    }
    None
}

/// The stable code of an error answer made by something else than a handler.
fn code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        404 => "no_such_endpoint",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        411 => "length_required",
        413 => "too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        416 => "bad_range",
        422 => "unprocessable",
        431 => "headers_too_large",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "refused",
    }
}

/// Whether an answer is already in its own form: JSON (the API's), or HTML (the web
/// console's pages, its refusals included, are for a browser).
fn is_json_or_page(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"))
}

/// Turns an error answer that is neither JSON nor a console page into an [`ApiError`] answer.
async fn as_json(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json_or_page(resp.headers()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase()
    } else {
        text
    };
    let mut error = ApiError::new(status, code(status), message);
    if let Some(s) = parts
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        error = error.retry_after(s);
    }
    let mut answer = error.into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    async fn call(
        router: Router,
        req: Request<Body>,
    ) -> (StatusCode, HeaderMap, serde_json::Value) {
        let resp = router.oneshot(req).await.unwrap_or_else(|e| match e {});
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    fn router() -> Router {
        Router::new()
            .route("/x", post(|| async { "ok" }))
            .route(
                "/plain",
                post(|| async { (StatusCode::BAD_REQUEST, "nope") }),
            )
            .layer(axum::middleware::from_fn(guard))
    }

    #[tokio::test]
    async fn every_error_is_json_with_a_stable_code() -> Result<(), axum::http::Error> {
        let (status, headers, body) = call(router(), Request::get("/x").body(Body::empty())?).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"], "method_not_allowed", "{body}");
        assert!(headers.get(header::ALLOW).is_some());
        let (status, _, body) = call(router(), Request::post("/plain").body(Body::empty())?).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            (body["error"].clone(), body["message"].clone()),
            ("bad_request".into(), "nope".into())
        );
        let long = format!("/x?{}", "a".repeat(MAX_URI));
        let (status, _, body) = call(router(), Request::post(long).body(Body::empty())?).await;
        assert_eq!(status, StatusCode::URI_TOO_LONG);
        assert_eq!(body["error"], "uri_too_long");
        let mut req = Request::post("/x");
        for i in 0..=MAX_HEADERS {
            req = req.header(format!("x-h{i}"), "v");
        }
        let (status, _, body) = call(router(), req.body(Body::empty())?).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(body["error"], "headers_too_large");
        let (status, _, _) = call(router(), Request::post("/x").body(Body::empty())?).await;
        assert_eq!(status, StatusCode::OK);
        Ok(())
    }
}
