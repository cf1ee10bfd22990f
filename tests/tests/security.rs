//! Who may change a node (docs/security.md), against the real server over loopback: every
//! call that changes a node, sent without a token, with another node's token and with a
//! wrong token, is refused with `401` and changes nothing (the node as an admin sees it,
//! `state`, the CMDB, the PXELINUX files); the node's own token and the admin token work;
//! secret variables are masked for everyone else.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use rdeploy_tests::Server;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{json, Value};

const ADMIN: &str = "the-admin-token-0123456789";

fn kvm(serial: &str, mac: &str) -> String {
    format!(
        r#"[["system", "product", "name", "KVM"],
 ["system", "product", "serial", "{serial}"],
 ["disk", "vda", "size", "20"],
 ["network", "eth0", "serial", "{mac}"],
 ["network", "eth0", "link", "yes"]]"#
    )
}

/// `vm` with 5 installs; the CMDB hands out 127.0.0.1.. (so a node's own address is the
/// test's) and an IPMI password.
fn config(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("state"), "[('vm', 5)]\n")?;
    std::fs::write(
        dir.join("vm.specs"),
        "[('system', 'product', 'name', 'KVM'), ('network', '$eth', 'serial', '$mac')]\n",
    )?;
    let entries: Vec<String> = (1..=5)
        .map(|i| format!("{{'ip': '127.0.0.{i}', 'hostname': 'vm{i}', 'ipmi_password': 'hunter2', 'bmc_user': 'root', 'secrets': ['bmc_user']}}"))
        .collect();
    std::fs::write(dir.join("vm.cmdb"), format!("[{}]\n", entries.join(",\n ")))?;
    std::fs::write(dir.join("vm.configure"), "// vm\n")?;
    Ok(())
}

struct Lab {
    _tmp: tempfile::TempDir,
    server: Server,
    tftp: std::path::PathBuf,
    http: Client,
}

fn lab() -> Result<Lab> {
    let tmp = tempfile::tempdir()?;
    let config_dir = tmp.path().join("config");
    config(&config_dir)?;
    let tftp = tmp.path().join("tftp");
    std::fs::create_dir_all(&tftp)?;
    let token = tmp.path().join("admin-token");
    std::fs::write(&token, format!("{ADMIN}\n"))?;
    let token = token.display().to_string();
    let tftp_arg = tftp.display().to_string();
    let server = Server::start(
        &config_dir,
        &tmp.path().join("data"),
        &["--admin-token-file", &token, "--tftp-root", &tftp_arg],
    )?;
    Ok(Lab {
        _tmp: tmp,
        server,
        tftp,
        http: Client::new(),
    })
}

/// A node's upload reply: its id and token.
struct Up {
    id: String,
    token: String,
    mac: String,
    hw: String,
    reply: Value,
}

impl Lab {
    fn upload(&self, serial: &str, mac: &str) -> Result<Up> {
        let hw = kvm(serial, mac);
        let resp = self
            .http
            .post(self.server.url("/upload"))
            .header("Accept", "application/json")
            .body(hw.clone())
            .send()?;
        let status = resp.status();
        let reply: Value = resp.json()?;
        ensure!(status == 200, "upload: {status} {reply}");
        Ok(Up {
            id: reply["node"].as_str().context("node")?.to_owned(),
            token: reply["token"].as_str().context("token")?.to_owned(),
            mac: mac.to_owned(),
            hw,
            reply,
        })
    }

    /// What a forged call could change: the node as an admin sees it, `state`, the CMDB,
    /// the PXELINUX files.
    fn snapshot(&self, id: &str) -> Result<String> {
        let node = self
            .http
            .get(self.server.url(&format!("/nodes/{id}")))
            .bearer_auth(ADMIN)
            .send()?
            .text()?;
        let mut files = Vec::new();
        for name in ["state", "vm.cmdb"] {
            files.push(std::fs::read_to_string(self.server.config_dir.join(name))?);
        }
        let dir = self.tftp.join("pxelinux.cfg");
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            if e.path().is_file() {
                files.push(format!(
                    "{:?}: {}",
                    e.file_name(),
                    std::fs::read_to_string(e.path())?
                ));
            }
        }
        Ok(format!("{node}\n{}", files.join("\n")))
    }
}

/// A named call, built afresh for each attempt.
type Call<'a> = (&'static str, Box<dyn Fn() -> RequestBuilder + 'a>);

