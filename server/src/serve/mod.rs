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
//! PXE Manager's test system is [`testing`] (scripts, runs, parsing, JUnit), decided in
//! `core/testing.rs` and served by `http/testing.rs` and the pages of `http/pages/`.
//!
//! The web console is `http/pages/` (`/`, `/ui/...`); [`events`] is its live feed (`GET
//! /events`), published by the core at every node change.
//! Who may do what (node tokens, the admin and read tokens, secret variables) is
//! [`access`], applied by `core/guard.rs`.
//!
//! Beside them: [`conn`] (the accept loop: connection cap, slow-client timeouts, TLS
//! handshakes), [`error`] (`ApiError`, the one error answer: every module's error becomes
//! HTTP there), [`metrics`] (`GET /metrics`), [`identity`] (eDeploy's machine names and
//! MACs), [`images`] (`--images-dir`), [`roles`] (role trees and upgrade metadata), and
//! [`demo`] (the embedded demo config dir used when no `--config-dir` is given).

pub mod access;
pub mod boot;
pub mod conn;
pub mod core;
pub mod demo;
pub mod disk;
pub mod error;
pub mod events;
pub mod http;
pub use rdeploy_server::identity;
pub mod images;
pub mod lab;
pub mod lifecycle;
pub mod markup;
pub mod matching;
pub mod metrics;
pub mod nodes;
pub mod omf;
pub mod pg;
pub mod record;
pub mod roles;
pub mod slots;
pub mod store;
pub mod systems;
pub mod testing;
pub mod tls;
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
use http::{admin, boot as boot_api, nodes as node_api, omf as omf_api, pxe_pilot, upload};
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
    /// `--read-token-file`: a bearer token for reading node details.
    pub read_token: Option<String>,
    /// Reading node details needs the read or admin token (a non-loopback listener).
    pub read_protected: bool,
}

