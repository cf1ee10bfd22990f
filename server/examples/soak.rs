//! The soak: a boot storm against `rdeploy serve` while the server is SIGKILLed and
//! restarted at random instants and attacked from beside (a ReDoS upload beside the normal
//! ones, an event flood, a slow-client flood, a junk flood), then checks from the files:
//! quota leaked, CMDB entries lost, entries handed out twice, every file read back by
//! rdeploy and by Python, and reports the latency of normal uploads during the attacks and
//! the server's peak RSS and descriptor count. `docs/reliability.md` has its results.
//!
//! ```sh
//! bash tools/soak/soak.sh                  # builds, then runs with the defaults below
//! target/release/examples/soak --rdeploy target/release/rdeploy --nodes 3000 --kills 6
//! ```
//!
//! Bounded: `--nodes` uploads by `--clients` clients, `--kills` kills, and `--max-secs`
//! for the whole storm (the attackers stop with it). Everything runs on 127.0.0.1 in a temp
//! dir (`--keep` keeps it). Exits non-zero when a check fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PROFILES: usize = 8;

#[derive(Debug, Clone)]
struct Args {
    rdeploy: PathBuf,
    nodes: usize,
    clients: usize,
    kills: usize,
    max_secs: u64,
    slow: usize,
    keep: bool,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        rdeploy: PathBuf::from("target/release/rdeploy"),
        nodes: 3000,
        clients: 32,
        kills: 6,
        max_secs: 240,
        slow: 300,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rdeploy" => a.rdeploy = val()?.into(),
            "--nodes" => a.nodes = val()?.parse()?,
            "--clients" => a.clients = val()?.parse()?,
            "--kills" => a.kills = val()?.parse()?,
            "--max-secs" => a.max_secs = val()?.parse()?,
            "--slow" => a.slow = val()?.parse()?,
            "--keep" => a.keep = true,
            other => return Err(format!("unknown argument {other}; see examples/soak.rs").into()),
        }
    }
    Ok(a)
}

