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
//! - test runs (`testing`, PXE Manager's test system): which run a calling system gets,
//!   whose result an upload is.
//!
//! Errors are [`ApiError`]s built from each module's own error type (`error.rs` maps them,
//! in one place), so a test of the core sees the same code a client would.
//!
//! What the seed systems ask of a machine (PXE Manager's systems and callers, PXE Pilot's
//! deploys, OMF's boot images) is decided in [`seeds`], on the same state.

mod seeds;

pub use seeds::{HostRef, Machine};

pub mod guard;
pub mod testing;

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
use super::omf::OmfLinks;
use super::record::Node;
use super::slots::Slots;
use super::store::{Change, Sqlite, Store};
use super::systems::{System, Systems, SITE_DEFAULT};
use super::writer::{UploadJob, WriteError, Writer};
use crate::wire::{
    BootChange, DhcpHost, DhcpHosts, NodeList, QuotaReport, QuotaRow, SystemInfo, SystemList,
};

/// What an upload got: the allocation and the node record it now has.
#[derive(Debug)]
pub struct Upload {
    pub allocation: Allocation,
    /// The variables handed to the configure script, as a JSON object.
    pub var: serde_json::Map<String, serde_json::Value>,
    pub node: Node,
    /// The node's new token (its record keeps only the digest): the agent sends it back on
    /// every later call.
    pub token: String,
}

/// Which nodes `GET /nodes` lists: `?state=S&profile=P&q=TEXT&after=ID&limit=N` (`q`
/// finds text in the id, a MAC, the IP or the hostname).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct NodeFilter {
    pub state: Option<String>,
    pub profile: Option<String>,
    pub q: Option<String>,
    pub after: Option<String>,
    pub limit: Option<usize>,
}

impl NodeFilter {
    fn keeps(&self, n: &Node) -> bool {
        let state_ok = self
            .state
            .as_deref()
            .is_none_or(|s| super::lifecycle::state_name(n.state) == s);
        let profile_ok = self
            .profile
            .as_deref()
            .is_none_or(|p| n.profile.as_deref() == Some(p));
        let text_ok = self.q.as_deref().is_none_or(|q| {
            let q = q.to_lowercase();
            let var = |k: &str| {
                n.var
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_lowercase)
            };
            n.id.to_lowercase().contains(&q)
                || n.identity
                    .macs
                    .iter()
                    .any(|m| m.to_lowercase().contains(&q))
                || var("ip").is_some_and(|v| v.contains(&q))
                || var("hostname").is_some_and(|v| v.contains(&q))
        });
        state_ok && profile_ok && text_ok
    }
}

/// Machines that never matched kept at most (the oldest go first): refused uploads cannot
/// fill the store.
pub const MAX_UNMATCHED: usize = 10_000;

