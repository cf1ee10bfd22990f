//! Hardware detection: builds eDeploy's inventory from `/sys`, `/proc` and DMI.
//!
//! The inventory is eDeploy's list of 4-tuples `(category, name, key, value)` with the names,
//! units and value types of the Python package `hardware` 0.33 (what `.specs` files written
//! for eDeploy test), read from files only, so a captured tree gives the same answer:
//!
//! | lines | from |
//! |---|---|
//! | `disk logical count`, `disk sdX size/vendor/model/rev/optimal_io_size/physical_block_size/rotational/nr_requests/scheduler`, `Write Cache Enable`, `Read Cache Disable`, `wwn-id`/`scsi-id`/`id` | `/sys/block`, `/dev/disk/by-id` ([`disk`]) |
//! | `system product vendor/name/version/serial/uuid`, `system motherboard ...`, `firmware bios vendor/version/date` | `/sys/class/dmi/id` ([`system`]) |
//! | `memory total size` (bytes) | `/sys/devices/system/memory`, else `/proc/meminfo` ([`memory`]) |
//! | `cpu physical number`, `cpu logical number`, `cpu physical_N vendor/product/frequency/cores/threads/...`, `numa ...` | `/proc/cpuinfo`, cpufreq, `/sys/devices/system/node` ([`cpu`]) |
//! | `network IFACE businfo/size/serial/ipv4/ipv4-netmask/ipv4-cidr/ipv4-network/link/driver/duplex/speed` | `/sys/class/net`, `/proc/net/route`, `/proc/net/fib_trie` ([`network`]) |
//! | `system kernel version/arch/cmdline` | `/proc/sys/kernel`, `/proc/cmdline` ([`system`]) |
//! | `system ipmi channel`, `ipmi lan ...` | `ipmitool`, live only ([`ipmi`]) |
//! | `system ipmi-fake channel` | `FAKEIPMI` on `/proc/cmdline`, when no BMC answered ([`ipmi`]) |
//!
//! Every path goes through one [`Root`]: [`Root::live`] for the running machine,
//! [`Root::dir`] for a tree written by `rdeploy-agent capture` or by hand (the fixtures in
//! `agent/tests/fixtures/sysroot/`). A file that cannot be read is logged (warning with its
//! path, or debug when its absence is normal, like the speed of a link that is down) and
//! detection goes on without that line.
//!
//! Values are strings, except where eDeploy 0.33 gives numbers (CPU and NUMA counts are
//! ints, cpufreq MHz floats), so specs such as `('cpu', 'physical', 'number', 2)` compare as
//! they did with eDeploy.
//!
//! For the provisioning run, [`detect`] is the whole API. It returns the inventory rather
//! than a `Result`: no single file is worth failing a provisioning for, and an empty
//! inventory still uploads (the server then says no profile matched).
//!
//! ```no_run
//! use rdeploy_agent::detect::{detect, Root};
//! let inventory: rdeploy_specs::Inventory = detect(&Root::live());
//! println!("{}", inventory.to_python());
//! ```
//!
//! [`capture()`] runs the same detection on [`Root::recording`] and writes what was read
//! (module [`capture`](mod@capture) says how the tree represents sysfs' symlinks).

pub mod capture;
pub mod cpu;
pub mod disk;
pub mod ipmi;
pub mod memory;
pub mod network;
mod root;
pub mod system;

pub use capture::{CaptureError, CaptureStats};
pub use root::{Access, EntryKind, Root};

use anyhow::Context;
use rdeploy_specs::{Inventory, Line, Value};
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

/// `rdeploy-agent detect`.
#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Read a captured tree (see `capture`) instead of the live /sys and /proc.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print a JSON list of 4-element lists, one per line (the default).
    #[arg(long, conflicts_with = "python")]
    pub json: bool,
    /// Print eDeploy's Python-literal form (what eDeploy stored as `.hw` files).
    #[arg(long)]
    pub python: bool,
}

