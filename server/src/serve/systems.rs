//! Registered systems: machines named by their MACs before (or without) an inventory (PXE
//! Manager's `addsystem`, PXE Pilot deploys and `localboot` of MACs no node owns), each with
//! its next boot, saved in `<data-dir>/systems.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::identity::normalize_mac;
use super::record::BootTarget;
use super::store::{Change, Store, StoreError};

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
    #[error("cannot save the registered system {name}")]
    Save {
        name: String,
        #[source]
        err: StoreError,
    },
}

/// The registered systems, in memory and in the store (one row each: a change writes that
/// system alone).
#[derive(Debug)]
pub struct Systems {
    store: Store,
    systems: tokio::sync::Mutex<BTreeMap<String, System>>,
}

impl Systems {
    /// The systems the store loaded (JSON by name); an unreadable one is logged and
    /// skipped.
    pub fn new(loaded: Vec<(String, String)>, store: Store) -> Systems {
        let mut systems = BTreeMap::new();
        for (name, text) in loaded {
            match serde_json::from_str::<System>(&text) {
                Ok(s) => {
                    systems.insert(name, s);
                }
                Err(e) => tracing::warn!(system = %name, error = %e, "registered system skipped"),
            }
        }
        Systems {
            store,
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
        self.save(name, &system).await?;
        systems.insert(name.to_owned(), system.clone());
        Ok(system)
    }

    /// Sets the next boot of a registered system; `None` if there is none of that name.
    pub async fn set_boot(
        &self,
        name: &str,
        target: BootTarget,
    ) -> Result<Option<System>, SystemsError> {
        let mut systems = self.systems.lock().await;
        let Some(mut changed) = systems.get(name).cloned() else {
            return Ok(None);
        };
        changed.boot = target;
        self.save(name, &changed).await?;
        systems.insert(name.to_owned(), changed.clone());
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
        let (name, changed) = match systems.iter().find(|(_, s)| s.macs.contains(&norm)) {
            Some((name, s)) => (
                name.clone(),
                System {
                    boot: target,
                    ..s.clone()
                },
            ),
            None => (
                format!("mac-{}", norm.replace(':', "-")),
                System {
                    macs: vec![norm],
                    boot: target,
                },
            ),
        };
        self.save(&name, &changed).await?;
        systems.insert(name, changed.clone());
        Ok(changed)
    }

    /// Saves one system (the caller holds the lock, so saves of one system never cross).
    async fn save(&self, name: &str, system: &System) -> Result<(), SystemsError> {
        let record = serde_json::to_string(system).map_err(SystemsError::Encode)?;
        self.store
            .commit(Change::System {
                name: name.to_owned(),
                record: Some(record),
            })
            .await
            .map_err(|err| SystemsError::Save {
                name: name.to_owned(),
                err,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::store::Sqlite;

    #[tokio::test]
    async fn systems_survive_a_reload() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let open = || -> Result<Systems, Box<dyn std::error::Error>> {
            let (store, loaded) = Store::open(Sqlite::open(tmp.path())?)?;
            Ok(Systems::new(loaded.systems, store))
        };
        let systems = open()?;
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
        drop(systems);
        let again = open()?;
        assert_eq!(
            again.registered("52:54:00:aa:00:01").await,
            Some(BootTarget::Local)
        );
        let names: Vec<String> = again.all().await.into_keys().collect();
        assert_eq!(names, ["mac-52-54-00-bb-00-09", "rack1-u12"]);
        Ok(())
    }
}
