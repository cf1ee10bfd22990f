//! `rdeploy dhcp-config`: a whole DHCP server configuration (dnsmasq or ISC dhcpd) with a
//! host entry for every machine the server knows an address of, and the network-boot
//! lines of `rdeploy dnsmasq-config` / `docs/boot-setup.md`. The host list is the
//! server's (`GET /dhcp-hosts`); this module only renders it, as pure text.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::DhcpArgs;
use crate::commands::Outcome;
use crate::wire::{DhcpHost, DhcpHosts};

/// The network the DHCP server serves and where machines find their boot files.
#[derive(Debug, Clone)]
pub struct Boot {
    pub network: Ipv4Addr,
    pub prefix: u8,
    /// The rdeploy server's URL as machines reach it.
    pub public_url: String,
    pub tftp_root: PathBuf,
    /// The TFTP server's address (ISC's `next-server`).
    pub tftp_server: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
}

impl Boot {
    fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - u32::from(self.prefix)))
    }

    fn url(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }
}

/// `10.0.0.0/24` (host bits must be clear).
pub fn parse_subnet(text: &str) -> Result<(Ipv4Addr, u8)> {
    let (net, len) = text.split_once('/').with_context(|| {
        format!("--subnet {text:?}: give the network with its prefix length, e.g. 10.0.0.0/24")
    })?;
    let net: Ipv4Addr = net
        .parse()
        .with_context(|| format!("--subnet {text:?}: {net:?} is not an IPv4 address"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (8..=30).contains(l))
        .with_context(|| format!("--subnet {text:?}: the prefix length must be 8 to 30"))?;
    let mask = u32::MAX << (32 - u32::from(len));
    anyhow::ensure!(
        u32::from(net) & !mask == 0,
        "--subnet {text:?}: host bits are set (the network is {})",
        Ipv4Addr::from(u32::from(net) & mask)
    );
    Ok((net, len))
}

/// The boot lines dnsmasq needs in both modes (proxy DHCP next to another server, or the
/// DHCP server itself): iPXE over TFTP for PXE firmware, then `boot.ipxe` over HTTP.
pub fn dnsmasq_boot_lines(url: &str, tftp_root: &Path) -> String {
    let url = url.trim_end_matches('/');
    format!(
        "\
enable-tftp
tftp-root={tftp}
dhcp-userclass=set:ipxe,iPXE
pxe-prompt=\"rdeploy\",0
pxe-service=tag:!ipxe,x86PC,\"rdeploy (BIOS)\",undionly.kpxe
pxe-service=tag:!ipxe,X86-64_EFI,\"rdeploy (UEFI)\",ipxe.efi
dhcp-boot=tag:ipxe,{url}/boot.ipxe
",
        tftp = tftp_root.display()
    )
}

/// A name DHCP servers take: letters, digits and '-' (others become '-').
fn dhcp_name(name: &str) -> String {
    let n: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let n = n.trim_matches('-').to_owned();
    if n.is_empty() {
        "host".to_owned()
    } else {
        n
    }
}

/// dnsmasq as the DHCP server: only the hosts listed get an address (`static` range).
pub fn dnsmasq(hosts: &[DhcpHost], boot: &Boot) -> String {
    let mut out = format!(
        "\
# rdeploy: dnsmasq as the DHCP server of {net}/{len}, written by `rdeploy dhcp-config --dnsmasq`.
# Every machine rdeploy knows an address of (registered systems, nodes, CMDB entries with a
# MAC) gets its fixed address; iPXE then fetches {url}/boot.ipxe.
port=0
log-dhcp
dhcp-range={net},static,{mask}
",
        net = boot.network,
        len = boot.prefix,
        mask = boot.netmask(),
        url = boot.url(),
    );
    if let Some(r) = boot.router {
        out.push_str(&format!("dhcp-option=option:router,{r}\n"));
    }
    out.push_str(&dnsmasq_boot_lines(&boot.public_url, &boot.tftp_root));
    for h in hosts {
        out.push_str(&format!("# {} ({})\n", h.name, h.source));
        out.push_str(&format!(
            "dhcp-host={},{},{}\n",
            h.macs.join(","),
            h.ip,
            dhcp_name(&h.name)
        ));
    }
    out
}

/// ISC dhcpd's `dhcpd.conf`: the subnet with the two-stage boot, one `host` per MAC.
pub fn isc(hosts: &[DhcpHost], boot: &Boot) -> String {
    let mut out = format!(
        "\
# rdeploy: ISC dhcpd for {net}/{len}, written by `rdeploy dhcp-config --isc`.
# Every machine rdeploy knows an address of (registered systems, nodes, CMDB entries with a
# MAC) gets its fixed address; iPXE then fetches {url}/boot.ipxe.
option arch code 93 = unsigned integer 16;
authoritative;

subnet {net} netmask {mask} {{
",
        net = boot.network,
        len = boot.prefix,
        mask = boot.netmask(),
        url = boot.url(),
    );
    if let Some(r) = boot.router {
        out.push_str(&format!("    option routers {r};\n"));
    }
    out.push_str(&format!(
        "    next-server {tftp};
    if exists user-class and option user-class = \"iPXE\" {{
        filename \"{url}/boot.ipxe\";
    }} elsif option arch = 00:07 or option arch = 00:09 {{
        filename \"ipxe.efi\";
    }} else {{
        filename \"undionly.kpxe\";
    }}
}}
",
        tftp = boot.tftp_server,
        url = boot.url(),
    ));
    let mut seen = std::collections::HashSet::new();
    for h in hosts {
        let base = dhcp_name(&h.name);
        out.push_str(&format!("\n# {} ({})\n", h.name, h.source));
        for (i, mac) in h.macs.iter().enumerate() {
            let mut name = if i == 0 {
                base.clone()
            } else {
                format!("{base}-{}", i + 1)
            };
            let mut k = 2;
            while !seen.insert(name.clone()) {
                name = format!("{base}-x{k}");
                k += 1;
            }
            out.push_str(&format!(
                "host {name} {{\n    hardware ethernet {mac};\n    fixed-address {ip};\n    option host-name \"{host}\";\n}}\n",
                ip = h.ip,
                host = base,
            ));
        }
    }
    out
}

