//! A boot storm against `rdeploy serve`: N distinct inventories posted by C concurrent
//! clients against 8 profiles, then a check from the files that no CMDB entry was handed out
//! twice and no quota went negative.
//!
//! ```sh
//! cargo build --release -p rdeploy-server --examples
//! target/release/examples/storm --rdeploy target/release/rdeploy            # 10,000 × 100
//! target/release/examples/storm --rdeploy target/release/rdeploy --baseline # one at a time, CGI-like
//! target/release/examples/storm --rdeploy target/release/rdeploy --console  # then the console
//! target/release/examples/storm --rdeploy target/release/rdeploy --database-url URL --servers 2
//! ```
//!
//! `--database-url URL` (a fresh database, e.g. from `scripts/pg start`): the servers run in
//! PostgreSQL mode; `--servers N` starts N of them on it, client k posting to server k mod N.
//! The check then reads the database's files (`rdeploy config pull`).
//!
//! `--console`: after the storm, with the 10,000 nodes in the server, times the console's
//! pages (median and worst of 20 requests each, bytes per page) and the event stream: 100
//! listeners on `GET /events` while 2,000 progress reports are posted; events delivered per
//! second, summed over listeners.
//!
//! It starts its own server on 127.0.0.1:0 with a generated config dir in a temp dir (only
//! loopback traffic), prints throughput, latency percentiles and the server's peak RSS, and
//! exits non-zero when a check fails.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PROFILES: usize = 8;

#[derive(Debug)]
struct Args {
    rdeploy: PathBuf,
    nodes: usize,
    clients: usize,
    baseline: bool,
    keep: bool,
    console: bool,
    database_url: Option<String>,
    servers: usize,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        rdeploy: PathBuf::from("target/release/rdeploy"),
        nodes: 10_000,
        clients: 100,
        baseline: false,
        console: false,
        keep: false,
        database_url: None,
        servers: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rdeploy" => a.rdeploy = it.next().ok_or("--rdeploy BIN")?.into(),
            "--nodes" => a.nodes = it.next().ok_or("--nodes N")?.parse()?,
            "--clients" => a.clients = it.next().ok_or("--clients N")?.parse()?,
            "--baseline" => a.baseline = true,
            "--keep" => a.keep = true,
            "--console" => a.console = true,
            "--database-url" => a.database_url = Some(it.next().ok_or("--database-url URL")?),
            "--servers" => a.servers = it.next().ok_or("--servers N")?.parse()?,
            other => {
                return Err(format!(
                    "unknown argument {other}; see the doc comment of examples/storm.rs"
                )
                .into())
            }
        }
    }
    Ok(a)
}

/// 8 profiles `p0`..`p7`, each for one product name, with CMDBs large enough.
fn write_config(dir: &Path, nodes: usize) -> Res {
    let per = nodes / PROFILES + 100;
    let mut state = String::from("[");
    for p in 0..PROFILES {
        let quota = if p % 2 == 0 {
            "'*'".to_owned()
        } else {
            format!("{}", per)
        };
        state.push_str(&format!("('p{p}', {quota}),\n "));
        fs::write(
            dir.join(format!("p{p}.specs")),
            format!(
                "[('system', 'product', 'name', 'Model-{p}'),\n ('disk', '$disk', 'size', 'gt(10)'),\n ('network', '$eth', 'serial', '$mac')]\n"
            ),
        )?;
        let hi = per / 250 + 1;
        fs::write(
            dir.join(format!("p{p}.cmdb")),
            format!("generate({{'ip': '10.{p}.0-{hi}.1-250', 'gateway': '10.{p}.255.254'}})\n"),
        )?;
        fs::write(
            dir.join(format!("p{p}.configure")),
            "set_role(\"base\", \"1.0\", var.disk);\n",
        )?;
    }
    state.push(']');
    fs::write(dir.join("state"), state)?;
    Ok(())
}

