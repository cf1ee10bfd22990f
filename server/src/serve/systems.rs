//! Registered systems: machines named by their MACs or IPv4 addresses before (or without)
//! an inventory (PXE Manager's `addsystem`, PXE Pilot deploys and `localboot` of MACs no
//! node owns), each with its next boot, saved in the store (one row each).
//!
//! The name `default` is reserved, as in PXE Manager: it holds the site default an
//! operator set (`pxemngr nextboot default PROFILE`), the next boot of every machine that
//! has nothing of its own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::boot::render::hex_prefix;
use super::identity::normalize_mac;
use super::record::BootTarget;
use super::store::{Change, Store, StoreError};

/// The reserved name of the site default.
pub const SITE_DEFAULT: &str = "default";

/// A machine registered by name, MACs and IPv4 addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct System {
    pub macs: Vec<String>,
    /// IPv4 addresses, or their first octets (`10.34`: a whole subnet, as PXE Manager
    /// allowed); each names a hex-IP PXELINUX file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    pub boot: BootTarget,
}

impl System {
    /// Whether the system answers to this address: the address itself, or a prefix of it
    /// registered (`10.34` holds `10.34.1.2`).
    fn prefix_len_for(&self, ip: &str) -> Option<usize> {
        let hex = hex_prefix(ip)?;
        self.addresses
            .iter()
            .filter_map(|a| hex_prefix(a))
            .filter(|h| hex.starts_with(h.as_str()))
            .map(|h| h.len())
            .max()
    }
}

