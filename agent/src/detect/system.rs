//! DMI (`/sys/class/dmi/id`) and kernel facts: `system product ...`, `system motherboard
//! ...`, `firmware bios ...`, `system kernel ...`.
//!
//! eDeploy took these from `lshw` and `dmidecode`; the kernel exposes the same SMBIOS strings
//! in `/sys/class/dmi/id`. What follows their form:
//! - `system product name` is `product_name`, followed by ` (SKU)` when the SKU string is set
//!   (lshw's form: `ProLiant DL360 Gen9 (755258-B21)`);
//! - `system product uuid` is upper case, as `dmidecode` prints it;
//! - eDeploy's serial quirk: a system serial `0123456789` or `0000000000` (TYAN, Supermicro)
//!   is replaced by the uuid, else the motherboard serial, else the first NIC's MAC without
//!   colons;
//! - `system kernel arch` is `uname -m` (`/proc/sys/kernel/arch`).
//!
//! A machine without DMI (some VMs, ARM boards) has no `system product` lines.

use super::{read_line_logged, Lines, Root};

const DMI: &str = "/sys/class/dmi/id";

fn dmi(root: &Root, file: &str) -> Option<String> {
    read_line_logged(root, &format!("{DMI}/{file}"))
}

/// Adds the product, motherboard and BIOS lines. `nic_id` is the first NIC's MAC without
/// colons (a replacement serial for boards with a fake one).
pub fn detect_dmi(root: &Root, out: &mut Lines, nic_id: Option<&str>) {
    if !root.exists(DMI) {
        tracing::info!(
            "no {} (no DMI on this machine): no system product lines",
            root.host_path(DMI).display()
        );
        return;
    }
    let serial = dmi(root, "product_serial");
    let name = dmi(root, "product_name").map(|name| match dmi(root, "product_sku") {
        Some(sku) if !sku.is_empty() => format!("{name} ({sku})"),
        _ => name,
    });
    let uuid = dmi(root, "product_uuid")
        .map(|u| u.to_uppercase())
        .filter(|u| !u.is_empty());
    let board_serial = dmi(root, "board_serial");
    let serial = serial.map(|s| {
        if s == "0123456789" || s == "0000000000" {
            let better = [uuid.as_deref(), board_serial.as_deref(), nic_id]
                .into_iter()
                .flatten()
                .find(|v| !v.is_empty());
            better.map_or(s, str::to_string)
        } else {
            s
        }
    });
    for (key, value) in [
        ("serial", serial),
        ("name", name),
        ("vendor", dmi(root, "sys_vendor")),
        ("version", dmi(root, "product_version")),
        ("uuid", uuid),
    ] {
        if let Some(v) = value {
            out.push("system", "product", key, v);
        }
    }
    for (key, file) in [
        ("name", "board_name"),
        ("vendor", "board_vendor"),
        ("version", "board_version"),
    ] {
        if let Some(v) = dmi(root, file) {
            out.push("system", "motherboard", key, v);
        }
    }
    if let Some(v) = board_serial {
        out.push("system", "motherboard", "serial", v);
    }
    for (key, file) in [
        ("version", "bios_version"),
        ("date", "bios_date"),
        ("vendor", "bios_vendor"),
    ] {
        if let Some(v) = dmi(root, file) {
            out.push("firmware", "bios", key, v);
        }
    }
}

/// The machine's architecture as `uname -m` gives it.
pub fn arch(root: &Root) -> Option<String> {
    const PATH: &str = "/proc/sys/kernel/arch";
    match root.read_line(PATH) {
        Ok(a) => Some(a),
        Err(_) if root.is_live() => {
            // Kernels before 6.1 lack the file; this program runs natively, so its own
            // architecture is the machine's. A capture writes it as that file.
            let a = std::env::consts::ARCH.to_string();
            root.note_synthetic(PATH, &format!("{a}\n"));
            Some(a)
        }
        Err(e) => {
            super::log_failure(root, PATH, &e);
            None
        }
    }
}

/// Adds `system kernel version/arch/cmdline`.
pub fn detect_kernel(root: &Root, out: &mut Lines) {
    if let Some(v) = read_line_logged(root, "/proc/sys/kernel/osrelease") {
        out.push("system", "kernel", "version", v);
    }
    if let Some(a) = arch(root) {
        out.push("system", "kernel", "arch", a);
    }
    if let Some(c) = read_line_logged(root, "/proc/cmdline") {
        out.push("system", "kernel", "cmdline", c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdeploy_specs::Value;

    fn tree(files: &[(&str, &str)]) -> std::io::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        for (name, content) in files {
            let path = dir.path().join("sys/class/dmi/id").join(name);
            std::fs::create_dir_all(path.parent().unwrap_or(dir.path()))?;
            std::fs::write(path, format!("{content}\n"))?;
        }
        Ok(dir)
    }

    fn serial(files: &[(&str, &str)], nic: Option<&str>) -> std::io::Result<Option<Value>> {
        let dir = tree(files)?;
        let mut out = Lines::default();
        detect_dmi(&Root::dir(dir.path()), &mut out, nic);
        Ok(out.get("system", "product", "serial").cloned())
    }

    #[test]
    fn fake_serials_are_replaced_as_edeploy_does() -> std::io::Result<()> {
        let uuid = ("product_uuid", "00020003-0004-0005-0006-000700080009");
        assert_eq!(
            serial(&[("product_serial", "0123456789"), uuid], None)?,
            Some("00020003-0004-0005-0006-000700080009".into())
        );
        assert_eq!(
            serial(
                &[("product_serial", "0000000000"), ("board_serial", "ZM123")],
                Some("0025904a1b2c")
            )?,
            Some("ZM123".into())
        );
        assert_eq!(
            serial(&[("product_serial", "0000000000")], Some("0025904a1b2c"))?,
            Some("0025904a1b2c".into())
        );
        assert_eq!(
            serial(&[("product_serial", "CZJ5210421"), uuid], None)?,
            Some("CZJ5210421".into())
        );
        Ok(())
    }

    #[test]
    fn the_sku_joins_the_product_name() -> std::io::Result<()> {
        let dir = tree(&[
            ("product_name", "ProLiant DL360 Gen9"),
            ("product_sku", "755258-B21"),
        ])?;
        let mut out = Lines::default();
        detect_dmi(&Root::dir(dir.path()), &mut out, None);
        assert_eq!(
            out.get("system", "product", "name"),
            Some(&Value::from("ProLiant DL360 Gen9 (755258-B21)"))
        );
        Ok(())
    }
}
