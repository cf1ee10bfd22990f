//! `rdeploy serve` against `rdeploy match`: the same uploads through the server and through
//! the command line must give the same answers and leave the same files.
//!
//! Two sets of inputs:
//!
//! - every scenario recorded from eDeploy in `tests/fixtures/edeploy-diff/find_match.jsonl`
//!   (a config dir and a sequence of uploads and failure reports);
//! - the unusable config dirs of `tests/fixtures/unusable-config/` (a CMDB or a `state` that
//!   cannot be used), whose expected answer is written in each case's `expect.json`.
//!
//! Each upload is a new machine for the server: every step runs against a freshly started
//! `rdeploy serve` with an empty data dir (node records change answers: a node that holds an
//! install is not counted twice), over the same config dir as the steps before it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rdeploy_tests::{copy_dir, run_binary_env, workspace_path, Server};
use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value as Json;

/// Scenarios of `find_match.jsonl` that are not run through both paths, with the reason.
/// None today: every scenario is rdeploy against rdeploy, so even those where rdeploy
/// deviates from eDeploy on purpose (`DEVIATIONS` in `cmdb/tests/edeploy_diff.rs`) must give
/// the same answer both ways, and no recorded upload timed out. Keep this empty unless a
/// scenario truly cannot be compared, and say why next to it.
const NOT_COMPARED: &[(&str, &str)] = &[];

/// One step of a sequence.
#[derive(Debug, Clone, Copy)]
enum Upload<'a> {
    /// An inventory upload (the inventory's text).
    Inventory(&'a str),
    /// A failure report for a profile.
    Failure(&'a str),
}

/// How a refusal is classed. The command line's exit codes and the server's statuses must
/// fall in the same class.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// `rdeploy match` exit 1; HTTP 404 or 409 (no match, no more role, CMDB exhausted).
    NoMatch,
    /// `rdeploy match` exit 2; HTTP 503 `config_broken`.
    ConfigBroken,
    /// Anything else (`exit 3`, `HTTP 500 internal` ...): never equal across the two paths.
    Other(String),
}

/// What one path answered for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// `{"profile", "var"}`; `var` as JSON text, so key order counts.
    Matched {
        profile: String,
        var: String,
    },
    /// A failure report: whether one install was given back.
    Reported {
        returned: bool,
    },
    Refused(Refusal),
}

/// An answer and what was said with it (stderr, the error body), for the report.
#[derive(Debug, Clone)]
struct Said {
    answer: Answer,
    text: String,
}

