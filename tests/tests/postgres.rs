//! PostgreSQL mode with a real PostgreSQL (`scripts/pg`, Debian's package): two `rdeploy
//! serve` sharing one database answer as one server would.
//!
//! - 2,000 uploads spread over both servers at once: no CMDB entry twice, the quota exact;
//! - the same with one server SIGKILLed during it, its uploads finishing on the other (as
//!   agents listing both servers do): every answered entry is in the database exactly once,
//!   given to the machine it was answered to.
//!
//! Skipped, saying so, only when PostgreSQL's binaries are absent (CI installs them).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rdeploy_tests::{run_binary, Postgres, Server};
use reqwest::blocking::multipart::{Form, Part};

const UPLOADS: usize = 2000;
/// The counted profile's quota: fewer than the uploads, so it runs out during the storm.
const QUOTA: usize = 1200;
const THREADS: usize = 8;
/// The whole storm must end within this (debug build, two shared cores).
const LIMIT: Duration = Duration::from_secs(240);

fn write_config(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("state"),
        format!("[('vm', {QUOTA}), ('any', '*')]\n"),
    )?;
    std::fs::write(
        dir.join("vm.specs"),
        "[('system', 'product', 'name', 'VM'),\n ('network', '$eth', 'serial', '$mac')]\n",
    )?;
    std::fs::write(dir.join("vm.cmdb"), "generate({'ip': '10.1.0-9.1-250'})\n")?;
    std::fs::write(dir.join("vm.configure"), "// vm\n")?;
    std::fs::write(
        dir.join("any.specs"),
        "[('system', 'product', 'name', '$name')]\n",
    )?;
    std::fs::write(dir.join("any.configure"), "// any\n")?;
    Ok(())
}

fn mac(i: usize) -> String {
    format!("52:54:00:00:{:02x}:{:02x}", i >> 8, i & 0xff)
}

fn inventory(i: usize) -> String {
    format!(
        "[['system', 'product', 'name', 'VM'], ['network', 'eth0', 'serial', '{}']]",
        mac(i)
    )
}

/// One upload's answer: the profile and the IP (none for `any`).
fn upload(client: &reqwest::blocking::Client, base: &str, i: usize) -> Result<(String, String)> {
    let form = Form::new().part(
        "file",
        Part::text(inventory(i))
            .file_name("hw.json")
            .mime_str("application/octet-stream")?,
    );
    let resp = client
        .post(format!("{base}/upload"))
        .header("Accept", "application/json")
        .multipart(form)
        .send()?;
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json()?;
    ensure!(status == 200, "upload {i}: HTTP {status}: {body}");
    let profile = body["profile"].as_str().context("no profile")?.to_owned();
    let ip = body["var"]["ip"].as_str().unwrap_or("").to_owned();
    Ok((profile, ip))
}

/// The database's config as `rdeploy config pull` writes it: the quota left and, for each
/// entry in use, its IP and MAC.
fn pulled(db: &Postgres, dir: &Path) -> Result<(i64, Vec<(String, String)>)> {
    let out = run_binary(
        "rdeploy",
        &[
            "config",
            "pull",
            dir.to_str().context("path")?,
            "--database-url",
            &db.url,
        ],
    )?;
    ensure!(out.code == Some(0), "config pull: {}", out.stderr);
    let state = std::fs::read_to_string(dir.join("state"))?;
    let left = state
        .split("('vm', ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no vm quota in {state:?}"))?;
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = line.split(&format!("'{key}': '")).nth(1)?;
        Some(rest.split('\'').next()?.to_owned())
    };
    let mut used = Vec::new();
    for line in std::fs::read_to_string(dir.join("vm.cmdb"))?.lines() {
        if line.contains("'used': 1") {
            used.push((
                field(line, "ip").context("entry without ip")?,
                field(line, "mac").context("entry without mac")?,
            ));
        }
    }
    Ok((left, used))
}

