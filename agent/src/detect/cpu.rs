//! CPUs from `/proc/cpuinfo` and cpufreq, in the form of eDeploy's `get_cpus` (which read
//! `lscpu`, itself reading these files).
//!
//! - `cpu physical number` (sockets: distinct `physical id`s) and `cpu logical number`
//!   (`processor` entries) are integers, as eDeploy gives them, so a spec
//!   `('cpu', 'physical', 'number', 2)` matches;
//! - per socket `physical_N` (N counts sockets from 0 in `physical id` order): `vendor`
//!   (`vendor_id`, e.g. `GenuineIntel`), `product` (`model name`), `frequency` (Hz, a
//!   string, see below), `cores`, `threads`, `family`, `model`, `stepping` (integers),
//!   `architecture`, `min_Mhz` / `max_Mhz` (floats, when cpufreq is there), `flags`,
//!   `threads_per_core` (integer);
//! - `cpu physical smt`, `cpu physical_N boost`, `cpu logical_N governor` when the kernel
//!   has them;
//! - `numa nodes count`, `numa node_N cpu_count` (integers) and `cpu_mask` (hex without
//!   leading zeros, as `lscpu -x`) from `/sys/devices/system/node`.
//!
//! Not reported: `current_Mhz` (it changes from one read to the next, so two detections of one
//! machine would differ) and lscpu's cache sizes (`'64 KiB (2 instances)'`, lscpu's own
//! formatting, which changed between its versions).
//!
//! `frequency` is lshw's nominal frequency in Hz (`'2200000000'`): from the `@ 2.20GHz` of
//! the model name, else cpufreq's `base_frequency`, else `cpuinfo_max_freq`, else the
//! `cpu MHz` of `/proc/cpuinfo` rounded to the MHz (stable on VMs, which have no cpufreq).

use rdeploy_specs::Value;
use std::collections::BTreeMap;

use super::{read_logged, Lines, Root};

/// One `processor` block of `/proc/cpuinfo`.
type Block = BTreeMap<String, String>;

/// Parses `/proc/cpuinfo` into its `processor` blocks.
pub fn parse_cpuinfo(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut cur = Block::new();
    for line in text.lines() {
        match line.split_once(':') {
            Some((k, v)) => {
                cur.insert(k.trim().to_string(), v.trim().to_string());
            }
            None if line.trim().is_empty() => {
                if cur.contains_key("processor") {
                    blocks.push(std::mem::take(&mut cur));
                } else {
                    cur.clear();
                }
            }
            None => {}
        }
    }
    if cur.contains_key("processor") {
        blocks.push(cur);
    }
    blocks
}

/// `2.20GHz` in a model name → 2200000000.
pub fn ghz_in_model(model: &str) -> Option<u64> {
    let at = model.rsplit_once('@')?.1.trim();
    let number = at.strip_suffix("GHz")?.trim();
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.len() > 9 || int.is_empty() {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    let frac_hz: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>().ok()? * 10u64.pow(9 - frac.len() as u32)
    };
    Some(int * 1_000_000_000 + frac_hz)
}

fn maybe_int(v: &str) -> Value {
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => v.parse::<i64>().ok(),
    };
    parsed.map_or_else(|| Value::from(v), Value::Int)
}

fn khz(root: &Root, file: &str) -> Option<u64> {
    let path = format!("/sys/devices/system/cpu/cpu0/cpufreq/{file}");
    root.read_line(&path).ok()?.parse().ok()
}