/// Every call that changes node `a`, as a builder of the request (without credentials).
fn changes<'a>(lab: &'a Lab, a: &'a Up) -> Vec<Call<'a>> {
    let url = |p: &str| lab.server.url(p);
    let id = a.id.clone();
    vec![
        (
            "event finish/succeeded",
            Box::new({
                let u = url(&format!("/nodes/{id}/events"));
                move || {
                    lab.http.post(&u).json(
                        &json!({"step": "finish", "status": "succeeded", "time": 1_700_000_000}),
                    )
                }
            }),
        ),
        (
            "event configure/failed",
            Box::new({
                let u = url(&format!("/nodes/{id}/events"));
                move || {
                    lab.http.post(&u).json(
                        &json!({"step": "configure", "status": "failed", "time": 1_700_000_000}),
                    )
                }
            }),
        ),
        (
            "log",
            Box::new({
                let u = url(&format!("/nodes/{id}/log"));
                move || lab.http.post(&u).body("forged log\n")
            }),
        ),
        (
            "tree report",
            Box::new({
                let u = url(&format!("/nodes/{id}/tree"));
                move || {
                    lab.http.post(&u).json(&json!({"action": "install", "status": "succeeded", "role": "evil", "version": "6.6.6"}))
                }
            }),
        ),
        (
            "failure report with the node's inventory",
            Box::new({
                let u = url("/upload");
                let hw = a.hw.clone();
                move || {
                    let form = reqwest::blocking::multipart::Form::new()
                        .text("failure", "vm")
                        .part(
                            "file",
                            reqwest::blocking::multipart::Part::text(hw.clone())
                                .file_name("hw.json"),
                        );
                    lab.http.post(&u).multipart(form)
                }
            }),
        ),
        (
            "anonymous failure report",
            Box::new({
                let u = url("/upload?failure=vm");
                move || lab.http.post(&u)
            }),
        ),
        (
            "localboot by MAC",
            Box::new({
                let u = url(&format!("/localboot/{}", a.mac));
                move || lab.http.get(&u)
            }),
        ),
        (
            "OMF clearBootImage",
            Box::new({
                let u = url(&format!("/pxe/clearBootImage?node={id}"));
                move || lab.http.get(&u)
            }),
        ),
        (
            "PXE Pilot deploy local",
            Box::new({
                let u = url("/configurations/local/deploy");
                let body = json!({"hosts": [{"macAddress": a.mac}]}).to_string();
                move || lab.http.put(&u).body(body.clone())
            }),
        ),
        (
            "operator nextboot",
            Box::new({
                let u = url(&format!("/nodes/{id}/boot"));
                move || lab.http.post(&u).json(&json!({"target": "local"}))
            }),
        ),
    ]
}

#[test]
fn forged_calls_are_refused_and_change_nothing() -> Result<()> {
    let lab = lab()?;
    let a = lab.upload("A", "52:54:00:aa:00:01")?;
    let b = lab.upload("B", "52:54:00:aa:00:02")?;
    ensure!(
        a.token.len() == 64 && a.token != b.token,
        "tokens {} {}",
        a.token,
        b.token
    );
    // The node is `b`'s address, not this test's (127.0.0.1 is `a`'s): a localboot by MAC
    // from here is not from the node itself.
    let b_calls = changes(&lab, &b);
    let before = lab.snapshot(&b.id)?;
    let wrong = "0".repeat(64);
    let mut refused = 0;
    for (what, call) in &b_calls {
        for (who, cred) in [
            ("no token", None),
            ("another node's token", Some(a.token.as_str())),
            ("a wrong token", Some(wrong.as_str())),
            ("a token of another length", Some("x")),
        ] {
            let req = call();
            let req = match cred {
                Some(t) => req.bearer_auth(t),
                None => req,
            };
            let resp = req.send().with_context(|| format!("{what} with {who}"))?;
            let status = resp.status();
            let body = resp.text()?;
            ensure!(status == 401, "{what} with {who}: {status} {body}");
            ensure!(
                lab.snapshot(&b.id)? == before,
                "{what} with {who} changed something"
            );
            refused += 1;
        }
    }
    ensure!(refused == 40, "{refused} refusals");

    // The node's own token moves it; the admin token too.
    let own = |what: &str| {
        b_calls
            .iter()
            .find(|(w, _)| *w == what)
            .map(|(_, c)| c())
            .context("no such call")
    };
    let resp = own("log")?.bearer_auth(&b.token).send()?;
    ensure!(
        resp.status() == 200,
        "log with its token: {}",
        resp.status()
    );
    let resp = own("tree report")?.bearer_auth(&b.token).send()?;
    ensure!(
        resp.status() == 200,
        "tree with its token: {}",
        resp.status()
    );
    let resp = own("event finish/succeeded")?
        .bearer_auth(&b.token)
        .send()?;
    ensure!(
        resp.status() == 200,
        "event with its token: {}",
        resp.status()
    );
    let node: Value = lab
        .http
        .get(lab.server.url(&format!("/nodes/{}", b.id)))
        .bearer_auth(ADMIN)
        .send()?
        .json()?;
    ensure!(node["state"] == "installed", "{node}");
    ensure!(node["boot"] == json!({"target": "local"}), "{node}");
    let resp = own("PXE Pilot deploy local")?.bearer_auth(ADMIN).send()?;
    ensure!(resp.status() == 200, "deploy as admin: {}", resp.status());
    Ok(())
}

