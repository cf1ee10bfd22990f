//! Registered systems: machines named by their MACs before (or without) an inventory (PXE
//! Manager's `addsystem`, PXE Pilot deploys and `localboot` of MACs no node owns), each with
//! its next boot, saved in `<data-dir>/systems.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::disk::{Disk, DiskError};
use super::identity::normalize_mac;
use super::record::BootTarget;

/// A machine registered by name and MACs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct System {
    pub macs: Vec<String>,
    pub boot: BootTarget,
}

/// A change to the registered systems that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SystemsError {
    #[error("{mac:?} is not a MAC address")]
    BadMac { mac: String },
    #[error("cannot encode the registered systems")]
    Encode(#[source] serde_json::Error),
    #[error("cannot save {}", file.display())]
    Save {
        file: PathBuf,
        #[source]
        err: DiskError,
    },
}

/// The registered systems, in memory and in `systems.json`.
#[derive(Debug)]
pub struct Systems {
    file: PathBuf,
    disk: Disk,
    systems: tokio::sync::Mutex<BTreeMap<String, System>>,
}

impl Systems {
    /// Reads `file` (none yet: no systems; unreadable: logged, no systems).
    pub fn load(file: PathBuf, disk: Disk) -> Systems {
        let systems = match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %file.display(), error = %e, "registered systems unreadable; starting without");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Systems {
            file,
            disk,
            systems: tokio::sync::Mutex::new(systems),
        }
    }

    /// The next boot registered for a MAC.
    pub async fn registered(&self, mac: &str) -> Option<BootTarget> {
        let mac = normalize_mac(mac)?;
        let systems = self.systems.lock().await;
        systems
            .values()
            .find(|s| s.macs.contains(&mac))
            .map(|s| s.boot.clone())
    }

    /// The registered systems by name.
    pub async fn all(&self) -> BTreeMap<String, System> {
        self.systems.lock().await.clone()
    }

    /// Registers (or re-registers) a system: a name for MACs, booting `install` until told
    /// otherwise (an existing system keeps its next boot).
    pub async fn add(&self, name: &str, macs: &[String]) -> Result<System, SystemsError> {
        let mut norm = Vec::new();
        for m in macs {
            norm.push(normalize_mac(m).ok_or_else(|| SystemsError::BadMac { mac: m.clone() })?);
        }
        let mut systems = self.systems.lock().await;
        let boot = systems
            .get(name)
            .map_or(BootTarget::Install, |s| s.boot.clone());
        let system = System { macs: norm, boot };
        systems.insert(name.to_owned(), system.clone());
        self.save(&systems).await?;
        Ok(system)
    }

    /// Sets the next boot of a registered system; `None` if there is none of that name.
    pub async fn set_boot(
        &self,
        name: &str,
        target: BootTarget,
    ) -> Result<Option<System>, SystemsError> {
        let mut systems = self.systems.lock().await;
        let Some(s) = systems.get_mut(name) else {
            return Ok(None);
        };
        s.boot = target;
        let changed = s.clone();
        self.save(&systems).await?;
        Ok(Some(changed))
    }

    /// Sets the next boot of the system holding `mac`, registering it as `mac-<mac>` if none
    /// does. Returns the system changed.
    pub async fn set_boot_by_mac(
        &self,
        mac: &str,
        target: BootTarget,
    ) -> Result<System, SystemsError> {
        let norm = normalize_mac(mac).ok_or_else(|| SystemsError::BadMac {
            mac: mac.to_owned(),
        })?;
        let mut systems = self.systems.lock().await;
        let changed = match systems.values_mut().find(|s| s.macs.contains(&norm)) {
            Some(s) => {
                s.boot = target;
                s.clone()
            }
            None => {
                let name = format!("mac-{}", norm.replace(':', "-"));
                let system = System {
                    macs: vec![norm],
                    boot: target,
                };
                systems.insert(name, system.clone());
                system
            }
        };
        self.save(&systems).await?;
        Ok(changed)
    }

    async fn save(&self, systems: &BTreeMap<String, System>) -> Result<(), SystemsError> {
        let text = serde_json::to_string_pretty(systems).map_err(SystemsError::Encode)? + "\n";
        let dir = self.file.parent().map(Path::to_owned).unwrap_or_default();
        let name = self.file.file_name().map_or_else(
            || "systems.json".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.disk
            .write_atomic(dir, name, text)
            .await
            .map_err(|err| SystemsError::Save {
                file: self.file.clone(),
                err,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn systems_survive_a_reload() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let file = tmp.path().join("systems.json");
        let systems = Systems::load(file.clone(), Disk::default());
        systems
            .add("rack1-u12", &["52-54-00-AA-00-01".to_owned()])
            .await?;
        assert!(systems
            .set_boot("rack1-u12", BootTarget::Local)
            .await?
            .is_some());
        assert!(systems
            .set_boot("nobody", BootTarget::Local)
            .await?
            .is_none());
        systems
            .set_boot_by_mac("52:54:00:bb:00:09", BootTarget::Install)
            .await?;
        assert!(matches!(
            systems.add("x", &["nope".to_owned()]).await,
            Err(SystemsError::BadMac { .. })
        ));
        let again = Systems::load(file, Disk::default());
        assert_eq!(
            again.registered("52:54:00:aa:00:01").await,
            Some(BootTarget::Local)
        );
        let names: Vec<String> = again.all().await.into_keys().collect();
        assert_eq!(names, ["mac-52-54-00-bb-00-09", "rack1-u12"]);
        Ok(())
    }
}
