//! `rdeploy serve`: the HTTP server a rollout talks to.
//!
//! A request crosses three layers (ARCHITECTURE.md says which thread runs each):
//! - [`http`]: axum handlers: parse (typed extractors), call the core, render;
//! - [`core`]: every decision about a machine (guard, admission, allocation, records,
//!   boot files), callable without HTTP;
//! - the state modules the core owns: [`writer`] (the one thread that owns the config
//!   dir's snapshot, group commit), [`nodes`] (the store of [`record`]s, moved by the
//!   [`lifecycle`] table),
//!   [`matching`] (uploads matched before the writer's turn, in a cheap and a costly
//!   lane), [`systems`] (machines registered by MAC), [`slots`] (install slots), [`boot`]
//!   (iPXE/PXELINUX rendering and the TFTP files), [`disk`] (the group-committing file
//!   writer).
//!
//! Beside them: [`conn`] (the accept loop: connection cap, slow-client timeouts),
//! [`error`] (`ApiError`, the one error answer: every module's error becomes HTTP there), [`metrics`] (`GET /metrics`), [`identity`] (eDeploy's machine names and
//! MACs), [`images`] (`--images-dir`), [`roles`] (role trees and upgrade metadata), and
//! [`demo`] (the embedded demo config dir used when no `--config-dir` is given).

pub mod boot;
pub mod conn;
pub mod core;
pub mod demo;
pub mod disk;
pub mod error;
pub mod http;
pub mod identity;
pub mod images;
pub mod lifecycle;
pub mod matching;
pub mod metrics;
pub mod nodes;
pub mod record;
pub mod roles;
pub mod slots;
pub mod systems;
pub mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::routing::{get, post, put};
use axum::Router;
use rdeploy_cmdb::{ConfigDir, Snapshot};
use tower_http::trace::TraceLayer;

use crate::cli::ServeArgs;
use crate::commands::Outcome;
use boot::BootFiles;
use error::ApiError;
use http::{admin, boot as boot_api, nodes as node_api, upload};
use slots::Slots;
use writer::Writer;

