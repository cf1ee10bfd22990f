//! The operator's subcommands: they talk to the running server over HTTP (one writer, no
//! split brain) — `nodes`, `node show`, `system add|del|show|list|profiles`, `nextboot`,
//! `localboot`, `quota` — and `dnsmasq-config`, which only prints. The `pxemngr` verbs
//! ([`crate::pxemngr`]) call the same functions.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::cli::{DnsmasqArgs, NextbootArgs, NodeShowArgs, ServerArgs};
use crate::commands::Outcome;
use crate::wire::{
    BootChange, BootProfiles, ErrorBody, NodeList, NodeSummary, QuotaReport, SystemInfo, SystemList,
};

/// A client for the server's operator endpoints.
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    pub(crate) fn new(args: &ServerArgs) -> Result<Client> {
        let token = match (&args.token_file, std::env::var("RDEPLOY_TOKEN").ok()) {
            (Some(f), _) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read the token file {}", f.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, Some(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            _ => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = &args.ca {
            // Only this CA (or pinned certificate): the system's roots are not asked.
            builder = builder.tls_built_in_root_certs(false);
            for cert in read_ca(ca)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().context("cannot build the HTTP client")?;
        Ok(Client {
            base: args.server.trim_end_matches('/').to_owned(),
            token,
            http,
            runtime,
        })
    }

    /// Sends a request and reads the answer as `T`; an error answer becomes an error
    /// carrying the server's code and message.
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .header("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.runtime.block_on(async {
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach the server at {url}"))?;
            let status = resp.status();
            let text = resp
                .text()
                .await
                .with_context(|| format!("{url}: cannot read the answer"))?;
            if status.is_success() {
                return serde_json::from_str(&text).with_context(|| {
                    format!("{url}: the answer is not what this rdeploy expects (a server of another version?)")
                });
            }
            match serde_json::from_str::<ErrorBody>(&text) {
                Ok(e) => anyhow::bail!("{url}: {status}: {}: {}", e.error, e.message),
                Err(_) => anyhow::bail!("{url}: {status}: {}", text.trim()),
            }
        })
    }

    pub(crate) fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(reqwest::Method::GET, path, None)
    }

    pub(crate) fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T> {
        self.call(reqwest::Method::POST, path, Some(body))
    }

    fn delete<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(reqwest::Method::DELETE, path, None)
    }
}

/// The certificates of a CA file (PEM, one or more).
fn read_ca(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the CA file {} (--ca)", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{}: not a PEM certificate file (--ca)", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate in it (--ca wants PEM: -----BEGIN CERTIFICATE-----)",
        path.display()
    );
    Ok(certs)
}

