//! Pure rendering of a next boot: the iPXE script served over HTTP and the PXELINUX file
//! written under the TFTP root. No IO: a boot profile's own text (`<name>.ipxe`,
//! `<name>.prof`) is handed in by [`super::BootFiles`].

use std::path::PathBuf;

use super::BootTarget;

/// Where the install kernel lives and how machines reach the server.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// The server's URL as machines see it (`rdeploy.server=` on the kernel command line).
    pub public_url: String,
    /// Where iPXE asks for a machine's script (`/boot/<mac>.ipxe`): the public URL, or the
    /// plain HTTP `--boot-listen` of a TLS server.
    pub boot_url: String,
    /// Kernel and initramfs URLs for iPXE.
    pub kernel_url: String,
    pub initrd_url: String,
    /// Extra kernel arguments.
    pub kernel_args: String,
    /// Kernel and initramfs paths relative to the TFTP root, for PXELINUX.
    pub pxe_kernel: String,
    pub pxe_initrd: String,
    /// `--images-dir`: served at `/images/vmlinuz` and `/images/initrd.img` (see `images`).
    pub images_dir: Option<PathBuf>,
    /// The static `rdeploy-agent` served at `/agent` (`--agent-binary`, or the one beside
    /// the server's binary).
    pub agent_binary: Option<PathBuf>,
}

impl BootConfig {
    /// The defaults for a server reachable at `public_url`.
    pub fn new(public_url: &str) -> BootConfig {
        let public_url = public_url.trim_end_matches('/').to_owned();
        BootConfig {
            kernel_url: format!("{public_url}/images/vmlinuz"),
            initrd_url: format!("{public_url}/images/initrd.img"),
            kernel_args: String::new(),
            boot_url: public_url.clone(),
            public_url,
            pxe_kernel: "rdeploy/vmlinuz".into(),
            pxe_initrd: "rdeploy/initrd.img".into(),
            images_dir: None,
            agent_binary: None,
        }
    }

    /// The iPXE script for a target; `profile` is the boot profile's `.ipxe` text.
    pub fn ipxe(&self, target: &BootTarget, who: &str, profile: Option<&str>) -> String {
        let head = format!("#!ipxe\n# rdeploy: {who}: next boot {target}\n");
        match target {
            // `initrd=NAME`: under UEFI, iPXE hands the initramfs to the kernel's EFI stub as a
            // file of that name (older iPXE builds, such as QEMU's, only that way); BIOS
            // kernels ignore it.
            BootTarget::Install => format!(
                "{head}kernel {} rdeploy.server={} BOOTIF=01-${{netX/mac:hexhyp}} initrd={}{}\ninitrd {}\nboot\n",
                self.kernel_url,
                self.public_url,
                url_file_name(&self.initrd_url),
                args(&self.kernel_args),
                self.initrd_url
            ),
            BootTarget::Local => format!("{head}exit\n"),
            BootTarget::Profile { name } => match profile {
                Some(text) => text.to_owned(),
                None => format!("{head}echo rdeploy: no iPXE boot profile '{name}': booting the local disk\nexit\n"),
            },
        }
    }

    /// The PXELINUX file for a target; `profile` is the boot profile's `.prof` text (for
    /// `local`, `local.prof` when there is one).
    pub fn pxelinux(&self, target: &BootTarget, profile: Option<&str>) -> String {
        const LOCAL: &str = "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n";
        match (target, profile) {
            (BootTarget::Install, _) => format!(
                "# rdeploy: install\nDEFAULT rdeploy\nLABEL rdeploy\n  KERNEL {}\n  APPEND initrd={} rdeploy.server={}{}\n",
                self.pxe_kernel,
                self.pxe_initrd,
                self.public_url,
                args(&self.kernel_args)
            ),
            (_, Some(text)) => text.to_owned(),
            (BootTarget::Local, None) => format!("# rdeploy: local\n{LOCAL}"),
            (BootTarget::Profile { name }, None) => {
                format!("# rdeploy: no boot profile '{name}': local\n{LOCAL}")
            }
        }
    }

