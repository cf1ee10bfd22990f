//! The command line of `rdeploy-agent`: one subcommand per job; each module owns its arguments.

use clap::{Parser, Subcommand};

/// rdeploy-agent: runs in the PXE initramfs to provision a machine, and on deployed hosts to
/// upgrade their role tree.
#[derive(Debug, Parser)]
#[command(name = "rdeploy-agent", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v: debug). RDEPLOY_LOG overrides (e.g. RDEPLOY_LOG=trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this machine's hardware inventory (eDeploy's 4-tuples).
    Detect(crate::detect::DetectArgs),
    /// Copy the parts of /sys, /proc and DMI that detection reads into a directory (a fixture
    /// tree for `detect --root`).
    Capture(crate::detect::CaptureArgs),
    /// Provision this machine: detect, upload, configure, install, report, boot.
    Run(crate::run::RunArgs),
    /// Upgrade a deployed host's role tree (eDeploy's list, test-upgrade, upgrade, verify, ...).
    Upgrade(crate::tree::UpgradeArgs),
    /// Run the tests an rdeploy server queues for this host, one after the other, and
    /// upload their output (PXE Manager's test loop, as a service).
    TestLoop(crate::testloop::TestLoopArgs),
}
