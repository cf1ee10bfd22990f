//! PXE Pilot's users, as its documentation shows them: the `curl` of its USECASE.md (which
//! its README links to) and the API of its README, run with `curl` itself against a real
//! `rdeploy serve` whose TFTP root holds PXE Pilot's configurations in
//! `pxelinux.cfg/conf/`; then the PXELINUX files they leave are read back.
//!
//! PXE Pilot's hosts came from its YAML file (`hosts: - name: h1, mac_addresses: [...]`);
//! here they are registered systems (`rdeploy system add h1 MAC...`).

use std::fs;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use rdeploy_tests::{copy_dir, curl, curl_upload, run_binary, workspace_path, Server};

/// PXE Pilot's USECASE: the configurations of its TFTP root.
fn tftp_root(dir: &Path) -> Result<()> {
    let conf = dir.join("pxelinux.cfg/conf");
    fs::create_dir_all(&conf)?;
    fs::write(
        conf.join("local"),
        "default local\n\nlabel local\n    localboot 0\n",
    )?;
    fs::write(
        conf.join("ubuntu-16.04"),
        "default install\nlabel install\n    kernel ubuntu/1604/linux\n    append initrd=ubuntu/1604/initrd.gz\n",
    )?;
    fs::write(
        conf.join("grml-2017.05"),
        "default grml\nlabel grml\n    kernel grml/2017.05/vmlinuz\n",
    )?;
    Ok(())
}

struct Env {
    dir: tempfile::TempDir,
    server: Server,
}

impl Env {
    fn new() -> Result<Env> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config");
        copy_dir(&workspace_path("examples/config"), &config)?;
        let tftp = dir.path().join("tftp");
        tftp_root(&tftp)?;
        let tftp_arg = tftp.display().to_string();
        let server = Server::start(
            &config,
            &dir.path().join("data"),
            &["--tftp-root", &tftp_arg],
        )?;
        Ok(Env { dir, server })
    }

    fn pxelinux(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("tftp/pxelinux.cfg").join(name)
    }

    /// The configuration a PXELINUX file links to, and its text.
    fn linked(&self, name: &str) -> Result<(String, String)> {
        let path = self.pxelinux(name);
        let link =
            fs::read_link(&path).with_context(|| format!("{} is not a symlink", path.display()))?;
        let text = fs::read_to_string(&path)?;
        Ok((link.display().to_string(), text))
    }

    /// `curl -s URL` as JSON.
    fn get(&self, path: &str) -> Result<serde_json::Value> {
        let out = curl(&["-s", "-f", &self.server.url(path)])?;
        ensure!(out.code == Some(0), "curl {path}: {}", out.stderr);
        serde_json::from_str(&out.stdout).with_context(|| format!("{path}: {}", out.stdout))
    }

    fn rdeploy(&self, args: &[&str]) -> Result<()> {
        let mut all = args.to_vec();
        all.extend(["--server", &self.server.base]);
        let out = run_binary("rdeploy", &all)?;
        ensure!(out.code == Some(0), "rdeploy {args:?}: {}", out.stderr);
        Ok(())
    }
}

/// The status line of `curl -i` output.
fn status_line(out: &str) -> &str {
    out.lines().next().unwrap_or("").trim()
}

#[test]
fn the_usecase_curl_deploys_local_to_a_mac_that_never_booted() -> Result<()> {
    let env = Env::new()?;
    // USECASE.md, verbatim but for the server's address (there `pxe-server:3478`).
    let url = env.server.url("/configurations/local/deploy");
    let out = curl(&[
        "-i",
        "-X",
        "PUT",
        &url,
        "-d",
        "\n{\n    \"hosts\": [\n        {\n            \"macAddress\": \"23:34:a3:e9:09:cc\"\n        }\n    ]\n}",
    ])?;
    ensure!(out.code == Some(0), "curl: {}", out.stderr);
    ensure!(
        status_line(&out.stdout).starts_with("HTTP/1.1 200"),
        "{}",
        out.stdout
    );
    // The MAC's PXELINUX file links to PXE Pilot's configuration, as PXE Pilot's symlink did.
    let (link, text) = env.linked("01-23-34-a3-e9-09-cc")?;
    assert_eq!(link, "conf/local");
    assert_eq!(text, "default local\n\nlabel local\n    localboot 0\n");
    // The iPXE answer agrees.
    let ipxe = curl(&["-s", &env.server.url("/boot/23:34:a3:e9:09:cc.ipxe")])?;
    assert!(ipxe.stdout.ends_with("exit\n"), "{}", ipxe.stdout);

    // The README's one-line form of the same call, on the /v1 path of later releases.
    let out = curl(&[
        "-s",
        "-X",
        "PUT",
        &env.server.url("/v1/configurations/grml-2017.05/deploy"),
        "-d",
        r#"{"hosts":[{"macAddress":"23:34:a3:e9:09:cc"}]}"#,
    ])?;
    let reply: serde_json::Value = serde_json::from_str(&out.stdout)?;
    assert_eq!(
        reply["hosts"][0]["configuration"], "grml-2017.05",
        "{reply}"
    );
    assert_eq!(env.linked("01-23-34-a3-e9-09-cc")?.0, "conf/grml-2017.05");
    Ok(())
}

