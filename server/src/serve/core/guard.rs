//! Who may change or read a node: the rules of `docs/security.md`, decided here for every
//! handler. A refusal is `401` and changes nothing; the checks run before any change.
//!
//! - A node's own calls (events, log, tree reports, its failure report, `/localboot/<mac>`)
//!   need its token (from its last upload reply) or the admin token.
//! - PXE Manager's `/localboot/<mac>` and eDeploy's failure report also work from the
//!   node's own address (one it is known by), as `/localboot` does.
//! - Reading a node: open on a loopback listener, else the read or admin token (or the
//!   node's own); its secret variables only for the node itself and an admin.

use std::net::IpAddr;

use axum::http::StatusCode;
use rdeploy_specs::Inventory;

use super::super::access::{matches_digest, Credential};
use super::super::error::ApiError;
use super::super::identity::Identity;
use super::super::record::Node;
use super::seeds::Machine;
use super::Core;

/// The refusal of a call that needs a node's token.
fn needs_node_token(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "node_token_required",
        format!("this call changes node '{id}': it needs `Authorization: Bearer <token>` with the token of that node's upload reply, or the admin token"),
    )
}

/// The refusal of a call that needs the admin token.
pub fn needs_admin() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this endpoint needs `Authorization: Bearer <token>` (the server's --admin-token-file)",
    )
}

/// Whether the credential carries the node's own token.
fn is_node(node: &Node, cred: &Credential) -> bool {
    match (&cred.token, &node.token_sha256) {
        (Some(given), Some(digest)) => matches_digest(given, digest),
        _ => false,
    }
}

impl Core {
    /// The node `id`, if the credential may change it (its token, or the admin token):
    /// `404 no_such_node`, `401 node_token_required` otherwise.
    pub fn authorize_node(&self, id: &str, cred: &Credential) -> Result<Node, ApiError> {
        let node = self
            .node(id)
            .ok_or_else(|| ApiError::not_found("no_such_node", format!("no node '{id}'")))?;
        if cred.admin || is_node(&node, cred) {
            Ok(node)
        } else {
            Err(needs_node_token(id))
        }
    }

    /// A node as `GET /nodes/{id}` shows it to this credential: without its token digest,
    /// its secret variables masked unless the caller is the node or an admin. A caller
    /// that may not read nodes (a non-loopback listener, no read token) gets `401`.
    pub fn node_view(&self, id: &str, cred: &Credential) -> Result<Node, ApiError> {
        let mut node = self
            .node(id)
            .ok_or_else(|| ApiError::not_found("no_such_node", format!("no node '{id}'")))?;
        let own = is_node(&node, cred);
        if !(cred.reader || own) {
            return Err(needs_reader());
        }
        if !(cred.admin || own) {
            if let Some(var) = &node.var {
                node.var = Some(self.secrets.mask(var));
            }
        }
        node.token_sha256 = None;
        Ok(node)
    }

    /// Whether the credential may read node details (`401` if not).
    pub fn authorize_read(&self, cred: &Credential) -> Result<(), ApiError> {
        if cred.reader {
            Ok(())
        } else {
            Err(needs_reader())
        }
    }

    /// Whether the call comes from the node's own address (one it is known by: its CMDB
    /// `ip`, an address of its inventory, the address its upload came from).
    fn calls_from_its_address(&self, node: &Node, cred: &Credential) -> bool {
        cred.peer.is_some_and(|ip| {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            self.nodes
                .by_address(&ip.to_string())
                .is_some_and(|n| n.id == node.id)
        })
    }

    /// A failure report, checked: with an inventory of a known node, the node's token, the
    /// node's own address (eDeploy's agents send no token) or the admin token; without one (eDeploy's anonymous report: one install back to the
    /// profile), the admin token when the server has one.
    pub async fn report_failure_as(
        &self,
        profile: &str,
        inventory: Option<Inventory>,
        cred: &Credential,
    ) -> Result<rdeploy_cmdb::snapshot::FailureOutcome, ApiError> {
        let known = inventory
            .as_ref()
            .map(|inv| Identity::of(inv).name)
            .and_then(|name| self.node(&name));
        self.may_act_on(known.as_ref(), cred)?;
        self.report_failure(profile, inventory).await
    }

    /// PXE Manager's `/localboot/<mac>/`, checked: the node owning the MAC, if the caller
    /// is that node (its token, or an address it is known by) or an admin; a registered
    /// system or a MAC nobody owns is an operator's change.
    pub async fn localboot_mac_as(
        &self,
        mac: &str,
        why: &str,
        cred: &Credential,
    ) -> Result<Machine, ApiError> {
        let node = match self.find(mac).await {
            Some(Machine::Node(node)) => Some(*node),
            _ => None,
        };
        self.may_act_on(node.as_ref(), cred)?;
        self.localboot_mac(mac, why).await
    }

    /// A seed system's call on a machine: a node needs its token, its own address or the
    /// admin token; anything else (a registered system, a MAC or a profile alone) is an
    /// operator's change.
    fn may_act_on(&self, node: Option<&Node>, cred: &Credential) -> Result<(), ApiError> {
        let allowed = match node {
            Some(n) => cred.admin || is_node(n, cred) || self.calls_from_its_address(n, cred),
            None => cred.operator,
        };
        match (allowed, node) {
            (true, _) => Ok(()),
            (false, Some(n)) => Err(needs_node_token(&n.id)),
            (false, None) => Err(needs_admin()),
        }
    }
}

fn needs_reader() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "read_token_required",
        "reading nodes on this listener needs `Authorization: Bearer <token>` (the server's --read-token-file or --admin-token-file)",
    )
}
