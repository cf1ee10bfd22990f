//! Role trees over HTTP: fresh installs and upgrades of deployed hosts.

use std::path::PathBuf;
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

/// A fresh install of a role tree onto a mounted target.
#[derive(Debug, Clone)]
pub struct InstallSpec {
    /// The server's base URL (`http://10.0.0.1:8080`).
    pub server: String,
    /// Role name (`install/<version>/<role>/` on the server).
    pub role: String,
    /// Role version.
    pub version: String,
    /// The profile the machine matched (recorded in `/var/lib/rdeploy/conf`).
    pub profile: String,
    /// Where the target's root filesystem is mounted (`/chroot`).
    pub target: PathBuf,
}

/// What an install moved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstallStats {
    /// Entries created (files, directories, links).
    pub files: u64,
    /// Bytes of file content transferred.
    pub bytes: u64,
}

/// Installs the role tree `spec` names under `spec.target`; `progress` gets one line for a
/// person now and then (bytes, files, rate). With `dry_run`, fetches the manifest and says what
/// it would install, writing nothing.
pub fn install(
    _spec: &InstallSpec,
    _dry_run: bool,
    _progress: &mut dyn FnMut(&str),
) -> anyhow::Result<InstallStats> {
    anyhow::bail!("role tree install: being written")
}
