//! Shared helpers for rdeploy's end-to-end tests: locating the workspace's binaries, starting
//! `rdeploy serve` on a loopback port, copying config dirs, and small HTTP calls.
//!
//! The binaries are the ones `cargo test --workspace` builds into the target directory (found
//! from the test executable's own path). When one is missing or older than its sources
//! (`cargo test -p rdeploy-tests` alone), [`binary`] builds it with the `cargo` that runs
//! the tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

/// The workspace root (the directory of the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map_or_else(|| here.to_owned(), Path::to_owned)
}

/// A file or directory of the workspace, from a path relative to its root.
pub fn workspace_path(rel: &str) -> PathBuf {
    workspace_root().join(rel)
}

/// The package that builds each binary of the workspace.
fn package_of(binary: &str) -> Result<&'static str> {
    Ok(match binary {
        "rdeploy" => "rdeploy-server",
        "rdeploy-agent" => "rdeploy-agent",
        "rdeploy-initrd" => "rdeploy-initrd",
        other => bail!("unknown workspace binary {other:?}"),
    })
}

/// The sources a binary is built from (its package and the library crates it uses).
fn source_dirs(package: &str) -> Vec<PathBuf> {
    let crate_dir = match package {
        "rdeploy-server" => "server",
        "rdeploy-agent" => "agent",
        "rdeploy-initrd" => "initrd",
        _ => "",
    };
    [crate_dir, "specs", "cmdb", "configure"]
        .iter()
        .filter(|d| !d.is_empty())
        .map(|d| workspace_path(d).join("src"))
        .collect()
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut best = None;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if let Ok(m) = meta.modified() {
                best = best.max(Some(m));
            }
        }
    }
    best
}

/// The target profile directory the running test executable lives in (`target/debug`).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the test executable")?;
    // target/debug/deps/agent_e2e-HASH → target/debug
    exe.ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .map(Path::to_owned)
        .with_context(|| format!("{} is not under a cargo target dir", exe.display()))
}

