//! `/var/lib/rdeploy/conf`: what an installed system is (server, role, version, profile), in
//! the `KEY=value` form of eDeploy's `/var/lib/edeploy/conf` (`VERS=`, `ROLE=`, `RSERV=`,
//! `RSERV_PORT=`, `PROFILE=`) plus `SERVER=` (the full URL) and `NODE=` (the node id).
//!
//! A shell can source it; rdeploy reads it back with [`Conf::parse`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where the file lives, relative to a system's root.
pub const CONF_PATH: &str = "var/lib/rdeploy/conf";

/// Where eDeploy kept it, read when rdeploy's is missing (a host eDeploy installed).
pub const EDEPLOY_CONF_PATH: &str = "var/lib/edeploy/conf";

/// The installed system's description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conf {
    /// Server base URL (`http://10.0.0.1:8080`, or `rsync://...` for eDeploy-style servers).
    pub server: String,
    /// Role name.
    pub role: String,
    /// Role version.
    pub version: String,
    /// The hardware profile the machine matched.
    pub profile: String,
    /// The server's node id for this machine, when known.
    pub node: Option<String>,
}

/// `host` and `port` of a URL (`http://h:8080/x` → `("h", "8080")`).
fn host_port(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let hostport = rest.split('/').next().unwrap_or("");
    let default = if scheme == "rsync" { "873" } else { "80" };
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            (h.to_owned(), p.to_owned())
        }
        _ => (hostport.to_owned(), default.to_owned()),
    }
}

impl Conf {
    /// The file's path under `root`.
    pub fn path(root: &Path) -> PathBuf {
        root.join(CONF_PATH)
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let (host, port) = host_port(&self.server);
        let mut s = String::from(
            "# Written by rdeploy-agent: what this system is (eDeploy's /var/lib/edeploy/conf form).\n",
        );
        s.push_str(&format!("VERS={}\n", self.version));
        s.push_str(&format!("ROLE={}\n", self.role));
        s.push_str(&format!("RSERV={host}\n"));
        s.push_str(&format!("RSERV_PORT={port}\n"));
        s.push_str(&format!("PROFILE={}\n", self.profile));
        s.push_str(&format!("SERVER={}\n", self.server));
        if let Some(n) = &self.node {
            s.push_str(&format!("NODE={n}\n"));
        }
        s
    }

    /// Reads the text back: `KEY=value` lines, `#` comments, values optionally quoted. Without
    /// `SERVER=` (a conf eDeploy wrote), the server is its rsync daemon,
    /// `rsync://RSERV:RSERV_PORT`.
    pub fn parse(text: &str, file: &Path) -> Result<Conf> {
        let mut c = Conf::default();
        let (mut rserv, mut rport) = (None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                anyhow::bail!("{}:{}: not KEY=value: {line:?}", file.display(), n + 1);
            };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
            match k.trim() {
                "VERS" => c.version = v,
                "ROLE" => c.role = v,
                "PROFILE" => c.profile = v,
                "SERVER" => c.server = v,
                "NODE" if !v.is_empty() => c.node = Some(v),
                "RSERV" => rserv = Some(v),
                "RSERV_PORT" => rport = Some(v),
                _ => {}
            }
        }
        if c.server.is_empty() {
            if let Some(h) = rserv {
                c.server = format!("rsync://{h}:{}", rport.unwrap_or_else(|| "873".into()));
            }
        }
        for (key, v) in [
            ("VERS", &c.version),
            ("ROLE", &c.role),
            ("SERVER or RSERV", &c.server),
        ] {
            anyhow::ensure!(!v.is_empty(), "{}: no {key}= line", file.display());
        }
        Ok(c)
    }

    /// Reads `root/var/lib/rdeploy/conf`, or eDeploy's `root/var/lib/edeploy/conf` on a
    /// host eDeploy installed.
    pub fn load(root: &Path) -> Result<Conf> {
        let mut path = Conf::path(root);
        let edeploy = root.join(EDEPLOY_CONF_PATH);
        if !path.exists() && edeploy.exists() {
            path = edeploy;
        }
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (is this an rdeploy-installed system? --root names another root)",
                path.display()
            )
        })?;
        Conf::parse(&text, &path)
    }

    /// Writes `root/var/lib/rdeploy/conf` atomically (temp file, fsync, rename).
    pub fn save(&self, root: &Path) -> Result<()> {
        let path = Conf::path(root);
        let dir = path.parent().unwrap_or(root);
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_atomic(&path, self.render().as_bytes())
    }
}

/// Where an installed system keeps its node token (`var/lib/rdeploy/token`, mode 0600):
/// its upgrade reports carry it.
pub const TOKEN_PATH: &str = "var/lib/rdeploy/token";

/// Keeps the node's token in the installed system, readable by root only.
pub fn save_token(root: &Path, token: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = root.join(TOKEN_PATH);
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(".token.rdeploy-new");
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .and_then(|()| f.write_all(format!("{token}\n").as_bytes()))
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot rename to {}", path.display()))
}

/// The node token: `RDEPLOY_NODE_TOKEN`, else the installed system's (none before this
/// version or when the install had none).
pub fn load_token(root: &Path) -> Option<String> {
    std::env::var("RDEPLOY_NODE_TOKEN")
        .ok()
        .or_else(|| std::fs::read_to_string(root.join(TOKEN_PATH)).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.rdeploy-new"));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_edeploy_form() -> Result<()> {
        let c = Conf {
            server: "http://10.0.0.1:8080".into(),
            role: "base".into(),
            version: "1.0".into(),
            profile: "vm".into(),
            node: Some("KVM-1".into()),
        };
        let text = c.render();
        assert!(
            text.contains("\nVERS=1.0\nROLE=base\nRSERV=10.0.0.1\nRSERV_PORT=8080\nPROFILE=vm\n")
        );
        assert_eq!(Conf::parse(&text, Path::new("conf"))?, c);
        // An eDeploy conf: no SERVER=.
        let e = Conf::parse(
            "VERS=D7-H.1.0.0\nROLE=openstack\nRSERV=10.0.0.2\nRSERV_PORT=80\nPROFILE='hp'\n",
            Path::new("conf"),
        )?;
        assert_eq!(e.server, "rsync://10.0.0.2:80");
        assert_eq!(e.profile, "hp");
        let err = Conf::parse("ROLE=x\n", Path::new("/c"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("/c: no VERS= line"));
        Ok(())
    }
}