/// One path segment of a URL, escaped.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `5s`, `3m`, `2h`, `4d` since an RFC 3339 time.
fn age(at: &str, now: SystemTime) -> String {
    let Ok(t) = humantime::parse_rfc3339(at) else {
        return "-".into();
    };
    let secs = now.duration_since(t).unwrap_or_default().as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Left-aligned columns, two spaces apart.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, x)| format!("{x:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `rdeploy nodes`: node, state, profile, IP, last event, age.
pub fn nodes(args: &ServerArgs) -> Result<Outcome> {
    let c = Client::new(args)?;
    let answer: NodeList = c.get("/nodes")?;
    let now = SystemTime::now();
    let mut rows = vec![[
        "NODE",
        "STATE",
        "PROFILE",
        "IP",
        "ROLE",
        "BOOT",
        "LAST EVENT",
        "AGE",
    ]
    .iter()
    .map(|x| (*x).to_owned())
    .collect::<Vec<_>>()];
    for n in &answer.nodes {
        let last: String = n
            .last_event
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        rows.push(vec![
            n.id.clone(),
            s(&serde_json::to_value(n.state).unwrap_or_default()),
            n.profile.clone().unwrap_or_else(|| "-".into()),
            n.ip.as_ref().map_or_else(|| "-".into(), s),
            role_version(n),
            n.boot.clone(),
            last,
            age(&n.updated_at, now),
        ]);
    }
    print!("{}", table(&rows));
    Ok(Outcome::Ok)
}

/// `ROLE VERSION` of an installed node, `-` before its role tree is installed.
fn role_version(n: &NodeSummary) -> String {
    match (n.role.as_deref(), n.version.as_deref()) {
        (Some(role), Some(version)) => format!("{role} {version}"),
        (Some(role), None) => role.to_owned(),
        _ => "-".to_owned(),
    }
}

/// `rdeploy node show ID`: the whole record as JSON.
pub fn node_show(args: &NodeShowArgs) -> Result<Outcome> {
    let c = Client::new(&args.server)?;
    let node: serde_json::Value = c.get(&format!("/nodes/{}", args.id))?;
    println!("{}", serde_json::to_string_pretty(&node)?);
    Ok(Outcome::Ok)
}

/// `rdeploy system add NAME MAC|IP...` (`pxemngr addsystem`): a word that is a MAC is a
/// MAC, any other an IPv4 address (the server checks it).
pub fn system_add(server: &ServerArgs, name: &str, addrs: &[String]) -> Result<Outcome> {
    let (macs, addresses): (Vec<&String>, Vec<&String>) = addrs
        .iter()
        .partition(|a| crate::serve::identity::normalize_mac(a).is_some());
    let c = Client::new(server)?;
    let answer: SystemInfo = c.post(
        "/systems",
        serde_json::json!({"name": name, "macs": macs, "addresses": addresses}),
    )?;
    let all: Vec<String> = answer
        .macs
        .iter()
        .chain(answer.addresses.iter())
        .cloned()
        .collect();
    println!(
        "{}: {} (next boot {})",
        answer.name,
        all.join(", "),
        answer.boot
    );
    Ok(Outcome::Ok)
}

/// `rdeploy system del NAME` (`pxemngr delsystem`).
pub fn system_del(server: &ServerArgs, name: &str) -> Result<Outcome> {
    let c = Client::new(server)?;
    let answer: SystemInfo = c.delete(&format!("/systems/{}", segment(name)))?;
    println!("{}: deleted", answer.name);
    Ok(Outcome::Ok)
}

/// `rdeploy system show NAME|MAC|IP` (`pxemngr dpysystem`), in PXE Manager's layout; `-l`
/// lists the names.
pub fn system_show(server: &ServerArgs, key: Option<&str>) -> Result<Outcome> {
    let c = Client::new(server)?;
    let Some(key) = key else {
        let answer: SystemList = c.get("/systems")?;
        for s in answer.systems {
            println!("{}", s.name);
        }
        return Ok(Outcome::Ok);
    };
    let s: SystemInfo = c.get(&format!("/systems/{}", segment(key)))?;
    println!("Name: {}", s.name);
    if let Some(node) = &s.node {
        println!("Node: {node}");
    }
    for m in &s.macs {
        println!("Mac: {m}");
    }
    for a in &s.addresses {
        let hex = crate::serve::boot::render::hex_prefix(a).unwrap_or_default();
        println!("IP: {a} ({hex})");
    }
    println!("Next boot: {}", s.boot);
    Ok(Outcome::Ok)
}

/// `rdeploy system list`: name, MACs, addresses, next boot.
pub fn system_list(server: &ServerArgs) -> Result<Outcome> {
    let c = Client::new(server)?;
    let answer: SystemList = c.get("/systems")?;
    let mut rows = vec![["SYSTEM", "MACS", "ADDRESSES", "BOOT"]
        .iter()
        .map(|x| (*x).to_owned())
        .collect::<Vec<_>>()];
    for s in answer.systems {
        let or_dash = |v: &[String]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(",")
            }
        };
        rows.push(vec![
            s.name.clone(),
            or_dash(&s.macs),
            or_dash(&s.addresses),
            s.boot,
        ]);
    }
    print!("{}", table(&rows));
    Ok(Outcome::Ok)
}