impl Said {
    fn refused(class: Refusal, text: String) -> Said {
        Said {
            answer: Answer::Refused(class),
            text,
        }
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// `rdeploy match` with its log off: stderr holds only what the command says.
fn rdeploy_match(args: &[&str]) -> Result<rdeploy_tests::Output> {
    let mut all = vec!["match"];
    all.extend_from_slice(args);
    run_binary_env("rdeploy", &all, &[("RDEPLOY_LOG", "off")])
}

/// One step through `rdeploy match --config-dir DIR ...` (`scratch` holds the inventory).
fn through_cli(config: &Path, scratch: &Path, upload: Upload) -> Result<Said> {
    let dir = path_str(config)?;
    let out = match upload {
        Upload::Inventory(hw) => {
            let file = scratch.join("upload.hw");
            std::fs::write(&file, hw)?;
            rdeploy_match(&["--config-dir", dir, path_str(&file)?])?
        }
        Upload::Failure(profile) => rdeploy_match(&["--config-dir", dir, "--failure", profile])?,
    };
    let said = match (out.code, upload) {
        (Some(0), Upload::Inventory(_)) => {
            let v: Json = serde_json::from_str(&out.stdout)
                .with_context(|| format!("rdeploy match printed {:?}", out.stdout))?;
            Said {
                answer: matched(&v).with_context(|| format!("rdeploy match printed {v}"))?,
                text: out.stdout.trim().to_owned(),
            }
        }
        (Some(0), Upload::Failure(_)) => {
            let returned = if out.stderr.contains("gave one install back") {
                true
            } else if out.stderr.contains("unchanged") {
                false
            } else {
                bail!(
                    "rdeploy match --failure said {:?}: neither given back nor unchanged",
                    out.stderr
                );
            };
            Said {
                answer: Answer::Reported { returned },
                text: out.stderr.trim().to_owned(),
            }
        }
        (code, _) => {
            let class = match code {
                Some(1) => Refusal::NoMatch,
                Some(2) => Refusal::ConfigBroken,
                other => Refusal::Other(format!("exit {other:?}")),
            };
            // The contract: a one-line error on stderr.
            let lines = out.stderr.lines().count();
            let class = if lines == 1 {
                class
            } else {
                Refusal::Other(format!(
                    "{class:?} but {lines} lines on stderr instead of one"
                ))
            };
            Said::refused(class, out.stderr.trim().to_owned())
        }
    };
    Ok(said)
}

/// `{"profile": NAME, "var": {...}}` as an answer.
fn matched(v: &Json) -> Result<Answer> {
    let profile = v["profile"].as_str().context("no profile")?.to_owned();
    ensure!(v["var"].is_object(), "var is not an object");
    Ok(Answer::Matched {
        profile,
        var: v["var"].to_string(),
    })
}

/// A freshly started `rdeploy serve` over `config` with an empty data dir under `step_dir`
/// (its log goes to `step_dir/server.log`).
fn fresh_server(config: &Path, step_dir: &Path) -> Result<Server> {
    std::fs::create_dir_all(step_dir)?;
    Server::start(config, &step_dir.join("data"), &[])
}

/// One step through `POST /upload` as `curl -F file=@hw [-F failure=PROFILE]` sends it.
fn through_server(
    server: &Server,
    client: &reqwest::blocking::Client,
    upload: Upload,
) -> Result<Said> {
    let form = match upload {
        Upload::Inventory(hw) => Form::new().part(
            "file",
            Part::text(hw.to_owned())
                .file_name("hw.json")
                .mime_str("application/octet-stream")?,
        ),
        Upload::Failure(profile) => Form::new().text("failure", profile.to_owned()),
    };
    let resp = client
        .post(server.url("/upload"))
        .header("Accept", "application/json")
        .multipart(form)
        .send()
        .context("POST /upload")?;
    let status = resp.status().as_u16();
    let text = resp.text().context("POST /upload: body")?;
    let body: Json = serde_json::from_str(&text)
        .with_context(|| format!("POST /upload answered {status} with {text:?}"))?;
    let said = match (status, upload) {
        (200, Upload::Inventory(_)) => Said {
            answer: matched(&body).with_context(|| format!("POST /upload answered {body}"))?,
            text: serde_json::json!({"profile": body["profile"], "var": body["var"]}).to_string(),
        },
        (200, Upload::Failure(_)) => Said {
            answer: Answer::Reported {
                returned: body["quota_returned"]
                    .as_bool()
                    .with_context(|| format!("no quota_returned in {body}"))?,
            },
            text,
        },
        (404 | 409, _) => Said::refused(Refusal::NoMatch, text),
        (503, _) if body["error"] == "config_broken" => Said::refused(Refusal::ConfigBroken, text),
        (status, _) => Said::refused(
            Refusal::Other(format!("HTTP {status} {}", body["error"])),
            text,
        ),
    };
    Ok(said)
}

fn http_client() -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// The files of a config dir an operator sees (hidden lock and journal files left out).
fn visible_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type()?.is_file() {
            continue;
        }
        files.insert(name, std::fs::read(e.path())?);
    }
    Ok(files)
}

/// The first difference between two sets of files, if any.
fn files_differ(
    cli: &BTreeMap<String, Vec<u8>>,
    serve: &BTreeMap<String, Vec<u8>>,
) -> Option<String> {
    let show = |f: Option<&Vec<u8>>| match f {
        None => "(no file)".to_owned(),
        Some(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let mut s: String = text.chars().take(400).collect();
            if text.chars().count() > 400 {
                s.push_str("...");
            }
            format!("{s:?}")
        }
    };
    let names: std::collections::BTreeSet<&String> = cli.keys().chain(serve.keys()).collect();
    names.into_iter().find_map(|name| {
        let (a, b) = (cli.get(name), serve.get(name));
        (a != b).then(|| {
            format!(
                "{name} differs:\n      match: {}\n      serve: {}",
                show(a),
                show(b)
            )
        })
    })
}

