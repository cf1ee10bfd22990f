//! Node records: one JSON file per machine under `<data-dir>/nodes/<id>.json`, written
//! atomically (temp file, fsync, rename), loaded back at start.
//!
//! A record holds the machine's identity (MACs, serial, DMI names), its profile and CMDB
//! entry, its life-cycle state with the time of every transition
//! (`discovered → matched → configuring → installing → installed`, or `failed`), the
//! agent's progress events, and its next boot.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::identity::{normalize_mac, Identity};

/// Most events kept per node (the oldest are dropped).
pub const MAX_EVENTS: usize = 200;

pub use rdeploy_configure::wire::NodeState;

/// Every state, in life-cycle order.
pub const ALL_STATES: [NodeState; 6] = [
    NodeState::Discovered,
    NodeState::Matched,
    NodeState::Configuring,
    NodeState::Installing,
    NodeState::Installed,
    NodeState::Failed,
];

/// The state's name as it appears on the wire.
pub fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Discovered => "discovered",
        NodeState::Matched => "matched",
        NodeState::Configuring => "configuring",
        NodeState::Installing => "installing",
        NodeState::Installed => "installed",
        NodeState::Failed => "failed",
    }
}

/// An install under way (it holds an install slot).
pub fn in_progress(s: NodeState) -> bool {
    matches!(
        s,
        NodeState::Matched | NodeState::Configuring | NodeState::Installing
    )
}

/// What a node boots next (the wire type the agent shares): `install`, `local`, or a boot
/// profile (`pxelinux.cfg/profiles/<name>.prof`, `<name>.ipxe`).
pub use rdeploy_configure::wire::BootDecision as BootTarget;

/// `install`, `local`, or a profile name of `[A-Za-z0-9._-]` (never a path).
pub fn parse_boot(s: &str) -> Option<BootTarget> {
    s.parse().ok()
}

fn default_boot() -> BootTarget {
    BootTarget::Install
}

/// A machine registered by name and MACs before (or without) an inventory: PXE Manager's
/// `addsystem`, PXE Pilot deploys of unknown MACs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct System {
    pub macs: Vec<String>,
    pub boot: BootTarget,
}

/// A state entered, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    pub state: NodeState,
    pub at: String,
}

/// Something that happened to a node: an upload, an agent's progress report, an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Server time (RFC 3339).
    pub at: String,
    /// `upload`, `matched`, `refused`, `failure`, `progress`, `boot`, `alert`, ...
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default)]
    pub message: String,
    /// The agent's own time, as it sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_time: Option<serde_json::Value>,
}

/// One machine's record (`<data-dir>/nodes/<id>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub identity: Identity,
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The variables handed to the configure script (the CMDB entry, merged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default = "default_boot")]
    pub boot: BootTarget,
    /// The role tree installed (an install or upgrade report that succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The role tree's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub history: Vec<StateChange>,
    #[serde(default)]
    pub events: VecDeque<Event>,
    pub created_at: String,
    pub updated_at: String,
}

impl Node {
    fn new(identity: &Identity, at: &str) -> Node {
        Node {
            id: identity.name.clone(),
            identity: identity.clone(),
            state: NodeState::Discovered,
            profile: None,
            var: None,
            boot: BootTarget::Install,
            role: None,
            version: None,
            history: vec![StateChange {
                state: NodeState::Discovered,
                at: at.to_owned(),
            }],
            events: VecDeque::new(),
            created_at: at.to_owned(),
            updated_at: at.to_owned(),
        }
    }

    fn enter(&mut self, state: NodeState, at: &str) {
        if self.state != state {
            self.state = state;
            self.history.push(StateChange {
                state,
                at: at.to_owned(),
            });
        }
    }