/// The tokens and secret patterns a server runs with.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    pub admin_token: Option<String>,
    pub read_token: Option<String>,
    pub read_protected: bool,
    pub secrets: access::Secrets,
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
        access: AccessConfig,
        tests: &testing::TestsConfig,
    ) -> Result<AppState> {
        let owner = core::data_dir_id(&data_dir)?;
        let mut snapshot = Snapshot::new(ConfigDir::new(config_dir))
            .with_script_check(crate::check::script_errors);
        if let Some(db) = pg::database() {
            // Servers of one database share the mutable half of the config and the holds.
            let shared = db.shared(snapshot.dir().path())?;
            snapshot = snapshot.with_shared(Box::new(shared));
            snapshot = snapshot.with_owner(pg::OWNER).map_err(anyhow::Error::msg)?;
        } else if !baseline {
            // The eDeploy CGI model counts every upload; the server remembers installs.
            snapshot = snapshot.with_owner(&owner).map_err(anyhow::Error::msg)?;
        }
        let writer = Writer::start(snapshot, baseline).context("cannot start the writer thread")?;
        let core =
            core::Core::open(writer, data_dir, boot, slots, tests)?.with_secrets(access.secrets);
        Ok(AppState {
            inner: Arc::new(Inner {
                core,
                admin_token: access.admin_token,
                read_token: access.read_token,
                read_protected: access.read_protected,
            }),
        })
    }
}

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/upload", post(upload::upload))
        // eDeploy's agents posted to its CGI.
        .route("/cgi-bin/upload.py", post(upload::upload))
        .route("/agent", get(images::agent))
        .route("/healthz", get(upload::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/quota", get(admin::quota))
        .route("/nextboot", post(admin::nextboot))
        .route("/systems", get(admin::systems).post(admin::add_system))
        .route(
            "/systems/{key}",
            get(admin::system).delete(admin::delete_system),
        )
        .route("/boot-profiles", get(admin::boot_profiles))
        .route("/dhcp-hosts", get(admin::dhcp_hosts))
        .route("/pxe/setBootImage", get(omf_api::set))
        .route("/pxe/setBootImageNS", get(omf_api::set))
        .route("/pxe/clearBootImage", get(omf_api::clear))
        .route("/pxe/clearBootImageNS", get(omf_api::clear))
        .route("/nodes/{id}/log", post(node_api::log))
        .route("/nodes", get(node_api::list))
        .route("/nodes/{id}", get(node_api::show))
        .route("/nodes/{id}/inventory", get(node_api::inventory))
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
        // PXE Manager's URLs, with and without the trailing slash its scripts use.
        .route("/localboot", get(boot_api::localboot_caller))
        .route("/localboot/", get(boot_api::localboot_caller))
        .route("/localboot/{mac}", get(boot_api::localboot_mac))
        .route("/localboot/{mac}/", get(boot_api::localboot_mac))
        .route("/profile", get(boot_api::profile_caller))
        .route("/profile/", get(boot_api::profile_caller))
        .route("/profile/{mac}", get(boot_api::profile_mac))
        .route("/profile/{mac}/", get(boot_api::profile_mac))
        // PXE Pilot's, at its first paths and its later /v1 ones.
        .route("/configurations", get(pxe_pilot::configurations))
        .route("/v1/configurations", get(pxe_pilot::configurations))
        .route("/v1/configurations/{name}", get(pxe_pilot::configuration))
        .route("/configurations/{name}/deploy", put(pxe_pilot::deploy))
        .route("/v1/configurations/{name}/deploy", put(pxe_pilot::deploy))
        .route("/hosts", get(pxe_pilot::hosts))
        .route("/v1/hosts", get(pxe_pilot::hosts))
        .route("/healthcheck", get(pxe_pilot::healthcheck))
        .route("/v1/healthcheck", get(pxe_pilot::healthcheck))
        .route("/events", get(http::events::events))
        .merge(http::testing::routes())
        .merge(http::pages::routes())
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
    if let Some(url) = &args.database_url {
        pg::set_database(pg::Database::open(url)?)?;
    }
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
    let tls = tls_identity(args, addr)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let boot_listener = match args.boot_listen {
        Some(a) => {
            anyhow::ensure!(
                tls.is_some(),
                "--boot-listen is for a TLS server (--tls-cert or --tls-self-signed): without TLS, --listen serves the boot files already"
            );
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} (--boot-listen)"))?;
            let boot_addr = l.local_addr().context("no local address")?;
            Some((l, boot_addr))
        }
        None => None,
    };
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let mut boot = boot::BootConfig::new(&public_url);
    if let Some((_, boot_addr)) = &boot_listener {
        // Firmware and iPXE fetch their scripts, the kernel and initramfs over plain HTTP.
        boot.boot_url = format!("http://{boot_addr}");
        boot.kernel_url = format!("http://{boot_addr}/images/vmlinuz");
        boot.initrd_url = format!("http://{boot_addr}/images/initrd.img");
    }
    if let Some(k) = &args.kernel_url {
        boot.kernel_url.clone_from(k);
    }
    if let Some(i) = &args.initrd_url {
        boot.initrd_url.clone_from(i);
    }
    boot.kernel_args.clone_from(&args.kernel_args);
    boot.images_dir.clone_from(&args.images_dir);
    boot.agent_binary = match &args.agent_binary {
        Some(f) => {
            anyhow::ensure!(f.is_file(), "{}: --agent-binary is not a file", f.display());
            Some(f.clone())
        }
        None => images::agent_beside_server(),
    };
    let access = access_config(
        &TokenFiles {
            admin: args.admin_token_file.as_deref(),
            read: args.read_token_file.as_deref(),
            secret_patterns: &args.secret_patterns,
        },
        addr,
        &data_dir,
    )?;
    let mut boot = BootFiles::new(boot, args.tftp_root.clone(), &data_dir);
    boot.omf_link_lifetime = args.omf_link_lifetime;
    let slots = Slots::new(args.max_installs, args.install_timeout);
    let mut tests = testing::TestsConfig::new(&data_dir);
    if let Some(dir) = &args.tests_dir {
        tests.dir.clone_from(dir);
    }
    tests.timeout = args.test_timeout;
    let state = AppState::open(
        config_dir,
        data_dir,
        boot,
        slots,
        args.cgi_baseline,
        access,
        &tests,
    )?;
    // The tests dir as it is now (PXE Manager's `synctestnames`, done once at start).
    if let Err(e) = state.core.sync_tests().await {
        eprintln!(
            "rdeploy: the tests in {} were not read: {}",
            tests.dir.display(),
            e.message
        );
    }
    // Scripts and tests read this line to find the port when --listen ends in :0.
    println!("rdeploy: listening on {scheme}://{addr}");
    if let Some((_, boot_addr)) = &boot_listener {
        eprintln!("rdeploy: boot files (iPXE scripts, images) on http://{boot_addr}");
    }
    if args.config_dir.is_none() {
        eprintln!(
            "rdeploy: no --config-dir given: serving the demo config in {} (try: curl -F file=@examples/hw/kvm.json {scheme}://{addr}/upload)",
            args.data_dir.join("demo-config").display()
        );
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    if let Some(tick) = state.core.omf_tick() {
        // OMF's link lifetime: lapsed links are cleared (the node boots its disk).
        let core_state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                core_state.core.omf_expire(std::time::Instant::now()).await;
            }
        });
    }
    let max_connections = conn::connection_cap(nofile, args.max_connections);
    let cap = conn::Cap::new(max_connections);
    let timeouts = conn::Timeouts {
        header: args.client_timeout,
        body_stall: args.client_timeout,
        body_total: args.client_timeout * 6,
        write_stall: args.client_timeout * 6,
    };
    tracing::info!(%addr, scheme, nofile, max_connections, "serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let boot_server = boot_listener.map(|(l, _)| {
        let router = boot_app(state.clone());
        let stop = stopped();
        let cap = cap.clone();
        tokio::spawn(async move { conn::serve(l, None, router, cap, timeouts, stop).await })
    });
    tokio::spawn(async move {
        shutdown().await;
        let _ = stop_tx.send(true);
    });
    conn::serve(
        listener,
        tls.map(|id| id.config),
        app(state),
        cap,
        timeouts,
        stopped(),
    )
    .await;
    if let Some(b) = boot_server {
        b.await.context("the boot listener failed")?;
    }
    Ok(Outcome::Ok)
}

