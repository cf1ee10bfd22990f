//! Boot control: each machine's next boot (`install`, `local`, a named boot profile),
//! rendered as an iPXE script over HTTP and as PXELINUX files under a TFTP root, and the
//! compatibility endpoints of PXE Manager (`/localboot`, `/profile`) and PXE Pilot
//! (`/configurations`).
//!
//! An `installed` node that network-boots again gets `local` and an alert event: never a
//! silent re-install. Only an operator (`POST /nodes/{id}/boot`, PXE Pilot's deploy) sends
//! it back to `install`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::identity::normalize_mac;
use super::lifecycle::Transition;
use super::node_api::check_id;
use super::nodes::{parse_boot, BootTarget, Node, NodeState};
use super::AppState;

/// Where the install kernel lives and how machines reach the server.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// The server's URL as machines see it (`rdeploy.server=` on the kernel command line).
    pub public_url: String,
    /// Kernel and initramfs URLs for iPXE.
    pub kernel_url: String,
    pub initrd_url: String,
    /// Extra kernel arguments.
    pub kernel_args: String,
    /// The TFTP root where PXELINUX files are written, if any.
    pub tftp_root: Option<PathBuf>,
    /// Kernel and initramfs paths relative to the TFTP root, for PXELINUX.
    pub pxe_kernel: String,
    pub pxe_initrd: String,
    /// Boot profiles: `<name>.prof` (PXELINUX) and `<name>.ipxe`.
    pub profiles_dir: PathBuf,
    /// `--images-dir`: served at `/images/vmlinuz` and `/images/initrd.img` (see `images`).
    pub images_dir: Option<PathBuf>,
}

impl BootConfig {
    /// The defaults for a server reachable at `public_url`.
    pub fn new(public_url: &str, tftp_root: Option<PathBuf>, data_dir: &Path) -> BootConfig {
        let public_url = public_url.trim_end_matches('/').to_owned();
        let profiles_dir = match &tftp_root {
            Some(t) => t.join("pxelinux.cfg").join("profiles"),
            None => data_dir.join("boot-profiles"),
        };
        BootConfig {
            kernel_url: format!("{public_url}/images/vmlinuz"),
            initrd_url: format!("{public_url}/images/initrd.img"),
            kernel_args: String::new(),
            public_url,
            tftp_root,
            pxe_kernel: "rdeploy/vmlinuz".into(),
            pxe_initrd: "rdeploy/initrd.img".into(),
            profiles_dir,
            images_dir: None,
        }
    }

    fn profile_file(&self, name: &str, ext: &str) -> Option<String> {
        std::fs::read_to_string(self.profiles_dir.join(format!("{name}.{ext}"))).ok()
    }

