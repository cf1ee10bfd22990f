//! rdeploy-cmdb: CMDB entries, `generate()` range expansion, `state` quotas, the config-dir
//! store and the `find_match` pipeline.
//!
//! Everything but [`store`] is pure: [`pipeline::find_match`] takes loaded files and an
//! inventory and returns a [`pipeline::Plan`]; [`store`] locks the config dir, loads,
//! plans, and writes the result atomically.

pub mod cmdb;
pub mod generate;
pub mod pipeline;
pub mod state;
pub mod store;

pub use cmdb::Cmdb;
pub use pipeline::{find_match, MatchError, Plan};
pub use state::{Quota, State};
pub use store::ConfigDir;