/// What `--boot-listen` serves over plain HTTP: the iPXE scripts and the images.
fn boot_app(state: AppState) -> Router {
    Router::new()
        .route("/boot.ipxe", get(boot_api::generic_ipxe))
        .route("/boot/{file}", get(boot_api::mac_ipxe))
        .route("/images/{file}", get(images::image))
        .fallback(|| async {
            ApiError::not_found(
                "no_such_endpoint",
                "this plain HTTP listener serves boot files only; the API is on the TLS listener",
            )
        })
        .with_state(state)
}

/// The TLS certificate the server runs with, if any; prints its fingerprint, and for a
/// self-signed one how to pin it.
fn tls_identity(args: &ServeArgs, addr: SocketAddr) -> Result<Option<tls::Identity>> {
    let (cert, key, made) = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), None),
        _ if args.tls_self_signed => {
            let names = tls::self_signed_names(addr, args.public_url.as_deref());
            let (c, k, made) = tls::self_signed(&args.data_dir, &names)?;
            (c, k, Some((made, names)))
        }
        _ => return Ok(None),
    };
    let id = tls::load(&cert, &key)?;
    let path = id.cert_file.display();
    match made {
        None => {
            tracing::info!(cert = %path, fingerprint = %id.fingerprint, "TLS");
        }
        Some((made, names)) => {
            let how = if made {
                format!("made now for {}", names.join(", "))
            } else {
                "kept from an earlier start; delete it and its key to make another".to_owned()
            };
            tracing::info!(cert = %path, fingerprint = %id.fingerprint, "TLS with a self-signed certificate ({how})");
            eprintln!(
                "rdeploy: TLS with the self-signed certificate {path} ({how})\n\
                 rdeploy: SHA-256 fingerprint {}\n\
                 rdeploy: pin it in the installer: rdeploy-initrd build --ca {path} ...\n\
                 rdeploy: and for the operator commands: rdeploy --ca {path} ... (or RDEPLOY_CA={path})",
                id.fingerprint
            );
        }
    }
    Ok(Some(id))
}

/// The `serve` options about access.
struct TokenFiles<'a> {
    admin: Option<&'a std::path::Path>,
    read: Option<&'a std::path::Path>,
    secret_patterns: &'a [String],
}

/// Reads a token file (trimmed, not empty).
fn read_token(f: &std::path::Path, what: &str) -> Result<String> {
    let t = std::fs::read_to_string(f)
        .with_context(|| format!("cannot read the {what} {}", f.display()))?;
    let t = t.trim().to_owned();
    anyhow::ensure!(!t.is_empty(), "{}: the {what} is empty", f.display());
    Ok(t)
}