    /// The boot profiles there are files for (names of `*.prof` and `*.ipxe`).
    pub fn profiles(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.profiles_dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let stem = name
                            .strip_suffix(".prof")
                            .or_else(|| name.strip_suffix(".ipxe"))?;
                        parse_boot(stem).map(|_| stem.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names
    }

    /// Whether a boot target can be rendered (`install`, `local`, or a profile with a file).
    pub fn knows(&self, target: &BootTarget) -> bool {
        match target {
            BootTarget::Install | BootTarget::Local => true,
            BootTarget::Profile { name } => self.profiles().iter().any(|p| p == name),
        }
    }

    /// The iPXE script for a target.
    pub fn ipxe(&self, target: &BootTarget, who: &str) -> String {
        let head = format!("#!ipxe\n# rdeploy: {who}: next boot {}\n", target);
        match target {
            // `initrd=NAME`: under UEFI, iPXE hands the initramfs to the kernel's EFI stub as a
            // file of that name (older iPXE builds, such as QEMU's, only that way); BIOS
            // kernels ignore it.
            BootTarget::Install => format!(
                "{head}kernel {} rdeploy.server={} BOOTIF=01-${{netX/mac:hexhyp}} initrd={}{}\ninitrd {}\nboot\n",
                self.kernel_url,
                self.public_url,
                url_file_name(&self.initrd_url),
                args(&self.kernel_args),
                self.initrd_url
            ),
            BootTarget::Local => format!("{head}exit\n"),
            BootTarget::Profile { name } => match self.profile_file(name, "ipxe") {
                Some(text) => text,
                None => format!("{head}echo rdeploy: no iPXE boot profile '{name}': booting the local disk\nexit\n"),
            },
        }
    }

    /// The PXELINUX file for a target.
    pub fn pxelinux(&self, target: &BootTarget) -> String {
        match target {
            BootTarget::Install => format!(
                "# rdeploy: install\nDEFAULT rdeploy\nLABEL rdeploy\n  KERNEL {}\n  APPEND initrd={} rdeploy.server={}{}\n",
                self.pxe_kernel,
                self.pxe_initrd,
                self.public_url,
                args(&self.kernel_args)
            ),
            BootTarget::Local => self
                .profile_file("local", "prof")
                .unwrap_or_else(|| "# rdeploy: local\nDEFAULT local\nLABEL local\n  LOCALBOOT 0\n".into()),
            BootTarget::Profile { name } => self
                .profile_file(name, "prof")
                .unwrap_or_else(|| format!("# rdeploy: no boot profile '{name}': local\nDEFAULT local\nLABEL local\n  LOCALBOOT 0\n")),
        }
    }

    /// Rewrites the node's PXELINUX files (`01-<mac>` per MAC, and the hex-IP name) when
    /// their content changes. Nothing without a TFTP root.
    pub fn sync_pxelinux(&self, node: &Node) -> std::io::Result<()> {
        let Some(root) = &self.tftp_root else {
            return Ok(());
        };
        let dir = root.join("pxelinux.cfg");
        std::fs::create_dir_all(&dir)?;
        let text = self.pxelinux(&node.boot);
        let mut names: Vec<String> = node
            .identity
            .macs
            .iter()
            .filter_map(|m| normalize_mac(m))
            .map(|m| format!("01-{}", m.replace(':', "-")))
            .collect();
        if let Some(ip) = node
            .var
            .as_ref()
            .and_then(|v| v.get("ip"))
            .and_then(|v| v.as_str())
        {
            if let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() {
                names.push(hex_ip(ip));
            }
        }
        for name in names {
            if std::fs::read_to_string(dir.join(&name)).ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            rdeploy_cmdb::store::write_atomic(&dir, &name, &text).map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}

/// The last path segment of a URL (`http://h/images/initrd.img?x=1` → `initrd.img`): the
/// name iPXE gives the image it fetched.
fn url_file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

fn args(extra: &str) -> String {
    if extra.is_empty() {
        String::new()
    } else {
        format!(" {extra}")
    }
}

/// PXELINUX's file name for an IPv4 address: 8 upper-case hex digits (`0A120112`).
pub fn hex_ip(ip: std::net::Ipv4Addr) -> String {
    ip.octets().iter().map(|o| format!("{o:02X}")).collect()
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Rewrites the node's PXELINUX files; a failure is logged, not answered (the iPXE
/// rendering does not depend on it).
pub async fn sync(app: &AppState, node: &Node) {
    let boot = app.boot.clone();
    let node = node.clone();
    let result = tokio::task::spawn_blocking(move || boot.sync_pxelinux(&node)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write PXELINUX files"),
        Err(e) => tracing::error!(error = %e, "PXELINUX writer task failed"),
    }
}

/// `GET /boot.ipxe`: chains to the script of the booting machine's MAC.
pub async fn generic_ipxe(State(app): State<AppState>) -> Response {
    text(format!(
        "#!ipxe\n# rdeploy: ask for this machine's next boot\nchain {}/boot/${{net0/mac}}.ipxe\n",
        app.boot.public_url
    ))
}

/// `GET /boot/{mac}.ipxe`: the machine's next boot as an iPXE script.
pub async fn mac_ipxe(
    State(app): State<AppState>,
    UrlPath(file): UrlPath<String>,
) -> Result<Response, ApiError> {
    let mac = file.strip_suffix(".ipxe").ok_or_else(|| {
        ApiError::not_found("no_such_endpoint", "boot scripts are /boot/<mac>.ipxe")
    })?;
    let norm = normalize_mac(mac)
        .ok_or_else(|| ApiError::bad_request("bad_mac", format!("{mac:?} is not a MAC address")))?;
    tracing::Span::current().record("node", norm.as_str());
    let Some(node) = app.nodes.by_mac(&norm) else {
        let target = app
            .systems
            .registered(&norm)
            .await
            .unwrap_or(BootTarget::Install);
        return Ok(text(app.boot.ipxe(&target, &norm)));
    };
    if node.state == NodeState::Installed && node.boot == BootTarget::Local {
        // The re-install loop guard: say so, once per boot, and answer local.
        let _ = app
            .nodes
            .change(
                &node.id,
                Transition::Alert {
                    message: "installed node network-booted again: answered local (use nextboot install to reinstall)".into(),
                },
            )
            .await;
    }
    Ok(text(app.boot.ipxe(&node.boot, &node.id)))
}

/// Answers in JSON when asked, else one line of text (the PXE Manager way).
fn answer(headers: &HeaderMap, node: &Node, line: String) -> Response {
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if json {
        Json(serde_json::json!({"id": node.id, "boot": node.boot.to_string(), "state": node.state}))
            .into_response()
    } else {
        text(line + "\n")
    }
}

/// Flips a node to local boot: PXE Manager's `localboot` (an install under way is done).
async fn localboot_node(app: &AppState, node: &Node, why: &str) -> Result<Node, ApiError> {
    let why = why.to_owned();
    let node = app
        .nodes
        .change(&node.id, Transition::LocalBoot { why })
        .await?
        .ok_or_else(|| ApiError::not_found("no_such_node", format!("no node '{}'", node.id)))?;
    sync(app, &node).await;
    Ok(node)
}

/// Sets the next boot of the machine with this MAC: its node if there is one, else the
/// registered system holding the MAC (registered as `mac-<mac>` if none). Returns the node
/// changed, if any.
pub async fn set_boot_by_mac(
    app: &AppState,
    mac: &str,
    target: BootTarget,
    why: &str,
) -> Result<Option<Node>, ApiError> {
    let norm = normalize_mac(mac)
        .ok_or_else(|| ApiError::bad_request("bad_mac", format!("{mac:?} is not a MAC address")))?;
    if let Some(node) = app.nodes.by_mac(&norm) {
        let why = why.to_owned();
        return Ok(app
            .nodes
            .change(&node.id, Transition::Boot { target, why })
            .await?);
    }
    app.systems.set_boot_by_mac(&norm, target).await?;
    Ok(None)
}

/// The node that calls, found by its address (the IP its CMDB entry gave it; PXE Manager's
/// way).
fn caller(app: &AppState, peer: SocketAddr) -> Result<(String, Node), ApiError> {
    let ip = peer.ip().to_string();
    match app.nodes.by_ip(&ip) {
        Some(node) => Ok((ip, node)),
        None => Err(ApiError::not_found(
            "no_such_node",
            format!("no node was given the address {ip}"),
        )),
    }
}

/// `GET /localboot`: the caller (identified by its address, the IP its CMDB entry gave it)
/// boots locally from now on.
pub async fn localboot_caller(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (ip, node) = caller(&app, peer)?;
    let node = localboot_node(&app, &node, &format!("localboot from {ip}")).await?;
    Ok(answer(
        &headers,
        &node,
        format!("{}: next boot local", node.id),
    ))
}

/// `GET /localboot/{mac}`.
pub async fn localboot_mac(
    State(app): State<AppState>,
    UrlPath(mac): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let norm = normalize_mac(&mac)
        .ok_or_else(|| ApiError::bad_request("bad_mac", format!("{mac:?} is not a MAC address")))?;
    match app.nodes.by_mac(&norm) {
        Some(node) => {
            let node = localboot_node(&app, &node, &format!("localboot for {norm}")).await?;
            Ok(answer(
                &headers,
                &node,
                format!("{}: next boot local", node.id),
            ))
        }
        None => {
            set_boot_by_mac(&app, &norm, BootTarget::Local, "localboot").await?;
            Ok(text(format!("{norm}: next boot local\n")))
        }
    }
}

/// `GET /profile`: the caller's next boot profile (`install`, `local` or a name).
pub async fn profile_caller(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, node) = caller(&app, peer)?;
    Ok(answer(&headers, &node, node.boot.to_string()))
}

/// `GET /configurations` (PXE Pilot): the boot configurations there are.
pub async fn configurations(State(app): State<AppState>) -> Response {
    let mut names = vec!["install".to_owned(), "local".to_owned()];
    names.extend(
        app.boot
            .profiles()
            .into_iter()
            .filter(|n| n != "local" && n != "install"),
    );
    let list: Vec<serde_json::Value> = names
        .into_iter()
        .map(|n| serde_json::json!({ "name": n }))
        .collect();
    Json(list).into_response()
}

#[derive(Debug, Deserialize)]
pub struct Deploy {
    hosts: Vec<DeployHost>,
}

#[derive(Debug, Deserialize)]
pub struct DeployHost {
    #[serde(rename = "macAddress")]
    mac_address: String,
}

/// `PUT /configurations/{name}/deploy` (PXE Pilot): `{"hosts": [{"macAddress": MAC}]}` boot
/// that configuration next.
pub async fn deploy(
    State(app): State<AppState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Result<Json<Deploy>, JsonRejection>,
) -> Result<Response, ApiError> {
    super::admin::require_admin(&app, &headers)?;
    let target = parse_boot(&name)
        .filter(|t| app.boot.knows(t))
        .ok_or_else(|| {
            ApiError::not_found(
                "no_such_configuration",
                format!("no boot configuration '{name}' (see GET /configurations)"),
            )
        })?;
    let Json(deploy) = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "bad_deploy",
            format!(
                "the body must be {{\"hosts\": [{{\"macAddress\": \"52:54:00:12:34:56\"}}]}}: {}",
                e.body_text()
            ),
        )
    })?;
    let mut macs = Vec::new();
    for h in &deploy.hosts {
        let m = normalize_mac(&h.mac_address).ok_or_else(|| {
            ApiError::bad_request(
                "bad_mac",
                format!("{:?} is not a MAC address", h.mac_address),
            )
        })?;
        macs.push(m);
    }
    let mut hosts = Vec::new();
    for mac in macs {
        let node = set_boot_by_mac(
            &app,
            &mac,
            target.clone(),
            &format!("PXE Pilot deploy {name}"),
        )
        .await?;
        if let Some(n) = &node {
            sync(&app, n).await;
        }
        hosts.push(serde_json::json!({
            "macAddress": mac,
            "node": node.as_ref().map(|n| n.id.clone()),
            "configuration": target.to_string(),
        }));
    }
    Ok(Json(serde_json::json!({ "hosts": hosts })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct SetBoot {
    target: String,
}

/// `POST /nodes/{id}/boot` `{"target": "install" | "local" | PROFILE}`: the operator's
/// `nextboot`/`reinstall`.
pub async fn set_node_boot(
    State(app): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Result<Json<SetBoot>, JsonRejection>,
) -> Result<Response, ApiError> {
    super::admin::require_admin(&app, &headers)?;
    check_id(&id)?;
    let Json(req) = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "bad_boot",
            format!(
                "the body must be {{\"target\": \"install\"}}: {}",
                e.body_text()
            ),
        )
    })?;
    let target = parse_boot(&req.target)
        .filter(|t| app.boot.knows(t))
        .ok_or_else(|| {
            ApiError::not_found(
                "no_such_configuration",
                format!("no boot configuration '{}'", req.target),
            )
        })?;
    let node = app
        .nodes
        .change(
            &id,
            Transition::Boot {
                target,
                why: "operator".into(),
            },
        )
        .await?
        .ok_or_else(|| ApiError::not_found("no_such_node", format!("no node '{id}'")))?;
    sync(&app, &node).await;
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({"id": node.id, "boot": node.boot.to_string()})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_target() {
        let b = BootConfig::new("http://10.0.0.1:8080/", None, Path::new("/nonexistent"));
        let install = b.ipxe(&BootTarget::Install, "n1");
        assert!(install.starts_with("#!ipxe\n"), "{install}");
        assert!(
            install.contains(
                "kernel http://10.0.0.1:8080/images/vmlinuz rdeploy.server=http://10.0.0.1:8080 "
            ),
            "{install}"
        );
        assert!(
            install.contains(" initrd=initrd.img\ninitrd http://10.0.0.1:8080/images/initrd.img\n"),
            "{install}"
        );
        assert_eq!(url_file_name("http://h/a/initrd-5.img?v=2"), "initrd-5.img");
        assert!(b.ipxe(&BootTarget::Local, "n1").ends_with("exit\n"));
        assert!(b.pxelinux(&BootTarget::Local).contains("LOCALBOOT 0"));
        assert!(b
            .pxelinux(&BootTarget::Install)
            .contains("APPEND initrd=rdeploy/initrd.img rdeploy.server=http://10.0.0.1:8080\n"));
        assert_eq!(
            hex_ip(
                "10.18.1.18"
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST)
            ),
            "0A120112"
        );
    }
}
