//! `rdeploy serve` under hostile inputs and slow clients (issue 11): the real binary on a
//! loopback port, real HTTP, real files, real restarts.

use std::path::Path;

use anyhow::{Context, Result};
use rdeploy_tests::Server;
use serde_json::Value;

/// A config dir: profile `vm` (10 installs) binds a benchmark score into its CMDB entry.
fn config(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("state"), "[('vm', 10)]\n")?;
    std::fs::write(
        dir.join("vm.specs"),
        "[('system', 'product', 'serial', '$serial'),\n ('bench', 'cpu', 'score', '$score')]\n",
    )?;
    std::fs::write(
        dir.join("vm.cmdb"),
        "generate({'ip': '10.0.0.1-9', 'hostname': 'vm1-9'})\n",
    )?;
    std::fs::write(dir.join("vm.configure"), "// vm\n")?;
    Ok(())
}

fn inventory(serial: &str, score: &str) -> String {
    format!(r#"[["system", "product", "serial", "{serial}"], ["bench", "cpu", "score", {score}]]"#)
}

/// `POST /upload` with a raw body, JSON answer: (status, body).
fn upload(server: &Server, body: &str) -> Result<(u16, Value)> {
    let resp = reqwest::blocking::Client::new()
        .post(server.url("/upload"))
        .header("Accept", "application/json")
        .body(body.to_owned())
        .send()
        .context("POST /upload")?;
    let status = resp.status().as_u16();
    let text = resp.text()?;
    let json = serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
    Ok((status, json))
}

/// Issue 11, item 2: `1e999999` and `-9223372036854775808` bound by a `$var` once made a
/// CMDB that rdeploy could not read after a restart (machines then got no IP). They are
/// written in a form that reads back; a value nested too deep is refused with its place.
#[test]
fn extreme_values_bound_into_a_cmdb_survive_a_restart() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (config_dir, data) = (tmp.path().join("config"), tmp.path().join("data"));
    config(&config_dir)?;
    let server = Server::start(&config_dir, &data, &[])?;
    let (status, first) = upload(&server, &inventory("S1", "1e999999"))?;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["var"]["ip"], "10.0.0.1");
    let (status, second) = upload(&server, &inventory("S2", "-9223372036854775808"))?;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["var"]["score"], i64::MIN);
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let (status, refused) = upload(&server, &inventory("S3", &deep))?;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "bad_inventory");
    assert!(
        refused["message"].as_str().unwrap_or("").contains("1:"),
        "the refusal says where: {refused}"
    );
    drop(server);

    let cmdb = std::fs::read_to_string(config_dir.join("vm.cmdb"))?;
    assert!(cmdb.contains("'score': 1e999"), "{cmdb}");
    assert!(cmdb.contains("'score': -9223372036854775808"), "{cmdb}");
    let server = Server::start(&config_dir, &data, &[])?;
    let health = server.get_json("/healthz")?;
    assert_eq!(health["status"], "ok", "{health}");
    let (status, third) = upload(&server, &inventory("S4", "'7'"))?;
    assert_eq!(status, 200, "{third}");
    assert_eq!(
        third["var"]["ip"], "10.0.0.3",
        "the CMDB is still used: {third}"
    );
    Ok(())
}

/// A config dir with a profile whose spec needs backtracking (a backreference), before
/// an ordinary one.
fn costly_config(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("state"), "[('bench', 5), ('vm', 10)]\n")?;
    std::fs::write(
        dir.join("bench.specs"),
        "[('system', 'product', 'serial', '$serial'),\n ('bench', '$b', 'score', 'regexp(^(\\\\w+\\\\s?)*\\\\1$)')]\n",
    )?;
    std::fs::write(dir.join("bench.configure"), "// bench\n")?;
    std::fs::write(
        dir.join("vm.specs"),
        "[('system', 'product', 'serial', '$serial')]\n",
    )?;
    std::fs::write(dir.join("vm.cmdb"), "generate({'ip': '10.0.0.1-9'})\n")?;
    std::fs::write(dir.join("vm.configure"), "// vm\n")?;
    Ok(())
}

