//! PXE Manager's users, as its README shows them: `pxemngr syncbootnames`, `pxemngr
//! addsystem <name> <mac address>...`, `pxemngr nextboot <name> <profile name>` (and the
//! reserved name `default`), `dpysystem`, `delsystem`, run through the `rdeploy` binary
//! under the name `pxemngr` (a symlink); and the URLs its install scripts call with curl,
//! `http://<ipaddr>:<port>/localboot/` and `/profile/` (eDeploy's init: `${PXEMNGR_URL}
//! localboot/`). The PXELINUX files are read back after each.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use rdeploy_tests::{
    copy_dir, curl, curl_upload, multi_call, run_program, workspace_path, Output, Server,
};

/// PXE Manager's `contrib/profiles/local.prof`.
const LOCAL_PROF: &str = "prompt 0\ntimeout 0\ndefault 0\n\nlabel 0\n  LOCALBOOT 0\n";
const DEBIAN_PROF: &str = "default install\nlabel install\n  kernel debian/linux\n  append initrd=debian/initrd.gz auto\n";

struct Env {
    dir: tempfile::TempDir,
    server: Server,
    pxemngr: PathBuf,
}

impl Env {
    fn new() -> Result<Env> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config");
        copy_dir(&workspace_path("examples/config"), &config)?;
        let profiles = dir.path().join("tftp/pxelinux.cfg/profiles");
        fs::create_dir_all(&profiles)?;
        fs::write(profiles.join("local.prof"), LOCAL_PROF)?;
        fs::write(profiles.join("install-debian.prof"), DEBIAN_PROF)?;
        let tftp = dir.path().join("tftp").display().to_string();
        let server = Server::start(&config, &dir.path().join("data"), &["--tftp-root", &tftp])?;
        let pxemngr = multi_call("rdeploy", "pxemngr", &dir.path().join("bin"))?;
        Ok(Env {
            dir,
            server,
            pxemngr,
        })
    }

    /// `pxemngr ARGS...` with PXE Manager's own variable naming the server.
    fn pxemngr(&self, args: &[&str]) -> Result<Output> {
        let url = format!("{}/", self.server.base);
        run_program(&self.pxemngr, args, &[("PXEMNGR_URL", url.as_str())])
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.pxemngr(args)?;
        ensure!(
            out.code == Some(0),
            "pxemngr {args:?} exited {:?}: {}{}",
            out.code,
            out.stdout,
            out.stderr
        );
        Ok(out.stdout)
    }

    fn cfg(&self, name: &str) -> PathBuf {
        self.dir.path().join("tftp/pxelinux.cfg").join(name)
    }

    /// Where a PXELINUX file links, and its text.
    fn linked(&self, name: &str) -> Result<(String, String)> {
        let path = self.cfg(name);
        let link =
            fs::read_link(&path).with_context(|| format!("{} is not a symlink", path.display()))?;
        Ok((link.display().to_string(), fs::read_to_string(&path)?))
    }

    /// `curl -s URL` (what the install scripts ran).
    fn curl(&self, path: &str) -> Result<String> {
        let out = curl(&["-s", "-f", &self.server.url(path)])?;
        ensure!(out.code == Some(0), "curl {path}: exit {:?}", out.code);
        Ok(out.stdout)
    }
}

fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