    /// `GET /boot.ipxe`: chains to the script of the booting machine's MAC.
    pub fn chain_ipxe(&self) -> String {
        format!(
            "#!ipxe\n# rdeploy: ask for this machine's next boot\nchain {}/boot/${{net0/mac}}.ipxe\n",
            self.boot_url
        )
    }
}

/// The last path segment of a URL (`http://h/images/initrd.img?x=1` → `initrd.img`): the
/// name iPXE gives the image it fetched.
fn url_file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

fn args(extra: &str) -> String {
    if extra.is_empty() {
        String::new()
    } else {
        format!(" {extra}")
    }
}

/// PXELINUX's file name for an IPv4 address: 8 upper-case hex digits (`0A120112`).
pub fn hex_ip(ip: std::net::Ipv4Addr) -> String {
    ip.octets().iter().map(|o| format!("{o:02X}")).collect()
}

/// PXELINUX's name for an IPv4 address or the first octets of one (`10.34` → `0A22`, a
/// prefix PXELINUX tries for every address of that subnet; PXE Manager's `simplify_ip`).
/// `None` for anything else.
pub fn hex_prefix(addr: &str) -> Option<String> {
    let octets: Vec<&str> = addr.split('.').collect();
    if octets.is_empty() || octets.len() > 4 {
        return None;
    }
    octets
        .iter()
        .map(|o| {
            (!o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()))
                .then(|| o.parse::<u8>().ok())
                .flatten()
                .map(|v| format!("{v:02X}"))
        })
        .collect()
}

/// PXELINUX's file name for a MAC (`01-52-54-00-12-34-56`), from a normalized MAC.
pub fn mac_file(mac: &str) -> String {
    format!("01-{}", mac.replace(':', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_target() {
        let b = BootConfig::new("http://10.0.0.1:8080/");
        let install = b.ipxe(&BootTarget::Install, "n1", None);
        assert!(install.starts_with("#!ipxe\n"), "{install}");
        assert!(
            install.contains(
                "kernel http://10.0.0.1:8080/images/vmlinuz rdeploy.server=http://10.0.0.1:8080 "
            ),
            "{install}"
        );
        assert!(
            install.contains(" initrd=initrd.img\ninitrd http://10.0.0.1:8080/images/initrd.img\n"),
            "{install}"
        );
        assert_eq!(url_file_name("http://h/a/initrd-5.img?v=2"), "initrd-5.img");
        assert!(b.ipxe(&BootTarget::Local, "n1", None).ends_with("exit\n"));
        assert_eq!(
            b.ipxe(
                &BootTarget::Profile {
                    name: "rescue".into()
                },
                "n1",
                Some("#!ipxe\nsanboot\n")
            ),
            "#!ipxe\nsanboot\n"
        );
        assert!(b.pxelinux(&BootTarget::Local, None).contains("LOCALBOOT 0"));
        assert_eq!(b.pxelinux(&BootTarget::Local, Some("LOCAL\n")), "LOCAL\n");
        assert!(b
            .pxelinux(&BootTarget::Install, None)
            .contains("APPEND initrd=rdeploy/initrd.img rdeploy.server=http://10.0.0.1:8080\n"));
        assert_eq!(hex_ip(std::net::Ipv4Addr::new(10, 18, 1, 18)), "0A120112");
        assert_eq!(mac_file("52:54:00:12:34:56"), "01-52-54-00-12-34-56");
        assert_eq!(hex_prefix("10.18.1.18").as_deref(), Some("0A120112"));
        assert_eq!(hex_prefix("10.34").as_deref(), Some("0A22"));
        for bad in ["", "10..1", "256.1", "1.2.3.4.5", "a.b", "10.0.0.01234"] {
            assert_eq!(hex_prefix(bad), None, "{bad}");
        }
    }
}