/// The core (see the module doc).
#[derive(Debug)]
pub struct Core {
    writer: Writer,
    matching: Matching,
    nodes: Nodes,
    systems: Systems,
    slots: Arc<Slots>,
    store: Store,
    /// Files beside the store: eDeploy's `hw/<name>.hw`, the agents' logs.
    disk: Disk,
    data_dir: PathBuf,
    boot: BootFiles,
    /// OMF's hex-IP links and when they lapse (`--omf-link-lifetime`).
    omf: OmfLinks,
    tests: testing::Tests,
    /// Every node change, for `GET /events`.
    events: super::events::Events,
    /// Which variables are secret (masked for whoever is neither the node nor an admin).
    secrets: super::access::Secrets,
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

/// The data dir's id (`<data-dir>/.rdeploy-id`, made at first start): it names this server's
/// ledger of installs under way in the config dir (`cmdb::ledger`).
pub fn data_dir_id(data_dir: &Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = data_dir.join(".rdeploy-id");
    match std::fs::read_to_string(&path) {
        Ok(text) if rdeploy_cmdb::ledger::valid_owner(text.trim()) => Ok(text.trim().to_owned()),
        Ok(text) => anyhow::bail!(
            "{}: {:?} is not a data dir id (letters, digits, '-', '_'); remove the file to make a new one",
            path.display(),
            text.trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            rdeploy_cmdb::store::write_atomic(data_dir, ".rdeploy-id", &format!("{id}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

impl Core {
    /// Opens the data dir (`hw/`, `nodes/`, `systems.json`, `testruns/`) around a started
    /// writer, and the tests dir (`--tests-dir`, created with a `wait.test` if needed).
    pub fn open(
        writer: Writer,
        data_dir: PathBuf,
        boot: BootFiles,
        slots: Slots,
        tests: &super::testing::TestsConfig,
    ) -> anyhow::Result<Core> {
        use anyhow::Context as _;
        let hw = data_dir.join("hw");
        std::fs::create_dir_all(&hw).with_context(|| format!("cannot create {}", hw.display()))?;
        let nodes_dir = data_dir.join("nodes");
        std::fs::create_dir_all(&nodes_dir)
            .with_context(|| format!("cannot create {}", nodes_dir.display()))?;
        let mut scratch = vec![data_dir.clone(), hw.clone(), nodes_dir.clone()];
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
        let backend: Box<dyn super::store::Backend> = match super::pg::database() {
            Some(db) => Box::new(db.store()?),
            None => Box::new(Sqlite::open(&data_dir)?),
        };
        let (store, loaded) = Store::open(backend)
            .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
        let nodes = Nodes::new(loaded.nodes, store.clone(), Arc::clone(&slots));
        let systems = Systems::new(loaded.systems, store.clone());
        // OMF's default: a machine with no file of its own boots its disk.
        if boot
            .ensure_default()
            .with_context(|| "cannot write pxelinux.cfg/default under the TFTP root")?
        {
            tracing::info!("wrote pxelinux.cfg/default (boot the local disk)");
        }
        let omf = OmfLinks::new(boot.omf_link_lifetime);
        let tests = testing::Tests::open(tests, &data_dir, disk.clone())?;
        Ok(Core {
            writer,
            matching: Matching::default(),
            nodes,
            systems,
            slots,
            store,
            disk,
            data_dir,
            boot,
            omf,
            tests,
            events: super::events::Events::default(),
            secrets: super::access::Secrets::default(),
            metrics: Metrics::default(),
        })
    }

    /// The same core with other secret patterns (`--secret-pattern`).
    pub fn with_secrets(mut self, secrets: super::access::Secrets) -> Core {
        self.secrets = secrets;
        self
    }

    /// Which variables are secret: the one rule every reader of a record masks by.
    pub fn secrets(&self) -> &super::access::Secrets {
        &self.secrets
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

    pub fn node_count(&self) -> usize {
        self.nodes.count()
    }

    /// The inventory a node sent last (eDeploy's Python-literal form).
    pub async fn inventory(&self, id: &str) -> Result<String, ApiError> {
        self.store
            .inventory(id)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::not_found("no_such_node", format!("no inventory from node '{id}'"))
            })
    }

    /// How many nodes are in each state.
    pub fn count_by_state(&self) -> Vec<(rdeploy_configure::wire::NodeState, usize)> {
        self.nodes.count_by_state()
    }

    /// A listener of every node change from now on (`GET /events`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<super::events::NodeChange> {
        self.events.subscribe()
    }

    pub fn installs_in_flight(&self) -> usize {
        self.slots.in_flight()
    }

    /// `GET /nodes`: the short form of the nodes `filter` keeps, in id order, a page at a
    /// time (`next` names the last one when there may be more).
    pub fn node_list(&self, filter: &NodeFilter) -> NodeList {
        let limit = filter.limit.unwrap_or(usize::MAX).max(1);
        let nodes = self
            .nodes
            .summaries(filter.after.as_deref(), limit, |n| filter.keeps(n));
        let next = (nodes.len() == limit)
            .then(|| nodes.last().map(|n| n.id.clone()))
            .flatten();
        NodeList { nodes, next }
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
        let per_profile = self.nodes.count_by_profile();
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
                    nodes: per_profile.get(profile).copied().unwrap_or(0),
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
        self.events.publish(&node);
        self.follow(before.as_ref(), &node).await;
        let installed = rdeploy_configure::wire::NodeState::Installed;
        if node.state == installed && before.is_some_and(|b| b.state != installed) {
            // The install is done: the machine no longer holds an install under way (a
            // later upload, after an operator's reinstall, counts again).
            if let Err(e) = self.writer.finish(node.id.clone()).await {
                tracing::error!(node = %node.id, error = %e, "cannot record the end of the install in the ledger");
            }
        }
        Ok(node)
    }

    /// Applies transitions to the record of `identity` (created if new), with one write.
    async fn record(&self, identity: &Identity, ts: Vec<Transition>) -> Result<Node, ApiError> {
        let before = self.nodes.get(&identity.name);
        let node = self.nodes.record_all(identity, ts).await?;
        self.events.publish(&node);
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
        let addresses: Vec<String> = ip.into_iter().collect();
        self.sync_files(BootFiles::file_names(&macs, &addresses), boot)
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
    /// then the node record. A refused upload is recorded too (`refused` event). `from`,
    /// the address the upload came from, is one the node is known by from then on.
    pub async fn upload(
        &self,
        inventory: Inventory,
        from: Option<std::net::IpAddr>,
    ) -> Result<Upload, ApiError> {
        let mut identity = Identity::of(&inventory);
        if let Some(ip) = from {
            identity.seen_from(ip);
        }
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
        let node = Some(identity.name.clone());
        let started = std::time::Instant::now();
        // The inventory file is a record, the allocation is the answer: both go to disk at
        // once, so an upload waits for the slower of the two instead of their sum.
        let hw_text = inventory.to_python();
        let (saved, result) = tokio::join!(
            self.save_hw(&identity, hw_text),
            self.allocate(Arc::new(inventory), node)
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
                // The event says why, profile by profile (what `rdeploy check` explains):
                // the console's "why didn't it match".
                let mut message = err.message.clone();
                for t in &err.tried {
                    message.push_str(&format!("\n  {}: {}", t.profile, t.reason));
                }
                let refused = Transition::Refused {
                    code: err.code.to_owned(),
                    message,
                };
                self.record(&identity, vec![Transition::Discovered, refused])
                    .await?;
                self.nodes.expire_unmatched(MAX_UNMATCHED).await;
                return Err(err);
            }
        };
        self.metrics.matched(&allocation.plan.profile);
        let var = match allocation.plan.vars.to_json() {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        tracing::info!(profile = %allocation.plan.profile, counted = allocation.counted, "matched");
        let (token, token_sha256) = super::access::new_token().map_err(ApiError::internal)?;
        let matched = Transition::Matched {
            profile: allocation.plan.profile.clone(),
            var: var.clone(),
            token_sha256: Some(token_sha256),
        };
        let node = self
            .record(&identity, vec![Transition::Discovered, matched])
            .await?;
        Ok(Upload {
            allocation,
            var,
            node,
            token,
        })
    }

    /// Matches an upload before its batch (off the writer thread: [`Matching`]), then has
    /// the writer allocate it. An upload whose matching spends its budget is refused
    /// without reaching the writer. `node` names the machine (the writer's ledger answers an
    /// install it holds again); the profile its record was last given is matched first.
    async fn allocate(
        &self,
        inventory: Arc<Inventory>,
        node: Option<String>,
    ) -> Result<Allocation, WriteError> {
        let held = node.as_deref().and_then(|n| self.nodes.profile_of(n));
        let prematch = self
            .matching
            .prematch(self.writer.specs(), Arc::clone(&inventory), held)
            .await;
        if let Some(refusal) = prematch.too_costly(&inventory) {
            return Err(WriteError::Refused(refusal));
        }
        self.writer
            .upload(UploadJob {
                inventory,
                prematch: Some(prematch),
                node,
            })
            .await
    }

    /// Saves an inventory: in the store (answered once durable), then as
    /// `<data-dir>/hw/<name>.hw` (eDeploy's pprint form, for the tools that read those) off
    /// the answer's path.
    async fn save_hw(&self, id: &Identity, inventory: String) -> Result<(), ApiError> {
        let change = Change::Inventory {
            node: id.name.clone(),
            text: inventory.clone(),
        };
        self.store.commit(change).await.map_err(|e| {
            tracing::error!(error = %e, "cannot save the inventory");
            ApiError::internal(e)
        })?;
        let dir = self.data_dir.join("hw");
        let file = format!("{}.hw", id.name);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = super::disk::write_unsynced(&dir, &file, &inventory) {
                tracing::warn!(file = %dir.join(&file).display(), error = %e, "cannot write the .hw file (the store has the inventory)");
            }
        });
        Ok(())
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
        let node = failed.as_ref().map(|(identity, _)| identity.name.clone());
        let outcome = self.writer.failure(profile.to_owned(), node).await?;
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

    /// The log a node's agent uploaded last (file name and bytes), if any: the newer of
    /// `<data-dir>/nodes/<id>.log` and `<id>.log.gz`.
    pub async fn node_log(&self, id: &str) -> Result<Option<(String, Vec<u8>)>, ApiError> {
        let dir = self.data_dir.join("nodes");
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut newest: Option<(std::time::SystemTime, String)> = None;
            for name in [format!("{id}.log"), format!("{id}.log.gz")] {
                if let Ok(m) = std::fs::metadata(dir.join(&name)).and_then(|m| m.modified()) {
                    if newest.as_ref().is_none_or(|(t, _)| m > *t) {
                        newest = Some((m, name));
                    }
                }
            }
            let Some((_, name)) = newest else {
                return Ok(None);
            };
            let path = dir.join(&name);
            std::fs::read(&path)
                .map(|b| Some((name, b)))
                .map_err(|e| ApiError::internal(format!("cannot read {}: {e}", path.display())))
        })
        .await
        .map_err(ApiError::internal)?
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
        let indexed = Change::Log {
            node: id.to_owned(),
            file: name.clone(),
            bytes: len as u64,
        };
        self.store
            .commit(indexed)
            .await
            .map_err(ApiError::internal)?;
        self.change(
            id,
            Transition::Log {
                message: format!("log received: {name} ({len} bytes)"),
            },
        )
        .await?;
        Ok(name)
    }

    /// A log eDeploy's agent posted to `upload.py` (a `file` named `<vendor>-<product>-
    /// <serial>.log.gz`): kept as `<data-dir>/logs/<name>`, the previous one of that name
    /// renamed `<name minus .log.gz>.<unix time>.log.gz` first, as eDeploy's CGI did. Returns
    /// the file name.
    pub async fn save_upload_log(
        &self,
        name: &str,
        bytes: axum::body::Bytes,
    ) -> Result<String, ApiError> {
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        let name = sanitize(base)
            .filter(|n| n.ends_with(".log.gz"))
            .ok_or_else(|| {
                ApiError::bad_request("bad_log", format!("{name:?} is not a log file name"))
            })?;
        let dir = self.data_dir.join("logs");
        let (d, n) = (dir.clone(), name.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&d)?;
            let old = d.join(&n);
            if old.exists() {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |t| t.as_secs());
                let stem = n.trim_end_matches(".log.gz");
                std::fs::rename(&old, d.join(format!("{stem}.{secs}.log.gz")))?;
            }
            Ok(())
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
        self.disk
            .write_bytes_atomic(dir, name.clone(), bytes)
            .await?;
        tracing::info!(log = %name, "eDeploy agent log saved");
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
    /// registered system's, else the site default an operator set, else `install`. An
    /// installed node booting the network again gets `local` and an alert (the re-install
    /// loop guard).
    pub async fn boot_script(&self, mac: &str) -> String {
        let Some(node) = self.nodes.by_mac(mac) else {
            let target = match self.systems.registered(mac).await {
                Some(t) => t,
                None => self
                    .systems
                    .site_default()
                    .await
                    .unwrap_or(BootTarget::Install),
            };
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

    /// Sets the next boot of a machine named by node id, registered system name, CMDB
    /// hostname, MAC or address (an unknown MAC is registered); `default` is the site
    /// default (PXE Manager's `nextboot default PROFILE`: `pxelinux.cfg/default` and the iPXE
    /// answer for machines with nothing of their own).
    pub async fn set_boot(
        &self,
        name: &str,
        target: BootTarget,
        why: &str,
    ) -> Result<BootChange, ApiError> {
        if name == SITE_DEFAULT {
            self.systems.set_site_default(target.clone()).await?;
            let boot = self.boot.clone();
            let t = target.clone();
            let written = tokio::task::spawn_blocking(move || boot.set_default(&t))
                .await
                .map_err(ApiError::internal)?;
            written.map_err(|e| {
                ApiError::internal(format!("cannot write pxelinux.cfg/default: {e}"))
            })?;
            return Ok(BootChange {
                node: None,
                system: Some(SITE_DEFAULT.to_owned()),
                mac: None,
                boot: target.to_string(),
            });
        }
        if let Some(machine) = self.find(name).await {
            let machine = self.set_machine_boot(machine, target, why).await?;
            return Ok(machine.boot_change(normalize_mac(name)));
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
            format!("'{name}' is neither a node, a registered system, a hostname, a MAC nor an address this server knows"),
        ))
    }

    /// Registers (or re-registers) a system: a name for MACs and IPv4 addresses (PXE
    /// Manager's `addsystem NAME MAC|IP...`).
    pub async fn add_system(
        &self,
        name: &str,
        macs: &[String],
        addresses: &[String],
    ) -> Result<SystemInfo, ApiError> {
        if sanitize(name).as_deref() != Some(name) {
            return Err(ApiError::bad_request(
                "bad_system",
                format!("{name:?} is not a system name (letters, digits, '.', '_', '-')"),
            ));
        }
        if macs.is_empty() && addresses.is_empty() {
            return Err(ApiError::bad_request(
                "bad_system",
                "a system needs at least one MAC or IPv4 address",
            ));
        }
        let (system, _moved) = self.systems.add(name, macs, addresses).await?;
        self.follow_system(&system).await;
        Ok(system_info(name.to_owned(), &system))
    }

    /// A lab host (`rdeploy system add [NAME] [MAC...] --ip IP | --auto`, `rdeploy vm
    /// create`): the rules of [`lab`](super::lab), decided and applied with the registered
    /// systems held still, so two requests never get the same address, name or MAC.
    pub async fn add_lab_system(&self, req: &LabRequest) -> Result<SystemInfo, ApiError> {
        use super::lab::{self, AddressRange, LabConfig, NamePattern, Taken};
        let config_dir = PathBuf::from(self.writer.health().config_dir);
        let config = LabConfig::load(&config_dir)?;
        let lab_file = config_dir.join(lab::LAB_FILE).display().to_string();
        let explicit_pattern = req.name_pattern.is_some();
        let pattern = NamePattern::parse(
            req.name_pattern
                .as_deref()
                .or(config.name_pattern.as_deref())
                .unwrap_or(lab::DEFAULT_PATTERN),
        )?;
        let mut macs = Vec::new();
        for m in &req.macs {
            let mac = normalize_mac(m).ok_or_else(|| {
                ApiError::bad_request("bad_mac", format!("{m:?} is not a MAC address"))
            })?;
            lab::check_unicast(&mac)?;
            macs.push(mac);
        }
        if let Some(name) = &req.name {
            if sanitize(name).as_deref() != Some(name.as_str()) {
                return Err(ApiError::bad_request(
                    "bad_system",
                    format!("{name:?} is not a system name (letters, digits, '.', '_', '-')"),
                ));
            }
        }
        let cmdb = self.writer.cmdb_hosts().await.map_err(ApiError::internal)?;
        let mut systems = self.systems.lock().await;
        let existing = req
            .name
            .as_deref()
            .and_then(|n| systems.all().find(|(s, _)| s.as_str() == n))
            .map(|(_, s)| s.clone());
        // What holds each address: other systems, nodes, every CMDB entry.
        let mut taken = Taken::default();
        for (name, s) in systems.all() {
            if Some(name) != req.name.as_ref() {
                for a in &s.addresses {
                    taken.add(a, format!("system {name}"));
                }
            }
        }
        for id in self.nodes.ids() {
            if let Some(ip) = self.nodes.get(&id).as_ref().and_then(node_ip) {
                taken.add(&ip, format!("node {id}"));
            }
        }
        for h in &cmdb {
            let what = h
                .hostname
                .as_deref()
                .map_or(String::new(), |n| format!(" (hostname {n})"));
            taken.add(&h.ip, format!("{}.cmdb{what}", h.profile));
        }
        let ip = match (&req.ip, req.auto) {
            (Some(ip), _) => taken.check_free(ip)?,
            (None, true) => {
                // Re-adding a lab host keeps its address.
                let kept = existing
                    .as_ref()
                    .and_then(|s| s.addresses.iter().find_map(|a| a.parse().ok()));
                match kept {
                    Some(ip) => ip,
                    None => {
                        let (text, origin) = match (&req.range, &config.range) {
                            (Some(r), _) => (r.clone(), "--range".to_owned()),
                            (None, Some(r)) => (r.clone(), lab_file.clone()),
                            (None, None) => {
                                return Err(lab::LabError::NoRange { path: lab_file }.into())
                            }
                        };
                        taken.first_free(AddressRange::parse(&text)?, &origin)?
                    }
                }
            }
            (None, false) => {
                return Err(ApiError::bad_request(
                    "bad_system",
                    "a lab host needs an address: give one (ip) or ask for a free one (auto)",
                ))
            }
        };
        let name = match &req.name {
            Some(n) => n.clone(),
            None => {
                let used =
                    |n: &str| systems.all().any(|(s, _)| s == n) || self.nodes.get(n).is_some();
                let from_dns = if explicit_pattern {
                    None
                } else {
                    reverse_name(ip).await.filter(|n| !used(n))
                };
                match from_dns {
                    Some(n) => n,
                    None => pattern.first_free(ip, used)?,
                }
            }
        };
        if macs.is_empty() {
            macs = existing.map(|s| s.macs).unwrap_or_default();
        }
        if macs.is_empty() {
            let held = |m: &str| {
                systems
                    .all()
                    .any(|(n, s)| n != &name && s.macs.iter().any(|x| x == m))
                    || self.nodes.by_mac(m).is_some()
            };
            macs.push(lab::derived_mac(&name, held));
        }
        let (system, _moved) = systems.add(&name, &macs, &[ip.to_string()]).await?;
        drop(systems);
        self.follow_system(&system).await;
        Ok(system_info(name, &system))
    }

    /// `GET /dhcp-hosts`: every machine with a MAC and an address, each MAC once. Nodes
    /// first (their CMDB `ip`; their CMDB `mac` when the entry has one, else every MAC of
    /// their inventory), then registered systems (their first full IPv4 address), then
    /// CMDB entries with a `mac` that no node holds yet.
    pub async fn dhcp_hosts(&self) -> Result<DhcpHosts, ApiError> {
        let cmdb = self.writer.cmdb_hosts().await.map_err(ApiError::internal)?;
        let mut seen = std::collections::HashSet::new();
        let mut hosts = Vec::new();
        let mut push = |name: String, macs: Vec<String>, ip: String, source: String| {
            let macs: Vec<String> = macs
                .iter()
                .filter_map(|m| normalize_mac(m))
                .filter(|m| seen.insert(m.clone()))
                .collect();
            if !macs.is_empty() && ip.parse::<std::net::Ipv4Addr>().is_ok() {
                hosts.push(DhcpHost {
                    name,
                    macs,
                    ip,
                    source,
                });
            }
        };
        let mut node_ips = std::collections::HashSet::new();
        for id in self.nodes.ids() {
            let Some(node) = self.nodes.get(&id) else {
                continue;
            };
            let Some(ip) = node_ip(&node) else { continue };
            let var = |k: &str| {
                node.var
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            let macs = var("mac").map_or_else(|| node.identity.macs.clone(), |m| vec![m]);
            let name = var("hostname").unwrap_or_else(|| id.clone());
            node_ips.insert(ip.clone());
            push(name, macs, ip, "node".to_owned());
        }
        for (name, s) in self.systems.all().await {
            if let Some(ip) = s
                .addresses
                .iter()
                .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
            {
                push(name, s.macs.clone(), ip.clone(), "system".to_owned());
            }
        }
        for h in cmdb {
            let (Some(mac), false) = (&h.mac, node_ips.contains(&h.ip)) else {
                continue;
            };
            let name = h.hostname.clone().unwrap_or_else(|| h.ip.replace('.', "-"));
            push(
                name,
                vec![mac.clone()],
                h.ip.clone(),
                format!("{}.cmdb", h.profile),
            );
        }
        Ok(DhcpHosts { hosts })
    }

    /// A registered system's boot files follow its next boot, as a node's do: `01-<mac>`
    /// and the hex-IP name of each address (a MAC that a node owns is the node's: its files
    /// are left to it).
    async fn follow_system(&self, system: &System) {
        self.sync_files(self.system_files(system), system.boot.clone())
            .await;
    }

    /// The PXELINUX names a registered system's files take.
    fn system_files(&self, system: &System) -> Vec<String> {
        let macs: Vec<String> = system
            .macs
            .iter()
            .filter(|m| self.nodes.by_mac(m).is_none())
            .cloned()
            .collect();
        BootFiles::file_names(&macs, &system.addresses)
    }
}

/// A lab host asked for (`POST /systems` with `ip` or `auto`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct LabRequest {
    /// Made from the name pattern (or the resolver's name) when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// A MAC is derived from the name when none is given.
    #[serde(default)]
    pub macs: Vec<String>,
    /// This address, which must be free.
    #[serde(default)]
    pub ip: Option<String>,
    /// The first free address of the range.
    #[serde(default)]
    pub auto: bool,
    /// Instead of `labs.toml`'s.
    #[serde(default)]
    pub range: Option<String>,
    /// Instead of `labs.toml`'s (or `lab-{n:03}`); given, it wins over the resolver.
    #[serde(default)]
    pub name_pattern: Option<String>,
}

/// What the resolver calls an address (its first label), if it knows it; at most 3 s.
async fn reverse_name(ip: std::net::Ipv4Addr) -> Option<String> {
    let lookup = tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&ip.into()));
    let fqdn = tokio::time::timeout(std::time::Duration::from_secs(3), lookup)
        .await
        .ok()?
        .ok()?
        .ok()?;
    // getnameinfo answers with the address itself when it knows no name.
    if fqdn.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    super::lab::name_from_dns(&fqdn)
}

fn system_info(name: String, s: &System) -> SystemInfo {
    SystemInfo {
        name,
        macs: s.macs.clone(),
        addresses: s.addresses.clone(),
        boot: s.boot.to_string(),
        node: None,
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
        let data = tmp.path().join("data");
        let tests = crate::serve::testing::TestsConfig::new(&data);
        let core = Core::open(writer, data, boot, slots, &tests)?;
        let inventory = Inventory::parse(include_str!("../../../examples/hw/kvm.json"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let up = core
            .upload(inventory.clone(), None)
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
        let again = core.upload(inventory, None).await;
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
