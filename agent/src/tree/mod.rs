//! Role trees over HTTP: fresh installs and upgrades of deployed hosts.

use std::process::ExitCode;

/// `rdeploy-agent upgrade`.
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// The version to upgrade to.
    pub version: Option<String>,
}

/// Runs `upgrade`.
pub fn upgrade_main(_args: &UpgradeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("upgrade: being written")
}