/// Issue 11, item 3: a pattern that backtracks, tried on every line of a large upload, once
/// held the writer for minutes. The upload is refused (`422 too_costly`, naming the
/// profile and spec line) before it reaches the writer; others go on being allocated;
/// `rdeploy match` refuses it the same way (exit 3).
#[test]
fn a_costly_upload_is_refused_without_reaching_the_writer() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (config_dir, data) = (tmp.path().join("config"), tmp.path().join("data"));
    costly_config(&config_dir)?;
    let mut lines = vec![r#"["system", "product", "serial", "EVIL"]"#.to_owned()];
    for i in 0..2_000 {
        lines.push(format!(
            r#"["bench", "b{i}", "score", "aaaa aaaa aaaa aaaa aaaa aaaa aaaa!"]"#
        ));
    }
    let evil = format!("[{}]", lines.join(",\n"));
    let hw = tmp.path().join("evil.json");
    std::fs::write(&hw, &evil)?;

    let server = Server::start(&config_dir, &data, &[])?;
    let uploads_before = server.get_json("/healthz")?["config"]["uploads"].clone();
    let (status, refused) = upload(&server, &evil)?;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"], "too_costly");
    let message = refused["message"].as_str().unwrap_or("");
    assert!(
        message.contains("profile 'bench', spec #2") && message.contains("(line 2)"),
        "{message}"
    );
    let health = server.get_json("/healthz")?;
    assert_eq!(
        health["config"]["uploads"], uploads_before,
        "the writer never saw it: {health}"
    );
    let (status, ok) = upload(
        &server,
        r#"[["system", "product", "serial", "S1"], ["bench", "b", "score", "xyz"]]"#,
    )?;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["profile"], "vm");
    let node = server.get_json("/nodes/unknown-EVIL")?;
    drop(server);

    let out = rdeploy_tests::run_binary(
        "rdeploy",
        &[
            "match",
            "--config-dir",
            &config_dir.display().to_string(),
            &hw.display().to_string(),
        ],
    )?;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("spec #2"), "{}", out.stderr);
    assert!(node.is_object(), "{node}");
    Ok(())
}

/// Uploads an inventory to the demo-like `vm` profile and returns the node id.
/// Uploads a machine: its node id and its node token (for the calls that change it).
fn a_node(server: &Server, serial: &str) -> Result<(String, String)> {
    let (status, body) = upload(server, &inventory(serial, "'1'"))?;
    anyhow::ensure!(status == 200, "upload: {body}");
    let id = body["node"].as_str().context("no node id")?.to_owned();
    let token = body["token"].as_str().context("no node token")?.to_owned();
    Ok((id, token))
}

/// Issue 11, item 4: 60 events of 1 MB each once made a 60 MB record (and 200 MB more of
/// server memory). Each is accepted, and the record stays small: messages are cut, older
/// events compacted, the oldest dropped. A log over the limit is `413 too_large`, sent raw
/// or as a form.
#[test]
fn an_event_flood_leaves_a_small_record_and_big_logs_are_too_large() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (config_dir, data) = (tmp.path().join("config"), tmp.path().join("data"));
    config(&config_dir)?;
    let server = Server::start(&config_dir, &data, &[])?;
    let (id, token) = a_node(&server, "FLOOD")?;
    let http = reqwest::blocking::Client::new();
    let big = "x".repeat(1_000_000);
    for i in 0..60 {
        let event = serde_json::json!({
            "step": "detect", "status": "started", "time": 1_700_000_000 + i, "message": big,
        });
        let resp = http
            .post(server.url(&format!("/nodes/{id}/events")))
            .bearer_auth(&token)
            .json(&event)
            .send()?;
        assert_eq!(resp.status().as_u16(), 200, "event {i}: {}", resp.text()?);
    }
    // The record is a row of the store: as the server answers it, it stays small.
    let node = server.get_json(&format!("/nodes/{id}"))?;
    let record = node.to_string().len();
    assert!(record < 300 * 1024, "the record is {record} bytes");
    let events = node["events"].as_array().map_or(0, Vec::len);
    assert!(events > 60, "{events}");

    let log = vec![b'l'; 2 * 1024 * 1024];
    let raw = http
        .post(server.url(&format!("/nodes/{id}/log")))
        .bearer_auth(&token)
        .body(log.clone())
        .send()?;
    assert_eq!(raw.status().as_u16(), 413);
    let raw: Value = raw.json()?;
    assert_eq!(raw["error"], "too_large", "{raw}");
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(log).file_name("agent.log"),
    );
    let form = http
        .post(server.url(&format!("/nodes/{id}/log")))
        .bearer_auth(&token)
        .multipart(form)
        .send()?;
    assert_eq!(form.status().as_u16(), 413);
    let form: Value = form.json()?;
    assert_eq!(form["error"], "too_large", "{form}");
    Ok(())
}

