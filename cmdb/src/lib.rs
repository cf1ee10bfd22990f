//! rdeploy-cmdb: CMDB entries, `generate()` range expansion, `state` quotas, the config-dir
//! store and the `find_match` pipeline.

pub mod generate;
