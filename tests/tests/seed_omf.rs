//! OMF's users: its aggregate manager's PXE service called as OMF's experiment controller
//! called it (`/pxe/setBootImageNS?domain=D&ns=N1,N2`, `/pxe/clearBootImageNS`, and the
//! one-node `setBootImage?node=N[&imgName=I]`, `clearBootImage?node=N`), with `curl`,
//! against a real `rdeploy serve`; the hex-IP links it leaves under the TFTP root are read
//! back. OMF's nodes are named by their CMDB `hostname`; their image is their CMDB
//! `pxe_image` (OMF's inventory kept one per node).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rdeploy_tests::{curl, curl_upload, Server};

/// OMF's PXE image (its `pxe/config/default.orbit`).
const ORBIT: &str = "DEFAULT boel\n\nLABEL boel\nKERNEL linux-orbit-pxe-3.0.4\nAPPEND rw init=/sbin/init initrd=initramfs-orbit-pxe-5.4.gz console=tty0 console=ttyS0,9600\n";

/// Two KVM nodes of a testbed, node1-1 (image orbit-1.0.0) and node1-2 (none).
fn config(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join("state"), "[('grid', '*')]\n")?;
    fs::write(
        dir.join("grid.specs"),
        "[('system', 'product', 'name', 'KVM'), ('network', '$eth', 'serial', '$mac')]\n",
    )?;
    fs::write(
        dir.join("grid.cmdb"),
        "[{'hostname': 'node1-1', 'ip': '10.0.0.5', 'pxe_image': 'orbit-1.0.0'},\n {'hostname': 'node1-2', 'ip': '10.0.0.6'}]\n",
    )?;
    fs::write(dir.join("grid.configure"), "// nothing\n")?;
    Ok(())
}

fn inventory(serial: &str, mac: &str) -> String {
    format!(
        "[('system', 'product', 'name', 'KVM'), ('system', 'product', 'serial', '{serial}'), ('network', 'eth0', 'serial', '{mac}')]"
    )
}

struct Env {
    dir: tempfile::TempDir,
    server: Server,
}

impl Env {
    /// A testbed with two nodes that sent their inventory; `default` is an operator's own
    /// `pxelinux.cfg/default`, if any; `extra` more `rdeploy serve` flags.
    fn new(default: Option<&str>, extra: &[&str]) -> Result<Env> {
        let dir = tempfile::tempdir()?;
        config(&dir.path().join("config"))?;
        let cfg = dir.path().join("tftp/pxelinux.cfg");
        fs::create_dir_all(cfg.join("profiles"))?;
        fs::write(cfg.join("profiles/orbit-1.0.0.prof"), ORBIT)?;
        fs::write(
            cfg.join("profiles/local.prof"),
            "DEFAULT local\nLABEL local\n  LOCALBOOT 0\n",
        )?;
        if let Some(d) = default {
            fs::write(cfg.join("default"), d)?;
        }
        let tftp = dir.path().join("tftp").display().to_string();
        let mut args = vec!["--tftp-root", tftp.as_str()];
        args.extend_from_slice(extra);
        let server = Server::start(&dir.path().join("config"), &dir.path().join("data"), &args)?;
        let env = Env { dir, server };
        for (serial, mac) in [("S1", "52:54:00:00:01:01"), ("S2", "52:54:00:00:01:02")] {
            let hw = env.dir.path().join(format!("{serial}.hw"));
            fs::write(&hw, inventory(serial, mac))?;
            curl_upload(&env.server, &hw)?;
        }
        Ok(env)
    }

    fn cfg(&self, name: &str) -> PathBuf {
        self.dir.path().join("tftp/pxelinux.cfg").join(name)
    }

    /// `curl -s URL` (OMF's services answered with a body whatever the status).
    fn call(&self, path: &str, extra: &[&str]) -> Result<(String, String)> {
        let mut args = vec!["-s", "-w", "\n%{http_code}"];
        args.extend_from_slice(extra);
        let url = self.server.url(path);
        args.push(&url);
        let out = curl(&args)?;
        let (body, code) = out.stdout.rsplit_once('\n').context("no status")?;
        Ok((body.to_owned(), code.to_owned()))
    }
}