/// Opens a connection that sends the start of a request and then nothing.
fn half_sent(server: &Server, what: &[u8]) -> Result<std::net::TcpStream> {
    use std::io::Write as _;
    let addr = server.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr)?;
    s.write_all(what)?;
    Ok(s)
}

/// Reads until the server closes the connection (a safety bound of 60 s keeps a broken
/// server from hanging the test); returns what it sent.
fn until_closed(mut s: std::net::TcpStream) -> Result<String> {
    use std::io::Read as _;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => Ok(String::from_utf8_lossy(&got).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Ok(String::from_utf8_lossy(&got).into_owned())
        }
        Err(e) => Err(anyhow::anyhow!("the server kept the connection open: {e}")),
    }
}

/// Issue 11, item 5: half-sent requests once held descriptors forever; 1,100 of them
/// exhausted the descriptors and commits failed. Connections are capped below the
/// descriptor limit and slow clients are cut off: under `ulimit -n 200`, a hundred stalled
/// connections neither stop uploads nor make a commit fail, and each is closed (a stalled
/// body with `408 request_timeout`).
#[test]
fn stalled_clients_are_cut_off_and_never_starve_commits() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (config_dir, data) = (tmp.path().join("config"), tmp.path().join("data"));
    config(&config_dir)?;
    let server =
        Server::start_with_nofile(&config_dir, &data, &["--client-timeout", "500ms"], 200)?;
    let mut stalled = Vec::new();
    for i in 0..100 {
        let start: &[u8] = if i % 2 == 0 {
            b"POST /upload HTTP/1.1\r\nHost: x\r\n"
        } else {
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[["
        };
        stalled.push((i, half_sent(&server, start)?));
    }
    for i in 0..5 {
        let (status, body) = upload(&server, &inventory(&format!("S{i}"), "'1'"))?;
        assert_eq!(status, 200, "{body}");
    }
    let fds = server.open_fds()?;
    assert!(fds < 200, "{fds} descriptors open");
    for (i, s) in stalled {
        let answer = until_closed(s)?;
        if i % 2 == 1 && !answer.is_empty() {
            assert!(
                answer.contains("408") && answer.contains("request_timeout"),
                "{answer}"
            );
        }
    }
    let health = server.get_json("/healthz")?;
    assert_eq!(health["config"]["last_error"], Value::Null, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    Ok(())
}

/// Issue 11, item 7: `let a=[]; for i in 0..6000 { a=[a]; } print(a);` once overflowed the
/// stack (abort, exit 134) in `rdeploy check` and in the agent, and the node stayed
/// `configuring`. Both now stop with a limit error: `check` exits 2 naming the line, the
/// agent reports the failure and the node is `failed`.
#[test]
fn a_script_nesting_values_too_deep_fails_cleanly_and_is_reported() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config_dir = tmp.path().join("config");
    rdeploy_tests::copy_dir(
        &rdeploy_tests::workspace_path("examples/config"),
        &config_dir,
    )?;
    std::fs::write(
        config_dir.join("kvm.configure"),
        "let a = [];\nfor i in 0..6000 { a = [a]; }\nprint(a);\n",
    )?;
    let hw = rdeploy_tests::workspace_path("examples/hw/kvm.json");
    let (config_s, hw_s) = (config_dir.display().to_string(), hw.display().to_string());
    let check = rdeploy_tests::run_binary("rdeploy", &["check", "--config-dir", &config_s, &hw_s])?;
    assert_eq!(check.code, Some(2), "{check:?}");
    assert!(
        check
            .stdout
            .contains("kvm.configure:3:1: error: limit exceeded"),
        "{}",
        check.stdout
    );

    let server = Server::start(&config_dir, &tmp.path().join("data"), &[])?;
    let cmdline = tmp.path().join("cmdline");
    std::fs::write(&cmdline, "BOOT_IMAGE=/vmlinuz quiet\n")?;
    let agent = rdeploy_tests::run_binary(
        "rdeploy-agent",
        &[
            "run",
            "--server",
            &server.base,
            "--hw",
            &hw_s,
            "--cmdline",
            &cmdline.display().to_string(),
            "--retry-for",
            "20s",
            "--dry-run",
        ],
    )?;
    assert_eq!(agent.code, Some(1), "{agent:?}");
    assert!(agent.stderr.contains("limit exceeded"), "{}", agent.stderr);
    let node = server.get_json("/nodes/KVM-NotSpecified-52-54-00-12-34-56")?;
    assert_eq!(node["state"], "failed", "{node:#}");
    let failed = node["events"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["status"] == "failed"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed["step"], "configure", "{node:#}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or("")
            .contains("limit exceeded"),
        "{failed}"
    );
    Ok(())
}

/// A raw request; returns the status line's code and the body.
fn raw_request(server: &Server, request: &[u8]) -> Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let addr = server.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    s.write_all(request)?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status line in {answer:?}"))?;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((code, body))
}

