//! The web console in a real browser: Debian's `chromium` driven by `chromedriver`
//! (package `chromium-driver`, in scripts/apt-packages) over WebDriver, against a real
//! `rdeploy serve` with an admin token. Machines are played by curl. Screenshots of every
//! page go to `target/tmp/console-screenshots/`.
//!
//! Also `GET /events` read as a script would (`curl -N`).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rdeploy_tests::{copy_dir, workspace_path, Server};
use serde_json::{json, Value};

const TOKEN: &str = "console-test-token-1234";
const KVM_ID: &str = "KVM-NotSpecified-52-54-00-12-34-56";
const SECRET: &str = "hunter2-never-shown";

/// How long the browser may take to show a change (a bound on waiting, not a measurement).
const PATIENCE: Duration = Duration::from_secs(20);

struct Rig {
    _tmp: tempfile::TempDir,
    server: Server,
    driver: Driver,
    shots: PathBuf,
}

fn rig() -> Result<Rig> {
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("config");
    copy_dir(&workspace_path("tests/fixtures/console/config"), &config)?;
    let data = tmp.path().join("data");
    let token = tmp.path().join("admin-token");
    std::fs::write(&token, format!("{TOKEN}\n"))?;
    let server = Server::start(
        &config,
        &data,
        &["--admin-token-file", &token.display().to_string()],
    )?;
    let driver = Driver::start(&tmp.path().join("chromium"))?;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots)?;
    Ok(Rig {
        _tmp: tmp,
        server,
        driver,
        shots,
    })
}

/// `curl` as the operator's or the machine's tool: status and body.
fn curl(args: &[&str]) -> Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .context("cannot run curl")?;
    ensure!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').context("no status from curl")?;
    Ok((code.trim().parse()?, body.to_owned()))
}

/// An upload as the agent sends it, asking for the JSON answer (which carries the node's
/// token, `token_of`).
fn upload(server: &Server, hw: &str) -> Result<(u16, String)> {
    let file = format!("file=@{}", workspace_path(hw).display());
    curl(&[
        "-H",
        "Accept: application/json",
        "-F",
        &file,
        &server.url("/upload"),
    ])
}

/// The node token of an upload's JSON answer.
fn token_of(answer: &str) -> Result<String> {
    let v: Value = serde_json::from_str(answer)?;
    Ok(v["token"].as_str().context("no token")?.to_owned())
}

/// A progress event as the agent reports it, with the node's token.
fn progress(server: &Server, id: &str, token: &str, step: &str, status: &str) -> Result<()> {
    let body = json!({"step": step, "status": status, "time": 0, "message": ""}).to_string();
    let auth = format!("Authorization: Bearer {token}");
    let (code, text) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-d",
        &body,
        &server.url(&format!("/nodes/{id}/events")),
    ])?;
    ensure!(code == 200, "event {step}/{status}: {code} {text}");
    Ok(())
}

