//! Who may do what: node identity tokens, the admin and read tokens, and which variables
//! are secret. Pure functions and values; the [`Core`](super::core::Core) applies them and
//! `docs/security.md` has the table of which call needs what.
//!
//! - A node's token is 256 random bits, given once in its upload reply; the server keeps
//!   only its SHA-256 (in the node record, never shown). A re-install gets a new one.
//! - Tokens are compared through their SHA-256 digests, byte by byte without an early
//!   exit: the time depends neither on where they differ nor on their lengths.
//! - A variable is secret when its name matches one of the patterns (`*password*`,
//!   `*secret*`, `*token*`, `*key*` by default, case-insensitive, `*` for any text), or is
//!   listed in the node's own `secrets` variable (a list of names, from its CMDB entry).

use sha2::{Digest, Sha256};

/// What a masked secret shows instead of its value.
pub const MASK: &str = "********";

/// The default secret patterns.
pub const DEFAULT_SECRET_PATTERNS: &[&str] = &["*password*", "*secret*", "*token*", "*key*"];

/// A new node token: its text (64 hex digits, 256 bits) and the digest the server keeps.
pub fn new_token() -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a node token: {e}"))?;
    let token = hex(&bytes);
    let digest = digest_hex(&token);
    Ok((token, digest))
}

/// The SHA-256 of a token, in hex (what a node record keeps).
pub fn digest_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `given` is `token`, in time independent of where they differ and of their
/// lengths (both are hashed first, then every byte of the digests is compared).
pub fn same_token(given: &str, token: &str) -> bool {
    same_digest(
        &Sha256::digest(given.as_bytes()),
        &Sha256::digest(token.as_bytes()),
    )
}

/// Whether `given` hashes to the kept `digest` (hex), in constant time.
pub fn matches_digest(given: &str, digest: &str) -> bool {
    same_digest(digest_hex(given).as_bytes(), digest.as_bytes())
}

fn same_digest(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// What a request proved about itself.
#[derive(Debug, Clone, Default)]
pub struct Credential {
    /// The bearer token it carried (`Authorization: Bearer <token>`), if any.
    pub token: Option<String>,
    /// It carried the server's admin token (false when the server has none).
    pub admin: bool,
    /// It may do what operators do: the admin token, or the server has none (a loopback
    /// listener without `--admin-token-file`).
    pub operator: bool,
    /// It carried the read token or the admin token.
    pub reader: bool,
    /// The caller's address.
    pub peer: Option<std::net::IpAddr>,
}

/// Which variable names are secret.
#[derive(Debug, Clone)]
pub struct Secrets {
    patterns: Vec<String>,
}

impl Default for Secrets {
    fn default() -> Secrets {
        Secrets::new(DEFAULT_SECRET_PATTERNS.iter().map(|s| (*s).to_owned()))
    }
}

impl Secrets {
    /// Patterns with `*` for any text, matched case-insensitively.
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Secrets {
        Secrets {
            patterns: patterns.into_iter().map(|p| p.to_lowercase()).collect(),
        }
    }

    /// Whether `key` is secret among `var` (the node's `secrets` list counts too).
    pub fn is_secret(&self, key: &str, var: &serde_json::Map<String, serde_json::Value>) -> bool {
        let lower = key.to_lowercase();
        self.patterns.iter().any(|p| glob(p, &lower))
            || var
                .get("secrets")
                .and_then(|s| s.as_array())
                .is_some_and(|list| list.iter().any(|n| n.as_str() == Some(key)))
    }

    /// `var` with every secret value replaced by [`MASK`].
    pub fn mask(
        &self,
        var: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        var.iter()
            .map(|(k, v)| {
                let v = if self.is_secret(k, var) {
                    serde_json::Value::String(MASK.to_owned())
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// `*` matches any text (also none); everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_kept_as_digests() -> Result<(), String> {
        let (a, da) = new_token()?;
        let (b, _) = new_token()?;
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(matches_digest(&a, &da));
        assert!(!matches_digest(&b, &da));
        assert!(!matches_digest("", &da));
        Ok(())
    }

    #[test]
    fn token_comparison_needs_the_whole_token_whatever_the_lengths() {
        assert!(same_token("secret", "secret"));
        assert!(!same_token("secre", "secret"));
        assert!(!same_token("secretx", "secret"));
        assert!(!same_token("", "secret"));
        assert!(!same_token("sekret", "secret"));
    }

    #[test]
    fn secrets_by_pattern_and_by_list() {
        let var = serde_json::json!({
            "ip": "10.0.0.5", "ipmi_password": "hunter2", "ssh_key": "AAAA",
            "API_Token": "t", "bmc_login": "root", "secrets": ["bmc_login"], "hostname": "h"
        });
        let var = var.as_object().cloned().unwrap_or_default();
        let masked = Secrets::default().mask(&var);
        for k in ["ipmi_password", "ssh_key", "API_Token", "bmc_login"] {
            assert_eq!(masked[k], MASK, "{k}");
        }
        for k in ["ip", "hostname"] {
            assert_eq!(masked[k], var[k], "{k}");
        }
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        assert!(!glob("*ab*", "a"));
    }
}
