//! The core's side of PXE Manager's test system: which system calls, which run it gets,
//! whose result an upload is, and the operator's `synctestnames`, `nexttest`, `dpytest`.
//!
//! A "system" is what PXE Manager called one: a registered system (`addsystem`) or a node.
//! A machine may be both (a registered system whose MAC later sent an inventory): it is
//! known by every name sharing one of its MACs, and a test queued under any of them goes to
//! it. Callers are found by MAC (`/nexttest/<mac>/`) or by address (`/nexttest/`, through
//! [`Core::caller`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use super::super::error::ApiError;
use super::super::identity::normalize_mac;
use super::super::record::Node;
use super::super::testing::parse::parse;
use super::super::testing::run::{RunId, RunState, TestRun};
use super::super::testing::script::{valid_name, ScriptContext, ScriptError, Scripts, WAIT};
use super::super::testing::store::{FileStore, TestName, TestRuns};
use super::super::testing::TestsConfig;
use super::Core;
use crate::wire::{TestNameInfo, TestNameList, TestRunList, TestRunSummary};

/// The test system's state in the core.
#[derive(Debug)]
pub struct Tests {
    scripts: Scripts,
    runs: TestRuns<FileStore>,
    /// One upload at a time: the check, the raw file and the record change of an upload
    /// happen together.
    uploads: tokio::sync::Mutex<()>,
}

impl Tests {
    /// Creates the tests dir (with a `wait.test`) if needed and loads the runs of the data dir.
    pub fn open(
        config: &TestsConfig,
        data_dir: &Path,
        disk: super::super::disk::Disk,
    ) -> anyhow::Result<Tests> {
        use anyhow::Context as _;
        let scripts = Scripts::new(config.dir.clone());
        scripts
            .create()
            .with_context(|| format!("cannot create the tests dir {}", config.dir.display()))?;
        let store = FileStore::open(data_dir, disk)
            .with_context(|| format!("cannot create {}", data_dir.join("testruns").display()))?;
        let runs = TestRuns::open(store, config.timeout).context("cannot load the test runs")?;
        Ok(Tests {
            scripts,
            runs,
            uploads: tokio::sync::Mutex::new(()),
        })
    }
}

/// Who asks for a test.
#[derive(Debug, Clone)]
pub enum Caller {
    /// `GET /nexttest/`: the address the request came from.
    Address(IpAddr),
    /// `GET /nexttest/<mac>/`.
    Mac(String),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Address(ip) => write!(f, "address {ip}"),
            Caller::Mac(mac) => write!(f, "mac {mac}"),
        }
    }
}

/// The script a system gets, and the run it belongs to (none for `wait.test`).
#[derive(Debug)]
pub struct NextTest {
    pub script: String,
    pub run: Option<TestRun>,
}

/// A machine as the test system sees it.
#[derive(Debug, Clone)]
struct Machine {
    /// Its name: the registered system's, else the node's id.
    name: String,
    /// Every name it is known by.
    names: Vec<String>,
    macs: Vec<String>,
    node: Option<Node>,
}

/// Times a next-test request tries again when another request took its run meanwhile.
const TAKE_TRIES: usize = 8;

fn store_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

fn runs_error(e: super::super::testing::store::RunsError) -> ApiError {
    use super::super::testing::store::RunsError;
    match e {
        RunsError::NoSuchRun { id } => {
            ApiError::not_found("no_such_run", format!("no test run {id}"))
        }
        RunsError::Refused(r) => ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "run_not_running",
            r.to_string(),
        ),
        RunsError::Store(e) => ApiError::internal(e),
    }
}

/// The operator's view of a run.
pub fn summary(r: &TestRun) -> TestRunSummary {
    TestRunSummary {
        id: r.id,
        system: r.system.clone(),
        test: r.test.clone(),
        state: r.state.to_string(),
        queued_at: r.queued_at.clone(),
        updated_at: r.updated_at().to_owned(),
        version: r.version.clone(),
        errors: r.counts.errors,
        warnings: r.counts.warnings,
        infos: r.counts.infos,
        exit: r.exit,
        error: r.error.clone(),
        problems: r
            .lines
            .iter()
            .filter(|l| l.kind == "E" || l.kind == "W")
            .take(SUMMARY_PROBLEMS)
            .map(|l| format!("{}: {}", l.kind, l.text))
            .collect(),
    }
}

/// Error and warning lines a run's summary carries.
pub const SUMMARY_PROBLEMS: usize = 10;

impl Core {
    // ---- machines ----------------------------------------------------------------------

    /// The machine named `name` (a registered system or a node id).
    async fn machine_named(&self, name: &str) -> Option<Machine> {
        let systems = self.systems.all().await;
        if let Some(s) = systems.get(name) {
            return Some(self.machine(name, s.macs.clone(), &systems));
        }
        let node = self.nodes.get(name)?;
        Some(self.machine(name, node.identity.macs.clone(), &systems))
    }

