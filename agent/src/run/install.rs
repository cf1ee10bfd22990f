//! The install steps after the configure script, as commands and files through a [`Host`]:
//! the staged `config()` files over the role tree, `/etc/fstab`, the boot loader in a chroot,
//! the records under `/var/log/rdeploy/`, unmounting, and the end action. A dry run hands
//! them a recording host and prints what they would do.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use rdeploy_configure::{Command, CommandOutput, FileWrite, Filesystem, Host, Mount};

use super::cmdline::EndAction;
use super::logged::tail;

/// Firmware the boot loader is installed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Firmware {
    /// UEFI when `/sys/firmware/efi` exists, else BIOS.
    Auto,
    /// BIOS (legacy): GRUB in the disk's boot area.
    Bios,
    /// UEFI: GRUB on the EFI system partition.
    Uefi,
}

impl Firmware {
    /// Auto resolved on this machine.
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto if Path::new("/sys/firmware/efi").exists() => Self::Uefi,
            Self::Auto => Self::Bios,
            f => f,
        }
    }
}

/// Runs commands of the install steps on a host with one time limit.
pub struct Steps<'a> {
    /// Where they run.
    pub host: &'a dyn Host,
    /// Time limit of each command.
    pub timeout: Duration,
}

impl std::fmt::Debug for Steps<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steps")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Steps<'_> {
    /// Runs `argv`; a non-zero exit is an error naming the command and its stderr.
    pub fn run<S: AsRef<str>>(&self, argv: &[S]) -> anyhow::Result<CommandOutput> {
        let c = Command::new(argv.iter().map(|s| s.as_ref().to_owned()), self.timeout);
        let out = self.host.run(&c).map_err(anyhow::Error::new)?;
        if !out.success() {
            let why = if out.stderr.trim().is_empty() {
                &out.stdout
            } else {
                &out.stderr
            };
            bail!(
                "`{}` exited with status {}: {}",
                c.line(),
                out.status,
                tail(why, 20).trim()
            );
        }
        Ok(out)
    }

    /// Writes a file (an absolute path of the installer, e.g. `/chroot/etc/fstab`).
    pub fn write(&self, path: &str, contents: String, mode: u32) -> anyhow::Result<()> {
        self.host
            .write_file(&FileWrite {
                path: path.to_owned(),
                contents,
                mode,
                owner: None,
            })
            .map_err(anyhow::Error::new)
    }

    /// Copies the files the script wrote (staged under `staging`) over the installed tree.
    pub fn copy_staged(&self, staging: &str, target: &str) -> anyhow::Result<()> {
        self.run(&["cp", "-a", &format!("{staging}/."), &format!("{target}/")])
            .map(drop)
    }

    /// `/etc/fstab` of the installed system from the script's mounts and swap filesystems:
    /// `UUID=` when `blkid` knows the filesystem (not in a dry run), else `LABEL=`, else the
    /// device.
    pub fn write_fstab(
        &self,
        target: &str,
        mounts: &[Mount],
        filesystems: &[Filesystem],
    ) -> anyhow::Result<String> {
        let mut uuids = BTreeMap::new();
        let devices = mounts.iter().map(|m| m.device.clone()).chain(
            filesystems
                .iter()
                .filter(|f| f.fs == "swap")
                .map(|f| f.device.clone()),
        );
        for dev in devices {
            let out = self.run(&["blkid", "-s", "UUID", "-o", "value", &dev]);
            if let Some(uuid) = out
                .ok()
                .map(|o| o.stdout.trim().to_owned())
                .filter(|u| !u.is_empty())
            {
                uuids.insert(dev, uuid);
            }
        }
        let text = fstab(mounts, filesystems, &uuids);
        self.write(&format!("{target}/etc/fstab"), text.clone(), 0o644)?;
        Ok(text)
    }

    /// Unmounts the script's mounts in reverse order (`umount` of each mount point).
    pub fn unmount(&self, mounts: &[Mount]) -> anyhow::Result<()> {
        for m in mounts.iter().rev() {
            self.run(&["umount", &m.mountpoint])
                .with_context(|| format!("cannot unmount {} from {}", m.device, m.mountpoint))?;
        }
        Ok(())
    }
}

/// The fstab line's first field for a device.
fn spec(device: &str, filesystems: &[Filesystem], uuids: &BTreeMap<String, String>) -> String {
    if let Some(u) = uuids.get(device) {
        return format!("UUID={u}");
    }
    match filesystems
        .iter()
        .rev()
        .find(|f| f.device == device)
        .and_then(|f| f.label.clone())
    {
        Some(l) => format!("LABEL={l}"),
        None => device.to_owned(),
    }
}

