//! The recipe of the install initramfs: which host files go in, and the manifest saying so.
//!
//! The image mirrors the host's layout: every file keeps its canonical host path (the
//! directory resolved through symlinks), and the host's top-level links (`/bin -> usr/bin`
//! on a merged-`/usr` system) are reproduced, so every spelling of a path works as on the
//! host. Symlinks on the way to a tool (`mkfs.ext4 -> mke2fs`, `pvcreate -> lvm`) are kept
//! as symlinks. Libraries come from [`crate::elf`], kernel modules from [`crate::modules`].
//!
//! In the image:
//! - `/init` and `/etc/udhcpc/default.script` ([`crate::init`]);
//! - `/usr/bin/rdeploy-agent` (meant to be static: `-C target-feature=+crt-static`);
//! - busybox with a link per applet, where no real tool of that name is included;
//! - the disk, RAID, LVM, IPMI and boot loader tools the configure API and the agent drive,
//!   with their shared libraries, and GRUB's module directories;
//! - kernel modules for storage, RAID, file systems and network, with a `modules.dep` for
//!   busybox modprobe and `/etc/rdeploy/modules.load` (the load order for `/init`);
//! - a few files the tools expect: `/etc/passwd`, `/etc/group`, `/etc/mtab`, a udev-less
//!   `/etc/lvm/lvm.conf`, `/dev/console`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::elf::{self, Resolver};
use crate::error::Error;
use crate::image::{Image, Member};
use crate::init;
use crate::modules::{self, ModuleIndex};

/// Where tools are looked for, in order.
pub const TOOL_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Tools the image cannot do without (the configure API's disk functions).
pub const REQUIRED_TOOLS: &[&str] = &["sgdisk", "sfdisk", "mkfs.ext4", "mkfs.vfat", "mdadm"];

/// Tools included when the host has them.
pub const OPTIONAL_TOOLS: &[&str] = &[
    // file systems and disks
    "mkfs.xfs",
    "mkfs.btrfs",
    "mke2fs",
    "mkfs.fat",
    "mkswap",
    "e2fsck",
    "tune2fs",
    "wipefs",
    "blkid",
    "blockdev",
    "lsblk",
    "partprobe",
    "partx",
    // LVM and device mapper
    "lvm",
    "pvcreate",
    "pvremove",
    "pvs",
    "vgcreate",
    "vgremove",
    "vgchange",
    "vgs",
    "lvcreate",
    "lvremove",
    "lvs",
    "dmsetup",
    // BMC
    "ipmitool",
    // hardware detection helpers
    "dmidecode",
    "ethtool",
    // boot loader (grub-install does what grub-probe, grub-mkimage and grub-bios-setup do)
    "grub-install",
    "efibootmgr",
    "kexec",
];

/// Kernel modules for storage, RAID, file systems and network (those this kernel lacks are
/// listed in the manifest, not an error: kernels differ). Big drivers that need firmware
/// anyway (bnx2x, i40e, mlx5) are left to `--module`.
pub const DEFAULT_MODULES: &[&str] = &[
    // crc32c first: ext4 needs it and nothing requests it on its own, and libcrc32c (xfs,
    // raid456) fails to load without it
    "crc32c",
    "crc32c_intel",
    "crc32c_generic",
    // entropy: without it, the first getrandom() of a machine with no RDRAND (QEMU's TCG)
    // blocks for minutes
    "virtio_rng",
    // virtual machines
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
    // disks and controllers
    "sd_mod",
    "ahci",
    "ata_piix",
    "nvme",
    "megaraid_sas",
    "mpt3sas",
    "hpsa",
    "smartpqi",
    // RAID and LVM
    "md_mod",
    "raid0",
    "raid1",
    "raid10",
    "raid456",
    "dm_mod",
    // file systems
    "ext4",
    "xfs",
    "vfat",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    "nls_ascii",
    "efivarfs",
    // network
    "af_packet",
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    "tg3",
    "bnx2",
    "r8169",
];

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The kernel (`/boot/vmlinuz-VERSION`).
    pub kernel: PathBuf,
    /// The agent binary (static).
    pub agent: PathBuf,
    /// The kernel's modules directory; default `/lib/modules/VERSION` from the kernel's name.
    pub modules_dir: Option<PathBuf>,
    /// busybox; default: the first `busybox` in [`TOOL_DIRS`].
    pub busybox: Option<PathBuf>,
    /// More modules, by name (an unknown name is an error).
    pub extra_modules: Vec<String>,
    /// More tools, by name or absolute path (a missing one is an error).
    pub extra_tools: Vec<String>,
    /// Optional tools to leave out, by name.
    pub without: Vec<String>,
    /// Leave GRUB out.
    pub no_grub: bool,
    /// The CA (or the server's pinned certificate), PEM: put at [`CA_FILE`], the only
    /// trust root of the agent's HTTPS calls.
    pub ca: Option<PathBuf>,
}