/// Writes `text` to `file` atomically when it differs from what is there; whether it did.
pub fn write_if_changed(file: &Path, text: &str) -> Result<bool> {
    if std::fs::read_to_string(file).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: not a file name", file.display()))?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    rdeploy_cmdb::store::write_atomic(dir, name, text)
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(true)
}

/// `rdeploy dhcp-config --isc | --dnsmasq [--write FILE]`.
pub fn run(args: &DhcpArgs) -> Result<Outcome> {
    let (network, prefix) = parse_subnet(&args.subnet)?;
    let tftp_server = match args.tftp_server {
        Some(ip) => ip,
        None => url_host(&args.public_url).with_context(|| {
            format!(
                "--public-url {}: its host is not an IPv4 address; give the TFTP server's with --tftp-server",
                args.public_url
            )
        })?,
    };
    let boot = Boot {
        network,
        prefix,
        public_url: args.public_url.clone(),
        tftp_root: args.tftp_root.clone(),
        tftp_server,
        router: args.router,
    };
    let client = crate::ops::Client::new(&args.server)?;
    let answer: DhcpHosts = client.get("/dhcp-hosts")?;
    let text = if args.isc {
        isc(&answer.hosts, &boot)
    } else {
        dnsmasq(&answer.hosts, &boot)
    };
    let Some(file) = &args.write else {
        print!("{text}");
        return Ok(Outcome::Ok);
    };
    if write_if_changed(file, &text)? {
        eprintln!("{}: changed ({} hosts)", file.display(), answer.hosts.len());
        Ok(Outcome::Ok)
    } else {
        eprintln!("{}: unchanged", file.display());
        Ok(Outcome::NoMatch)
    }
}

/// The IPv4 host of `http://10.0.0.1:8080/...`.
fn url_host(url: &str) -> Option<Ipv4Addr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot() -> Boot {
        Boot {
            network: Ipv4Addr::new(10, 0, 0, 0),
            prefix: 24,
            public_url: "http://10.0.0.1:8080/".into(),
            tftp_root: "/srv/tftp".into(),
            tftp_server: Ipv4Addr::new(10, 0, 0, 1),
            router: Some(Ipv4Addr::new(10, 0, 0, 254)),
        }
    }

    fn hosts() -> Vec<DhcpHost> {
        vec![
            DhcpHost {
                name: "lab-001".into(),
                macs: vec!["02:00:00:00:00:01".into()],
                ip: "10.0.0.100".into(),
                source: "system".into(),
            },
            DhcpHost {
                name: "KVM-S1_x".into(),
                macs: vec!["52:54:00:00:00:01".into(), "52:54:00:00:00:02".into()],
                ip: "10.0.0.5".into(),
                source: "node".into(),
            },
        ]
    }

    #[test]
    fn dnsmasq_has_the_hosts_and_the_boot_lines() {
        let text = dnsmasq(&hosts(), &boot());
        assert!(text.contains("dhcp-range=10.0.0.0,static,255.255.255.0\n"));
        assert!(text.contains("dhcp-option=option:router,10.0.0.254\n"));
        assert!(text.contains("dhcp-boot=tag:ipxe,http://10.0.0.1:8080/boot.ipxe\n"));
        assert!(text.contains("dhcp-host=02:00:00:00:00:01,10.0.0.100,lab-001\n"));
        assert!(text.contains("dhcp-host=52:54:00:00:00:01,52:54:00:00:00:02,10.0.0.5,KVM-S1-x\n"));
    }

    #[test]
    fn isc_has_one_host_per_mac() {
        let text = isc(&hosts(), &boot());
        assert!(text.contains("subnet 10.0.0.0 netmask 255.255.255.0 {"));
        assert!(text.contains("next-server 10.0.0.1;"));
        assert!(text.contains("host lab-001 {\n    hardware ethernet 02:00:00:00:00:01;\n    fixed-address 10.0.0.100;\n"));
        assert!(text.contains("host KVM-S1-x-2 {\n    hardware ethernet 52:54:00:00:00:02;"));
    }

    #[test]
    fn subnets_and_urls() {
        assert!(parse_subnet("10.0.0.0/24").is_ok());
        assert!(parse_subnet("10.0.0.1/24").is_err());
        assert!(parse_subnet("10.0.0.0").is_err());
        assert_eq!(
            url_host("http://10.0.0.1:8080/x"),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(url_host("http://boot.lab/"), None);
    }

    #[test]
    fn writes_only_changes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("dhcp.conf");
        assert!(write_if_changed(&f, "a\n")?);
        assert!(!write_if_changed(&f, "a\n")?);
        assert!(write_if_changed(&f, "b\n")?);
        assert_eq!(std::fs::read_to_string(&f)?, "b\n");
        Ok(())
    }
}
