//! The JSON the server answers operators with, as types: the server serializes them and the
//! operator commands (`rdeploy nodes`, `quota`, `nextboot`, `system add`) read them back, so
//! a field renamed on one side fails to compile on the other instead of printing blanks.
//!
//! The agent's wire types (upload reply, progress event, boot decision) are in
//! `rdeploy_configure::wire`, which the agent shares.

use rdeploy_configure::wire::NodeState;
use serde::{Deserialize, Serialize};

/// One line of `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub id: String,
    pub state: NodeState,
    pub profile: Option<String>,
    /// The CMDB entry's `ip`, if it has one.
    pub ip: Option<serde_json::Value>,
    pub hostname: Option<serde_json::Value>,
    pub macs: Vec<String>,
    /// The next boot (`install`, `local` or a boot profile).
    pub boot: String,
    /// The role tree installed, and its version.
    pub role: Option<String>,
    pub version: Option<String>,
    /// The last event, `KIND MESSAGE`.
    pub last_event: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

/// `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeList {
    pub nodes: Vec<NodeSummary>,
    /// With `?limit=`: the id to pass as `?after=` for the next page, when there may be one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One profile of `GET /quota`, in `state` order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaRow {
    pub profile: String,
    /// Installs left, or `*`.
    pub quota: String,
    pub cmdb_used: Option<usize>,
    pub cmdb_total: Option<usize>,
    /// Nodes that got this profile.
    pub nodes: usize,
}

/// `GET /quota`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaReport {
    pub profiles: Vec<QuotaRow>,
}

/// What `POST /nextboot` and the OMF endpoints changed: a node, a registered system, or a
/// MAC (its node if there is one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The next boot now.
    pub boot: String,
}

/// A registered system (`POST /systems`, `GET /systems`, `GET /systems/{key}`), or a node
/// shown the same way (`node` then names it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub name: String,
    pub macs: Vec<String>,
    /// IPv4 addresses (or first octets) it is registered with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    pub boot: String,
    /// The node id, when the machine sent an inventory (`GET /systems/{key}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `GET /systems`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemList {
    pub systems: Vec<SystemInfo>,
}

/// `GET /boot-profiles`: the boot profiles there are and what is wrong with them (PXE
/// Manager's `syncbootnames`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootProfiles {
    /// Names a next boot may take: `install`, `local` and every profile with a file.
    pub profiles: Vec<String>,
    /// Where PXELINUX profiles are read (`<tftp-root>/pxelinux.cfg/profiles`, `.../conf`).
    pub dirs: Vec<String>,
    /// What is missing, with what to write (`local.prof`, PXE Manager's mandatory profile).
    pub problems: Vec<String>,
}

/// PXE Pilot's name of a configuration (`{"name": "local"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PilotConfiguration {
    pub name: String,
}

/// PXE Pilot's `GET /v1/configurations/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PilotConfigurationContent {
    pub name: String,
    pub content: String,
}

/// One host of PXE Pilot's `GET /hosts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PilotHost {
    pub name: String,
    #[serde(rename = "macAddresses")]
    pub mac_addresses: Vec<String>,
    pub configuration: Option<PilotConfiguration>,
}

/// One host of PXE Pilot's deploy answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PilotDeployed {
    /// The host's name (a registered system, or the node id).
    pub name: String,
    #[serde(rename = "macAddress")]
    pub mac_address: Option<String>,
    /// The node now booting it (`null` for a machine that never sent an inventory).
    pub node: Option<String>,
    pub configuration: String,
}

/// PXE Pilot's deploy answer: `{"hosts": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PilotDeployReply {
    pub hosts: Vec<PilotDeployed>,
}

/// One node of an OMF answer (`<node hrn= ip= img= hex=/>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OmfNode {
    /// The name OMF used for it.
    pub hrn: String,
    pub ip: String,
    /// The image it boots next (`local` after `clearBootImage`).
    pub img: String,
    /// Its hex-IP PXELINUX name.
    pub hex: String,
}

/// A node's state and next boot (`POST /nodes/{id}/events`, `POST /nodes/{id}/boot`,
/// PXE Manager's answers in JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeBoot {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<NodeState>,
    pub boot: String,
}

/// Every error answer: `{"error": CODE, "message": TEXT, "tried": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code a script can test (`no_match`, `illegal_transition`, ...).
    pub error: String,
    pub message: String,
    #[serde(default)]
    pub tried: Vec<Tried>,
}

/// One profile passed over, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tried {
    pub profile: String,
    pub reason: String,
}

/// One test run as operators see it (`GET /testruns`, `POST /testruns`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRunSummary {
    /// The run's id: PXE Manager's test id (`/upload/<id>/`).
    pub id: u64,
    pub system: String,
    pub test: String,
    /// `queued`, `running`, `done`, `lost` or `error`.
    pub state: String,
    pub queued_at: String,
    /// The time of its last step.
    pub updated_at: String,
    pub version: Option<String>,
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    pub exit: Option<i32>,
    /// Why its template did not render.
    pub error: Option<String>,
    /// Its first error and warning lines (`E: ...`, `W: ...`, in output order), at most
    /// ten: the rest are on its page.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// `GET /testruns?system=NAME`: the runs of a system (every name it is known by), oldest
/// first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRunList {
    pub system: Option<String>,
    /// The names the system is known by (registered systems and nodes sharing its MACs).
    pub names: Vec<String>,
    pub runs: Vec<TestRunSummary>,
}

/// A test of the tests dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestNameInfo {
    pub name: String,
    /// Its file is in the tests dir (as of the last sync).
    pub available: bool,
    /// Its template's syntax error at the last sync.
    pub problem: Option<String>,
}

/// `GET /testnames`, `POST /testnames/sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestNameList {
    /// The tests dir.
    pub dir: String,
    pub tests: Vec<TestNameInfo>,
    /// Whether `wait.test` is missing (the built-in one is sent instead).
    pub missing_wait: bool,
}