    /// The machine holding `mac`: its registered system's name first, else its node's id.
    async fn machine_with_mac(&self, mac: &str) -> Option<Machine> {
        let systems = self.systems.all().await;
        if let Some((name, s)) = systems
            .iter()
            .find(|(_, s)| s.macs.iter().any(|m| m == mac))
        {
            return Some(self.machine(name, s.macs.clone(), &systems));
        }
        let node = self.nodes.by_mac(mac)?;
        Some(self.machine(&node.id, node.identity.macs.clone(), &systems))
    }

    /// The machine calling from `ip`: the node or registered system known by that address
    /// (`Core::caller`).
    async fn machine_at(&self, ip: IpAddr) -> Result<Machine, ApiError> {
        let found = self.caller(ip).await.map_err(|_| {
            ApiError::not_found(
                "no_such_system",
                format!(
                    "no system is known by the address {ip}: ask /nexttest/<mac>/, give the node that address in its CMDB entry, or register the system with it (pxemngr addsystem NAME {ip})"
                ),
            )
        })?;
        let (id, macs) = match &found {
            super::Machine::Node(n) => (n.id.clone(), n.identity.macs.clone()),
            super::Machine::System { name, system } => (name.clone(), system.macs.clone()),
        };
        let systems = self.systems.all().await;
        let mut m = self.machine(&id, macs, &systems);
        // A registered system sharing its MAC is the name operators gave it.
        if let Some((name, _)) = systems
            .iter()
            .find(|(_, s)| s.macs.iter().any(|x| m.macs.contains(x)))
        {
            m.name.clone_from(name);
        }
        Ok(m)
    }

    fn machine(
        &self,
        name: &str,
        macs: Vec<String>,
        systems: &BTreeMap<String, super::super::systems::System>,
    ) -> Machine {
        let macs: Vec<String> = macs.iter().filter_map(|m| normalize_mac(m)).collect();
        let shares = |other: &[String]| {
            other
                .iter()
                .filter_map(|m| normalize_mac(m))
                .any(|m| macs.contains(&m))
        };
        let mut names = vec![name.to_owned()];
        for (n, s) in systems {
            if shares(&s.macs) && !names.contains(n) {
                names.push(n.clone());
            }
        }
        let nodes: Vec<Node> = self.nodes.named_or_sharing(name, &macs);
        for n in &nodes {
            if !names.contains(&n.id) {
                names.push(n.id.clone());
            }
        }
        let node = nodes
            .into_iter()
            .max_by(|a, b| a.updated_at.cmp(&b.updated_at));
        Machine {
            name: name.to_owned(),
            names,
            macs,
            node,
        }
    }

