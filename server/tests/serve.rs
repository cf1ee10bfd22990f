//! `rdeploy serve` as agents and operators see it: the real binary on an ephemeral
//! loopback port, driven by a real HTTP client, with real files.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::Value;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A running `rdeploy serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    config: PathBuf,
    data: PathBuf,
    extra: Vec<String>,
}

impl Server {
    fn start(config: &Path, data: &Path) -> Res<Server> {
        Server::start_with(config, data, &[])
    }

    fn start_with(config: &Path, data: &Path, extra: &[String]) -> Res<Server> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rdeploy"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config-dir"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let base = line
            .trim()
            .strip_prefix("rdeploy: listening on ")
            .ok_or_else(|| format!("unexpected first line {line:?}"))?
            .to_owned();
        Ok(Server {
            child,
            base,
            config: config.to_owned(),
            data: data.to_owned(),
            extra: extra.to_vec(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kvm(serial: &str, mac: &str) -> String {
    format!(
        r#"[["system", "product", "name", "KVM"],
 ["system", "product", "serial", "{serial}"],
 ["disk", "vda", "size", "20"],
 ["network", "eth0", "serial", "{mac}"],
 ["network", "eth0", "link", "yes"]]"#
    )
}

fn mac(i: usize) -> String {
    format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256)
}

/// A config dir: `vm` with `quota` installs and a CMDB of `n` entries; `hp` never matches KVMs.
fn config(quota: &str, n: usize) -> Res<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let p = dir.path();
    fs::write(p.join("state"), format!("[('hp', 2), ('vm', {quota})]\n"))?;
    fs::write(
        p.join("hp.specs"),
        "[('system', 'product', 'name', 'ProLiant DL360 Gen9'), ('disk', '$disk', 'size', 'gt(100)')]\n",
    )?;
    fs::write(
        p.join("vm.specs"),
        "# KVM guests\n[\n ('system', 'product', 'name', 'KVM'),\n ('disk', '$disk', 'size', '$size'),\n ('network', '$eth', 'serial', '$mac'),\n]\n",
    )?;
    fs::write(
        p.join("vm.cmdb"),
        format!("generate({{'ip': '10.0.0.1-{n}', 'hostname': 'vm1-{n}'}})\n"),
    )?;
    fs::write(
        p.join("vm.configure"),
        "set_role(\"base\", \"1.0\", var.disk);\n",
    )?;
    fs::write(p.join("hp.configure"), "// hp\n")?;
    Ok(dir)
}

struct Env {
    _config: tempfile::TempDir,
    _data: tempfile::TempDir,
    server: Server,
    http: reqwest::Client,
    /// The token of each node's last upload reply.
    tokens: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

fn env(quota: &str, n: usize) -> Res<Env> {
    let config = config(quota, n)?;
    let data = tempfile::tempdir()?;
    let server = Server::start(config.path(), data.path())?;
    Ok(Env {
        _config: config,
        _data: data,
        server,
        http: reqwest::Client::new(),
        tokens: Default::default(),
    })
}

impl Env {
    /// `curl -F file=@hw.json URL/upload`.
    async fn curl_form(&self, hw: &str) -> Res<reqwest::Response> {
        let form = Form::new().part("file", Part::text(hw.to_owned()).file_name("hw.json"));
        let resp = self
            .http
            .post(self.server.url("/upload"))
            .multipart(form)
            .send()
            .await?;
        let header = |h: &str| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let (Some(node), Some(token)) = (header("x-rdeploy-node"), header("x-rdeploy-token")) {
            self.keep_token(&node, &token);
        }
        Ok(resp)
    }

    fn keep_token(&self, node: &str, token: &str) {
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(node.to_owned(), token.to_owned());
        }
    }

    /// The token of the node's last upload reply.
    fn token(&self, node: &str) -> String {
        self.tokens
            .lock()
            .ok()
            .and_then(|t| t.get(node).cloned())
            .unwrap_or_default()
    }

    /// JSON body, JSON answer: `(status, body)`.
    async fn json_upload(&self, hw: &str) -> Res<(StatusCode, Value)> {
        let resp = self
            .http
            .post(self.server.url("/upload"))
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(hw.to_owned())
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if let (Some(node), Some(token)) = (body["node"].as_str(), body["token"].as_str()) {
            self.keep_token(node, token);
        }
        Ok((status, body))
    }

    async fn get_json(&self, path: &str) -> Res<(StatusCode, Value)> {
        let resp = self.http.get(self.server.url(path)).send().await?;
        let status = resp.status();
        Ok((status, resp.json().await?))
    }

    /// SIGKILL, then a new server on the same dirs.
    fn restart(&mut self) -> Res {
        self.server.child.kill()?;
        self.server.child.wait()?;
        let (config, data) = (self.server.config.clone(), self.server.data.clone());
        let extra = self.server.extra.clone();
        self.server = Server::start_with(&config, &data, &extra)?;
        Ok(())
    }

