//! The provisioning core: every decision the server makes about a machine, with no HTTP in
//! it. Handlers (`http/`) parse a request, call one method here, and render the answer;
//! tests call the same methods without a socket.
//!
//! The core owns the state modules and keeps them consistent:
//! - the config writer ([`Writer`], over `rdeploy-cmdb`'s snapshot): allocations;
//! - node records ([`Nodes`], moved by the [`lifecycle`](super::lifecycle) table);
//! - registered systems ([`Systems`]) and install slots ([`Slots`]);
//! - boot files ([`BootFiles`]): after every change of a node's or a system's next boot
//!   (or of the MACs and address its files are named after), the PXELINUX files follow,
//!   here and nowhere else — no handler has to remember them.
//!
//! Errors are [`ApiError`]s built from each module's own error type (`error.rs` maps them,
//! in one place), so a test of the core sees the same code a client would.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::matching::Matching;
use rdeploy_cmdb::snapshot::{Allocation, ConfigHealth, FailureOutcome};
use rdeploy_configure::tree_wire::TreeReport;
use rdeploy_configure::wire::ProgressEvent;
use rdeploy_specs::Inventory;

use super::boot::{parse_boot, BootFiles, BootTarget};
use super::disk::Disk;
use super::error::ApiError;
use super::identity::{normalize_mac, sanitize, Identity};
use super::lifecycle::Transition;
use super::metrics::Metrics;
use super::nodes::Nodes;
use super::record::Node;
use super::slots::Slots;
use super::systems::{System, Systems};
use super::writer::{UploadJob, WriteError, Writer};
use crate::wire::{BootChange, NodeList, QuotaReport, QuotaRow, SystemInfo, SystemList};

/// What an upload got: the allocation and the node record it now has.
#[derive(Debug)]
pub struct Upload {
    pub allocation: Allocation,
    /// The variables handed to the configure script, as a JSON object.
    pub var: serde_json::Map<String, serde_json::Value>,
    pub node: Node,
}

/// The core (see the module doc).
#[derive(Debug)]
pub struct Core {
    writer: Writer,
    matching: Matching,
    nodes: Nodes,
    systems: Systems,
    slots: Arc<Slots>,
    disk: Disk,
    data_dir: PathBuf,
    boot: BootFiles,
    pub metrics: Metrics,
}

/// The names a machine's PXELINUX files take, and what they boot: when this changes, the
/// files are rewritten.
type BootKey = (BootTarget, Vec<String>, Option<String>);

fn boot_key(node: &Node) -> BootKey {
    (node.boot.clone(), node.identity.macs.clone(), node_ip(node))
}

