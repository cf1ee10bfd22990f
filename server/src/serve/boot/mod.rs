//! Boot control: each machine's next boot (`install`, `local`, a named boot profile),
//! rendered as an iPXE script over HTTP and as PXELINUX files under a TFTP root.
//!
//! - [`render`]: the pure rendering (no IO);
//! - [`BootFiles`]: the boot profiles on disk and the PXELINUX files under `--tftp-root`,
//!   rewritten only when they change.
//!
//! Boot profiles are read where each seed system kept them: PXE Manager's
//! `pxelinux.cfg/profiles/<name>.prof` (and `<name>.ipxe` for iPXE), and PXE Pilot's
//! `pxelinux.cfg/conf/<name>`. A machine whose next boot is such a profile gets a
//! **symlink** to the profile's file (`01-<mac> -> profiles/rescue.prof`), as PXE Manager,
//! PXE Pilot and OMF made them, so `ls -l pxelinux.cfg` tells who boots what and an edit of
//! the profile reaches every machine at once; `install` (and `local` without a profile file)
//! is a file rdeploy renders.
//!
//! Nothing here decides *which* boot a machine gets: the core does, and calls
//! [`BootFiles::sync`] after every change of a node's or a registered system's next boot.

pub mod render;

use std::path::{Path, PathBuf};

pub use super::record::{parse_boot, BootTarget};
pub use render::{hex_ip, mac_file, BootConfig};

/// PXELINUX's site default, tried after every per-machine name.
pub const DEFAULT_FILE: &str = "default";

/// The boot profiles and the TFTP root.
#[derive(Debug, Clone)]
pub struct BootFiles {
    pub config: BootConfig,
    /// The TFTP root where PXELINUX files are written, if any.
    pub tftp_root: Option<PathBuf>,
    /// Boot profiles: `<name>.prof` (PXELINUX) and `<name>.ipxe`.
    pub profiles_dir: PathBuf,
    /// PXE Pilot's configurations (`<tftp-root>/pxelinux.cfg/conf/<name>`), PXELINUX only.
    pub conf_dir: Option<PathBuf>,
    /// `--omf-link-lifetime`: an OMF `setBootImage` link lapses after this long (OMF's
    /// `linkLifetime`, 300 s); `None`: links stay until `clearBootImage`.
    pub omf_link_lifetime: Option<std::time::Duration>,
}

/// What a PXELINUX file name should be: a link to a profile's file, or rendered text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    Link(PathBuf),
    Text(String),
}

impl BootFiles {
    /// Profiles under `<tftp-root>/pxelinux.cfg/profiles/` (PXE Manager's place) and
    /// `<tftp-root>/pxelinux.cfg/conf/` (PXE Pilot's), or `<data-dir>/boot-profiles/`
    /// without a TFTP root.
    pub fn new(config: BootConfig, tftp_root: Option<PathBuf>, data_dir: &Path) -> BootFiles {
        let (profiles_dir, conf_dir) = match &tftp_root {
            Some(t) => {
                let cfg = t.join("pxelinux.cfg");
                (cfg.join("profiles"), Some(cfg.join("conf")))
            }
            None => (data_dir.join("boot-profiles"), None),
        };
        BootFiles {
            config,
            tftp_root,
            profiles_dir,
            conf_dir,
            omf_link_lifetime: None,
        }
    }

    /// `<tftp-root>/pxelinux.cfg`, where the per-machine files go.
    pub fn pxelinux_dir(&self) -> Option<PathBuf> {
        self.tftp_root.as_ref().map(|t| t.join("pxelinux.cfg"))
    }

    /// The PXELINUX file of a boot profile: `profiles/<name>.prof`, else PXE Pilot's
    /// `conf/<name>`.
    pub fn profile_file(&self, name: &str) -> Option<PathBuf> {
        parse_boot(name)?;
        let prof = self.profiles_dir.join(format!("{name}.prof"));
        if prof.is_file() {
            return Some(prof);
        }
        let conf = self.conf_dir.as_ref()?.join(name);
        conf.is_file().then_some(conf)
    }

