//! Pure builders of the command lines the disk and IPMI helpers run (mdadm, sgdisk, mkfs, LVM, ipmitool).
//!
//! Each builder validates its arguments and returns argument vectors; it runs nothing. The
//! script API ([`crate::api`]) hands the vectors to the host in order.

use std::net::Ipv4Addr;

/// An argument a helper refused, with the reason in the operator's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl ArgError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// An argument vector.
pub type Argv = Vec<String>;

fn argv<const N: usize>(words: [&str; N]) -> Argv {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// `sda` → `/dev/sda`; `/dev/...` kept; anything with spaces, `..` or shell-unfriendly bytes refused.
pub fn device_path(dev: &str) -> Result<String, ArgError> {
    let ok = !dev.is_empty()
        && !dev.contains("..")
        && dev
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | ':' | '+'));
    if !ok || dev.starts_with('-') {
        return Err(ArgError::new(format!("{dev:?} is not a device name")));
    }
    Ok(if dev.starts_with('/') {
        dev.to_owned()
    } else {
        format!("/dev/{dev}")
    })
}

/// The device of partition `n` of `disk`: `/dev/sda` → `/dev/sda2`, `/dev/nvme0n1` → `/dev/nvme0n1p2`.
pub fn partition_device(disk: &str, n: usize) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

/// `mdadm --create DEVICE --run --metadata=1.2 --level=L --raid-devices=N DISKS...`.
pub fn raid(device: &str, level: i64, disks: &[String]) -> Result<Argv, ArgError> {
    let device = device_path(device)?;
    let min = match level {
        0 | 1 | 10 => 2,
        4 | 5 => 3,
        6 => 4,
        _ => {
            return Err(ArgError::new(format!(
                "raid level {level} is not one of 0, 1, 4, 5, 6, 10"
            )))
        }
    };
    if disks.len() < min {
        return Err(ArgError::new(format!(
            "raid level {level} needs at least {min} devices, got {}",
            disks.len()
        )));
    }
    let mut a = argv(["mdadm", "--create", &device, "--run", "--metadata=1.2"]);
    a.push(format!("--level={level}"));
    a.push(format!("--raid-devices={}", disks.len()));
    for d in disks {
        a.push(device_path(d)?);
    }
    Ok(a)
}

/// One partition of a `partition()` layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpec {
    /// `+1M`, `+512M`, `+20G`... as sgdisk reads it, or `None` for the rest of the disk.
    pub size: Option<String>,
    /// GPT type code for sgdisk (`EF02`, `EF00`, `8300`, `FD00`, `8E00`, `8200`).
    pub code: String,
    /// GPT partition name, if any.
    pub name: Option<String>,
}

/// Maps a layout type (alias or 4-digit hex code) to an sgdisk type code.
pub fn gpt_type_code(kind: &str) -> Result<String, ArgError> {
    let code = match kind.to_ascii_lowercase().as_str() {
        "bios" | "bios_boot" | "bios-boot" => "EF02",
        "efi" | "esp" => "EF00",
        "linux" => "8300",
        "raid" => "FD00",
        "lvm" => "8E00",
        "swap" => "8200",
        hex if hex.len() == 4 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            return Ok(hex.to_ascii_uppercase())
        }
        _ => {
            return Err(ArgError::new(format!(
                "partition type {kind:?} is not bios, efi, linux, raid, lvm, swap or a 4-digit GPT code"
            )))
        }
    };
    Ok(code.to_owned())
}

/// Normalises a size: `512M`, `20G`, `1.5T`, `2048` (sectors) → `+512M`...; `rest`, `*`, `` → `None`.
pub fn part_size(size: &str) -> Result<Option<String>, ArgError> {
    let s = size.trim().trim_start_matches('+');
    if matches!(s, "" | "*" | "rest" | "0") {
        return Ok(None);
    }
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let num_ok = !num.is_empty()
        && num.chars().all(|c| c.is_ascii_digit() || c == '.')
        && num.parse::<f64>().is_ok_and(|n| n > 0.0);
    let unit_ok = matches!(
        unit,
        "" | "K" | "M" | "G" | "T" | "P" | "KiB" | "MiB" | "GiB" | "TiB"
    );
    if !num_ok || !unit_ok {
        return Err(ArgError::new(format!(
            "partition size {size:?} is not like 512M, 20G or \"rest\""
        )));
    }
    Ok(Some(format!("+{}{}", num, unit.trim_end_matches("iB"))))
}

