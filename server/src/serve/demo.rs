//! The demo config dir built into the binary (`examples/config/`), so `rdeploy serve`
//! with no flags starts and answers `curl -F file=@examples/hw/kvm.json .../upload`.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The files of `examples/config/`, by name.
pub const FILES: &[(&str, &str)] = &[
    ("state", include_str!("../../../examples/config/state")),
    (
        "kvm.specs",
        include_str!("../../../examples/config/kvm.specs"),
    ),
    (
        "kvm.cmdb",
        include_str!("../../../examples/config/kvm.cmdb"),
    ),
    (
        "kvm.configure",
        include_str!("../../../examples/config/kvm.configure"),
    ),
    (
        "hp.specs",
        include_str!("../../../examples/config/hp.specs"),
    ),
    ("hp.cmdb", include_str!("../../../examples/config/hp.cmdb")),
    (
        "hp.configure",
        include_str!("../../../examples/config/hp.configure"),
    ),
];

/// Writes the demo config to `<data-dir>/demo-config` unless it is already there (it is
/// then used as it is, with the allocations it holds); returns its path.
pub fn extract(data_dir: &Path) -> Result<PathBuf> {
    let dir = data_dir.join("demo-config");
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = data_dir.join(".demo-config.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    for (name, text) in FILES {
        rdeploy_cmdb::store::write_atomic(&tmp, name, text)
            .with_context(|| format!("cannot write the demo config in {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdeploy_cmdb::snapshot::match_and_save;
    use rdeploy_cmdb::ConfigDir;
    use rdeploy_specs::Inventory;

    #[test]
    fn the_demo_config_matches_the_example_kvm_inventory() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = extract(tmp.path())?;
        assert_eq!(extract(tmp.path())?, dir, "extracted once");
        let hw = Inventory::parse(include_str!("../../../examples/hw/kvm.json"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let plan = match_and_save(&ConfigDir::new(&dir), &hw)?;
        assert_eq!(plan.profile, "kvm");
        assert_eq!(
            plan.vars.get("ip").and_then(|v| v.as_str()),
            Some("192.168.122.10")
        );
        Ok(())
    }
}
