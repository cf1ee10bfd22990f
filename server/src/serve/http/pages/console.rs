//! The console's pages: `GET /` (the nodes: counts per state, filters, sorting, pages of
//! [`PER_PAGE`], stuck and failed nodes marked), `GET /ui/nodes/<id>` (one node: why it
//! matched nothing, its next boot and the actions, the timeline, the variables it got with
//! secrets masked, its inventory by category, its log), `GET /ui/profiles` (`state` in
//! order, quotas, CMDB use, the config dir's problems) and `GET /ui/systems` (registered
//! systems, role trees). Each page's live part is the element `#live`, which the script
//! re-reads when `GET /events` says a node changed.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use rdeploy_specs::Inventory;

use super::super::super::access::{Secrets, MASK};
use super::super::super::core::NodeFilter;
use super::super::super::error::ApiError;
use super::super::super::lifecycle::{state_name, ALL_STATES};
use super::super::super::record::Node;
use super::super::super::AppState;
use super::super::extract::Cred;
use super::super::extract::NodeId;
use super::session::{csrf, needs_login, needs_reader};
use super::{esc, page, seg, Section};
use crate::wire::NodeSummary;

/// Nodes per page unless `?per=` says otherwise (at most [`MAX_PER_PAGE`]).
pub const PER_PAGE: usize = 100;
pub const MAX_PER_PAGE: usize = 1000;
/// A node under way with no event for this long is stuck (`?stuck=MINUTES` changes it).
pub const STUCK_AFTER: Duration = Duration::from_secs(30 * 60);

/// The nodes page's query: the filter of `GET /nodes`, a sort column, a page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NodesQuery {
    pub state: Option<String>,
    pub profile: Option<String>,
    pub q: Option<String>,
    /// A column: `id`, `state`, `profile`, `ip`, `hostname`, `role`, `version`, `boot`,
    /// `event`, `age`.
    pub sort: Option<String>,
    /// `1`: descending.
    pub desc: Option<String>,
    pub page: Option<usize>,
    pub per: Option<usize>,
    /// Minutes without an event after which a node under way is stuck.
    pub stuck: Option<u64>,
}

const COLUMNS: [(&str, &str); 10] = [
    ("id", "node"),
    ("state", "state"),
    ("profile", "profile"),
    ("ip", "IP"),
    ("hostname", "hostname"),
    ("role", "role"),
    ("boot", "next boot"),
    ("event", "last event"),
    ("age", "age"),
    ("version", "version"),
];

fn json_text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Seconds since an RFC 3339 time (0 if it cannot be read or is in the future).
fn age(at: &str, now: SystemTime) -> u64 {
    humantime::parse_rfc3339_weak(at)
        .ok()
        .and_then(|t| now.duration_since(t).ok())
        .map_or(0, |d| d.as_secs())
}

/// `75` → `1m15s`.
pub fn short_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Whether a node is under way (its install can get stuck).
fn under_way(state: &str) -> bool {
    matches!(state, "matched" | "configuring" | "installing")
}

fn compare(a: &NodeSummary, b: &NodeSummary, column: &str) -> Ordering {
    let key = |n: &NodeSummary| -> String {
        match column {
            "state" => state_name(n.state).to_owned(),
            "profile" => n.profile.clone().unwrap_or_default(),
            "ip" => json_text(n.ip.as_ref()),
            "hostname" => json_text(n.hostname.as_ref()),
            "role" => n.role.clone().unwrap_or_default(),
            "version" => n.version.clone().unwrap_or_default(),
            "boot" => n.boot.clone(),
            "event" => n.last_event.clone().unwrap_or_default(),
            // Oldest update first = largest age first, as the column reads.
            "age" => n.updated_at.clone(),
            _ => n.id.clone(),
        }
    };
    if column == "ip" {
        let ip = |n: &NodeSummary| json_text(n.ip.as_ref()).parse::<std::net::IpAddr>().ok();
        return ip(a).cmp(&ip(b)).then_with(|| a.id.cmp(&b.id));
    }
    key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
}