    fn ipxe_text(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.profiles_dir.join(format!("{name}.ipxe"))).ok()
    }

    fn pxelinux_text(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.profile_file(name)?).ok()
    }

    /// Whether PXE Manager's mandatory `local` profile has a PXELINUX file.
    pub fn has_local(&self) -> bool {
        self.profile_file("local").is_some()
    }

    /// The boot profiles there are files for (`profiles/*.prof`, `profiles/*.ipxe`,
    /// `conf/*`), sorted.
    pub fn profiles(&self) -> Vec<String> {
        let mut names: Vec<String> = names_in(&self.profiles_dir)
            .into_iter()
            .filter_map(|name| {
                let stem = name
                    .strip_suffix(".prof")
                    .or_else(|| name.strip_suffix(".ipxe"))?;
                Some(stem.to_owned())
            })
            .collect();
        if let Some(conf) = &self.conf_dir {
            names.extend(
                names_in(conf)
                    .into_iter()
                    .filter(|n| conf.join(n).is_file()),
            );
        }
        names.retain(|n| parse_boot(n).is_some());
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
            BootTarget::Profile { name } => self.ipxe_text(name),
            _ => None,
        };
        self.config.ipxe(target, who, profile.as_deref())
    }

    /// The PXELINUX text for a target.
    pub fn pxelinux(&self, target: &BootTarget) -> String {
        let profile = match target {
            BootTarget::Install => None,
            BootTarget::Local => self.pxelinux_text("local"),
            BootTarget::Profile { name } => self.pxelinux_text(name),
        };
        self.config.pxelinux(target, profile.as_deref())
    }

    /// What a machine's PXELINUX file should be: a relative symlink to the profile's file,
    /// or the rendered text.
    fn wanted(&self, dir: &Path, target: &BootTarget) -> Wanted {
        let file = match target {
            BootTarget::Install => None,
            BootTarget::Local => self.profile_file("local"),
            BootTarget::Profile { name } => self.profile_file(name),
        };
        match file {
            Some(f) => Wanted::Link(
                f.strip_prefix(dir)
                    .map_or_else(|_| f.clone(), Path::to_owned),
            ),
            None => Wanted::Text(self.pxelinux(target)),
        }
    }

    /// The PXELINUX file names of a machine: `01-<mac>` per MAC, and the hex-IP name of
    /// each IPv4 address (a partial address, `10.34`, gives the prefix `0A22` that PXELINUX
    /// tries for a whole subnet, as PXE Manager allowed).
    pub fn file_names(macs: &[String], addresses: &[String]) -> Vec<String> {
        let mut names: Vec<String> = macs
            .iter()
            .filter_map(|m| super::identity::normalize_mac(m))
            .map(|m| mac_file(&m))
            .collect();
        names.extend(addresses.iter().filter_map(|a| render::hex_prefix(a)));
        names
    }

    /// Makes the PXELINUX files `names` boot `target`, changing only those that differ.
    /// Nothing without a TFTP root. Blocking IO: call it off the async workers.
    pub fn sync(&self, names: &[String], target: &BootTarget) -> std::io::Result<()> {
        let Some(dir) = self.pxelinux_dir() else {
            return Ok(());
        };
        std::fs::create_dir_all(&dir)?;
        let wanted = self.wanted(&dir, target);
        for name in names {
            place(&dir, name, &wanted)?;
        }
        Ok(())
    }

    /// Removes PXELINUX files (a deleted system, OMF's `clearBootImage`): the site default
    /// applies to the machine again.
    pub fn remove(&self, names: &[String]) -> std::io::Result<()> {
        let Some(dir) = self.pxelinux_dir() else {
            return Ok(());
        };
        for name in names {
            match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// PXE Manager's `nextboot default PROFILE`: `pxelinux.cfg/default` boots `target`.
    pub fn set_default(&self, target: &BootTarget) -> std::io::Result<()> {
        self.sync(&[DEFAULT_FILE.to_owned()], target)
    }

    /// Writes `pxelinux.cfg/default` booting the local disk (OMF's default) when the TFTP
    /// root has none; an operator's own `default` is never touched. Returns whether it wrote.
    pub fn ensure_default(&self) -> std::io::Result<bool> {
        let Some(dir) = self.pxelinux_dir() else {
            return Ok(false);
        };
        if std::fs::symlink_metadata(dir.join(DEFAULT_FILE)).is_ok() {
            return Ok(false);
        }
        std::fs::create_dir_all(&dir)?;
        let text = format!(
            "# rdeploy: no pxelinux.cfg/default was here: machines without a file of their own boot their disk\n{}",
            self.pxelinux(&BootTarget::Local)
        );
        place(&dir, DEFAULT_FILE, &Wanted::Text(text))?;
        Ok(true)
    }
}

/// File names in a directory (none if it cannot be read).
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Makes `dir/name` what is wanted, atomically (a temporary name, then a rename over the
/// old entry), and only when it differs.
fn place(dir: &Path, name: &str, wanted: &Wanted) -> std::io::Result<()> {
    let path = dir.join(name);
    let current = std::fs::symlink_metadata(&path).ok();
    let is_link = current.as_ref().is_some_and(|m| m.file_type().is_symlink());
    match wanted {
        Wanted::Link(target) => {
            if is_link && std::fs::read_link(&path).ok().as_deref() == Some(target.as_path()) {
                return Ok(());
            }
            let tmp = dir.join(format!(".{name}.rdeploy-link"));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(target, &tmp)?;
            std::fs::rename(&tmp, &path)
        }
        Wanted::Text(text) => {
            if current.is_some()
                && !is_link
                && std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str())
            {
                return Ok(());
            }
            rdeploy_cmdb::store::write_atomic(dir, name, text).map_err(std::io::Error::other)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(tmp: &Path) -> std::io::Result<BootFiles> {
        let tftp = tmp.join("tftp");
        let cfg = tftp.join("pxelinux.cfg");
        std::fs::create_dir_all(cfg.join("profiles"))?;
        std::fs::create_dir_all(cfg.join("conf"))?;
        std::fs::write(cfg.join("profiles/local.prof"), "LOCALBOOT 0\n")?;
        std::fs::write(cfg.join("conf/ubuntu-16.04"), "DEFAULT ubuntu\n")?;
        Ok(BootFiles::new(
            BootConfig::new("http://10.0.0.1"),
            Some(tftp),
            tmp,
        ))
    }

    #[test]
    fn profiles_become_symlinks_and_install_a_file() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let b = files(tmp.path())?;
        assert_eq!(b.profiles(), ["local", "ubuntu-16.04"]);
        let dir = b.pxelinux_dir().ok_or("no dir")?;
        let names = BootFiles::file_names(&["52:54:00:AA:00:01".into()], &["10.0.0.5".into()]);
        assert_eq!(names, ["01-52-54-00-aa-00-01", "0A000005"]);
        let ubuntu = BootTarget::Profile {
            name: "ubuntu-16.04".into(),
        };
        b.sync(&names, &ubuntu)?;
        for n in &names {
            assert_eq!(
                std::fs::read_link(dir.join(n))?,
                Path::new("conf/ubuntu-16.04")
            );
            assert_eq!(std::fs::read_to_string(dir.join(n))?, "DEFAULT ubuntu\n");
        }
        b.sync(&names, &BootTarget::Local)?;
        assert_eq!(
            std::fs::read_link(dir.join("0A000005"))?,
            Path::new("profiles/local.prof")
        );
        b.sync(&names, &BootTarget::Install)?;
        let meta = std::fs::symlink_metadata(dir.join("0A000005"))?;
        assert!(meta.is_file());
        assert!(std::fs::read_to_string(dir.join("0A000005"))?.contains("rdeploy.server="));
        b.remove(&names)?;
        b.remove(&names)?;
        assert!(!dir.join("0A000005").exists());
        Ok(())
    }

    #[test]
    fn the_site_default_is_written_once_and_an_operators_is_kept(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let b = files(tmp.path())?;
        let dir = b.pxelinux_dir().ok_or("no dir")?;
        assert!(b.ensure_default()?);
        assert!(std::fs::read_to_string(dir.join("default"))?.contains("LOCALBOOT 0"));
        assert!(!b.ensure_default()?);
        b.set_default(&BootTarget::Profile {
            name: "ubuntu-16.04".into(),
        })?;
        assert_eq!(
            std::fs::read_link(dir.join("default"))?,
            Path::new("conf/ubuntu-16.04")
        );
        assert!(!b.ensure_default()?);
        Ok(())
    }
}