    fn event(&mut self, e: Event) {
        self.events.push_back(e);
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// The short form `GET /nodes` lists.
    pub fn summary(&self) -> serde_json::Value {
        let last = self.events.back();
        serde_json::json!({
            "id": self.id,
            "state": self.state,
            "profile": self.profile,
            "ip": self.var.as_ref().and_then(|v| v.get("ip")).cloned(),
            "hostname": self.var.as_ref().and_then(|v| v.get("hostname")).cloned(),
            "macs": self.identity.macs,
            "boot": self.boot.to_string(),
            "role": self.role,
            "version": self.version,
            "last_event": last.map(|e| format!("{} {}", e.kind, e.message).trim().to_owned()),
            "updated_at": self.updated_at,
        })
    }
}

/// A change to a node record.
#[derive(Debug, Clone)]
pub enum Transition {
    /// An inventory arrived (a new install attempt).
    Discovered,
    /// A profile and CMDB entry were given.
    Matched {
        profile: String,
        var: serde_json::Map<String, serde_json::Value>,
    },
    /// The upload got nothing (no match, quota, CMDB).
    Refused { code: String, message: String },
    /// The install failed (`failure=<profile>` or an agent's failed step).
    Failed { message: String },
    /// An agent's progress report, and the state it moves the node to.
    Progress {
        step: String,
        status: String,
        message: String,
        agent_time: Option<serde_json::Value>,
        state: Option<NodeState>,
    },
    /// An operator or the agent changed the next boot.
    Boot { target: BootTarget, why: String },
    /// Something an operator should look at; the state does not change.
    Alert { message: String },
    /// The agent uploaded its log.
    Log { message: String },
    /// A role tree install or upgrade began or ended (event `install` or `upgrade`).
    Tree(rdeploy_configure::tree_wire::TreeReport),
}

/// Now, as RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// All node records, in memory and on disk.
#[derive(Debug)]
pub struct Nodes {
    dir: PathBuf,
    records: Mutex<BTreeMap<String, Node>>,
    /// One lock per node id so two requests for a node never interleave their writes.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Next boots registered for MACs no node owns yet (PXE Pilot deploys, `system add`),
    /// saved in `<data-dir>/systems.json`.
    systems: tokio::sync::Mutex<BTreeMap<String, System>>,
    systems_file: PathBuf,
    /// Nodes holding an install slot (admission control): admitted, not yet installed or
    /// failed.
    /// Install slots: node id → last sign of life (admission, upload, event).
    installing: Mutex<HashMap<String, Instant>>,
    disk: super::disk::Disk,
}

impl Nodes {
    /// Loads every record of `dir` (creating it); an unreadable record is logged and skipped.
    pub fn load(dir: &Path) -> std::io::Result<Nodes> {
        std::fs::create_dir_all(dir)?;
        let mut records = BTreeMap::new();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Node>(&t).map_err(|e| e.to_string()));
            match parsed {
                Ok(node) => {
                    records.insert(node.id.clone(), node);
                }
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "node record skipped"),
            }
        }
        let systems_file = dir.with_file_name("systems.json");
        let systems = match std::fs::read_to_string(&systems_file) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %systems_file.display(), error = %e, "registered systems unreadable; starting without");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        let installing = records
            .values()
            .filter(|n: &&Node| in_progress(n.state))
            .map(|n| (n.id.clone(), Instant::now()))
            .collect();
        Ok(Nodes {
            disk: super::disk::Disk::default(),
            installing: Mutex::new(installing),
            dir: dir.to_owned(),
            records: Mutex::new(records),
            locks: Mutex::new(HashMap::new()),
            systems: tokio::sync::Mutex::new(systems),
            systems_file,
        })
    }

    /// The gate for file writes (shared with the inventory saves).
    pub fn disk(&self) -> &super::disk::Disk {
        &self.disk
    }

    /// The next boot registered for a MAC no node owns.
    pub async fn registered(&self, mac: &str) -> Option<BootTarget> {
        let mac = normalize_mac(mac)?;
        let systems = self.systems.lock().await;
        systems
            .values()
            .find(|s| s.macs.contains(&mac))
            .map(|s| s.boot.clone())
    }

    /// The registered systems by name.
    pub async fn systems(&self) -> BTreeMap<String, System> {
        self.systems.lock().await.clone()
    }

    /// Registers (or re-registers) a system: a name for MACs, booting `install` until told
    /// otherwise (an existing system keeps its next boot).
    pub async fn add_system(&self, name: &str, macs: &[String]) -> Result<System, ApiError> {
        let mut norm = Vec::new();
        for m in macs {
            norm.push(normalize_mac(m).ok_or_else(|| {
                ApiError::bad_request("bad_mac", format!("{m:?} is not a MAC address"))
            })?);
        }
        let mut systems = self.systems.lock().await;
        let boot = systems
            .get(name)
            .map_or(BootTarget::Install, |s| s.boot.clone());
        let system = System { macs: norm, boot };
        systems.insert(name.to_owned(), system.clone());
        self.save_systems(&systems).await?;
        Ok(system)
    }

    /// Sets the next boot of a registered system; `false` if there is none of that name.
    pub async fn set_system_boot(&self, name: &str, target: BootTarget) -> Result<bool, ApiError> {
        let mut systems = self.systems.lock().await;
        let Some(s) = systems.get_mut(name) else {
            return Ok(false);
        };
        s.boot = target;
        self.save_systems(&systems).await?;
        Ok(true)
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
        if let Some(node) = self.by_mac(&norm) {
            let node = self
                .change(
                    &node.id,
                    Transition::Boot {
                        target,
                        why: why.to_owned(),
                    },
                )
                .await?;
            return Ok(node);
        }
        let mut systems = self.systems.lock().await;
        match systems.values_mut().find(|s| s.macs.contains(&norm)) {
            Some(s) => s.boot = target,
            None => {
                let name = format!("mac-{}", norm.replace(':', "-"));
                systems.insert(
                    name,
                    System {
                        macs: vec![norm],
                        boot: target,
                    },
                );
            }
        }
        self.save_systems(&systems).await?;
        Ok(None)
    }

    async fn save_systems(&self, systems: &BTreeMap<String, System>) -> Result<(), ApiError> {
        let text = serde_json::to_string_pretty(systems).map_err(ApiError::internal)? + "\n";
        let dir = self
            .systems_file
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default();
        self.disk
            .write_atomic(dir, "systems.json".into(), text)
            .await
    }

    /// Admission control: takes an install slot for `id` unless `max` are taken (a node
    /// that already holds one keeps it). When full, slots whose node gave no sign of life
    /// (upload, event) for `stale_after` are reclaimed first: an agent that died without a
    /// report does not hold its slot forever. Returns the number of slots taken, or `Err`
    /// with it when full.
    pub fn admit(
        &self,
        id: &str,
        max: Option<usize>,
        stale_after: Duration,
    ) -> Result<usize, usize> {
        let Ok(mut slots) = self.installing.lock() else {
            return Ok(0);
        };
        let now = Instant::now();
        if let Some(seen) = slots.get_mut(id) {
            *seen = now;
            return Ok(slots.len());
        }
        let Some(max) = max else {
            slots.insert(id.to_owned(), now);
            return Ok(slots.len());
        };
        if slots.len() >= max {
            slots.retain(|node, seen| {
                let silent = now.saturating_duration_since(*seen);
                let keep = silent < stale_after;
                if !keep {
                    tracing::warn!(
                        node = %node,
                        silent_s = silent.as_secs(),
                        "install slot reclaimed: no upload or event within --install-timeout"
                    );
                }
                keep
            });
        }
        if slots.len() >= max {
            return Err(slots.len());
        }
        slots.insert(id.to_owned(), now);
        Ok(slots.len())
    }

    /// Gives an install slot back (the upload got nothing).
    pub fn release(&self, id: &str) {
        if let Ok(mut slots) = self.installing.lock() {
            slots.remove(id);
        }
    }

    /// Notes a sign of life from a node holding an install slot.
    fn touch(&self, id: &str) {
        if let Ok(mut slots) = self.installing.lock() {
            if let Some(seen) = slots.get_mut(id) {
                *seen = Instant::now();
            }
        }
    }

    /// Installs under way (slots taken).
    pub fn installs_in_flight(&self) -> usize {
        self.installing.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// How many nodes are in each state.
    pub fn count_by_state(&self) -> Vec<(NodeState, usize)> {
        let records = self.records.lock();
        ALL_STATES
            .iter()
            .map(|s| {
                let n = records
                    .as_ref()
                    .map(|r| r.values().filter(|n| n.state == *s).count())
                    .unwrap_or(0);
                (*s, n)
            })
            .collect()
    }

    pub fn count(&self) -> usize {
        self.records.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn get(&self, id: &str) -> Option<Node> {
        self.records.lock().ok()?.get(id).cloned()
    }

    pub fn all(&self) -> Vec<Node> {
        self.records
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The node owning a MAC (any of its MACs), most recently updated first.
    pub fn by_mac(&self, mac: &str) -> Option<Node> {
        let mac = normalize_mac(mac)?;
        let records = self.records.lock().ok()?;
        records
            .values()
            .filter(|n| {
                n.identity
                    .macs
                    .iter()
                    .any(|m| normalize_mac(m).as_deref() == Some(&mac))
            })
            .max_by(|a, b| a.updated_at.cmp(&b.updated_at))
            .cloned()
    }

    /// The node whose CMDB entry gave it this IP address.
    pub fn by_ip(&self, ip: &str) -> Option<Node> {
        let records = self.records.lock().ok()?;
        records
            .values()
            .filter(|n| {
                n.var
                    .as_ref()
                    .and_then(|v| v.get("ip"))
                    .and_then(|v| v.as_str())
                    == Some(ip)
            })
            .max_by(|a, b| a.updated_at.cmp(&b.updated_at))
            .cloned()
    }

    /// The profile a node holds an install of that is still under way (matched,
    /// configuring, installing): an upload from it is a retry, not a new install.
    pub fn install_in_progress(&self, id: &str) -> Option<String> {
        let node = self.get(id)?;
        match node.state {
            NodeState::Matched | NodeState::Configuring | NodeState::Installing => node.profile,
            _ => None,
        }
    }

    /// Applies a change to the record of `identity` (created if new) and saves it.
    pub async fn record(&self, identity: &Identity, t: Transition) -> Result<Node, ApiError> {
        self.update(&identity.name, Some(identity), vec![t]).await
    }

    /// Applies several changes with one write of the record (an upload's `discovered` and
    /// `matched`).
    pub async fn record_all(
        &self,
        identity: &Identity,
        ts: Vec<Transition>,
    ) -> Result<Node, ApiError> {
        self.update(&identity.name, Some(identity), ts).await
    }

    /// Applies a change to an existing node (`None` if there is no such node).
    pub async fn change(&self, id: &str, t: Transition) -> Result<Option<Node>, ApiError> {
        if self.get(id).is_none() {
            return Ok(None);
        }
        self.update(id, None, vec![t]).await.map(Some)
    }

    async fn update(
        &self,
        id: &str,
        identity: Option<&Identity>,
        ts: Vec<Transition>,
    ) -> Result<Node, ApiError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let at = now();
        let current = self.get(id);
        let mut node = match (current, identity) {
            (Some(mut n), Some(i)) => {
                n.identity = i.clone();
                n
            }
            (Some(n), None) => n,
            (None, Some(i)) => Node::new(i, &at),
            (None, None) => {
                return Err(ApiError::not_found(
                    "no_such_node",
                    format!("no node '{id}'"),
                ));
            }
        };
        for t in ts {
            apply(&mut node, t, &at);
        }
        node.updated_at = at;
        let text = serde_json::to_string_pretty(&node).map_err(ApiError::internal)? + "\n";
        let dir = self.dir.clone();
        let file = format!("{id}.json");
        self.disk.write_atomic(dir, file, text).await?;
        if let Ok(mut r) = self.records.lock() {
            r.insert(id.to_owned(), node.clone());
        }
        if matches!(node.state, NodeState::Installed | NodeState::Failed) {
            self.release(id);
        } else {
            self.touch(id);
        }
        drop(_guard);
        self.forget_lock(id, lock);
        Ok(node)
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.locks.lock() {
            Ok(mut m) => Arc::clone(m.entry(id.to_owned()).or_default()),
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn forget_lock(&self, id: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        drop(lock);
        if let Ok(mut m) = self.locks.lock() {
            if m.get(id).is_some_and(|l| Arc::strong_count(l) == 1) {
                m.remove(id);
            }
        }
    }
}

fn apply(node: &mut Node, t: Transition, at: &str) {
    let ev = |kind: &str, message: String| Event {
        at: at.to_owned(),
        kind: kind.to_owned(),
        step: None,
        status: None,
        message,
        agent_time: None,
    };
    match t {
        Transition::Discovered => {
            node.enter(NodeState::Discovered, at);
            node.event(ev("upload", "inventory received".into()));
        }
        Transition::Matched { profile, var } => {
            let ip = var
                .get("ip")
                .and_then(|v| v.as_str())
                .map(|s| format!(", ip {s}"))
                .unwrap_or_default();
            node.event(ev("matched", format!("profile {profile}{ip}")));
            node.profile = Some(profile);
            node.var = Some(var);
            node.enter(NodeState::Matched, at);
        }
        Transition::Refused { code, message } => {
            node.event(ev("refused", format!("{code}: {message}")));
        }
        Transition::Failed { message } => {
            node.event(ev("failure", message));
            node.enter(NodeState::Failed, at);
        }
        Transition::Progress {
            step,
            status,
            message,
            agent_time,
            state,
        } => {
            node.event(Event {
                at: at.to_owned(),
                kind: "progress".into(),
                step: Some(step),
                status: Some(status),
                message,
                agent_time,
            });
            if let Some(s) = state {
                node.enter(s, at);
                if s == NodeState::Installed {
                    node.boot = BootTarget::Local;
                    node.event(ev("boot", "install finished: next boot is local".into()));
                }
            }
        }
        Transition::Boot { target, why } => {
            node.event(ev("boot", format!("next boot: {target} ({why})")));
            node.boot = target;
        }
        Transition::Alert { message } => node.event(ev("alert", message)),
        Transition::Log { message } => node.event(ev("log", message)),
        Transition::Tree(r) => {
            use rdeploy_configure::tree_wire::TreeStatus;
            let from = r
                .from
                .as_deref()
                .map(|f| format!(" from {f}"))
                .unwrap_or_default();
            let mut message = format!("{} {}{from} to {}", r.action, r.role, r.version);
            if r.status != TreeStatus::Started {
                message.push_str(&format!(
                    ": {} bytes transferred of {}, {} changes",
                    r.bytes, r.tree_bytes, r.changes
                ));
            }
            if !r.message.is_empty() {
                message.push_str(&format!(" ({})", r.message));
            }
            node.event(Event {
                at: at.to_owned(),
                kind: r.action.to_string(),
                step: None,
                status: Some(r.status.to_string()),
                message,
                agent_time: None,
            });
            if r.status == TreeStatus::Succeeded {
                node.role = Some(r.role);
                node.version = Some(r.version);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_targets_refuse_paths() {
        assert_eq!(parse_boot("local"), Some(BootTarget::Local));
        assert_eq!(
            parse_boot("rescue"),
            Some(BootTarget::Profile {
                name: "rescue".into()
            })
        );
        assert_eq!(parse_boot("../x"), None);
        assert_eq!(parse_boot(".x"), None);
        assert_eq!(parse_boot(""), None);
    }

    #[test]
    fn silent_install_slots_are_reclaimed_when_full() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let nodes = Nodes::load(tmp.path())?;
        let hour = Duration::from_secs(3600);
        assert_eq!(nodes.admit("a", Some(2), hour), Ok(1));
        assert_eq!(nodes.admit("b", Some(2), hour), Ok(2));
        // Full, and nobody has been silent for an hour: refused, nothing reclaimed.
        assert_eq!(nodes.admit("c", Some(2), hour), Err(2));
        // A node that holds a slot is always admitted again.
        assert_eq!(nodes.admit("a", Some(2), hour), Ok(2));
        // With a zero timeout every other slot is stale: "c" takes one, "a" and "b" are gone.
        assert_eq!(nodes.admit("c", Some(2), Duration::ZERO), Ok(1));
        assert_eq!(nodes.installs_in_flight(), 1);
        // Without a cap nothing is reclaimed.
        assert_eq!(nodes.admit("d", None, Duration::ZERO), Ok(2));
        Ok(())
    }

    #[tokio::test]
    async fn records_survive_a_reload() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let nodes = Nodes::load(tmp.path())?;
        let id = Identity {
            name: "KVM-1-52-54-00-00-00-01".into(),
            macs: vec!["52:54:00:00:00:01".into()],
            ..Identity::default()
        };
        nodes
            .record(&id, Transition::Discovered)
            .await
            .map_err(|e| e.message)?;
        let mut var = serde_json::Map::new();
        var.insert("ip".into(), "10.0.0.1".into());
        nodes
            .record(
                &id,
                Transition::Matched {
                    profile: "vm".into(),
                    var,
                },
            )
            .await
            .map_err(|e| e.message)?;
        let again = Nodes::load(tmp.path())?;
        let n = again.get(&id.name).ok_or("record lost")?;
        assert_eq!(n.state, NodeState::Matched);
        assert_eq!(n.history.len(), 2);
        assert_eq!(
            again.by_mac("52-54-00-00-00-01").map(|n| n.id),
            Some(id.name.clone())
        );
        assert_eq!(again.by_ip("10.0.0.1").map(|n| n.id), Some(id.name));
        Ok(())
    }
}
