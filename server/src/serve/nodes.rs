//! Node records: one JSON file per machine under `<data-dir>/nodes/<id>.json`, written
//! atomically (temp file, fsync, rename), loaded back at start.
//!
//! A record holds the machine's identity (MACs, serial, DMI names), its profile and CMDB
//! entry, its life-cycle state with the time of every transition
//! (`discovered → matched → configuring → installing → installed`, or `failed`), the
//! agent's progress events, and its next boot. Every change goes through the life cycle's
//! table ([`super::lifecycle::step`]): a transition it refuses writes nothing.
//!
//! Registered systems (MACs without a record) are [`super::systems`]; install slots (which
//! records hold one) are [`super::slots`], kept up to date by every change of a record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::identity::{normalize_mac, Identity};
use super::lifecycle::{self, in_progress, Illegal, Transition, ALL_STATES};
use super::slots::Slots;
use super::store::{Change, Store, StoreError};

use super::record::{Node, NodeState};

/// Now, as RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A change to a node record that did not happen (the record is as it was).
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    #[error("no node '{id}'")]
    NoSuchNode { id: String },
    /// The life cycle refuses the transition.
    #[error(transparent)]
    Illegal(#[from] Illegal),
    #[error("cannot encode the record of node {id}")]
    Encode {
        id: String,
        #[source]
        err: serde_json::Error,
    },
    #[error("cannot save the record of node {id}")]
    Save {
        id: String,
        #[source]
        err: StoreError,
    },
}

/// A string of the node's CMDB entry.
fn var_str<'a>(n: &'a Node, key: &str) -> Option<&'a str> {
    n.var.as_ref()?.get(key)?.as_str()
}

/// The records in memory, indexed by MAC and by address.
#[derive(Debug, Default)]
struct Records {
    map: BTreeMap<String, Node>,
    by_mac: HashMap<String, BTreeSet<String>>,
    by_ip: HashMap<String, BTreeSet<String>>,
    /// The other addresses a node is known by: its inventory's, its uploads'.
    by_seen: HashMap<String, BTreeSet<String>>,
}