/// The text of `/etc/fstab` (pure).
pub fn fstab(
    mounts: &[Mount],
    filesystems: &[Filesystem],
    uuids: &BTreeMap<String, String>,
) -> String {
    let mut out =
        String::from("# /etc/fstab: written by rdeploy-agent from the configure script's mounts\n");
    for m in mounts {
        let fs =
            m.fs.as_deref()
                .map(|f| if f == "fat32" { "vfat" } else { f })
                .unwrap_or("auto");
        let (options, pass) = match (m.path.as_str(), fs) {
            ("/", f) if f.starts_with("ext") => ("errors=remount-ro", 1),
            ("/", _) => ("defaults", 1),
            (_, "vfat") => ("umask=0077", 2),
            _ => ("defaults", 2),
        };
        out.push_str(&format!(
            "{} {} {fs} {options} 0 {pass}\n",
            spec(&m.device, filesystems, uuids),
            m.path
        ));
    }
    for f in filesystems.iter().filter(|f| f.fs == "swap") {
        out.push_str(&format!(
            "{} none swap sw 0 0\n",
            spec(&f.device, filesystems, uuids)
        ));
    }
    out
}

/// The first field of the fstab line mounted on `/` (`UUID=...`, `LABEL=root`, a device):
/// the `root=` of a kexec.
pub fn root_of(fstab: &str) -> Option<String> {
    fstab
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let mut fields = l.split_whitespace();
            let spec = fields.next()?;
            (fields.next()? == "/").then(|| spec.to_owned())
        })
}

/// What the boot loader step needs.
#[derive(Debug, Clone)]
pub struct BootLoader {
    /// Where the installed system is mounted (`/chroot`).
    pub target: String,
    /// The disk (`/dev/sda`) of `set_role`.
    pub disk: String,
    /// BIOS or UEFI (resolved).
    pub firmware: Firmware,
    /// Extra kernel command line (`grub_options`).
    pub options: String,
    /// The EFI system partition's path in the installed system (`/boot/efi`).
    pub efi_dir: String,
}

impl BootLoader {
    /// `grub2-*` when the installed tree has `grub2-install` (Red Hat family), else `grub-*`.
    pub fn flavour(target: &str) -> &'static str {
        let t = Path::new(target);
        let grub2 = [
            "usr/sbin/grub2-install",
            "usr/bin/grub2-install",
            "sbin/grub2-install",
        ]
        .iter()
        .any(|p| t.join(p).exists());
        if grub2 {
            "grub2"
        } else {
            "grub"
        }
    }

    /// Whether the installed tree has its own `{grub}-install` (a full OS does; a minimal
    /// role tree may not).
    pub fn tree_has_grub(target: &str, grub: &str) -> bool {
        let t = Path::new(target);
        ["usr/sbin", "usr/bin", "sbin", "bin"]
            .iter()
            .any(|d| t.join(d).join(format!("{grub}-install")).exists())
    }

    /// For a role tree without GRUB: the initramfs's own `grub-install` writes the boot loader,
    /// with the target's `/boot` as its boot directory, and the tree's `/boot/grub/grub.cfg`
    /// is kept (there is no `grub-mkconfig` to write one; without that file nothing could
    /// boot, which is an error).
    pub fn install_from_initramfs(&self, steps: &Steps<'_>) -> anyhow::Result<()> {
        let t = &self.target;
        let boot_dir = format!("--boot-directory={t}/boot");
        match self.firmware {
            Firmware::Uefi => {
                let efi = format!("--efi-directory={t}{}", self.efi_dir);
                steps.run(&[
                    "grub-install",
                    "--target=x86_64-efi",
                    &efi,
                    &boot_dir,
                    "--bootloader-id=rdeploy",
                    "--recheck",
                ])?;
                steps.run(&[
                    "grub-install",
                    "--target=x86_64-efi",
                    &efi,
                    &boot_dir,
                    "--removable",
                    "--recheck",
                ])?;
            }
            _ => {
                steps.run(&[
                    "grub-install",
                    "--target=i386-pc",
                    &boot_dir,
                    "--recheck",
                    &self.disk,
                ])?;
            }
        }
        let cfg = Path::new(t).join("boot/grub/grub.cfg");
        anyhow::ensure!(
            cfg.exists(),
            "the role tree has no grub-install and no /boot/grub/grub.cfg: nothing would boot it"
        );
        Ok(())
    }

    /// Installs GRUB in a chroot of the target (with /dev, /proc, /sys bound in, and efivarfs
    /// on UEFI), always unmounting what it mounted.
    pub fn install(&self, steps: &Steps<'_>, grub: &str) -> anyhow::Result<()> {
        let t = &self.target;
        steps.run(&[
            "mkdir",
            "-p",
            &format!("{t}/dev"),
            &format!("{t}/proc"),
            &format!("{t}/sys"),
        ])?;
        let mut mounted: Vec<String> = Vec::new();
        let result = (|| {
            for d in ["dev", "proc", "sys"] {
                steps.run(&["mount", "--bind", &format!("/{d}"), &format!("{t}/{d}")])?;
                mounted.push(format!("{t}/{d}"));
            }
            if self.firmware == Firmware::Uefi {
                let efivars = format!("{t}/sys/firmware/efi/efivars");
                steps.run(&["mount", "-t", "efivarfs", "efivarfs", &efivars])?;
                mounted.push(efivars);
            }
            if !self.options.is_empty() {
                // /etc/default/grub is a shell fragment on every distribution: a line appended
                // last wins, whatever the role tree put there.
                steps.run(&[
                    "sh",
                    "-c",
                    "printf '%s\\n' \"$1\" >> \"$2\"",
                    "sh",
                    &format!(
                        "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX {}\"",
                        self.options
                    ),
                    &format!("{t}/etc/default/grub"),
                ])?;
            }
            let install = format!("{grub}-install");
            match self.firmware {
                Firmware::Uefi => {
                    let efi = format!("--efi-directory={}", self.efi_dir);
                    steps.run(&[
                        "chroot",
                        t,
                        &install,
                        "--target=x86_64-efi",
                        &efi,
                        "--bootloader-id=rdeploy",
                        "--recheck",
                    ])?;
                    // Also at the removable-media path, for firmware that forgets boot entries.
                    steps.run(&[
                        "chroot",
                        t,
                        &install,
                        "--target=x86_64-efi",
                        &efi,
                        "--removable",
                        "--recheck",
                    ])?;
                }
                _ => {
                    steps.run(&[
                        "chroot",
                        t,
                        &install,
                        "--target=i386-pc",
                        "--recheck",
                        &self.disk,
                    ])?;
                }
            }
            steps.run(&[
                "chroot",
                t,
                &format!("{grub}-mkconfig"),
                "-o",
                &format!("/boot/{grub}/grub.cfg"),
            ])?;
            Ok(())
        })();
        let mut undo = Ok(());
        for m in mounted.iter().rev() {
            if let Err(e) = steps.run(&["umount", m]) {
                undo = Err(e);
            }
        }
        result.and(undo)
    }
}

