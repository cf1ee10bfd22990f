//! `ApiError`: every error the HTTP API answers, as a status and a JSON body
//! `{"error": CODE, "message": TEXT, "tried": [{"profile", "reason"}]}` (a refused life-cycle
//! transition adds `"node"`, `"state"`, `"transition"` and `"reason"`).
//!
//! 4xx carry a stable `error` code a script can test and a message a person can act on;
//! 5xx say little to the client and log the detail in the request's span.
//!
//! The errors of the server's own modules (node records, registered systems, install slots,
//! the disk writer, the config writer) become HTTP answers here, and only here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rdeploy_cmdb::MatchError;

use rdeploy_cmdb::Refusal;

use super::disk::DiskError;
use super::lab::LabError;
use super::lifecycle::{state_name, Illegal};
use super::nodes::NodesError;
use super::slots::SlotsError;
use super::systems::SystemsError;
use super::writer::WriteError;
use rdeploy_configure::wire::NodeState;

/// Seconds an agent is told to wait when the install limit is reached.
const INSTALL_RETRY_AFTER: u32 = 15;

/// One profile passed over, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tried {
    pub profile: String,
    pub reason: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable code (`no_match`, `bad_inventory`, ...).
    pub code: &'static str,
    pub message: String,
    pub tried: Vec<Tried>,
    /// Seconds the client should wait before retrying (`Retry-After`).
    pub retry_after: Option<u32>,
    /// More members of the body (`state`, `transition`, ...).
    pub fields: Vec<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            tried: Vec::new(),
            retry_after: None,
            fields: Vec::new(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A server-side failure: the detail goes to the log, the client gets a short message.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the detail",
        )
    }

    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// An upload the life cycle refuses: `409 already_installed` for an installed node whose
    /// next boot is not `install` (the re-install guard), else `409 illegal_transition`.
    pub fn upload_refused(illegal: Illegal) -> ApiError {
        if illegal.state != NodeState::Installed {
            return ApiError::from(illegal);
        }
        let message = format!(
            "node '{}' is installed and boots {}: an operator must ask for a reinstall (rdeploy nextboot {} install)",
            illegal.node, illegal.boot, illegal.node
        );
        let mut e = ApiError::from(illegal);
        e.code = "already_installed";
        e.message = message;
        e
    }
}

/// `409 illegal_transition`: the node, its state, the refused move and the reason are in
/// the body.
impl From<Illegal> for ApiError {
    fn from(illegal: Illegal) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::CONFLICT,
            "illegal_transition",
            illegal.to_string(),
        );
        e.fields = vec![
            ("node", illegal.node.into()),
            ("state", state_name(illegal.state).into()),
            ("transition", illegal.transition.into()),
            ("reason", illegal.why.code().into()),
        ];
        e
    }
}

/// An error and its sources, `: `-separated (for the log).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl From<NodesError> for ApiError {
    fn from(e: NodesError) -> ApiError {
        match e {
            NodesError::NoSuchNode { .. } => ApiError::not_found("no_such_node", e.to_string()),
            NodesError::Illegal(illegal) => ApiError::from(illegal),
            NodesError::Encode { .. } | NodesError::Save { .. } => ApiError::internal(chain(&e)),
        }
    }
}

impl From<SystemsError> for ApiError {
    fn from(e: SystemsError) -> ApiError {
        match e {
            SystemsError::BadMac { .. } => ApiError::bad_request("bad_mac", e.to_string()),
            SystemsError::BadAddress { .. } => ApiError::bad_request("bad_address", e.to_string()),
            SystemsError::Reserved => ApiError::bad_request("reserved_name", e.to_string()),
            SystemsError::NoSuchSystem { .. } => {
                ApiError::not_found("no_such_system", e.to_string())
            }
            SystemsError::Encode(_) | SystemsError::Save { .. } => ApiError::internal(chain(&e)),
        }
    }
}

impl From<LabError> for ApiError {
    fn from(e: LabError) -> ApiError {
        let (status, code) = match &e {
            LabError::Config { .. } => (StatusCode::CONFLICT, "bad_lab_config"),
            LabError::BadRange { .. } | LabError::NoRange { .. } => {
                (StatusCode::BAD_REQUEST, "bad_range")
            }
            LabError::Exhausted { .. } => (StatusCode::CONFLICT, "range_exhausted"),
            LabError::Taken { .. } => (StatusCode::CONFLICT, "address_taken"),
            LabError::BadIp { .. } => (StatusCode::BAD_REQUEST, "bad_address"),
            LabError::BadPattern { .. } => (StatusCode::BAD_REQUEST, "bad_name_pattern"),
            LabError::NoName { .. } => (StatusCode::CONFLICT, "no_free_name"),
            LabError::Multicast { .. } => (StatusCode::BAD_REQUEST, "bad_mac"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<SlotsError> for ApiError {
    fn from(e: SlotsError) -> ApiError {
        match e {
            SlotsError::Full { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "install_limit",
                e.to_string(),
            )
            .retry_after(INSTALL_RETRY_AFTER),
        }
    }
}

impl From<DiskError> for ApiError {
    fn from(e: DiskError) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Match(e) => match_error(&e),
            Refusal::ConfigBroken { file, error } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "config_broken",
                format!(
                    "the config dir's {file} is unusable and would have to be rewritten: {error}"
                ),
            )
            .retry_after(30),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::Refused(r) => r.into(),
            WriteError::Store(detail) => ApiError::internal(detail).retry_after(5),
            WriteError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopping",
                "the server is stopping",
            )
            .retry_after(5),
        }
    }
}

/// No match: `404 no_match` when no profile matches, `409` when a matching profile is out of
/// installs or CMDB entries (an operator must act), `503 config_broken` for a CMDB that
/// cannot be expanded, `422 too_costly` when matching spent the upload's budget.
fn match_error(e: &MatchError) -> ApiError {
    let (status, code) = match e {
        MatchError::UnableToMatch { .. } => (StatusCode::NOT_FOUND, "no_match"),
        MatchError::NoMoreRole { .. } => (StatusCode::CONFLICT, "no_more_role"),
        MatchError::Cmdb { .. } => (StatusCode::CONFLICT, "cmdb_exhausted"),
        MatchError::CmdbFile { .. } => (StatusCode::SERVICE_UNAVAILABLE, "config_broken"),
        MatchError::TooCostly { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "too_costly"),
    };
    ApiError {
        status,
        code,
        message: e.to_string(),
        tried: e
            .tried()
            .iter()
            .map(|(profile, why)| Tried {
                profile: profile.clone(),
                reason: why.to_string(),
            })
            .collect(),
        retry_after: None,
        fields: Vec::new(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::info!(status = %self.status.as_u16(), code = self.code, message = %self.message, "request refused");
        }
        let mut body: serde_json::Map<String, serde_json::Value> = self
            .fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        body.insert("error".into(), self.code.into());
        body.insert("message".into(), self.message.into());
        body.insert(
            "tried".into(),
            serde_json::to_value(&self.tried).unwrap_or_default(),
        );
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}