/// ONE `sgdisk --clear --new=... --typecode=... [--change-name=...] DISK` call for a whole layout.
///
/// sgdisk applies its options in order, so a single call wipes the table and creates every
/// partition: under emulation each sgdisk run costs seconds.
pub fn partition(disk: &str, layout: &[PartSpec]) -> Result<(Argv, Vec<String>), ArgError> {
    let disk = device_path(disk)?;
    if layout.is_empty() {
        return Err(ArgError::new("partition layout is empty"));
    }
    if layout.len() > 128 {
        return Err(ArgError::new("a GPT holds at most 128 partitions"));
    }
    let mut a = argv(["sgdisk", "--clear"]);
    let mut devices = Vec::with_capacity(layout.len());
    for (i, p) in layout.iter().enumerate() {
        let n = i + 1;
        if p.size.is_none() && n != layout.len() {
            return Err(ArgError::new(format!(
                "partition {n} takes the rest of the disk but is not the last one"
            )));
        }
        a.push(format!("--new={n}:0:{}", p.size.as_deref().unwrap_or("0")));
        a.push(format!("--typecode={n}:{}", p.code));
        if let Some(name) = &p.name {
            if name.len() > 36 || name.contains(['\n', ':']) {
                return Err(ArgError::new(format!(
                    "partition name {name:?} must be at most 36 characters, without ':'"
                )));
            }
            a.push(format!("--change-name={n}:{name}"));
        }
        devices.push(partition_device(&disk, n));
    }
    a.push(disk);
    Ok((a, devices))
}

/// `mkfs.ext4 -F -L LABEL DEV`, `mkfs.xfs -f ...`, `mkfs.vfat -F 32 -n ...`, `mkswap -f ...`...
pub fn mkfs(dev: &str, fs: &str, label: Option<&str>) -> Result<Argv, ArgError> {
    let dev = device_path(dev)?;
    let (mut a, label_flag, max_label) = match fs {
        "ext2" | "ext3" | "ext4" => (vec![format!("mkfs.{fs}"), "-F".to_owned()], "-L", 16),
        "xfs" => (argv(["mkfs.xfs", "-f"]), "-L", 12),
        "btrfs" => (argv(["mkfs.btrfs", "-f"]), "-L", 255),
        "vfat" | "fat32" => (argv(["mkfs.vfat", "-F", "32"]), "-n", 11),
        "swap" => (argv(["mkswap", "-f"]), "-L", 16),
        other => {
            return Err(ArgError::new(format!(
                "filesystem {other:?} is not ext2, ext3, ext4, xfs, btrfs, vfat or swap"
            )))
        }
    };
    if let Some(label) = label.filter(|l| !l.is_empty()) {
        if label.len() > max_label || label.chars().any(|c| c.is_control()) {
            return Err(ArgError::new(format!(
                "label {label:?} is longer than the {max_label} characters {fs} allows"
            )));
        }
        a.push(label_flag.to_owned());
        a.push(label.to_owned());
    }
    a.push(dev);
    Ok(a)
}

/// `mkdir -p MOUNTPOINT` and `mount DEV MOUNTPOINT`, the mount point being `path` under `root`.
pub fn mount(dev: &str, path: &str, root: &str) -> Result<(Argv, Argv, String), ArgError> {
    let dev = device_path(dev)?;
    let target = target_path(path, root)?;
    Ok((
        argv(["mkdir", "-p", &target]),
        argv(["mount", &dev, &target]),
        target,
    ))
}

/// An absolute path of the target tree, placed under `root` (`/var` → `/chroot/var`).
pub fn target_path(path: &str, root: &str) -> Result<String, ArgError> {
    if !path.starts_with('/')
        || path.split('/').any(|c| c == "..")
        || path.chars().any(|c| c.is_control())
    {
        return Err(ArgError::new(format!(
            "{path:?} is not an absolute path inside the target tree"
        )));
    }
    let root = root.trim_end_matches('/');
    let rel = path.trim_end_matches('/');
    Ok(if rel.is_empty() {
        if root.is_empty() {
            "/".to_owned()
        } else {
            root.to_owned()
        }
    } else {
        format!("{root}{rel}")
    })
}

/// A logical volume of an `lvm()` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvSpec {
    /// Volume name.
    pub name: String,
    /// `20G` (`-L`), `100%FREE` / `50%VG` (`-l`), or `rest` (= `100%FREE`).
    pub size: String,
}

fn lvm_name(kind: &str, name: &str) -> Result<(), ArgError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ArgError::new(format!(
            "{kind} name {name:?} is not valid for LVM"
        )))
    }
}

