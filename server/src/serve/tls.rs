//! TLS for `rdeploy serve` (`--tls-cert`/`--tls-key`, `--tls-self-signed`): the rustls
//! configuration from PEM files (HTTP/1.1 or HTTP/2, by ALPN) and the lab certificate kept
//! in the data dir. The accept loop ([`super::conn`]) shakes hands with each connection in
//! a task of its own, under the connection cap and a time limit, so a client that connects
//! and says nothing holds no other client up. A failed handshake (a client that does not
//! trust the certificate, a scanner) is logged and dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;

/// The certificate the server presents and what operators pin.
#[derive(Debug)]
pub struct Identity {
    /// The rustls configuration (ALPN: `h2`, then `http/1.1`).
    pub config: Arc<rustls::ServerConfig>,
    /// The certificate file (PEM).
    pub cert_file: PathBuf,
    /// SHA-256 of the leaf certificate (DER), as `AB:CD:...` (what `openssl x509
    /// -fingerprint -sha256` prints).
    pub fingerprint: String,
}

/// Reads the certificate chain (leaf first) and the private key from PEM files; every
/// error names the file.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<Identity> {
    let pem = std::fs::read(cert_file).with_context(|| {
        format!(
            "cannot read the TLS certificate {} (--tls-cert)",
            cert_file.display()
        )
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: not a PEM certificate file (--tls-cert): {e}",
                cert_file.display()
            )
        })?;
    let leaf = certs.first().with_context(|| {
        format!(
            "{}: no certificate in it (--tls-cert wants PEM: -----BEGIN CERTIFICATE-----)",
            cert_file.display()
        )
    })?;
    let fingerprint = fingerprint(leaf);
    let pem = std::fs::read(key_file).with_context(|| {
        format!(
            "cannot read the TLS private key {} (--tls-key)",
            key_file.display()
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{}: no private key in it (--tls-key wants PEM: PKCS#8, PKCS#1 or SEC1): {e}",
            key_file.display()
        )
    })?;
    // The crypto provider is ring, the one rustls is built with here.
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "the key {} does not go with the certificate {}",
                key_file.display(),
                cert_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Identity {
        config: Arc::new(config),
        cert_file: cert_file.to_owned(),
        fingerprint,
    })
}

/// SHA-256 of a certificate, `AB:CD:...`.
pub fn fingerprint(cert: &[u8]) -> String {
    sha2::Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `--tls-self-signed`: where the lab certificate and its key are kept.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("self-signed.pem"), dir.join("self-signed.key"))
}

/// The names a self-signed certificate is made for: `localhost`, the loopback addresses,
/// the listen address (unless it is 0.0.0.0 or ::), this host's name and the host of
/// `--public-url`.
pub fn self_signed_names(listen: SocketAddr, public_url: Option<&str>) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_owned());
        }
    }
    if let Some(host) = public_url.and_then(url_host) {
        names.push(host);
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// The host of a URL (`https://[::1]:8443/x` → `::1`).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// The self-signed certificate of `data_dir`: made on the first start (the key mode 0600),
/// the same one afterwards, so a pinned copy stays valid across restarts. Returns the
/// paths and whether it was made now.
pub fn self_signed(data_dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf, bool)> {
    let (cert_file, key_file) = self_signed_paths(data_dir);
    if cert_file.is_file() && key_file.is_file() {
        return Ok((cert_file, key_file, false));
    }
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = rcgen::KeyPair::generate().context("cannot make a key pair")?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .with_context(|| format!("cannot make a certificate for {}", names.join(", ")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rdeploy serve (self-signed)");
    let cert = params
        .self_signed(&key)
        .context("cannot sign the certificate")?;
    super::write_secret(&key_file, key.serialize_pem().trim_end())?;
    let tmp = dir.join(".self-signed.pem.tmp");
    std::fs::write(&tmp, cert.pem()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &cert_file)
        .with_context(|| format!("cannot write {}", cert_file.display()))?;
    Ok((cert_file, key_file, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://deploy.lab:8443/x").as_deref(),
            Some("deploy.lab")
        );
        assert_eq!(
            url_host("https://[fd00::1]:8443").as_deref(),
            Some("fd00::1")
        );
        assert_eq!(url_host("https://10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(url_host("https://"), None);
    }

    #[test]
    fn a_self_signed_certificate_is_made_once_and_kept() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let names = self_signed_names("0.0.0.0:8443".parse()?, Some("https://deploy.lab:8443"));
        assert!(names.contains(&"deploy.lab".to_owned()), "{names:?}");
        assert!(!names.contains(&"0.0.0.0".to_owned()), "{names:?}");
        let (cert, key, made) = self_signed(tmp.path(), &names)?;
        assert!(made);
        let first = load(&cert, &key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
        }
        let (_, _, made) = self_signed(tmp.path(), &names)?;
        assert!(!made);
        assert_eq!(load(&cert, &key)?.fingerprint, first.fingerprint);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        Ok(())
    }

    #[test]
    fn bad_files_are_named() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let missing = tmp.path().join("nope.pem");
        let junk = tmp.path().join("junk.pem");
        std::fs::write(&junk, "hello\n")?;
        let err = format!("{:#}", load(&missing, &junk).err().context("loaded")?);
        assert!(
            err.contains("nope.pem") && err.contains("--tls-cert"),
            "{err}"
        );
        let err = format!("{:#}", load(&junk, &junk).err().context("loaded")?);
        assert!(err.contains("junk.pem: no certificate"), "{err}");
        let (cert, _, _) = self_signed(tmp.path(), &["localhost".to_owned()])?;
        let err = format!("{:#}", load(&cert, &junk).err().context("loaded")?);
        assert!(err.contains("junk.pem: no private key"), "{err}");
        // A key of another certificate.
        let other = tempfile::tempdir()?;
        let (_, other_key, _) = self_signed(other.path(), &["localhost".to_owned()])?;
        let err = format!("{:#}", load(&cert, &other_key).err().context("loaded")?);
        assert!(err.contains("does not go with"), "{err}");
        Ok(())
    }
}
