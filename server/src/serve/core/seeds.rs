//! The core's decisions for the seed systems' calls, on the same state as every other
//! decision (node records, registered systems, boot files):
//!
//! - PXE Manager: a machine found by any name it has (node id, system name, CMDB hostname,
//!   MAC, address), the caller of `/localboot/` found by any address it is known by,
//!   `delsystem`, `dpysystem`, `syncbootnames`;
//! - PXE Pilot: deploys to hosts by MAC or by name, the host list, a configuration's text;
//! - OMF: `setBootImage` links a node's hex-IP name to its image, `clearBootImage` and the
//!   link lifetime send it back to its disk.
//!
//! Every change of a next boot goes through [`Core::set_machine_boot`], so the node's life
//! cycle records it and the PXELINUX files follow, whichever seed asked.

use std::net::IpAddr;
use std::time::Instant;

use super::super::boot::{hex_ip, BootTarget};
use super::super::error::ApiError;
use super::super::identity::normalize_mac;
use super::super::lifecycle::Transition;
use super::super::record::Node;
use super::super::systems::System;
use super::{system_info, Core};
use crate::wire::{
    BootChange, BootProfiles, NodeBoot, OmfNode, PilotConfiguration, PilotConfigurationContent,
    PilotDeployed, PilotHost, SystemInfo,
};

/// A machine the server knows: a node (it sent an inventory) or a registered system.
#[derive(Debug, Clone)]
pub enum Machine {
    Node(Box<Node>),
    System { name: String, system: System },
}

impl Machine {
    /// The node id or the system name.
    pub fn name(&self) -> &str {
        match self {
            Machine::Node(n) => &n.id,
            Machine::System { name, .. } => name,
        }
    }

    /// Its next boot.
    pub fn boot(&self) -> &BootTarget {
        match self {
            Machine::Node(n) => &n.boot,
            Machine::System { system, .. } => &system.boot,
        }
    }

    fn macs(&self) -> &[String] {
        match self {
            Machine::Node(n) => &n.identity.macs,
            Machine::System { system, .. } => &system.macs,
        }
    }

    /// The IPv4 address its hex-IP PXELINUX name comes from: a node's CMDB `ip`, a
    /// system's first whole registered address.
    fn ipv4(&self) -> Option<std::net::Ipv4Addr> {
        match self {
            Machine::Node(n) => n.var.as_ref()?.get("ip")?.as_str()?.parse().ok(),
            Machine::System { system, .. } => system.addresses.iter().find_map(|a| a.parse().ok()),
        }
    }

    /// What an operator's `nextboot` answer says about it.
    pub(super) fn boot_change(&self, mac: Option<String>) -> BootChange {
        let (node, system) = match self {
            Machine::Node(n) => (Some(n.id.clone()), None),
            Machine::System { name, .. } => (None, Some(name.clone())),
        };
        BootChange {
            node,
            system,
            mac,
            boot: self.boot().to_string(),
        }
    }

    /// PXE Manager's answers, as JSON.
    pub fn node_boot(&self) -> NodeBoot {
        NodeBoot {
            id: self.name().to_owned(),
            state: match self {
                Machine::Node(n) => Some(n.state),
                Machine::System { .. } => None,
            },
            boot: self.boot().to_string(),
        }
    }
}

/// A host of a PXE Pilot deploy: by MAC (`macAddress`) or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRef {
    Mac(String),
    Name(String),
}

fn no_such_machine(key: &str) -> ApiError {
    ApiError::not_found(
        "no_such_node",
        format!("'{key}' is neither a node, a registered system, a hostname, a MAC nor an address this server knows"),
    )
}

impl Core {
    /// The machine called `key`: a node id, a registered system, a CMDB `hostname`, a MAC
    /// (its node first), or an address (its node first: CMDB `ip`, inventory, uploads).
    pub async fn find(&self, key: &str) -> Option<Machine> {
        if let Some(n) = self.nodes.get(key) {
            return Some(Machine::Node(Box::new(n)));
        }
        if let Some(system) = self.systems.get(key).await {
            return Some(Machine::System {
                name: key.to_owned(),
                system,
            });
        }
        if let Some(n) = self.nodes.by_hostname(key) {
            return Some(Machine::Node(Box::new(n)));
        }
        if let Some(mac) = normalize_mac(key) {
            if let Some(n) = self.nodes.by_mac(&mac) {
                return Some(Machine::Node(Box::new(n)));
            }
        } else if let Some(n) = self.nodes.by_address(key) {
            return Some(Machine::Node(Box::new(n)));
        }
        let (name, system) = self.systems.find(key).await?;
        Some(Machine::System { name, system })
    }