    fn context(&self, m: &Machine, caller: &Caller) -> ScriptContext {
        let var = m
            .node
            .as_ref()
            .and_then(|n| n.var.clone())
            .unwrap_or_default();
        let mut addresses = Vec::new();
        if let Some(ip) = var.get("ip").and_then(|v| v.as_str()) {
            addresses.push(ip.to_owned());
        }
        if let Caller::Address(ip) = caller {
            let ip = ip.to_string();
            if !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
        ScriptContext {
            system: m.name.clone(),
            names: m.names.clone(),
            macs: m.macs.clone(),
            addresses,
            profile: m.node.as_ref().and_then(|n| n.profile.clone()),
            var,
            server: self.boot.config.public_url.clone(),
            test: None,
        }
    }

    // ---- the system's calls ------------------------------------------------------------

    /// `GET /nexttest/`: the oldest test queued for the caller, rendered, and now `running`;
    /// `wait.test` when nothing is queued. A template that does not render puts its run in
    /// `error` (with the file, line and expression) and the caller gets `wait.test`.
    pub async fn next_test(&self, caller: Caller) -> Result<NextTest, ApiError> {
        let now = SystemTime::now();
        self.tests.runs.sweep(now).await.map_err(store_error)?;
        let machine = match &caller {
            Caller::Address(ip) => self.machine_at(*ip).await?,
            Caller::Mac(mac) => self.machine_with_mac(mac).await.ok_or_else(|| {
                ApiError::not_found(
                    "no_such_system",
                    format!("no system has the MAC {mac} (pxemngr addsystem NAME {mac}, or install it with rdeploy)"),
                )
            })?,
        };
        let base = self.context(&machine, &caller);
        let to = caller.to_string();
        for _ in 0..TAKE_TRIES {
            let names = machine.names.clone();
            let queued = self
                .tests
                .runs
                .select(|r| r.state == RunState::Queued && names.contains(&r.system))
                .await;
            let Some(run) = queued.into_iter().next() else {
                break;
            };
            let mut ctx = base.clone();
            ctx.test = Some((run.test.clone(), run.id));
            let scripts = self.tests.scripts.clone();
            let test = run.test.clone();
            let rendered = tokio::task::spawn_blocking(move || scripts.render(&test, &ctx))
                .await
                .map_err(ApiError::internal)?;
            let to = to.clone();
            let result = match &rendered {
                Ok(_) => self.tests.runs.change(run.id, |r| r.sent(&to, now)).await,
                Err(e) => {
                    let message = e.to_string();
                    self.tests
                        .runs
                        .change(run.id, |r| r.render_failed(&to, &message, now))
                        .await
                }
            };
            match (result, rendered) {
                (Ok(run), Ok(script)) => {
                    tracing::info!(run = run.id, system = %machine.name, test = %run.test, %to, "test sent");
                    return Ok(NextTest {
                        script,
                        run: Some(run),
                    });
                }
                (Ok(run), Err(e)) => {
                    tracing::warn!(run = run.id, system = %machine.name, error = %e, "test template did not render: sent wait.test");
                    break;
                }
                // Another request of the same system took this run meanwhile: next one.
                (Err(super::super::testing::store::RunsError::Refused(_)), _) => continue,
                (Err(e), _) => return Err(runs_error(e)),
            }
        }
        let scripts = self.tests.scripts.clone();
        let script = tokio::task::spawn_blocking(move || scripts.render_wait(&base))
            .await
            .map_err(ApiError::internal)?;
        Ok(NextTest { script, run: None })
    }

    /// `POST /upload/<id>/` (or `/upload/`: the caller's oldest running test): stores the
    /// raw output, parses it, and the run is `done`. An upload for a run of another system
    /// (when the caller's address names one) is refused, so results never mix.
    pub async fn test_result(
        &self,
        id: Option<RunId>,
        from: IpAddr,
        output: Vec<u8>,
        exit: Option<i32>,
    ) -> Result<TestRun, ApiError> {
        let now = SystemTime::now();
        let _one = self.tests.uploads.lock().await;
        self.tests.runs.sweep(now).await.map_err(store_error)?;
        let caller = self.machine_at(from).await;
        let run = match id {
            Some(id) => {
                let run = self.tests.runs.get(id).await.ok_or_else(|| {
                    ApiError::not_found("no_such_run", format!("no test run {id}"))
                })?;
                if let Ok(m) = &caller {
                    if !m.names.contains(&run.system) {
                        return Err(ApiError::new(
                            axum::http::StatusCode::CONFLICT,
                            "wrong_system",
                            format!(
                                "test run {id} was queued for '{}', and this upload comes from '{}' ({from}): nothing stored",
                                run.system, m.name
                            ),
                        ));
                    }
                }
                run
            }
            None => {
                let m = caller.map_err(|_| {
                    ApiError::not_found(
                        "no_such_system",
                        format!("no system is known by the address {from}: upload to /upload/<testid>/ (the template's {{{{ test.id }}}})"),
                    )
                })?;
                let mine = self
                    .tests
                    .runs
                    .select(|r| m.names.contains(&r.system))
                    .await;
                let running = mine.iter().find(|r| r.state == RunState::Running);
                let lost = mine.iter().rev().find(|r| r.state == RunState::Lost);
                running.or(lost).cloned().ok_or_else(|| {
                    ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "no_running_test",
                        format!(
                            "'{}' has no test running: nothing to attach this output to (ask /nexttest/ first, or upload to /upload/<testid>/)",
                            m.name
                        ),
                    )
                })?
            }
        };
        let text = String::from_utf8_lossy(&output);
        let parsed = parse(&text);
        let bytes = output.len() as u64;
        // Checked before the raw file is written: a refused upload changes nothing.
        run.uploaded(parsed.clone(), bytes, exit, now)
            .map_err(|r| runs_error(r.into()))?;
        self.tests
            .runs
            .save_output(run.id, output)
            .await
            .map_err(store_error)?;
        let done = self
            .tests
            .runs
            .change(run.id, |r| r.uploaded(parsed, bytes, exit, now))
            .await
            .map_err(runs_error)?;
        tracing::info!(run = done.id, system = %done.system, test = %done.test, errors = done.counts.errors, warnings = done.counts.warnings, "test result stored");
        Ok(done)
    }

    // ---- the operator's calls ----------------------------------------------------------

