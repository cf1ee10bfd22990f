//! rdeploy's configure engine: runs a profile's Rhai `.configure` script against a [`Host`].
//!
//! The script gets `var` (the matched variables and CMDB settings) and the configure API
//! (`run`, `set_role`, `config`, `raid`, `partition`, `mkfs`, `mount`, `lvm`, `ipmi_*`,
//! `network_interfaces`, `netplan`, ...; see `docs/configure-api.md`). Every side effect goes
//! through the [`Host`]: [`SystemHost`] on a machine being installed, [`RecordingHost`] for dry
//! runs and tests. A run returns an [`Outcome`]: the role to install, boot options, facts, and
//! the commands and files in order.
//!
//! ```
//! use std::rc::Rc;
//! use rdeploy_configure::{compile, run, Options, RecordingHost};
//!
//! let script = compile("demo.configure", r#"
//!     mkfs("sda1", "ext4", "root");
//!     set_role("base", "1.0", "sda");
//! "#).map_err(|e| e.to_string())?;
//! let vars = serde_json::Map::new();
//! let host = Rc::new(RecordingHost::new());
//! let outcome = run(&script, &vars, host.clone(), &Options::default()).map_err(|e| e.to_string())?;
//! assert_eq!(host.command_lines(), ["mkfs.ext4 -F -L root /dev/sda1"]);
//! assert_eq!(outcome.role.map(|r| r.disk).as_deref(), Some("/dev/sda"));
//! # Ok::<(), String>(())
//! ```
//!
//! The module [`wire`] holds the JSON shapes the server and the agent exchange; [`tree_wire`]
//! those of role trees (manifests, install and upgrade reports).

mod api;
mod convert;
mod engine;
mod error;
mod host;
pub mod network;
mod options;
mod outcome;
pub mod python;
mod system;
pub mod tools;
pub mod tree_wire;
pub mod wire;

pub use convert::{to_dynamic, to_json};
pub use engine::{compile, compile_with, dry_run, run, Script};
pub use error::{CommandFailure, ErrorKind, RunError, ScriptError};
pub use host::{
    command_line, Action, Canned, Command, CommandOutput, FileWrite, Host, HostError, RecordingHost,
};
pub use options::{Limits, Options};
pub use outcome::{CommandRecord, Filesystem, Mount, Outcome, RoleSelection};
pub use system::SystemHost;

/// A Rhai string literal in double quotes that reads back as `s` (quotes, backslashes and
/// control characters escaped): how the server writes variables in front of a script and
/// how converted eDeploy scripts quote their strings.
pub fn rhai_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Stack of the thread a program embedding the engine runs its command on. A configure
/// script's value may nest as deep as its element limits allow (10,000 arrays and 10,000
/// map entries); comparing, copying or dropping it recurses once per level. The memory is
/// only reserved.
pub const COMMAND_STACK: usize = 256 << 20;

/// Runs `command` on a thread named `program` with [`COMMAND_STACK`] and gives its exit code:
/// 101 when it panicked (the panic message is printed already), 2 when the thread cannot
/// start (said on stderr).
pub fn run_on_command_stack(
    program: &str,
    command: fn() -> std::process::ExitCode,
) -> std::process::ExitCode {
    let spawned = std::thread::Builder::new()
        .name(program.into())
        .stack_size(COMMAND_STACK)
        .spawn(command);
    match spawned.map(std::thread::JoinHandle::join) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => std::process::ExitCode::from(101),
        Err(e) => {
            eprintln!("{program}: cannot start: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
