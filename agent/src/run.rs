//! The provisioning run: detect, upload, configure, install, report, boot action.

use std::process::ExitCode;

/// `rdeploy-agent run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The rdeploy server (default: `rdeploy.server=` from the kernel command line).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// Runs `run`.
pub fn main(_args: &RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("run: being written")
}