/// `rdeploy-agent capture`.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Directory to write the captured tree into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Detects the hardware under `root`. Never fails as a whole: what cannot be read is logged
/// and left out. `ipmitool` runs only when `root` is live.
pub fn detect(root: &Root) -> Inventory {
    let mut out = Lines::default();
    disk::detect(root, &mut out);
    let nic_id = network::first_mac(root);
    system::detect_dmi(root, &mut out, nic_id.as_deref());
    memory::detect(root, &mut out);
    cpu::detect(root, &mut out);
    network::detect(root, &mut out);
    system::detect_kernel(root, &mut out);
    if root.is_live() {
        ipmi::detect(&mut out);
    }
    if out.get("system", "ipmi", "channel").is_none() {
        ipmi::fake_from_cmdline(root, &mut out);
    }
    Inventory { lines: out.0 }
}

/// Captures the live machine into `out`: runs detection on a recording root and writes what
/// it read. Returns the inventory detection found while recording (which `detect --root out`
/// reproduces) and what was written.
pub fn capture(out: &std::path::Path) -> Result<(Inventory, CaptureStats), CaptureError> {
    let root = Root::recording();
    let inventory = detect(&root);
    let record = root.take_record();
    let stats = capture::write_tree(out, &record)?;
    Ok((inventory, stats))
}

/// Inventory lines under construction.
#[derive(Debug, Default)]
pub struct Lines(pub Vec<Line>);

impl Lines {
    /// Adds `(category, name, key, value)`.
    pub fn push(&mut self, category: &str, name: &str, key: &str, value: impl Into<Value>) {
        self.0
            .push([category.into(), name.into(), key.into(), value.into()]);
    }

    /// The value of the first `(category, name, key, _)` line.
    pub fn get(&self, category: &str, name: &str, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|l| {
                l[0].as_str() == Some(category)
                    && l[1].as_str() == Some(name)
                    && l[2].as_str() == Some(key)
            })
            .map(|l| &l[3])
    }
}

/// Reads a first line, logging a failure: debug when the file is simply absent, a warning
/// with the path otherwise.
pub(crate) fn read_line_logged(root: &Root, path: &str) -> Option<String> {
    match root.read_line(path) {
        Ok(s) => Some(s),
        Err(e) => {
            log_failure(root, path, &e);
            None
        }
    }
}

/// Reads a whole file, logging a failure like [`read_line_logged`].
pub(crate) fn read_logged(root: &Root, path: &str) -> Option<String> {
    match root.read(path) {
        Ok(s) => Some(s),
        Err(e) => {
            log_failure(root, path, &e);
            None
        }
    }
}

pub(crate) fn log_failure(root: &Root, path: &str, e: &io::Error) {
    let shown = root.host_path(path);
    if matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) {
        tracing::debug!("{}: {e}", shown.display());
    } else {
        tracing::warn!("cannot read {}: {e}", shown.display());
    }
}

/// Runs `detect`.
pub fn main(args: &DetectArgs) -> anyhow::Result<ExitCode> {
    let root = match &args.root {
        Some(dir) => {
            anyhow::ensure!(
                dir.is_dir(),
                "--root {}: not a directory (make one with `rdeploy-agent capture --out DIR`)",
                dir.display()
            );
            Root::dir(dir)
        }
        None => Root::live(),
    };
    let inventory = detect(&root);
    let text = if args.python {
        inventory.to_python()
    } else {
        to_json_lines(&inventory)
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .context("writing the inventory to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// The inventory as a JSON list with one 4-element list per line.
pub fn to_json_lines(inventory: &Inventory) -> String {
    let mut s = String::from("[");
    for (i, line) in inventory.lines.iter().enumerate() {
        s.push_str(if i == 0 { "\n  " } else { ",\n  " });
        let items: Vec<serde_json::Value> = line.iter().map(Value::to_json).collect();
        s.push_str(&serde_json::Value::Array(items).to_string());
    }
    s.push_str("\n]\n");
    s
}

/// Runs `capture`.
pub fn capture_main(args: &CaptureArgs) -> anyhow::Result<ExitCode> {
    // a capture is exactly what detection read: stale files of an earlier one would be read
    // back as if they were this machine's
    if let Ok(mut entries) = std::fs::read_dir(&args.out) {
        anyhow::ensure!(
            entries.next().is_none(),
            "{} is not empty: capture into a new directory",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (inventory, stats) =
        capture(&args.out).with_context(|| format!("capturing into {}", args.out.display()))?;
    eprintln!(
        "captured {} files, {} symlinks, {} directories into {} ({} inventory lines); \
         check it with: rdeploy-agent detect --root {}",
        stats.files,
        stats.links,
        stats.dirs,
        args.out.display(),
        inventory.lines.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