/// Issue 11, item 10: every error is JSON with a stable code (a wrong method, a URI or
/// headers too large, a bad query, a path that is not UTF-8, an event time that is not a
/// time), and temporary files a crash left in the data dir are removed at start.
#[test]
fn every_error_is_json_and_crash_leftovers_are_removed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (config_dir, data) = (tmp.path().join("config"), tmp.path().join("data"));
    config(&config_dir)?;
    for dir in ["nodes", "hw"] {
        std::fs::create_dir_all(data.join(dir))?;
        std::fs::write(data.join(dir).join(".x.json.4242.1.rdeploy-tmp"), "half")?;
    }
    let server = Server::start(&config_dir, &data, &[])?;
    for dir in ["nodes", "hw"] {
        let left: Vec<_> = std::fs::read_dir(data.join(dir))?
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".rdeploy-tmp"))
            .collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    let (id, token) = a_node(&server, "E1")?;
    let long = "a".repeat(9_000);
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            b"DELETE /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
        ),
        (
            format!("GET /{long} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes(),
            414,
            "uri_too_long",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n")
                .into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            b"GET /pxe/setBootImage?node=a&node=b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .to_vec(),
            400,
            "bad_query",
        ),
        (
            b"GET /boot/%ff.ipxe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            "bad_path",
        ),
        (
            b"GET /roles/%ff/1.0/manifest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .to_vec(),
            400,
            "bad_path",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = raw_request(&server, &request)?;
        assert_eq!(got, status, "{body}");
        let json: Value =
            serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
        assert_eq!(json["error"], code, "{json}");
    }
    let resp = reqwest::blocking::Client::new()
        .post(server.url(&format!("/nodes/{id}/events")))
        .bearer_auth(&token)
        .body(r#"{"step": "detect", "status": "started", "time": "yesterday"}"#)
        .send()?;
    assert_eq!(resp.status().as_u16(), 400);
    let json: Value = resp.json()?;
    assert_eq!(json["error"], "bad_event", "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap_or("")
            .contains("not an RFC 3339 time"),
        "{json}"
    );
    Ok(())
}