    fn config_file(&self, name: &str) -> Res<String> {
        Ok(fs::read_to_string(self.server.config.join(name))?)
    }
}

fn is_error(body: &Value, code: &str) -> bool {
    body["error"] == code && body["message"].as_str().is_some_and(|m| !m.is_empty())
}

#[tokio::test]
async fn edeploy_curl_form_gets_the_script_and_the_inventory_is_saved() -> Res {
    let e = env("5", 3)?;
    let resp = e.curl_form(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await?;
    let (head, script) = text.split_once(";\n").ok_or("no variables line")?;
    assert!(head.starts_with("// profile: vm\nlet var = #{\"disk\": \"vda\", \"size\": \"20\", \"eth\": \"eth0\", \"mac\": \"52:54:00:aa:00:01\", "), "{text}");
    for field in [
        "\"ip\": \"10.0.0.1\"",
        "\"hostname\": \"vm1\"",
        "\"used\": 1}",
    ] {
        assert!(head.contains(field), "{field} missing: {text}");
    }
    assert_eq!(script, "set_role(\"base\", \"1.0\", var.disk);\n");
    assert!(
        text.ends_with("set_role(\"base\", \"1.0\", var.disk);\n"),
        "{text}"
    );
    // The store holds the inventory when the answer comes; eDeploy's `.hw` file follows.
    let resp = e
        .http
        .get(e.server.url("/nodes/KVM-S1-52-54-00-aa-00-01/inventory"))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let stored = resp.text().await?;
    assert!(
        stored.starts_with("[('system', 'product', 'name', 'KVM'),\n"),
        "{stored}"
    );
    let hw = e.server.data.join("hw/KVM-S1-52-54-00-aa-00-01.hw");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hw.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fs::read_to_string(&hw)?, stored);
    assert!(e.config_file("vm.cmdb")?.contains("'used': 1"));
    assert!(e.config_file("vm.cmdb.orig")?.starts_with("generate("));
    assert_eq!(e.config_file("state")?, "[('hp', 2),\n ('vm', 4)]\n");
    Ok(())
}

#[tokio::test]
async fn json_upload_and_a_node_that_uploads_again_keeps_its_entry() -> Res {
    let e = env("5", 3)?;
    let (status, first) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["profile"], "vm");
    assert_eq!(first["var"]["ip"], "10.0.0.1");
    assert_eq!(first["script"], "set_role(\"base\", \"1.0\", var.disk);\n");
    let (_, other) = e.json_upload(&kvm("S2", "52:54:00:aa:00:02")).await?;
    assert_eq!(other["var"]["ip"], "10.0.0.2");
    // The agent retries: same entry, and the install is not counted twice.
    let (status, again) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["var"], first["var"]);
    assert_eq!(e.config_file("state")?, "[('hp', 2),\n ('vm', 3)]\n");
    Ok(())
}

