//! Role trees over HTTP: `DATA_DIR/install/<version>/<role>/` served as a manifest, blobs by
//! hash and whole-tree streams; upgrade metadata from `DATA_DIR/metadata/<from>/<role>/<to>/`;
//! install and upgrade reports from agents; `rdeploy roles`.
//!
//! Endpoints (see `docs/roles.md`):
//! - `GET /roles`: every role and version with entries and bytes;
//! - `GET /roles/{role}/{version}/manifest`: the manifest (cached, see [`tree`]);
//! - `GET /roles/{role}/{version}/blob/{sha256}`: one file's content;
//! - `POST /roles/{role}/{version}/blobs` `{"sha256": [...]}`: several, concatenated;
//! - `GET /roles/{role}/{version}/stream?manifest=ID&part=I&parts=N`: the contents of part `I`
//!   of `Manifest::stream_parts(N)`, concatenated (a fresh install opens N of these);
//! - `GET /roles/{role}/{version}/upgrades`: versions with upgrade metadata from `version`;
//! - `GET /roles/{role}/{version}/upgrades/{to}/{file}`: `exclude`, `add_only`, `pre`, `post`;
//! - `POST /nodes/{id}/tree`: a [`TreeReport`] (install or upgrade, started or done).
//!
//! Names in URLs are checked ([`check_name`], [`is_sha256`]) before they touch a path, and a
//! symlink inside a tree is data: it is listed, never followed.

pub mod tree;

use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rdeploy_configure::tree_wire::{
    check_name, is_sha256, RoleVersion, TreeReport, UpgradePaths, MAX_PARTS,
};

use super::error::ApiError;
use super::http::extract::{check_id, Query, UrlPath};
use super::AppState;

/// Files of an upgrade's metadata directory that agents may fetch.
pub const METADATA_FILES: [&str; 4] = ["exclude", "add_only", "pre", "post"];

/// Size of the chunks a stream is sent in.
const CHUNK: usize = 256 * 1024;

/// How long a stream waits for its client to take the next chunk before it ends (the
/// client stalled or went away without the connection saying so): the thread reading the
/// tree and the chunks it holds are freed. Agents break off a transfer that receives
/// nothing for their own stall time-out (60 s by default) and ask again from there.
const SEND_STALL: std::time::Duration = std::time::Duration::from_secs(300);

fn check(kind: &'static str, name: &str) -> Result<(), ApiError> {
    if check_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "bad_name",
            format!("{kind} {name:?} is not a name (letters, digits, '.', '_', '-', '+', ':', '~'; not starting with '.')"),
        ))
    }
}

/// `DATA_DIR/install/<version>/<role>`.
pub fn tree_root(data_dir: &Path, role: &str, version: &str) -> PathBuf {
    data_dir.join("install").join(version).join(role)
}

/// Every role tree under `DATA_DIR/install/`, sorted by role then version, with entries and
/// bytes from a stat walk.
pub fn list(data_dir: &Path) -> anyhow::Result<Vec<RoleVersion>> {
    use anyhow::Context as _;
    let install = data_dir.join("install");
    let mut out = Vec::new();
    let versions = match std::fs::read_dir(&install) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", install.display())),
    };
    for v in versions {
        let v = v.with_context(|| format!("cannot read {}", install.display()))?;
        let Some(version) = v.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !check_name(&version) || !v.path().is_dir() {
            continue;
        }
        let roles = std::fs::read_dir(v.path())
            .with_context(|| format!("cannot read {}", v.path().display()))?;
        for r in roles {
            let r = r.with_context(|| format!("cannot read {}", v.path().display()))?;
            let Some(role) = r.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let is_dir = std::fs::symlink_metadata(r.path()).is_ok_and(|m| m.is_dir());
            if !check_name(&role) || !is_dir {
                continue;
            }
            let (files, bytes) = tree::count(&r.path())
                .with_context(|| format!("cannot walk {}", r.path().display()))?;
            out.push(RoleVersion {
                role,
                version: version.clone(),
                files,
                bytes,
            });
        }
    }
    out.sort_by(|a, b| (&a.role, &a.version).cmp(&(&b.role, &b.version)));
    Ok(out)
}