/// Largest request body accepted on agent-facing endpoints.
pub const UPLOAD_LIMIT: usize = 1024 * 1024;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub struct Inner {
    pub core: core::Core,
    /// `--admin-token-file`: the bearer token mutating operator endpoints require.
    pub admin_token: Option<String>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    /// Starts the writer over the config dir and opens the data dir around it.
    pub fn open(
        config_dir: PathBuf,
        data_dir: PathBuf,
        boot: BootFiles,
        slots: Slots,
        baseline: bool,
        admin_token: Option<String>,
    ) -> Result<AppState> {
        let snapshot = Snapshot::new(ConfigDir::new(config_dir))
            .with_script_check(crate::check::script_errors);
        let writer = Writer::start(snapshot, baseline).context("cannot start the writer thread")?;
        let core = core::Core::open(writer, data_dir, boot, slots)?;
        Ok(AppState {
            inner: Arc::new(Inner { core, admin_token }),
        })
    }
}

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/upload", post(upload::upload))
        .route("/healthz", get(upload::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/quota", get(admin::quota))
        .route("/nextboot", post(admin::nextboot))
        .route("/systems", get(admin::systems).post(admin::add_system))
        .route("/pxe/setBootImage", get(admin::omf_set))
        .route("/pxe/clearBootImage", get(admin::omf_clear))
        .route("/nodes/{id}/log", post(node_api::log))
        .route("/nodes", get(node_api::list))
        .route("/nodes/{id}", get(node_api::show))
        .route("/nodes/{id}/events", post(node_api::event))
        .route("/nodes/{id}/boot", post(boot_api::set_node_boot))
        .route("/nodes/{id}/tree", post(roles::report))
        .route("/roles", get(roles::roles))
        .route("/roles/{role}/{version}/manifest", get(roles::manifest))
        .route("/roles/{role}/{version}/blob/{sha256}", get(roles::blob))
        .route("/roles/{role}/{version}/blobs", post(roles::blobs))
        .route("/roles/{role}/{version}/stream", get(roles::stream))
        .route("/roles/{role}/{version}/upgrades", get(roles::upgrades))
        .route(
            "/roles/{role}/{version}/upgrades/{to}/{file}",
            get(roles::upgrade_file),
        )
        .route("/images/{file}", get(images::image))
        .route("/boot.ipxe", get(boot_api::generic_ipxe))
        .route("/boot/{file}", get(boot_api::mac_ipxe))
        .route("/localboot", get(boot_api::localboot_caller))
        .route("/localboot/{mac}", get(boot_api::localboot_mac))
        .route("/profile", get(boot_api::profile_caller))
        .route("/configurations", get(boot_api::configurations))
        .route("/configurations/{name}/deploy", put(boot_api::deploy))
        .fallback(|| async {
            ApiError::not_found("no_such_endpoint", "no such endpoint; see docs/http-api.md")
        })
        .layer(DefaultBodyLimit::max(UPLOAD_LIMIT))
        .layer(axum::middleware::from_fn(http::guard::guard))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    uri = %req.uri(),
                    node = tracing::field::Empty,
                )
            }),
        )
        .with_state(state)
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> Result<Outcome> {
    let nofile = conn::raise_nofile();
    let data_dir = args.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let config_dir = match &args.config_dir {
        Some(d) => {
            anyhow::ensure!(d.is_dir(), "{}: the config dir does not exist", d.display());
            d.clone()
        }
        None => demo::extract(&data_dir)?,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr: SocketAddr = listener.local_addr().context("no local address")?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let mut boot = boot::BootConfig::new(&public_url);
    if let Some(k) = &args.kernel_url {
        boot.kernel_url.clone_from(k);
    }
    if let Some(i) = &args.initrd_url {
        boot.initrd_url.clone_from(i);
    }
    boot.kernel_args.clone_from(&args.kernel_args);
    boot.images_dir.clone_from(&args.images_dir);
    let admin_token = match &args.admin_token_file {
        Some(f) => {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the admin token {}", f.display()))?;
            let t = t.trim().to_owned();
            anyhow::ensure!(!t.is_empty(), "{}: the admin token is empty", f.display());
            Some(t)
        }
        None => None,
    };
    let boot = BootFiles::new(boot, args.tftp_root.clone(), &data_dir);
    let slots = Slots::new(args.max_installs, args.install_timeout);
    let state = AppState::open(
        config_dir,
        data_dir,
        boot,
        slots,
        args.cgi_baseline,
        admin_token,
    )?;
    // Scripts and tests read this line to find the port when --listen ends in :0.
    println!("rdeploy: listening on http://{addr}");
    if args.config_dir.is_none() {
        eprintln!(
            "rdeploy: no --config-dir given: serving the demo config in {} (try: curl -F file=@examples/hw/kvm.json http://{addr}/upload)",
            args.data_dir.join("demo-config").display()
        );
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let max_connections = conn::connection_cap(nofile, args.max_connections);
    let timeouts = conn::Timeouts {
        header: args.client_timeout,
        body_stall: args.client_timeout,
        body_total: args.client_timeout * 6,
        write_stall: args.client_timeout * 6,
    };
    tracing::info!(%addr, nofile, max_connections, "serving");
    conn::serve(listener, app(state), max_connections, timeouts, shutdown()).await;
    Ok(Outcome::Ok)
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A server state over the demo config in `dir` (no TFTP root, no limits): for tests.
#[cfg(test)]
pub fn demo_state(dir: &std::path::Path, boot: boot::BootConfig) -> Result<AppState> {
    let config = demo::extract(dir)?;
    let boot = BootFiles::new(boot, None, dir);
    let slots = Slots::new(None, std::time::Duration::from_secs(3600));
    AppState::open(config, dir.to_owned(), boot, slots, false, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// The router alone, driven in process: what `app(state)` is for.
    #[tokio::test]
    async fn the_router_answers_without_a_socket() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let state = demo_state(tmp.path(), boot::BootConfig::new("http://127.0.0.1:1"))?;
        let router = app(state);
        let hw = include_str!("../../../examples/hw/kvm.json");
        let resp = router
            .clone()
            .oneshot(
                Request::post("/upload")
                    .header("Accept", "application/json")
                    .body(Body::from(hw))?,
            )
            .await?;
        assert_eq!(resp.status(), axum::http::StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), UPLOAD_LIMIT).await?;
        let reply: rdeploy_configure::wire::UploadReply = serde_json::from_slice(&body)?;
        assert_eq!(reply.profile, "kvm");
        assert_eq!(reply.var.get("hostname"), Some(&serde_json::json!("vm010")));
        assert!(reply.node.is_some_and(|id| !id.is_empty()));
        let resp = router
            .oneshot(Request::get("/nope").body(Body::empty())?)
            .await?;
        assert_eq!(resp.status(), axum::http::StatusCode::NOT_FOUND);
        Ok(())
    }
}
