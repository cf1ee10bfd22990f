//! `rdeploy vm create | start`: virtual machines that network-boot first, with the MAC of
//! the registered system of their name (registered on the spot if new, by the server's lab
//! rules), sized by hand or like a real machine (`--like NODE`: its stored inventory's CPU
//! count, a share of its memory, its number of disks and NICs). The VM is rendered as
//! libvirt domain XML, a QEMU shell script or a VirtualBox (`VBoxManage`) script; `vm
//! start` runs the QEMU form itself.
//!
//! The rendering is pure ([`Vm`] → text or argument vector); only [`create`] and [`start`]
//! talk to the server or run programs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rdeploy_specs::{Inventory, Value};

use crate::cli::{VmArgs, VmFormat};
use crate::commands::Outcome;
use crate::ops::Client;
use crate::wire::SystemInfo;

/// Disk size when none is given and no machine is copied: 20 GiB.
const DEFAULT_DISK_MIB: u64 = 20 * 1024;

/// The shape of a real machine, read from its inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub cpus: u32,
    pub memory_mib: u64,
    /// Each disk's size, in MiB.
    pub disks: Vec<u64>,
    pub nics: u32,
}

/// Reads CPU count (`('cpu', 'logical', 'number', N)`, else physical), memory (`('memory',
/// 'total', 'size', BYTES)`), disks (`('disk', sdX|vdX|hdX|nvmeX, 'size', GB)`) and NICs
/// (`('network', IF, 'serial', MAC)`) of an inventory; disk sizes in GB (10^9 bytes)
/// become MiB.
pub fn shape(inv: &Inventory) -> Shape {
    let text = |v: &Value| match v {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => None,
    };
    let find = |a: &str, b: &str, c: &str| {
        inv.lines
            .iter()
            .find(|l| {
                l[0].as_str() == Some(a) && l[1].as_str() == Some(b) && l[2].as_str() == Some(c)
            })
            .and_then(|l| text(&l[3]))
    };
    let cpus = find("cpu", "logical", "number")
        .or_else(|| find("cpu", "physical", "number"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let memory_mib = find("memory", "total", "size")
        .and_then(|b| b.parse::<u64>().ok())
        .map_or(1024, |b| b / (1024 * 1024));
    let is_disk = |n: &str| {
        ["sd", "vd", "hd", "xvd", "nvme"]
            .iter()
            .any(|p| n.strip_prefix(p).is_some_and(|r| !r.is_empty()))
    };
    let disks = inv
        .lines
        .iter()
        .filter(|l| l[0].as_str() == Some("disk") && l[2].as_str() == Some("size"))
        .filter(|l| l[1].as_str().is_some_and(is_disk))
        .filter_map(|l| text(&l[3])?.parse::<f64>().ok())
        // eDeploy's sizes are decimal gigabytes.
        .map(|gb| (gb.max(1.0) * 1e9 / 1_048_576.0) as u64)
        .collect();
    let nics = inv
        .lines
        .iter()
        .filter(|l| l[0].as_str() == Some("network") && l[2].as_str() == Some("serial"))
        .count() as u32;
    Shape {
        cpus,
        memory_mib,
        disks,
        nics: nics.max(1),
    }
}

/// Where the VM's NICs are plugged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    /// A host bridge (the lab network, where the DHCP server is).
    Bridge(String),
    /// QEMU only: an existing tap device.
    Tap(String),
    /// QEMU only: user-mode networking, booting `http://10.0.2.100/boot.ipxe`, relayed to
    /// the server at HOST:PORT (what `tests/tests/vm_boot.rs` does).
    User(String),
}

/// A VM to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    pub name: String,
    /// The boot NIC's MAC: the registered system's.
    pub mac: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disks: Vec<u64>,
    /// NICs in all (the first boots).
    pub nics: u32,
    pub net: Net,
    /// Where disk images go.
    pub disk_dir: PathBuf,
}

impl Vm {
    /// The MAC of NIC `i` (0 boots): the registered one, then MACs derived from the name.
    fn nic_mac(&self, i: u32) -> String {
        if i == 0 {
            self.mac.clone()
        } else {
            crate::serve::lab::derived_mac(&format!("{}/nic{i}", self.name), |m| m == self.mac)
        }
    }

    fn disk_path(&self, i: usize, ext: &str) -> PathBuf {
        self.disk_dir.join(format!("{}-disk{i}.{ext}", self.name))
    }