/// A small deterministic random generator (xorshift), seeded per task.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `bench` first (a pattern that needs backtracking; only the ReDoS inventories have bench
/// lines), then 8 profiles `p0`..`p7` by product name, odd ones with a quota.
fn write_config(dir: &Path, nodes: usize) -> Res<BTreeMap<String, i64>> {
    let per = nodes / PROFILES + 100;
    let mut quotas = BTreeMap::new();
    let mut state = String::from("[('bench', '*'),\n ");
    fs::write(
        dir.join("bench.specs"),
        "[('bench', '$b', 'score', 'regexp(^(\\\\w+\\\\s?)*\\\\1$)')]\n",
    )?;
    fs::write(dir.join("bench.configure"), "// bench\n")?;
    for p in 0..PROFILES {
        let quota = if p % 2 == 0 {
            "'*'".to_owned()
        } else {
            quotas.insert(format!("p{p}"), per as i64);
            per.to_string()
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
    Ok(quotas)
}

fn mac(i: usize) -> String {
    format!(
        "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
        (i >> 24) & 0xff,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn inventory(i: usize) -> String {
    format!(
        r#"[["system", "product", "name", "Model-{}"], ["system", "product", "serial", "SN{i:06}"], ["disk", "sda", "size", "100"], ["network", "eth0", "serial", "{}"]]"#,
        i % PROFILES,
        mac(i)
    )
}

/// 420 KB of lines the bench pattern backtracks on.
fn redos_inventory() -> String {
    let mut lines = vec![r#"["system", "product", "serial", "EVIL"]"#.to_owned()];
    while lines.iter().map(String::len).sum::<usize>() < 420_000 {
        let i = lines.len();
        lines.push(format!(
            r#"["bench", "b{i}", "score", "aaaa aaaa aaaa aaaa aaaa aaaa aaaa!"]"#
        ));
    }
    format!("[{}]", lines.join(",\n"))
}

/// The running server: its process and URL, replaced at each restart.
struct Server {
    child: Mutex<Option<Child>>,
    base: RwLock<String>,
    pid: AtomicU64,
    config: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    log: PathBuf,
}

impl Server {
    fn start(&self) -> Res {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(&self.bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--config-dir"])
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let base = line
            .trim()
            .strip_prefix("rdeploy: listening on ")
            .ok_or_else(|| format!("unexpected first line {line:?}"))?
            .to_owned();
        self.pid.store(u64::from(child.id()), Ordering::SeqCst);
        if let Ok(mut b) = self.base.write() {
            *b = base;
        }
        if let Ok(mut c) = self.child.lock() {
            *c = Some(child);
        }
        Ok(())
    }

    fn kill(&self) {
        if let Ok(mut c) = self.child.lock() {
            if let Some(mut child) = c.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn base(&self) -> String {
        self.base.read().map(|b| b.clone()).unwrap_or_default()
    }
}

/// The peaks seen in `/proc` of the server's processes.
#[derive(Debug, Default)]
struct Peaks {
    rss_kib: AtomicU64,
    fds: AtomicU64,
}

fn proc_sample(pid: u64) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What the normal uploaders saw.
#[derive(Debug, Default)]
struct Storm {
    /// Latency of every successful upload request.
    latencies: Vec<Duration>,
    /// Node index → the IP its (last) answer gave.
    answers: HashMap<usize, String>,
    /// Node index → the profile.
    profiles: HashMap<usize, String>,
    retried: usize,
    failed: usize,
}

async fn normal_uploads(args: &Args, server: Arc<Server>, stop: Arc<AtomicBool>) -> Storm {
    let next = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (next, server, http, stop, n) = (
            Arc::clone(&next),
            Arc::clone(&server),
            http.clone(),
            Arc::clone(&stop),
            args.nodes,
        );
        tasks.push(tokio::spawn(async move {
            let mut s = Storm::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut tries = 0;
                loop {
                    tries += 1;
                    let t = Instant::now();
                    let resp = http
                        .post(format!("{}/upload", server.base()))
                        .header("Accept", "application/json")
                        .body(inventory(i))
                        .send()
                        .await;
                    let body = match resp {
                        Ok(r) if r.status().is_success() => {
                            r.json::<serde_json::Value>().await.ok()
                        }
                        _ => None,
                    };
                    if let Some(body) = body {
                        s.latencies.push(t.elapsed());
                        s.answers
                            .insert(i, body["var"]["ip"].as_str().unwrap_or("").to_owned());
                        s.profiles
                            .insert(i, body["profile"].as_str().unwrap_or("").to_owned());
                        if tries > 1 {
                            s.retried += 1;
                        }
                        break;
                    }
                    if tries >= 200 || stop.load(Ordering::Relaxed) {
                        s.failed += 1;
                        break;
                    }
                    // The server is being restarted: the agent's way, wait and send again.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            s
        }));
    }
    let mut all = Storm::default();
    for t in tasks {
        if let Ok(s) = t.await {
            all.latencies.extend(s.latencies);
            all.answers.extend(s.answers);
            all.profiles.extend(s.profiles);
            all.retried += s.retried;
            all.failed += s.failed;
        }
    }
    all
}

/// Counts of what the attackers got back, by kind.
#[derive(Debug, Default)]
struct Attacks {
    redos_refused: AtomicUsize,
    redos_other: AtomicUsize,
    events: AtomicUsize,
    slow_connections: AtomicUsize,
    junk: AtomicUsize,
    junk_non_json_errors: AtomicUsize,
}

async fn redos(server: Arc<Server>, stop: Arc<AtomicBool>, out: Arc<Attacks>) {
    let body = redos_inventory();
    let http = reqwest::Client::new();
    while !stop.load(Ordering::Relaxed) {
        let resp = http
            .post(format!("{}/upload", server.base()))
            .header("Accept", "application/json")
            .body(body.clone())
            .send()
            .await;
        match resp {
            Ok(r) if r.status().as_u16() == 422 => {
                out.redos_refused.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                out.redos_other.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn event_flood(server: Arc<Server>, stop: Arc<AtomicBool>, out: Arc<Attacks>) {
    let http = reqwest::Client::new();
    let message = "x".repeat(1_000_000);
    // The node of the first normal upload (it exists once that upload is answered).
    let id = format!("Model0-SN000000-{}", mac(0).replace(':', "-"));
    let mut i = 0i64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let ev = serde_json::json!({"step": "detect", "status": "started", "time": 1_700_000_000 + i, "message": message});
        match http
            .post(format!("{}/nodes/{id}/events", server.base()))
            .json(&ev)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                out.events.fetch_add(1, Ordering::Relaxed);
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One slow client: a request sent a byte every two seconds, again when cut off.
async fn slow_client(server: Arc<Server>, stop: Arc<AtomicBool>, out: Arc<Attacks>, k: usize) {
    let head: &[u8] = if k % 2 == 0 {
        b"POST /upload HTTP/1.1\r\nHost: soak\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
    } else {
        b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 100000\r\n\r\n[[\"a\", \"b\", \"c\", \"ddddddddddddddddddddddddddddddddddddddd"
    };
    while !stop.load(Ordering::Relaxed) {
        let addr = server.base().trim_start_matches("http://").to_owned();
        let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        out.slow_connections.fetch_add(1, Ordering::Relaxed);
        let start = if k % 2 == 0 { 0 } else { head.len() - 30 };
        if k % 2 == 1 && s.write_all(&head[..start]).await.is_err() {
            continue;
        }
        for b in &head[start..] {
            if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

async fn junk(server: Arc<Server>, stop: Arc<AtomicBool>, out: Arc<Attacks>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let http = reqwest::Client::new();
    let paths = [
        "/upload",
        "/nodes/x/events",
        "/nodes/../../etc/passwd",
        "/nextboot",
        "/systems",
        "/boot/zz.ipxe",
        "/roles/a/b/blob/zz",
        "/configurations/x/deploy",
        "/pxe/setBootImage?node=",
        "/nodes/%ff",
    ];
    while !stop.load(Ordering::Relaxed) {
        let n = rng.below(4);
        let garbage: Vec<u8> = (0..rng.below(2000)).map(|_| rng.next() as u8).collect();
        if n == 0 {
            // Not HTTP at all.
            let addr = server.base().trim_start_matches("http://").to_owned();
            if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
                let _ = s.write_all(&garbage).await;
                let mut buf = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
            }
        } else {
            let path = paths[rng.below(paths.len() as u64) as usize];
            let req = match n {
                1 => http.post(format!("{}{path}", server.base())).body(garbage),
                2 => http.put(format!("{}{path}", server.base())).body(garbage),
                _ => http.delete(format!("{}{path}", server.base())),
            };
            if let Ok(r) = req.send().await {
                let status = r.status();
                let json = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                if (status.is_client_error() || status.is_server_error()) && !json {
                    out.junk_non_json_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out.junk.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every file parses with rdeploy; quotas and CMDB entries agree with the answers.
struct Verdict {
    problems: Vec<String>,
    quota_leaked: i64,
    entries_lost: usize,
    duplicates: usize,
    files: Vec<PathBuf>,
}

fn verify(
    config: &Path,
    data: &Path,
    quotas: &BTreeMap<String, i64>,
    storm: &Storm,
) -> Res<Verdict> {
    let mut v = Verdict {
        problems: Vec::new(),
        quota_leaked: 0,
        entries_lost: 0,
        duplicates: 0,
        files: Vec::new(),
    };
    let state_text = fs::read_to_string(config.join("state"))?;
    let state = rdeploy_cmdb::State::parse(&state_text).map_err(|e| format!("state: {e}"))?;
    v.files.push(config.join("state"));
    let mut allocated: HashMap<String, i64> = HashMap::new();
    for p in storm.profiles.values() {
        *allocated.entry(p.clone()).or_default() += 1;
    }
    for e in &state.entries {
        if let rdeploy_cmdb::Quota::Left(n) = e.quota {
            if n < 0 {
                v.problems
                    .push(format!("quota of {} went negative: {n}", e.profile));
            }
            let start = quotas.get(&e.profile).copied().unwrap_or(n);
            let used = start - n;
            let machines = allocated.get(&e.profile).copied().unwrap_or(0);
            if used != machines {
                v.problems.push(format!(
                    "{}: {used} installs counted for {machines} machines",
                    e.profile
                ));
            }
            v.quota_leaked += used - machines;
        }
    }
    let mut used_by_ip: HashMap<String, String> = HashMap::new();
    for p in 0..PROFILES {
        let path = config.join(format!("p{p}.cmdb"));
        v.files.push(path.clone());
        let cmdb = rdeploy_cmdb::Cmdb::parse(&fs::read_to_string(&path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .ok_or("empty CMDB")?;
        let mut macs = HashSet::new();
        for entry in &cmdb.entries {
            if entry.dict_get("used").is_none() {
                continue;
            }
            let ip = entry
                .dict_get("ip")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_owned();
            let mac = entry
                .dict_get("mac")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_owned();
            if !macs.insert(mac.clone()) {
                v.duplicates += 1;
                v.problems
                    .push(format!("p{p}.cmdb: {mac} holds two entries"));
            }
            used_by_ip.insert(ip, mac);
        }
    }
    let mut answered_ips = HashMap::new();
    for (i, ip) in &storm.answers {
        if let Some(other) = answered_ips.insert(ip.clone(), *i) {
            if other != *i {
                v.duplicates += 1;
                v.problems
                    .push(format!("{ip} answered to nodes {other} and {i}"));
            }
        }
        match used_by_ip.get(ip) {
            Some(m) if *m == mac(*i) => {}
            Some(m) => {
                v.duplicates += 1;
                v.problems
                    .push(format!("{ip} answered to {} but marked for {m}", mac(*i)));
            }
            None => {
                v.entries_lost += 1;
                v.problems
                    .push(format!("{ip} answered to {} but not marked used", mac(*i)));
            }
        }
    }
    for dir in [data.join("hw"), data.join("nodes")] {
        for e in fs::read_dir(&dir)?.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".hw") {
                let text = fs::read_to_string(&path)?;
                if let Err(e) = rdeploy_specs::Inventory::parse(&text) {
                    v.problems.push(format!("{}: {e}", path.display()));
                }
                v.files.push(path);
            } else if name.ends_with(".json") {
                let text = fs::read_to_string(&path)?;
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                    v.problems.push(format!("{}: {e}", path.display()));
                }
            } else if name.ends_with(".rdeploy-tmp") {
                v.problems.push(format!("{}: left over", path.display()));
            }
        }
    }
    Ok(v)
}

/// Python's `ast.literal_eval` on every file (eDeploy's reader): how many it cannot read.
fn python_check(files: &[PathBuf]) -> Res<usize> {
    let list = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(
            "import ast, sys\nbad = 0\nfor f in sys.stdin.read().split('\\n'):\n    try:\n        ast.literal_eval(open(f, encoding='utf-8').read())\n    except Exception as e:\n        bad += 1\n        print(f, type(e).__name__, e, file=sys.stderr)\nprint(bad)\n",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(list.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

#[tokio::main]
async fn main() -> Res {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("config");
    let data = tmp.path().join("data");
    fs::create_dir_all(&config)?;
    let quotas = write_config(&config, args.nodes)?;
    let server = Arc::new(Server {
        child: Mutex::new(None),
        base: RwLock::new(String::new()),
        pid: AtomicU64::new(0),
        config: config.clone(),
        data: data.clone(),
        bin: args.rdeploy.clone(),
        log: tmp.path().join("server.log"),
    });
    server.start()?;
    let stop = Arc::new(AtomicBool::new(false));
    let attacks = Arc::new(Attacks::default());
    let peaks = Arc::new(Peaks::default());

    // The sampler: the server's peak RSS and descriptors, whichever process it is now.
    let sampler = {
        let (server, stop, peaks) = (Arc::clone(&server), Arc::clone(&stop), Arc::clone(&peaks));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some((rss, fds)) = proc_sample(server.pid.load(Ordering::SeqCst)) {
                    peaks.rss_kib.fetch_max(rss, Ordering::Relaxed);
                    peaks.fds.fetch_max(fds, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut attackers = Vec::new();
    attackers.push(tokio::spawn(redos(
        Arc::clone(&server),
        Arc::clone(&stop),
        Arc::clone(&attacks),
    )));
    attackers.push(tokio::spawn(event_flood(
        Arc::clone(&server),
        Arc::clone(&stop),
        Arc::clone(&attacks),
    )));
    attackers.push(tokio::spawn(junk(
        Arc::clone(&server),
        Arc::clone(&stop),
        Arc::clone(&attacks),
    )));
    for k in 0..args.slow {
        attackers.push(tokio::spawn(slow_client(
            Arc::clone(&server),
            Arc::clone(&stop),
            Arc::clone(&attacks),
            k,
        )));
    }
    // The killer: SIGKILL at random instants, restart at once.
    let storm_done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (server, done, kills) = (Arc::clone(&server), Arc::clone(&storm_done), args.kills);
        tokio::spawn(async move {
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            let mut killed = 0;
            while killed < kills && !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1500 + rng.below(3000))).await;
                if done.load(Ordering::Relaxed) {
                    break;
                }
                server.kill();
                killed += 1;
                if let Err(e) = server.start() {
                    eprintln!("soak: restart failed: {e}");
                }
            }
            killed
        })
    };
    let started = Instant::now();
    let storm = tokio::time::timeout(
        Duration::from_secs(args.max_secs),
        normal_uploads(&args, Arc::clone(&server), Arc::clone(&stop)),
    )
    .await
    .unwrap_or_default();
    let elapsed = started.elapsed();
    storm_done.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let kills = killer.await.unwrap_or(0);
    for a in attackers {
        let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
    }
    let _ = sampler.await;
    // One more restart, as after a crash, then stop it: what is on disk is what counts.
    server.kill();
    server.start()?;
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", server.base()))
        .await?
        .json()
        .await?;
    server.kill();

    let mut lat = storm.latencies.clone();
    lat.sort();
    let verdict = verify(&config, &data, &quotas, &storm)?;
    let python_bad = python_check(&verdict.files)?;
    println!(
        "soak: {} nodes by {} clients in {:.1} s, {kills} SIGKILLs + restarts: {} allocated ({} after a retry), {} gave up",
        args.nodes,
        args.clients,
        elapsed.as_secs_f64(),
        storm.answers.len(),
        storm.retried,
        storm.failed,
    );
    println!(
        "soak: normal uploads during the attacks: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
        lat.len()
    );
    println!(
        "soak: attacks: ReDoS uploads {} refused (422) / {} other, {} events of 1 MB accepted, {} slow connections opened ({} at a time), {} junk requests ({} error answers not JSON)",
        attacks.redos_refused.load(Ordering::Relaxed),
        attacks.redos_other.load(Ordering::Relaxed),
        attacks.events.load(Ordering::Relaxed),
        attacks.slow_connections.load(Ordering::Relaxed),
        args.slow,
        attacks.junk.load(Ordering::Relaxed),
        attacks.junk_non_json_errors.load(Ordering::Relaxed),
    );
    println!(
        "soak: server peak RSS {} MiB, peak descriptors {}",
        peaks.rss_kib.load(Ordering::Relaxed) / 1024,
        peaks.fds.load(Ordering::Relaxed)
    );
    println!(
        "soak: checks: quota leaked {}, entries lost {}, duplicates {}, files read back: rdeploy {} problems, Python {} of {} unreadable; /healthz after restart: {}",
        verdict.quota_leaked,
        verdict.entries_lost,
        verdict.duplicates,
        verdict.problems.len(),
        python_bad,
        verdict.files.len(),
        health["status"],
    );
    if args.keep {
        let kept = tmp.keep();
        println!("soak: files kept in {}", kept.display());
    }
    let ok = verdict.problems.is_empty()
        && python_bad == 0
        && storm.failed == 0
        && attacks.redos_other.load(Ordering::Relaxed) == 0;
    if ok {
        println!("soak: verified");
        Ok(())
    } else {
        for p in verdict.problems.iter().take(20) {
            eprintln!("soak: {p}");
        }
        Err(format!(
            "{} problems, {python_bad} files Python cannot read, {} uploads gave up",
            verdict.problems.len(),
            storm.failed
        )
        .into())
    }
}
