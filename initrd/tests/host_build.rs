//! Builds the initramfs from this host's real kernel, modules and tools (what
//! `scripts/build-boot-images` does, with busybox standing in for the agent), and checks
//! that the result is deterministic and complete: every ELF member finds its loader and
//! libraries inside the image, every module it loads is there, after its dependencies.
//!
//! Needs a Debian kernel (`linux-image-amd64`) and the tools of `scripts/apt-packages`:
//! `bash scripts/deps` installs them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rdeploy_initrd::build::{build, BuildOptions, Built};
use rdeploy_initrd::image::{Image, Member};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn kernel() -> Result<PathBuf> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .filter(|p| rdeploy_initrd::modules::modules_dir_for(p).is_some_and(|d| d.is_dir()))
        .collect();
    kernels.sort();
    kernels
        .pop()
        .ok_or_else(|| "no /boot/vmlinuz-VERSION with /lib/modules/VERSION: run `bash scripts/deps` (linux-image-amd64)".into())
}

fn build_once() -> Result<Built> {
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or("no busybox: run `bash scripts/deps` (busybox-static)")?;
    Ok(build(&BuildOptions {
        kernel: kernel()?,
        agent: busybox,
        modules_dir: None,
        busybox: None,
        extra_modules: vec![],
        extra_tools: vec![],
        without: vec![],
        no_grub: false,
        ca: None,
    })?)
}

/// Resolves `path` inside the image, following its symlinks (relative and absolute).
fn resolve<'a>(image: &'a Image, path: &str) -> Option<(String, &'a Member)> {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .rev()
        .map(str::to_owned)
        .collect();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        parts.push(part);
        let here = format!("/{}", parts.join("/"));
        if let Some(Member::Symlink { target }) = image.get(&here) {
            hops += 1;
            if hops > 40 {
                return None;
            }
            parts.pop();
            if target.starts_with('/') {
                parts.clear();
            }
            todo.extend(target.split('/').rev().map(str::to_owned));
        }
    }
    let here = format!("/{}", parts.join("/"));
    image.get(&here).map(|m| (here, m))
}

#[test]
fn the_host_build_is_deterministic_and_complete() -> Result<()> {
    let a = build_once()?;
    let b = build_once()?;
    assert_eq!(a.image.to_cpio(), b.image.to_cpio(), "two builds differ");
    let image = &a.image;
    let m = &a.manifest;

    for required in [
        "/init",
        "/usr/bin/rdeploy-agent",
        "/etc/udhcpc/default.script",
    ] {
        assert!(resolve(image, required).is_some(), "{required} missing");
    }
    for tool in [
        "sh",
        "sgdisk",
        "sfdisk",
        "mkfs.ext4",
        "mkfs.vfat",
        "mdadm",
        "udhcpc",
        "insmod",
    ] {
        let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|d| resolve(image, &format!("{d}/{tool}")).is_some());
        assert!(found, "{tool} is not on the image's PATH");
    }

    // Every dynamically linked ELF member finds its loader and libraries in the image.
    let lib_dirs: Vec<String> = [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut checked = 0;
    for (path, member) in image.members() {
        let Member::File { data, .. } = member else {
            continue;
        };
        if !data.starts_with(b"\x7fELF")
            || path.contains("/modules/")
            || path.starts_with("/usr/lib/grub/")
        {
            continue;
        }
        let Ok(elf) = goblin::elf::Elf::parse(data) else {
            continue;
        };
        if let Some(interp) = elf.interpreter {
            assert!(
                resolve(image, interp).is_some(),
                "{path}: loader {interp} missing"
            );
        }
        for soname in &elf.libraries {
            let found = lib_dirs
                .iter()
                .any(|d| resolve(image, &format!("{d}/{soname}")).is_some());
            assert!(found, "{path}: needs {soname}, not in the image");
        }
        checked += 1;
    }
    assert!(checked > 10, "only {checked} ELF files checked");

    // Modules: each listed file is there, and loaded after the modules it depends on.
    let Some((_, Member::File { data: load, .. })) = resolve(image, "/etc/rdeploy/modules.load")
    else {
        return Err("no /etc/rdeploy/modules.load".into());
    };
    let load = String::from_utf8(load.clone())?;
    let order: Vec<&str> = load.lines().collect();
    assert_eq!(order.len(), m.modules.len());
    for path in &order {
        assert!(resolve(image, path).is_some(), "{path} listed but missing");
    }
    let position = |name: &str| {
        order
            .iter()
            .position(|p| Path::new(p).file_name().is_some_and(|f| f == name))
    };
    for (module, dep) in [
        ("virtio_blk.ko", "virtio_ring.ko"),
        ("raid1.ko", "md-mod.ko"),
        ("ext4.ko", "jbd2.ko"),
    ] {
        if let (Some(m_at), Some(d_at)) = (position(module), position(dep)) {
            assert!(d_at < m_at, "{dep} must load before {module}");
        }
    }
    let loaded: BTreeSet<String> = order
        .iter()
        .filter_map(|p| Path::new(p).file_stem())
        .map(|s| s.to_string_lossy().replace('-', "_"))
        .collect();
    // nls_ascii: Debian's vfat mounts with iocharset=ascii by default (the ESP fails without).
    for needed in [
        "ext4",
        "crc32c_generic",
        "raid1",
        "virtio_net",
        "virtio_rng",
        "vfat",
        "nls_cp437",
        "nls_ascii",
    ] {
        assert!(
            loaded.contains(needed) || m.modules_builtin.iter().any(|b| b == needed),
            "{needed} is neither loaded nor built in: {loaded:?}"
        );
    }
    Ok(())
}