/// Where the CA goes in the image: the agent's `rdeploy_agent::tls::CA_FILE` (this crate
/// depends on no rdeploy crate; the two are checked equal by `tests/tests/tls.rs`).
pub const CA_FILE: &str = "/etc/rdeploy/ca.pem";

/// Reads a PEM certificate file, refusing one without a certificate.
fn read_ca(path: &Path) -> Result<Vec<u8>, Error> {
    let pem = read(path)?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::NotACertificate {
            path: path.to_owned(),
        });
    }
    Ok(pem)
}

/// What went into the image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Manifest {
    pub kernel: String,
    pub kernel_version: String,
    pub agent: String,
    pub agent_bytes: u64,
    pub agent_static: bool,
    pub busybox: String,
    pub busybox_applets: usize,
    /// Tool name → host path.
    pub tools: BTreeMap<String, String>,
    /// Optional tools the host does not have.
    pub tools_absent: Vec<String>,
    /// Shared libraries and loader (host paths).
    pub libraries: Vec<String>,
    /// Module files, in load order (relative to the modules dir).
    pub modules: Vec<String>,
    pub modules_builtin: Vec<String>,
    pub modules_absent: Vec<String>,
    /// GRUB platform directories included.
    pub grub: Vec<String>,
    /// The CA file put at [`CA_FILE`] (host path), if any.
    pub ca: Option<String>,
    /// Members of the image and the bytes of their contents.
    pub members: usize,
    pub content_bytes: u64,
    /// Set by the caller once rendered.
    pub initrd_bytes: u64,
}

/// The finished image and its manifest.
#[derive(Debug, Clone)]
pub struct Built {
    pub image: Image,
    pub manifest: Manifest,
}

/// Adds host files to an image at their canonical paths.
#[derive(Debug)]
struct Collector {
    image: Image,
    added: BTreeSet<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|err| Error::Read {
        path: path.to_owned(),
        err,
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |err| Error::Read {
        path: path.to_owned(),
        err,
    }
}

fn path_str(p: &Path) -> Result<String, Error> {
    p.to_str().map(str::to_owned).ok_or_else(|| Error::Read {
        path: p.to_owned(),
        err: std::io::Error::new(std::io::ErrorKind::InvalidData, "path is not UTF-8"),
    })
}

/// `path` with its directory resolved through symlinks (the file name kept).
fn canonical_dir(path: &Path) -> Result<PathBuf, Error> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(path.to_owned());
    };
    let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
    Ok(dir.join(name))
}

impl Collector {
    fn new() -> Collector {
        Collector {
            image: Image::new(),
            added: BTreeSet::new(),
        }
    }

    /// The host's top-level symlinks (`/bin -> usr/bin`).
    fn top_level_links(&mut self) -> Result<(), Error> {
        for top in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
            let p = Path::new("/").join(top);
            if let Ok(meta) = std::fs::symlink_metadata(&p) {
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&p).map_err(io(&p))?;
                    self.image.insert(
                        &format!("/{top}"),
                        Member::Symlink {
                            target: path_str(&target)?,
                        },
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Adds a host file (following and keeping symlinks) at its canonical path; returns that
    /// path.
    fn add_host(&mut self, path: &Path) -> Result<PathBuf, Error> {
        let mut at = canonical_dir(path)?;
        for _ in 0..40 {
            let meta = std::fs::symlink_metadata(&at).map_err(io(&at))?;
            let key = path_str(&at)?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&at).map_err(io(&at))?;
                if self.added.insert(at.clone()) {
                    self.image.insert(
                        &key,
                        Member::Symlink {
                            target: path_str(&target)?,
                        },
                    )?;
                }
                let next = at.parent().unwrap_or(Path::new("/")).join(&target);
                at = canonical_dir(&next)?;
                continue;
            }
            if self.added.insert(at.clone()) {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o7777;
                self.image.insert(
                    &key,
                    Member::File {
                        mode,
                        data: read(&at)?,
                    },
                )?;
            }
            return Ok(at);
        }
        Err(Error::Read {
            path: path.to_owned(),
            err: std::io::Error::other("too many levels of symbolic links"),
        })
    }