/// The end action's commands before unmounting (kexec loads the installed kernel while the
/// target is still mounted) and after.
pub fn end_action(
    action: EndAction,
    target: &str,
    root_spec: &str,
    options: &str,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    match action {
        EndAction::Console => (vec![], vec![]),
        EndAction::Reboot => (vec![], vec![v(&["reboot", "-f"])]),
        EndAction::Halt => (vec![], vec![v(&["poweroff", "-f"])]),
        EndAction::Kexec => {
            let (kernel, initrd) = installed_kernel(target);
            let mut append = format!("root={root_spec} ro");
            if !options.is_empty() {
                append.push(' ');
                append.push_str(options);
            }
            (
                vec![vec![
                    "kexec".into(),
                    "-l".into(),
                    kernel,
                    format!("--initrd={initrd}"),
                    format!("--append={append}"),
                ]],
                vec![v(&["kexec", "-e"])],
            )
        }
    }
}

/// The newest `boot/vmlinuz-*` of the target and its initrd; `boot/vmlinuz` and
/// `boot/initrd.img` (Debian's links) when there is none to see (a dry run).
fn installed_kernel(target: &str) -> (String, String) {
    let boot = Path::new(target).join("boot");
    let mut versions: Vec<String> = std::fs::read_dir(&boot)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("vmlinuz-"))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    let b = boot.display();
    match versions.pop() {
        Some(v) => {
            let initrd = ["initrd.img-", "initramfs-"]
                .iter()
                .map(|p| {
                    format!(
                        "{b}/{p}{v}{}",
                        if p.starts_with("initramfs") {
                            ".img"
                        } else {
                            ""
                        }
                    )
                })
                .find(|p| Path::new(p).exists())
                .unwrap_or_else(|| format!("{b}/initrd.img-{v}"));
            (format!("{b}/vmlinuz-{v}"), initrd)
        }
        None => (format!("{b}/vmlinuz"), format!("{b}/initrd.img")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdeploy_configure::RecordingHost;

    fn mount(device: &str, path: &str, mountpoint: &str, fs: Option<&str>) -> Mount {
        Mount {
            device: device.into(),
            path: path.into(),
            mountpoint: mountpoint.into(),
            fs: fs.map(str::to_owned),
        }
    }

    #[test]
    fn fstab_prefers_uuid_then_label_then_device() {
        let mounts = [
            mount("/dev/vda2", "/", "/chroot", Some("ext4")),
            mount("/dev/vda1", "/boot/efi", "/chroot/boot/efi", Some("vfat")),
            mount("/dev/vg0/var", "/var", "/chroot/var", None),
        ];
        let fss = [
            Filesystem {
                device: "/dev/vda1".into(),
                fs: "vfat".into(),
                label: Some("boot".into()),
            },
            Filesystem {
                device: "/dev/vda2".into(),
                fs: "ext4".into(),
                label: Some("root".into()),
            },
            Filesystem {
                device: "/dev/vda3".into(),
                fs: "swap".into(),
                label: None,
            },
        ];
        let mut uuids = BTreeMap::new();
        uuids.insert("/dev/vda2".to_owned(), "1234-abcd".to_owned());
        let text = fstab(&mounts, &fss, &uuids);
        assert_eq!(root_of(&text).as_deref(), Some("UUID=1234-abcd"));
        assert_eq!(root_of("# / only in a comment\n"), None);
        assert_eq!(
            text,
            "# /etc/fstab: written by rdeploy-agent from the configure script's mounts\n\
             UUID=1234-abcd / ext4 errors=remount-ro 0 1\n\
             LABEL=boot /boot/efi vfat umask=0077 0 2\n\
             /dev/vg0/var /var auto defaults 0 2\n\
             /dev/vda3 none swap sw 0 0\n"
        );
    }

    #[test]
    fn bootloader_unmounts_what_it_mounted_even_on_failure() {
        let host = RecordingHost::new().respond_prefix(
            "chroot /chroot grub-install",
            CommandOutput::failed(
                1,
                "grub-install: error: cannot find a device for /boot/grub",
            ),
        );
        let steps = Steps {
            host: &host,
            timeout: Duration::from_secs(60),
        };
        let bl = BootLoader {
            target: "/chroot".into(),
            disk: "/dev/vda".into(),
            firmware: Firmware::Bios,
            options: "console=ttyS0".into(),
            efi_dir: "/boot/efi".into(),
        };
        let err = bl
            .install(&steps, "grub")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("`chroot /chroot grub-install --target=i386-pc --recheck /dev/vda` exited with status 1: grub-install: error: cannot find"), "{err}");
        let lines = host.command_lines();
        assert_eq!(
            lines[lines.len() - 3..],
            [
                "umount /chroot/sys",
                "umount /chroot/proc",
                "umount /chroot/dev"
            ]
        );
    }

    #[test]
    fn a_tree_without_grub_gets_the_initramfs_grub_and_keeps_its_grub_cfg() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let t = dir.path().to_string_lossy().into_owned();
        assert!(!BootLoader::tree_has_grub(&t, "grub"));
        let host = RecordingHost::new();
        let steps = Steps {
            host: &host,
            timeout: Duration::from_secs(60),
        };
        let bl = BootLoader {
            target: t.clone(),
            disk: "/dev/vdc".into(),
            firmware: Firmware::Bios,
            options: String::new(),
            efi_dir: "/boot/efi".into(),
        };
        let err = bl
            .install_from_initramfs(&steps)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("no /boot/grub/grub.cfg"), "{err}");
        std::fs::create_dir_all(dir.path().join("boot/grub"))?;
        std::fs::write(dir.path().join("boot/grub/grub.cfg"), "echo hi\n")?;
        bl.install_from_initramfs(&steps)?;
        let expected =
            format!("grub-install --target=i386-pc --boot-directory={t}/boot --recheck /dev/vdc");
        assert_eq!(host.command_lines().last(), Some(&expected));
        std::fs::create_dir_all(dir.path().join("usr/sbin"))?;
        std::fs::write(dir.path().join("usr/sbin/grub-install"), "")?;
        assert!(BootLoader::tree_has_grub(&t, "grub"));
        Ok(())
    }

    #[test]
    fn kexec_loads_before_unmounting_and_jumps_after() {
        let (before, after) = end_action(
            EndAction::Kexec,
            "/nonexistent-target",
            "LABEL=root",
            "console=ttyS0",
        );
        assert_eq!(
            before,
            [[
                "kexec",
                "-l",
                "/nonexistent-target/boot/vmlinuz",
                "--initrd=/nonexistent-target/boot/initrd.img",
                "--append=root=LABEL=root ro console=ttyS0"
            ]]
        );
        assert_eq!(after, [["kexec", "-e"]]);
        assert_eq!(
            end_action(EndAction::Console, "/t", "x", ""),
            (vec![], vec![])
        );
    }
}
