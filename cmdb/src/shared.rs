//! The mutable half of the config kept outside the config dir: `state`, each
//! `<profile>.cmdb` (and `.cmdb.orig`) and the ledger of installs under way, as a database
//! holds them for several servers ([`Shared`]). The specs and configure scripts still come
//! from the config dir's files.
//!
//! A [`crate::Snapshot`] given a `Shared` ([`crate::Snapshot::with_shared`]) runs each
//! batch inside one of its transactions instead of the config dir's lock: [`Shared::begin`]
//! takes the one lock every server shares and says which files changed (their versions),
//! the snapshot reads only those again, plans the batch with the same code and policy as
//! on files, and [`Shared::commit`] writes what the batch changed (the same texts the
//! config dir would get) and releases the lock. Several servers therefore hand out
//! installs one batch at a time, each batch seeing every earlier one: the answers of one
//! server.

use crate::store::{StoreError, Write};
use std::collections::HashMap;

/// Where the shared files live (a database). Each name is a config-dir file name
/// (`state`, `vm.cmdb`, `vm.cmdb.orig`, `.rdeploy-holds-<owner>.json`).
pub trait Shared: Send + std::fmt::Debug {
    /// Starts a batch: takes the shared lock (held until [`Shared::commit`] or
    /// [`Shared::rollback`]) and returns the version of every file there is.
    fn begin(&mut self) -> Result<HashMap<String, u64>, StoreError>;
    /// The text of one file, inside the batch.
    fn read(&mut self, name: &str) -> Result<Option<String>, StoreError>;
    /// Applies the batch's writes and ends it; returns the version the written files now
    /// have. With no writes it only ends the batch.
    fn commit(&mut self, writes: &[Write]) -> Result<u64, StoreError>;
    /// Ends a batch without writing (after an error).
    fn rollback(&mut self);
    /// How to name the store in messages (`postgres://host:port/db`, no password).
    fn label(&self) -> String;
}

/// Whether a config-dir file name is one of the mutable half (kept by a [`Shared`]).
pub fn is_shared_name(name: &str) -> bool {
    name == "state"
        || name.ends_with(".cmdb")
        || name.ends_with(".cmdb.orig")
        || name.starts_with(".rdeploy-holds-")
}
