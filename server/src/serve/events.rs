//! The live feed of node changes: every write of a node record (through `Core::change` or
//! `Core::record`) publishes one [`NodeChange`] on a broadcast channel; `GET /events`
//! (`http/events.rs`) streams them as server-sent events to the console and to scripts.
//!
//! A slow listener does not hold anyone back: the channel keeps the last [`CAPACITY`]
//! changes, and a listener that fell further behind is told how many it missed (`lagged`)
//! and goes on from the newest.

use serde::Serialize;
use tokio::sync::broadcast;

use super::record::Node;
use crate::wire::NodeSummary;

/// Changes kept for listeners that fall behind.
pub const CAPACITY: usize = 4096;

/// One node's new short form, as `GET /nodes` lists it, after a change.
#[derive(Debug, Clone, Serialize)]
pub struct NodeChange {
    /// The change's number since the server started (1, 2, ...).
    pub seq: u64,
    #[serde(flatten)]
    pub node: NodeSummary,
}

/// The sending side, owned by the core.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<NodeChange>,
    seq: std::sync::atomic::AtomicU64,
}

impl Default for Events {
    fn default() -> Events {
        let (tx, _) = broadcast::channel(CAPACITY);
        Events {
            tx,
            seq: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Events {
    /// Publishes a node's new state (nobody listening is fine).
    pub fn publish(&self, node: &Node) {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let _ = self.tx.send(NodeChange {
            seq,
            node: node.summary(),
        });
    }

    /// A new listener: it gets the changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeChange> {
        self.tx.subscribe()
    }
}