#[tokio::test]
async fn quotas_and_cmdbs_run_out_with_409_and_the_reasons() -> Res {
    let e = env("2", 5)?;
    for i in 0..2 {
        let (status, body) = e.json_upload(&kvm(&format!("S{i}"), &mac(i))).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // hp still has installs but does not match: eDeploy's "unable to match", with vm's reason.
    let (status, body) = e.json_upload(&kvm("S9", &mac(9))).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(is_error(&body, "no_match"), "{body}");
    let tried = body["tried"].as_array().ok_or("tried")?;
    assert_eq!(tried.len(), 2, "{body}");
    assert_eq!(tried[1]["profile"], "vm");
    assert!(
        tried[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("quota used up")),
        "{body}"
    );
    assert_eq!(e.config_file("state")?, "[('hp', 2),\n ('vm', 0)]\n");
    // Every quota used up: 409 no_more_role.
    fs::write(e.server.config.join("state"), "[('hp', 0), ('vm', 0)]\n")?;
    let (status, body) = e.json_upload(&kvm("S9", &mac(9))).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(is_error(&body, "no_more_role"), "{body}");

    let e = env("'*'", 2)?;
    for i in 0..2 {
        let (status, _) = e.json_upload(&kvm(&format!("S{i}"), &mac(i))).await?;
        assert_eq!(status, StatusCode::OK);
    }
    let before = e.config_file("vm.cmdb")?;
    let (status, body) = e.json_upload(&kvm("S9", &mac(9))).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(is_error(&body, "cmdb_exhausted"), "{body}");
    assert_eq!(e.config_file("vm.cmdb")?, before, "nothing written");
    Ok(())
}

#[tokio::test]
async fn a_failure_report_gives_the_install_back_and_marks_the_node_failed() -> Res {
    let e = env("1", 3)?;
    let hw = kvm("S1", "52:54:00:aa:00:01");
    assert_eq!(e.curl_form(&hw).await?.status(), StatusCode::OK);
    assert_eq!(e.config_file("state")?, "[('hp', 2),\n ('vm', 0)]\n");
    let form = Form::new()
        .part("file", Part::text(hw.clone()).file_name("hw.json"))
        .text("failure", "vm");
    let resp = e
        .http
        .post(e.server.url("/upload"))
        .bearer_auth(e.token("KVM-S1-52-54-00-aa-00-01"))
        .header("Accept", "application/json")
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await?;
    assert_eq!(body["quota_returned"], true, "{body}");
    assert_eq!(e.config_file("state")?, "[('hp', 2),\n ('vm', 1)]\n");
    let (_, node) = e.get_json("/nodes/KVM-S1-52-54-00-aa-00-01").await?;
    assert_eq!(node["state"], "failed", "{node}");
    // The failed node installs again and counts again.
    let (status, again) = e.json_upload(&hw).await?;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["var"]["ip"], "10.0.0.1");
    assert_eq!(e.config_file("state")?, "[('hp', 2),\n ('vm', 0)]\n");
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_and_changes_nothing() -> Res {
    let e = env("5", 3)?;
    let state = e.config_file("state")?;
    let post = |body: Vec<u8>| e.http.post(e.server.url("/upload")).body(body).send();
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (
            b"garbage".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_inventory",
        ),
        (b"[1, 2]".to_vec(), StatusCode::BAD_REQUEST, "bad_inventory"),
        (
            b"[('a', 'b', 'c')]".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_inventory",
        ),
        (
            b"{\"file\": 1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_inventory",
        ),
        (
            vec![0xff, 0xfe, b'['],
            StatusCode::BAD_REQUEST,
            "bad_inventory",
        ),
        (Vec::new(), StatusCode::BAD_REQUEST, "missing_file"),
        (
            vec![b' '; 2 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            b"[['disk', 'sda', 'size', '1']]".to_vec(),
            StatusCode::NOT_FOUND,
            "no_match",
        ),
    ];
    for (body, want, code) in cases {
        let resp = post(body).await?;
        assert_eq!(resp.status(), want, "{code}");
        let json: Value = resp.json().await?;
        assert!(is_error(&json, code), "{json}");
    }
    // Multipart: no file, a file too large, a bad failure profile, a broken form.
    let form = Form::new().text("name", "x");
    let resp = e
        .http
        .post(e.server.url("/upload"))
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(is_error(&resp.json().await?, "missing_file"));
    let form = Form::new().part("file", Part::bytes(vec![b' '; 2 * 1024 * 1024]));
    let resp = e
        .http
        .post(e.server.url("/upload"))
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let form = Form::new().text("failure", "../state");
    let resp = e
        .http
        .post(e.server.url("/upload"))
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(is_error(&resp.json().await?, "bad_profile"));
    let resp = e
        .http
        .post(e.server.url("/upload"))
        .header("Content-Type", "multipart/form-data; boundary=XX")
        .body("--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n[")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // The no-match answer says why for each profile.
    let (_, body) = e.json_upload("[['disk', 'sda', 'size', '1']]").await?;
    let tried = body["tried"].as_array().ok_or("tried")?;
    assert_eq!(tried.len(), 2, "{body}");
    assert!(
        tried[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not satisfied")),
        "{body}"
    );
    // Node endpoints.
    let (status, body) = e.get_json("/nodes/..%2Fstate").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = e.get_json("/nodes/nobody").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(is_error(&body, "no_such_node"));
    let (status, body) = e.get_json("/no/such/thing").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(is_error(&body, "no_such_endpoint"));
    for body in ["{", "{\"step\": \"dance\", \"status\": \"started\"}", "[]"] {
        let resp = e
            .http
            .post(e.server.url("/nodes/nobody/events"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        assert!(resp.status().is_client_error(), "{body}: {}", resp.status());
        assert!(is_error(&resp.json().await?, "bad_event"));
    }
    assert_eq!(e.config_file("state")?, state, "nothing changed");
    assert!(!e.server.config.join("vm.cmdb.orig").exists());
    Ok(())
}

#[tokio::test]
async fn progress_events_walk_the_life_cycle() -> Res {
    let e = env("5", 3)?;
    let (status, _) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(status, StatusCode::OK);
    let id = "KVM-S1-52-54-00-aa-00-01";
    for (step, status, want) in [
        ("configure", "started", "configuring"),
        ("install_role", "started", "installing"),
        ("finish", "succeeded", "installed"),
    ] {
        let resp = e
            .http
            .post(e.server.url(&format!("/nodes/{id}/events")))
            .bearer_auth(e.token(id))
            .json(&serde_json::json!({"step": step, "status": status, "message": "ok", "time": 1_700_000_000}))
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await?;
        assert_eq!(body["state"], want, "{body}");
    }
    let (_, node) = e.get_json(&format!("/nodes/{id}")).await?;
    let states: Vec<&str> = node["history"]
        .as_array()
        .ok_or("history")?
        .iter()
        .filter_map(|h| h["state"].as_str())
        .collect();
    assert_eq!(
        states,
        [
            "discovered",
            "matched",
            "configuring",
            "installing",
            "installed"
        ]
    );
    assert_eq!(node["boot"], serde_json::json!({"target": "local"}));
    assert_eq!(node["identity"]["macs"][0], "52:54:00:aa:00:01");
    assert_eq!(node["var"]["ip"], "10.0.0.1");
    let (_, list) = e.get_json("/nodes").await?;
    assert_eq!(list["nodes"][0]["state"], "installed");
    Ok(())
}

/// Once installed, no agent report moves the node (a stray `configure/started` used to take
/// it back to `configuring`, out of the re-install guard's reach), and a failure report gives
/// no install back.
#[tokio::test]
async fn an_installed_node_refuses_agent_moves_and_changes_nothing() -> Res {
    let e = env("5", 3)?;
    let hw = kvm("S1", "52:54:00:aa:00:01");
    let (status, _) = e.json_upload(&hw).await?;
    assert_eq!(status, StatusCode::OK);
    let id = "KVM-S1-52-54-00-aa-00-01";
    let event = |step: &str, status: &str| {
        e.http
            .post(e.server.url(&format!("/nodes/{id}/events")))
            .bearer_auth(e.token(id))
            .json(&serde_json::json!({"step": step, "status": status, "time": 1_700_000_000}))
            .send()
    };
    assert_eq!(event("finish", "succeeded").await?.status(), StatusCode::OK);
    let (_, before) = e.get_json(&format!("/nodes/{id}")).await?;
    let state = e.config_file("state")?;

    let resp = event("configure", "started").await?;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body: Value = resp.json().await?;
    assert!(is_error(&body, "illegal_transition"), "{body}");
    assert_eq!(body["state"], "installed", "{body}");
    assert_eq!(
        body["transition"], "progress configure/started → configuring",
        "{body}"
    );
    assert_eq!(body["reason"], "installed", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("rdeploy nextboot {id} install"))),
        "{body}"
    );
    // Repeats of the end are accepted and move nothing.
    for (step, status) in [("finish", "started"), ("finish", "succeeded")] {
        let resp = event(step, status).await?;
        assert_eq!(resp.status(), StatusCode::OK, "{step}/{status}");
    }
    let resp = event("configure", "failed").await?;
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    let form = Form::new()
        .part("file", Part::text(hw.clone()).file_name("hw.json"))
        .text("failure", "vm");
    let resp = e
        .http
        .post(e.server.url("/upload"))
        .bearer_auth(e.token(id))
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(is_error(&resp.json().await?, "illegal_transition"));
    assert_eq!(e.config_file("state")?, state, "no install given back");

    let (_, after) = e.get_json(&format!("/nodes/{id}")).await?;
    assert_eq!(after["state"], "installed");
    assert_eq!(after["history"], before["history"]);
    assert_eq!(after["boot"], before["boot"]);
    // The re-install guard still holds.
    let (status, body) = e.json_upload(&hw).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(is_error(&body, "already_installed"), "{body}");
    Ok(())
}

#[tokio::test]
async fn records_and_allocations_survive_a_killed_server() -> Res {
    let mut e = env("5", 3)?;
    let (_, first) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    let (_, before) = e.get_json("/nodes/KVM-S1-52-54-00-aa-00-01").await?;
    e.restart()?;
    let (status, after) = e.get_json("/nodes/KVM-S1-52-54-00-aa-00-01").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after, before);
    let (_, second) = e.json_upload(&kvm("S2", "52:54:00:aa:00:02")).await?;
    assert_eq!(second["var"]["ip"], "10.0.0.2");
    let (_, again) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(again["var"], first["var"]);
    Ok(())
}

/// The crash window of issue 11: the server dies after `state` and the CMDB are committed
/// but before the node record is on disk. The agent's retry must not count the install
/// twice: the ledger committed with them says the machine holds it.
#[tokio::test]
async fn a_retry_after_losing_the_node_record_does_not_count_twice() -> Res {
    let mut e = env("5", 3)?;
    let (_, first) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert!(e.config_file("state")?.contains("('vm', 4)"));
    e.server.child.kill()?;
    e.server.child.wait()?;
    // Every node record gone, as if the crash came before they reached the disk.
    lose_node_records(&e.server.data)?;
    e.restart()?;
    let (status, again) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["var"], first["var"]);
    assert!(
        e.config_file("state")?.contains("('vm', 4)"),
        "counted twice"
    );
    // A second machine still counts once and gets the next entry.
    let (_, other) = e.json_upload(&kvm("S2", "52:54:00:aa:00:02")).await?;
    assert_eq!(other["var"]["ip"], "10.0.0.2");
    assert!(e.config_file("state")?.contains("('vm', 3)"));
    Ok(())
}