/// A WebDriver session on headless chromium.
struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl Driver {
    fn start(profile: &Path) -> Result<Driver> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run chromedriver (Debian's package `chromium-driver`)")?;
        // It says "ChromeDriver was started successfully on port N." once it listens.
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("started successfully") => break,
                Some(Ok(_)) => {}
                _ => bail!("chromedriver ended before it listened"),
            }
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--window-size=1280,1000",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()?
            .json()?;
        let session = resp["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no WebDriver session: {resp}"))?
            .to_owned();
        Ok(Driver {
            child,
            base,
            session,
            http,
        })
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req.send()?.json()?;
        if let Some(err) = resp["value"]["error"].as_str() {
            bail!("WebDriver {path}: {err}: {}", resp["value"]["message"]);
        }
        Ok(resp["value"].clone())
    }

    fn goto(&self, url: &str) -> Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))?;
        Ok(())
    }

    /// Runs a script in the page; its result.
    fn js(&self, script: &str) -> Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// The text of the first element matching a CSS selector, or None.
    fn text(&self, css: &str) -> Result<Option<String>> {
        let v = self.js(&format!(
            "var e = document.querySelector({}); return e ? e.textContent : null;",
            json!(css)
        ))?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// Waits until the element's text satisfies `ok`; its text.
    fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> Result<String> {
        let start = Instant::now();
        loop {
            let t = self.text(css)?;
            if let Some(t) = t.as_deref().filter(|t| ok(t)) {
                return Ok(t.to_owned());
            }
            if start.elapsed() > PATIENCE {
                bail!(
                    "{css} never showed what was expected; it shows {t:?}; the page: {}",
                    self.source()?
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) -> Result<()> {
        let v = self.js(&format!(
            "var e = document.querySelector({}); if (!e) return false; e.click(); return true;",
            json!(css)
        ))?;
        ensure!(v == json!(true), "nothing to click at {css}");
        Ok(())
    }

    fn source(&self) -> Result<String> {
        Ok(self
            .call(reqwest::Method::GET, "/source", None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    fn url(&self) -> Result<String> {
        Ok(self
            .call(reqwest::Method::GET, "/url", None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Saves a PNG screenshot of the window.
    fn screenshot(&self, path: &Path) -> Result<()> {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None)?;
        let png = base64_decode(b64.as_str().context("no screenshot")?)?;
        ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Waits for a navigation started by a click to land on a URL containing `part`.
    fn wait_url(&self, part: &str) -> Result<()> {
        let start = Instant::now();
        while !self.url()?.contains(part) {
            ensure!(
                start.elapsed() < PATIENCE,
                "still at {}, not {part}",
                self.url()?
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // And for the new document to be complete.
        while self.js("return document.readyState")? != json!("complete") {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => bail!("not base64: {c}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff)?);
        }
    }
    Ok(out)
}

/// The whole operator's path in one browser: the node appears live, its page shows its
/// inventory and variables (the IPMI password masked), an action without the token is
/// refused, the token is given once, the node is re-installed and its state changes live.
#[test]
fn an_operator_follows_a_rollout_and_reinstalls_a_node_in_a_real_browser() -> Result<()> {
    let rig = rig()?;
    let (d, s) = (&rig.driver, &rig.server);
    let shot = |name: &str| d.screenshot(&rig.shots.join(format!("{name}.png")));

    // The empty console; a marker in the window tells a reload apart from a live update.
    d.goto(&s.url("/"))?;
    d.wait_text("#live-status", |t| t.contains("live"))?;
    d.js("window.notReloaded = true; return true;")?;
    shot("nodes-empty")?;

    // A machine uploads its inventory: its row appears without a reload.
    let (code, answer) = upload(s, "examples/hw/kvm.json")?;
    ensure!(code == 200, "upload: {code} {answer}");
    let token = token_of(&answer)?;
    let row = d.wait_text(&format!("#node-{KVM_ID}"), |t| t.contains("matched"))?;
    ensure!(
        row.contains("vm010") && row.contains("192.168.122.10"),
        "{row}"
    );
    ensure!(
        d.js("return window.notReloaded === true")? == json!(true),
        "the page was reloaded"
    );
    ensure!(d.text("#counts a[data-state=matched] b")?.as_deref() == Some("1"));
    // A machine that matches nothing shows up too.
    let (code, _) = upload(s, "tests/fixtures/hw/dell-r630.json")?;
    ensure!(code != 200, "the R630 matched: {code}");
    d.wait_text("#counts a[data-state=discovered] b", |t| t == "1")?;
    shot("nodes")?;

    // The node's page: inventory by category, variables, the password masked.
    d.goto(&s.url(&format!("/ui/nodes/{KVM_ID}")))?;
    let vars = d.text("#variables")?.context("no variables")?;
    ensure!(
        vars.contains("vm010") && vars.contains("ipmi_password"),
        "{vars}"
    );
    ensure!(
        !d.source()?.contains(SECRET),
        "the IPMI password is in the page"
    );
    let system = d
        .text("table[data-category=system]")?
        .context("no system table")?;
    ensure!(system.contains("QEMU"), "{system}");
    ensure!(d.text("table[data-category=network]")?.is_some());
    ensure!(
        d.text("#needs-token")?.is_some(),
        "no hint that a token is needed"
    );
    shot("node")?;

    // An action without the token is refused, and changes nothing.
    d.click("#reinstall")?;
    d.wait_url("/boot")?;
    let refused =
        d.js("var e = document.getElementById('refused'); return e ? e.dataset.code : null;")?;
    ensure!(refused == json!("unauthorized"), "{}", d.source()?);
    shot("refused")?;

    // The token, once; the cookie is out of the page's scripts' reach.
    d.goto(&s.url("/ui/login"))?;
    d.js(&format!(
        "document.getElementById('token').value = {}; return true;",
        json!(TOKEN)
    ))?;
    d.click("#login")?;
    d.wait_url("/")?;
    ensure!(
        !d.js("return document.cookie")?
            .as_str()
            .unwrap_or_default()
            .contains("rdeploy_session"),
        "the session cookie is readable by scripts"
    );

    // The machine installs; the open node page follows without a reload.
    d.goto(&s.url(&format!("/ui/nodes/{KVM_ID}")))?;
    d.wait_text("#live-status", |t| t.contains("live"))?;
    d.js("window.notReloaded = true; return true;")?;
    progress(s, KVM_ID, &token, "configure", "started")?;
    d.wait_text("#state", |t| t == "configuring")?;
    progress(s, KVM_ID, &token, "finish", "succeeded")?;
    d.wait_text("#state", |t| t == "installed")?;
    let steps = d.text("#steps")?.context("no steps")?;
    ensure!(
        steps.contains("configure") && steps.contains("finish"),
        "{steps}"
    );
    d.wait_text("#boot", |t| t == "local")?;
    ensure!(d.js("return window.notReloaded === true")? == json!(true));
    ensure!(d.text("#needs-token")?.is_none());

    // Re-install: the next boot is install; the machine uploads again and is matched again.
    d.click("#reinstall")?;
    d.wait_url(&format!("/ui/nodes/{KVM_ID}"))?;
    d.wait_text("#boot", |t| t == "install")?;
    d.js("window.notReloaded = true; return true;")?;
    let (code, text) = upload(s, "examples/hw/kvm.json")?;
    ensure!(code == 200, "re-install upload: {code} {text}");
    d.wait_text("#state", |t| t == "matched")?;
    ensure!(d.js("return window.notReloaded === true")? == json!(true));
    let timeline = d.text("#timeline")?.context("no timeline")?;
    ensure!(
        timeline.contains("installed") && timeline.contains("configuring"),
        "{timeline}"
    );
    shot("node-reinstalled")?;
    let node = s.get_json(&format!("/nodes/{KVM_ID}"))?;
    ensure!(node["boot"]["target"] == json!("install"), "{node}");

    // Why the R630 matched nothing, profile by profile.
    let r630 = s.get_json("/nodes?state=discovered")?;
    let r630 = r630["nodes"][0]["id"]
        .as_str()
        .context("no R630")?
        .to_owned();
    d.goto(&s.url(&format!("/ui/nodes/{r630}")))?;
    let why = d.text("#why")?.context("no explanation")?;
    ensure!(why.contains("kvm:"), "{why}");
    shot("node-unmatched")?;

    // The other pages.
    d.goto(&s.url("/ui/profiles"))?;
    let profiles = d.text("#profiles")?.context("no profiles table")?;
    ensure!(
        profiles.contains("kvm") && profiles.contains("1 / 10"),
        "{profiles}"
    );
    shot("profiles")?;
    d.goto(&s.url("/ui/systems"))?;
    shot("systems")?;
    d.goto(&s.url("/tests/"))?;
    ensure!(d.text("header a.on")?.as_deref() == Some("Tests"));
    shot("tests")?;
    for name in [
        "nodes-empty",
        "nodes",
        "node",
        "refused",
        "node-reinstalled",
        "node-unmatched",
        "profiles",
        "systems",
        "tests",
    ] {
        let len = std::fs::metadata(rig.shots.join(format!("{name}.png")))?.len();
        ensure!(len > 5_000, "{name}.png: {len} bytes");
    }
    Ok(())
}

/// Actions from elsewhere: without the CSRF token (a page of another site posting a form)
/// and without the admin token, refused; with both (a script), done.
#[test]
fn console_actions_need_the_csrf_token_and_the_admin_token() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("config");
    copy_dir(&workspace_path("tests/fixtures/console/config"), &config)?;
    let token = tmp.path().join("admin-token");
    std::fs::write(&token, TOKEN)?;
    let s = Server::start(
        &config,
        &tmp.path().join("data"),
        &["--admin-token-file", &token.display().to_string()],
    )?;
    let (code, _) = upload(&s, "examples/hw/kvm.json")?;
    ensure!(code == 200);
    let action = s.url(&format!("/ui/nodes/{KVM_ID}/boot"));
    let page = s.get_text(&format!("/ui/nodes/{KVM_ID}"))?;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("no CSRF token in the page")?
        .to_owned();

    let (code, body) = curl(&["-d", "target=local", &action])?;
    ensure!(code == 403 && body.contains("bad_csrf"), "{code} {body}");
    let (code, body) = curl(&["-d", &format!("csrf={csrf}&target=local"), &action])?;
    ensure!(
        code == 401 && body.contains("unauthorized"),
        "{code} {body}"
    );
    let (code, body) = curl(&[
        "-d",
        &format!("csrf={csrf}&target=local"),
        "-H",
        "Authorization: Bearer wrong",
        &action,
    ])?;
    ensure!(code == 401, "{code} {body}");
    ensure!(s.get_json(&format!("/nodes/{KVM_ID}"))?["boot"]["target"] == json!("install"));

    // A wrong token at the login form sets no cookie.
    let (code, _) = curl(&[
        "-D",
        "-",
        "-d",
        &format!("csrf={csrf}&token=wrong"),
        &s.url("/ui/login"),
    ])?;
    ensure!(code == 401);

    let auth = format!("Authorization: Bearer {TOKEN}");
    let (code, body) = curl(&[
        "-d",
        &format!("csrf={csrf}&target=local"),
        "-H",
        &auth,
        &action,
    ])?;
    ensure!(code == 303, "{code} {body}");
    ensure!(s.get_json(&format!("/nodes/{KVM_ID}"))?["boot"]["target"] == json!("local"));

    // The login sets an HttpOnly, SameSite=Strict cookie that is not the token.
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "-d"])
        .arg(format!("csrf={csrf}&token={TOKEN}"))
        .arg(s.url("/ui/login"))
        .output()?;
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let cookie = headers
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .with_context(|| format!("no cookie: {headers}"))?;
    ensure!(
        cookie.contains("httponly") && cookie.contains("samesite=strict"),
        "{cookie}"
    );
    ensure!(!cookie.contains(TOKEN), "{cookie}");
    Ok(())
}

/// Where reading node details needs a token (`--read-token-file`), the console's node
/// pages and `GET /events` need it too: refused without it, readable once the read token is
/// given at the login form, and the read token's session acts on nothing.
#[test]
fn reading_the_console_needs_the_read_token_where_reading_nodes_does() -> Result<()> {
    const READ: &str = "console-read-token-5678";
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("config");
    copy_dir(&workspace_path("tests/fixtures/console/config"), &config)?;
    let (admin, read) = (
        tmp.path().join("admin-token"),
        tmp.path().join("read-token"),
    );
    std::fs::write(&admin, TOKEN)?;
    std::fs::write(&read, READ)?;
    let s = Server::start(
        &config,
        &tmp.path().join("data"),
        &[
            "--admin-token-file",
            &admin.display().to_string(),
            "--read-token-file",
            &read.display().to_string(),
        ],
    )?;
    let (code, _) = upload(&s, "examples/hw/kvm.json")?;
    ensure!(code == 200);
    let node_page = s.url(&format!("/ui/nodes/{KVM_ID}"));
    for url in [s.url("/"), node_page.clone()] {
        let (code, body) = curl(&[&url])?;
        ensure!(
            code == 401 && body.contains("read_token_required") && !body.contains("vm010"),
            "{url}: {code} {body}"
        );
    }
    let (code, body) = curl(&["-m", "5", &s.url("/events")])?;
    ensure!(
        code == 401 && body.contains("read_token_required"),
        "{code} {body}"
    );

    // The read token at the login form: a cookie that reads.
    let login = s.get_text("/ui/login")?;
    let csrf = login
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("no CSRF token in the login page")?
        .to_owned();
    let jar = tmp.path().join("cookies");
    let jar = jar.display().to_string();
    let (code, body) = curl(&[
        "-c",
        &jar,
        "-d",
        &format!("csrf={csrf}&token={READ}"),
        &s.url("/ui/login"),
    ])?;
    ensure!(code == 303, "login with the read token: {code} {body}");
    let (code, body) = curl(&["-b", &jar, &node_page])?;
    ensure!(code == 200 && body.contains("vm010"), "{code} {body}");
    ensure!(
        !body.contains("hunter2") && body.contains("********"),
        "the IPMI password is not masked for a reader"
    );
    // The stream stays open: curl gives up after a second, having printed its status.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-m",
            "1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-b",
            &jar,
        ])
        .arg(s.url("/events"))
        .output()?;
    let status = String::from_utf8_lossy(&out.stdout);
    ensure!(status == "200", "events with the read session: {status}");

    // It acts on nothing.
    let (code, body) = curl(&[
        "-b",
        &jar,
        "-d",
        &format!("csrf={csrf}&target=local"),
        &s.url(&format!("/ui/nodes/{KVM_ID}/boot")),
    ])?;
    ensure!(
        code == 401,
        "an action with the read session: {code} {body}"
    );
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (_, node) = curl(&["-H", &auth, &s.url(&format!("/nodes/{KVM_ID}"))])?;
    let node: Value = serde_json::from_str(&node)?;
    ensure!(node["boot"]["target"] == json!("install"), "{node}");
    Ok(())
}

/// `GET /events` as a script reads it: one `event: node` per change, in order.
#[test]
fn scripts_follow_node_changes_on_the_event_stream() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("config");
    copy_dir(&workspace_path("tests/fixtures/console/config"), &config)?;
    let s = Server::start(&config, &tmp.path().join("data"), &[])?;
    let mut curl = Command::new("curl")
        .args(["-sSN", &s.url("/events")])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(curl.stdout.take().context("no stdout")?).lines();
    // The stream is open once its first comment arrives.
    let first = lines.next().context("no first line")??;
    ensure!(first.starts_with(':'), "{first}");
    let (code, answer) = upload(&s, "examples/hw/kvm.json")?;
    ensure!(code == 200, "upload: {code} {answer}");
    progress(&s, KVM_ID, &token_of(&answer)?, "configure", "started")?;
    let mut changes = Vec::new();
    let mut event = String::new();
    while changes.len() < 2 {
        let line = lines.next().context("the stream ended")??;
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            ensure!(event == "node", "{event}");
            let v: Value = serde_json::from_str(data)?;
            ensure!(!data.contains(SECRET), "a secret in the stream: {data}");
            changes.push(v);
        }
    }
    let _ = curl.kill();
    let _ = curl.wait();
    ensure!(changes[0]["id"] == json!(KVM_ID));
    ensure!(changes[0]["state"] == json!("matched"), "{}", changes[0]);
    ensure!(
        changes[1]["state"] == json!("configuring"),
        "{}",
        changes[1]
    );
    ensure!(changes[1]["seq"].as_u64() > changes[0]["seq"].as_u64());
    Ok(())
}