    /// The machine that calls from `ip` (PXE Manager's `/localboot/`, `/profile/`): the
    /// node known by that address (its CMDB `ip`, an address its inventory reported, the
    /// address its uploads came from), else the system registered with it (or with a
    /// prefix of it, as PXE Manager matched).
    pub async fn caller(&self, ip: IpAddr) -> Result<Machine, ApiError> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        }
        .to_string();
        if let Some(n) = self.nodes.by_address(&ip) {
            return Ok(Machine::Node(Box::new(n)));
        }
        if let Some((name, system)) = self.systems.by_address(&ip).await {
            return Ok(Machine::System { name, system });
        }
        Err(ApiError::not_found(
            "no_such_node",
            format!("no node or registered system is known by the address {ip}"),
        ))
    }

    /// Sets a machine's next boot (a node's through its life cycle); its files follow.
    pub async fn set_machine_boot(
        &self,
        machine: Machine,
        target: BootTarget,
        why: &str,
    ) -> Result<Machine, ApiError> {
        match machine {
            Machine::Node(n) => {
                let why = why.to_owned();
                let n = self.change(&n.id, Transition::Boot { target, why }).await?;
                Ok(Machine::Node(Box::new(n)))
            }
            Machine::System { name, .. } => {
                let system = self
                    .systems
                    .set_boot(&name, target)
                    .await?
                    .ok_or_else(|| no_such_machine(&name))?;
                self.follow_system(&system).await;
                Ok(Machine::System { name, system })
            }
        }
    }

    /// PXE Manager's `localboot`: the machine boots its disk from now on (a node's install
    /// under way is done).
    pub async fn localboot_machine(
        &self,
        machine: Machine,
        why: &str,
    ) -> Result<Machine, ApiError> {
        match machine {
            Machine::Node(n) => {
                let why = why.to_owned();
                let n = self.change(&n.id, Transition::LocalBoot { why }).await?;
                Ok(Machine::Node(Box::new(n)))
            }
            system => self.set_machine_boot(system, BootTarget::Local, why).await,
        }
    }

    /// PXE Manager's `/localboot/<mac>/`: the machine with that MAC boots its disk; a MAC
    /// nobody owns is registered (`mac-<mac>`) with that next boot.
    pub async fn localboot_mac(&self, mac: &str, why: &str) -> Result<Machine, ApiError> {
        match self.find(mac).await {
            Some(m) => self.localboot_machine(m, why).await,
            None => {
                self.set_boot_by_mac(mac, BootTarget::Local, why).await?;
                self.find(mac).await.ok_or_else(|| no_such_machine(mac))
            }
        }
    }

    /// PXE Manager's `delsystem NAME`: forgets the system and removes its PXELINUX files
    /// (the site default applies to it again).
    pub async fn delete_system(&self, name: &str) -> Result<SystemInfo, ApiError> {
        let files = match self.systems.get(name).await {
            Some(s) => self.system_files(&s),
            None => Vec::new(),
        };
        let removed = self.systems.remove(name).await?;
        self.remove_files(files).await;
        Ok(system_info(name.to_owned(), &removed))
    }

    /// PXE Manager's `dpysystem NAME|MAC|IP`: a registered system, or a node shown the
    /// same way.
    pub async fn system(&self, key: &str) -> Result<SystemInfo, ApiError> {
        match self.find(key).await {
            Some(Machine::System { name, system }) => Ok(system_info(name, &system)),
            Some(m @ Machine::Node(_)) => Ok(SystemInfo {
                name: m.name().to_owned(),
                macs: m.macs().to_vec(),
                addresses: m.ipv4().map(|ip| ip.to_string()).into_iter().collect(),
                boot: m.boot().to_string(),
                node: Some(m.name().to_owned()),
            }),
            None => Err(ApiError::not_found(
                "no_such_system",
                format!("system {key} not defined"),
            )),
        }
    }

    /// PXE Manager's `syncbootnames`: the boot profiles there are, and what is missing.
    pub fn boot_profiles(&self) -> BootProfiles {
        let mut profiles = vec!["install".to_owned(), "local".to_owned()];
        profiles.extend(
            self.boot
                .profiles()
                .into_iter()
                .filter(|n| n != "install" && n != "local"),
        );
        let mut dirs = vec![self.boot.profiles_dir.display().to_string()];
        dirs.extend(self.boot.conf_dir.iter().map(|d| d.display().to_string()));
        let mut problems = Vec::new();
        if self.boot.tftp_root.is_some() && !self.boot.has_local() {
            problems.push(format!(
                "local profile not present: add {} with a content like this:\n\nprompt 0\ntimeout 0\ndefault 0\n\nlabel 0\n  LOCALBOOT 0\n",
                self.boot.profiles_dir.join("local.prof").display()
            ));
        }
        BootProfiles {
            profiles,
            dirs,
            problems,
        }
    }

    /// Removes PXELINUX files off the async workers; a failure is logged.
    async fn remove_files(&self, names: Vec<String>) {
        if self.boot.tftp_root.is_none() || names.is_empty() {
            return;
        }
        let boot = self.boot.clone();
        match tokio::task::spawn_blocking(move || boot.remove(&names)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot remove PXELINUX files"),
            Err(e) => tracing::error!(error = %e, "PXELINUX writer task failed"),
        }
    }

    // ---- PXE Pilot -----------------------------------------------------------------------

    /// PXE Pilot's `GET /configurations`: `install`, `local`, then every boot profile.
    pub fn configurations(&self) -> Vec<PilotConfiguration> {
        self.boot_profiles()
            .profiles
            .into_iter()
            .map(|name| PilotConfiguration { name })
            .collect()
    }

    /// PXE Pilot's `GET /v1/configurations/{name}`: the PXELINUX text that configuration
    /// boots; `404 no_such_configuration` for one that does not exist.
    pub fn configuration(&self, name: &str) -> Result<PilotConfigurationContent, ApiError> {
        let target = self.target(name)?;
        Ok(PilotConfigurationContent {
            name: name.to_owned(),
            content: self.boot.pxelinux(&target),
        })
    }

    /// PXE Pilot's `GET /hosts`: every registered system and node, with what it boots next.
    pub async fn hosts(&self) -> Vec<PilotHost> {
        let mut hosts: Vec<PilotHost> = self
            .systems
            .all()
            .await
            .into_iter()
            .map(|(name, s)| PilotHost {
                name,
                mac_addresses: s.macs,
                configuration: Some(PilotConfiguration {
                    name: s.boot.to_string(),
                }),
            })
            .collect();
        hosts.extend(
            self.nodes
                .summaries(None, usize::MAX, |_| true)
                .into_iter()
                .map(|n| PilotHost {
                    configuration: Some(PilotConfiguration { name: n.boot }),
                    name: n.id,
                    mac_addresses: n.macs,
                }),
        );
        hosts
    }

    /// PXE Pilot's deploy: every host boots `configuration` next. Hosts are checked first
    /// (an unknown name is `404 no_such_host`, a bad MAC `400 bad_mac`, and nothing
    /// changes); a MAC no machine owns is registered, so its first PXE boot obeys.
    pub async fn deploy(
        &self,
        configuration: &str,
        hosts: &[HostRef],
    ) -> Result<Vec<PilotDeployed>, ApiError> {
        let target = self.target(configuration)?;
        let mut planned = Vec::new();
        for h in hosts {
            planned.push(match h {
                HostRef::Mac(m) => {
                    let mac = normalize_mac(m).ok_or_else(|| {
                        ApiError::bad_request("bad_mac", format!("{m:?} is not a MAC address"))
                    })?;
                    (Some(mac.clone()), self.find(&mac).await)
                }
                HostRef::Name(n) => {
                    let m = self.find(n).await.ok_or_else(|| {
                        ApiError::not_found(
                            "no_such_host",
                            format!("no host '{n}': neither a registered system, a node id nor a hostname"),
                        )
                    })?;
                    (None, Some(m))
                }
            });
        }
        let why = format!("PXE Pilot deploy {configuration}");
        let mut done = Vec::new();
        for (mac, machine) in planned {
            let machine = match (machine, &mac) {
                (Some(m), _) => self.set_machine_boot(m, target.clone(), &why).await?,
                (None, Some(mac)) => {
                    self.set_boot_by_mac(mac, target.clone(), &why).await?;
                    self.find(mac).await.ok_or_else(|| no_such_machine(mac))?
                }
                (None, None) => continue,
            };
            done.push(PilotDeployed {
                name: machine.name().to_owned(),
                mac_address: mac.or_else(|| machine.macs().first().cloned()),
                node: match &machine {
                    Machine::Node(n) => Some(n.id.clone()),
                    Machine::System { .. } => None,
                },
                configuration: machine.boot().to_string(),
            });
        }
        Ok(done)
    }

    // ---- OMF -----------------------------------------------------------------------------

    /// The image OMF boots a machine into when the request names none: its CMDB entry's
    /// `pxe_image` (OMF's inventory kept one per node), else its next boot when that is a
    /// boot profile, else the installer.
    fn omf_image(&self, machine: &Machine) -> BootTarget {
        if let Machine::Node(n) = machine {
            let configured = n
                .var
                .as_ref()
                .and_then(|v| v.get("pxe_image"))
                .and_then(|v| v.as_str())
                .and_then(|name| self.target(name).ok());
            if let Some(t) = configured {
                return t;
            }
        }
        match machine.boot() {
            t @ BootTarget::Profile { .. } => t.clone(),
            _ => BootTarget::Install,
        }
    }

    /// The machine OMF names, and its hex-IP name.
    async fn omf_machine(&self, name: &str) -> Result<(Machine, String, String), ApiError> {
        let machine = self.find(name).await.ok_or_else(|| no_such_machine(name))?;
        let ip = machine.ipv4().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "no_address",
                format!("OMF links a node by its IPv4 address and '{name}' has none: give its CMDB entry an `ip`, or register it with one (pxemngr addsystem {name} IP)"),
            )
        })?;
        Ok((machine, ip.to_string(), hex_ip(ip)))
    }

    /// OMF's `setBootImage` (`setBootImageNS` for several): each machine boots `image`
    /// (else its own image) next, and its hex-IP name links to that image's file; with
    /// `--omf-link-lifetime` the links lapse. Every name is checked before anything changes.
    pub async fn omf_set(
        &self,
        names: &[String],
        image: Option<&str>,
    ) -> Result<Vec<OmfNode>, ApiError> {
        let chosen = match image {
            Some(i) => Some(self.target(i)?),
            None => None,
        };
        let mut found = Vec::new();
        for name in names {
            found.push((name, self.omf_machine(name).await?));
        }
        let mut done = Vec::new();
        for (name, (machine, ip, hex)) in found {
            let target = chosen.clone().unwrap_or_else(|| self.omf_image(&machine));
            let machine = self
                .set_machine_boot(machine, target.clone(), "OMF setBootImage")
                .await?;
            // A node's hex-IP file follows its CMDB ip already; made here too so that a
            // machine whose next boot did not change still gets its link.
            self.sync_files(vec![hex.clone()], target.clone()).await;
            self.omf.linked(&hex, machine.name(), Instant::now());
            done.push(OmfNode {
                hrn: name.clone(),
                ip,
                img: target.to_string(),
                hex,
            });
        }
        Ok(done)
    }

    /// OMF's `clearBootImage` (`clearBootImageNS`): each hex-IP link goes, so
    /// `pxelinux.cfg/default` (the local disk) applies; the machine's next boot becomes
    /// `local` so its other files and the iPXE answer agree.
    pub async fn omf_clear(&self, names: &[String]) -> Result<Vec<OmfNode>, ApiError> {
        let mut found = Vec::new();
        for name in names {
            found.push((name, self.omf_machine(name).await?));
        }
        let mut done = Vec::new();
        for (name, (machine, ip, hex)) in found {
            let machine = self
                .set_machine_boot(machine, BootTarget::Local, "OMF clearBootImage")
                .await?;
            self.remove_files(vec![hex.clone()]).await;
            self.omf.cleared(&hex);
            done.push(OmfNode {
                hrn: name.clone(),
                ip,
                img: machine.boot().to_string(),
                hex,
            });
        }
        Ok(done)
    }

    /// Clears the OMF links whose lifetime has run out at `now`.
    pub async fn omf_expire(&self, now: Instant) {
        for name in self.omf.lapsed(now) {
            match self.omf_clear(std::slice::from_ref(&name)).await {
                Ok(_) => tracing::info!(node = %name, "OMF link lapsed: the node boots its disk"),
                Err(e) => {
                    tracing::warn!(node = %name, error = %e.message, "OMF link lapsed but could not be cleared")
                }
            }
        }
    }

    /// How often [`Core::omf_expire`] should run (`None`: links never lapse).
    pub fn omf_tick(&self) -> Option<std::time::Duration> {
        self.omf.tick()
    }
}