/// `GET /roles`.
pub async fn roles(State(app): State<AppState>) -> Result<Response, ApiError> {
    let dir = app.core.data_dir().to_owned();
    let roles = tokio::task::spawn_blocking(move || list(&dir))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    Ok(Json(serde_json::json!({ "roles": roles })).into_response())
}

async fn served(
    app: &AppState,
    role: &str,
    version: &str,
) -> Result<std::sync::Arc<tree::Served>, ApiError> {
    check("role", role)?;
    check("version", version)?;
    let root = tree_root(app.core.data_dir(), role, version);
    let (r, v) = (role.to_owned(), version.to_owned());
    tokio::task::spawn_blocking(move || tree::manifest(&root, &r, &v))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            tree::TreeError::Missing(_) => ApiError::not_found(
                "no_such_tree",
                format!("no role tree install/{version}/{role}/ on this server"),
            ),
            other => {
                ApiError::internal(format!("{other}: {:?}", std::error::Error::source(&other)))
            }
        })
}

/// `GET /roles/{role}/{version}/manifest`.
pub async fn manifest(
    State(app): State<AppState>,
    UrlPath((role, version)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let s = served(&app, &role, &version).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(s.json.clone()),
    )
        .into_response())
}

/// `GET /roles/{role}/{version}/blob/{sha256}`.
pub async fn blob(
    State(app): State<AppState>,
    UrlPath((role, version, hash)): UrlPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    check("role", &role)?;
    check("version", &version)?;
    if !is_sha256(&hash) {
        return Err(ApiError::bad_request(
            "bad_hash",
            format!("{hash:?} is not a sha256 (64 lowercase hex digits)"),
        ));
    }
    let root = tree_root(app.core.data_dir(), &role, &version);
    let s = match tree::last(&root).filter(|s| s.by_hash.contains_key(&hash)) {
        Some(s) => s,
        None => served(&app, &role, &version).await?,
    };
    let Some(&i) = s.by_hash.get(&hash) else {
        return Err(ApiError::not_found(
            "no_such_blob",
            format!("no file with sha256 {hash} in install/{version}/{role}/"),
        ));
    };
    Ok(stream_files(s, vec![i]))
}

/// The body of `POST /roles/{role}/{version}/blobs`.
#[derive(Debug, serde::Deserialize)]
pub struct BlobsRequest {
    /// Content hashes, in the order the contents are wanted.
    pub sha256: Vec<String>,
}

/// Most hashes one `blobs` request may name.
pub const MAX_BLOBS: usize = 10_000;

/// `POST /roles/{role}/{version}/blobs` with `{"sha256": [...]}`: the contents of those files,
/// concatenated in the order asked (an upgrade fetching many changed files in a few requests).
pub async fn blobs(
    State(app): State<AppState>,
    UrlPath((role, version)): UrlPath<(String, String)>,
    body: Result<Json<BlobsRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    check("role", &role)?;
    check("version", &version)?;
    let Json(req) = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "bad_blobs",
            format!(
                "a blobs request is {{\"sha256\": [HASH, ...]}}: {}",
                e.body_text()
            ),
        )
    })?;
    if req.sha256.len() > MAX_BLOBS {
        return Err(ApiError::bad_request(
            "bad_blobs",
            format!(
                "{} hashes asked for; at most {MAX_BLOBS} per request",
                req.sha256.len()
            ),
        ));
    }
    if let Some(bad) = req.sha256.iter().find(|h| !is_sha256(h)) {
        return Err(ApiError::bad_request(
            "bad_hash",
            format!("{bad:?} is not a sha256 (64 lowercase hex digits)"),
        ));
    }
    let root = tree_root(app.core.data_dir(), &role, &version);
    let has_all = |s: &tree::Served| req.sha256.iter().all(|h| s.by_hash.contains_key(h));
    let s = match tree::last(&root).filter(|s| has_all(s)) {
        Some(s) => s,
        None => served(&app, &role, &version).await?,
    };
    let mut files = Vec::with_capacity(req.sha256.len());
    for h in &req.sha256 {
        let Some(&i) = s.by_hash.get(h) else {
            return Err(ApiError::not_found(
                "no_such_blob",
                format!("no file with sha256 {h} in install/{version}/{role}/"),
            ));
        };
        files.push(i);
    }
    Ok(stream_files(s, files))
}