/// Runs the storm over two servers; with `kill_at`, server 0 is SIGKILLed once that many
/// uploads were answered and the rest (and any upload it left unanswered) go to server 1.
/// Returns each machine's answer.
fn storm(
    servers: &Mutex<Vec<Server>>,
    kill_at: Option<usize>,
) -> Result<HashMap<usize, (String, String)>> {
    let bases: Vec<String> = servers
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .map(|s| s.base.clone())
        .collect();
    let next = AtomicUsize::new(0);
    let answered = AtomicUsize::new(0);
    let killed = std::sync::atomic::AtomicBool::new(false);
    let answers = Mutex::new(HashMap::new());
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(60))
                        .build()?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= UPLOADS {
                            return Ok(());
                        }
                        ensure!(started.elapsed() < LIMIT, "the storm took over {LIMIT:?}");
                        let mut first = i % 2;
                        if killed.load(Ordering::Relaxed) {
                            first = 1;
                        }
                        let answer = match upload(&client, &bases[first], i) {
                            Ok(a) => a,
                            // The agent's failover: the other server, same machine.
                            Err(e) if first == 0 && kill_at.is_some() => {
                                let _ = e;
                                upload(&client, &bases[1], i)?
                            }
                            Err(e) => return Err(e),
                        };
                        answers
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .insert(i, answer);
                        let n = answered.fetch_add(1, Ordering::Relaxed) + 1;
                        if kill_at == Some(n) {
                            killed.store(true, Ordering::Relaxed);
                            if let Ok(mut s) = servers.lock() {
                                if let Some(server) = s.get_mut(0) {
                                    server.stop();
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        }
        Ok(())
    })?;
    println!(
        "{UPLOADS} uploads over two servers in {:.1}s{}",
        started.elapsed().as_secs_f64(),
        if kill_at.is_some() {
            " (one SIGKILLed)"
        } else {
            ""
        }
    );
    answers
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))
}

/// Every answered entry is in the database once, held by the machine it was answered to;
/// the quota went down by the machines that got `vm`, exactly.
fn verify(db: &Postgres, tmp: &Path, answers: &HashMap<usize, (String, String)>) -> Result<()> {
    ensure!(
        answers.len() == UPLOADS,
        "{} of {UPLOADS} answered",
        answers.len()
    );
    let (left, used) = pulled(db, &tmp.join("pulled"))?;
    let mut by_ip: BTreeMap<&str, &str> = BTreeMap::new();
    for (ip, mac) in &used {
        if by_ip.insert(ip, mac).is_some() {
            bail!("{ip} is in use twice");
        }
    }
    let mut by_mac: BTreeMap<&str, &str> = BTreeMap::new();
    for (ip, mac) in &used {
        if by_mac.insert(mac, ip).is_some() {
            bail!("{mac} holds two entries");
        }
    }
    let vm: Vec<(usize, &str)> = answers
        .iter()
        .filter(|(_, (p, _))| p == "vm")
        .map(|(i, (_, ip))| (*i, ip.as_str()))
        .collect();
    ensure!(
        vm.len() == QUOTA,
        "{} machines got vm, the quota was {QUOTA}",
        vm.len()
    );
    ensure!(left == 0, "the quota left is {left}, not 0");
    ensure!(
        used.len() == vm.len(),
        "{} entries in use for {} machines",
        used.len(),
        vm.len()
    );
    for (i, ip) in vm {
        let m = mac(i);
        ensure!(
            by_ip.get(ip) == Some(&m.as_str()),
            "machine {i} ({m}) was answered {ip}, which the database gives to {:?}",
            by_ip.get(ip)
        );
    }
    Ok(())
}

fn two_servers(db: &Postgres, tmp: &Path) -> Result<Vec<Server>> {
    let config = tmp.join("config");
    write_config(&config)?;
    let mut servers = Vec::new();
    for n in 0..2 {
        let dir = tmp.join(format!("server{n}"));
        std::fs::create_dir_all(&dir)?;
        servers.push(Server::start(
            &config,
            &dir.join("data"),
            &["--database-url", &db.url],
        )?);
    }
    Ok(servers)
}

fn postgres_or_skip() -> Result<Option<Postgres>> {
    let db = Postgres::start()?;
    if db.is_none() {
        println!("SKIPPED: PostgreSQL is not installed (apt-get install postgresql; scripts/apt-packages lists it)");
    }
    Ok(db)
}