/// Writes a scenario's config dir: `state`, `<profile>.specs`, `<profile>.cmdb`.
fn write_scenario(case: &Json, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("state"),
        case["state"].as_str().context("no state text")?,
    )?;
    for (profile, text) in case["specs"].as_object().context("no specs map")? {
        if let Some(t) = text.as_str() {
            std::fs::write(dir.join(format!("{profile}.specs")), t)?;
        }
    }
    for (profile, text) in case["cmdb"].as_object().context("no cmdb map")? {
        let t = text
            .as_str()
            .with_context(|| format!("{profile}.cmdb is not text"))?;
        std::fs::write(dir.join(format!("{profile}.cmdb")), t)?;
    }
    Ok(())
}

/// What one scenario gave.
#[derive(Debug, Default)]
struct ScenarioReport {
    steps: usize,
    identical: usize,
    /// Steps by what `rdeploy match` answered (`matched`, `no match` ...).
    kinds: BTreeMap<&'static str, usize>,
    problems: Vec<String>,
}

/// A step's kind for the summary.
fn kind(a: &Answer) -> &'static str {
    match a {
        Answer::Matched { .. } => "matched",
        Answer::Reported { .. } => "failure reports",
        Answer::Refused(Refusal::NoMatch) => "no match",
        Answer::Refused(Refusal::ConfigBroken) => "config broken",
        Answer::Refused(Refusal::Other(_)) => "other refusals",
    }
}

fn run_scenario(
    case: &Json,
    client: &reqwest::blocking::Client,
    db: Option<&str>,
) -> Result<ScenarioReport> {
    let id = case["id"].as_str().unwrap_or("?");
    let tmp = tempfile::tempdir()?;
    let (cli_dir, serve_dir) = (tmp.path().join("match"), tmp.path().join("serve"));
    write_scenario(case, &cli_dir)?;
    write_scenario(case, &serve_dir)?;
    let mut report = ScenarioReport::default();
    let mut files_diverged = false;
    let uploads = case["uploads"].as_array().context("no uploads")?;
    for (i, u) in uploads.iter().enumerate() {
        let upload = match (u["failure"].as_str(), u["hw"].as_str()) {
            (Some(profile), _) => Upload::Failure(profile),
            (None, Some(hw)) => Upload::Inventory(hw),
            (None, None) => bail!("{id} upload {i}: neither hw nor failure"),
        };
        report.steps += 1;
        let step = tmp.path().join(format!("step{i}"));
        let before = visible_files(&cli_dir)?;
        let cli = through_cli(&cli_dir, tmp.path(), upload)
            .with_context(|| format!("{id} step {i}: rdeploy match"))?;
        let serve = {
            let server = match db {
                None => fresh_server(&serve_dir, &step)?,
                Some(url) => {
                    std::fs::create_dir_all(&step)?;
                    Server::start(&serve_dir, &step.join("data"), &["--database-url", url])?
                }
            };
            through_server(&server, client, upload)
                .with_context(|| format!("{id} step {i}: rdeploy serve"))?
        };
        let (cli_files, serve_files) = match db {
            None => (visible_files(&cli_dir)?, visible_files(&serve_dir)?),
            Some(url) => {
                // Each upload a new machine, as with a fresh data dir: no install held.
                forget_holds(url)?;
                let pulled = step.join("pulled");
                pull(url, &pulled)?;
                (visible_files(&cli_dir)?, visible_files(&pulled)?)
            }
        };
        // PostgreSQL mode keeps only the mutable files: compare those.
        let cli_compared = match db {
            None => cli_files.clone(),
            Some(_) => cli_files
                .iter()
                .filter(|(name, _)| is_shared_name(name))
                .map(|(n, b)| (n.clone(), b.clone()))
                .collect(),
        };
        *report.kinds.entry(kind(&cli.answer)).or_default() += 1;
        let mut same = true;
        if cli.answer != serve.answer {
            same = false;
            report.problems.push(format!(
                "{id} step {i}: different answers\n    match: {:?}: {}\n    serve: {:?}: {}",
                cli.answer, cli.text, serve.answer, serve.text
            ));
        }
        if matches!(cli.answer, Answer::Refused(_)) && cli_files != before {
            same = false;
            report.problems.push(format!(
                "{id} step {i}: rdeploy match refused ({}) but changed files: {}",
                cli.text,
                files_differ(&before, &cli_files).unwrap_or_default()
            ));
        }
        if let Some(diff) = files_differ(&cli_compared, &serve_files) {
            same = false;
            // The first divergence says it all; later steps start from different files.
            if !files_diverged {
                report.problems.push(format!("{id} after step {i}: {diff}"));
            }
            files_diverged = true;
        }
        if same {
            report.identical += 1;
        }
    }
    Ok(report)
}

