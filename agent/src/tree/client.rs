//! The agent's HTTP client for role trees: manifests, stream parts, blobs, upgrade metadata,
//! reports (see `docs/roles.md` for the endpoints).
//!
//! Every wait has a limit, the stall time-out: connecting, the answer's head, and each read of
//! a body (the blocking client's time-out applies to each read, not to the whole body, so a
//! stream of a large tree takes as long as it takes while data keeps coming). A read that
//! waits longer fails, and [`super::fetch`] asks again for what is missing.

use std::time::Duration;

use anyhow::{Context, Result};
use rdeploy_configure::tree_wire::{Manifest, TreeReport, UpgradePaths};

/// A server's role tree endpoints.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
    /// The node's token, sent with reports.
    token: Option<String>,
    /// The longest any one wait may take (see the module's documentation).
    stall: Duration,
}

/// [`Client::new`]'s stall time-out when the caller gives none.
pub const DEFAULT_STALL: Duration = Duration::from_secs(60);

/// How long the server may take to answer with a manifest: its first request for a tree
/// hashes the whole tree (seconds for a 500 MB tree, more on a loaded server).
const MANIFEST_WAIT: Duration = Duration::from_secs(600);

/// An answer with an error status.
#[derive(Debug, thiserror::Error)]
#[error("{method} {url}: {status}: {detail}")]
pub struct HttpStatus {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The URL asked for.
    pub url: String,
    /// The status.
    pub status: reqwest::StatusCode,
    /// The server's `error: message`, or its body.
    pub detail: String,
}

impl HttpStatus {
    /// A status worth asking again for: the server or something on the way failed (5xx), or
    /// asked to come back later (429).
    pub fn is_transient(&self) -> bool {
        self.status.is_server_error() || self.status == reqwest::StatusCode::TOO_MANY_REQUESTS
    }
}

impl Client {
    /// A client of the server at `base` (`http://10.0.0.1:8080`), trusting `trust`'s
    /// certificates over HTTPS, whose waits (the answer's head, each read of a body) end
    /// after `stall` ([`DEFAULT_STALL`] when zero).
    pub fn new(base: &str, trust: &crate::tls::Trust, stall: Duration) -> Result<Client> {
        let stall = if stall.is_zero() {
            DEFAULT_STALL
        } else {
            stall
        };
        let http = trust
            .builder()
            // The blocking client applies this to each wait: a stream of a large tree takes
            // as long as it takes, a stream that stops moving fails after `stall`.
            .timeout(stall)
            .connect_timeout(stall.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(16)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
            token: None,
            stall,
        })
    }

    /// The stall time-out.
    pub fn stall(&self) -> Duration {
        self.stall
    }

    /// The same client, sending `token` (`Authorization: Bearer`) with its reports.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET, failing on an error status with the server's code and message.
    pub fn get(&self, path: &str) -> Result<reqwest::blocking::Response> {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .send()
            .with_context(|| format!("GET {url}"))?;
        check(resp, "GET", &url)
    }

    /// GET, `None` on 404.
    fn get_optional(&self, path: &str) -> Result<Option<reqwest::blocking::Response>> {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .send()
            .with_context(|| format!("GET {url}"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        check(resp, "GET", &url).map(Some)
    }

    /// The manifest of `install/<version>/<role>/`, validated.
    pub fn manifest(&self, role: &str, version: &str) -> Result<Manifest> {
        let path = format!("/roles/{role}/{version}/manifest");
        let url = self.url(&path);
        let resp = self
            .http
            .get(&url)
            .timeout(MANIFEST_WAIT.max(self.stall))
            .send()
            .with_context(|| format!("GET {url}"))?;
        let m: Manifest = check(resp, "GET", &url)?
            .json()
            .with_context(|| format!("{}{path}: not a manifest", self.base))?;
        m.validate()
            .with_context(|| format!("{}{path}: refused", self.base))?;
        Ok(m)
    }

    /// Part `part` of `parts` of the tree's contents (see `Manifest::stream_parts`).
    pub fn stream(
        &self,
        m: &Manifest,
        part: usize,
        parts: usize,
    ) -> Result<reqwest::blocking::Response> {
        self.get(&format!(
            "/roles/{}/{}/stream?manifest={}&part={part}&parts={parts}",
            m.role, m.version, m.id
        ))
    }

    /// One file's content by hash.
    pub fn blob(
        &self,
        role: &str,
        version: &str,
        sha256: &str,
    ) -> Result<reqwest::blocking::Response> {
        self.get(&format!("/roles/{role}/{version}/blob/{sha256}"))
    }

    /// The contents of several files, concatenated in the order of `hashes`.
    pub fn blobs(
        &self,
        role: &str,
        version: &str,
        hashes: &[&str],
    ) -> Result<reqwest::blocking::Response> {
        let url = self.url(&format!("/roles/{role}/{version}/blobs"));
        let resp = self
            .http
            .post(&url)
            .json(&serde_json::json!({ "sha256": hashes }))
            .send()
            .with_context(|| format!("POST {url}"))?;
        check(resp, "POST", &url)
    }

    /// Versions a host at `from` can upgrade to.
    pub fn upgrades(&self, role: &str, from: &str) -> Result<UpgradePaths> {
        let path = format!("/roles/{role}/{from}/upgrades");
        self.get(&path)?
            .json()
            .with_context(|| format!("{}{path}: not a list of upgrade paths", self.base))
    }

    /// One file of `metadata/<from>/<role>/<to>/` (`None` when it does not exist).
    pub fn metadata(
        &self,
        role: &str,
        from: &str,
        to: &str,
        file: &str,
    ) -> Result<Option<Vec<u8>>> {
        let path = format!("/roles/{role}/{from}/upgrades/{to}/{file}");
        match self.get_optional(&path)? {
            None => Ok(None),
            Some(r) => Ok(Some(
                r.bytes()
                    .with_context(|| format!("{}{path}: reading the body", self.base))?
                    .to_vec(),
            )),
        }
    }

    /// Tells the server about an install or upgrade of node `node`.
    pub fn report(&self, node: &str, report: &TreeReport) -> Result<()> {
        let url = self.url(&format!("/nodes/{node}/tree"));
        let mut req = self.http.post(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .json(report)
            .timeout(Duration::from_secs(30))
            .send()
            .with_context(|| format!("POST {url}"))?;
        check(resp, "POST", &url).map(|_| ())
    }
}

fn check(
    resp: reqwest::blocking::Response,
    method: &'static str,
    url: &str,
) -> Result<reqwest::blocking::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            Some(format!(
                "{}: {}",
                v.get("error")?.as_str()?,
                v.get("message")?.as_str()?
            ))
        })
        .unwrap_or(body);
    Err(HttpStatus {
        method,
        url: url.to_owned(),
        status,
        detail: detail.trim().to_owned(),
    }
    .into())
}