#[test]
fn the_readme_api_lists_deploys_by_name_and_answers_as_pxe_pilot_did() -> Result<()> {
    let env = Env::new()?;
    // pxe-pilot.yml's hosts.
    env.rdeploy(&["system", "add", "h1", "00:00:00:00:00:01"])?;
    env.rdeploy(&[
        "system",
        "add",
        "h3",
        "00:00:00:00:00:03",
        "00:00:00:00:00:33",
    ])?;

    // GET /v1/configurations, GET /configurations (its first path).
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let v1 = env.get("/v1/configurations")?;
    assert_eq!(
        names(&v1),
        ["install", "local", "grml-2017.05", "ubuntu-16.04"]
    );
    assert_eq!(env.get("/configurations")?, v1);
    // GET /v1/configurations/<name>.
    let local = env.get("/v1/configurations/local")?;
    assert_eq!(
        local,
        serde_json::json!({"name": "local", "content": "default local\n\nlabel local\n    localboot 0\n"})
    );
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &env.server.url("/v1/configurations/nope"),
    ])?;
    assert_eq!(out.stdout, "404");

    // PUT /v1/configurations/<name>/deploy with hosts by name, as in the README.
    let out = curl(&[
        "-s",
        "-X",
        "PUT",
        &env.server.url("/v1/configurations/ubuntu-16.04/deploy"),
        "-d",
        r#"{"hosts": [{"name": "h1"}, {"name": "h3"}]}"#,
    ])?;
    let reply: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("deploy answered {}", out.stdout))?;
    assert_eq!(reply["hosts"][0]["name"], "h1", "{reply}");
    assert_eq!(
        reply["hosts"][1]["configuration"], "ubuntu-16.04",
        "{reply}"
    );
    for mac_file in [
        "01-00-00-00-00-00-01",
        "01-00-00-00-00-00-03",
        "01-00-00-00-00-00-33",
    ] {
        assert_eq!(env.linked(mac_file)?.0, "conf/ubuntu-16.04", "{mac_file}");
    }
    // GET /v1/hosts: name, macAddresses, configuration.
    let hosts = env.get("/v1/hosts")?;
    let h3 = hosts
        .as_array()
        .and_then(|a| a.iter().find(|h| h["name"] == "h3"))
        .cloned()
        .context("no h3 in /v1/hosts")?;
    assert_eq!(
        h3,
        serde_json::json!({"name": "h3", "macAddresses": ["00:00:00:00:00:03", "00:00:00:00:00:33"], "configuration": {"name": "ubuntu-16.04"}})
    );
    assert_eq!(env.get("/hosts")?, hosts);

    // GET /v1/healthcheck: 204.
    for path in ["/v1/healthcheck", "/healthcheck"] {
        let out = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &env.server.url(path),
        ])?;
        assert_eq!(out.stdout, "204", "{path}");
    }

    // 404 for an unknown configuration or host, 400 for a malformed body: nothing changes.
    for (path, body, code) in [
        (
            "/v1/configurations/nope/deploy",
            r#"{"hosts": [{"name": "h1"}]}"#,
            "404",
        ),
        (
            "/v1/configurations/local/deploy",
            r#"{"hosts": [{"name": "nobody"}]}"#,
            "404",
        ),
        (
            "/v1/configurations/local/deploy",
            r#"{"hosts": [{"name": "h1"}, {"macAddress": "zz"}]}"#,
            "400",
        ),
        ("/v1/configurations/local/deploy", r#"{"hosts": "#, "400"),
    ] {
        let out = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            &env.server.url(path),
            "-d",
            body,
        ])?;
        assert_eq!(out.stdout, code, "{path} {body}");
    }
    assert_eq!(env.linked("01-00-00-00-00-00-01")?.0, "conf/ubuntu-16.04");
    Ok(())
}

#[test]
fn a_node_deployed_by_mac_gets_both_of_its_files_and_its_ipxe_answer() -> Result<()> {
    let env = Env::new()?;
    // eDeploy's upload (the node gets 192.168.122.10 from the CMDB).
    let hw = workspace_path("examples/hw/kvm.json");
    curl_upload(&env.server, &hw)?;
    let out = curl(&[
        "-i",
        "-X",
        "PUT",
        &env.server.url("/configurations/grml-2017.05/deploy"),
        "-d",
        r#"{"hosts":[{"macAddress":"52:54:00:12:34:56"}]}"#,
    ])?;
    ensure!(
        status_line(&out.stdout).starts_with("HTTP/1.1 200"),
        "{}",
        out.stdout
    );
    assert_eq!(env.linked("01-52-54-00-12-34-56")?.0, "conf/grml-2017.05");
    assert_eq!(env.linked("C0A87A0A")?.0, "conf/grml-2017.05");
    // No .ipxe for a PXE Pilot configuration: the iPXE answer says so and boots the disk.
    let ipxe = curl(&["-s", &env.server.url("/boot/52:54:00:12:34:56.ipxe")])?;
    assert!(
        ipxe.stdout.contains("no iPXE boot profile 'grml-2017.05'"),
        "{}",
        ipxe.stdout
    );
    let node = env.get("/nodes/KVM-NotSpecified-52-54-00-12-34-56")?;
    assert_eq!(
        node["boot"],
        serde_json::json!({"target": "profile", "name": "grml-2017.05"})
    );
    Ok(())
}
