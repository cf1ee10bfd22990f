//! `GET /metrics` in the Prometheus text format: uploads, matches per profile, refusals per
//! code, allocation latency, writer batches, nodes per state, installs in flight.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Upper bounds (seconds) of the allocation latency histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// Counters shared by the handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    uploads: AtomicU64,
    matches: Mutex<BTreeMap<String, u64>>,
    refusals: Mutex<BTreeMap<String, u64>>,
    alloc_buckets: [AtomicU64; BUCKETS.len()],
    alloc_count: AtomicU64,
    alloc_sum_micros: AtomicU64,
}

impl Metrics {
    pub fn upload(&self) {
        self.uploads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn matched(&self, profile: &str) {
        if let Ok(mut m) = self.matches.lock() {
            *m.entry(profile.to_owned()).or_default() += 1;
        }
    }

    pub fn refused(&self, code: &str) {
        if let Ok(mut m) = self.refusals.lock() {
            *m.entry(code.to_owned()).or_default() += 1;
        }
    }

    /// Time from handing an upload to the writer to its answer.
    pub fn allocation(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.alloc_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.alloc_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.alloc_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

fn counter_map(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    m: &Mutex<BTreeMap<String, u64>>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    if let Ok(m) = m.lock() {
        for (k, v) in m.iter() {
            let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape(k));
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<AppState>) -> Response {
    let m = &app.core.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP rdeploy_uploads_total Inventories received on /upload.\n# TYPE rdeploy_uploads_total counter\nrdeploy_uploads_total {}",
        m.uploads.load(Ordering::Relaxed)
    );
    counter_map(
        &mut out,
        "rdeploy_matches_total",
        "Uploads matched, per profile.",
        "profile",
        &m.matches,
    );
    counter_map(
        &mut out,
        "rdeploy_upload_refusals_total",
        "Uploads answered with an error, per error code (no_match, no_more_role, ...).",
        "code",
        &m.refusals,
    );
    let _ = writeln!(
        out,
        "# HELP rdeploy_allocation_seconds Time from an upload reaching the writer to its answer.\n# TYPE rdeploy_allocation_seconds histogram"
    );
    for (i, b) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "rdeploy_allocation_seconds_bucket{{le=\"{b}\"}} {}",
            m.alloc_buckets[i].load(Ordering::Relaxed)
        );
    }
    let count = m.alloc_count.load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)]
    let sum = m.alloc_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(
        out,
        "rdeploy_allocation_seconds_bucket{{le=\"+Inf\"}} {count}\nrdeploy_allocation_seconds_sum {sum}\nrdeploy_allocation_seconds_count {count}"
    );
    let health = app.core.last_health();
    let _ = writeln!(
        out,
        "# HELP rdeploy_commits_total Config-dir commits by the writer (one per batch that changed files).\n# TYPE rdeploy_commits_total counter\nrdeploy_commits_total {}",
        health.commits
    );
    let _ = writeln!(
        out,
        "# HELP rdeploy_config_problems Config files that do not parse (last good version in use).\n# TYPE rdeploy_config_problems gauge\nrdeploy_config_problems {}",
        health.problems.len()
    );
    let _ = writeln!(
        out,
        "# HELP rdeploy_nodes Nodes per life-cycle state.\n# TYPE rdeploy_nodes gauge"
    );
    for (state, n) in app.core.count_by_state() {
        let _ = writeln!(
            out,
            "rdeploy_nodes{{state=\"{}\"}} {n}",
            super::lifecycle::state_name(state)
        );
    }
    let _ = writeln!(
        out,
        "# HELP rdeploy_installs_in_flight Installs admitted and not finished.\n# TYPE rdeploy_installs_in_flight gauge\nrdeploy_installs_in_flight {}",
        app.core.installs_in_flight()
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