/// The path of workspace binary `name` (`rdeploy`, `rdeploy-agent`), built first when it is
/// missing or older than its sources.
pub fn binary(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let package = package_of(name)?;
    let path = profile_dir()?.join(name);
    if built.iter().any(|b| b == name) {
        return Ok(path);
    }
    let bin_time = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let src_time = source_dirs(package).iter().filter_map(|d| newest(d)).max();
    let stale = match (bin_time, src_time) {
        (None, _) => true,
        (Some(b), Some(s)) => s > b,
        (Some(_), None) => false,
    };
    if stale {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let profile = profile_dir()?;
        let release = profile.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(workspace_root())
            .args(["build", "-p", package, "--bin", name]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .with_context(|| format!("cannot run `{cargo} build -p {package}`"))?;
        if !status.success() || !path.exists() {
            bail!(
                "{} is missing or out of date and `cargo build -p {package} --bin {name}` failed: build it, or run `cargo test --workspace`",
                path.display()
            );
        }
    }
    built.push(name.to_owned());
    Ok(path)
}

/// Copies a directory tree (files, directories and symlinks).
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type()?;
        if ty.is_dir() {
            copy_dir(&src, &dst)?;
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// A running `rdeploy serve` on `127.0.0.1:0`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The config dir it serves.
    pub config_dir: PathBuf,
    /// Its data dir (node records, role trees under `install/`).
    pub data_dir: PathBuf,
    /// The certificate to trust when it serves HTTPS (`--tls-cert FILE`, or the
    /// `--tls-self-signed` one of the data dir).
    pub ca: Option<PathBuf>,
}

impl Server {
    /// Starts `rdeploy serve --config-dir CONFIG --data-dir DATA --listen 127.0.0.1:0 EXTRA...`
    /// and waits for its `rdeploy: listening on http://ADDR` line. Its stderr goes to
    /// `DATA/../server.log` when that directory exists, else nowhere.
    pub fn start(config_dir: &Path, data_dir: &Path, extra: &[&str]) -> Result<Server> {
        Server::start_in(
            Command::new(binary("rdeploy")?),
            config_dir,
            data_dir,
            extra,
        )
    }

    /// [`Server::start`] with at most `nofile` open descriptors (`ulimit -n`, soft and
    /// hard: the server cannot raise it).
    pub fn start_with_nofile(
        config_dir: &Path,
        data_dir: &Path,
        extra: &[&str],
        nofile: u32,
    ) -> Result<Server> {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(binary("rdeploy")?);
        Server::start_in(sh, config_dir, data_dir, extra)
    }

    fn start_in(
        mut command: Command,
        config_dir: &Path,
        data_dir: &Path,
        extra: &[&str],
    ) -> Result<Server> {
        let log = data_dir
            .parent()
            .map(|p| p.join("server.log"))
            .and_then(|p| std::fs::File::create(p).ok());
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--config-dir"])
            .arg(config_dir)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log.map_or_else(Stdio::null, Stdio::from))
            .spawn()
            .context("cannot start rdeploy serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(base) = line.trim().strip_prefix("rdeploy: listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("rdeploy serve said {line:?} instead of `rdeploy: listening on URL`");
        };
        let ca = base.starts_with("https://").then(|| {
            extra
                .iter()
                .position(|a| *a == "--tls-cert")
                .and_then(|i| extra.get(i + 1))
                .map_or_else(|| data_dir.join("tls/self-signed.pem"), PathBuf::from)
        });
        Ok(Server {
            base: base.to_owned(),
            ca,
            child,
            config_dir: config_dir.to_owned(),
            data_dir: data_dir.to_owned(),
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many descriptors the server has open now.
    pub fn open_fds(&self) -> Result<usize> {
        let dir = format!("/proc/{}/fd", self.child.id());
        Ok(std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {dir}"))?
            .count())
    }

    /// Kills the server and waits for it to be gone (a restart: start another on the same
    /// dirs).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `BASE/path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET BASE/path` as JSON (any status; the body must be JSON).
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let text = self.get_text(path)?;
        serde_json::from_str(&text).with_context(|| format!("GET {path}: not JSON: {text}"))
    }

    /// A client of this server: over HTTPS, trusting its certificate only.
    pub fn client(&self) -> Result<reqwest::blocking::Client> {
        let mut b = reqwest::blocking::Client::builder();
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).with_context(|| format!("{}", ca.display()))?;
            b = b
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(b.build()?)
    }

    /// `GET BASE/path` as text.
    pub fn get_text(&self, path: &str) -> Result<String> {
        let resp = self
            .client()?
            .get(self.url(path))
            .header("Accept", "application/json")
            .send()
            .with_context(|| format!("GET {path}"))?;
        resp.text().with_context(|| format!("GET {path}: body"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished process left: exit code, stdout, stderr.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a workspace binary with arguments to completion.
pub fn run_binary(name: &str, args: &[&str]) -> Result<Output> {
    run_binary_env(name, args, &[])
}

/// [`run_binary`] with extra environment variables (`PATH` with fake tools first ...).
pub fn run_binary_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    let out = Command::new(binary(name)?)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {name}"))?;
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Fake programs in `dir` (created) that append `NAME ARGS...` to `dir/calls.log` and exit
/// 0, printing `stdout` when one is given: put `dir` first in `PATH` to run a real agent
/// without touching disks, mounts or power. Returns the `PATH` value to use.
pub fn fake_tools(dir: &Path, tools: &[(&str, Option<&str>)]) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let log = dir.join("calls.log");
    for (name, stdout) in tools {
        let path = dir.join(name);
        let mut script = format!("#!/bin/sh\necho \"{name} $*\" >> '{}'\n", log.display());
        if let Some(out) = stdout {
            script.push_str(&format!("printf '%s\\n' '{out}'\n"));
        }
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    Ok(format!("{}:{path}", dir.display()))
}

/// Runs `curl ARGS...` (the seed systems' documentation uses curl, so their tests do too).
pub fn curl(args: &[&str]) -> Result<Output> {
    let out = Command::new("curl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run curl (Debian package curl, listed in scripts/apt-packages)")?;
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// An inventory uploaded as eDeploy's users do it, `curl -s -f -F file=@HW URL/upload`;
/// fails unless curl succeeds (a 2xx answer).
pub fn curl_upload(server: &Server, hw: &Path) -> Result<Output> {
    let file = format!("file=@{}", hw.display());
    let out = curl(&["-s", "-f", "-F", &file, &server.url("/upload")])?;
    anyhow::ensure!(
        out.code == Some(0),
        "upload of {}: curl exit {:?}: {}",
        hw.display(),
        out.code,
        out.stderr
    );
    Ok(out)
}

/// A symlink `dir/name` to workspace binary `binary`: the multi-call names (`pxemngr` for
/// `rdeploy`, `edeploy` for `rdeploy-agent`) as an operator installs them.
pub fn multi_call(binary: &str, name: &str, dir: &Path) -> Result<PathBuf> {
    let target = self::binary(binary)?;
    std::fs::create_dir_all(dir)?;
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link)
        .with_context(|| format!("cannot link {} to {}", link.display(), target.display()))?;
    Ok(link)
}

/// Runs a program (a multi-call link) with arguments and extra environment variables.
pub fn run_program(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A throwaway PostgreSQL cluster (`scripts/pg start`), stopped and removed when dropped.
#[derive(Debug)]
pub struct Postgres {
    /// `postgres://postgres@127.0.0.1:PORT/rdeploy`.
    pub url: String,
    dir: PathBuf,
}

impl Postgres {
    /// Starts one; `Ok(None)` when PostgreSQL's binaries are not installed (the caller
    /// skips, saying so: `apt-get install postgresql`, as scripts/apt-packages lists).
    pub fn start() -> Result<Option<Postgres>> {
        let script = workspace_path("scripts/pg");
        let found = Command::new("bash")
            .arg(&script)
            .arg("bindir")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run scripts/pg")?;
        if !found.success() {
            return Ok(None);
        }
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run scripts/pg start")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        match (out.status.success(), lines.next(), lines.next()) {
            (true, Some(url), Some(dir)) => Ok(Some(Postgres {
                url: url.to_owned(),
                dir: PathBuf::from(dir),
            })),
            _ => bail!("scripts/pg start failed: {text}"),
        }
    }

    /// Runs one SQL statement with `psql` and returns its unaligned rows.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_on(&self.url, sql)
    }

    /// [`Postgres::psql`] on another database of the cluster (`url`).
    pub fn psql_on(&self, url: &str, sql: &str) -> Result<String> {
        let bin = Command::new("bash")
            .arg(workspace_path("scripts/pg"))
            .arg("bindir")
            .output()?;
        let bin = String::from_utf8_lossy(&bin.stdout).trim().to_owned();
        let out = Command::new(Path::new(&bin).join("psql"))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
            .output()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_path("scripts/pg"))
            .arg("stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .status();
    }
}
