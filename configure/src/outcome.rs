//! What a configure run produced: the role to install, boot options, facts, and the journal of commands and files.

use serde::{Deserialize, Serialize};

use crate::host::FileWrite;

/// The role tree a script selected with `set_role(role, version, disk)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSelection {
    /// Role name (a directory of role trees on the server).
    pub role: String,
    /// Role version.
    pub version: String,
    /// The disk the boot loader goes on (`/dev/sda`).
    pub disk: String,
}

/// One command the script ran, in order, with how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The command line, shell-quoted ([`crate::Command::line`]).
    pub line: String,
    /// The argument vector as run.
    pub argv: Vec<String>,
    /// Exit status; `None` when the host could not run it (timeout, missing program).
    pub status: Option<i32>,
}

/// A filesystem a script created with `mkfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filesystem {
    /// Device (`/dev/vg0/root`).
    pub device: String,
    /// Type as given to `mkfs` (`ext4`, `xfs`, `vfat`, `swap`...).
    pub fs: String,
    /// Label, if any.
    pub label: Option<String>,
}

/// A mount a script made with `mount`: the agent's fstab comes from these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Device (`/dev/md0`).
    pub device: String,
    /// Path inside the target tree (`/`, `/var`).
    pub path: String,
    /// Where it is mounted on the installer (`/chroot/var`).
    pub mountpoint: String,
    /// The filesystem type when the same script created it, else `None`.
    pub fs: Option<String>,
}

/// The result of a configure run: everything the agent needs for the install steps that follow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// `set_role(...)`, if the script called it.
    pub role: Option<RoleSelection>,
    /// Extra kernel command line for the installed system (`grub_options` calls, space-joined).
    pub grub_options: String,
    /// Facts to install for configuration management (`inject_facts` calls, merged).
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// Commands run, in order.
    pub commands: Vec<CommandRecord>,
    /// Files written, in order.
    pub files: Vec<FileWrite>,
    /// Filesystems created, in order.
    pub filesystems: Vec<Filesystem>,
    /// Mounts made, in order.
    pub mounts: Vec<Mount>,
    /// What the script printed with `print` and `debug`.
    pub log: Vec<String>,
}

impl Outcome {
    /// The settings of the run as `# key: value` lines (role, grub options, facts, filesystems,
    /// mounts), for dry-run listings.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        match &self.role {
            Some(r) => out.push_str(&format!("# role: {} {} on {}\n", r.role, r.version, r.disk)),
            None => out.push_str("# role: none (set_role was not called)\n"),
        }
        if !self.grub_options.is_empty() {
            out.push_str(&format!("# grub options: {}\n", self.grub_options));
        }
        if !self.facts.is_empty() {
            out.push_str(&format!(
                "# facts: {}\n",
                serde_json::Value::Object(self.facts.clone())
            ));
        }
        for f in &self.filesystems {
            out.push_str(&format!("# filesystem: {} {}", f.device, f.fs));
            if let Some(l) = &f.label {
                out.push_str(&format!(" label {l}"));
            }
            out.push('\n');
        }
        for m in &self.mounts {
            out.push_str(&format!(
                "# mount: {} on {} ({}, {})\n",
                m.device,
                m.path,
                m.mountpoint,
                m.fs.as_deref().unwrap_or("fs unknown")
            ));
        }
        for l in &self.log {
            out.push_str(&format!("# log: {l}\n"));
        }
        out
    }
}
