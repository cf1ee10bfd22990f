//! eDeploy's users: its agent's `curl` lines (build/init, build/init.common) posting to
//! `/cgi-bin/upload.py`, its configure scripts converted with `rdeploy convert-configure`,
//! and `edeploy upgrade VERSION` (and `list`, `verify`, ...) on a deployed host, through
//! `rdeploy-agent` under the name `edeploy` fetched from the server with one `curl`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use rdeploy_tests::{
    binary, copy_dir, curl, run_binary, run_program, workspace_path, Output, Server,
};

const NODE: &str = "KVM-NotSpecified-52-54-00-12-34-56";

fn show(o: &Output) -> String {
    format!("exit {:?}\n{}{}", o.code, o.stdout, o.stderr)
}

fn write(root: &Path, rel: &str, content: &str) -> Result<()> {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().context("no parent")?)?;
    fs::write(&p, content)?;
    Ok(())
}

/// Role `base` versions 1 and 2 under the data dir, with upgrade metadata 1 → 2: an
/// `exclude`, and the `add_only` eDeploy's `upgrade-from` generates by default.
fn role_trees(data: &Path) -> Result<()> {
    write(data, "install/1/base/etc/motd", "version 1\n")?;
    write(data, "install/1/base/etc/app.conf", "local = yes\n")?;
    write(data, "install/1/base/var/lib/app/state", "state of v1\n")?;
    write(data, "install/2/base/etc/motd", "version 2, upgraded\n")?;
    write(data, "install/2/base/etc/app.conf", "shipped by v2\n")?;
    write(data, "install/2/base/usr/share/new.txt", "new in 2\n")?;
    write(
        data,
        "install/2/base/var/lib/app/state",
        "state shipped by v2\n",
    )?;
    write(data, "install/2/base/var/lib/app/seed", "seed of v2\n")?;
    write(data, "metadata/1/base/2/exclude", "/etc/app.conf\n")?;
    write(
        data,
        "metadata/1/base/2/add_only",
        "+ /var/\n+ /var/**\n- *\n",
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
        // eDeploy's vm-debian.configure, converted, is the kvm profile's script.
        let src = workspace_path("tests/fixtures/edeploy-configure/vm-debian.configure");
        let out_file = config.join("kvm.configure");
        let out = run_binary(
            "rdeploy",
            &[
                "convert-configure",
                &src.display().to_string(),
                "-o",
                &out_file.display().to_string(),
            ],
        )?;
        ensure!(out.code == Some(0), "convert-configure: {}", show(&out));
        let data = dir.path().join("data");
        role_trees(&data)?;
        let agent = binary("rdeploy-agent")?.display().to_string();
        let server = Server::start(&config, &data, &["--agent-binary", &agent])?;
        Ok(Env { dir, server })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The upload of eDeploy's init: `curl -s -S -o/configure -F section=${SECTION}
    /// -F "file=@/hw.json;filename=hw.json" http://${SERV}:${HTTP_PORT}/${HTTP_PATH}/upload.py`.
    fn edeploy_upload(&self, extra: &[&str]) -> Result<Output> {
        let hw = workspace_path("examples/hw/kvm.json");
        let configure = self.path("configure").display().to_string();
        let file = format!("file=@{};filename=hw.json", hw.display());
        let url = self.server.url("/cgi-bin/upload.py");
        let mut args = vec!["-s", "-S", "-o", configure.as_str(), "-F", "section=SERVER"];
        args.extend_from_slice(extra);
        args.extend(["-F", file.as_str(), url.as_str()]);
        curl(&args)
    }

    fn node(&self) -> Result<serde_json::Value> {
        self.server.get_json(&format!("/nodes/{NODE}"))
    }
}

#[test]
fn the_agents_curl_lines_reach_upload_py_and_get_the_converted_script() -> Result<()> {
    let env = Env::new()?;
    let out = env.edeploy_upload(&[])?;
    ensure!(out.code == Some(0), "upload: {}", show(&out));
    let script = fs::read_to_string(env.path("configure"))?;
    assert!(
        script.starts_with("// profile: kvm\nlet var = #{"),
        "{script}"
    );
    assert!(script.contains("\"ip\": \"192.168.122.10\""), "{script}");
    assert!(
        script.contains("set_role(\"mysql\", \"D7-H.1.0.0\", bootable_disk);"),
        "{script}"
    );
    // What the converted script does on this machine, with the variables it got.
    let hw = workspace_path("examples/hw/kvm.json").display().to_string();
    let config = env.server.config_dir.display().to_string();
    let out = run_binary("rdeploy", &["check", "--config-dir", &config, &hw])?;
    ensure!(out.code == Some(0), "check: {}", show(&out));
    for expected in [
        "parted -s /dev/vda mklabel msdos",
        "mkdir -p /chroot; mount /dev/vda1 /chroot",
        "iface eth0 inet static",
        "     address 192.168.122.10",
        "# role: mysql D7-H.1.0.0 on /dev/vda",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} not in\n{}",
            out.stdout
        );
    }

    // init.common's upload_log: the log goes to upload.py as a file named *.log.gz.
    let log = env.path("QEMU-KVM-NotSpecified.log.gz");
    fs::write(
        &log,
        [
            0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    )?;
    let file = format!(
        "file=@{};filename=QEMU-KVM-NotSpecified.log.gz",
        log.display()
    );
    let stats = env.path("log.stats").display().to_string();
    let out = curl(&[
        "-s",
        "-S",
        "-o",
        &stats,
        "-F",
        "section=SERVER",
        "-F",
        &file,
        &env.server.url("/cgi-bin/upload.py"),
    ])?;
    ensure!(out.code == Some(0), "log upload: {}", show(&out));
    assert_eq!(
        fs::read(
            env.server
                .data_dir
                .join("logs/QEMU-KVM-NotSpecified.log.gz")
        )?,
        fs::read(&log)?
    );

    // init.common's failure report: `-F failure=$PROFILE` with the inventory.
    let out = env.edeploy_upload(&["-F", "failure=kvm"])?;
    ensure!(out.code == Some(0), "failure: {}", show(&out));
    assert_eq!(env.node()?["state"], "failed");
    // The retry is a new install; then init's `curl -s ${PXEMNGR_URL}localboot/` ends it.
    let out = env.edeploy_upload(&[])?;
    ensure!(out.code == Some(0), "retry: {}", show(&out));
    let pxemngr_url = format!("{}/", env.server.base);
    let out = curl(&["-s", &format!("{pxemngr_url}localboot/")])?;
    assert_eq!(out.stdout, format!("{NODE}: next boot local\n"));
    assert_eq!(env.node()?["state"], "installed");
    Ok(())
}