#[test]
fn the_readme_verbs_register_systems_and_set_their_next_boot() -> Result<()> {
    let env = Env::new()?;
    // "run pxemngr syncbootnames to add the names of the PXE profiles in the database."
    let out = env.ok(&["syncbootnames"])?;
    assert!(out.contains("registering install-debian"), "{out}");
    assert!(out.contains("registering local"), "{out}");

    // "pxemngr addsystem <name> <mac address> [<mac address 2>...]"
    env.ok(&["addsystem", "ws1", "00:1b:38:71:0a:b6", "00:1b:38:71:0a:b7"])?;
    // A new system boots the installer until told otherwise: its files say so at once.
    let installer = fs::read_to_string(env.cfg("01-00-1b-38-71-0a-b6"))?;
    assert!(installer.contains("rdeploy.server="), "{installer}");

    // "pxemngr nextboot <name> <profile name>"
    env.ok(&["nextboot", "ws1", "install-debian"])?;
    for f in ["01-00-1b-38-71-0a-b6", "01-00-1b-38-71-0a-b7"] {
        assert_eq!(
            env.linked(f)?,
            (
                "profiles/install-debian.prof".to_owned(),
                DEBIAN_PROF.to_owned()
            ),
            "{f}"
        );
    }
    // The iPXE answer agrees (no .ipxe for this profile: it says so and boots the disk).
    let ipxe = env.curl("/boot/00:1b:38:71:0a:b6.ipxe")?;
    assert!(ipxe.contains("'install-debian'"), "{ipxe}");

    // addsystem with an IP address (and a subnet prefix), as pxemngr accepted them.
    env.ok(&["addsystem", "ws2", "10.0.0.12"])?;
    env.ok(&["addsystem", "lab", "10.34"])?;
    env.ok(&["nextboot", "ws2", "local"])?;
    env.ok(&["nextboot", "lab", "install-debian"])?;
    assert_eq!(env.linked("0A00000C")?.0, "profiles/local.prof");
    assert_eq!(env.linked("0A22")?.0, "profiles/install-debian.prof");

    // dpysystem by name, MAC and IP; -l lists.
    let out = env.ok(&["dpysystem", "ws1"])?;
    assert_eq!(
        out,
        "Name: ws1\nMac: 00:1b:38:71:0a:b6\nMac: 00:1b:38:71:0a:b7\nNext boot: install-debian\n"
    );
    assert_eq!(env.ok(&["dpysystem", "00-1B-38-71-0A-B7"])?, out);
    assert_eq!(
        env.ok(&["dpysystem", "10.0.0.12"])?,
        "Name: ws2\nIP: 10.0.0.12 (0A00000C)\nNext boot: local\n"
    );
    assert_eq!(env.ok(&["dpysystem", "-l"])?, "lab\nws1\nws2\n");

    // "If you want to assign a default profile to all systems, use the reserved system
    // name 'default'."
    env.ok(&["nextboot", "default", "install-debian"])?;
    assert_eq!(env.linked("default")?.0, "profiles/install-debian.prof");
    let unknown = env.curl("/boot/52:54:00:99:99:99.ipxe")?;
    assert!(unknown.contains("'install-debian'"), "{unknown}");
    let out = env.pxemngr(&["addsystem", "default", "00:1b:38:71:0a:ff"])?;
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("reserved"), "{}", out.stderr);

    // delsystem: its files go, the site default applies to it again.
    env.ok(&["delsystem", "ws1"])?;
    assert!(!exists(&env.cfg("01-00-1b-38-71-0a-b6")));
    let out = env.pxemngr(&["dpysystem", "ws1"])?;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("system ws1 not defined"),
        "{}",
        out.stderr
    );

    // Errors: a wrong command line, an unknown verb, an unknown profile; nothing changes.
    let out = env.pxemngr(&["nextboot", "ws2"])?;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("Usage: pxemngr nextboot"),
        "{}",
        out.stderr
    );
    let out = env.pxemngr(&["frobnicate"])?;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("Invalid pxemngr sub-command frobnicate"),
        "{}",
        out.stderr
    );
    let out = env.pxemngr(&["nextboot", "ws2", "no-such-profile"])?;
    assert_eq!(out.code, Some(1));
    assert_eq!(env.linked("0A00000C")?.0, "profiles/local.prof");

    // The same verbs as rdeploy sub-commands.
    let out = rdeploy_tests::run_binary(
        "rdeploy",
        &["system", "dpysystem", "ws2", "--server", &env.server.base],
    )?;
    assert_eq!(
        out.stdout,
        "Name: ws2\nIP: 10.0.0.12 (0A00000C)\nNext boot: local\n"
    );

    // syncbootnames says what is missing: local.prof is mandatory.
    fs::remove_file(env.dir.path().join("tftp/pxelinux.cfg/profiles/local.prof"))?;
    let out = env.pxemngr(&["syncbootnames"])?;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("local profile not present"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("LOCALBOOT 0"), "{}", out.stderr);
    Ok(())
}

#[test]
fn install_scripts_stop_the_loop_with_localboot_from_any_address_they_are_known_by() -> Result<()> {
    let env = Env::new()?;
    // A system registered by the address its install script calls from (127.0.0.1 here).
    env.ok(&["addsystem", "rack1", "127.0.0.1"])?;
    env.ok(&["nextboot", "rack1", "install-debian"])?;
    assert_eq!(env.curl("/profile/")?, "install-debian\n");
    // "your PXE scripts must access http://<ipaddr>:<port>/localboot/"
    let out = env.curl("/localboot/")?;
    assert_eq!(out, "rack1: next boot local\n");
    assert_eq!(env.linked("7F000001")?.0, "profiles/local.prof");
    assert_eq!(env.curl("/profile")?, "local\n");
    env.ok(&["delsystem", "rack1"])?;

    // A node installing over DHCP on an address its CMDB entry does not name
    // (192.168.122.10): its upload came from 127.0.0.1, and that finds it.
    let hw = workspace_path("examples/hw/kvm.json");
    curl_upload(&env.server, &hw)?;
    assert_eq!(env.curl("/profile/")?, "install\n");
    // eDeploy's init: curl -s ${PXEMNGR_URL}localboot/
    let pxemngr_url = format!("{}/", env.server.base);
    let out = curl(&["-s", &format!("{pxemngr_url}localboot/")])?;
    assert_eq!(
        out.stdout,
        "KVM-NotSpecified-52-54-00-12-34-56: next boot local\n"
    );
    let node: serde_json::Value =
        serde_json::from_str(&env.curl("/nodes/KVM-NotSpecified-52-54-00-12-34-56")?)?;
    assert_eq!(node["state"], "installed", "{node}");
    // Both of its files, by MAC and by its CMDB address, boot the disk.
    assert_eq!(env.linked("01-52-54-00-12-34-56")?.0, "profiles/local.prof");
    assert_eq!(env.linked("C0A87A0A")?.0, "profiles/local.prof");

    // By MAC, with the trailing slash (eDeploy's init: ${PXEMNGR_URL}localboot/$mac/), for
    // a MAC nobody registered: it boots its disk from its first PXE boot.
    assert_eq!(
        env.curl("/localboot/52:54:00:aa:00:09/")?,
        "mac-52-54-00-aa-00-09: next boot local\n"
    );
    assert_eq!(env.linked("01-52-54-00-aa-00-09")?.0, "profiles/local.prof");
    assert_eq!(env.curl("/profile/52:54:00:aa:00:09/")?, "local\n");
    // Without the slash too; an unknown MAC's profile is 404.
    assert_eq!(env.curl("/profile/52-54-00-aa-00-09")?, "local\n");
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &env.server.url("/profile/52:54:00:00:00:77/"),
    ])?;
    assert_eq!(out.stdout, "404");
    Ok(())
}