#[test]
fn two_servers_on_one_database_give_no_entry_twice() -> Result<()> {
    let Some(db) = postgres_or_skip()? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let servers = Mutex::new(two_servers(&db, tmp.path())?);
    let answers = storm(&servers, None)?;
    verify(&db, tmp.path(), &answers)
}

#[test]
fn a_server_killed_during_the_storm_loses_no_answered_entry() -> Result<()> {
    let Some(db) = postgres_or_skip()? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let servers = Mutex::new(two_servers(&db, tmp.path())?);
    let answers = storm(&servers, Some(UPLOADS / 3))?;
    verify(&db, tmp.path(), &answers)?;
    // The survivor knows the machines the killed one matched (the database's holds): a
    // machine asking again gets its own entry back, uncounted.
    let survivor = servers
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .get(1)
        .map(|s| s.base.clone())
        .context("no survivor")?;
    let client = reqwest::blocking::Client::new();
    let (profile, ip) = upload(&client, &survivor, 0)?;
    ensure!(
        answers.get(&0) == Some(&(profile.clone(), ip.clone())),
        "machine 0 asked again got {profile} {ip}, first {:?}",
        answers.get(&0)
    );
    let (left, _) = pulled(&db, &tmp.path().join("again"))?;
    ensure!(left == 0, "asking again counted: {left} left");
    Ok(())
}

/// `rdeploy config pull` writes files `rdeploy check` accepts; `rdeploy config push` of an
/// edit that takes back an entry given out is refused, naming it, and changes nothing; a
/// pushed quota is what the running server counts from next.
#[test]
fn config_push_and_pull_round_trip() -> Result<()> {
    let Some(db) = postgres_or_skip()? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("config");
    write_config(&config)?;
    std::fs::create_dir_all(tmp.path().join("s"))?;
    let server = Server::start(
        &config,
        &tmp.path().join("s/data"),
        &["--database-url", &db.url],
    )?;
    let client = reqwest::blocking::Client::new();
    for i in 0..3 {
        upload(&client, &server.base, i)?;
    }
    let dir = tmp.path().join("edit");
    let (left, used) = pulled(&db, &dir)?;
    ensure!(
        left == (QUOTA - 3) as i64 && used.len() == 3,
        "pulled {left} {used:?}"
    );
    for f in ["vm.specs", "vm.configure", "any.specs", "any.configure"] {
        std::fs::copy(config.join(f), dir.join(f))?;
    }
    let d = dir.to_str().context("path")?;
    let check = run_binary("rdeploy", &["check", "--config-dir", d])?;
    ensure!(
        check.code == Some(0),
        "check of the pulled files: {}",
        check.stdout
    );

    // Entry 1 given back by hand: refused, named, nothing changed.
    let cmdb = std::fs::read_to_string(dir.join("vm.cmdb"))?;
    let edited: Vec<String> = cmdb
        .lines()
        .enumerate()
        .map(|(n, l)| {
            if n == 1 {
                let end = if l.ends_with(',') { "}," } else { "}" };
                format!(" {{'ip': '10.1.0.2'{end}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(dir.join("vm.cmdb"), edited.join("\n") + "\n")?;
    let push = run_binary("rdeploy", &["config", "push", d, "--database-url", &db.url])?;
    ensure!(
        push.code == Some(2) && push.stderr.contains("vm.cmdb entry 1 is given out"),
        "push taking back entry 1: {:?} {}",
        push.code,
        push.stderr
    );
    let (after, _) = pulled(&db, &tmp.path().join("unchanged"))?;
    ensure!(after == left, "a refused push changed the quota: {after}");

    // A new quota: accepted, and counted from by the running server.
    std::fs::write(dir.join("vm.cmdb"), cmdb)?;
    std::fs::write(dir.join("state"), "[('vm', 50), ('any', '*')]\n")?;
    let push = run_binary("rdeploy", &["config", "push", d, "--database-url", &db.url])?;
    ensure!(push.code == Some(0), "push: {}", push.stderr);
    upload(&client, &server.base, 3)?;
    let (left, used) = pulled(&db, &tmp.path().join("after"))?;
    ensure!(
        left == 49 && used.len() == 4,
        "after the push: {left} left, {} used",
        used.len()
    );
    Ok(())
}