fn query_string(q: &NodesQuery, sort: Option<(&str, bool)>, page: Option<usize>) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("state", q.state.as_deref()),
        ("profile", q.profile.as_deref()),
        ("q", q.q.as_deref()),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", seg(v)));
        }
    }
    let (col, desc) = sort.unwrap_or((
        q.sort.as_deref().unwrap_or("id"),
        q.desc.as_deref() == Some("1"),
    ));
    if col != "id" {
        parts.push(format!("sort={}", seg(col)));
    }
    if desc {
        parts.push("desc=1".to_owned());
    }
    if let Some(per) = q.per {
        parts.push(format!("per={per}"));
    }
    if let Some(s) = q.stuck {
        parts.push(format!("stuck={s}"));
    }
    if let Some(p) = page.filter(|p| *p > 0) {
        parts.push(format!("page={p}"));
    }
    if parts.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{}", parts.join("&"))
    }
}

fn options(values: &[String], selected: Option<&str>) -> String {
    let mut out = String::from("<option value=\"\">any</option>");
    for v in values {
        let sel = if Some(v.as_str()) == selected {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option{sel}>{}</option>", esc(v));
    }
    out
}

/// `GET /`: the nodes.
pub async fn nodes(
    State(app): State<AppState>,
    Cred(cred): Cred,
    Query(q): Query<NodesQuery>,
) -> Response {
    if !cred.reader {
        return needs_reader();
    }
    let now = SystemTime::now();
    let stuck_after = q
        .stuck
        .map_or(STUCK_AFTER, |m| Duration::from_secs(m.saturating_mul(60)));
    let per = q.per.unwrap_or(PER_PAGE).clamp(1, MAX_PER_PAGE);
    let column = q.sort.as_deref().unwrap_or("id");
    let desc = q.desc.as_deref() == Some("1");
    let filter = NodeFilter {
        state: q.state.clone().filter(|s| !s.is_empty()),
        profile: q.profile.clone().filter(|s| !s.is_empty()),
        q: q.q.clone().filter(|s| !s.is_empty()),
        after: None,
        limit: None,
    };
    let mut list = app.core.node_list(&filter).nodes;
    if column != "id" || desc {
        list.sort_by(|a, b| compare(a, b, column));
        if desc {
            list.reverse();
        }
    }
    let total = list.len();
    let pages = total.div_ceil(per).max(1);
    let page_no = q.page.unwrap_or(0).min(pages - 1);
    let shown = list.iter().skip(page_no * per).take(per);

    let mut body = String::new();
    // Counts per state, each a filter.
    let counts = app.core.count_by_state();
    let all: usize = counts.iter().map(|(_, n)| n).sum();
    body.push_str("<div id=\"live\">\n<p class=\"counts\" id=\"counts\">");
    let on = |s: Option<&str>| {
        if q.state.as_deref().filter(|x| !x.is_empty()) == s {
            " class=\"on\""
        } else {
            ""
        }
    };
    let _ = write!(body, "<a href=\"/\"{}>all <b>{all}</b></a>", on(None));
    for state in ALL_STATES {
        let name = state_name(state);
        let n = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        let _ = write!(
            body,
            "<a href=\"/?state={name}\"{} data-state=\"{name}\">{name} <b>{n}</b></a>",
            on(Some(name))
        );
    }
    body.push_str("</p>\n");

    let _ = writeln!(
        body,
        "<p>{total} node{} shown{}; page {} of {pages}. Nodes under way with no event for {} are marked <span class=\"stuck-tag\">stuck</span>.</p>",
        if total == 1 { "" } else { "s" },
        if total == all { String::new() } else { format!(" of {all}") },
        page_no + 1,
        short_duration(stuck_after.as_secs()),
    );
    body.push_str("<table id=\"nodes\">\n<tr>");
    for (col, label) in COLUMNS {
        let arrow = if col == column {
            if desc {
                " ▼"
            } else {
                " ▲"
            }
        } else {
            ""
        };
        let next_desc = col == column && !desc;
        let _ = write!(
            body,
            "<th><a href=\"{}\">{label}{arrow}</a></th>",
            esc(&query_string(&q, Some((col, next_desc)), None))
        );
    }
    body.push_str("</tr>\n");
    for n in shown {
        let state = state_name(n.state);
        let secs = age(&n.updated_at, now);
        let stuck = under_way(state) && secs >= stuck_after.as_secs();
        let class = if state == "failed" {
            " class=\"failed\""
        } else if stuck {
            " class=\"stuck\""
        } else {
            ""
        };
        let _ = writeln!(
            body,
            "<tr id=\"node-{id}\"{class}><td><a href=\"/ui/nodes/{link}\">{id}</a></td><td class=\"state-{state}\">{state}{stuck_tag}</td><td>{profile}</td><td>{ip}</td><td>{host}</td><td>{role}</td><td>{boot}</td><td class=\"ev\" title=\"{event}\">{event}</td><td title=\"{at}\">{age}</td><td>{version}</td></tr>",
            id = esc(&n.id),
            link = seg(&n.id),
            stuck_tag = if stuck { " (stuck)" } else { "" },
            profile = esc(n.profile.as_deref().unwrap_or("")),
            ip = esc(&json_text(n.ip.as_ref())),
            host = esc(&json_text(n.hostname.as_ref())),
            role = esc(n.role.as_deref().unwrap_or("")),
            boot = esc(&n.boot),
            event = esc(n.last_event.as_deref().and_then(|e| e.lines().next()).unwrap_or("")),
            at = esc(&n.updated_at),
            age = short_duration(secs),
            version = esc(n.version.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</table>\n<p>");
    if page_no > 0 {
        let _ = write!(
            body,
            "<a href=\"{}\" id=\"prev\">← previous</a> ",
            esc(&query_string(&q, None, Some(page_no - 1)))
        );
    }
    if page_no + 1 < pages {
        let _ = write!(
            body,
            "<a href=\"{}\" id=\"next\">next →</a>",
            esc(&query_string(&q, None, Some(page_no + 1)))
        );
    }
    body.push_str("</p>\n</div>\n");

    // The filter form, outside the live part (typing is not interrupted by updates).
    let profiles: Vec<String> = app
        .core
        .last_health()
        .profiles
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let states: Vec<String> = ALL_STATES
        .iter()
        .map(|s| state_name(*s).to_owned())
        .collect();
    let form = format!(
        "<form method=\"get\" action=\"/\" id=\"filter\">State <select name=\"state\">{}</select> \
         Profile <select name=\"profile\">{}</select> \
         <input type=\"search\" name=\"q\" placeholder=\"MAC, serial, IP, name\" value=\"{}\"> \
         <button type=\"submit\">Filter</button> <a href=\"/\">clear</a></form>\n",
        options(&states, q.state.as_deref()),
        options(&profiles, q.profile.as_deref()),
        esc(q.q.as_deref().unwrap_or("")),
    );
    page("Nodes", Section::Nodes, &format!("{form}{body}"))
}

/// Renders a node's variable for a table cell (secret ones masked, whoever reads).
fn value_cell(
    secrets: &Secrets,
    var: &serde_json::Map<String, serde_json::Value>,
    key: &str,
    v: &serde_json::Value,
) -> String {
    if secrets.is_secret(key, var) {
        return MASK.to_owned();
    }
    esc(&json_text(Some(v)))
}

/// The categories of an inventory, in the order a person reads them.
const CATEGORIES: [&str; 6] = ["system", "cpu", "memory", "disk", "network", "ipmi"];

fn inventory_tables(secrets: &Secrets, text: &str) -> String {
    let inventory = match Inventory::parse(text) {
        Ok(i) => i,
        Err(e) => {
            return format!(
                "<p class=\"problem\">the saved inventory cannot be read: {}</p>",
                esc(&e.to_string())
            )
        }
    };
    let plain = |v: &rdeploy_specs::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let mut groups: BTreeMap<(usize, String), Vec<[String; 3]>> = BTreeMap::new();
    for line in &inventory.lines {
        let cat = plain(&line[0]);
        let rank = CATEGORIES
            .iter()
            .position(|c| *c == cat)
            .unwrap_or(CATEGORIES.len());
        let key = plain(&line[2]);
        let value = if secrets.is_secret(&key, &serde_json::Map::new()) {
            MASK.to_owned()
        } else {
            plain(&line[3])
        };
        groups
            .entry((rank, cat))
            .or_default()
            .push([plain(&line[1]), key, value]);
    }
    let mut out = String::new();
    for ((_, cat), rows) in groups {
        let _ = write!(
            out,
            "<h3>{0}</h3>\n<table class=\"inventory\" data-category=\"{0}\"><tr><th>item</th><th>key</th><th>value</th></tr>\n",
            esc(&cat)
        );
        for [item, key, value] in rows {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&item),
                esc(&key),
                esc(&value)
            );
        }
        out.push_str("</table>\n");
    }
    out
}

fn timeline(node: &Node, now: SystemTime) -> String {
    let mut out = String::from(
        "<table id=\"timeline\"><tr><th>state</th><th>entered</th><th>for</th></tr>\n",
    );
    for (i, h) in node.history.iter().enumerate() {
        let until = node
            .history
            .get(i + 1)
            .and_then(|n| humantime::parse_rfc3339_weak(&n.at).ok())
            .unwrap_or(now);
        let took = humantime::parse_rfc3339_weak(&h.at)
            .ok()
            .and_then(|t| until.duration_since(t).ok())
            .map_or_else(String::new, |d| short_duration(d.as_secs()));
        let name = state_name(h.state);
        let _ = writeln!(
            out,
            "<tr><td class=\"state-{name}\">{name}</td><td>{}</td><td class=\"n\">{took}{}</td></tr>",
            esc(&h.at),
            if i + 1 == node.history.len() { " so far" } else { "" }
        );
    }
    out.push_str("</table>\n");
    out.push_str(&steps(node));
    out.push_str("<h3>Events</h3>\n<table id=\"events\"><tr><th>at</th><th>kind</th><th>step</th><th>status</th><th>message</th><th>after</th></tr>\n");
    let mut prev: Option<SystemTime> = None;
    for e in &node.events {
        let at = humantime::parse_rfc3339_weak(&e.at).ok();
        let after = match (prev, at) {
            (Some(p), Some(a)) => a.duration_since(p).map_or_else(
                |_| String::new(),
                |d| format!("+{}", short_duration(d.as_secs())),
            ),
            _ => String::new(),
        };
        prev = at.or(prev);
        let _ = writeln!(
            out,
            "<tr class=\"kind-{kind}\"><td>{}</td><td>{kind}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td><td class=\"n\">{after}</td></tr>",
            esc(&e.at),
            esc(e.step.as_deref().unwrap_or("")),
            esc(e.status.as_deref().unwrap_or("")),
            esc(&e.message),
            kind = esc(&e.kind),
        );
    }
    out.push_str("</table>\n");
    out
}

/// The install's steps as the agent reported them (`detect`, `upload`, `configure`,
/// `install_role`, `bootloader`, `finish` ...): when each started, how it ended, how long it
/// took (from its `started` to its `succeeded`/`failed` report).
fn steps(node: &Node) -> String {
    let mut rows: Vec<(String, String, Option<String>, Option<String>)> = Vec::new();
    for e in node.events.iter().filter(|e| e.kind == "progress") {
        let (Some(step), Some(status)) = (e.step.as_deref(), e.status.as_deref()) else {
            continue;
        };
        if status == "started" {
            rows.push((step.to_owned(), e.at.clone(), None, None));
        } else if let Some(row) = rows.iter_mut().rev().find(|r| r.0 == step && r.2.is_none()) {
            row.2 = Some(status.to_owned());
            row.3 = Some(e.at.clone());
        } else {
            rows.push((
                step.to_owned(),
                e.at.clone(),
                Some(status.to_owned()),
                Some(e.at.clone()),
            ));
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h3>Steps</h3>\n<table id=\"steps\"><tr><th>step</th><th>started</th><th>result</th><th>took</th></tr>\n");
    for (step, start, status, end) in rows {
        let took = end
            .as_deref()
            .and_then(|e| humantime::parse_rfc3339_weak(e).ok())
            .zip(humantime::parse_rfc3339_weak(&start).ok())
            .and_then(|(e, s)| e.duration_since(s).ok())
            .map_or_else(String::new, |d| short_duration(d.as_secs()));
        let status = status.unwrap_or_else(|| "running".to_owned());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"step-{status}\">{status}</td><td class=\"n\">{took}</td></tr>",
            esc(&step),
            esc(&start),
            status = esc(&status),
        );
    }
    out.push_str("</table>\n");
    out
}

/// `GET /ui/nodes/<id>`.
pub async fn node(
    State(app): State<AppState>,
    NodeId(id): NodeId,
    Cred(cred): Cred,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !cred.reader {
        return Ok(needs_reader());
    }
    let secrets = app.core.secrets();
    let node = app
        .core
        .node(&id)
        .ok_or_else(|| ApiError::not_found("no_such_node", format!("no node '{id}'")))?;
    let now = SystemTime::now();
    let state = state_name(node.state);
    let mut body = format!("<div id=\"live\" data-node=\"{}\">\n", esc(&node.id));
    let var_text = |k: &str| json_text(node.var.as_ref().and_then(|v| v.get(k)));
    let _ = writeln!(
        body,
        "<table id=\"summary\">\
         <tr><th>state</th><td class=\"state-{state}\" id=\"state\">{state}</td></tr>\
         <tr><th>profile</th><td>{}</td></tr>\
         <tr><th>MACs</th><td>{}</td></tr>\
         <tr><th>IP / hostname</th><td>{} {}</td></tr>\
         <tr><th>role / version</th><td>{} {}</td></tr>\
         <tr><th>next boot</th><td id=\"boot\">{}</td></tr>\
         <tr><th>first seen / updated</th><td>{} / {} ({} ago)</td></tr></table>",
        esc(node.profile.as_deref().unwrap_or("none")),
        esc(&node.identity.macs.join(", ")),
        esc(&var_text("ip")),
        esc(&var_text("hostname")),
        esc(node.role.as_deref().unwrap_or("")),
        esc(node.version.as_deref().unwrap_or("")),
        esc(&node.boot.to_string()),
        esc(&node.created_at),
        esc(&node.updated_at),
        short_duration(age(&node.updated_at, now)),
    );
    // Why it matched nothing: the last refusal says, profile by profile.
    if node.profile.is_none() {
        if let Some(e) = node.events.iter().rev().find(|e| e.kind == "refused") {
            let _ = write!(
                body,
                "<h2>Why it matched no profile</h2>\n<div class=\"why\" id=\"why\">{}</div>\n",
                esc(&e.message)
            );
        }
    }
    body.push_str("<h2>Timeline</h2>\n");
    body.push_str(&timeline(&node, now));
    body.push_str("</div>\n");

    // Actions (outside the live part: a half-typed profile name is not lost).
    let login = if needs_login(&app, &headers) {
        "<p class=\"muted\" id=\"needs-token\">Actions need the admin token: <a href=\"/ui/login\">give it once</a>.</p>"
    } else {
        ""
    };
    let action = |target: &str, label: &str, id: &str| {
        format!(
            "<form class=\"inline\" method=\"post\" action=\"/ui/nodes/{link}/boot\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"target\" value=\"{target}\"><button type=\"submit\" id=\"{id}\">{label}</button></form> ",
            link = seg(&node.id),
            csrf = csrf(),
        )
    };
    let _ = write!(
        body,
        "<h2>Actions</h2>\n{login}<p>{}{}<form class=\"inline\" method=\"post\" action=\"/ui/nodes/{link}/boot\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input name=\"target\" placeholder=\"boot profile\" size=\"14\"> <button type=\"submit\" id=\"boot-profile\">Boot profile</button></form></p>\n",
        action("install", "Re-install", "reinstall"),
        action("local", "Boot local", "boot-local"),
        link = seg(&node.id),
        csrf = csrf(),
    );

    // The variables it got, secrets masked.
    body.push_str("<h2>Variables</h2>\n");
    match &node.var {
        Some(var) if !var.is_empty() => {
            body.push_str("<table id=\"variables\"><tr><th>key</th><th>value</th></tr>\n");
            for (k, v) in var {
                let _ = writeln!(
                    body,
                    "<tr><td>{}</td><td>{}</td></tr>",
                    esc(k),
                    value_cell(secrets, var, k, v)
                );
            }
            body.push_str("</table>\n");
        }
        _ => body.push_str("<p class=\"muted\">none (no CMDB entry handed out)</p>\n"),
    }

    // The log the agent uploaded.
    body.push_str("<h2>Log</h2>\n");
    match app.core.node_log(&id).await {
        Ok(Some((name, bytes))) if name.ends_with(".gz") => {
            let _ = writeln!(
                body,
                "<p class=\"muted\">{} ({} bytes, gzipped: read it on the server, the console shows only what it can mask)</p>",
                esc(&name),
                bytes.len()
            );
        }
        Ok(Some((name, bytes))) => {
            let text = mask_log(secrets, &String::from_utf8_lossy(&bytes), &node);
            let _ = writeln!(
                body,
                "<p class=\"muted\">{}, {} bytes</p><pre id=\"log\">{}</pre>",
                esc(&name),
                bytes.len(),
                esc(&text)
            );
        }
        Ok(None) => body.push_str("<p class=\"muted\">no log uploaded</p>\n"),
        Err(e) => {
            let _ = writeln!(body, "<p class=\"problem\">{}</p>", esc(&e.message));
        }
    }

    body.push_str("<h2>Inventory</h2>\n");
    match app.core.inventory(&id).await {
        Ok(text) => body.push_str(&inventory_tables(secrets, &text)),
        Err(e) => {
            let _ = writeln!(body, "<p class=\"muted\">{}</p>", esc(&e.message));
        }
    }
    Ok(page(&format!("Node {id}"), Section::Nodes, &body))
}

/// A log with the values of the node's secret variables replaced by the mask.
fn mask_log(secrets: &Secrets, text: &str, node: &Node) -> String {
    let mut out = text.to_owned();
    if let Some(var) = &node.var {
        for (k, v) in var {
            let v = json_text(Some(v));
            if secrets.is_secret(k, var) && v.len() >= 3 {
                out = out.replace(&v, MASK);
            }
        }
    }
    out
}

/// `GET /ui/profiles`.
pub async fn profiles(State(app): State<AppState>) -> Response {
    let quota = app.core.quota().await;
    let health = app.core.last_health();
    let mut body = String::from("<div id=\"live\">\n<p>Profiles in <code>state</code> order: an upload gets the first whose specs match and that has installs left.</p>\n<table id=\"profiles\"><tr><th>#</th><th>profile</th><th>installs left</th><th>CMDB used / total</th><th>nodes</th></tr>\n");
    for (i, p) in quota.profiles.iter().enumerate() {
        let cmdb = match (p.cmdb_used, p.cmdb_total) {
            (Some(u), Some(t)) => {
                let pct = (u * 100).checked_div(t).unwrap_or(100);
                format!("<span class=\"bar\" title=\"{pct}%\"><span style=\"width:{pct}%\"></span></span> {u} / {t}")
            }
            _ => "<span class=\"muted\">no CMDB</span>".to_owned(),
        };
        let _ = writeln!(
            body,
            "<tr><td class=\"n\">{}</td><td><a href=\"/?profile={}\">{}</a></td><td class=\"n\">{}</td><td>{cmdb}</td><td class=\"n\">{}</td></tr>",
            i + 1,
            seg(&p.profile),
            esc(&p.profile),
            esc(&p.quota),
            p.nodes
        );
    }
    body.push_str("</table>\n<h2>Config dir</h2>\n");
    let _ = writeln!(body, "<p><code>{}</code></p>", esc(&health.config_dir));
    if health.problems.is_empty() && health.warnings.is_empty() {
        body.push_str("<p id=\"healthy\">No problems (as <code>rdeploy check</code> and <code>/healthz</code> report).</p>\n");
    }
    for (kind, list) in [("error", &health.problems), ("warning", &health.warnings)] {
        for p in list {
            let _ = writeln!(
                body,
                "<div class=\"problem\" data-kind=\"{kind}\">{kind}: {}: {}{}</div>",
                esc(&p.file),
                esc(&p.error),
                if p.using_last_good {
                    " (its last good version is used meanwhile)"
                } else {
                    ""
                }
            );
        }
    }
    if let Some(e) = &health.last_error {
        let _ = writeln!(
            body,
            "<div class=\"problem\">the last commit failed: {}</div>",
            esc(e)
        );
    }
    body.push_str("</div>\n");
    page("Profiles", Section::Profiles, &body)
}

/// `GET /ui/systems`: registered systems and role trees.
pub async fn systems(State(app): State<AppState>) -> Result<Response, ApiError> {
    let systems = app.core.systems().await.systems;
    let mut body = String::from("<div id=\"live\">\n<h2>Registered systems</h2>\n");
    if systems.is_empty() {
        body.push_str("<p class=\"muted\">none (<code>rdeploy systems add</code>, PXE Manager's <code>addsystem</code>)</p>\n");
    } else {
        body.push_str(
            "<table id=\"systems\"><tr><th>name</th><th>MACs</th><th>next boot</th></tr>\n",
        );
        for s in &systems {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                esc(&s.macs.join(", ")),
                esc(&s.boot)
            );
        }
        body.push_str("</table>\n");
    }
    body.push_str("<h2>Role trees</h2>\n");
    let dir = app.core.data_dir().to_owned();
    let roles = tokio::task::spawn_blocking(move || super::super::super::roles::list(&dir))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let rows: Vec<serde_json::Value> = roles
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    if rows.is_empty() {
        body.push_str("<p class=\"muted\">none under <code>DATA_DIR/install/&lt;version&gt;/&lt;role&gt;/</code> (docs/roles.md)</p>\n");
    } else {
        let keys: Vec<String> = rows
            .first()
            .and_then(|r| r.as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        body.push_str("<table id=\"roles\"><tr>");
        for k in &keys {
            let _ = write!(body, "<th>{}</th>", esc(k));
        }
        body.push_str("</tr>\n");
        for r in &rows {
            body.push_str("<tr>");
            for k in &keys {
                let _ = write!(body, "<td>{}</td>", esc(&json_text(r.get(k))));
            }
            body.push_str("</tr>\n");
        }
        body.push_str("</table>\n<p>Upgrade paths: <code>GET /roles/&lt;role&gt;/&lt;version&gt;/upgrades</code>.</p>\n");
    }
    body.push_str("</div>\n");
    Ok(page("Systems and role trees", Section::Systems, &body))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn durations_read_short() {
        assert_eq!(short_duration(5), "5s");
        assert_eq!(short_duration(75), "1m15s");
        assert_eq!(short_duration(3 * 3600 + 120), "3h02m");
        assert_eq!(short_duration(2 * 86400 + 3600), "2d01h");
    }

    #[test]
    fn inventories_are_grouped_and_secrets_masked() {
        let text = "[('system', 'product', 'name', 'R630'), ('ipmi', 'lan', 'password', 'hunter2'), ('cpu', 'physical', 'number', 2)]";
        let html = inventory_tables(&Secrets::default(), text);
        assert!(html.contains("R630"));
        assert!(!html.contains("hunter2"), "{html}");
        assert!(html.contains(MASK));
        let (sys, cpu, ipmi) = (
            html.find("<h3>system</h3>"),
            html.find("<h3>cpu</h3>"),
            html.find("<h3>ipmi</h3>"),
        );
        assert!(sys < cpu && cpu < ipmi, "{html}");
    }
}