#[test]
fn a_deployed_host_fetches_the_agent_and_upgrades_with_edeploys_verbs() -> Result<()> {
    let env = Env::new()?;
    let out = env.edeploy_upload(&[])?;
    ensure!(out.code == Some(0), "upload: {}", show(&out));
    let root = env.path("host");
    let root_arg = root.display().to_string();
    // The host as the install left it: role base version 1.
    let out = run_binary(
        "rdeploy-agent",
        &[
            "upgrade",
            "--root",
            &root_arg,
            "--server",
            &env.server.base,
            "install",
            "--role",
            "base",
            "--version",
            "1",
            "--profile",
            "kvm",
            "--node",
            NODE,
        ],
    )?;
    ensure!(out.code == Some(0), "install: {}", show(&out));
    write(&root, "etc/app.conf", "local = edited\n")?;

    // docs/upgrades.md: one curl from the server, and the edeploy name.
    let bin = env.path("host-bin");
    fs::create_dir_all(&bin)?;
    let agent = bin.join("rdeploy-agent");
    let out = curl(&[
        "-s",
        "-f",
        "-o",
        &agent.display().to_string(),
        &env.server.url("/agent"),
    ])?;
    ensure!(out.code == Some(0), "GET /agent: {}", show(&out));
    assert_eq!(fs::read(&agent)?, fs::read(binary("rdeploy-agent")?)?);
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o755))?;
    let edeploy = bin.join("edeploy");
    std::os::unix::fs::symlink("rdeploy-agent", &edeploy)?;
    // eDeploy's verbs, verbatim; --root because this host is a directory of the test.
    let run = |args: &[&str]| -> Result<Output> {
        let mut all = args.to_vec();
        all.extend(["--root", root_arg.as_str()]);
        run_program(&edeploy, &all, &[])
    };
    assert_eq!(run(&["version"])?.stdout, "1\n");
    assert_eq!(run(&["role"])?.stdout, "base\n");
    assert_eq!(run(&["profile"])?.stdout, "kvm\n");
    assert_eq!(run(&["list"])?.stdout, "2\n");
    let out = run(&["test-upgrade", "2"])?;
    ensure!(out.code == Some(0), "test-upgrade: {}", show(&out));
    assert_eq!(fs::read_to_string(root.join("etc/motd"))?, "version 1\n");
    let out = run(&["upgrade", "2"])?;
    ensure!(out.code == Some(0), "upgrade: {}", show(&out));
    assert_eq!(
        fs::read_to_string(root.join("etc/motd"))?,
        "version 2, upgraded\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/share/new.txt"))?,
        "new in 2\n"
    );
    // exclude kept the local edit; add_only (eDeploy's default: /var) created what was
    // missing there and left the rest alone.
    assert_eq!(
        fs::read_to_string(root.join("etc/app.conf"))?,
        "local = edited\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("var/lib/app/state"))?,
        "state of v1\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("var/lib/app/seed"))?,
        "seed of v2\n"
    );
    assert_eq!(run(&["version"])?.stdout, "2\n");
    let out = run(&["verify"])?;
    ensure!(out.code == Some(0), "verify: {}", show(&out));

    // deactivate-pkgmngr / activate-pkgmngr.
    write(&root, "usr/bin/apt-get", "#!/bin/sh\necho real apt-get\n")?;
    let out = run(&["deactivate-pkgmngr"])?;
    assert_eq!(out.stdout, "apt-get: deactivated\n", "{}", show(&out));
    assert!(fs::read_to_string(root.join("usr/bin/apt-get"))?.contains("is deactivated"));
    run(&["activate-pkgmngr"])?;
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/apt-get"))?,
        "#!/bin/sh\necho real apt-get\n"
    );

    // help, and no verb at all: eDeploy's usage, exit 1.
    let out = run_program(&edeploy, &["help"], &[])?;
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.contains("test-upgrade"), "{}", show(&out));
    let out = run_program(&edeploy, &[], &[])?;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.starts_with("Usage: edeploy ({test-}upgrade"),
        "{}",
        show(&out)
    );

    // A host eDeploy installed: its /var/lib/edeploy/conf is read.
    let old = env.path("old-host");
    write(
        &old,
        "var/lib/edeploy/conf",
        "VERS=D7-H.1.0.0\nROLE=openstack\nRSERV=10.0.0.2\nRSERV_PORT=873\nRPATH=install\n",
    )?;
    let old_arg = old.display().to_string();
    let out = run_program(&edeploy, &["version", "--root", &old_arg], &[])?;
    assert_eq!(out.stdout, "D7-H.1.0.0\n", "{}", show(&out));
    let out = run_program(&edeploy, &["role", "--root", &old_arg], &[])?;
    assert_eq!(out.stdout, "openstack\n");
    Ok(())
}
