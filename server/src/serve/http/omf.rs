//! OMF's PXE service (`/pxe/...`, the aggregate manager's `pxe` grid service):
//!
//! - `setBootImage?node=N[&imgName=I]`, `setBootImageNS?ns=N1,N2[&domain=D][&imgName=I]`:
//!   the nodes boot the image next (their own image when `imgName` is not given), their
//!   hex-IP PXELINUX names linking to it;
//! - `clearBootImage?node=N`, `clearBootImageNS?ns=N1,N2`: the links go and the nodes boot
//!   their disk (`pxelinux.cfg/default`).
//!
//! Answers are OMF's XML (`<response status="OK"><action service="pxe" name=...><nodes>
//! <node hrn= ip= img= hex=/>...`) when the request asks for XML (`Accept: .../xml` or
//! `format=xml`), JSON otherwise. Changes need the admin token when the server has one.

use crate::serve::markup::escape as attr;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::super::error::ApiError;
use super::super::AppState;
use super::extract::{Admin, Query};
use crate::wire::OmfNode;

/// The query OMF's calls carry (its `domain`, the testbed, is accepted and ignored: one
/// testbed per server).
#[derive(Debug, Deserialize)]
pub struct OmfQuery {
    /// One node (`setBootImage`).
    node: Option<String>,
    /// A node set, comma-separated (`setBootImageNS`).
    ns: Option<String>,
    /// The image; the node's own when absent.
    #[serde(rename = "imgName")]
    img_name: Option<String>,
    /// `xml` for OMF's XML answer.
    format: Option<String>,
}

impl OmfQuery {
    fn names(&self) -> Result<Vec<String>, ApiError> {
        let names: Vec<String> = self
            .node
            .iter()
            .chain(self.ns.iter())
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Err(ApiError::bad_request(
                "missing_node",
                "?node=NAME (or ?ns=NAME1,NAME2) is required",
            ));
        }
        Ok(names)
    }

    fn wants_xml(&self, headers: &HeaderMap) -> bool {
        self.format.as_deref() == Some("xml")
            || headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("/xml"))
    }
}

/// `GET /pxe/setBootImage`, `/pxe/setBootImageNS`.
pub async fn set(
    State(app): State<AppState>,
    _admin: Admin,
    Query(q): Query<OmfQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let names = q.names()?;
    let image = q.img_name.as_deref().filter(|i| !i.is_empty());
    let nodes = app.core.omf_set(&names, image).await?;
    Ok(answer(q.wants_xml(&headers), "setBootImage", &nodes))
}

/// `GET /pxe/clearBootImage`, `/pxe/clearBootImageNS`.
pub async fn clear(
    State(app): State<AppState>,
    _admin: Admin,
    Query(q): Query<OmfQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let names = q.names()?;
    let nodes = app.core.omf_clear(&names).await?;
    Ok(answer(q.wants_xml(&headers), "clearBootImage", &nodes))
}

/// The `{"action", "nodes"}` JSON answer.
#[derive(Debug, serde::Serialize)]
struct JsonAnswer<'a> {
    status: &'static str,
    action: &'static str,
    nodes: &'a [OmfNode],
}

fn answer(xml: bool, action: &'static str, nodes: &[OmfNode]) -> Response {
    if !xml {
        return Json(JsonAnswer {
            status: "OK",
            action,
            nodes,
        })
        .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        render_xml(action, nodes),
    )
        .into_response()
}

/// OMF's answer: `<response status="OK"><action service="pxe" name="ACTION"><nodes>
/// <node hrn=".." ip=".." img=".." hex=".."/>...</nodes></action></response>`.
pub fn render_xml(action: &str, nodes: &[OmfNode]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response status=\"OK\"><action service=\"pxe\" name=\"{}\"><nodes>",
        attr(action)
    );
    for n in nodes {
        out.push_str(&format!(
            "<node hrn=\"{}\" ip=\"{}\" img=\"{}\" hex=\"{}\"/>",
            attr(&n.hrn),
            attr(&n.ip),
            attr(&n.img),
            attr(&n.hex)
        ));
    }
    out.push_str("</nodes></action></response>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xml_is_omfs_and_escaped() {
        let nodes = [OmfNode {
            hrn: "node1-1<&>".into(),
            ip: "10.0.0.5".into(),
            img: "omf-5.4".into(),
            hex: "0A000005".into(),
        }];
        assert_eq!(
            render_xml("setBootImage", &nodes),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response status=\"OK\"><action service=\"pxe\" name=\"setBootImage\"><nodes><node hrn=\"node1-1&lt;&amp;&gt;\" ip=\"10.0.0.5\" img=\"omf-5.4\" hex=\"0A000005\"/></nodes></action></response>\n"
        );
    }
}