/// A change to the registered systems that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SystemsError {
    #[error("{mac:?} is not a MAC address")]
    BadMac { mac: String },
    #[error("{address:?} is not an IPv4 address (or its first octets, such as 10.34)")]
    BadAddress { address: String },
    #[error("'{SITE_DEFAULT}' is a reserved name (the site default): it cannot be a system")]
    Reserved,
    #[error("system {name} not defined")]
    NoSuchSystem { name: String },
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

    /// The registered systems by name (the site default left out).
    pub async fn all(&self) -> BTreeMap<String, System> {
        let mut all = self.systems.lock().await.clone();
        all.remove(SITE_DEFAULT);
        all
    }

    /// The system of that name.
    pub async fn get(&self, name: &str) -> Option<System> {
        if name == SITE_DEFAULT {
            return None;
        }
        self.systems.lock().await.get(name).cloned()
    }

    /// The system registered with this address (or the longest prefix of it).
    pub async fn by_address(&self, ip: &str) -> Option<(String, System)> {
        let systems = self.systems.lock().await;
        systems
            .iter()
            .filter_map(|(n, s)| Some((s.prefix_len_for(ip)?, n, s)))
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, n, s)| (n.clone(), s.clone()))
    }

    /// The system named `key`, or holding the MAC `key`, or registered with the address
    /// `key` (PXE Manager's `dpysystem NAME|MAC|IP`).
    pub async fn find(&self, key: &str) -> Option<(String, System)> {
        if let Some(s) = self.get(key).await {
            return Some((key.to_owned(), s));
        }
        if let Some(mac) = normalize_mac(key) {
            let systems = self.systems.lock().await;
            return systems
                .iter()
                .find(|(_, s)| s.macs.contains(&mac))
                .map(|(n, s)| (n.clone(), s.clone()));
        }
        self.by_address(key).await
    }

    /// The site default an operator set, if any.
    pub async fn site_default(&self) -> Option<BootTarget> {
        let systems = self.systems.lock().await;
        systems.get(SITE_DEFAULT).map(|s| s.boot.clone())
    }

    /// Sets the site default (`nextboot default PROFILE`).
    pub async fn set_site_default(&self, target: BootTarget) -> Result<(), SystemsError> {
        let mut systems = self.systems.lock().await;
        let site = System {
            macs: Vec::new(),
            addresses: Vec::new(),
            boot: target,
        };
        self.save(SITE_DEFAULT, Some(&site)).await?;
        systems.insert(SITE_DEFAULT.to_owned(), site);
        Ok(())
    }

    /// Registers (or re-registers) a system: a name for MACs and addresses, booting
    /// `install` until told otherwise (an existing system keeps its next boot). A MAC or
    /// address another system held moves to this one (PXE Manager's `addsystem`); a system
    /// left with nothing is forgotten. Returns the system and the systems that lost some.
    pub async fn add(
        &self,
        name: &str,
        macs: &[String],
        addresses: &[String],
    ) -> Result<(System, Vec<(String, System)>), SystemsError> {
        if name == SITE_DEFAULT {
            return Err(SystemsError::Reserved);
        }
        let mut norm = Vec::new();
        for m in macs {
            let mac = normalize_mac(m).ok_or_else(|| SystemsError::BadMac { mac: m.clone() })?;
            if !norm.contains(&mac) {
                norm.push(mac);
            }
        }
        let mut addrs: Vec<String> = Vec::new();
        for a in addresses {
            if hex_prefix(a).is_none() {
                return Err(SystemsError::BadAddress { address: a.clone() });
            }
            if !addrs.contains(a) {
                addrs.push(a.clone());
            }
        }
        let mut systems = self.systems.lock().await;
        let boot = systems
            .get(name)
            .map_or(BootTarget::Install, |s| s.boot.clone());
        let system = System {
            macs: norm,
            addresses: addrs,
            boot,
        };
        // The new system first: a crash between the saves leaves a MAC in two systems (the
        // first found wins), never in none.
        self.save(name, Some(&system)).await?;
        systems.insert(name.to_owned(), system.clone());
        let others: Vec<(String, System)> = systems
            .iter()
            .filter(|(other, _)| *other != name && *other != SITE_DEFAULT)
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let mut losers = Vec::new();
        for (other, before) in others {
            let mut kept = before.clone();
            kept.macs.retain(|m| !system.macs.contains(m));
            kept.addresses.retain(|a| !system.addresses.contains(a));
            if kept == before {
                continue;
            }
            let empty = kept.macs.is_empty() && kept.addresses.is_empty();
            self.save(&other, (!empty).then_some(&kept)).await?;
            if empty {
                systems.remove(&other);
            } else {
                systems.insert(other.clone(), kept);
            }
            let lost = System {
                macs: before
                    .macs
                    .into_iter()
                    .filter(|m| system.macs.contains(m))
                    .collect(),
                addresses: before
                    .addresses
                    .into_iter()
                    .filter(|a| system.addresses.contains(a))
                    .collect(),
                boot: before.boot,
            };
            losers.push((other, lost));
        }
        Ok((system, losers))
    }

    /// Forgets a system (PXE Manager's `delsystem`); returns what it was.
    pub async fn remove(&self, name: &str) -> Result<System, SystemsError> {
        if name == SITE_DEFAULT {
            return Err(SystemsError::Reserved);
        }
        let mut systems = self.systems.lock().await;
        if !systems.contains_key(name) {
            return Err(SystemsError::NoSuchSystem {
                name: name.to_owned(),
            });
        }
        self.save(name, None).await?;
        systems
            .remove(name)
            .ok_or_else(|| SystemsError::NoSuchSystem {
                name: name.to_owned(),
            })
    }

    /// Sets the next boot of a registered system; `None` if there is none of that name.
    pub async fn set_boot(
        &self,
        name: &str,
        target: BootTarget,
    ) -> Result<Option<System>, SystemsError> {
        if name == SITE_DEFAULT {
            return Ok(None);
        }
        let mut systems = self.systems.lock().await;
        let Some(mut changed) = systems.get(name).cloned() else {
            return Ok(None);
        };
        changed.boot = target;
        self.save(name, Some(&changed)).await?;
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
                    addresses: Vec::new(),
                    boot: target,
                },
            ),
        };
        self.save(&name, Some(&changed)).await?;
        systems.insert(name, changed.clone());
        Ok(changed)
    }

    /// Saves one system, or removes it (`None`); the caller holds the lock, so saves of one
    /// system never cross.
    async fn save(&self, name: &str, system: Option<&System>) -> Result<(), SystemsError> {
        let record = system
            .map(serde_json::to_string)
            .transpose()
            .map_err(SystemsError::Encode)?;
        self.store
            .commit(Change::System {
                name: name.to_owned(),
                record,
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

    fn open(dir: &std::path::Path) -> Result<Systems, Box<dyn std::error::Error>> {
        let (store, loaded) = Store::open(Sqlite::open(dir)?)?;
        Ok(Systems::new(loaded.systems, store))
    }

    #[tokio::test]
    async fn systems_survive_a_reload() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let systems = open(tmp.path())?;
        systems
            .add("rack1-u12", &["52-54-00-AA-00-01".to_owned()], &[])
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
            systems.add("x", &["nope".to_owned()], &[]).await,
            Err(SystemsError::BadMac { .. })
        ));
        assert!(matches!(
            systems.add("x", &[], &["10.0.0.300".to_owned()]).await,
            Err(SystemsError::BadAddress { .. })
        ));
        assert!(matches!(
            systems.add("default", &[], &["10.0.0.1".to_owned()]).await,
            Err(SystemsError::Reserved)
        ));
        drop(systems);
        let again = open(tmp.path())?;
        assert_eq!(
            again.registered("52:54:00:aa:00:01").await,
            Some(BootTarget::Local)
        );
        let names: Vec<String> = again.all().await.into_keys().collect();
        assert_eq!(names, ["mac-52-54-00-bb-00-09", "rack1-u12"]);
        Ok(())
    }

    /// PXE Manager's rules: a MAC or address moves to the system that claims it, a system
    /// is found by name, MAC or (a prefix of its) address, `default` is the site default.
    #[tokio::test]
    async fn addresses_prefixes_moves_and_the_site_default(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let systems = open(tmp.path())?;
        systems
            .set_boot_by_mac("52:54:00:bb:00:09", BootTarget::Local)
            .await?;
        systems.add("lab", &[], &["10.34".to_owned()]).await?;
        let (_, lost) = systems
            .add(
                "h1",
                &["52:54:00:bb:00:09".to_owned()],
                &["10.34.1.2".to_owned()],
            )
            .await?;
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(lost[0].0, "mac-52-54-00-bb-00-09");
        let names: Vec<String> = systems.all().await.into_keys().collect();
        assert_eq!(names, ["h1", "lab"]);
        assert_eq!(
            systems.find("10.34.1.2").await.map(|f| f.0).as_deref(),
            Some("h1")
        );
        assert_eq!(
            systems.find("10.34.9.9").await.map(|f| f.0).as_deref(),
            Some("lab")
        );
        assert_eq!(
            systems
                .find("52-54-00-BB-00-09")
                .await
                .map(|f| f.0)
                .as_deref(),
            Some("h1")
        );
        assert!(systems.find("10.35.0.1").await.is_none());
        assert_eq!(systems.site_default().await, None);
        systems.set_site_default(BootTarget::Local).await?;
        assert_eq!(systems.site_default().await, Some(BootTarget::Local));
        assert!(systems.get("default").await.is_none());
        assert!(!systems.all().await.contains_key("default"));
        assert!(matches!(
            systems.remove("default").await,
            Err(SystemsError::Reserved)
        ));
        systems.remove("lab").await?;
        assert!(matches!(
            systems.remove("lab").await,
            Err(SystemsError::NoSuchSystem { .. })
        ));
        // The moves, the removal and the site default are in the store.
        drop(systems);
        let again = open(tmp.path())?;
        let names: Vec<String> = again.all().await.into_keys().collect();
        assert_eq!(names, ["h1"]);
        assert_eq!(again.site_default().await, Some(BootTarget::Local));
        Ok(())
    }
}