fn inventory(i: usize) -> String {
    format!(
        r#"[["system", "product", "name", "Model-{}"], ["system", "product", "serial", "SN{i:06}"], ["disk", "sda", "size", "100"], ["network", "eth0", "serial", "52:54:{:02x}:{:02x}:{:02x}:{:02x}"]]"#,
        i % PROFILES,
        (i >> 24) & 0xff,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The server's CPU time so far (user + system), from `/proc/<pid>/stat`: less sensitive
/// to a busy machine than the wall time.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks: 100 per second on Linux.
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Every file parses; no entry used twice; quotas ≥ 0; every answered IP marked used.
fn verify(config: &Path, answered: &HashSet<String>) -> Res<Vec<String>> {
    let mut problems = Vec::new();
    let state = fs::read_to_string(config.join("state"))?;
    let state = rdeploy_cmdb::State::parse(&state).map_err(|e| format!("state: {e}"))?;
    for e in &state.entries {
        if let rdeploy_cmdb::Quota::Left(n) = e.quota {
            if n < 0 {
                problems.push(format!("quota of {} went negative: {n}", e.profile));
            }
        }
    }
    let mut used_ips = HashSet::new();
    let mut used_macs = HashSet::new();
    for p in 0..PROFILES {
        let text = fs::read_to_string(config.join(format!("p{p}.cmdb")))?;
        let cmdb = rdeploy_cmdb::Cmdb::parse(&text)
            .map_err(|e| format!("p{p}.cmdb: {e}"))?
            .ok_or("empty CMDB")?;
        for entry in &cmdb.entries {
            if entry.dict_get("used").is_none() {
                continue;
            }
            let ip = entry
                .dict_get("ip")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned();
            let mac = entry
                .dict_get("mac")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned();
            if !used_ips.insert(ip.clone()) {
                problems.push(format!("{ip} used twice"));
            }
            if !used_macs.insert(mac.clone()) {
                problems.push(format!("{mac} holds two entries"));
            }
        }
    }
    for ip in answered {
        if !used_ips.contains(ip) {
            problems.push(format!("{ip} was answered but is not marked used"));
        }
    }
    Ok(problems)
}

#[tokio::main]
async fn main() -> Res {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("config");
    let data = tmp.path().join("data");
    fs::create_dir_all(&config)?;
    write_config(&config, args.nodes)?;
    // The console's measure posts node events as an operator would: with the admin token.
    const ADMIN: &str = "storm-admin-token";
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for n in 0..args.servers.max(1) {
        let mut cmd = Command::new(&args.rdeploy);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--config-dir"])
            .arg(&config)
            .arg("--data-dir")
            .arg(if n == 0 {
                data.clone()
            } else {
                tmp.path().join(format!("data{n}"))
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if args.baseline {
            cmd.arg("--cgi-baseline");
        }
        if let Some(url) = &args.database_url {
            cmd.arg("--database-url").arg(url);
        }
        if args.console {
            let token = tmp.path().join("admin-token");
            fs::write(&token, ADMIN)?;
            cmd.arg("--admin-token-file").arg(&token);
        }
        let mut child = cmd.spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        bases.push(
            line.trim()
                .strip_prefix("rdeploy: listening on ")
                .ok_or_else(|| format!("unexpected first line {line:?}"))?
                .to_owned(),
        );
        children.push(child);
    }
    let pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
    let base = bases[0].clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..args.clients {
        let http = http.clone();
        let next = Arc::clone(&next);
        let url = format!("{}/upload", bases[k % bases.len()]);
        let n = args.nodes;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut ips = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .header("Accept", "application/json")
                    .body(inventory(i))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        lat.push(t.elapsed());
                        ips.push(body["var"]["ip"].as_str().unwrap_or("").to_owned());
                    }
                    Ok(r) => {
                        errors += 1;
                        if errors < 3 {
                            eprintln!("storm: upload {i}: {}", r.text().await.unwrap_or_default());
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors < 3 {
                            eprintln!("storm: upload {i}: {e}");
                        }
                    }
                }
            }
            (lat, ips, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut ips = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, i, e) = t.await?;
        lat.extend(l);
        ips.extend(i);
        errors += e;
    }
    let elapsed = started.elapsed();
    let rss = pids.iter().map(|p| peak_rss_kib(*p)).sum::<Option<u64>>();
    let cpu = pids.iter().map(|p| cpu_seconds(*p)).sum::<Option<f64>>();
    if args.console {
        console(&http, &base, ADMIN).await?;
    }
    let health: serde_json::Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await?
        .json()
        .await?;
    println!(
        "storm: writer commits: {}; server CPU time {}",
        health["config"]["commits"],
        cpu.map_or("?".to_owned(), |c| format!("{c:.2} s"))
    );
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    lat.sort();
    let answered: HashSet<String> = ips.iter().cloned().collect();
    // In PostgreSQL mode the database holds the files: check what `config pull` writes.
    let checked = match &args.database_url {
        None => config.clone(),
        Some(url) => {
            let pulled = tmp.path().join("pulled");
            let status = Command::new(&args.rdeploy)
                .args(["config", "pull"])
                .arg(&pulled)
                .args(["--database-url", url])
                .status()?;
            if !status.success() {
                return Err("rdeploy config pull failed".into());
            }
            pulled
        }
    };
    let mut problems = verify(&checked, &answered)?;
    if answered.len() != ips.len() {
        problems.push(format!(
            "{} answers shared an IP",
            ips.len() - answered.len()
        ));
    }
    println!(
        "storm{}{}: {} nodes, {} clients: {} allocated, {} errors in {:.2} s ({:.0}/s); latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; server peak RSS {} MiB (summed over servers)",
        if args.baseline { " (baseline: one request per lock, no cache)" } else { "" },
        match (&args.database_url, args.servers) {
            (None, _) => String::new(),
            (Some(_), n) => format!(" (PostgreSQL, {n} server{})", if n == 1 { "" } else { "s" }),
        },
        args.nodes,
        args.clients,
        ips.len(),
        errors,
        elapsed.as_secs_f64(),
        ips.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        rss.map_or("?".to_owned(), |k| (k / 1024).to_string()),
    );
    if args.keep {
        let kept = tmp.keep();
        println!("storm: files kept in {}", kept.display());
    }
    if problems.is_empty() && errors == 0 {
        println!(
            "storm: verified: no CMDB entry handed out twice, no quota negative, every file parses"
        );
        Ok(())
    } else {
        for p in problems.iter().take(20) {
            eprintln!("storm: {p}");
        }
        Err(format!("{} problems, {errors} errors", problems.len()).into())
    }
}

/// Times the console's pages and the event stream against the server the storm filled.
async fn console(http: &reqwest::Client, base: &str, admin: &str) -> Res {
    let list: serde_json::Value = http
        .get(format!("{base}/nodes?limit=2000"))
        .send()
        .await?
        .json()
        .await?;
    let ids: Vec<String> = list["nodes"]
        .as_array()
        .ok_or("no nodes")?
        .iter()
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect();
    let first = ids.first().ok_or("no node")?.clone();
    let pages = [
        "/".to_owned(),
        "/?page=50".to_owned(),
        "/?sort=hostname&desc=1".to_owned(),
        "/?sort=ip&page=99".to_owned(),
        "/?q=10.3.2.".to_owned(),
        "/?state=matched&profile=p3".to_owned(),
        "/?per=1000".to_owned(),
        format!("/ui/nodes/{first}"),
        "/ui/profiles".to_owned(),
        "/nodes?limit=100".to_owned(),
    ];
    println!("console: page | median ms | worst ms | bytes");
    for p in &pages {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let body = http.get(format!("{base}{p}")).send().await?.bytes().await?;
            times.push(t.elapsed());
            bytes = body.len();
        }
        times.sort();
        println!(
            "console: {p} | {:.1} | {:.1} | {bytes}",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }

    // 100 listeners, 2,000 changes.
    const LISTENERS: usize = 100;
    const CHANGES: usize = 2000;
    let mut listeners = Vec::new();
    for _ in 0..LISTENERS {
        let mut resp = http.get(format!("{base}/events")).send().await?;
        // The stream's first comment: it is open.
        let _ = resp.chunk().await?;
        listeners.push(tokio::spawn(async move {
            let mut seen = 0usize;
            let mut lagged = 0usize;
            let mut tail = String::new();
            while seen + lagged < CHANGES {
                match resp.chunk().await {
                    Ok(Some(c)) => {
                        tail.push_str(&String::from_utf8_lossy(&c));
                        while let Some(i) = tail.find("\n\n") {
                            let ev: String = tail.drain(..i + 2).collect();
                            if ev.contains("event: node") {
                                seen += 1;
                            } else if let Some(n) = ev
                                .lines()
                                .find_map(|l| l.strip_prefix("data: "))
                                .filter(|_| ev.contains("event: lagged"))
                            {
                                lagged += n.trim().parse::<usize>().unwrap_or(0);
                            }
                        }
                    }
                    _ => break,
                }
            }
            (seen, lagged)
        }));
    }
    let started = Instant::now();
    let mut posters = Vec::new();
    for c in 0..10 {
        let http = http.clone();
        let base = base.to_owned();
        let auth = format!("Bearer {admin}");
        let ids: Vec<String> = ids
            .iter()
            .skip(c)
            .step_by(10)
            .take(CHANGES / 10)
            .cloned()
            .collect();
        posters.push(tokio::spawn(async move {
            let mut refused = 0usize;
            for id in ids {
                let answer = http
                    .post(format!("{base}/nodes/{id}/events"))
                    .header("Authorization", &auth)
                    .body(
                        r#"{"step": "detect", "status": "started", "time": 0, "message": "bench"}"#,
                    )
                    .send()
                    .await;
                if !answer.is_ok_and(|a| a.status().is_success()) {
                    refused += 1;
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for p in posters {
        refused += p.await?;
    }
    if refused > 0 {
        return Err(format!("{refused} of {CHANGES} node events were not accepted").into());
    }
    let posted = started.elapsed();
    let mut seen = 0;
    let mut lagged = 0;
    for l in listeners {
        let (s, g) = l.await?;
        seen += s;
        lagged += g;
    }
    let all = started.elapsed();
    println!(
        "console: events: {CHANGES} changes posted in {:.2} s; {LISTENERS} listeners got {seen} events ({lagged} missed, told as lagged) in {:.2} s: {:.0} events/s delivered",
        posted.as_secs_f64(),
        all.as_secs_f64(),
        seen as f64 / all.as_secs_f64()
    );
    Ok(())
}
