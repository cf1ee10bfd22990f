//! `rdeploy-agent test-loop`: PXE Manager's test loop on an installed host, as a service.
//! Ask the server for the next test (`GET /nexttest/`, or `/nexttest/<mac>/`), run the
//! script, upload its output and exit status (`POST /upload/<testid>/`), and again. PXE
//! Manager's users wrote this loop by hand in shell.
//!
//! `wait.test` (the answer when nothing is queued) carries no test id: it is run (it waits)
//! and nothing is uploaded. A script that uploads its own result (PXE Manager's habit) is
//! fine: the loop's upload is then refused as already done, and that is logged, not an
//! error. A server that does not answer is asked again after `--retry-after`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// `rdeploy-agent test-loop`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rdeploy-agent test-loop --server http://10.0.0.1:8080\n  rdeploy-agent test-loop --server http://10.0.0.1:8080 --mac 52:54:00:12:34:56 --once"
)]
pub struct TestLoopArgs {
    /// The rdeploy server's URL.
    #[arg(long, value_name = "URL", env = "RDEPLOY_SERVER")]
    pub server: String,
    /// Trust only this CA or pinned certificate (PEM) for an https:// server [default:
    /// /etc/rdeploy/ca.pem when it exists, else the system's roots].
    #[arg(long, value_name = "FILE", env = "RDEPLOY_CA")]
    pub ca: Option<PathBuf>,
    /// Ask by MAC (`/nexttest/<mac>/`) instead of by this host's address (`/nexttest/`).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// Where each script and its output are written (`test.sh`, `output`).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/rdeploy-agent/tests"
    )]
    pub work_dir: PathBuf,
    /// The shell that runs the scripts.
    #[arg(long, value_name = "PROGRAM", default_value = "/bin/sh")]
    pub shell: PathBuf,
    /// How long to wait before asking again when the server cannot be reached.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_after: Duration,
    /// Run one script (and upload its output), then exit: 0 when it went through, 1 when
    /// the upload was refused, 2 when the server could not be reached.
    #[arg(long)]
    pub once: bool,
}

/// A script from the server.
#[derive(Debug)]
struct Script {
    text: String,
    /// The run id (`X-Rdeploy-Test-Id`), none for `wait.test`.
    id: Option<u64>,
    test: Option<String>,
}

/// What became of one round.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// A queued test ran and its output is on the server.
    Uploaded,
    /// `wait.test` ran.
    Waited,
    /// The server refused the output (the message is logged).
    Refused,
}

pub fn main(args: &TestLoopArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("cannot create {}", args.work_dir.display()))?;
    let trust = crate::tls::Trust::resolve(args.ca.as_deref())?;
    let http = trust
        .builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")?;
    let base = args.server.trim_end_matches('/').to_owned();
    loop {
        match round(&http, &base, args) {
            Ok(outcome) if args.once => {
                return Ok(match outcome {
                    Round::Uploaded | Round::Waited => ExitCode::SUCCESS,
                    Round::Refused => ExitCode::from(1),
                })
            }
            Ok(_) => {}
            Err(e) if args.once => return Err(e),
            Err(e) => {
                tracing::warn!(
                    "{e:#}; asking again in {}",
                    humantime::format_duration(args.retry_after)
                );
                std::thread::sleep(args.retry_after);
            }
        }
    }
}

fn round(http: &reqwest::blocking::Client, base: &str, args: &TestLoopArgs) -> Result<Round> {
    let script = next(http, base, args.mac.as_deref())?;
    let file = args.work_dir.join("test.sh");
    let output = args.work_dir.join("output");
    write_script(&file, &script.text)?;
    match (&script.test, script.id) {
        (Some(t), Some(id)) => tracing::info!("running test {t} (run {id})"),
        _ => tracing::info!("no test queued: running wait.test"),
    }
    let exit = run(args, &file, &output, base, &script)?;
    let Some(id) = script.id else {
        return Ok(Round::Waited);
    };
    tracing::info!(
        "test run {id} exited with {exit}: uploading {}",
        output.display()
    );
    upload(http, base, id, &output, exit)
}

fn next(http: &reqwest::blocking::Client, base: &str, mac: Option<&str>) -> Result<Script> {
    let url = match mac {
        Some(m) => format!("{base}/nexttest/{m}/"),
        None => format!("{base}/nexttest/"),
    };
    let resp = http
        .get(&url)
        .send()
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let id = header("x-rdeploy-test-id").and_then(|v| v.parse().ok());
    let test = header("x-rdeploy-test");
    let text = resp
        .text()
        .with_context(|| format!("{url}: cannot read the answer"))?;
    if !status.is_success() {
        anyhow::bail!("{url}: {status}: {}", text.trim());
    }
    Ok(Script { text, id, test })
}

fn write_script(file: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))
}

/// Runs the script with its output (stdout and stderr, interleaved) to `output`; returns
/// its exit status (128 + the signal when killed by one).
fn run(
    args: &TestLoopArgs,
    file: &Path,
    output: &Path,
    base: &str,
    script: &Script,
) -> Result<i32> {
    use std::os::unix::process::ExitStatusExt as _;
    let out = std::fs::File::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("cannot share {}", output.display()))?;
    let mut cmd = Command::new(&args.shell);
    cmd.arg(file)
        .current_dir(&args.work_dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("RDEPLOY_SERVER", base)
        .env("RDEPLOY_TEST_OUTPUT", output);
    if let (Some(t), Some(id)) = (&script.test, script.id) {
        cmd.env("RDEPLOY_TEST", t)
            .env("RDEPLOY_TEST_ID", id.to_string());
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {} {}", args.shell.display(), file.display()))?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1))
}

fn upload(
    http: &reqwest::blocking::Client,
    base: &str,
    id: u64,
    output: &Path,
    exit: i32,
) -> Result<Round> {
    let url = format!("{base}/upload/{id}/");
    let bytes =
        std::fs::read(output).with_context(|| format!("cannot read {}", output.display()))?;
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "file",
            reqwest::blocking::multipart::Part::bytes(bytes).file_name("output"),
        )
        .text("exit", exit.to_string());
    let resp = http
        .post(&url)
        .multipart(form)
        .send()
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    if status.is_success() {
        tracing::info!("{}", text.trim());
        return Ok(Round::Uploaded);
    }
    let code = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
    if code.as_deref() == Some("run_not_running") {
        tracing::info!("test run {id}: the script uploaded its own result");
        return Ok(Round::Uploaded);
    }
    if status.is_server_error() {
        anyhow::bail!("{url}: {status}: {}", text.trim());
    }
    tracing::warn!("{url}: {status}: {}", text.trim());
    Ok(Round::Refused)
}