/// The query of a stream request.
#[derive(Debug, serde::Deserialize)]
pub struct StreamQuery {
    /// The manifest id the agent works from.
    pub manifest: String,
    /// Which part (0-based).
    #[serde(default)]
    pub part: usize,
    /// How many parts the agent splits the tree into.
    #[serde(default = "one")]
    pub parts: usize,
}

fn one() -> usize {
    1
}

/// `GET /roles/{role}/{version}/stream?manifest=ID&part=I&parts=N`.
pub async fn stream(
    State(app): State<AppState>,
    UrlPath((role, version)): UrlPath<(String, String)>,
    Query(q): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    check("role", &role)?;
    check("version", &version)?;
    if q.parts == 0 || q.parts > MAX_PARTS || q.part >= q.parts {
        return Err(ApiError::bad_request(
            "bad_part",
            format!(
                "part {} of {} parts: parts is 1 to {MAX_PARTS}, part below parts",
                q.part, q.parts
            ),
        ));
    }
    let root = tree_root(app.core.data_dir(), &role, &version);
    let s = match tree::cached(&root, &q.manifest) {
        Some(s) => s,
        None => served(&app, &role, &version).await?,
    };
    if s.manifest.id != q.manifest {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tree_changed",
            format!(
                "install/{version}/{role}/ changed since manifest {}; its manifest is now {}: fetch it again",
                q.manifest, s.manifest.id
            ),
        ));
    }
    let files = s
        .manifest
        .stream_parts(q.parts)
        .into_iter()
        .nth(q.part)
        .unwrap_or_default();
    Ok(stream_files(s, files))
}

/// A body with the contents of entries `files` in order, read on a blocking thread in
/// chunks; a file that changed since it was hashed ends the body early (the agent's hash
/// check fails and it asks again).
fn stream_files(s: std::sync::Arc<tree::Served>, files: Vec<usize>) -> Response {
    let len: u64 = files.iter().map(|&i| s.manifest.entries[i].size).sum();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        // Hands a chunk to the body; false when the client went away or took nothing for
        // SEND_STALL.
        let send = |item: Result<Bytes, std::io::Error>| {
            runtime.block_on(async {
                matches!(
                    tokio::time::timeout(SEND_STALL, tx.send(item)).await,
                    Ok(Ok(()))
                )
            })
        };
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
        for i in files {
            let path = s.path_of(i);
            let r = (|| -> std::io::Result<()> {
                let mut f = tree::open_nofollow(&path)?;
                let m = f.metadata()?;
                if !s.unchanged(i, &m) {
                    return Err(std::io::Error::other(format!(
                        "{} changed since the manifest was computed",
                        path.display()
                    )));
                }
                let mut left = s.manifest.entries[i].size;
                while left > 0 {
                    if buf.len() == CHUNK {
                        let chunk = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK));
                        if !send(Ok(Bytes::from(chunk))) {
                            return Err(std::io::Error::other(format!(
                                "the client went away or took nothing for {} s",
                                SEND_STALL.as_secs()
                            )));
                        }
                    }
                    let room = (CHUNK - buf.len()).min(usize::try_from(left).unwrap_or(CHUNK));
                    let start = buf.len();
                    buf.resize(start + room, 0);
                    let n = f.read(&mut buf[start..])?;
                    buf.truncate(start + n);
                    if n == 0 {
                        return Err(std::io::Error::other(format!(
                            "{} is shorter than the manifest says",
                            path.display()
                        )));
                    }
                    left -= n as u64;
                }
                Ok(())
            })();
            if let Err(e) = r {
                tracing::warn!(file = %path.display(), error = %e, "role tree stream ended early");
                // The body ends short either way (Content-Length): the client sees it.
                let _ = tx.try_send(Err(e));
                return;
            }
        }
        if !buf.is_empty() {
            let _ = send(Ok(Bytes::from(buf)));
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// `GET /roles/{role}/{version}/upgrades`: versions with `metadata/<version>/<role>/<to>/`.
pub async fn upgrades(
    State(app): State<AppState>,
    UrlPath((role, version)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    check("role", &role)?;
    check("version", &version)?;
    let dir = app
        .core
        .data_dir()
        .join("metadata")
        .join(&version)
        .join(&role);
    let mut to: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(r) => r
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| check_name(n))
            .collect(),
        Err(_) => Vec::new(),
    };
    to.sort();
    Ok(Json(UpgradePaths {
        role,
        from: version,
        to,
    })
    .into_response())
}