/// The tokens the server runs with. A listener that is not a loopback address never runs
/// with open admin endpoints: without `--admin-token-file`, the token of
/// `<data-dir>/admin-token` (made at first start, mode 0600) is the admin token.
fn access_config(
    args: &TokenFiles<'_>,
    addr: SocketAddr,
    data_dir: &std::path::Path,
) -> Result<AccessConfig> {
    let exposed = !addr.ip().is_loopback();
    let admin_token = match args.admin {
        Some(f) => Some(read_token(f, "admin token")?),
        None if exposed => {
            let path = data_dir.join("admin-token");
            let token = match std::fs::read_to_string(&path) {
                Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
                _ => {
                    let (token, _) = access::new_token().map_err(anyhow::Error::msg)?;
                    write_secret(&path, &token)?;
                    token
                }
            };
            eprintln!(
                "rdeploy: listening on {addr} (not loopback) without --admin-token-file: the admin token is in {} (give it to operators: rdeploy --token-file {} ...)",
                path.display(),
                path.display()
            );
            Some(token)
        }
        None => None,
    };
    let read_token = match args.read {
        Some(f) => Some(read_token(f, "read token")?),
        None => None,
    };
    let secrets = if args.secret_patterns.is_empty() {
        access::Secrets::default()
    } else {
        access::Secrets::new(args.secret_patterns.iter().cloned())
    };
    Ok(AccessConfig {
        admin_token,
        read_protected: exposed || read_token.is_some(),
        read_token,
        secrets,
    })
}

/// Writes a secret file readable by its owner only (mode 0600 from the start).
pub(crate) fn write_secret(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    writeln!(f, "{text}")
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
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
    let tests = testing::TestsConfig::new(dir);
    AppState::open(
        config,
        dir.to_owned(),
        boot,
        slots,
        false,
        AccessConfig::default(),
        &tests,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// A listener that is not loopback, without `--admin-token-file`: the server makes a
    /// private token file and no admin endpoint, nor node details, answer without it.
    #[tokio::test]
    async fn a_non_loopback_listener_never_runs_with_open_admin_endpoints() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let files = TokenFiles {
            admin: None,
            read: None,
            secret_patterns: &[],
        };
        let addr: SocketAddr = "192.0.2.10:8080".parse()?;
        let access = access_config(&files, addr, tmp.path())?;
        let path = tmp.path().join("admin-token");
        let token = std::fs::read_to_string(&path)?.trim().to_owned();
        assert_eq!(access.admin_token.as_deref(), Some(token.as_str()));
        assert_eq!(token.len(), 64);
        assert!(access.read_protected);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        // The same token at the next start.
        let again = access_config(&files, addr, tmp.path())?;
        assert_eq!(again.admin_token, access.admin_token);
        // Loopback: nothing made, reads open.
        let local = tempfile::tempdir()?;
        let open = access_config(&files, "127.0.0.1:0".parse()?, local.path())?;
        assert!(open.admin_token.is_none() && !open.read_protected);
        assert!(!local.path().join("admin-token").exists());

        let config = demo::extract(tmp.path())?;
        let boot = BootFiles::new(
            boot::BootConfig::new("http://192.0.2.10:8080"),
            None,
            tmp.path(),
        );
        let slots = Slots::new(None, std::time::Duration::from_secs(3600));
        let tests = testing::TestsConfig::new(tmp.path());
        let state = AppState::open(
            config,
            tmp.path().join("data"),
            boot,
            slots,
            false,
            access,
            &tests,
        )?;
        let router = app(state);
        let call = |method: &str, uri: &str, token: Option<&str>, body: &str| {
            let mut req = Request::builder().method(method).uri(uri);
            if let Some(t) = token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            req.body(Body::from(body.to_owned()))
        };
        let hw = include_str!("../../../examples/hw/kvm.json");
        let resp = router
            .clone()
            .oneshot(call("POST", "/upload", None, hw)?)
            .await?;
        assert_eq!(resp.status(), axum::http::StatusCode::OK);
        let requests = [
            ("POST", "/nextboot", r#"{"name": "x", "target": "local"}"#),
            (
                "POST",
                "/systems",
                r#"{"name": "x", "macs": ["52:54:00:00:00:01"]}"#,
            ),
            ("GET", "/pxe/setBootImage?node=x", ""),
            ("PUT", "/configurations/local/deploy", r#"{"hosts": []}"#),
            ("POST", "/upload?failure=kvm", ""),
            ("GET", "/nodes", ""),
        ];
        for (method, uri, body) in requests {
            for token in [None, Some("wrong")] {
                let resp = router
                    .clone()
                    .oneshot(call(method, uri, token, body)?)
                    .await?;
                assert_eq!(
                    resp.status(),
                    axum::http::StatusCode::UNAUTHORIZED,
                    "{method} {uri}"
                );
            }
            let resp = router
                .clone()
                .oneshot(call(method, uri, Some(&token), body)?)
                .await?;
            assert_ne!(
                resp.status(),
                axum::http::StatusCode::UNAUTHORIZED,
                "{method} {uri}"
            );
        }
        Ok(())
    }

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
