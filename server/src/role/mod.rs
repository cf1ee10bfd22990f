//! `rdeploy role build | diff`: role trees built from role files, and upgrades prepared
//! between built versions (`docs/roles.md#building-roles`).
//!
//! [`file`] reads role files (pure); [`build`] bootstraps and assembles a tree in a chroot
//! ([`chroot`]); [`diff`] compares two versions and writes the upgrade's `exclude` skeleton.

pub mod build;
pub mod chroot;
pub mod diff;
pub mod file;

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::commands::Outcome;

/// `rdeploy role ...`.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Build DATA_DIR/install/<version>/<role>/ from a role file (needs root and mmdebstrap).
    ///
    /// The base is a Debian suite bootstrapped with mmdebstrap (cached under --cache-dir,
    /// keyed by the role file's [base] section) or another built role; then packages,
    /// files, commands in a chroot, the strip list, and every time clamped to the epoch.
    /// The tree is built beside its final place and renamed there at the end: a failed
    /// build leaves nothing in install/.
    #[command(
        after_help = "Examples:\n  rdeploy role build examples/roles/base.toml --data-dir /var/lib/rdeploy\n  rdeploy role build examples/roles/mysql.toml --data-dir /var/lib/rdeploy"
    )]
    Build(BuildArgs),
    /// What changed between two versions of a role (added, removed, changed files, bytes),
    /// and the skeleton of the upgrade's metadata/<from>/<role>/<to>/exclude to edit.
    #[command(
        after_help = "Example:\n  rdeploy role diff base 12.1 12.2 --data-dir /var/lib/rdeploy"
    )]
    Diff(DiffArgs),
}

/// `rdeploy role build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The role file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The server's data dir (as given to `rdeploy serve --data-dir`).
    #[arg(long, value_name = "DIR", default_value = "rdeploy-data")]
    pub data_dir: PathBuf,
    /// Where bootstrapped bases are cached (default: $XDG_CACHE_HOME/rdeploy, else
    /// /var/cache/rdeploy).
    #[arg(long, value_name = "DIR", env = "RDEPLOY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Replace the tree when this role and version exist already.
    #[arg(long)]
    pub force: bool,
    /// Bootstrap the base again even when it is cached.
    #[arg(long)]
    pub refresh_base: bool,
}

/// `rdeploy role diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The role.
    pub role: String,
    /// The version hosts run.
    pub from: String,
    /// The version they upgrade to.
    pub to: String,
    /// The server's data dir.
    #[arg(long, value_name = "DIR", default_value = "rdeploy-data")]
    pub data_dir: PathBuf,
    /// Rewrite the exclude file even if it exists.
    #[arg(long)]
    pub force: bool,
    /// Only the summary, not one line per change.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `rdeploy role ...`.
pub fn main(cmd: &RoleCommand) -> anyhow::Result<Outcome> {
    match cmd {
        RoleCommand::Build(a) => {
            let cache_dir = a.cache_dir.clone().unwrap_or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(|d| PathBuf::from(d).join("rdeploy"))
                    .unwrap_or_else(|| PathBuf::from("/var/cache/rdeploy"))
            });
            let built = build::build(
                &a.file,
                &build::Options {
                    data_dir: a.data_dir.clone(),
                    cache_dir,
                    force: a.force,
                    refresh_base: a.refresh_base,
                },
            )?;
            println!(
                "{} {} entries {} bytes manifest {}",
                built.tree.display(),
                built.entries,
                built.bytes,
                built.manifest_id
            );
        }
        RoleCommand::Diff(a) => diff::run(&a.data_dir, &a.role, &a.from, &a.to, a.force, a.quiet)?,
    }
    Ok(Outcome::Ok)
}