    /// `qemu-img create` for each missing disk (qcow2, thin).
    pub fn qemu_img_commands(&self) -> Vec<Vec<String>> {
        self.disks
            .iter()
            .enumerate()
            .map(|(i, mib)| {
                vec![
                    "qemu-img".into(),
                    "create".into(),
                    "-q".into(),
                    "-f".into(),
                    "qcow2".into(),
                    self.disk_path(i, "qcow2").display().to_string(),
                    format!("{mib}M"),
                ]
            })
            .collect()
    }

    /// The `qemu-system-x86_64` arguments (after the program name), with `accel`
    /// (`kvm` or `tcg`).
    pub fn qemu_args(&self, accel: &str) -> Vec<String> {
        let mut a: Vec<String> = [
            "-name",
            &self.name,
            "-accel",
            accel,
            "-smp",
            &self.cpus.to_string(),
            "-m",
            &self.memory_mib.to_string(),
            "-nographic",
            "-device",
            "virtio-rng-pci",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for i in 0..self.nics {
            let netdev = match &self.net {
                Net::Bridge(br) => format!("bridge,id=n{i},br={br}"),
                Net::Tap(tap) if i == 0 => {
                    format!("tap,id=n{i},ifname={tap},script=no,downscript=no")
                }
                Net::User(server) if i == 0 => format!(
                    "user,id=n{i},restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:socat - TCP:{server},bootfile=http://10.0.2.100/boot.ipxe"
                ),
                Net::Tap(_) | Net::User(_) => format!("user,id=n{i},restrict=on"),
            };
            let boot = if i == 0 { ",bootindex=1" } else { "" };
            a.extend([
                "-netdev".to_owned(),
                netdev,
                "-device".to_owned(),
                format!("virtio-net-pci,netdev=n{i},mac={}{boot}", self.nic_mac(i)),
            ]);
        }
        for (i, _) in self.disks.iter().enumerate() {
            a.extend([
                "-drive".to_owned(),
                format!(
                    "file={},if=none,id=d{i},format=qcow2",
                    self.disk_path(i, "qcow2").display()
                ),
                "-device".to_owned(),
                format!("virtio-blk-pci,drive=d{i},bootindex={}", i + 2),
            ]);
        }
        a
    }

    /// A shell script: makes the missing disks, then runs QEMU (KVM when /dev/kvm is
    /// usable, TCG otherwise).
    pub fn qemu_script(&self) -> String {
        let mut s = format!(
            "#!/bin/sh\n# rdeploy vm create {name} --format qemu: {cpus} CPUs, {mem} MiB, network boot first (MAC {mac}).\nset -e\n",
            name = self.name,
            cpus = self.cpus,
            mem = self.memory_mib,
            mac = self.mac,
        );
        s.push_str(&format!(
            "mkdir -p {}\n",
            sh(&self.disk_dir.display().to_string())
        ));
        for (i, cmd) in self.qemu_img_commands().iter().enumerate() {
            s.push_str(&format!(
                "[ -e {} ] || {}\n",
                sh(&self.disk_path(i, "qcow2").display().to_string()),
                cmd.iter().map(|w| sh(w)).collect::<Vec<_>>().join(" ")
            ));
        }
        s.push_str("# KVM when usable, else TCG (RDEPLOY_VM_ACCEL=kvm|tcg decides instead); arguments\n# given to the script are QEMU's too (e.g. -snapshot, -no-reboot).\n");
        s.push_str("accel=${RDEPLOY_VM_ACCEL:-tcg}\nif [ -z \"${RDEPLOY_VM_ACCEL:-}\" ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accel=kvm; fi\n");
        s.push_str("exec qemu-system-x86_64");
        for w in self.qemu_args("ACCEL") {
            let w = if w == "ACCEL" {
                "\"$accel\"".to_owned()
            } else {
                sh(&w)
            };
            s.push_str(" \\\n    ");
            s.push_str(&w);
        }
        s.push_str(" \\\n    \"$@\"\n");
        s
    }

    /// libvirt domain XML, ready for `virsh define` (the disks must exist: the comment says
    /// how to make them).
    pub fn libvirt_xml(&self) -> String {
        let mut x = String::new();
        x.push_str(&format!(
            "<!-- rdeploy vm create {name}, libvirt form. Make the disks first:\n",
            name = xml(&self.name)
        ));
        for cmd in self.qemu_img_commands() {
            // No "--" in an XML comment.
            x.push_str(&format!(
                "     {}\n",
                xml(&cmd.join(" ")).replace("--", "- -")
            ));
        }
        x.push_str("     then: virsh define FILE && virsh start NAME -->\n");
        x.push_str(&format!(
            "<domain type='kvm'>\n  <name>{name}</name>\n  <memory unit='MiB'>{mem}</memory>\n  <vcpu>{cpus}</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n  </os>\n  <features>\n    <acpi/>\n    <apic/>\n  </features>\n  <devices>\n",
            name = xml(&self.name),
            mem = self.memory_mib,
            cpus = self.cpus,
        ));
        for (i, _) in self.disks.iter().enumerate() {
            x.push_str(&format!(
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='{file}'/>\n      <target dev='vd{letter}' bus='virtio'/>\n      <boot order='{order}'/>\n    </disk>\n",
                file = xml(&self.disk_path(i, "qcow2").display().to_string()),
                letter = disk_letter(i),
                order = i + 2,
            ));
        }
        for i in 0..self.nics {
            let (kind, source) = match &self.net {
                Net::Bridge(br) | Net::Tap(br) | Net::User(br) => {
                    ("bridge", format!("bridge='{}'", xml(br)))
                }
            };
            let boot = if i == 0 {
                "      <boot order='1'/>\n"
            } else {
                ""
            };
            x.push_str(&format!(
                "    <interface type='{kind}'>\n      <mac address='{mac}'/>\n      <source {source}/>\n      <model type='virtio'/>\n{boot}    </interface>\n",
                mac = self.nic_mac(i),
            ));
        }
        x.push_str("    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n    <serial type='pty'/>\n    <console type='pty'/>\n  </devices>\n</domain>\n");
        x
    }

    /// A VirtualBox script: the VM, its NICs (Intel PRO/1000: VirtualBox's PXE ROM drives
    /// it, not virtio), its disks, network boot first.
    pub fn virtualbox_script(&self) -> String {
        let n = sh(&self.name);
        let mut s = format!(
            "#!/bin/sh\n# rdeploy vm create {name} --format virtualbox: {cpus} CPUs, {mem} MiB, network boot first (MAC {mac}).\nset -e\n",
            name = self.name,
            cpus = self.cpus,
            mem = self.memory_mib,
            mac = self.mac,
        );
        s.push_str(&format!(
            "VBoxManage createvm --name {n} --ostype Linux_64 --register\n"
        ));
        s.push_str(&format!(
            "VBoxManage modifyvm {n} --cpus {} --memory {} --ioapic on --rtcuseutc on --boot1 net --boot2 disk --boot3 none --boot4 none\n",
            self.cpus, self.memory_mib
        ));
        for i in 0..self.nics {
            let k = i + 1;
            let attach = match &self.net {
                Net::Bridge(br) | Net::Tap(br) | Net::User(br) => {
                    format!("--nic{k} bridged --bridgeadapter{k} {}", sh(br))
                }
            };
            s.push_str(&format!(
                "VBoxManage modifyvm {n} {attach} --nictype{k} 82540EM --macaddress{k} {}\n",
                self.nic_mac(i).replace(':', "").to_uppercase()
            ));
        }
        if !self.disks.is_empty() {
            s.push_str(&format!(
                "VBoxManage storagectl {n} --name SATA --add sata --portcount {}\n",
                self.disks.len()
            ));
        }
        for (i, mib) in self.disks.iter().enumerate() {
            let f = sh(&self.disk_path(i, "vdi").display().to_string());
            s.push_str(&format!(
                "VBoxManage createmedium disk --filename {f} --size {mib}\n"
            ));
            s.push_str(&format!(
                "VBoxManage storageattach {n} --storagectl SATA --port {i} --device 0 --type hdd --medium {f}\n"
            ));
        }
        s
    }
}

/// `vda`, ..., `vdz`, `vdaa`...
fn disk_letter(i: usize) -> String {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    if i < 26 {
        char::from(letters[i]).to_string()
    } else {
        format!(
            "{}{}",
            char::from(letters[(i / 26 - 1) % 26]),
            char::from(letters[i % 26])
        )
    }
}

/// A word for `sh`, quoted when it needs to be.
fn sh(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// `20G`, `512M`, `1T`, or a number of GiB: MiB.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], t[i..].to_ascii_uppercase()),
        None => (t, "G".to_owned()),
    };
    let n: u64 = num
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("--disk {text:?}: a size such as 20G, 512M or 1T"))?;
    let mib = match unit.trim_end_matches(['B', 'I']) {
        "M" => n,
        "G" => n * 1024,
        "T" => n * 1024 * 1024,
        _ => anyhow::bail!("--disk {text:?}: the unit is M, G or T"),
    };
    Ok(mib)
}