/// Removes every node record of a data dir (not its id, not the config dir's ledger).
fn lose_node_records(data: &std::path::Path) -> Res {
    let nodes = data.join("nodes");
    if nodes.is_dir() {
        fs::remove_dir_all(&nodes)?;
    }
    for db in ["rdeploy.db", "rdeploy.db-wal", "rdeploy.db-shm"] {
        let _ = fs::remove_file(data.join(db));
    }
    Ok(())
}

#[tokio::test]
async fn concurrent_uploads_never_share_an_entry() -> Res {
    let e = env("'*'", 200)?;
    let mut tasks = Vec::new();
    for i in 0..150 {
        let http = e.http.clone();
        let url = e.server.url("/upload");
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .header("Accept", "application/json")
                .body(kvm(&format!("S{i}"), &mac(i)))
                .send()
                .await?;
            let body: Value = resp.json().await?;
            Ok::<_, reqwest::Error>(body["var"]["ip"].as_str().unwrap_or("").to_owned())
        }));
    }
    let mut ips = HashSet::new();
    for t in tasks {
        let ip = t.await??;
        assert!(ip.starts_with("10.0.0."), "{ip}");
        assert!(ips.insert(ip.clone()), "{ip} given twice");
    }
    let cmdb = e.config_file("vm.cmdb")?;
    assert_eq!(cmdb.matches("'used': 1").count(), 150);
    let (_, health) = e.get_json("/healthz").await?;
    let commits = health["config"]["commits"].as_u64().ok_or("commits")?;
    assert!(commits <= 150, "{health}");
    Ok(())
}

