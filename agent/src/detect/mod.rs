//! Hardware detection: builds eDeploy's inventory from `/sys`, `/proc` and DMI.

use std::path::PathBuf;
use std::process::ExitCode;

/// `rdeploy-agent detect`.
#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Read a captured tree (see `capture`) instead of the live /sys and /proc.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// `rdeploy-agent capture`.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Directory to write the captured tree into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs `detect`.
pub fn main(_args: &DetectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("detect: being written")
}

/// Runs `capture`.
pub fn capture_main(_args: &CaptureArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("capture: being written")
}