/// The registered system's MAC for NAME, registering NAME (a lab host) if it is new.
fn registered_mac(c: &Client, args: &VmArgs) -> Result<String> {
    let given = args
        .mac
        .as_deref()
        .map(|m| {
            crate::serve::identity::normalize_mac(m)
                .with_context(|| format!("--mac {m:?} is not a MAC address"))
        })
        .transpose()?;
    if let Some(system) =
        c.get_optional::<SystemInfo>(&format!("/systems/{}", segment(&args.name)))?
    {
        return match (given, system.macs.first()) {
            (Some(m), _) if system.macs.contains(&m) => Ok(m),
            (Some(m), _) => anyhow::bail!(
                "{} is registered with the MACs {}, not {m}: leave --mac out, or `rdeploy system add {} {m} ...` first",
                args.name,
                if system.macs.is_empty() { "-".to_owned() } else { system.macs.join(", ") },
                args.name
            ),
            (None, Some(m)) => Ok(m.clone()),
            (None, None) => anyhow::bail!(
                "{} is registered without a MAC: give one with --mac (and `rdeploy system add`)",
                args.name
            ),
        };
    }
    let answer: SystemInfo = c.post(
        "/systems",
        serde_json::json!({
            "name": args.name,
            "macs": given.into_iter().collect::<Vec<_>>(),
            "ip": args.ip,
            "auto": args.ip.is_none(),
            "range": args.range,
        }),
    )?;
    eprintln!(
        "registered {}: {} {}",
        answer.name,
        answer.macs.join(","),
        answer.addresses.join(",")
    );
    answer
        .macs
        .first()
        .cloned()
        .context("the server registered the VM without a MAC")
}

fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The VM the arguments describe: sizes from the flags, else from `--like NODE`'s
/// inventory, else small defaults (2 CPUs, 2048 MiB, one 20 GiB disk, one NIC).
fn describe(c: &Client, args: &VmArgs) -> Result<Vm> {
    anyhow::ensure!(
        args.memory_ratio > 0.0 && args.memory_ratio <= 1.0,
        "--memory-ratio {}: a share of the machine's memory, above 0 and at most 1",
        args.memory_ratio
    );
    let like = match &args.like {
        Some(node) => {
            let text = c
                .get_text(&format!("/nodes/{}/inventory", segment(node)))
                .with_context(|| format!("--like {node}: no stored inventory"))?;
            let inv = Inventory::parse(&text).map_err(|e| {
                anyhow::anyhow!("--like {node}: the stored inventory does not parse: {e}")
            })?;
            Some(shape(&inv))
        }
        None => None,
    };
    let cpus = args
        .cpus
        .or(like.as_ref().map(|s| s.cpus))
        .unwrap_or(2)
        .max(1);
    let memory_mib = args
        .memory
        .or(like
            .as_ref()
            .map(|s| (s.memory_mib as f64 * args.memory_ratio) as u64))
        .unwrap_or(2048)
        .max(64);
    let disks = if args.disks.is_empty() {
        match &like {
            Some(s) if !s.disks.is_empty() => s.disks.clone(),
            _ => vec![DEFAULT_DISK_MIB],
        }
    } else {
        args.disks
            .iter()
            .map(|d| parse_size(d))
            .collect::<Result<_>>()?
    };
    let nics = args
        .nics
        .or(like.as_ref().map(|s| s.nics))
        .unwrap_or(1)
        .max(1);
    let net = match (&args.tap, &args.user_net) {
        (Some(t), _) => Net::Tap(t.clone()),
        (None, Some(s)) => Net::User(s.clone()),
        (None, None) => Net::Bridge(args.bridge.clone()),
    };
    let mac = registered_mac(c, args)?;
    Ok(Vm {
        name: args.name.clone(),
        mac,
        cpus,
        memory_mib,
        disks,
        nics,
        net,
        // Absolute: libvirt wants it, and a script may run from elsewhere.
        disk_dir: std::path::absolute(&args.disk_dir)
            .with_context(|| format!("--disk-dir {}", args.disk_dir.display()))?,
    })
}