/// `pvcreate -ff -y PVS...`, `vgcreate VG PVS...`, one `lvcreate -y -n NAME (-L|-l) SIZE VG` per volume.
/// Also returns `(name, /dev/VG/NAME)` per volume.
#[allow(clippy::type_complexity)]
pub fn lvm(
    vg: &str,
    pvs: &[String],
    lvs: &[LvSpec],
) -> Result<(Vec<Argv>, Vec<(String, String)>), ArgError> {
    lvm_name("volume group", vg)?;
    if pvs.is_empty() {
        return Err(ArgError::new("lvm needs at least one physical volume"));
    }
    let pvs = pvs
        .iter()
        .map(|p| device_path(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cmds = Vec::new();
    let mut a = argv(["pvcreate", "-ff", "-y"]);
    a.extend(pvs.iter().cloned());
    cmds.push(a);
    let mut a = argv(["vgcreate", vg]);
    a.extend(pvs.iter().cloned());
    cmds.push(a);
    let mut devices = Vec::new();
    for (i, lv) in lvs.iter().enumerate() {
        lvm_name("logical volume", &lv.name)?;
        let size = lv.size.trim();
        let (flag, size) = if matches!(size, "rest" | "*" | "") {
            if i + 1 != lvs.len() {
                return Err(ArgError::new(format!(
                    "logical volume {} takes the rest of the group but is not the last one",
                    lv.name
                )));
            }
            ("-l", "100%FREE".to_owned())
        } else if size.contains('%') {
            ("-l", size.to_owned())
        } else {
            let valid = part_size(size)?.is_some();
            if !valid {
                return Err(ArgError::new(format!("volume size {size:?} is empty")));
            }
            ("-L", size.to_owned())
        };
        cmds.push(argv(["lvcreate", "-y", "-n", &lv.name, flag, &size, vg]));
        devices.push((lv.name.clone(), format!("/dev/{vg}/{}", lv.name)));
    }
    Ok((cmds, devices))
}

fn ipv4(what: &str, s: &str) -> Result<Ipv4Addr, ArgError> {
    s.parse()
        .map_err(|_| ArgError::new(format!("{what} {s:?} is not an IPv4 address")))
}

fn channel(ch: i64) -> Result<String, ArgError> {
    if (0..=15).contains(&ch) {
        Ok(ch.to_string())
    } else {
        Err(ArgError::new(format!("IPMI channel {ch} is not 0-15")))
    }
}

/// `ipmitool lan set CH ipsrc static`, `... ipaddr IP`, `... netmask MASK`, `... defgw ipaddr GW`.
pub fn ipmi_network(
    ch: i64,
    ip: &str,
    netmask: &str,
    gateway: &str,
) -> Result<Vec<Argv>, ArgError> {
    let ch = channel(ch)?;
    let ip = ipv4("IPMI address", ip)?.to_string();
    let netmask = ipv4("IPMI netmask", netmask)?.to_string();
    let gateway = ipv4("IPMI gateway", gateway)?.to_string();
    Ok(vec![
        argv(["ipmitool", "lan", "set", &ch, "ipsrc", "static"]),
        argv(["ipmitool", "lan", "set", &ch, "ipaddr", &ip]),
        argv(["ipmitool", "lan", "set", &ch, "netmask", &netmask]),
        argv(["ipmitool", "lan", "set", &ch, "defgw", "ipaddr", &gateway]),
    ])
}

/// Names user slot `id`, sets its password, gives it administrator access on the channel, enables it.
pub fn ipmi_user(ch: i64, id: i64, user: &str, password: &str) -> Result<Vec<Argv>, ArgError> {
    let ch = channel(ch)?;
    if !(2..=63).contains(&id) {
        return Err(ArgError::new(format!(
            "IPMI user id {id} is not 2-63 (1 is the anonymous user)"
        )));
    }
    if user.is_empty() || user.len() > 16 || !user.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ArgError::new(format!(
            "IPMI user name {user:?} must be 1-16 printable characters"
        )));
    }
    if password.is_empty() || password.len() > 20 || password.chars().any(|c| c.is_control()) {
        return Err(ArgError::new(
            "IPMI password must be 1-20 characters without control characters",
        ));
    }
    let id = id.to_string();
    Ok(vec![
        argv(["ipmitool", "user", "set", "name", &id, user]),
        argv(["ipmitool", "user", "set", "password", &id, password]),
        argv([
            "ipmitool",
            "channel",
            "setaccess",
            &ch,
            &id,
            "link=on",
            "ipmi=on",
            "callin=on",
            "privilege=4",
        ]),
        argv(["ipmitool", "user", "enable", &id]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn partition_is_one_sgdisk_call() {
        let layout = [
            PartSpec {
                size: part_size("1M").ok().flatten(),
                code: "EF02".into(),
                name: None,
            },
            PartSpec {
                size: part_size("512M").ok().flatten(),
                code: "EF00".into(),
                name: Some("EFI".into()),
            },
            PartSpec {
                size: None,
                code: "FD00".into(),
                name: None,
            },
        ];
        let (a, devs) = partition("nvme0n1", &layout)
            .map_err(|e| e.0)
            .unwrap_or_default();
        assert_eq!(
            a.join(" "),
            "sgdisk --clear --new=1:0:+1M --typecode=1:EF02 --new=2:0:+512M --typecode=2:EF00 \
             --change-name=2:EFI --new=3:0:0 --typecode=3:FD00 /dev/nvme0n1"
        );
        assert_eq!(devs, ["/dev/nvme0n1p1", "/dev/nvme0n1p2", "/dev/nvme0n1p3"]);
    }

    #[test]
    fn rest_must_be_last() {
        let rest = PartSpec {
            size: None,
            code: "8300".into(),
            name: None,
        };
        assert!(partition("sda", &[rest.clone(), rest]).is_err());
    }

    #[test]
    fn sizes_and_codes() {
        assert_eq!(part_size("20GiB"), Ok(Some("+20G".into())));
        assert_eq!(part_size("rest"), Ok(None));
        assert!(part_size("big").is_err());
        assert!(part_size("-5G").is_err());
        assert_eq!(gpt_type_code("raid"), Ok("FD00".into()));
        assert_eq!(gpt_type_code("8e00"), Ok("8E00".into()));
        assert!(gpt_type_code("ntfs").is_err());
    }

    #[test]
    fn raid_checks_level_and_devices() {
        assert_eq!(
            raid("md0", 1, &s(&["sda2", "/dev/sdb2"])).map(|a| a.join(" ")),
            Ok("mdadm --create /dev/md0 --run --metadata=1.2 --level=1 --raid-devices=2 /dev/sda2 /dev/sdb2".into())
        );
        assert!(raid("md0", 5, &s(&["sda", "sdb"])).is_err());
        assert!(raid("md0", 3, &s(&["sda", "sdb", "sdc"])).is_err());
        assert!(raid("md0", 1, &s(&["sda", "sdb; rm -rf /"])).is_err());
    }

    #[test]
    fn mkfs_flags_per_filesystem() {
        let line = |fs, l| mkfs("sda1", fs, l).map(|a| a.join(" "));
        assert_eq!(
            line("ext4", Some("root")),
            Ok("mkfs.ext4 -F -L root /dev/sda1".into())
        );
        assert_eq!(line("xfs", None), Ok("mkfs.xfs -f /dev/sda1".into()));
        assert_eq!(
            line("vfat", Some("EFI")),
            Ok("mkfs.vfat -F 32 -n EFI /dev/sda1".into())
        );
        assert_eq!(
            line("swap", Some("swap")),
            Ok("mkswap -f -L swap /dev/sda1".into())
        );
        assert!(line("xfs", Some("a-very-long-label")).is_err());
        assert!(line("zfs", None).is_err());
    }

    #[test]
    fn mount_points_live_under_the_target_root() {
        assert_eq!(target_path("/", "/chroot"), Ok("/chroot".into()));
        assert_eq!(target_path("/var/", "/chroot"), Ok("/chroot/var".into()));
        assert!(target_path("var", "/chroot").is_err());
        assert!(target_path("/var/../..", "/chroot").is_err());
    }

    #[test]
    fn lvm_commands() {
        let lvs = [
            LvSpec {
                name: "root".into(),
                size: "20G".into(),
            },
            LvSpec {
                name: "var".into(),
                size: "rest".into(),
            },
        ];
        let (cmds, devs) = lvm("vg0", &s(&["md1"]), &lvs)
            .map_err(|e| e.0)
            .unwrap_or_default();
        let lines: Vec<_> = cmds.iter().map(|a| a.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "pvcreate -ff -y /dev/md1",
                "vgcreate vg0 /dev/md1",
                "lvcreate -y -n root -L 20G vg0",
                "lvcreate -y -n var -l 100%FREE vg0",
            ]
        );
        assert_eq!(devs[1], ("var".into(), "/dev/vg0/var".into()));
        assert!(lvm("-vg", &s(&["md1"]), &lvs).is_err());
    }

    #[test]
    fn ipmi_validates_addresses_and_users() {
        assert!(ipmi_network(1, "10.0.0.300", "255.255.255.0", "10.0.0.1").is_err());
        assert!(ipmi_network(16, "10.0.0.3", "255.255.255.0", "10.0.0.1").is_err());
        assert!(ipmi_user(1, 2, "admin", "123456789012345678901").is_err());
        assert!(ipmi_user(1, 1, "admin", "pw").is_err());
        assert_eq!(ipmi_user(1, 2, "admin", "pw").map(|c| c.len()), Ok(4));
    }
}
