//! How a configure script runs: the engine's resource limits and the run's settings
//! (command time limit, where the target's root is mounted), shared by the engine and the
//! configure API.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Resource limits of a script run. A script that exceeds one stops with [`crate::ErrorKind::Limit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Engine operations (roughly: expressions evaluated) per run.
    pub max_operations: u64,
    /// Nesting of script function calls.
    pub max_call_depth: usize,
    /// Nesting of expressions, at top level and inside functions.
    pub max_expr_depth: usize,
    /// Length of any string, in bytes.
    pub max_string_size: usize,
    /// Length of any array.
    pub max_array_size: usize,
    /// Entries of any map.
    pub max_map_size: usize,
    /// Variables alive at once.
    pub max_variables: usize,
    /// Functions a script may define.
    pub max_functions: usize,
    /// Levels of arrays and maps inside each other a value may have to be printed
    /// (`print`, `debug`, `to_string`, interpolation) or handed to the configure API.
    /// (How deep a value can nest at all is bounded by `max_array_size` and
    /// `max_map_size`: every level is an element.)
    #[serde(default = "default_value_depth")]
    pub max_value_depth: usize,
}

fn default_value_depth() -> usize {
    64
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 1_000_000,
            max_call_depth: 32,
            max_expr_depth: 64,
            max_string_size: 1 << 20,
            max_array_size: 10_000,
            max_map_size: 10_000,
            max_variables: 1_000,
            max_functions: 256,
            max_value_depth: default_value_depth(),
        }
    }
}

/// How a script runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Engine limits.
    pub limits: Limits,
    /// Time limit of each command unless the script gives one (`run(cmd, seconds)`).
    pub command_timeout: Duration,
    /// Where `mount(dev, "/")` mounts the target's root on the installer (eDeploy's `/chroot`).
    pub target_root: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            command_timeout: Duration::from_secs(30 * 60),
            target_root: "/chroot".to_owned(),
        }
    }
}
