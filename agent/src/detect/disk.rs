//! Disks from `/sys/block` the way eDeploy's `hardware.diskinfo` reports them.
//!
//! - Which devices: names whose second letter is `d` and first one of `s h v` (`sda`, `hdb`,
//!   `vdc`), and `nvme*`; loop, ram, zram, sr, dm, md devices are not disks to eDeploy.
//!   Devices of size 0 (empty card readers) are left out.
//! - `size` is in GB as eDeploy counts it: `int(sectors * 512 / 10^9)` (a "600 GB" disk of
//!   1,171,062,784 sectors is `'599'`).
//! - `vendor model rev optimal_io_size physical_block_size rotational nr_requests`: the first
//!   line of `/sys/block/X/device/vendor`, ..., `/sys/block/X/queue/rotational` (`'1'` for
//!   spinning disks, `'0'` for SSDs). Where eDeploy's lookup falls back (`device/revision`,
//!   then `device/device/...` for NVMe), so does this one, and the key is named after the
//!   file found (`revision` on NVMe).
//! - `scheduler`: the bracketed entry of `queue/scheduler`.
//! - `Write Cache Enable` / `Read Cache Disable` (`'1'`/`'0'`) from the SCSI disk's
//!   `cache_type` (not for NVMe).
//! - `wwn-id` / `scsi-id` / `id`: the `/dev/disk/by-id` names pointing at the disk.
//!
//! Not reported: SMART data (eDeploy ran `smartctl`), RAID controllers' physical disks
//! (`hpacucli`, `megacli`), `type` (eDeploy has it only for those).

use super::{log_failure, read_line_logged, Lines, Root};

/// Whether eDeploy counts `/sys/block/NAME` as a disk.
pub fn is_disk_name(name: &str) -> bool {
    let b = name.as_bytes();
    (b.len() >= 2 && b[1] == b'd' && matches!(b[0], b's' | b'h' | b'v')) || name.starts_with("nvme")
}

/// eDeploy's `sizeingb`: 512-byte sectors to whole (decimal) GB, rounded down.
pub fn size_in_gb(sectors: u64) -> u64 {
    (u128::from(sectors) * 512 / 1_000_000_000) as u64
}

/// Adds the disk lines.
pub fn detect(root: &Root, out: &mut Lines) {
    let names = match root.read_dir("/sys/block") {
        Ok(names) => names,
        Err(e) => {
            log_failure(root, "/sys/block", &e);
            Vec::new()
        }
    };
    let mut disks = Vec::new();
    for name in names.iter().filter(|n| is_disk_name(n)) {
        let path = format!("/sys/block/{name}/size");
        let Some(text) = read_line_logged(root, &path) else {
            continue;
        };
        match text.parse::<u64>() {
            Ok(sectors) if size_in_gb(sectors) > 0 => disks.push((name.clone(), sectors)),
            Ok(_) => tracing::debug!("{name}: smaller than 1 GB, not a disk to eDeploy"),
            Err(_) => tracing::warn!(
                "{}: not a sector count: {text:?}",
                root.host_path(&path).display()
            ),
        }
    }
    out.push("disk", "logical", "count", disks.len().to_string());
    let by_id = by_id_links(root);
    for (name, sectors) in &disks {
        out.push("disk", name, "size", size_in_gb(*sectors).to_string());
        disk_info(root, name, out);
        if !name.starts_with("nvme") {
            disk_cache(root, name, out);
        }
        for (entry, target) in &by_id {
            if target == name {
                let key = if entry.starts_with("wwn") {
                    "wwn-id"
                } else if entry.starts_with("scsi") {
                    "scsi-id"
                } else {
                    "id"
                };
                out.push("disk", name, key, entry.as_str());
            }
        }
    }
}

fn disk_info(root: &Root, name: &str, out: &mut Lines) {
    const INFO: [&str; 7] = [
        "device/vendor",
        "device/model",
        "device/rev",
        "queue/optimal_io_size",
        "queue/physical_block_size",
        "queue/rotational",
        "queue/nr_requests",
    ];
    for info in INFO {
        let mut info = info.to_string();
        let mut path = format!("/sys/block/{name}/{info}");
        if !root.exists(&path) && info == "device/rev" {
            info = "device/revision".into();
        }
        // eDeploy keeps the first path when it exists, else looks one level deeper (the
        // NVMe controller's PCI device); with `rev` renamed, that is `device/device/revision`.
        if !root.exists(&path) {
            path = format!("/sys/block/{name}/device/{info}");
        }
        let key = info.split('/').nth(1).unwrap_or(&info).to_string();
        if let Some(value) = read_line_logged(root, &path) {
            out.push("disk", name, &key, value);
        }
    }
    if let Some(line) = read_line_logged(root, &format!("/sys/block/{name}/queue/scheduler")) {
        if let Some(sched) = line
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(s, _)| s)
        {
            out.push("disk", name, "scheduler", sched);
        }
    }
}

fn disk_cache(root: &Root, name: &str, out: &mut Lines) {
    let device = format!("/sys/block/{name}/device");
    let Ok(addr) = root.link_name(&device) else {
        tracing::debug!("{name}: no SCSI device, no cache settings");
        return;
    };
    let Some(cache) = read_line_logged(root, &format!("{device}/scsi_disk/{addr}/cache_type"))
    else {
        return;
    };
    let (wce, rcd) = match cache.as_str() {
        "write through" => ("0", "0"),
        "none" => ("0", "1"),
        c if c.contains("daft") => ("1", "1"),
        _ => ("1", "0"),
    };
    out.push("disk", name, "Write Cache Enable", wce);
    out.push("disk", name, "Read Cache Disable", rcd);
}

/// `/dev/disk/by-id` entries and the device each points at (`wwn-0x5000...` → `sda`).
fn by_id_links(root: &Root) -> Vec<(String, String)> {
    let dir = "/dev/disk/by-id";
    let Ok(entries) = root.read_dir(dir) else {
        tracing::debug!("no {dir} (no udev): no disk ids");
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries {
        if let Ok(target) = root.link_name(&format!("{dir}/{entry}")) {
            out.push((entry, target));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_names_follow_edeploy() {
        for n in ["sda", "sdaa", "hda", "vdb", "nvme0n1"] {
            assert!(is_disk_name(n), "{n}");
        }
        for n in ["loop0", "ram0", "zram0", "sr0", "dm-0", "md0", "xvda", "s"] {
            assert!(!is_disk_name(n), "{n}");
        }
    }

    #[test]
    fn sizes_are_decimal_gb_rounded_down() {
        assert_eq!(size_in_gb(1_171_062_784), 599);
        assert_eq!(size_in_gb(83_886_080), 42);
        assert_eq!(size_in_gb(1_953_125), 1);
        assert_eq!(size_in_gb(1_953_124), 0);
    }
}