    /// `synctestnames`: learns the tests of the tests dir (a name whose file is gone stays,
    /// unavailable), with each template's syntax errors.
    pub async fn sync_tests(&self) -> Result<TestNameList, ApiError> {
        let scripts = self.tests.scripts.clone();
        let found = tokio::task::spawn_blocking(move || scripts.scan())
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| match e {
                ScriptError::ListDir { .. } => ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "tests_dir_unreadable",
                    e.to_string(),
                ),
                other => ApiError::internal(other),
            })?;
        let mut names = self.tests.runs.names().await;
        for n in names.values_mut() {
            n.available = false;
            n.problem = None;
        }
        for f in found {
            if let Some(p) = &f.problem {
                tracing::warn!(test = %f.name, problem = %p, "test template does not compile");
            }
            names.insert(
                f.name,
                TestName {
                    available: true,
                    problem: f.problem,
                },
            );
        }
        self.tests
            .runs
            .set_names(names)
            .await
            .map_err(store_error)?;
        Ok(self.test_names().await)
    }

    /// The tests known (`dpytest -l`).
    pub async fn test_names(&self) -> TestNameList {
        let names = self.tests.runs.names().await;
        TestNameList {
            dir: self.tests.scripts.dir.display().to_string(),
            missing_wait: !names.get(WAIT).is_some_and(|n| n.available),
            tests: names
                .into_iter()
                .map(|(name, n)| TestNameInfo {
                    name,
                    available: n.available,
                    problem: n.problem,
                })
                .collect(),
        }
    }

    /// `nexttest SYSTEM TEST...`: queues the tests, in order, all or none.
    pub async fn queue_tests(
        &self,
        system: &str,
        tests: &[String],
    ) -> Result<Vec<TestRun>, ApiError> {
        if tests.is_empty() {
            return Err(ApiError::bad_request(
                "no_test",
                "name at least one test: nexttest SYSTEM TEST [TEST...]",
            ));
        }
        if self.machine_named(system).await.is_none() {
            return Err(ApiError::not_found(
                "no_such_system",
                format!("system '{system}' is not defined: neither a registered system (pxemngr addsystem) nor a node"),
            ));
        }
        let names = self.tests.runs.names().await;
        for t in tests {
            let known = valid_name(t) && names.get(t).is_some_and(|n| n.available);
            if !known {
                return Err(ApiError::not_found(
                    "no_such_test",
                    format!(
                        "test '{t}' is not defined: add {} and run `pxemngr synctestnames`",
                        self.tests.scripts.path(t).display()
                    ),
                ));
            }
        }
        let queued = self
            .tests
            .runs
            .queue(system, tests, SystemTime::now())
            .await
            .map_err(store_error)?;
        tracing::info!(%system, tests = ?tests, "tests queued");
        Ok(queued)
    }

    /// `dpytest SYSTEM`: every run of the system (under any of its names), oldest first;
    /// every run when `system` is `None`.
    pub async fn test_runs(&self, system: Option<&str>) -> Result<TestRunList, ApiError> {
        self.tests
            .runs
            .sweep(SystemTime::now())
            .await
            .map_err(store_error)?;
        let Some(system) = system else {
            let runs = self.tests.runs.select(|_| true).await;
            return Ok(TestRunList {
                system: None,
                names: Vec::new(),
                runs: runs.iter().map(summary).collect(),
            });
        };
        let names = match self.machine_named(system).await {
            Some(m) => m.names,
            None => vec![system.to_owned()],
        };
        let runs = self.tests.runs.select(|r| names.contains(&r.system)).await;
        if runs.is_empty() && self.machine_named(system).await.is_none() {
            return Err(ApiError::not_found(
                "no_such_system",
                format!("system '{system}' is not defined and has no test runs"),
            ));
        }
        Ok(TestRunList {
            system: Some(system.to_owned()),
            names,
            runs: runs.iter().map(summary).collect(),
        })
    }

    /// Every run, whole (pages, JUnit).
    pub async fn all_test_runs(&self) -> Vec<TestRun> {
        let _ = self.tests.runs.sweep(SystemTime::now()).await;
        self.tests.runs.select(|_| true).await
    }

    pub async fn test_run(&self, id: RunId) -> Result<TestRun, ApiError> {
        let _ = self.tests.runs.sweep(SystemTime::now()).await;
        self.tests
            .runs
            .get(id)
            .await
            .ok_or_else(|| ApiError::not_found("no_such_run", format!("no test run {id}")))
    }

    /// A run's raw output as uploaded.
    pub async fn test_output(&self, id: RunId) -> Result<Vec<u8>, ApiError> {
        let run = self.test_run(id).await?;
        self.tests
            .runs
            .output(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "no_output",
                    format!("test run {id} is {}: no output was uploaded", run.state),
                )
            })
    }

    /// The systems there are (registered systems, nodes, and names runs were queued for).
    pub async fn test_system_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.systems.all().await.into_keys().collect();
        names.extend(self.nodes.ids());
        names.extend(
            self.tests
                .runs
                .select(|_| true)
                .await
                .into_iter()
                .map(|r| r.system),
        );
        names.sort();
        names.dedup();
        names
    }
}