/// Adds the CPU lines.
pub fn detect(root: &Root, out: &mut Lines) {
    let Some(text) = read_logged(root, "/proc/cpuinfo") else {
        return;
    };
    let blocks = parse_cpuinfo(&text);
    let mut sockets: BTreeMap<i64, Vec<&Block>> = BTreeMap::new();
    for b in &blocks {
        let id = b
            .get("physical id")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        sockets.entry(id).or_default().push(b);
    }
    out.push("cpu", "physical", "number", sockets.len() as i64);
    if let Ok(smt) = root.read_line("/sys/devices/system/cpu/smt/control") {
        out.push("cpu", "physical", "smt", smt);
    }
    let boost = root
        .read_line("/sys/devices/system/cpu/cpufreq/boost")
        .ok()
        .map(|b| if b == "1" { "enabled" } else { "disabled" });
    let arch = super::system::arch(root);
    let max_khz = khz(root, "cpuinfo_max_freq");
    let min_khz = khz(root, "cpuinfo_min_freq");
    let base_khz = khz(root, "base_frequency");
    for (n, members) in sockets.values().enumerate() {
        let tag = format!("physical_{n}");
        let Some(first) = members.first() else {
            continue;
        };
        let get = |k: &str| first.get(k).map(String::as_str);
        if let Some(b) = boost {
            out.push("cpu", &tag, "boost", b);
        }
        if let Some(v) = get("vendor_id") {
            out.push("cpu", &tag, "vendor", v);
        }
        if let Some(v) = get("model name") {
            out.push("cpu", &tag, "product", v);
        }
        let hz = get("model name")
            .and_then(ghz_in_model)
            .or(base_khz.map(|k| k * 1000))
            .or(max_khz.map(|k| k * 1000))
            .or_else(|| {
                get("cpu MHz")
                    .and_then(|m| m.parse::<f64>().ok())
                    .map(|m| m.round() as u64 * 1_000_000)
            });
        if let Some(hz) = hz {
            out.push("cpu", &tag, "frequency", hz.to_string());
        }
        let cores = get("cpu cores")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(members.len() as i64);
        let threads = get("siblings")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(members.len() as i64);
        out.push("cpu", &tag, "cores", cores);
        out.push("cpu", &tag, "threads", threads);
        if let Some(v) = get("cpu family").and_then(|v| v.parse::<i64>().ok()) {
            out.push("cpu", &tag, "family", v);
        }
        if let Some(v) = get("model") {
            out.push("cpu", &tag, "model", maybe_int(v));
        }
        if let Some(v) = get("stepping") {
            out.push("cpu", &tag, "stepping", maybe_int(v));
        }
        if let Some(a) = &arch {
            out.push("cpu", &tag, "architecture", a.as_str());
        }
        if let Some(k) = min_khz {
            out.push("cpu", &tag, "min_Mhz", Value::Float(k as f64 / 1000.0));
        }
        if let Some(k) = max_khz {
            out.push("cpu", &tag, "max_Mhz", Value::Float(k as f64 / 1000.0));
        }
        if let Some(v) = get("flags") {
            out.push("cpu", &tag, "flags", v);
        }
        if cores > 0 {
            out.push("cpu", &tag, "threads_per_core", threads / cores);
        }
    }
    out.push("cpu", "logical", "number", blocks.len() as i64);
    for b in &blocks {
        let Some(n) = b.get("processor") else {
            continue;
        };
        let policy = format!("/sys/devices/system/cpu/cpufreq/policy{n}/scaling_governor");
        let old = format!("/sys/devices/system/cpu/cpu{n}/cpufreq/scaling_governor");
        let governor = root
            .read_line(&policy)
            .or_else(|_| root.read_line(&old))
            .ok();
        if let Some(g) = governor {
            out.push("cpu", &format!("logical_{n}"), "governor", g);
        }
    }
    numa(root, out);
}

/// The number of CPUs in a kernel CPU list (`0-9,20-29` → 20).
pub fn count_cpu_list(list: &str) -> i64 {
    list.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| match item.trim().split_once('-') {
            Some((a, b)) => match (a.parse::<i64>(), b.parse::<i64>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => 1,
        })
        .sum()
}

/// A sysfs `cpumap` (`00,3ff003ff`) as `lscpu -x` writes it (`3ff003ff`).
pub fn lscpu_mask(cpumap: &str) -> String {
    let digits: String = cpumap.chars().filter(|c| *c != ',').collect();
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.to_string()
    }
}

/// `numa nodes count` and `numa node_N cpu_count / cpu_mask` from
/// `/sys/devices/system/node` (eDeploy read them from `lscpu` and `lscpu -x`).
fn numa(root: &Root, out: &mut Lines) {
    const NODES: &str = "/sys/devices/system/node";
    let Ok(names) = root.read_dir(NODES) else {
        tracing::debug!("no {NODES}: no NUMA lines");
        return;
    };
    let mut nodes: Vec<u32> = names
        .iter()
        .filter_map(|n| n.strip_prefix("node")?.parse().ok())
        .collect();
    nodes.sort_unstable();
    if nodes.is_empty() {
        return;
    }
    out.push("numa", "nodes", "count", nodes.len() as i64);
    for n in nodes {
        let tag = format!("node_{n}");
        let (Some(list), Some(map)) = (
            super::read_line_logged(root, &format!("{NODES}/node{n}/cpulist")),
            super::read_line_logged(root, &format!("{NODES}/node{n}/cpumap")),
        ) else {
            continue;
        };
        out.push("numa", &tag, "cpu_count", count_cpu_list(&list));
        out.push("numa", &tag, "cpu_mask", lscpu_mask(&map));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ghz_from_model_names() {
        assert_eq!(
            ghz_in_model("Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz"),
            Some(2_200_000_000)
        );
        assert_eq!(
            ghz_in_model("Intel(R) Core(TM) i7 CPU @ 3GHz"),
            Some(3_000_000_000)
        );
        assert_eq!(ghz_in_model("AMD EPYC 7502 32-Core Processor"), None);
    }

    #[test]
    fn cpuinfo_blocks() {
        let text = "processor\t: 0\nphysical id\t: 0\n\nprocessor\t: 1\nphysical id\t: 1\n";
        let blocks = parse_cpuinfo(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].get("physical id").map(String::as_str), Some("1"));
    }

    #[test]
    fn numa_lists_and_masks_as_lscpu() {
        assert_eq!(count_cpu_list("0-9,20-29"), 20);
        assert_eq!(count_cpu_list("0"), 1);
        assert_eq!(count_cpu_list(""), 0);
        assert_eq!(lscpu_mask("00,3ff003ff"), "3ff003ff");
        assert_eq!(lscpu_mask("00000003"), "3");
        assert_eq!(lscpu_mask("00000000"), "0");
    }

    #[test]
    fn model_and_stepping_are_ints_when_they_parse() {
        assert_eq!(maybe_int("79"), Value::Int(79));
        assert_eq!(maybe_int("0x4f"), Value::Int(79));
        assert_eq!(maybe_int("r0p1"), Value::from("r0p1"));
    }
}
