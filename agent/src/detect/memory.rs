//! `memory total size`: the installed memory in bytes.
//!
//! eDeploy reported lshw's total, the sum of the DIMMs (`137438953472` for 128 GiB), not the
//! smaller `MemTotal` of `/proc/meminfo` (which leaves out what the firmware and the kernel
//! reserve, so a 64 GiB machine would fail `ge(68719476736)`). The kernel's memory blocks
//! give the installed size: the online `memoryN` blocks of `/sys/devices/system/memory`
//! times `block_size_bytes` (what `lsmem` calls "Total online memory"). Without memory
//! blocks (kernels without memory hotplug), `MemTotal` is used.

use super::{log_failure, read_line_logged, Lines, Root};

const BLOCKS: &str = "/sys/devices/system/memory";

/// Adds `memory total size`.
pub fn detect(root: &Root, out: &mut Lines) {
    if let Some(bytes) = from_blocks(root).or_else(|| from_meminfo(root)) {
        out.push("memory", "total", "size", bytes.to_string());
    }
}

fn from_blocks(root: &Root) -> Option<u64> {
    let size_path = format!("{BLOCKS}/block_size_bytes");
    let size = read_line_logged(root, &size_path)?;
    let Ok(size) = u64::from_str_radix(size.trim_start_matches("0x"), 16) else {
        tracing::warn!(
            "{}: not a hex size: {size:?}",
            root.host_path(&size_path).display()
        );
        return None;
    };
    let names = match root.read_dir(BLOCKS) {
        Ok(n) => n,
        Err(e) => {
            log_failure(root, BLOCKS, &e);
            return None;
        }
    };
    let mut online = 0u64;
    for name in names {
        let is_block = name
            .strip_prefix("memory")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_block
            && read_line_logged(root, &format!("{BLOCKS}/{name}/state")).as_deref()
                == Some("online")
        {
            online += 1;
        }
    }
    (online > 0).then(|| online * size)
}

fn from_meminfo(root: &Root) -> Option<u64> {
    let text = super::read_logged(root, "/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}