/// `rdeploy system profiles` (`pxemngr syncbootnames`): the boot profiles the server
/// finds; what is missing on stderr, and exit 1 then.
pub fn system_profiles(server: &ServerArgs) -> Result<Outcome> {
    let c = Client::new(server)?;
    let answer: BootProfiles = c.get("/boot-profiles")?;
    for p in &answer.profiles {
        println!("registering {p}");
    }
    for problem in &answer.problems {
        eprintln!("error {problem}");
    }
    Ok(if answer.problems.is_empty() {
        Outcome::Ok
    } else {
        Outcome::NoMatch
    })
}

/// `rdeploy nextboot NAME TARGET` (and `localboot NAME`).
pub fn nextboot(args: &NextbootArgs) -> Result<Outcome> {
    let c = Client::new(&args.server)?;
    let answer: BootChange = c.post(
        "/nextboot",
        serde_json::json!({"name": args.name, "target": args.target}),
    )?;
    println!("{}: next boot {}", args.name, answer.boot);
    Ok(Outcome::Ok)
}

/// `rdeploy quota`: each profile, its quota, its CMDB use, its nodes.
pub fn quota(args: &ServerArgs) -> Result<Outcome> {
    let c = Client::new(args)?;
    let answer: QuotaReport = c.get("/quota")?;
    let mut rows = vec![["PROFILE", "QUOTA LEFT", "CMDB USED", "NODES"]
        .iter()
        .map(|x| (*x).to_owned())
        .collect::<Vec<_>>()];
    for p in &answer.profiles {
        let cmdb = match (p.cmdb_used, p.cmdb_total) {
            (Some(u), Some(t)) => format!("{u}/{t}"),
            _ => "-".into(),
        };
        rows.push(vec![
            p.profile.clone(),
            p.quota.clone(),
            cmdb,
            p.nodes.to_string(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(Outcome::Ok)
}

/// `rdeploy dnsmasq-config`: a proxy-DHCP + TFTP snippet that chainloads iPXE to
/// `/boot.ipxe`, leaving address assignment to the existing DHCP server.
pub fn dnsmasq_config(args: &DnsmasqArgs) -> Result<Outcome> {
    let url = args.public_url.trim_end_matches('/');
    print!(
        "\
# rdeploy: dnsmasq in proxy-DHCP mode next to the existing DHCP server.
# The DHCP server keeps handing out addresses; dnsmasq only adds the boot information.
# Legacy PXE firmware gets iPXE over TFTP first; iPXE then fetches {url}/boot.ipxe, which
# chains to {url}/boot/<mac>.ipxe (install, local or a boot profile, per machine).
port=0
log-dhcp
dhcp-range={subnet},proxy
enable-tftp
tftp-root={tftp}
dhcp-userclass=set:ipxe,iPXE
pxe-prompt=\"rdeploy\",0
pxe-service=tag:!ipxe,x86PC,\"rdeploy (BIOS)\",undionly.kpxe
pxe-service=tag:!ipxe,X86-64_EFI,\"rdeploy (UEFI)\",ipxe.efi
dhcp-boot=tag:ipxe,{url}/boot.ipxe
# Copy undionly.kpxe and ipxe.efi (Debian: package ipxe, /usr/lib/ipxe/) to {tftp}.
",
        subnet = args.subnet,
        tftp = args.tftp_root.display(),
    );
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_tables_read_well() {
        let now =
            humantime::parse_rfc3339("2026-01-02T00:00:00Z").unwrap_or(SystemTime::UNIX_EPOCH);
        assert_eq!(age("2026-01-01T23:59:30Z", now), "30s");
        assert_eq!(age("2026-01-01T22:00:00Z", now), "2h");
        assert_eq!(age("garbage", now), "-");
        let t = table(&[
            vec!["A".into(), "BB".into()],
            vec!["ccc".into(), "d".into()],
        ]);
        assert_eq!(t, "A    BB\nccc  d\n");
    }
}