/// The files PostgreSQL mode keeps in the database (`rdeploy config pull` writes them).
fn is_shared_name(name: &str) -> bool {
    name == "state" || name.ends_with(".cmdb") || name.ends_with(".cmdb.orig")
}

/// `rdeploy config pull DIR --database-url URL`.
fn pull(url: &str, dir: &Path) -> Result<()> {
    let out = rdeploy_tests::run_binary_env(
        "rdeploy",
        &["config", "pull", path_str(dir)?, "--database-url", url],
        &[("RDEPLOY_LOG", "off")],
    )?;
    ensure!(out.code == Some(0), "rdeploy config pull: {}", out.stderr);
    Ok(())
}

/// Ends every install under way in the database (a new server on a fresh data dir holds
/// none in file mode).
fn forget_holds(url: &str) -> Result<()> {
    PG.get().context("no cluster")?.psql_on(
        url,
        "DELETE FROM config_files WHERE name LIKE '.rdeploy-holds-%'",
    )?;
    Ok(())
}

/// A new database for scenario `n` in the cluster, its URL.
fn scenario_database(n: usize) -> Result<String> {
    let pg = PG.get().context("no cluster")?;
    pg.psql(&format!("CREATE DATABASE s{n}"))?;
    let base = pg
        .url
        .strip_suffix("/rdeploy")
        .context("the cluster's URL does not end in /rdeploy")?;
    Ok(format!("{base}/s{n}"))
}

/// The cluster of the PostgreSQL-mode run.
static PG: std::sync::OnceLock<rdeploy_tests::Postgres> = std::sync::OnceLock::new();

/// The recorded scenarios, in file order.
fn scenarios() -> Result<Vec<Json>> {
    let path = workspace_path("tests/fixtures/edeploy-diff/find_match.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

/// Runs `work(item)` for every item on a few threads (each with its own HTTP client);
/// results come back in item order.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T, &reqwest::blocking::Client) -> R + Sync,
) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(2, 8)
        * 2;
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let client = http_client()?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return Ok(());
                        };
                        let r = work(item, &client);
                        results
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((i, r));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        }
        Ok(())
    })?;
    let mut results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

#[test]
fn serve_answers_every_recorded_scenario_like_match() -> Result<()> {
    compare_all(false)
}

/// The same in PostgreSQL mode: each scenario in a database of its own (the first server
/// imports the scenario's files), each step a new server on it; the files compared are the
/// database's, as `rdeploy config pull` writes them.
#[test]
fn serve_on_postgres_answers_every_recorded_scenario_like_match() -> Result<()> {
    let Some(db) = rdeploy_tests::Postgres::start()? else {
        println!("SKIPPED: PostgreSQL is not installed (apt-get install postgresql; scripts/apt-packages lists it)");
        return Ok(());
    };
    PG.set(db)
        .map_err(|_| anyhow::anyhow!("the cluster is already started"))?;
    compare_all(true)
}

