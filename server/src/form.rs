//! The body of `POST /upload` (and eDeploy's `/cgi-bin/upload.py`), once read into memory:
//! a multipart form (`file`, `failure`, eDeploy's ignored `session` and `name`, or the
//! agent's log as a `file` named `*.log.gz`) or the inventory as the raw body.
//!
//! No HTTP answer here: the handler turns a [`FormError`] into its `400`/`413`.

use axum::body::{Body, Bytes};
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;

/// What an upload carried.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UploadForm {
    /// The inventory text (Python literal or JSON).
    pub file: Option<String>,
    /// `failure=<profile>`: the install of that profile failed.
    pub failure: Option<String>,
    /// eDeploy's agents sent their log the same way, as a `file` named `*.log.gz`.
    pub log: Option<(String, Bytes)>,
}

/// Why an upload's body is not a form the server reads.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// The `Content-Type` says multipart but the form cannot be opened (no boundary...).
    #[error("malformed multipart form: {0}")]
    Rejected(#[from] MultipartRejection),
    /// A part of the form is malformed (or, with a limit on the body, too large).
    #[error("malformed multipart form: {}", .0.body_text())]
    Field(#[from] MultipartError),
    /// A text part is not UTF-8; names the part.
    #[error("{0} is not UTF-8 text")]
    NotUtf8(&'static str),
}

/// Whether a `Content-Type` is a multipart form's.
pub fn is_multipart(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|v| v.starts_with("multipart/form-data"))
}

/// Reads an upload's body (already read whole, within the upload limit): a multipart form
/// when `content_type` says so, else the body is the inventory (none when empty).
pub async fn read_upload_form(
    content_type: Option<&str>,
    body: Bytes,
) -> Result<UploadForm, FormError> {
    if !is_multipart(content_type) {
        if body.is_empty() {
            return Ok(UploadForm::default());
        }
        return Ok(UploadForm {
            file: Some(utf8(body, "the request body")?),
            ..UploadForm::default()
        });
    }
    let mut request = Request::new(Body::from(body));
    if let Some(ct) = content_type.and_then(|ct| header::HeaderValue::from_str(ct).ok()) {
        request.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    let mut mp = Multipart::from_request(request, &()).await?;
    let mut form = UploadForm::default();
    while let Some(field) = mp.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let data = field.bytes().await?;
        match name.as_str() {
            "file" if file_name.as_deref().is_some_and(|f| f.ends_with(".log.gz")) => {
                form.log = file_name.map(|f| (f, data));
            }
            "file" => form.file = Some(utf8(data, "the field `file`")?),
            "failure" => form.failure = Some(utf8(data, "the field `failure`")?.trim().to_owned()),
            // eDeploy agents also sent `session` and `name`: accepted and ignored.
            _ => {}
        }
    }
    Ok(form)
}

fn utf8(bytes: Bytes, what: &'static str) -> Result<String, FormError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| FormError::NotUtf8(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    const CT: &str = "multipart/form-data; boundary=XyZ";

    #[test]
    fn reads_the_fields_of_a_form() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hw.json\"\r\n\r\n[]\r\n--XyZ\r\nContent-Disposition: form-data; name=\"failure\"\r\n\r\n vm \r\n--XyZ\r\nContent-Disposition: form-data; name=\"session\"\r\n\r\nx\r\n--XyZ--\r\n";
        let form = block_on(read_upload_form(Some(CT), Bytes::from(body))).expect("form");
        assert_eq!(form.file.as_deref(), Some("[]"));
        assert_eq!(form.failure.as_deref(), Some("vm"));
        assert_eq!(form.log, None);
    }

    #[test]
    fn a_raw_body_is_the_inventory() {
        let form = block_on(read_upload_form(None, Bytes::from("[]"))).expect("form");
        assert_eq!(form.file.as_deref(), Some("[]"));
        let form = block_on(read_upload_form(Some("text/plain"), Bytes::new())).expect("form");
        assert_eq!(form, UploadForm::default());
        let err = block_on(read_upload_form(None, Bytes::from(vec![0xff]))).unwrap_err();
        assert!(
            matches!(err, FormError::NotUtf8("the request body")),
            "{err}"
        );
    }

    #[test]
    fn broken_forms_are_errors() {
        let no_boundary = block_on(read_upload_form(Some("multipart/form-data"), Bytes::new()));
        assert!(matches!(no_boundary, Err(FormError::Rejected(_))));
        let cut = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n[]";
        let cut = block_on(read_upload_form(Some(CT), Bytes::from(cut)));
        assert!(matches!(cut, Err(FormError::Field(_))));
    }
}