fn node_ip(node: &Node) -> Option<String> {
    node.var
        .as_ref()
        .and_then(|v| v.get("ip"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

impl Core {
    /// Opens the data dir (`hw/`, `nodes/`, `systems.json`) around a started writer.
    pub fn open(
        writer: Writer,
        data_dir: PathBuf,
        boot: BootFiles,
        slots: Slots,
    ) -> anyhow::Result<Core> {
        use anyhow::Context as _;
        let hw = data_dir.join("hw");
        std::fs::create_dir_all(&hw).with_context(|| format!("cannot create {}", hw.display()))?;
        let mut scratch = vec![data_dir.clone(), hw.clone(), data_dir.join("nodes")];
        scratch.extend(boot.tftp_root.as_ref().map(|t| t.join("pxelinux.cfg")));
        let removed = super::disk::remove_leftovers(&scratch);
        if removed > 0 {
            tracing::info!(
                removed,
                "removed temporary files left by an interrupted write"
            );
        }
        let disk = Disk::default();
        let slots = Arc::new(slots);
        let nodes_dir = data_dir.join("nodes");
        let nodes = Nodes::load(&nodes_dir, disk.clone(), Arc::clone(&slots))
            .with_context(|| format!("cannot read node records in {}", nodes_dir.display()))?;
        let systems = Systems::load(data_dir.join("systems.json"), disk.clone());
        Ok(Core {
            writer,
            matching: Matching::default(),
            nodes,
            systems,
            slots,
            disk,
            data_dir,
            boot,
            metrics: Metrics::default(),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn boot(&self) -> &BootFiles {
        &self.boot
    }

    // ---- reads -------------------------------------------------------------------------

    pub fn node(&self, id: &str) -> Option<Node> {
        self.nodes.get(id)
    }

    /// The node owning a MAC (any of its MACs), most recently updated first.
    pub fn node_by_mac(&self, mac: &str) -> Option<Node> {
        self.nodes.by_mac(mac)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.count()
    }

    /// How many nodes are in each state.
    pub fn count_by_state(&self) -> Vec<(rdeploy_configure::wire::NodeState, usize)> {
        self.nodes.count_by_state()
    }

    pub fn installs_in_flight(&self) -> usize {
        self.slots.in_flight()
    }

    /// `GET /nodes`.
    pub fn node_list(&self) -> NodeList {
        NodeList {
            nodes: self.nodes.all().iter().map(Node::summary).collect(),
        }
    }

    /// The config as of now (the writer looks at the files first).
    pub async fn health(&self) -> ConfigHealth {
        self.writer.refresh().await
    }

    /// The config as of the writer's last batch (no waiting).
    pub fn last_health(&self) -> ConfigHealth {
        self.writer.health()
    }

    /// `GET /quota`: each profile in `state` order with its quota, CMDB use and nodes.
    pub async fn quota(&self) -> QuotaReport {
        let health = self.health().await;
        let nodes = self.nodes.all();
        let profiles = health
            .profiles
            .iter()
            .map(|(profile, left)| {
                let cmdb = health.cmdbs.iter().find(|c| &c.profile == profile);
                QuotaRow {
                    profile: profile.clone(),
                    quota: left.clone(),
                    cmdb_used: cmdb.map(|c| c.used),
                    cmdb_total: cmdb.map(|c| c.total),
                    nodes: nodes
                        .iter()
                        .filter(|n| n.profile.as_deref() == Some(profile.as_str()))
                        .count(),
                }
            })
            .collect();
        QuotaReport { profiles }
    }

    /// `GET /systems`.
    pub async fn systems(&self) -> SystemList {
        SystemList {
            systems: self
                .systems
                .all()
                .await
                .into_iter()
                .map(|(name, s)| system_info(name, &s))
                .collect(),
        }
    }

    // ---- changes to node records -------------------------------------------------------

    /// Applies a transition to an existing node; `404 no_such_node` if there is none,
    /// `409 illegal_transition` if the life cycle refuses it. Boot files follow.
    pub async fn change(&self, id: &str, t: Transition) -> Result<Node, ApiError> {
        let before = self.nodes.get(id);
        let node = self
            .nodes
            .change(id, t)
            .await?
            .ok_or_else(|| ApiError::not_found("no_such_node", format!("no node '{id}'")))?;
        self.follow(before.as_ref(), &node).await;
        Ok(node)
    }

    /// Applies transitions to the record of `identity` (created if new), with one write.
    async fn record(&self, identity: &Identity, ts: Vec<Transition>) -> Result<Node, ApiError> {
        let before = self.nodes.get(&identity.name);
        let node = self.nodes.record_all(identity, ts).await?;
        self.follow(before.as_ref(), &node).await;
        Ok(node)
    }

    /// Rewrites a node's boot files when what they say or what they are named after changed.
    async fn follow(&self, before: Option<&Node>, after: &Node) {
        let key = boot_key(after);
        if before.map(boot_key).as_ref() == Some(&key) {
            return;
        }
        let (boot, macs, ip) = key;
        self.sync_files(BootFiles::file_names(&macs, ip.as_deref()), boot)
            .await;
    }

    /// Writes PXELINUX files off the async workers; a failure is logged, not answered (the
    /// iPXE answer does not depend on it, and `/healthz` shows the TFTP root's problems).
    async fn sync_files(&self, names: Vec<String>, target: BootTarget) {
        if self.boot.tftp_root.is_none() || names.is_empty() {
            return;
        }
        let boot = self.boot.clone();
        let result = tokio::task::spawn_blocking(move || boot.sync(&names, &target)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write PXELINUX files"),
            Err(e) => tracing::error!(error = %e, "PXELINUX writer task failed"),
        }
    }

    // ---- the agent's calls -------------------------------------------------------------

    /// An inventory upload: the re-install guard (the life cycle's table), admission,
    /// the allocation (writer thread, group commit) beside the `.hw` file (disk thread),
    /// then the node record. A refused upload is recorded too (`refused` event).
    pub async fn upload(&self, inventory: Inventory) -> Result<Upload, ApiError> {
        let identity = Identity::of(&inventory);
        tracing::Span::current().record("node", identity.name.as_str());
        self.metrics.upload();
        if let Err(illegal) = self.nodes.check(&identity, &Transition::Discovered) {
            // An installed node is only installed again when an operator asks for it
            // (`rdeploy nextboot NODE install`).
            let err = ApiError::upload_refused(illegal);
            self.metrics.refused(err.code);
            let _ = self
                .change(
                    &identity.name,
                    Transition::Alert {
                        message: "installed node uploaded its inventory again: refused (use nextboot install to reinstall)".into(),
                    },
                )
                .await;
            return Err(err);
        }
        if let Err(full) = self.slots.admit(&identity.name) {
            let err = ApiError::from(full);
            self.metrics.refused(err.code);
            return Err(err);
        }
        let holds = self.nodes.install_in_progress(&identity.name);
        let started = std::time::Instant::now();
        // The inventory file is a record, the allocation is the answer: both go to disk at
        // once, so an upload waits for the slower of the two instead of their sum.
        let hw_text = inventory.to_python();
        let (saved, result) = tokio::join!(
            self.save_hw(&identity, hw_text),
            self.allocate(Arc::new(inventory), holds)
        );
        self.metrics.allocation(started.elapsed());
        if saved.is_err() {
            // The allocation may already be committed: answering it (and recording the
            // node) keeps the entry with its machine. The error is in the log already.
            tracing::error!("inventory not saved under hw/; answering the allocation anyway");
        }
        let allocation = match result {
            Ok(a) => a,
            Err(refusal) => {
                self.slots.release(&identity.name);
                let err = ApiError::from(refusal);
                self.metrics.refused(err.code);
                let refused = Transition::Refused {
                    code: err.code.to_owned(),
                    message: err.message.clone(),
                };
                self.record(&identity, vec![Transition::Discovered, refused])
                    .await?;
                return Err(err);
            }
        };
        self.metrics.matched(&allocation.plan.profile);
        let var = match allocation.plan.vars.to_json() {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        tracing::info!(profile = %allocation.plan.profile, counted = allocation.counted, "matched");
        let matched = Transition::Matched {
            profile: allocation.plan.profile.clone(),
            var: var.clone(),
        };
        let node = self
            .record(&identity, vec![Transition::Discovered, matched])
            .await?;
        Ok(Upload {
            allocation,
            var,
            node,
        })
    }

    /// Matches an upload before its batch (off the writer thread: [`Matching`]), then has
    /// the writer allocate it. An upload whose matching spends its budget is refused
    /// without reaching the writer.
    async fn allocate(
        &self,
        inventory: Arc<Inventory>,
        holds: Option<String>,
    ) -> Result<Allocation, WriteError> {
        let prematch = self
            .matching
            .prematch(self.writer.specs(), Arc::clone(&inventory))
            .await;
        if let Some(refusal) = prematch.too_costly(&inventory) {
            return Err(WriteError::Refused(refusal));
        }
        self.writer
            .upload(UploadJob {
                inventory,
                prematch: Some(prematch),
                holds,
            })
            .await
    }

    /// Saves an inventory as `<data-dir>/hw/<name>.hw` (eDeploy's pprint form).
    async fn save_hw(&self, id: &Identity, inventory: String) -> Result<(), ApiError> {
        let dir = self.data_dir.join("hw");
        let file = format!("{}.hw", id.name);
        self.disk
            .write_atomic(dir, file, inventory)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot save the inventory");
                ApiError::from(e)
            })
    }

    /// A failure report (`failure=<profile>`, with the inventory when the agent sent it):
    /// gives one install back, and marks the node failed. A report the life cycle refuses
    /// (the node is installed) gives nothing back either.
    pub async fn report_failure(
        &self,
        profile: &str,
        inventory: Option<Inventory>,
    ) -> Result<FailureOutcome, ApiError> {
        if let Err(why) = rdeploy_cmdb::state::check_profile_name(profile) {
            return Err(ApiError::bad_request(
                "bad_profile",
                format!("failure=<profile>: the profile name {profile:?} {why}"),
            ));
        }
        let failed = inventory.map(|inventory| {
            let message = format!("failure reported for profile '{profile}'");
            (Identity::of(&inventory), Transition::Failed { message })
        });
        if let Some((identity, t)) = &failed {
            self.nodes.check(identity, t)?;
        }
        let outcome = self.writer.failure(profile.to_owned()).await?;
        if let Some((identity, t)) = failed {
            self.record(&identity, vec![t]).await?;
        }
        tracing::info!(%profile, returned = outcome == FailureOutcome::QuotaReturned, "failure reported");
        Ok(outcome)
    }

    /// An agent's progress report.
    pub async fn progress(&self, id: &str, event: ProgressEvent) -> Result<Node, ApiError> {
        self.change(id, Transition::Progress(event)).await
    }

    /// A role tree install or upgrade report.
    pub async fn tree_report(&self, id: &str, report: TreeReport) -> Result<Node, ApiError> {
        self.change(id, Transition::Tree(report)).await
    }

    /// The agent's log: `<data-dir>/nodes/<id>.log.gz` (gzipped, as eDeploy's agent sent it)
    /// or `<id>.log`. Returns the file name.
    pub async fn save_log(&self, id: &str, bytes: axum::body::Bytes) -> Result<String, ApiError> {
        if self.nodes.get(id).is_none() {
            return Err(ApiError::not_found(
                "no_such_node",
                format!("no node '{id}'"),
            ));
        }
        if bytes.is_empty() {
            return Err(ApiError::bad_request("missing_file", "the log is empty"));
        }
        let gz = bytes.starts_with(&[0x1f, 0x8b]);
        let name = if gz {
            format!("{id}.log.gz")
        } else {
            format!("{id}.log")
        };
        let len = bytes.len();
        self.disk
            .write_bytes_atomic(self.data_dir.join("nodes"), name.clone(), bytes)
            .await?;
        self.change(
            id,
            Transition::Log {
                message: format!("log received: {name} ({len} bytes)"),
            },
        )
        .await?;
        Ok(name)
    }

    // ---- boot control ------------------------------------------------------------------

    /// A boot target an operator or a seed system named: `install`, `local`, or a boot
    /// profile with a file; `404 no_such_configuration` otherwise.
    pub fn target(&self, name: &str) -> Result<BootTarget, ApiError> {
        parse_boot(name)
            .filter(|t| self.boot.knows(t))
            .ok_or_else(|| {
                ApiError::not_found(
                    "no_such_configuration",
                    format!("no boot configuration '{name}' (see GET /configurations)"),
                )
            })
    }

    /// The iPXE script of the machine with this MAC: its node's next boot, else its
    /// registered system's, else `install`. An installed node booting the network again
    /// gets `local` and an alert (the re-install loop guard).
    pub async fn boot_script(&self, mac: &str) -> String {
        let Some(node) = self.nodes.by_mac(mac) else {
            let target = self
                .systems
                .registered(mac)
                .await
                .unwrap_or(BootTarget::Install);
            return self.boot.ipxe(&target, mac);
        };
        if node.state == rdeploy_configure::wire::NodeState::Installed
            && node.boot == BootTarget::Local
        {
            let _ = self
                .change(
                    &node.id,
                    Transition::Alert {
                        message: "installed node network-booted again: answered local (use nextboot install to reinstall)".into(),
                    },
                )
                .await;
        }
        self.boot.ipxe(&node.boot, &node.id)
    }

    /// PXE Manager's `localboot`: the node boots its disk from now on (an install under way
    /// is done).
    pub async fn localboot(&self, node: &Node, why: &str) -> Result<Node, ApiError> {
        let why = why.to_owned();
        self.change(&node.id, Transition::LocalBoot { why }).await
    }

    /// The node that calls, found by its address (the IP its CMDB entry gave it; PXE
    /// Manager's way).
    pub fn caller(&self, ip: std::net::IpAddr) -> Result<Node, ApiError> {
        let ip = ip.to_string();
        self.nodes.by_ip(&ip).ok_or_else(|| {
            ApiError::not_found(
                "no_such_node",
                format!("no node was given the address {ip}"),
            )
        })
    }

    /// Sets the next boot of the machine with this MAC: its node if there is one, else the
    /// registered system holding the MAC (registered as `mac-<mac>` if none). Returns the
    /// node changed, if any.
    pub async fn set_boot_by_mac(
        &self,
        mac: &str,
        target: BootTarget,
        why: &str,
    ) -> Result<Option<Node>, ApiError> {
        let norm = normalize_mac(mac).ok_or_else(|| {
            ApiError::bad_request("bad_mac", format!("{mac:?} is not a MAC address"))
        })?;
        if let Some(node) = self.nodes.by_mac(&norm) {
            let why = why.to_owned();
            return self
                .change(&node.id, Transition::Boot { target, why })
                .await
                .map(Some);
        }
        let system = self.systems.set_boot_by_mac(&norm, target).await?;
        self.follow_system(&system).await;
        Ok(None)
    }

    /// Sets the next boot of a node (by id), a registered system (by name) or a MAC.
    pub async fn set_boot(
        &self,
        name: &str,
        target: BootTarget,
        why: &str,
    ) -> Result<BootChange, ApiError> {
        if sanitize(name).as_deref() == Some(name) {
            if self.nodes.get(name).is_some() {
                let why = why.to_owned();
                let node = self.change(name, Transition::Boot { target, why }).await?;
                return Ok(BootChange {
                    node: Some(node.id),
                    system: None,
                    mac: None,
                    boot: node.boot.to_string(),
                });
            }
            if let Some(system) = self.systems.set_boot(name, target.clone()).await? {
                self.follow_system(&system).await;
                return Ok(BootChange {
                    node: None,
                    system: Some(name.to_owned()),
                    mac: None,
                    boot: target.to_string(),
                });
            }
        }
        if let Some(mac) = normalize_mac(name) {
            let node = self.set_boot_by_mac(&mac, target.clone(), why).await?;
            return Ok(BootChange {
                node: node.map(|n| n.id),
                system: None,
                mac: Some(mac),
                boot: target.to_string(),
            });
        }
        Err(ApiError::not_found(
            "no_such_node",
            format!("'{name}' is neither a node, a registered system nor a MAC address"),
        ))
    }

    /// Registers (or re-registers) a system: a name for MACs (PXE Manager's `addsystem`).
    pub async fn add_system(&self, name: &str, macs: &[String]) -> Result<SystemInfo, ApiError> {
        if sanitize(name).as_deref() != Some(name) {
            return Err(ApiError::bad_request(
                "bad_system",
                format!("{name:?} is not a system name (letters, digits, '.', '_', '-')"),
            ));
        }
        if macs.is_empty() {
            return Err(ApiError::bad_request(
                "bad_system",
                "a system needs at least one MAC address",
            ));
        }
        let system = self.systems.add(name, macs).await?;
        self.follow_system(&system).await;
        Ok(system_info(name.to_owned(), &system))
    }

    /// A registered system's boot files follow its next boot, as a node's do (a MAC that
    /// a node owns is the node's: its files are left to it).
    async fn follow_system(&self, system: &System) {
        let macs: Vec<String> = system
            .macs
            .iter()
            .filter(|m| self.nodes.by_mac(m).is_none())
            .cloned()
            .collect();
        self.sync_files(BootFiles::file_names(&macs, None), system.boot.clone())
            .await;
    }
}

fn system_info(name: String, s: &System) -> SystemInfo {
    SystemInfo {
        name,
        macs: s.macs.clone(),
        boot: s.boot.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdeploy_configure::wire::{EventTime, NodeState, Step, StepStatus};

    fn event(step: Step, status: StepStatus) -> ProgressEvent {
        ProgressEvent {
            step,
            status,
            message: String::new(),
            time: EventTime::Unix(0),
            node: None,
            log: None,
        }
    }

    /// The whole policy of an install, called without HTTP: allocation, the life cycle,
    /// the re-install guard, and the boot files following each next boot.
    #[tokio::test]
    async fn an_install_through_the_core_alone() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let tftp = tmp.path().join("tftp");
        std::fs::create_dir_all(&tftp)?;
        let config = super::super::demo::extract(tmp.path())?;
        let snapshot = rdeploy_cmdb::Snapshot::new(rdeploy_cmdb::ConfigDir::new(config));
        let writer = Writer::start(snapshot, false)?;
        let boot = BootFiles::new(
            super::super::boot::BootConfig::new("http://10.0.0.1:8080"),
            Some(tftp.clone()),
            tmp.path(),
        );
        let slots = Slots::new(None, std::time::Duration::from_secs(3600));
        let core = Core::open(writer, tmp.path().join("data"), boot, slots)?;
        let inventory = Inventory::parse(include_str!("../../../examples/hw/kvm.json"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let up = core
            .upload(inventory.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        assert_eq!(up.allocation.plan.profile, "kvm");
        let id = up.node.id.clone();
        let mac_file = tftp.join("pxelinux.cfg").join(mac_file_of(&up.node));
        assert!(std::fs::read_to_string(&mac_file)?.contains("rdeploy.server=http://10.0.0.1:8080"));

        for (step, status) in [
            (Step::Configure, StepStatus::Started),
            (Step::InstallRole, StepStatus::Started),
            (Step::Finish, StepStatus::Succeeded),
        ] {
            core.progress(&id, event(step, status))
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        }
        let node = core.node(&id).ok_or_else(|| anyhow::anyhow!("no node"))?;
        assert_eq!(node.state, NodeState::Installed);
        assert!(std::fs::read_to_string(&mac_file)?.contains("LOCALBOOT 0"));

        // A stray event and a second upload are refused; nothing changes.
        let stray = core
            .progress(&id, event(Step::Configure, StepStatus::Started))
            .await;
        assert!(stray.is_err_and(|e| e.code == "illegal_transition"));
        let again = core.upload(inventory).await;
        assert!(again.is_err_and(|e| e.code == "already_installed"));
        assert_eq!(core.node(&id).map(|n| n.state), Some(NodeState::Installed));

        // An operator's reinstall: the boot file says install again.
        core.set_boot(&id, BootTarget::Install, "test")
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        assert!(std::fs::read_to_string(&mac_file)?.contains("rdeploy.server="));
        Ok(())
    }

    fn mac_file_of(node: &Node) -> String {
        let mac = node.identity.macs.first().cloned().unwrap_or_default();
        super::super::boot::mac_file(&normalize_mac(&mac).unwrap_or_default())
    }
}