/// `GET /roles/{role}/{version}/upgrades/{to}/{file}`: one metadata file.
pub async fn upgrade_file(
    State(app): State<AppState>,
    UrlPath((role, version, to, file)): UrlPath<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    check("role", &role)?;
    check("version", &version)?;
    check("version", &to)?;
    if !METADATA_FILES.contains(&file.as_str()) {
        return Err(ApiError::bad_request(
            "bad_metadata_file",
            format!("{file:?}: upgrade metadata files are exclude, add_only, pre and post"),
        ));
    }
    let dir = app
        .core
        .data_dir()
        .join("metadata")
        .join(&version)
        .join(&role)
        .join(&to);
    if !dir.is_dir() {
        return Err(ApiError::not_found(
            "no_upgrade_path",
            format!("no metadata/{version}/{role}/{to}/: no upgrade from {version} to {to} for role {role}"),
        ));
    }
    let path = dir.join(&file);
    let bytes = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut v = Vec::new();
        tree::open_nofollow(&path)?.read_to_end(&mut v)?;
        Ok::<_, std::io::Error>(v)
    })
    .await
    .map_err(ApiError::internal)?;
    match bytes {
        Ok(b) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::not_found(
            "no_metadata_file",
            format!("metadata/{version}/{role}/{to}/{file} does not exist"),
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// `POST /nodes/{id}/tree`: an install or upgrade report; the node's role and version change
/// when it succeeded.
pub async fn report(
    State(app): State<AppState>,
    UrlPath(id): UrlPath<String>,
    crate::serve::http::extract::Cred(cred): crate::serve::http::extract::Cred,
    body: Result<Json<TreeReport>, JsonRejection>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    tracing::Span::current().record("node", id.as_str());
    app.core.authorize_node(&id, &cred)?;
    let Json(r) = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "bad_report",
            format!(
                "a tree report is {{\"action\": install|upgrade, \"status\": started|succeeded|failed, \"role\", \"version\", \"from\", \"bytes\", \"tree_bytes\", \"changes\", \"message\"}}: {}",
                e.body_text()
            ),
        )
    })?;
    check("role", &r.role)?;
    check("version", &r.version)?;
    let node = app.core.tree_report(&id, r).await?;
    Ok(Json(serde_json::json!({
        "id": node.id,
        "role": node.role,
        "version": node.version,
    }))
    .into_response())
}

/// `rdeploy roles --data-dir DIR`: prints every role tree.
pub fn roles_main(args: &crate::cli::RolesArgs) -> anyhow::Result<crate::commands::Outcome> {
    let roles = list(&args.data_dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&roles)?);
        return Ok(crate::commands::Outcome::Ok);
    }
    if roles.is_empty() {
        eprintln!(
            "no role trees under {} (layout: install/<version>/<role>/)",
            args.data_dir.join("install").display()
        );
        return Ok(crate::commands::Outcome::Ok);
    }
    println!(
        "{:<20} {:<16} {:>10} {:>14}",
        "ROLE", "VERSION", "ENTRIES", "BYTES"
    );
    for r in roles {
        println!(
            "{:<20} {:<16} {:>10} {:>14}",
            r.role, r.version, r.files, r.bytes
        );
    }
    Ok(crate::commands::Outcome::Ok)
}
