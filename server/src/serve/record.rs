//! A node's record as data: the machine's identity, its state with the time of every
//! transition, its profile and CMDB entry, its events and its next boot. Pure types; the
//! [`lifecycle`](super::lifecycle) table moves them and [`nodes`](super::nodes) stores them.
//!
//! A record is bounded whatever its agent sends: [`MAX_EVENTS`] events, the newest
//! [`FULL_EVENTS`] with messages of at most [`MAX_MESSAGE`] bytes and the older ones
//! compacted to [`COMPACT_MESSAGE`], and [`MAX_HISTORY`] state changes.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::identity::Identity;

/// Most events kept per node (the oldest are dropped).
pub const MAX_EVENTS: usize = 200;

/// The newest events keep their whole message; older ones are compacted to
/// [`COMPACT_MESSAGE`] bytes.
pub const FULL_EVENTS: usize = 20;

/// Longest message of an event (an agent's report with its log tail fits).
pub const MAX_MESSAGE: usize = 8 * 1024;

/// Longest message of an event older than the [`FULL_EVENTS`] newest.
pub const COMPACT_MESSAGE: usize = 256;

/// Most state changes kept in a node's history (the oldest are dropped).
pub const MAX_HISTORY: usize = 100;

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

/// Cuts `text` to at most `max` bytes (at a character boundary), saying how much was cut.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let note = format!(" [... {} bytes cut]", text.len());
    let mut end = max.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&note);
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

    /// Moves to `state` (recorded in the history with its time), if not already there;
    /// the history keeps the [`MAX_HISTORY`] latest changes.
    pub(in crate::serve) fn enter(&mut self, state: NodeState, at: &str) {
        if self.state != state {
            self.state = state;
            self.history.push(StateChange {
                state,
                at: at.to_owned(),
            });
            let extra = self.history.len().saturating_sub(MAX_HISTORY);
            self.history.drain(..extra);
        }
    }

    /// Adds an event (its message cut to [`MAX_MESSAGE`] bytes), compacts the one that
    /// leaves the [`FULL_EVENTS`] newest, and drops the oldest beyond [`MAX_EVENTS`]: a
    /// record stays under ~250 KiB whatever its agent sends.
    pub(in crate::serve) fn event(&mut self, mut e: Event) {
        cut(&mut e.message, MAX_MESSAGE);
        self.events.push_back(e);
        if let Some(old) = self
            .events
            .len()
            .checked_sub(FULL_EVENTS + 1)
            .and_then(|i| self.events.get_mut(i))
        {
            cut(&mut old.message, COMPACT_MESSAGE);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_stays_small_whatever_its_agent_sends() {
        let identity = Identity {
            name: "n1".into(),
            ..Identity::default()
        };
        let mut node = Node::new(&identity, "t0");
        for i in 0..300 {
            node.event(Event {
                at: format!("t{i}"),
                kind: "progress".into(),
                step: None,
                status: None,
                message: format!("{i} {}", "é".repeat(600_000)),
                agent_time: None,
            });
            node.enter(
                if i % 2 == 0 {
                    NodeState::Failed
                } else {
                    NodeState::Discovered
                },
                "t",
            );
        }
        assert_eq!(node.events.len(), MAX_EVENTS);
        assert_eq!(node.history.len(), MAX_HISTORY);
        let newest = node.events.back().map(|e| e.message.len()).unwrap_or(0);
        assert!(
            newest <= MAX_MESSAGE && newest > MAX_MESSAGE - 100,
            "{newest}"
        );
        assert!(node.events[0].message.len() <= COMPACT_MESSAGE);
        assert!(
            node.events[0].message.starts_with("100 "),
            "the oldest kept is the 101st"
        );
        assert!(node.events[0].message.ends_with("bytes cut]"));
        let size = serde_json::to_string(&node)
            .map(|t| t.len())
            .unwrap_or(usize::MAX);
        assert!(size < 250 * 1024, "{size}");
    }
}