    /// Adds a host directory tree, skipping entries named in `skip`.
    fn add_tree(&mut self, dir: &Path, skip: &[&str]) -> Result<(), Error> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .map(|e| e.map(|e| e.path()).map_err(io(dir)))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for p in entries {
            if p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| skip.contains(&n))
            {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).map_err(io(&p))?;
            if meta.is_dir() {
                self.add_tree(&p, skip)?;
            } else {
                self.add_host(&p)?;
            }
        }
        Ok(())
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        let p = PathBuf::from(name);
        return p.exists().then_some(p);
    }
    TOOL_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn missing_tool(name: &str) -> Error {
    Error::MissingTool {
        tool: name.to_owned(),
        dirs: TOOL_DIRS.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The applets of a busybox binary, as `busybox --list-full` prints them (`bin/sh`).
fn busybox_applets(busybox: &Path) -> Result<Vec<String>, Error> {
    let out = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(io(busybox))?;
    if !out.status.success() {
        return Err(Error::Read {
            path: busybox.to_owned(),
            err: std::io::Error::other("`busybox --list-full` failed"),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut applets: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    applets.sort();
    Ok(applets)
}

/// A module file's content, decompressed when the host compressed it (`.ko.gz` here,
/// `.ko.xz` and `.ko.zst` through the host's `xz`/`zstd`), and its name in the image.
fn module_file(dir: &Path, rel: &str) -> Result<(String, Vec<u8>), Error> {
    let path = dir.join(rel);
    let data = read(&path)?;
    let name = uncompressed_name(rel);
    let tool = if rel.ends_with(".gz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&data[..]), &mut out)
            .map_err(io(&path))?;
        return Ok((name, out));
    } else if rel.ends_with(".xz") {
        "xz"
    } else if rel.ends_with(".zst") {
        "zstd"
    } else {
        return Ok((name, data));
    };
    let out = std::process::Command::new(tool)
        .args(["-d", "-c"])
        .arg(&path)
        .output()
        .map_err(io(&path))?;
    if !out.status.success() {
        return Err(Error::Read {
            path,
            err: std::io::Error::other(format!("`{tool} -d -c` failed")),
        });
    }
    Ok((name, out.stdout))
}

fn uncompressed_name(rel: &str) -> String {
    for suffix in [".gz", ".xz", ".zst"] {
        if let Some(n) = rel.strip_suffix(suffix) {
            return n.to_owned();
        }
    }
    rel.to_owned()
}

/// Builds the image from the host's files.
pub fn build(opts: &BuildOptions) -> Result<Built, Error> {
    let mut c = Collector::new();
    let mut m = Manifest {
        kernel: path_str(&opts.kernel)?,
        ..Manifest::default()
    };
    c.top_level_links()?;

    // The agent, at a fixed path.
    let agent = read(&opts.agent)?;
    m.agent = path_str(&opts.agent)?;
    m.agent_bytes = agent.len() as u64;
    let agent_deps = elf::read_deps(&opts.agent)?.ok_or_else(|| Error::Elf {
        path: opts.agent.clone(),
        message: "the agent is not an ELF binary".into(),
    })?;
    m.agent_static = agent_deps.interpreter.is_none() && agent_deps.needed.is_empty();
    c.image
        .insert("/usr/bin/rdeploy-agent", Member::exec(agent))?;
    let mut elf_files: Vec<PathBuf> = vec![opts.agent.clone()];

    // Tools.
    for name in REQUIRED_TOOLS.iter().chain(OPTIONAL_TOOLS) {
        if opts.without.iter().any(|w| w == name) && !REQUIRED_TOOLS.contains(name) {
            m.tools_absent.push((*name).to_owned());
            continue;
        }
        match find_tool(name) {
            Some(p) => {
                let real = c.add_host(&p)?;
                m.tools.insert((*name).to_owned(), path_str(&p)?);
                elf_files.push(real);
            }
            None if REQUIRED_TOOLS.contains(name) => return Err(missing_tool(name)),
            None => m.tools_absent.push((*name).to_owned()),
        }
    }
    for name in &opts.extra_tools {
        let p = find_tool(name).ok_or_else(|| missing_tool(name))?;
        let real = c.add_host(&p)?;
        m.tools.insert(name.clone(), path_str(&p)?);
        elf_files.push(real);
    }
    if !opts.no_grub && m.tools.contains_key("grub-install") {
        for platform in ["i386-pc", "x86_64-efi", "arm64-efi"] {
            let dir = Path::new("/usr/lib/grub").join(platform);
            if dir.is_dir() {
                // monolithic/: signed images for Secure Boot, 15 MB; grub-bios-setup and
                // grub-ntldr-img: programs grub-install does not run (it sets up in process).
                c.add_tree(&dir, &["monolithic", "grub-bios-setup", "grub-ntldr-img"])?;
                m.grub.push(path_str(&dir)?);
            }
        }
    }

    // busybox and its applets, where no real tool of the same name is in the image.
    let busybox = match &opts.busybox {
        Some(b) => b.clone(),
        None => find_tool("busybox").ok_or_else(|| missing_tool("busybox"))?,
    };
    let busybox_real = c.add_host(&busybox)?;
    m.busybox = path_str(&busybox)?;
    elf_files.push(busybox_real.clone());
    let busybox_image = path_str(&busybox_real)?;
    let real_names: BTreeSet<String> = m
        .tools
        .keys()
        .map(|n| n.rsplit('/').next().unwrap_or(n).to_owned())
        .collect();
    for applet in busybox_applets(&busybox)? {
        let host = Path::new("/").join(&applet);
        let Some(name) = host.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if real_names.contains(name) || name == "busybox" {
            continue;
        }
        let at = canonical_dir(&host).unwrap_or(host.clone());
        let key = path_str(&at)?;
        if c.image.contains(&key) {
            continue;
        }
        c.image.insert(
            &key,
            Member::Symlink {
                target: busybox_image.clone(),
            },
        )?;
        m.busybox_applets += 1;
    }

    // Shared libraries of everything ELF in the image.
    let resolver = Resolver::host();
    let mut libs: Vec<PathBuf> = resolver.closure(&elf_files)?.into_keys().collect();
    // dlopen()ed by glibc for thread cancellation; not in any DT_NEEDED.
    for extra in ["libgcc_s.so.1"] {
        if let Some(p) = resolver
            .dirs()
            .iter()
            .map(|d| d.join(extra))
            .find(|p| p.exists())
        {
            libs.push(p);
        }
    }
    for lib in &libs {
        let real = c.add_host(lib)?;
        m.libraries.push(path_str(&real)?);
    }
    m.libraries.sort();
    m.libraries.dedup();

    // Kernel modules.
    let modules_dir = match &opts.modules_dir {
        Some(d) => d.clone(),
        None => modules::modules_dir_for(&opts.kernel).ok_or_else(|| Error::Read {
            path: opts.kernel.clone(),
            err: std::io::Error::other(
                "the kernel is not named vmlinuz-VERSION: give --modules-dir",
            ),
        })?,
    };
    m.kernel_version = modules_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let index = ModuleIndex::load(&modules_dir)?;
    for name in &opts.extra_modules {
        if !index.knows(name) {
            return Err(Error::UnknownModule {
                name: name.clone(),
                modules_dep: modules_dir.join("modules.dep"),
            });
        }
    }
    let wanted: Vec<&str> = DEFAULT_MODULES
        .iter()
        .copied()
        .chain(opts.extra_modules.iter().map(String::as_str))
        .collect();
    let res = index.resolve(&wanted);
    let modules_image = path_str(&std::fs::canonicalize(&modules_dir).map_err(io(&modules_dir))?)?;
    let mut load = String::new();
    for rel in &res.load_order {
        let (name, data) = module_file(&modules_dir, rel)?;
        c.image
            .insert(&format!("{modules_image}/{name}"), Member::file(data))?;
        load.push_str(&format!("/lib/modules/{}/{name}\n", m.kernel_version));
        m.modules.push(name);
    }
    let included: BTreeSet<String> = res.load_order.iter().cloned().collect();
    let mut dep_text = index.dep_text_for(&included);
    for suffix in [".ko.gz", ".ko.xz", ".ko.zst"] {
        dep_text = dep_text.replace(suffix, ".ko");
    }
    c.image.insert(
        &format!("{modules_image}/modules.dep"),
        Member::file(dep_text),
    )?;
    c.image.insert(
        &format!("{modules_image}/modules.alias"),
        Member::file(index.alias_text_for(&included)),
    )?;
    for extra in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        let p = modules_dir.join(extra);
        if p.is_file() {
            c.image
                .insert(&format!("{modules_image}/{extra}"), Member::file(read(&p)?))?;
        }
    }
    m.modules_builtin = res.builtin;
    m.modules_absent = res.missing;

    // The scripts and the files tools expect.
    c.image.insert("/init", Member::exec(init::init_script()))?;
    c.image
        .insert(init::UDHCPC_SCRIPT, Member::exec(init::udhcpc_script()))?;
    c.image.insert(init::MODULES_LOAD, Member::file(load))?;
    c.image.insert(
        "/etc/passwd",
        Member::file("root:x:0:0:root:/root:/bin/sh\n"),
    )?;
    c.image.insert(
        "/etc/group",
        Member::file("root:x:0:\ndisk:x:6:\ntty:x:5:\n"),
    )?;
    c.image.insert(
        "/etc/nsswitch.conf",
        Member::file("passwd: files\ngroup: files\nhosts: files dns\n"),
    )?;
    c.image.insert(
        "/etc/mtab",
        Member::Symlink {
            target: "/proc/self/mounts".into(),
        },
    )?;
    c.image.insert(
        "/etc/lvm/lvm.conf",
        Member::file(
            "# rdeploy initramfs: no udev here\ndevices {\n    obtain_device_list_from_udev = 0\n}\nactivation {\n    udev_sync = 0\n    udev_rules = 0\n}\n",
        ),
    )?;
    c.image.insert(
        "/etc/mdadm/mdadm.conf",
        Member::file("# rdeploy initramfs\nDEVICE partitions containers\n"),
    )?;
    c.image.insert("/etc/resolv.conf", Member::file(""))?;
    if let Some(ca) = &opts.ca {
        c.image.insert(CA_FILE, Member::file(read_ca(ca)?))?;
        m.ca = Some(path_str(ca)?);
    }
    for dir in ["/proc", "/sys", "/dev", "/run", "/root", "/mnt", "/var/log"] {
        c.image.insert(dir, Member::Dir { mode: 0o755 })?;
    }
    c.image.insert("/tmp", Member::Dir { mode: 0o1777 })?;
    c.image.insert(
        "/dev/console",
        Member::CharDev {
            mode: 0o600,
            major: 5,
            minor: 1,
        },
    )?;
    c.image.insert(
        "/dev/null",
        Member::CharDev {
            mode: 0o666,
            major: 1,
            minor: 3,
        },
    )?;

    m.members = c.image.len();
    m.content_bytes = c.image.content_bytes();
    Ok(Built {
        image: c.image,
        manifest: m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_keep_the_file_name() -> Result<(), Error> {
        let p = canonical_dir(Path::new("/bin/sh"))?;
        assert_eq!(p.file_name().and_then(|n| n.to_str()), Some("sh"));
        assert!(p.is_absolute());
        Ok(())
    }

    #[test]
    fn symlinks_on_the_way_are_kept() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let real = dir.path().join("mke2fs");
        std::fs::write(&real, b"binary")?;
        std::os::unix::fs::symlink("mke2fs", dir.path().join("mkfs.ext4"))?;
        let mut c = Collector::new();
        let got = c.add_host(&dir.path().join("mkfs.ext4"))?;
        let base = std::fs::canonicalize(dir.path())?;
        assert_eq!(got, base.join("mke2fs"));
        let link = path_str(&base.join("mkfs.ext4"))?;
        assert_eq!(
            c.image.get(&link),
            Some(&Member::Symlink {
                target: "mke2fs".into()
            })
        );
        Ok(())
    }

    #[test]
    fn module_names_lose_their_compression_suffix() {
        assert_eq!(uncompressed_name("kernel/a/b.ko.zst"), "kernel/a/b.ko");
        assert_eq!(uncompressed_name("kernel/a/b.ko"), "kernel/a/b.ko");
    }
}
