//! A node's record as data: the machine's identity, its state with the time of every
//! transition, its profile and CMDB entry, its events and its next boot. Pure types; the
//! [`lifecycle`](super::lifecycle) table moves them and [`nodes`](super::nodes) stores them.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::identity::Identity;

/// Most events kept per node (the oldest are dropped).
pub const MAX_EVENTS: usize = 200;

pub use rdeploy_configure::wire::NodeState;

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
    /// The SHA-256 (hex) of the token its last match gave the agent (`access.rs`); never
    /// shown (`Core::node_view` leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
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
    /// A record for a machine seen for the first time: `discovered`, booting `install`.
    pub(in crate::serve) fn new(identity: &Identity, at: &str) -> Node {
        Node {
            id: identity.name.clone(),
            identity: identity.clone(),
            state: NodeState::Discovered,
            profile: None,
            var: None,
            boot: BootTarget::Install,
            token_sha256: None,
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

    /// Moves to `state` (recorded in the history with its time), if not already there.
    pub(in crate::serve) fn enter(&mut self, state: NodeState, at: &str) {
        if self.state != state {
            self.state = state;
            self.history.push(StateChange {
                state,
                at: at.to_owned(),
            });
        }
    }

    /// Adds an event, dropping the oldest beyond [`MAX_EVENTS`].
    pub(in crate::serve) fn event(&mut self, e: Event) {
        self.events.push_back(e);
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// The short form `GET /nodes` lists.
    pub fn summary(&self) -> crate::wire::NodeSummary {
        let last = self.events.back();
        crate::wire::NodeSummary {
            id: self.id.clone(),
            state: self.state,
            profile: self.profile.clone(),
            ip: self.var.as_ref().and_then(|v| v.get("ip")).cloned(),
            hostname: self.var.as_ref().and_then(|v| v.get("hostname")).cloned(),
            macs: self.identity.macs.clone(),
            boot: self.boot.to_string(),
            role: self.role.clone(),
            version: self.version.clone(),
            last_event: last.map(|e| format!("{} {}", e.kind, e.message).trim().to_owned()),
            updated_at: self.updated_at.clone(),
        }
    }
}