fn compare_all(postgres: bool) -> Result<()> {
    let started = Instant::now();
    let all = scenarios()?;
    for (id, why) in NOT_COMPARED {
        ensure!(
            all.iter().any(|c| c["id"] == *id),
            "NOT_COMPARED lists {id} ({why}), which is not in find_match.jsonl"
        );
    }
    let compared: Vec<&Json> = all
        .iter()
        .filter(|c| !NOT_COMPARED.iter().any(|(id, _)| c["id"] == *id))
        .collect();
    let numbered: Vec<(usize, &Json)> = compared.iter().copied().enumerate().collect();
    let reports = parallel(&numbered, |(n, case), client| {
        let id = case["id"].as_str().unwrap_or("?").to_owned();
        let db = if postgres {
            match scenario_database(*n) {
                Ok(url) => Some(url),
                Err(e) => return Err((id, e)),
            }
        } else {
            None
        };
        run_scenario(case, client, db.as_deref()).map_err(|e| (id, e))
    })?;
    let (mut steps, mut identical, mut problems) = (0, 0, Vec::new());
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reports {
        match r {
            Ok(r) => {
                steps += r.steps;
                identical += r.identical;
                for (k, n) in r.kinds {
                    *kinds.entry(k).or_default() += n;
                }
                problems.extend(r.problems);
            }
            Err((id, e)) => problems.push(format!("{id}: could not run: {e:#}")),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "serve{} vs match: {} scenarios ({} not compared), {steps} steps ({}), {identical} identical, {} problems, {:.1}s",
        if postgres { " (PostgreSQL)" } else { "" },
        compared.len(),
        NOT_COMPARED.len(),
        kinds.join(", "),
        problems.len(),
        started.elapsed().as_secs_f64()
    );
    for (id, why) in NOT_COMPARED {
        println!("  not compared: {id}: {why}");
    }
    ensure!(
        steps > 800,
        "only {steps} steps: find_match.jsonl holds 878 uploads"
    );
    ensure!(
        problems.is_empty(),
        "{} problems over {steps} steps ({identical} identical):\n{}",
        problems.len(),
        problems.join("\n")
    );
    Ok(())
}

// --- unusable config dirs ----------------------------------------------------------------

/// A case of `tests/fixtures/unusable-config/` (see its README).
#[derive(Debug)]
struct UnusableCase {
    name: String,
    config: PathBuf,
    inventory: PathBuf,
    expect: Expect,
}

#[derive(Debug)]
enum Expect {
    /// Both refuse because of this file, which `/healthz` reports.
    Refused { file: String },
    /// Both answer this; `/healthz` reports `healthz_reports`, or is `ok` when `None`.
    Answered {
        profile: String,
        var: Json,
        healthz_reports: Option<String>,
    },
}

fn unusable_cases() -> Result<Vec<UnusableCase>> {
    let root = workspace_path("tests/fixtures/unusable-config");
    let mut cases = Vec::new();
    for e in std::fs::read_dir(&root).with_context(|| format!("cannot list {}", root.display()))? {
        let e = e?;
        if !e.file_type()?.is_dir() {
            continue;
        }
        let dir = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let expect_path = dir.join("expect.json");
        let v: Json = serde_json::from_str(
            &std::fs::read_to_string(&expect_path)
                .with_context(|| format!("cannot read {}", expect_path.display()))?,
        )
        .with_context(|| format!("{}: not JSON", expect_path.display()))?;
        let expect = match (&v["refused"], &v["answered"]) {
            (Json::String(file), Json::Null) => Expect::Refused { file: file.clone() },
            (Json::Null, Json::Object(a)) => Expect::Answered {
                profile: a
                    .get("profile")
                    .and_then(Json::as_str)
                    .with_context(|| format!("{}: answered.profile", expect_path.display()))?
                    .to_owned(),
                var: a.get("var").cloned().unwrap_or(Json::Null),
                healthz_reports: v["healthz_reports"].as_str().map(str::to_owned),
            },
            _ => bail!(
                "{}: give either \"refused\": FILE or \"answered\": {{\"profile\", \"var\"}}",
                expect_path.display()
            ),
        };
        let inventory = workspace_path(
            v["inventory"]
                .as_str()
                .with_context(|| format!("{}: no inventory", expect_path.display()))?,
        );
        cases.push(UnusableCase {
            name,
            config: dir.join("config"),
            inventory,
            expect,
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// Whether `text` names `file` as a word of its own (`vm.cmdb`, not `xvm.cmdbs`).
fn names_file(text: &str, file: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(file).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + file.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// `GET /healthz` judged against what the case expects; `None` when it is right.
fn healthz_problem(server: &Server, reports: Option<&str>, when: &str) -> Result<Option<String>> {
    let body = server.get_json("/healthz")?;
    let status = body["status"].as_str().unwrap_or("?");
    let text = body.to_string();
    Ok(match reports {
        Some(file) if status == "ok" || !names_file(&text, file) => Some(format!(
            "/healthz {when} must report {file} (status not \"ok\", the file named), said {text}"
        )),
        None if status != "ok" => Some(format!(
            "/healthz {when} must be \"ok\" (nothing is wrong), said {text}"
        )),
        _ => None,
    })
}

fn check_unusable(case: &UnusableCase, client: &reqwest::blocking::Client) -> Result<Vec<String>> {
    let tmp = tempfile::tempdir()?;
    let (cli_dir, serve_dir) = (tmp.path().join("match"), tmp.path().join("serve"));
    copy_dir(&case.config, &cli_dir)?;
    copy_dir(&case.config, &serve_dir)?;
    let hw = std::fs::read_to_string(&case.inventory)
        .with_context(|| format!("cannot read {}", case.inventory.display()))?;
    let upload = Upload::Inventory(&hw);
    let before = visible_files(&case.config)?;
    let mut problems = Vec::new();

    let cli = through_cli(&cli_dir, tmp.path(), upload)?;
    let server = fresh_server(&serve_dir, &tmp.path().join("step0"))?;
    let reports = match &case.expect {
        Expect::Refused { file } => Some(file.as_str()),
        Expect::Answered {
            healthz_reports, ..
        } => healthz_reports.as_deref(),
    };
    problems.extend(healthz_problem(&server, reports, "before the upload")?);
    let serve = through_server(&server, client, upload)?;
    problems.extend(healthz_problem(&server, reports, "after the upload")?);
    drop(server);
    let (cli_files, serve_files) = (visible_files(&cli_dir)?, visible_files(&serve_dir)?);

    if cli.answer != serve.answer {
        problems.push(format!(
            "different answers\n    match: {:?}: {}\n    serve: {:?}: {}",
            cli.answer, cli.text, serve.answer, serve.text
        ));
    }
    match &case.expect {
        Expect::Refused { file } => {
            if cli.answer != Answer::Refused(Refusal::ConfigBroken) || !names_file(&cli.text, file)
            {
                problems.push(format!(
                    "rdeploy match must exit 2 naming {file}, gave {:?}: {}",
                    cli.answer, cli.text
                ));
            }
            let message = serde_json::from_str::<Json>(&serve.text)
                .ok()
                .and_then(|b| b["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            if serve.answer != Answer::Refused(Refusal::ConfigBroken) || !names_file(&message, file)
            {
                problems.push(format!(
                    "rdeploy serve must answer 503 config_broken naming {file}, gave {:?}: {}",
                    serve.answer, serve.text
                ));
            }
            for (who, files) in [("match", &cli_files), ("serve", &serve_files)] {
                if let Some(diff) = files_differ(&before, files) {
                    problems.push(format!("{who} changed a file on a refusal: {diff}"));
                }
            }
        }
        Expect::Answered { profile, var, .. } => {
            for (who, said) in [("match", &cli), ("serve", &serve)] {
                let want = Answer::Matched {
                    profile: profile.clone(),
                    var: var.to_string(),
                };
                if said.answer != want {
                    problems.push(format!(
                        "rdeploy {who} must answer {profile} with {var}, gave {:?}: {}",
                        said.answer, said.text
                    ));
                }
            }
            if let Some(diff) = files_differ(&cli_files, &serve_files) {
                problems.push(format!("files afterwards: {diff}"));
            }
        }
    }
    Ok(problems)
}

#[test]
fn serve_and_match_agree_on_unusable_config_dirs() -> Result<()> {
    let cases = unusable_cases()?;
    ensure!(
        cases.len() >= 8,
        "only {} cases in tests/fixtures/unusable-config",
        cases.len()
    );
    let results = parallel(&cases, check_unusable)?;
    let mut failed = Vec::new();
    for (case, r) in cases.iter().zip(results) {
        match r {
            Ok(p) if p.is_empty() => {}
            Ok(p) => failed.push(format!("{}:\n  {}", case.name, p.join("\n  "))),
            Err(e) => failed.push(format!("{}: could not run: {e:#}", case.name)),
        }
    }
    println!(
        "unusable config dirs: {} cases, {} agree",
        cases.len(),
        cases.len() - failed.len()
    );
    ensure!(
        failed.is_empty(),
        "{} of {} cases wrong:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
    Ok(())
}