/// The normalized MACs and the addresses a node is known by.
fn keys(node: &Node) -> (Vec<String>, Vec<String>) {
    let macs = node
        .identity
        .macs
        .iter()
        .filter_map(|m| normalize_mac(m))
        .collect();
    let ips = node
        .var
        .as_ref()
        .and_then(|v| v.get("ip"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .into_iter()
        .collect();
    (macs, ips)
}

impl Records {
    fn insert(&mut self, node: Node) {
        self.remove(&node.id);
        let (macs, ips) = keys(&node);
        for m in macs {
            self.by_mac.entry(m).or_default().insert(node.id.clone());
        }
        for ip in ips {
            self.by_ip.entry(ip).or_default().insert(node.id.clone());
        }
        for a in &node.identity.addresses {
            self.by_seen
                .entry(a.clone())
                .or_default()
                .insert(node.id.clone());
        }
        self.map.insert(node.id.clone(), node);
    }

    fn remove(&mut self, id: &str) -> Option<Node> {
        let old = self.map.remove(id)?;
        let (macs, ips) = keys(&old);
        let seen = old.identity.addresses.clone();
        for (index, ks) in [
            (&mut self.by_mac, macs),
            (&mut self.by_ip, ips),
            (&mut self.by_seen, seen),
        ] {
            for k in ks {
                if let Some(ids) = index.get_mut(&k) {
                    ids.remove(id);
                    if ids.is_empty() {
                        index.remove(&k);
                    }
                }
            }
        }
        Some(old)
    }

    /// The most recently updated of `ids`.
    fn newest(&self, ids: &BTreeSet<String>) -> Option<Node> {
        ids.iter()
            .filter_map(|id| self.map.get(id))
            .max_by(|a, b| a.updated_at.cmp(&b.updated_at))
            .cloned()
    }
}

/// All node records, in memory and in the store.
#[derive(Debug)]
pub struct Nodes {
    records: Mutex<Records>,
    /// One lock per node id so two requests for a node never interleave their writes.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The install slots: a change that ends an install gives its slot back, any other
    /// change is a sign of life.
    slots: Arc<Slots>,
    store: Store,
}

impl Nodes {
    /// The records the store loaded (JSON by id); an unreadable one is logged and skipped.
    /// Nodes whose install is under way take their install slot in `slots` again.
    pub fn new(loaded: Vec<(String, String)>, store: Store, slots: Arc<Slots>) -> Nodes {
        let mut records = Records::default();
        for (id, text) in loaded {
            match serde_json::from_str::<Node>(&text) {
                Ok(node) => {
                    records.insert(node);
                }
                Err(e) => tracing::warn!(node = %id, error = %e, "node record skipped"),
            }
        }
        slots.hold(
            records
                .map
                .values()
                .filter(|n: &&Node| in_progress(n.state))
                .map(|n| n.id.as_str()),
        );
        Nodes {
            records: Mutex::new(records),
            locks: Mutex::new(HashMap::new()),
            slots,
            store,
        }
    }

    /// How many nodes are in each state.
    pub fn count_by_state(&self) -> Vec<(NodeState, usize)> {
        let Ok(records) = self.records.lock() else {
            return Vec::new();
        };
        ALL_STATES
            .iter()
            .map(|s| (*s, records.map.values().filter(|n| n.state == *s).count()))
            .collect()
    }

    pub fn count(&self) -> usize {
        self.records.lock().map(|r| r.map.len()).unwrap_or(0)
    }

    /// The node `id` and every node sharing one of `macs` (normalized), from the indexes.
    pub fn named_or_sharing(&self, id: &str, macs: &[String]) -> Vec<Node> {
        let Ok(records) = self.records.lock() else {
            return Vec::new();
        };
        let mut ids: BTreeSet<&str> = BTreeSet::new();
        if records.map.contains_key(id) {
            ids.insert(id);
        }
        for m in macs {
            if let Some(set) = records.by_mac.get(m) {
                ids.extend(set.iter().map(String::as_str));
            }
        }
        ids.into_iter()
            .filter_map(|i| records.map.get(i).cloned())
            .collect()
    }

    /// Every node id.
    pub fn ids(&self) -> Vec<String> {
        self.records
            .lock()
            .map(|r| r.map.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many nodes got each profile.
    pub fn count_by_profile(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        if let Ok(records) = self.records.lock() {
            for p in records.map.values().filter_map(|n| n.profile.as_ref()) {
                *counts.entry(p.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// The profile node `id` was last given (a hint for matching: the writer's ledger
    /// decides what it holds).
    pub fn profile_of(&self, id: &str) -> Option<String> {
        self.records.lock().ok()?.map.get(id)?.profile.clone()
    }

    pub fn get(&self, id: &str) -> Option<Node> {
        self.records.lock().ok()?.map.get(id).cloned()
    }

    /// Every node's short form (no record is copied whole), in id order, after `after`, at
    /// most `limit`, those `keep` accepts.
    pub fn summaries(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&Node) -> bool,
    ) -> Vec<crate::wire::NodeSummary> {
        use std::ops::Bound;
        let Ok(records) = self.records.lock() else {
            return Vec::new();
        };
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
        records
            .map
            .range((start, Bound::Unbounded))
            .map(|(_, n)| n)
            .filter(|n| keep(n))
            .take(limit)
            .map(Node::summary)
            .collect()
    }

    /// The node owning a MAC (any of its MACs), most recently updated first.
    pub fn by_mac(&self, mac: &str) -> Option<Node> {
        let mac = normalize_mac(mac)?;
        let records = self.records.lock().ok()?;
        records.newest(records.by_mac.get(&mac)?)
    }

    /// The node known by this address: the one whose CMDB entry gave it the address, else
    /// one that reported it in its inventory or uploaded from it; the most recently
    /// updated first.
    pub fn by_address(&self, ip: &str) -> Option<Node> {
        let records = self.records.lock().ok()?;
        records
            .by_ip
            .get(ip)
            .and_then(|ids| records.newest(ids))
            .or_else(|| records.newest(records.by_seen.get(ip)?))
    }

    /// The node whose CMDB entry names it `hostname` (OMF and PXE Pilot name hosts so).
    pub fn by_hostname(&self, hostname: &str) -> Option<Node> {
        let records = self.records.lock().ok()?;
        records
            .map
            .values()
            .filter(|n| var_str(n, "hostname") == Some(hostname))
            .max_by(|a, b| a.updated_at.cmp(&b.updated_at))
            .cloned()
    }

    /// Forgets the oldest machines that never matched a profile (refused uploads: junk or
    /// machines waiting for a profile) beyond `max`: their records and inventories leave
    /// the store. Returns how many went.
    pub async fn expire_unmatched(&self, max: usize) -> usize {
        let victims: Vec<String> = {
            let Ok(records) = self.records.lock() else {
                return 0;
            };
            let mut unmatched: Vec<(&str, &str)> = records
                .map
                .values()
                .filter(|n| n.state == NodeState::Discovered && n.profile.is_none())
                .map(|n| (n.updated_at.as_str(), n.id.as_str()))
                .collect();
            if unmatched.len() <= max {
                return 0;
            }
            unmatched.sort_unstable();
            let excess = unmatched.len() - max;
            unmatched[..excess]
                .iter()
                .map(|(_, id)| (*id).to_owned())
                .collect()
        };
        let mut gone = 0;
        for id in victims {
            let lock = self.lock_for(&id);
            let removed = {
                let _guard = lock.lock().await;
                let still = self
                    .get(&id)
                    .is_some_and(|n| n.state == NodeState::Discovered && n.profile.is_none());
                still
                    && self
                        .store
                        .commit(Change::ForgetNode { id: id.clone() })
                        .await
                        .is_ok()
            };
            if removed {
                if let Ok(mut r) = self.records.lock() {
                    r.remove(&id);
                }
                gone += 1;
            }
            self.forget_lock(&id, lock);
        }
        if gone > 0 {
            tracing::info!(
                gone,
                max,
                "expired the oldest records of machines that never matched"
            );
        }
        gone
    }

    /// Whether the life cycle allows `t` for the record of `identity` now (a machine without
    /// a record would start `discovered`). Changes nothing.
    pub fn check(&self, identity: &Identity, t: &Transition) -> Result<(), Illegal> {
        let node = self
            .get(&identity.name)
            .unwrap_or_else(|| Node::new(identity, ""));
        lifecycle::check(&node, t).map(drop)
    }

    /// Applies a change to the record of `identity` (created if new) and saves it; an illegal
    /// transition is refused and nothing is written.
    #[cfg(test)]
    pub async fn record(&self, identity: &Identity, t: Transition) -> Result<Node, NodesError> {
        self.update(&identity.name, Some(identity), vec![t]).await
    }

    /// Applies several changes with one write of the record (an upload's `discovered` and
    /// `matched`): all of them, or none if one is illegal.
    pub async fn record_all(
        &self,
        identity: &Identity,
        ts: Vec<Transition>,
    ) -> Result<Node, NodesError> {
        self.update(&identity.name, Some(identity), ts).await
    }

    /// Applies a change to an existing node (`None` if there is no such node).
    pub async fn change(&self, id: &str, t: Transition) -> Result<Option<Node>, NodesError> {
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
    ) -> Result<Node, NodesError> {
        let lock = self.lock_for(id);
        let result = {
            let _guard = lock.lock().await;
            self.update_locked(id, identity, ts).await
        };
        self.forget_lock(id, lock);
        result
    }

    /// [`Nodes::update`] under the node's lock.
    async fn update_locked(
        &self,
        id: &str,
        identity: Option<&Identity>,
        ts: Vec<Transition>,
    ) -> Result<Node, NodesError> {
        let at = now();
        let current = self.get(id);
        let mut node = match (current, identity) {
            (Some(mut n), Some(i)) => {
                n.identity = i.clone();
                n
            }
            (Some(n), None) => n,
            (None, Some(i)) => Node::new(i, &at),
            (None, None) => return Err(NodesError::NoSuchNode { id: id.to_owned() }),
        };
        for t in ts {
            lifecycle::step(&mut node, t, &at)?;
        }
        node.updated_at = at;
        let record = serde_json::to_string(&node).map_err(|err| NodesError::Encode {
            id: id.to_owned(),
            err,
        })?;
        self.store
            .commit(Change::Node {
                id: id.to_owned(),
                record,
            })
            .await
            .map_err(|err| NodesError::Save {
                id: id.to_owned(),
                err,
            })?;
        if let Ok(mut r) = self.records.lock() {
            r.insert(node.clone());
        }
        if matches!(node.state, NodeState::Installed | NodeState::Failed) {
            self.slots.release(id);
        } else {
            self.slots.touch(id);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::record::{parse_boot, BootTarget};
    use crate::serve::store::Sqlite;

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

    #[tokio::test]
    async fn records_survive_a_reload() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let slots = || Arc::new(Slots::new(None, std::time::Duration::from_secs(60)));
        let open = |slots| -> Result<Nodes, Box<dyn std::error::Error>> {
            let (store, loaded) = Store::open(Sqlite::open(tmp.path())?)?;
            Ok(Nodes::new(loaded.nodes, store, slots))
        };
        let nodes = open(slots())?;
        let id = Identity {
            name: "KVM-1-52-54-00-00-00-01".into(),
            macs: vec!["52:54:00:00:00:01".into()],
            ..Identity::default()
        };
        nodes.record(&id, Transition::Discovered).await?;
        let mut var = serde_json::Map::new();
        var.insert("ip".into(), "10.0.0.1".into());
        nodes
            .record(
                &id,
                Transition::Matched {
                    profile: "vm".into(),
                    var,
                    token_sha256: None,
                },
            )
            .await?;
        let held = slots();
        drop(nodes);
        let again = open(Arc::clone(&held))?;
        assert_eq!(held.in_flight(), 1, "a matched node holds its slot again");
        let n = again.get(&id.name).ok_or("record lost")?;
        assert_eq!(n.state, NodeState::Matched);
        assert_eq!(n.history.len(), 2);
        assert_eq!(
            again.by_mac("52-54-00-00-00-01").map(|n| n.id),
            Some(id.name.clone())
        );
        assert_eq!(again.by_address("10.0.0.1").map(|n| n.id), Some(id.name));
        Ok(())
    }

    /// An illegal transition is refused by `change`, `record` and `record_all` alike: the
    /// record on disk and in memory stays as it was, and its slot is not touched.
    #[tokio::test]
    async fn an_illegal_transition_writes_nothing() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let slots = Arc::new(Slots::new(None, std::time::Duration::from_secs(60)));
        let (store, loaded) = Store::open(Sqlite::open(tmp.path())?)?;
        let nodes = Nodes::new(loaded.nodes, store, Arc::clone(&slots));
        let id = Identity {
            name: "KVM-1-52-54-00-00-00-01".into(),
            macs: vec!["52:54:00:00:00:01".into()],
            ..Identity::default()
        };
        let matched = Transition::Matched {
            profile: "vm".into(),
            var: serde_json::Map::new(),
            token_sha256: None,
        };
        nodes
            .record_all(&id, vec![Transition::Discovered, matched.clone()])
            .await?;
        use rdeploy_configure::wire::{Step, StepStatus};
        let progress = |step, status| {
            Transition::Progress(rdeploy_configure::wire::ProgressEvent {
                step,
                status,
                message: String::new(),
                time: rdeploy_configure::wire::EventTime::Unix(1),
                node: None,
                log: None,
            })
        };
        let done = nodes
            .change(&id.name, progress(Step::Finish, StepStatus::Succeeded))
            .await?
            .ok_or("no node")?;
        assert_eq!(done.state, NodeState::Installed);
        assert_eq!(slots.in_flight(), 0);
        let stored = || -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
            Ok(Store::open(Sqlite::open(tmp.path())?)?.1.nodes)
        };
        let on_disk = stored()?;

        let refused = nodes
            .change(&id.name, progress(Step::Configure, StepStatus::Started))
            .await;
        let Err(NodesError::Illegal(illegal)) = refused else {
            return Err(format!("configure/started on an installed node: {refused:?}").into());
        };
        assert_eq!(illegal.state, NodeState::Installed);
        // An upload and its match, in one write: the upload is refused, the match is not
        // applied either.
        let both = nodes
            .record_all(&id, vec![Transition::Discovered, matched])
            .await;
        assert!(matches!(both, Err(NodesError::Illegal(_))), "{both:?}");
        assert!(nodes.check(&id, &Transition::Discovered).is_err());
        assert_eq!(stored()?, on_disk);
        assert_eq!(nodes.get(&id.name), Some(done));
        assert_eq!(slots.in_flight(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn machines_that_never_matched_are_bounded_and_lookups_are_indexed(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let slots = Arc::new(Slots::new(None, std::time::Duration::from_secs(60)));
        let (store, loaded) = Store::open(Sqlite::open(tmp.path())?)?;
        let nodes = Nodes::new(loaded.nodes, store, slots);
        let refused = || Transition::Refused {
            code: "no_match".into(),
            message: "no profile".into(),
        };
        for i in 0..5 {
            let id = Identity {
                name: format!("junk-{i}"),
                macs: vec![format!("52:54:00:00:01:{i:02x}")],
                ..Identity::default()
            };
            nodes
                .record_all(&id, vec![Transition::Discovered, refused()])
                .await?;
        }
        let matched = Identity {
            name: "real".into(),
            macs: vec!["52:54:00:00:02:01".into()],
            ..Identity::default()
        };
        let mut var = serde_json::Map::new();
        var.insert("ip".into(), "10.0.0.9".into());
        nodes
            .record_all(
                &matched,
                vec![
                    Transition::Discovered,
                    Transition::Matched {
                        profile: "vm".into(),
                        var,
                        token_sha256: None,
                    },
                ],
            )
            .await?;
        assert_eq!(nodes.expire_unmatched(2).await, 3);
        assert_eq!(nodes.count(), 3);
        assert!(
            nodes.get("real").is_some(),
            "a matched machine is never expired"
        );
        assert_eq!(
            nodes.by_address("10.0.0.9").map(|n| n.id).as_deref(),
            Some("real")
        );
        assert_eq!(
            nodes.by_mac("52-54-00-00-02-01").map(|n| n.id).as_deref(),
            Some("real")
        );
        let expired_mac = (0..5)
            .filter(|i| nodes.by_mac(&format!("52:54:00:00:01:{i:02x}")).is_none())
            .count();
        assert_eq!(expired_mac, 3, "an expired record leaves the MAC index");
        let page = nodes.summaries(None, 2, |_| true);
        assert_eq!(page.len(), 2);
        let rest = nodes.summaries(Some(&page[1].id), 10, |_| true);
        assert_eq!(rest.len(), 1);
        drop(nodes);
        let (_, again) = Store::open(Sqlite::open(tmp.path())?)?;
        assert_eq!(again.nodes.len(), 3, "expired records left the store");
        Ok(())
    }
}