#[test]
fn set_links_the_nodes_image_and_clear_lets_the_default_boot_the_disk() -> Result<()> {
    let env = Env::new(None, &[])?;
    // No pxelinux.cfg/default was there: OMF's (boot the local disk) is written.
    let default = fs::read_to_string(env.cfg("default"))?;
    assert!(default.contains("LOCALBOOT 0"), "{default}");

    // The one-node form: node1-1 boots its own image; its hex-IP name links to it.
    let (body, code) = env.call("/pxe/setBootImage?node=node1-1", &[])?;
    assert_eq!(code, "200", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        v["nodes"][0],
        serde_json::json!({"hrn": "node1-1", "ip": "10.0.0.5", "img": "orbit-1.0.0", "hex": "0A000005"})
    );
    assert_eq!(
        fs::read_link(env.cfg("0A000005"))?,
        Path::new("profiles/orbit-1.0.0.prof")
    );
    assert_eq!(fs::read_to_string(env.cfg("0A000005"))?, ORBIT);

    // OMF's experiment controller: setBootImageNS for a node set, in OMF's XML.
    let (body, code) = env.call(
        "/pxe/setBootImageNS?domain=grid&ns=node1-1,node1-2&imgName=orbit-1.0.0",
        &["-H", "Accept: text/xml"],
    )?;
    assert_eq!(code, "200");
    assert_eq!(
        body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response status=\"OK\"><action service=\"pxe\" name=\"setBootImage\"><nodes><node hrn=\"node1-1\" ip=\"10.0.0.5\" img=\"orbit-1.0.0\" hex=\"0A000005\"/><node hrn=\"node1-2\" ip=\"10.0.0.6\" img=\"orbit-1.0.0\" hex=\"0A000006\"/></nodes></action></response>\n"
    );
    assert_eq!(
        fs::read_link(env.cfg("0A000006"))?,
        Path::new("profiles/orbit-1.0.0.prof")
    );
    // The node's MAC file and its iPXE answer agree with the link.
    assert_eq!(
        fs::read_link(env.cfg("01-52-54-00-00-01-02"))?,
        Path::new("profiles/orbit-1.0.0.prof")
    );

    // clearBootImage: the link goes, so `default` (the local disk) applies.
    let (_, code) = env.call("/pxe/clearBootImage?node=node1-1", &[])?;
    assert_eq!(code, "200");
    assert!(fs::symlink_metadata(env.cfg("0A000005")).is_err());
    let ipxe = curl(&["-s", &env.server.url("/boot/52:54:00:00:01:01.ipxe")])?;
    assert!(ipxe.stdout.ends_with("exit\n"), "{}", ipxe.stdout);
    let (body, _) = env.call(
        "/pxe/clearBootImageNS?domain=grid&ns=node1-2&format=xml",
        &[],
    )?;
    assert!(body.contains("name=\"clearBootImage\""), "{body}");
    assert!(fs::symlink_metadata(env.cfg("0A000006")).is_err());

    // node1-2 has no image of its own: the installer, unless imgName says otherwise.
    let (body, _) = env.call("/pxe/setBootImage?node=node1-2", &[])?;
    assert!(body.contains("\"img\":\"install\""), "{body}");
    assert!(fs::read_to_string(env.cfg("0A000006"))?.contains("rdeploy.server="));

    // Errors change nothing: a missing node, an unknown one in a set, an unknown image.
    for (path, code) in [
        ("/pxe/setBootImage", "400"),
        ("/pxe/setBootImageNS?ns=node1-1,node9-9", "404"),
        ("/pxe/setBootImage?node=node1-1&imgName=nope", "404"),
    ] {
        assert_eq!(env.call(path, &[])?.1, code, "{path}");
    }
    assert!(fs::symlink_metadata(env.cfg("0A000005")).is_err());
    Ok(())
}

#[test]
fn an_operators_default_is_kept() -> Result<()> {
    let own = "DEFAULT menu\nLABEL menu\n  KERNEL menu.c32\n";
    let env = Env::new(Some(own), &[])?;
    assert_eq!(fs::read_to_string(env.cfg("default"))?, own);
    Ok(())
}

#[test]
fn links_lapse_after_the_link_lifetime() -> Result<()> {
    // OMF's linkLifetime (300 s in its configuration), short here.
    let env = Env::new(None, &["--omf-link-lifetime", "1s"])?;
    let (_, code) = env.call("/pxe/setBootImage?node=node1-1", &[])?;
    assert_eq!(code, "200");
    assert!(fs::symlink_metadata(env.cfg("0A000005")).is_ok());
    // The link goes once its lifetime is over (waited for, however slow the machine).
    let deadline = Instant::now() + Duration::from_secs(120);
    while fs::symlink_metadata(env.cfg("0A000005")).is_ok() {
        ensure!(Instant::now() < deadline, "the link never lapsed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ipxe = curl(&["-s", &env.server.url("/boot/52:54:00:00:01:01.ipxe")])?;
    assert!(ipxe.stdout.ends_with("exit\n"), "{}", ipxe.stdout);
    Ok(())
}
