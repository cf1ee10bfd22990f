//! `rdeploy serve` and `rdeploy-agent run` together: the real binaries over loopback, a temp
//! copy of `examples/config`, and the server's records checked after each run.

use std::fs;
use std::net::TcpListener;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use rdeploy_tests::{
    copy_dir, fake_tools, run_binary, run_binary_env, workspace_path, Output, Server,
};
use serde_json::Value;

const KVM_NODE: &str = "KVM-NotSpecified-52-54-00-12-34-56";

/// A temp dir with `config/` (a copy of `examples/config`, `kvm` limited to 3 installs and
/// its script replaced when `kvm_script` is given), `data/` with role tree base 1.0, and a
/// server on it.
struct Env {
    dir: tempfile::TempDir,
    server: Server,
}

impl Env {
    fn new(kvm_script: Option<&str>, extra: &[&str]) -> Result<Env> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("config");
        copy_dir(&workspace_path("examples/config"), &config)?;
        fs::write(config.join("state"), "[('hp', 4), ('kvm', 3)]\n")?;
        if let Some(script) = kvm_script {
            fs::write(config.join("kvm.configure"), script)?;
        }
        let tree = dir.path().join("data/install/1.0/base");
        fs::create_dir_all(tree.join("etc/default"))?;
        fs::create_dir_all(tree.join("usr/sbin"))?;
        fs::write(tree.join("etc/os-release"), "ID=rdeploy-test\n")?;
        fs::write(tree.join("etc/default/grub"), "GRUB_CMDLINE_LINUX=\"\"\n")?;
        fs::write(tree.join("usr/sbin/grub-install"), "#!/bin/sh\n")?;
        let server = Server::start(&config, &dir.path().join("data"), extra)?;
        Ok(Env { dir, server })
    }

    /// An empty kernel command line, so the machine's own does not leak into the test.
    fn cmdline(&self) -> Result<String> {
        let p = self.dir.path().join("cmdline");
        fs::write(&p, "BOOT_IMAGE=/vmlinuz quiet\n")?;
        Ok(p.to_string_lossy().into_owned())
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_string_lossy().into_owned()
    }

    fn agent(&self, extra: &[&str]) -> Result<Output> {
        let cmdline = self.cmdline()?;
        let hw = workspace_path("examples/hw/kvm.json");
        let mut args = vec![
            "run",
            "--server",
            &self.server.base,
            "--hw",
            hw.to_str().context("path")?,
        ];
        args.extend_from_slice(extra);
        // Defaults the test may override: no kernel parameters, 20 s for the server.
        if !extra.contains(&"--cmdline") {
            args.extend_from_slice(&["--cmdline", &cmdline]);
        }
        if !extra.contains(&"--retry-for") {
            args.extend_from_slice(&["--retry-for", "20s"]);
        }
        run_binary("rdeploy-agent", &args)
    }

    fn kvm_quota(&self) -> Result<Value> {
        let q = self.server.get_json("/quota")?;
        q["profiles"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["profile"] == "kvm").cloned())
            .with_context(|| format!("no kvm in /quota: {q}"))
    }
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.code, out.stdout, out.stderr
    )
}

/// The lines of `text` from the one equal to `first` up to the next `## ` section.
fn section<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| *l != first);
    let mut out: Vec<&str> = lines.next().into_iter().collect();
    out.extend(lines.take_while(|l| !l.starts_with("## ")));
    out
}

