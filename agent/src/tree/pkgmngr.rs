//! eDeploy's `edeploy activate-pkgmngr` / `deactivate-pkgmngr`: on a deployed host whose
//! files the role tree owns, the package managers (`apt-get`, `yum`) are turned off so a
//! manual install cannot drift from the tree, and on again for maintenance.
//!
//! As eDeploy did: the real program is kept as `/usr/bin/<tool>.real`, and `/usr/bin/<tool>`
//! becomes a symlink, to `pkgmngr.edeploy` (a script that says the tool is deactivated) or
//! back to `<tool>.real`. Tools the system does not have are left alone.

use std::path::Path;

use anyhow::{Context, Result};

/// The package managers eDeploy switched.
pub const TOOLS: &[&str] = &["apt-get", "yum"];

/// The script that stands in for a deactivated package manager.
const STUB: &str = "pkgmngr.edeploy";

fn stub_text() -> &'static str {
    "#!/bin/sh\n\necho \"$(basename $0) is deactivated. Use \\\"edeploy activate-pkgmngr\\\" to bring it back.\"\nexit 0\n"
}

/// Moves `/usr/bin/<tool>` to `<tool>.real` unless it is a symlink already (then the real
/// program is there). Returns whether the system has the tool at all.
fn keep_real(bin: &Path, tool: &str) -> Result<bool> {
    let path = bin.join(tool);
    let real = bin.join(format!("{tool}.real"));
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => Ok(real.exists()),
        Ok(_) => {
            std::fs::rename(&path, &real)
                .with_context(|| format!("cannot move {} to {}", path.display(), real.display()))?;
            Ok(true)
        }
        Err(_) => Ok(real.exists()),
    }
}

/// Points `/usr/bin/<tool>` at `target` (a name in the same directory), replacing it
/// atomically.
fn link(bin: &Path, tool: &str, target: &str) -> Result<()> {
    let path = bin.join(tool);
    let tmp = bin.join(format!(".{tool}.rdeploy-link"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))
}

/// `deactivate-pkgmngr` under `root`: the tools print that they are deactivated. Returns
/// the tools switched.
pub fn deactivate(root: &Path) -> Result<Vec<&'static str>> {
    let bin = root.join("usr/bin");
    let stub = bin.join(STUB);
    super::conf::write_atomic(&stub, stub_text().as_bytes())?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", stub.display()))?;
    let mut done = Vec::new();
    for tool in TOOLS {
        if keep_real(&bin, tool)? {
            link(&bin, tool, STUB)?;
            done.push(*tool);
        }
    }
    Ok(done)
}

/// `activate-pkgmngr` under `root`: the real tools again. Returns the tools switched.
pub fn activate(root: &Path) -> Result<Vec<&'static str>> {
    let bin = root.join("usr/bin");
    let mut done = Vec::new();
    for tool in TOOLS {
        if keep_real(&bin, tool)? {
            link(&bin, tool, &format!("{tool}.real"))?;
            done.push(*tool);
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deactivate_then_activate_keeps_the_real_program() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let bin = tmp.path().join("usr/bin");
        std::fs::create_dir_all(&bin)?;
        std::fs::write(bin.join("apt-get"), "real apt-get")?;
        assert_eq!(deactivate(tmp.path())?, ["apt-get"]);
        assert_eq!(std::fs::read_link(bin.join("apt-get"))?, Path::new(STUB));
        assert!(std::fs::read_to_string(bin.join("apt-get"))?.contains("is deactivated"));
        assert_eq!(
            std::fs::read_to_string(bin.join("apt-get.real"))?,
            "real apt-get"
        );
        // Twice is harmless: the real program stays where it is.
        assert_eq!(deactivate(tmp.path())?, ["apt-get"]);
        assert_eq!(activate(tmp.path())?, ["apt-get"]);
        assert_eq!(
            std::fs::read_to_string(bin.join("apt-get"))?,
            "real apt-get"
        );
        assert!(
            !bin.join("yum").exists(),
            "a tool the system lacks is left alone"
        );
        Ok(())
    }
}