/// Polls `/healthz` until `pred` holds or the deadline passes.
async fn wait_health(e: &Env, pred: impl Fn(&Value) -> bool) -> Res<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, h) = e.get_json("/healthz").await?;
        if pred(&h) {
            return Ok(h);
        }
        if Instant::now() > deadline {
            return Err(format!("health never became as expected: {h}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn operator_edits_are_picked_up_and_broken_edits_rejected_while_serving() -> Res {
    let e = env("10", 5)?;
    let (status, _) = e.json_upload(&kvm("S1", &mac(1))).await?;
    assert_eq!(status, StatusCode::OK);
    // Live edit: vm now wants a 40 GB disk, so a 20 GB KVM no longer matches.
    let specs = e.server.config.join("vm.specs");
    fs::write(
        &specs,
        "[('system', 'product', 'name', 'KVM'), ('disk', '$disk', 'size', 'ge(40)'), ('network', '$eth', 'serial', '$mac')]\n",
    )?;
    let (status, body) = e.json_upload(&kvm("S2", &mac(2))).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["tried"][1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ge(40)")),
        "{body}"
    );
    // Broken edit: the last good specs stay in use, /healthz shows file:line.
    fs::write(
        &specs,
        "[('system', 'product', 'name', 'KVM'),\n ('disk', '$disk', 'size')]\n",
    )?;
    let h = wait_health(&e, |h| h["status"] == "degraded").await?;
    let problem = &h["config"]["problems"][0];
    assert_eq!(problem["file"], "vm.specs", "{h}");
    assert!(
        problem["error"]
            .as_str()
            .is_some_and(|m| m.contains("vm.specs:2:")),
        "{h}"
    );
    assert_eq!(problem["using_last_good"], true);
    let (status, body) = e.json_upload(&kvm("S3", &mac(3))).await?;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "still the ge(40) specs: {body}"
    );
    // Fixed: served again, health back to ok.
    fs::write(&specs, "[('system', 'product', 'name', 'KVM'), ('disk', '$disk', 'size', 'ge(10)'), ('network', '$eth', 'serial', '$mac')]\n")?;
    let (status, body) = e.json_upload(&kvm("S4", &mac(4))).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_health(&e, |h| h["status"] == "ok").await?;
    // A broken state file is never overwritten: uploads that must count get 503.
    fs::write(e.server.config.join("state"), "[('hp', 2), ('vm', 3)\n")?;
    let (status, body) = e.json_upload(&kvm("S5", &mac(5))).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(is_error(&body, "config_broken"), "{body}");
    assert_eq!(e.config_file("state")?, "[('hp', 2), ('vm', 3)\n");
    Ok(())
}

async fn get_text(e: &Env, path: &str) -> Res<(StatusCode, String)> {
    let resp = e.http.get(e.server.url(path)).send().await?;
    let status = resp.status();
    Ok((status, resp.text().await?))
}

/// A server with a TFTP root holding `local.prof` and a `rescue` boot profile.
fn boot_env(ip: &str) -> Res<(Env, tempfile::TempDir)> {
    let config = config("5", 3)?;
    fs::write(
        config.path().join("vm.cmdb"),
        format!("[{{'ip': '{ip}', 'hostname': 'vm1'}}, {{'ip': '10.0.0.2', 'hostname': 'vm2'}}]\n"),
    )?;
    let tftp = tempfile::tempdir()?;
    let profiles = tftp.path().join("pxelinux.cfg/profiles");
    fs::create_dir_all(&profiles)?;
    fs::write(
        profiles.join("local.prof"),
        "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n",
    )?;
    fs::write(
        profiles.join("rescue.prof"),
        "DEFAULT rescue\nLABEL rescue\n  KERNEL rescue/vmlinuz\n",
    )?;
    fs::write(
        profiles.join("rescue.ipxe"),
        "#!ipxe\nkernel http://x/rescue\nboot\n",
    )?;
    let data = tempfile::tempdir()?;
    let extra = vec!["--tftp-root".to_owned(), tftp.path().display().to_string()];
    let server = Server::start_with(config.path(), data.path(), &extra)?;
    Ok((
        Env {
            _config: config,
            _data: data,
            server,
            http: reqwest::Client::new(),
            tokens: Default::default(),
        },
        tftp,
    ))
}

#[tokio::test]
async fn the_success_report_flips_to_local_in_ipxe_and_pxelinux() -> Res {
    let (mut e, tftp) = boot_env("10.18.1.18")?;
    let (status, generic) = get_text(&e, "/boot.ipxe").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        generic.contains(&format!("chain {}/boot/${{net0/mac}}.ipxe", e.server.base)),
        "{generic}"
    );
    // Unknown machines get the installer.
    let (_, unknown) = get_text(&e, "/boot/52:54:00:99:99:99.ipxe").await?;
    assert!(
        unknown.contains(&format!("rdeploy.server={}", e.server.base)),
        "{unknown}"
    );
    let (status, _) = get_text(&e, "/boot/not-a-mac.ipxe").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(status, StatusCode::OK);
    let by_mac = tftp.path().join("pxelinux.cfg/01-52-54-00-aa-00-01");
    let by_ip = tftp.path().join("pxelinux.cfg/0A120112");
    assert!(fs::read_to_string(&by_mac)?.contains("KERNEL rdeploy/vmlinuz"));
    assert!(fs::read_to_string(&by_ip)?.contains("KERNEL rdeploy/vmlinuz"));
    let (_, install) = get_text(&e, "/boot/52-54-00-AA-00-01.ipxe").await?;
    assert!(install.contains("kernel "), "{install}");

    let resp = e
        .http
        .post(e.server.url("/nodes/KVM-S1-52-54-00-aa-00-01/events"))
        .bearer_auth(e.token("KVM-S1-52-54-00-aa-00-01"))
        .json(&serde_json::json!({"step": "finish", "status": "succeeded", "time": "2024-05-01T12:00:00Z"}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, local) = get_text(&e, "/boot/52:54:00:aa:00:01.ipxe").await?;
    assert!(
        local.ends_with("exit\n") && !local.contains("kernel"),
        "{local}"
    );
    assert_eq!(
        fs::read_to_string(&by_mac)?,
        "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n"
    );
    assert_eq!(
        fs::read_to_string(&by_ip)?,
        "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n"
    );
    // Uploading again is refused: no silent re-install.
    let (status, body) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(is_error(&body, "already_installed"), "{body}");
    // Booting the network again is answered local, with an alert.
    let (_, node) = e.get_json("/nodes/KVM-S1-52-54-00-aa-00-01").await?;
    let last = &node["events"]
        .as_array()
        .ok_or("events")?
        .last()
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["kind"], "alert", "{node}");
    // Only the operator sends it back to install; survives a restart.
    let resp = e
        .http
        .post(e.server.url("/nodes/KVM-S1-52-54-00-aa-00-01/boot"))
        .json(&serde_json::json!({"target": "install"}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(fs::read_to_string(&by_mac)?.contains("KERNEL rdeploy/vmlinuz"));
    e.restart()?;
    let (_, again) = get_text(&e, "/boot/52:54:00:aa:00:01.ipxe").await?;
    assert!(again.contains("kernel "), "{again}");
    let (status, body) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(status, StatusCode::OK, "reinstall asked for: {body}");
    let resp = e
        .http
        .post(e.server.url("/nodes/KVM-S1-52-54-00-aa-00-01/boot"))
        .json(&serde_json::json!({"target": "../../etc/passwd"}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn pxe_manager_and_pxe_pilot_endpoints() -> Res {
    // The CMDB gives the node 127.0.0.1, so this test's requests come from it.
    let (e, tftp) = boot_env("127.0.0.1")?;
    let (status, body) = e.get_json("/profile").await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get_text(&e, "/profile").await?.1, "install\n");
    let (status, text) = get_text(&e, "/localboot").await?;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(get_text(&e, "/profile").await?.1, "local\n");
    let (_, node) = e.get_json("/nodes/KVM-S1-52-54-00-aa-00-01").await?;
    assert_eq!(node["state"], "installed", "{node}");

    let (_, configs) = e.get_json("/configurations").await?;
    assert_eq!(
        configs,
        serde_json::json!([{"name": "install"}, {"name": "local"}, {"name": "rescue"}])
    );
    let resp = e
        .http
        .put(e.server.url("/configurations/rescue/deploy"))
        .json(&serde_json::json!({"hosts": [{"macAddress": "52:54:00:AA:00:01"}, {"macAddress": "52:54:00:bb:00:09"}]}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await?;
    assert_eq!(
        body["hosts"][0]["node"], "KVM-S1-52-54-00-aa-00-01",
        "{body}"
    );
    assert_eq!(body["hosts"][1]["node"], Value::Null, "{body}");
    assert_eq!(
        get_text(&e, "/boot/52:54:00:aa:00:01.ipxe").await?.1,
        "#!ipxe\nkernel http://x/rescue\nboot\n"
    );
    assert_eq!(
        get_text(&e, "/boot/52:54:00:bb:00:09.ipxe").await?.1,
        "#!ipxe\nkernel http://x/rescue\nboot\n"
    );
    assert!(
        fs::read_to_string(tftp.path().join("pxelinux.cfg/01-52-54-00-aa-00-01"))?
            .contains("DEFAULT rescue")
    );
    // A MAC that never booted gets its PXELINUX file at once: its first PXE boot obeys.
    let unknown = tftp.path().join("pxelinux.cfg/01-52-54-00-bb-00-09");
    assert!(fs::read_to_string(&unknown)?.contains("DEFAULT rescue"));
    let (status, _) = get_text(&e, "/localboot/52:54:00:bb:00:09").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(get_text(&e, "/boot/52:54:00:bb:00:09.ipxe")
        .await?
        .1
        .ends_with("exit\n"));
    assert!(fs::read_to_string(&unknown)?.contains("LOCALBOOT 0"));
    // PXE Pilot's README sends the JSON with curl's default form Content-Type.
    let resp = e
        .http
        .put(e.server.url("/configurations/install/deploy"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"{"hosts":[{"macAddress":"52:54:00:bb:00:09"}]}"#)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(fs::read_to_string(&unknown)?.contains("rdeploy.server="));
    // Bad input.
    let put = |path: &str, body: &str| {
        e.http
            .put(e.server.url(path))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let resp = put("/configurations/nope/deploy", r#"{"hosts": []}"#).await?;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(is_error(&resp.json().await?, "no_such_configuration"));
    let resp = put(
        "/configurations/rescue/deploy",
        r#"{"hosts": [{"macAddress": "zz"}]}"#,
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(is_error(&resp.json().await?, "bad_mac"));
    let resp = put("/configurations/rescue/deploy", r#"{"hosts": "#).await?;
    assert!(resp.status().is_client_error());
    assert!(is_error(&resp.json().await?, "bad_deploy"));
    let (status, _) = get_text(&e, "/localboot/nonsense").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // local.prof is mandatory (PXE Manager): its absence shows in /healthz.
    let (_, h) = e.get_json("/healthz").await?;
    assert_eq!(h["status"], "ok", "{h}");
    fs::remove_file(tftp.path().join("pxelinux.cfg/profiles/local.prof"))?;
    let (status, h) = e.get_json("/healthz").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(
        h["boot"]["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("local.prof")),
        "{h}"
    );
    Ok(())
}

#[tokio::test]
async fn admission_control_caps_installs_and_metrics_count_them() -> Res {
    let config = config("'*'", 10)?;
    let data = tempfile::tempdir()?;
    let server = Server::start_with(
        config.path(),
        data.path(),
        &["--max-installs".to_owned(), "2".to_owned()],
    )?;
    let e = Env {
        _config: config,
        _data: data,
        server,
        http: reqwest::Client::new(),
        tokens: Default::default(),
    };
    for i in 0..2 {
        let (status, body) = e.json_upload(&kvm(&format!("S{i}"), &mac(i))).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let resp = e
        .http
        .post(e.server.url("/upload"))
        .body(kvm("S2", &mac(2)))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("15")
    );
    assert!(is_error(&resp.json().await?, "install_limit"));
    // A node already installing may retry.
    let (status, _) = e.json_upload(&kvm("S0", &mac(0))).await?;
    assert_eq!(status, StatusCode::OK);
    // One finishes: a slot is free.
    let resp = e
        .http
        .post(e.server.url("/nodes/KVM-S0-52-54-00-00-00-00/events"))
        .bearer_auth(e.token("KVM-S0-52-54-00-00-00-00"))
        .json(&serde_json::json!({"step": "finish", "status": "succeeded", "time": 1}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = e.json_upload(&kvm("S2", &mac(2))).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, metrics) = get_text(&e, "/metrics").await?;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "rdeploy_uploads_total 5",
        "rdeploy_matches_total{profile=\"vm\"} 4",
        "rdeploy_upload_refusals_total{code=\"install_limit\"} 1",
        "rdeploy_nodes{state=\"installed\"} 1",
        "rdeploy_nodes{state=\"matched\"} 2",
        "rdeploy_installs_in_flight 2",
        "rdeploy_allocation_seconds_count 4",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from:\n{metrics}"
        );
    }
    Ok(())
}

fn rdeploy(args: &[&str], env: &[(&str, &str)]) -> Res<(i32, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_rdeploy"))
        .args(args)
        .env_remove("RDEPLOY_TOKEN")
        .env_remove("RDEPLOY_TOKEN_FILE")
        .env_remove("RDEPLOY_SERVER")
        .envs(env.iter().copied())
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn the_operator_cli_talks_to_the_running_server_with_a_token() -> Res {
    let config = config("5", 3)?;
    let data = tempfile::tempdir()?;
    let token = data.path().join("token");
    fs::write(&token, "s3cret\n")?;
    let server = Server::start_with(
        config.path(),
        data.path(),
        &["--admin-token-file".to_owned(), token.display().to_string()],
    )?;
    let e = Env {
        _config: config,
        _data: data,
        server,
        http: reqwest::Client::new(),
        tokens: Default::default(),
    };
    let (status, _) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(status, StatusCode::OK);
    let url = e.server.base.clone();
    let id = "KVM-S1-52-54-00-aa-00-01";

    let (code, out, err) = rdeploy(&["nodes", "--server", &url], &[])?;
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("NODE")
            && h.contains(" ROLE ")
            && h.contains("LAST EVENT")),
        "{out}"
    );
    let row = lines.next().ok_or("no node row")?;
    assert!(
        row.starts_with(id) && row.contains("matched") && row.contains("10.0.0.1"),
        "{out}"
    );

    let (code, out, _) = rdeploy(&["node", "show", id, "--server", &url], &[])?;
    assert_eq!(code, 0);
    let node: Value = serde_json::from_str(&out)?;
    assert_eq!(node["profile"], "vm");

    // Changes need the token.
    let (code, _, err) = rdeploy(&["nextboot", id, "local", "--server", &url], &[])?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unauthorized"), "{err}");
    let resp = e
        .http
        .post(e.server.url(&format!("/nodes/{id}/boot")))
        .json(&serde_json::json!({"target": "local"}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (code, out, err) = rdeploy(
        &["localboot", id],
        &[("RDEPLOY_SERVER", &url), ("RDEPLOY_TOKEN", "s3cret")],
    )?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{id}: next boot local\n"));
    assert!(get_text(&e, "/boot/52:54:00:aa:00:01.ipxe")
        .await?
        .1
        .ends_with("exit\n"));

    let tf = token.display().to_string();
    let (code, _, err) = rdeploy(
        &[
            "system",
            "add",
            "rack1-u12",
            "52:54:00:BB:00:01",
            "--server",
            &url,
            "--token-file",
            &tf,
        ],
        &[],
    )?;
    assert_eq!(code, 0, "{err}");
    assert!(get_text(&e, "/boot/52:54:00:bb:00:01.ipxe")
        .await?
        .1
        .contains("kernel "));
    let (code, _, err) = rdeploy(
        &[
            "localboot",
            "rack1-u12",
            "--server",
            &url,
            "--token-file",
            &tf,
        ],
        &[],
    )?;
    assert_eq!(code, 0, "{err}");
    assert!(get_text(&e, "/boot/52:54:00:bb:00:01.ipxe")
        .await?
        .1
        .ends_with("exit\n"));
    let (code, _, err) = rdeploy(
        &[
            "nextboot",
            "nobody",
            "install",
            "--server",
            &url,
            "--token-file",
            &tf,
        ],
        &[],
    )?;
    assert_eq!(code, 2);
    assert!(err.contains("no_such_node"), "{err}");

    let (code, out, err) = rdeploy(&["quota", "--server", &url], &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["vm", "4", "1/3", "1"]),
        "{out}"
    );

    let (code, out, _) = rdeploy(
        &[
            "dnsmasq-config",
            "--subnet",
            "192.168.122.0",
            "--public-url",
            "http://192.168.122.1:8080/",
        ],
        &[],
    )?;
    assert_eq!(code, 0);
    assert!(out.contains("dhcp-range=192.168.122.0,proxy"), "{out}");
    assert!(
        out.contains("dhcp-boot=tag:ipxe,http://192.168.122.1:8080/boot.ipxe"),
        "{out}"
    );
    Ok(())
}

#[tokio::test]
async fn a_server_killed_mid_storm_keeps_every_answer_it_gave() -> Res {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let mut e = env("'*'", 400)?;
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..300 {
        let http = e.http.clone();
        let url = e.server.url("/upload");
        let answered = Arc::clone(&answered);
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .header("Accept", "application/json")
                .body(kvm(&format!("S{i}"), &mac(i)))
                .send()
                .await
                .ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body: Value = resp.json().await.ok()?;
            answered.fetch_add(1, Ordering::SeqCst);
            body["var"]["ip"].as_str().map(str::to_owned)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.load(Ordering::SeqCst) < 30 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    e.restart()?; // SIGKILL in the middle of the storm, then a new server on the same files
    let mut before = Vec::new();
    for t in tasks {
        before.push(t.await?);
    }
    let got = before.iter().filter(|b| b.is_some()).count();
    assert!(got >= 30, "only {got} answered before the kill");
    // Finish the storm: everyone uploads again; those answered keep their entry.
    let mut ips = HashSet::new();
    for (i, earlier) in before.iter().enumerate() {
        let (status, body) = e.json_upload(&kvm(&format!("S{i}"), &mac(i))).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        let ip = body["var"]["ip"].as_str().ok_or("no ip")?.to_owned();
        if let Some(old) = earlier {
            assert_eq!(&ip, old, "node {i} lost its entry");
        }
        assert!(ips.insert(ip.clone()), "{ip} handed out twice");
    }
    // Every file parses; each used entry belongs to one machine.
    let cmdb = rdeploy_cmdb::Cmdb::parse(&e.config_file("vm.cmdb")?)?.ok_or("empty CMDB")?;
    let used: Vec<&rdeploy_specs::Value> = cmdb
        .entries
        .iter()
        .filter(|x| x.dict_get("used").is_some())
        .collect();
    assert_eq!(
        used.len(),
        300,
        "answered before the kill but not committed, or committed twice"
    );
    let macs: HashSet<String> = used
        .iter()
        .filter_map(|x| {
            x.dict_get("mac")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(macs.len(), 300);
    rdeploy_cmdb::State::parse(&e.config_file("state")?).map_err(|p| p.to_string())?;
    assert!(!e.server.config.join(".rdeploy-journal").exists());
    for entry in fs::read_dir(e.server.data.join("nodes"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "json") {
            serde_json::from_str::<Value>(&fs::read_to_string(&path)?)?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn omf_boot_images_and_agent_logs() -> Res {
    let e = env("5", 3)?;
    let (status, _) = e.json_upload(&kvm("S1", "52:54:00:aa:00:01")).await?;
    assert_eq!(status, StatusCode::OK);
    let id = "KVM-S1-52-54-00-aa-00-01";
    let (status, body) = e
        .get_json(&format!("/pxe/clearBootImage?node={id}"))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(get_text(&e, "/boot/52:54:00:aa:00:01.ipxe")
        .await?
        .1
        .ends_with("exit\n"));
    let (status, _) = e
        .get_json("/pxe/setBootImage?node=52:54:00:aa:00:01")
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(get_text(&e, "/boot/52:54:00:aa:00:01.ipxe")
        .await?
        .1
        .contains("kernel "));
    let (status, body) = e.get_json("/pxe/setBootImage").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(is_error(&body, "missing_node"));
    let (status, body) = e.get_json("/pxe/setBootImage?node=..%2Fetc").await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let gz = vec![0x1f, 0x8b, 8, 0, 1, 2, 3];
    let form = Form::new().part("file", Part::bytes(gz.clone()).file_name("log.gz"));
    let resp = e
        .http
        .post(e.server.url(&format!("/nodes/{id}/log")))
        .bearer_auth(e.token(id))
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        fs::read(e.server.data.join(format!("nodes/{id}.log.gz")))?,
        gz
    );
    let resp = e
        .http
        .post(e.server.url(&format!("/nodes/{id}/log")))
        .bearer_auth(e.token(id))
        .body("plain log\n")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        fs::read_to_string(e.server.data.join(format!("nodes/{id}.log")))?,
        "plain log\n"
    );
    let resp = e
        .http
        .post(e.server.url("/nodes/nobody/log"))
        .body("x")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = e
        .http
        .post(e.server.url(&format!("/nodes/{id}/log")))
        .bearer_auth(e.token(id))
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let (_, node) = e.get_json(&format!("/nodes/{id}")).await?;
    assert!(
        node["events"]
            .as_array()
            .ok_or("events")?
            .iter()
            .any(|ev| ev["kind"] == "log"),
        "{node}"
    );
    // The server restarts with the logs beside the records.
    let mut e = e;
    e.restart()?;
    let (status, _) = e.get_json(&format!("/nodes/{id}")).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}