#[test]
fn a_node_flips_itself_by_address_and_a_reinstall_gets_a_new_token() -> Result<()> {
    let lab = lab()?;
    // `a` got 127.0.0.1, the test's own address: PXE Manager's localboot by MAC works
    // from the machine itself without a token.
    let a = lab.upload("A", "52:54:00:aa:00:01")?;
    ensure!(a.reply["var"]["ip"] == "127.0.0.1", "{}", a.reply);
    let resp = lab
        .http
        .get(lab.server.url(&format!("/localboot/{}", a.mac)))
        .header("Accept", "application/json")
        .send()?;
    ensure!(
        resp.status() == 200,
        "localboot from itself: {}",
        resp.status()
    );
    let body: Value = resp.json()?;
    ensure!(body["state"] == "installed", "{body}");

    // An upload again (after an operator's reinstall) gets a new token; the old one no
    // longer works.
    let resp = lab
        .http
        .post(lab.server.url(&format!("/nodes/{}/boot", a.id)))
        .bearer_auth(ADMIN)
        .json(&json!({"target": "install"}))
        .send()?;
    ensure!(resp.status() == 200, "reinstall: {}", resp.status());
    let again = lab.upload("A", "52:54:00:aa:00:01")?;
    ensure!(again.id == a.id && again.token != a.token);
    let event = |token: &str| {
        lab.http
            .post(lab.server.url(&format!("/nodes/{}/events", a.id)))
            .bearer_auth(token)
            .json(&json!({"step": "configure", "status": "started", "time": 1}))
            .send()
    };
    ensure!(
        event(&a.token)?.status() == 401,
        "the old token still works"
    );
    ensure!(
        event(&again.token)?.status() == 200,
        "the new token does not work"
    );
    Ok(())
}

#[test]
fn secrets_are_masked_for_all_but_the_node_and_an_admin() -> Result<()> {
    let lab = lab()?;
    let a = lab.upload("A", "52:54:00:aa:00:01")?;
    let b = lab.upload("B", "52:54:00:aa:00:02")?;
    // The node gets them in its upload reply.
    ensure!(a.reply["var"]["ipmi_password"] == "hunter2", "{}", a.reply);
    let view = |token: Option<&str>| -> Result<Value> {
        let req = lab.http.get(lab.server.url(&format!("/nodes/{}", a.id)));
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        Ok(req.send()?.json()?)
    };
    for (who, token) in [
        ("nobody", None),
        ("another node", Some(b.token.as_str())),
        ("a wrong token", Some("nope")),
    ] {
        let node = view(token)?;
        ensure!(node["var"]["ipmi_password"] == "********", "{who}: {node}");
        ensure!(node["var"]["bmc_user"] == "********", "{who}: {node}");
        ensure!(node["var"]["ip"] == "127.0.0.1", "{who}: {node}");
        ensure!(!node.to_string().contains("hunter2"), "{who}: {node}");
        ensure!(node.get("token_sha256").is_none(), "{who}: {node}");
    }
    for (who, token) in [("the node", a.token.as_str()), ("an admin", ADMIN)] {
        let node = view(Some(token))?;
        ensure!(node["var"]["ipmi_password"] == "hunter2", "{who}: {node}");
        ensure!(node["var"]["bmc_user"] == "root", "{who}: {node}");
        ensure!(node.get("token_sha256").is_none(), "{who}: {node}");
    }
    let list = lab.server.get_text("/nodes")?;
    ensure!(!list.contains("hunter2"), "{list}");
    let metrics = lab.server.get_text("/metrics")?;
    ensure!(!metrics.contains("hunter2"), "{metrics}");
    Ok(())
}
