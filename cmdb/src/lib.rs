//! rdeploy-cmdb: CMDB entries, `generate()` range expansion, `state` quotas, the config-dir
//! store and the `find_match` pipeline.
//!
//! Everything but [`store`] and [`snapshot`] is pure: [`pipeline::find_match`] takes loaded
//! files and an inventory and returns a [`pipeline::Plan`]. [`snapshot::Snapshot`] is the
//! config dir parsed and cached, with the one usability policy and the batch that plans
//! and commits; [`store`] is the lock and the atomic, journaled writes under it.

pub mod cmdb;
pub mod generate;
pub mod ledger;
pub mod pipeline;
pub mod shared;
pub mod snapshot;
pub mod state;
pub mod store;

pub use cmdb::Cmdb;
pub use pipeline::{find_match, MatchError, Plan};
pub use snapshot::{Refusal, Snapshot};
pub use state::{Quota, State};
pub use store::ConfigDir;