#[test]
fn dry_run_installs_kvm_and_flips_its_boot_to_local() -> Result<()> {
    let env = Env::new(None, &[])?;
    assert_eq!(env.kvm_quota()?["quota"], "3");
    let out = env.agent(&["--dry-run", "--firmware", "bios", "--onsuccess", "reboot"])?;
    let all = show(&out);
    ensure!(out.code == Some(0), "{all}");

    // The plan: exactly the commands and files a real run of the kvm example would do.
    assert_eq!(
        out.stdout.lines().next(),
        Some(format!("# rdeploy-agent dry run: profile kvm, node {KVM_NODE}").as_str()),
        "{all}"
    );
    assert_eq!(
        section(&out.stdout, "## configure: kvm.configure"),
        [
            "## configure: kvm.configure",
            "# role: base 1.0 on /dev/vda",
            "# filesystem: /dev/vda1 vfat label boot",
            "# filesystem: /dev/vda2 ext4 label root",
            "# mount: /dev/vda2 on / (/chroot, ext4)",
            "# mount: /dev/vda1 on /boot/efi (/chroot/boot/efi, vfat)",
            "$ sgdisk --clear --new=1:0:+512M --typecode=1:EF00 --change-name=1:boot --new=2:0:0 --typecode=2:8300 --change-name=2:root /dev/vda",
            "$ mkfs.vfat -F 32 -n boot /dev/vda1",
            "$ mkfs.ext4 -F -L root /dev/vda2",
            "$ mkdir -p /chroot",
            "$ mount /dev/vda2 /chroot",
            "$ mkdir -p /chroot/boot/efi",
            "$ mount /dev/vda1 /chroot/boot/efi",
            "--- /etc/hostname (mode 0644)",
            "vm010",
            "--- end",
        ],
        "{all}"
    );
    let install = section(&out.stdout, "## install_role: base 1.0 into /chroot");
    let copy_and_fstab: Vec<&str> = install
        .iter()
        .copied()
        .skip_while(|l| l.starts_with('#'))
        .collect();
    assert_eq!(
        copy_and_fstab,
        [
            "$ cp -a /post_rsync/. /chroot/",
            "$ blkid -s UUID -o value /dev/vda2",
            "$ blkid -s UUID -o value /dev/vda1",
            "--- /chroot/etc/fstab (mode 0644)",
            "# /etc/fstab: written by rdeploy-agent from the configure script's mounts",
            "LABEL=root / ext4 errors=remount-ro 0 1",
            "LABEL=boot /boot/efi vfat umask=0077 0 2",
            "--- end",
        ],
        "{all}"
    );
    assert_eq!(
        section(&out.stdout, "## bootloader: grub, BIOS, /dev/vda"),
        [
            "## bootloader: grub, BIOS, /dev/vda",
            "$ mkdir -p /chroot/dev /chroot/proc /chroot/sys",
            "$ mount --bind /dev /chroot/dev",
            "$ mount --bind /proc /chroot/proc",
            "$ mount --bind /sys /chroot/sys",
            "$ chroot /chroot grub-install --target=i386-pc --recheck /dev/vda",
            "$ chroot /chroot grub-mkconfig -o /boot/grub/grub.cfg",
            "$ umount /chroot/sys",
            "$ umount /chroot/proc",
            "$ umount /chroot/dev",
        ],
        "{all}"
    );
    let records = section(&out.stdout, "## records and unmount");
    for (i, name) in [
        "inventory.json",
        "kvm.configure",
        "var.json",
        "configure-outcome.json",
        "install.log",
    ]
    .iter()
    .enumerate()
    {
        let line = records.get(i + 1).copied().unwrap_or_default();
        assert!(
            line.starts_with(&format!("--- /chroot/var/log/rdeploy/{name} (mode 0")),
            "{name}: {line:?}\n{all}"
        );
    }
    assert_eq!(
        records[records.len() - 2..],
        ["$ umount /chroot/boot/efi", "$ umount /chroot"],
        "{all}"
    );
    assert_eq!(
        section(&out.stdout, "## onsuccess: reboot"),
        ["## onsuccess: reboot", "$ reboot -f"],
        "{all}"
    );

    // The server's record: states and events in order, the CMDB entry handed out.
    let node = env.server.get_json(&format!("/nodes/{KVM_NODE}"))?;
    let states: Vec<&str> = node["history"]
        .as_array()
        .context("history")?
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
        ],
        "{node:#}"
    );
    let steps: Vec<String> = node["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter(|e| e["kind"] == "progress")
        .map(|e| {
            format!(
                "{}/{}",
                e["step"].as_str().unwrap_or("?"),
                e["status"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let want: Vec<String> = [
        "detect/started",
        "detect/succeeded",
        "upload/started",
        "upload/succeeded",
        "configure/started",
        "configure/succeeded",
        "install_role/started",
        "install_role/succeeded",
        "bootloader/started",
        "bootloader/succeeded",
        "localboot/started",
        // The server's own record of the PXE Manager call the agent made.
        "localboot/succeeded",
        "localboot/succeeded",
        "finish/started",
        "finish/succeeded",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(steps, want, "{node:#}");
    assert_eq!(node["profile"], "kvm");
    assert_eq!(node["var"]["ip"], "192.168.122.10");
    assert_eq!(node["var"]["hostname"], "vm010");
    assert_eq!(node["boot"]["target"], "local");

    let kvm = env.kvm_quota()?;
    assert_eq!(kvm["quota"], "2", "{kvm}");
    assert_eq!(kvm["cmdb_used"], 1, "{kvm}");
    let ipxe = env.server.get_text("/boot/52:54:00:12:34:56.ipxe")?;
    assert!(ipxe.lines().any(|l| l.trim() == "exit"), "{ipxe}");
    Ok(())
}

#[test]
fn a_failing_script_fails_the_node_uploads_the_log_and_gives_the_quota_back() -> Result<()> {
    let script =
        "// fails on its second line\nrun(\"false\");\nset_role(\"base\", \"1.0\", var.disk);\n";
    let env = Env::new(Some(script), &[])?;
    // A real run: `false` really runs (through SystemHost); nothing else does.
    let staging = env.path("staging");
    let target = env.path("chroot");
    let out = env.agent(&[
        "--staging",
        &staging,
        "--target",
        &target,
        "--onfailure",
        "console",
    ])?;
    let all = show(&out);
    assert_eq!(out.code, Some(1), "{all}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "rdeploy-agent: provisioning failed at step configure: kvm.configure:2:1: command failed: `/bin/sh -c false` exited with status 1",
        "{all}"
    );

    let node = env.server.get_json(&format!("/nodes/{KVM_NODE}"))?;
    assert_eq!(node["state"], "failed", "{node:#}");
    let failed = node["events"]
        .as_array()
        .context("events")?
        .iter()
        .find(|e| e["status"] == "failed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed["step"], "configure", "{node:#}");
    let log = fs::read_to_string(env.server.data_dir.join(format!("nodes/{KVM_NODE}.log")))
        .context("the agent's log was not uploaded")?;
    assert!(
        log.contains("$ /bin/sh -c false (time limit 1800 s)"),
        "{log}"
    );
    assert!(
        log.contains("FAILED: kvm.configure:2:1: command failed"),
        "{log}"
    );
    let kvm = env.kvm_quota()?;
    assert_eq!(kvm["quota"], "3", "the install was not given back: {kvm}");
    assert!(!Path::new(&target).exists(), "nothing but `false` ran");
    Ok(())
}

#[test]
fn a_server_that_is_down_is_retried_with_messages_then_given_up() -> Result<()> {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let cmdline = dir.path().join("cmdline");
    fs::write(
        &cmdline,
        format!("rdeploy.server=http://127.0.0.1:{port} rdeploy.retry_for=3\n"),
    )?;
    let hw = workspace_path("examples/hw/kvm.json");
    let out = run_binary(
        "rdeploy-agent",
        &[
            "run",
            "--cmdline",
            cmdline.to_str().context("path")?,
            "--hw",
            hw.to_str().context("path")?,
        ],
    )?;
    let all = show(&out);
    assert_eq!(out.code, Some(1), "{all}");
    let retries: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with(&format!("rdeploy-agent: upload to http://127.0.0.1:{port}: cannot connect: Connection refused")))
        .collect();
    assert!(retries.len() >= 2, "{all}");
    assert!(
        retries.iter().all(|l| l.contains("; next try in ")),
        "{all}"
    );
    assert!(
        out.stderr.lines().last().unwrap_or_default().starts_with(
            "rdeploy-agent: provisioning failed at step upload: upload: gave up after "
        ),
        "{all}"
    );
    assert!(
        out.stderr
            .contains("(retry time 3 s): cannot connect: Connection refused"),
        "{all}"
    );
    Ok(())
}

/// `rdeploy.server=` with two servers, the first down: the agent moves to the second, says
/// so, and the whole install (upload, events with the node's token, the flip to local boot)
/// goes there.
#[test]
fn an_agent_moves_to_the_next_server_when_one_is_down() -> Result<()> {
    let env = Env::new(None, &[])?;
    let dead = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let cmdline = env.dir.path().join("cmdline-two");
    fs::write(
        &cmdline,
        format!(
            "rdeploy.server=http://127.0.0.1:{dead},{} rdeploy.retry_for=30\n",
            env.server.base
        ),
    )?;
    let hw = workspace_path("examples/hw/kvm.json");
    let out = run_binary(
        "rdeploy-agent",
        &[
            "run",
            "--cmdline",
            cmdline.to_str().context("path")?,
            "--hw",
            hw.to_str().context("path")?,
            "--dry-run",
            "--firmware",
            "bios",
        ],
    )?;
    let all = show(&out);
    ensure!(out.code == Some(0), "{all}");
    ensure!(
        out.stderr.contains(&format!(
            "http://127.0.0.1:{dead} cannot be reached: moving to the next server, {}",
            env.server.base
        )),
        "{all}"
    );
    let node = env.server.get_json(&format!("/nodes/{KVM_NODE}"))?;
    ensure!(node["state"] == "installed", "{node}");
    ensure!(node["boot"]["target"] == "local", "{node}");
    Ok(())
}

#[test]
fn admission_control_is_honoured_with_the_servers_retry_after() -> Result<()> {
    let env = Env::new(None, &["--max-installs", "1"])?;
    // Another machine takes the only install slot.
    let other = r#"[["system", "product", "name", "KVM"], ["system", "product", "serial", "OTHER"],
                    ["disk", "vda", "size", "20"], ["network", "eth0", "serial", "52:54:00:00:00:99"],
                    ["network", "eth0", "link", "yes"]]"#;
    let resp = reqwest::blocking::Client::new()
        .post(env.server.url("/upload"))
        .body(other)
        .send()?;
    ensure!(resp.status().is_success(), "{:?}", resp.text());
    let out = env.agent(&["--dry-run", "--retry-for", "2s"])?;
    let all = show(&out);
    assert_eq!(out.code, Some(1), "{all}");
    assert!(
        out.stderr.contains("upload to http://127.0.0.1:")
            && out
                .stderr
                .contains(": the server answered 503 install_limit: "),
        "{all}"
    );
    // Retry-After is 15 s; the pause is cut to what is left of the 2 s, and then it gives up.
    let pause: f64 = out
        .stderr
        .split("; next try in ")
        .nth(1)
        .and_then(|rest| rest.split(" s (attempt 1").next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no retry message: {all}"))?;
    assert!(pause <= 2.0, "{all}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("upload: gave up after 2 attempts in ")
            && last.contains(" s (retry time 2 s): the server answered 503 install_limit"),
        "{all}"
    );
    Ok(())
}

#[test]
fn check_prints_the_plan_and_locates_script_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config");
    copy_dir(&workspace_path("examples/config"), &config)?;
    let hw = workspace_path("examples/hw/kvm.json");
    let config_s = config.to_str().context("path")?;
    let hw_s = hw.to_str().context("path")?;
    let before = fs::read_to_string(config.join("kvm.cmdb"))?;
    let out = run_binary("rdeploy", &["check", "--config-dir", config_s, hw_s])?;
    let all = show(&out);
    assert_eq!(out.code, Some(0), "{all}");
    assert!(out.stdout.contains("  plan of kvm.configure (dry run, nothing executed):\n    # role: base 1.0 on /dev/vda\n"), "{all}");
    assert!(
        out.stdout
            .contains("\n    $ mkfs.ext4 -F -L root /dev/vda2\n"),
        "{all}"
    );
    assert_eq!(
        fs::read_to_string(config.join("kvm.cmdb"))?,
        before,
        "check changed the CMDB"
    );

    fs::write(config.join("hp.configure"), "run(\"true\");\nlet x = ;\n")?;
    let out = run_binary("rdeploy", &["check", "--config-dir", config_s])?;
    let all = show(&out);
    assert_eq!(out.code, Some(2), "{all}");
    let want = format!(
        "{}:2:9: error: syntax error: ",
        config.join("hp.configure").display()
    );
    assert!(out.stdout.lines().any(|l| l.starts_with(&want)), "{all}");
    Ok(())
}

#[test]
fn a_hung_command_is_killed_at_the_command_timeout_and_named() -> Result<()> {
    let script = "run(\"sleep 600\");\nset_role(\"base\", \"1.0\", var.disk);\n";
    let env = Env::new(Some(script), &[])?;
    let staging = env.path("staging");
    let target = env.path("chroot");
    // The time limit from the kernel command line, as an installer gets it.
    let cmdline = env.path("cmdline-timeout");
    fs::write(
        &cmdline,
        "rdeploy.command_timeout=1 rdeploy.onfailure=console\n",
    )?;
    let out = env.agent(&[
        "--cmdline",
        &cmdline,
        "--staging",
        &staging,
        "--target",
        &target,
    ])?;
    let all = show(&out);
    assert_eq!(out.code, Some(1), "{all}");
    assert_eq!(
        out.stderr.lines().last().unwrap_or_default(),
        "rdeploy-agent: provisioning failed at step configure: kvm.configure:1:1: host error: `/bin/sh -c 'sleep 600'` timed out after 1s and was killed",
        "{all}"
    );
    let log = fs::read_to_string(env.server.data_dir.join(format!("nodes/{KVM_NODE}.log")))?;
    assert!(
        log.contains("$ /bin/sh -c 'sleep 600' (time limit 1 s)"),
        "{log}"
    );
    Ok(())
}

#[test]
fn a_real_run_installs_the_tree_files_fstab_and_records_with_fake_disk_tools() -> Result<()> {
    real_run(false)
}

/// The same run over HTTPS: the server's self-signed certificate pinned (`--ca`), every
/// call (upload, events, role tree, log, local boot) over TLS.
#[test]
fn a_real_run_over_tls_with_the_pinned_certificate() -> Result<()> {
    real_run(true)
}

fn real_run(tls: bool) -> Result<()> {
    let env = Env::new(None, if tls { &["--tls-self-signed"] } else { &[] })?;
    let ca = env
        .server
        .ca
        .clone()
        .map(|p| p.to_string_lossy().into_owned());
    ensure!(
        tls == env.server.base.starts_with("https://") && tls == ca.is_some(),
        "{}",
        env.server.base
    );
    // Everything that would touch disks, mounts or power is a fake that logs its call;
    // mkdir, cp and the role tree install are real, into a temp target.
    let fake = env.dir.path().join("fake-bin");
    let tools: Vec<(&str, Option<&str>)> = [
        "sgdisk",
        "mkfs.vfat",
        "mkfs.ext4",
        "mount",
        "umount",
        "chroot",
        "reboot",
    ]
    .iter()
    .map(|t| (*t, None))
    .chain([("blkid", Some("1111-2222"))])
    .collect();
    let path = fake_tools(&fake, &tools)?;
    // The end action is `reboot -f`: make sure it is the fake one that PATH finds.
    let first = std::env::split_paths(&path).find(|d| d.join("reboot").is_file());
    ensure!(
        first.as_deref() == Some(fake.as_path()),
        "PATH would find another reboot: {first:?}"
    );

    let staging = env.path("staging");
    let target = env.path("chroot");
    let cmdline = env.cmdline()?;
    let hw = workspace_path("examples/hw/kvm.json");
    let mut args = vec![
        "run",
        "--server",
        &env.server.base,
        "--cmdline",
        &cmdline,
        "--hw",
        hw.to_str().context("path")?,
        "--staging",
        &staging,
        "--target",
        &target,
        "--firmware",
        "bios",
        "--onsuccess",
        "reboot",
        "--retry-for",
        "20s",
    ];
    if let Some(ca) = &ca {
        args.extend_from_slice(&["--ca", ca]);
    }
    let out = run_binary_env("rdeploy-agent", &args, &[("PATH", &path)])?;
    let all = show(&out);
    ensure!(out.code == Some(0), "{all}");

    let calls = fs::read_to_string(fake.join("calls.log"))?;
    let t = &target;
    let want = [
        "sgdisk --clear --new=1:0:+512M --typecode=1:EF00 --change-name=1:boot --new=2:0:0 --typecode=2:8300 --change-name=2:root /dev/vda".to_owned(),
        "mkfs.vfat -F 32 -n boot /dev/vda1".to_owned(),
        "mkfs.ext4 -F -L root /dev/vda2".to_owned(),
        format!("mount /dev/vda2 {t}"),
        format!("mount /dev/vda1 {t}/boot/efi"),
        "blkid -s UUID -o value /dev/vda2".to_owned(),
        "blkid -s UUID -o value /dev/vda1".to_owned(),
        format!("mount --bind /dev {t}/dev"),
        format!("mount --bind /proc {t}/proc"),
        format!("mount --bind /sys {t}/sys"),
        format!("chroot {t} grub-install --target=i386-pc --recheck /dev/vda"),
        format!("chroot {t} grub-mkconfig -o /boot/grub/grub.cfg"),
        format!("umount {t}/sys"),
        format!("umount {t}/proc"),
        format!("umount {t}/dev"),
        format!("umount {t}/boot/efi"),
        format!("umount {t}"),
        "reboot -f".to_owned(),
    ];
    assert_eq!(calls.lines().collect::<Vec<_>>(), want, "{all}");

    let root = Path::new(&target);
    // The role tree, the script's file over it, the fstab from the script's mounts.
    assert_eq!(
        fs::read_to_string(root.join("etc/os-release"))?,
        "ID=rdeploy-test\n"
    );
    assert_eq!(fs::read_to_string(root.join("etc/hostname"))?, "vm010\n");
    let fstab = fs::read_to_string(root.join("etc/fstab"))?;
    assert!(
        fstab.contains("\nUUID=1111-2222 / ext4 errors=remount-ro 0 1\n"),
        "{fstab}"
    );
    // The records.
    let logdir = root.join("var/log/rdeploy");
    let log = fs::read_to_string(logdir.join("install.log"))?;
    assert!(log.contains("bootloader: done"), "{log}");
    assert_eq!(
        fs::read_to_string(logdir.join("kvm.configure"))?,
        fs::read_to_string(workspace_path("examples/config/kvm.configure"))?
    );
    let var: Value = serde_json::from_str(&fs::read_to_string(logdir.join("var.json"))?)?;
    assert_eq!(var["hostname"], "vm010");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(logdir.join("var.json"))?.permissions().mode() & 0o777,
        0o600
    );
    let inv: Value = serde_json::from_str(&fs::read_to_string(logdir.join("inventory.json"))?)?;
    assert_eq!(
        inv[0],
        serde_json::json!(["system", "product", "vendor", "QEMU"])
    );

    let node = env.server.get_json(&format!("/nodes/{KVM_NODE}"))?;
    assert_eq!(node["state"], "installed", "{node:#}");
    assert_eq!(node["boot"]["target"], "local", "{node:#}");
    Ok(())
}

#[test]
fn a_captured_tree_is_detected_uploaded_and_installed() -> Result<()> {
    let env = Env::new(None, &[])?;
    let cmdline = env.cmdline()?;
    let root = workspace_path("agent/tests/fixtures/sysroot/qemu-kvm-guest");
    let out = run_binary(
        "rdeploy-agent",
        &[
            "run",
            "--dry-run",
            "--server",
            &env.server.base,
            "--cmdline",
            &cmdline,
            "--root",
            root.to_str().context("path")?,
            "--retry-for",
            "20s",
        ],
    )?;
    let all = show(&out);
    ensure!(out.code == Some(0), "{all}");
    let first = out.stdout.lines().next().unwrap_or_default();
    let node = first
        .strip_prefix("# rdeploy-agent dry run: profile kvm, node ")
        .with_context(|| format!("not matched as kvm: {all}"))?;
    let record = env.server.get_json(&format!("/nodes/{node}"))?;
    assert_eq!(record["state"], "installed", "{record:#}");
    Ok(())
}