/// `rdeploy vm create NAME --format libvirt|qemu|virtualbox [--out FILE]`.
pub fn create(args: &VmArgs, format: VmFormat, out: Option<&Path>) -> Result<Outcome> {
    if matches!(args.net_kind(), "tap" | "user") && format != VmFormat::Qemu {
        anyhow::bail!("--tap and --user-net are QEMU's: use --bridge for libvirt and VirtualBox");
    }
    let c = Client::new(&args.server)?;
    let vm = describe(&c, args)?;
    let text = match format {
        VmFormat::Libvirt => vm.libvirt_xml(),
        VmFormat::Qemu => vm.qemu_script(),
        VmFormat::Virtualbox => vm.virtualbox_script(),
    };
    match out {
        None => print!("{text}"),
        Some(f) => {
            crate::dhcp::write_if_changed(f, &text)?;
            if format != VmFormat::Libvirt {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("cannot make {} executable", f.display()))?;
            }
            eprintln!(
                "{}: {} ({} CPUs, {} MiB, {} disks, {} NICs, MAC {})",
                f.display(),
                vm.name,
                vm.cpus,
                vm.memory_mib,
                vm.disks.len(),
                vm.nics,
                vm.mac
            );
        }
    }
    Ok(Outcome::Ok)
}

/// Whether this process can use KVM.
fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// `rdeploy vm start NAME ...`: the QEMU form, run here (KVM when usable, TCG otherwise);
/// waits for QEMU and exits with its status.
pub fn start(args: &VmArgs) -> Result<Outcome> {
    let c = Client::new(&args.server)?;
    let vm = describe(&c, args)?;
    std::fs::create_dir_all(&vm.disk_dir)
        .with_context(|| format!("cannot create {}", vm.disk_dir.display()))?;
    for (i, cmd) in vm.qemu_img_commands().iter().enumerate() {
        if vm.disk_path(i, "qcow2").exists() {
            continue;
        }
        let status = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .status()
            .with_context(|| format!("cannot run {} (Debian: qemu-utils)", cmd[0]))?;
        anyhow::ensure!(status.success(), "{} failed: {status}", cmd.join(" "));
    }
    let accel = if kvm_usable() { "kvm" } else { "tcg" };
    eprintln!(
        "starting {} ({accel}): {} CPUs, {} MiB, MAC {}",
        vm.name, vm.cpus, vm.memory_mib, vm.mac
    );
    let status = std::process::Command::new(&args.qemu)
        .args(vm.qemu_args(accel))
        .status()
        .with_context(|| format!("cannot run {} (Debian: qemu-system-x86)", args.qemu))?;
    Ok(if status.success() {
        Outcome::Ok
    } else {
        Outcome::Error
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> Vm {
        Vm {
            name: "lab-001".into(),
            mac: "02:00:00:00:00:01".into(),
            cpus: 4,
            memory_mib: 3276,
            disks: vec![20 * 1024, 10 * 1024],
            nics: 2,
            net: Net::Bridge("br0".into()),
            disk_dir: "/var/lib/vms".into(),
        }
    }

    #[test]
    fn inventories_give_cpus_memory_disks_nics() -> Result<()> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/hw/dell-r630.json"
        ))?;
        let inv = Inventory::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let s = shape(&inv);
        assert_eq!(
            (s.cpus, s.memory_mib, s.disks.len(), s.nics),
            (40, 131_072, 8, 4)
        );
        Ok(())
    }

    #[test]
    fn sizes() -> Result<()> {
        assert_eq!(parse_size("20G")?, 20480);
        assert_eq!(parse_size("512M")?, 512);
        assert_eq!(parse_size("1TiB")?, 1024 * 1024);
        assert_eq!(parse_size("8")?, 8192);
        assert!(parse_size("0G").is_err());
        assert!(parse_size("5X").is_err());
        Ok(())
    }

    #[test]
    fn qemu_boots_the_network_first_with_the_registered_mac() {
        let a = vm().qemu_args("tcg").join(" ");
        assert!(a.contains("-accel tcg -smp 4 -m 3276"), "{a}");
        assert!(a.contains("-netdev bridge,id=n0,br=br0 -device virtio-net-pci,netdev=n0,mac=02:00:00:00:00:01,bootindex=1"), "{a}");
        assert!(a.contains("virtio-blk-pci,drive=d0,bootindex=2"), "{a}");
        assert!(
            a.contains("file=/var/lib/vms/lab-001-disk1.qcow2,if=none,id=d1"),
            "{a}"
        );
        let s = vm().qemu_script();
        assert!(s.contains("[ -e /var/lib/vms/lab-001-disk0.qcow2 ] || qemu-img create -q -f qcow2 /var/lib/vms/lab-001-disk0.qcow2 20480M\n"), "{s}");
        assert!(s.contains("-accel \\\n    \"$accel\""), "{s}");
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), "'it'\\''s'");
        assert_eq!(sh("br0"), "br0");
    }
}
