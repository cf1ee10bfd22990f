//! Which server certificates the agent trusts (`docs/security.md`, TLS).
//!
//! A CA file (PEM: a CA, or the server's own certificate, pinned) is the only trust root
//! when there is one: the system's roots are not asked, and a server whose certificate
//! does not chain to it is refused. It comes from `--ca FILE`, else the kernel command
//! line's `rdeploy.ca=FILE`, else [`CA_FILE`] when it exists (where `rdeploy-initrd build
//! --ca` puts it). Without any, an `https://` server is checked against the system's
//! roots (an installer has none) and `http://` is plain.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Where `rdeploy-initrd build --ca` puts the CA in the initramfs.
pub const CA_FILE: &str = "/etc/rdeploy/ca.pem";

/// The trust roots of the agent's HTTP clients.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The CA file and its certificates; `None`: the system's roots.
    pinned: Option<(PathBuf, Vec<reqwest::Certificate>)>,
}

impl Trust {
    /// The system's roots (no CA file).
    pub fn system() -> Trust {
        Trust::default()
    }

    /// Only the certificates of `path` (PEM, one or more).
    pub fn from_file(path: &Path) -> anyhow::Result<Trust> {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{}: not a PEM certificate file", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "{}: no certificate in it (a CA file is PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        );
        Ok(Trust {
            pinned: Some((path.to_owned(), certs)),
        })
    }

    /// `explicit` (a flag, `rdeploy.ca=`), else [`CA_FILE`] if it exists, else the
    /// system's roots.
    pub fn resolve(explicit: Option<&Path>) -> anyhow::Result<Trust> {
        match explicit {
            Some(p) => Trust::from_file(p),
            None if Path::new(CA_FILE).exists() => Trust::from_file(Path::new(CA_FILE)),
            None => Ok(Trust::system()),
        }
    }

    /// The CA file, when there is one.
    pub fn ca_file(&self) -> Option<&Path> {
        self.pinned.as_ref().map(|(p, _)| p.as_path())
    }

    /// A client builder that trusts what this says, and nothing else.
    pub fn builder(&self) -> reqwest::blocking::ClientBuilder {
        let mut b = reqwest::blocking::Client::builder();
        if let Some((_, certs)) = &self.pinned {
            b = b.tls_built_in_root_certs(false).https_only(true);
            for c in certs {
                b = b.add_root_certificate(c.clone());
            }
        }
        b
    }

    /// Whether `url` may be used: with a CA file, only `https://` (everything the agent
    /// sends and receives goes over TLS then).
    pub fn check_url(&self, url: &str) -> anyhow::Result<()> {
        if let Some((ca, _)) = &self.pinned {
            anyhow::ensure!(
                url.starts_with("https://"),
                "server {url:?}: the agent trusts only {} and talks to its server over https:// only (rdeploy.server=https://...)",
                ca.display()
            );
        } else {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "server {url:?}: not an http:// or https:// URL"
            );
        }
        Ok(())
    }
}

/// The refusal of the server's certificate, when that is why `e` happened: what rustls
/// said (`invalid peer certificate: UnknownIssuer`, `... NotValidForName` ...).
pub fn certificate_refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let rustls_error = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        match rustls_error {
            Some(r @ rustls::Error::InvalidCertificate(_)) => return Some(r.to_string()),
            Some(r @ rustls::Error::NoCertificatesPresented) => return Some(r.to_string()),
            _ => {}
        }
        // Wrapped on the way where it cannot be downcast (hyper's connect error): its text.
        let text = c.to_string();
        if text.starts_with("invalid peer certificate") {
            return Some(text);
        }
        cause = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_certificates() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let junk = tmp.path().join("ca.pem");
        std::fs::write(&junk, "not a certificate\n")?;
        let err = format!("{:#}", Trust::from_file(&junk).err().context("accepted")?);
        assert!(err.contains("ca.pem: no certificate"), "{err}");
        let err = format!(
            "{:#}",
            Trust::from_file(&tmp.path().join("nope.pem"))
                .err()
                .context("accepted")?
        );
        assert!(err.contains("cannot read the CA file"), "{err}");
        Ok(())
    }

    #[test]
    fn without_a_ca_both_schemes_work_with_one_only_https() {
        let system = Trust::system();
        assert!(system.check_url("http://10.0.0.1:8080").is_ok());
        assert!(system.check_url("https://10.0.0.1:8443").is_ok());
        assert!(system.check_url("ftp://x").is_err());
        let pinned = Trust {
            pinned: Some((PathBuf::from("/etc/rdeploy/ca.pem"), vec![])),
        };
        assert!(pinned.check_url("https://10.0.0.1:8443").is_ok());
        let err = pinned
            .check_url("http://10.0.0.1:8080")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("https:// only"), "{err}");
    }
}
