//! Boot control: each machine's next boot (`install`, `local`, a named boot profile),
//! rendered as an iPXE script over HTTP and as PXELINUX files under a TFTP root.
//!
//! - [`render`]: the pure rendering (no IO);
//! - [`BootFiles`]: the boot profiles on disk (`<name>.prof`, `<name>.ipxe`) and the
//!   PXELINUX files under `--tftp-root`, rewritten only when their text changes.
//!
//! Nothing here decides *which* boot a machine gets: the core does, and calls
//! [`BootFiles::sync`] after every change of a node's or a registered system's next boot.

pub mod render;

use std::path::{Path, PathBuf};

pub use super::record::{parse_boot, BootTarget};
pub use render::{hex_ip, mac_file, BootConfig};

/// The boot profiles and the TFTP root.
#[derive(Debug, Clone)]
pub struct BootFiles {
    pub config: BootConfig,
    /// The TFTP root where PXELINUX files are written, if any.
    pub tftp_root: Option<PathBuf>,
    /// Boot profiles: `<name>.prof` (PXELINUX) and `<name>.ipxe`.
    pub profiles_dir: PathBuf,
}

impl BootFiles {
    /// Profiles under `<tftp-root>/pxelinux.cfg/profiles/` (PXE Manager's place), or
    /// `<data-dir>/boot-profiles/` without a TFTP root.
    pub fn new(config: BootConfig, tftp_root: Option<PathBuf>, data_dir: &Path) -> BootFiles {
        let profiles_dir = match &tftp_root {
            Some(t) => t.join("pxelinux.cfg").join("profiles"),
            None => data_dir.join("boot-profiles"),
        };
        BootFiles {
            config,
            tftp_root,
            profiles_dir,
        }
    }

    fn profile_text(&self, name: &str, ext: &str) -> Option<String> {
        std::fs::read_to_string(self.profiles_dir.join(format!("{name}.{ext}"))).ok()
    }

    /// The boot profiles there are files for (names of `*.prof` and `*.ipxe`).
    pub fn profiles(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.profiles_dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let stem = name
                            .strip_suffix(".prof")
                            .or_else(|| name.strip_suffix(".ipxe"))?;
                        parse_boot(stem).map(|_| stem.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names
    }

    /// Whether a boot target can be rendered (`install`, `local`, or a profile with a file).
    pub fn knows(&self, target: &BootTarget) -> bool {
        match target {
            BootTarget::Install | BootTarget::Local => true,
            BootTarget::Profile { name } => self.profiles().iter().any(|p| p == name),
        }
    }

    /// The iPXE script for a target.
    pub fn ipxe(&self, target: &BootTarget, who: &str) -> String {
        let profile = match target {
            BootTarget::Profile { name } => self.profile_text(name, "ipxe"),
            _ => None,
        };
        self.config.ipxe(target, who, profile.as_deref())
    }

    /// The PXELINUX file for a target.
    pub fn pxelinux(&self, target: &BootTarget) -> String {
        let profile = match target {
            BootTarget::Install => None,
            BootTarget::Local => self.profile_text("local", "prof"),
            BootTarget::Profile { name } => self.profile_text(name, "prof"),
        };
        self.config.pxelinux(target, profile.as_deref())
    }

    /// The PXELINUX file names of a machine: `01-<mac>` per MAC, and the hex-IP name when
    /// it has an IPv4 address.
    pub fn file_names(macs: &[String], ip: Option<&str>) -> Vec<String> {
        let mut names: Vec<String> = macs
            .iter()
            .filter_map(|m| super::identity::normalize_mac(m))
            .map(|m| mac_file(&m))
            .collect();
        if let Some(ip) = ip.and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok()) {
            names.push(hex_ip(ip));
        }
        names
    }

    /// Rewrites the PXELINUX files `names` for `target` when their content changes.
    /// Nothing without a TFTP root. Blocking IO: call it off the async workers.
    pub fn sync(&self, names: &[String], target: &BootTarget) -> std::io::Result<()> {
        let Some(root) = &self.tftp_root else {
            return Ok(());
        };
        let dir = root.join("pxelinux.cfg");
        std::fs::create_dir_all(&dir)?;
        let text = self.pxelinux(target);
        for name in names {
            if std::fs::read_to_string(dir.join(name)).ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            rdeploy_cmdb::store::write_atomic(&dir, name, &text).map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}
