//! TLS end to end, over loopback with real certificates: `rdeploy serve --tls-self-signed`,
//! the agent pinning that certificate and refusing another server's, HTTP/2 by ALPN, the
//! operator commands with `--ca`, and `rdeploy-initrd build --ca`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use rdeploy_tests::{copy_dir, curl, run_binary, workspace_path, Output, Server};

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.code, out.stdout, out.stderr
    )
}

/// A server with its own self-signed certificate, on a copy of `examples/config`.
fn tls_server(dir: &Path, extra: &[&str]) -> Result<Server> {
    let config = dir.join("config");
    if !config.exists() {
        copy_dir(&workspace_path("examples/config"), &config)?;
        // The role tree the kvm profile installs.
        let tree = dir.join("data/install/1.0/base/etc");
        std::fs::create_dir_all(&tree)?;
        std::fs::write(tree.join("os-release"), "ID=rdeploy-test\n")?;
    }
    let mut args = vec!["--tls-self-signed"];
    args.extend_from_slice(extra);
    Server::start(&config, &dir.join("data"), &args)
}

fn ca_of(server: &Server) -> Result<String> {
    Ok(server
        .ca
        .as_ref()
        .context("no certificate")?
        .to_string_lossy()
        .into_owned())
}

/// An agent's dry run against `server`, trusting `ca`.
fn agent(dir: &Path, server: &str, ca: &str) -> Result<Output> {
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, "BOOT_IMAGE=/vmlinuz quiet\n")?;
    let hw = workspace_path("examples/hw/kvm.json");
    run_binary(
        "rdeploy-agent",
        &[
            "run",
            "--dry-run",
            "--server",
            server,
            "--ca",
            ca,
            "--cmdline",
            cmdline.to_str().context("path")?,
            "--hw",
            hw.to_str().context("path")?,
            "--firmware",
            "bios",
            "--retry-for",
            "20s",
        ],
    )
}

#[test]
fn the_agent_pins_the_servers_certificate_and_refuses_another() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a_dir)?;
    std::fs::create_dir_all(&b_dir)?;
    let mut a = tls_server(&a_dir, &[])?;
    let b = tls_server(&b_dir, &[])?;
    ensure!(a.base.starts_with("https://127.0.0.1:"), "{}", a.base);
    let ca_a = ca_of(&a)?;

    // How to pin it: its path, fingerprint and the initrd command, on stderr.
    let log = std::fs::read_to_string(a_dir.join("server.log"))?;
    ensure!(
        log.contains(&format!("rdeploy-initrd build --ca {ca_a}")),
        "{log}"
    );
    let fingerprint = |log: &str| -> Option<String> {
        log.lines()
            .find_map(|l| l.strip_prefix("rdeploy: SHA-256 fingerprint "))
            .map(str::to_owned)
    };
    let first = fingerprint(&log).context("no fingerprint printed")?;
    ensure!(first.len() == 95, "{first}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = a_dir.join("data/tls/self-signed.key");
        ensure!(std::fs::metadata(&key)?.permissions().mode() & 0o777 == 0o600);
    }

    // The pinned server: the whole dry run over https.
    let out = agent(&a_dir, &a.base, &ca_a)?;
    ensure!(out.code == Some(0), "{}", show(&out));
    let node = a.get_json("/nodes/KVM-NotSpecified-52-54-00-12-34-56")?;
    ensure!(node["state"] == "installed", "{node:#}");

    // Another server (its own self-signed certificate): refused at once, not retried.
    let started = std::time::Instant::now();
    let out = agent(&b_dir, &b.base, &ca_a)?;
    let all = show(&out);
    ensure!(out.code == Some(1), "{all}");
    ensure!(
        all.contains(&format!("upload: refused the certificate of {}", b.base))
            && all.contains("invalid peer certificate")
            && all.contains(&format!("(the agent trusts only {ca_a})")),
        "{all}"
    );
    ensure!(!all.contains("next try in"), "{all}");
    ensure!(started.elapsed().as_secs() < 15, "{all}");
    // Nothing reached B.
    ensure!(b.get_json("/nodes")?.to_string().contains("[]"), "{all}");

    // With a CA, plain http:// is refused before any call.
    let plain = a.base.replacen("https://", "http://", 1);
    let out = agent(&a_dir, &plain, &ca_a)?;
    ensure!(out.code == Some(2) || out.code == Some(1), "{}", show(&out));
    ensure!(out.stderr.contains("over https:// only"), "{}", show(&out));

    // A restart keeps the certificate: the pinned copy stays good.
    a.stop();
    let a = tls_server(&a_dir, &[])?;
    let log = std::fs::read_to_string(a_dir.join("server.log"))?;
    ensure!(fingerprint(&log) == Some(first.clone()), "{log}");
    ensure!(log.contains("kept from an earlier start"), "{log}");
    ensure!(a.get_json("/healthz")?.is_object());
    Ok(())
}

#[test]
fn http2_is_negotiated_by_alpn_and_http1_still_works() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let server = tls_server(tmp.path(), &[])?;
    let pem = std::fs::read(server.ca.as_ref().context("no certificate")?)?;
    let client = |http1: bool| -> Result<reqwest::blocking::Client> {
        let mut b = reqwest::blocking::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        if http1 {
            b = b.http1_only();
        }
        Ok(b.build()?)
    };
    let resp = client(false)?.get(server.url("/healthz")).send()?;
    ensure!(resp.status().is_success(), "{}", resp.status());
    ensure!(
        resp.version() == reqwest::Version::HTTP_2,
        "{:?}",
        resp.version()
    );
    let resp = client(true)?.get(server.url("/healthz")).send()?;
    ensure!(
        resp.version() == reqwest::Version::HTTP_11,
        "{:?}",
        resp.version()
    );
    // The caller's address still reaches the handlers (ConnectInfo): PXE Manager's
    // /profile/ answers for the caller, by its address.
    let resp = client(false)?.get(server.url("/profile/")).send()?;
    ensure!(!resp.status().is_server_error(), "{}", resp.status());
    // curl as well, by ALPN (`--http2` over TLS).
    let ca = ca_of(&server)?;
    let out = curl(&[
        "-sS",
        "-v",
        "--http2",
        "--cacert",
        &ca,
        &server.url("/healthz"),
    ])?;
    ensure!(out.code == Some(0), "{}", show(&out));
    ensure!(
        out.stderr.contains("ALPN: server accepted h2"),
        "{}",
        show(&out)
    );
    Ok(())
}

#[test]
fn boot_files_stay_on_plain_http_beside_the_tls_listener() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let boot_addr = format!("127.0.0.1:{port}");
    let server = tls_server(tmp.path(), &["--boot-listen", &boot_addr])?;
    let get = |path: &str| -> Result<(u16, String)> {
        let resp = reqwest::blocking::get(format!("http://{boot_addr}{path}"))?;
        Ok((resp.status().as_u16(), resp.text()?))
    };
    let (status, chain) = get("/boot.ipxe")?;
    ensure!(status == 200, "{status} {chain}");
    ensure!(
        chain.contains(&format!("chain http://{boot_addr}/boot/")),
        "{chain}"
    );
    let (status, script) = get("/boot/52-54-00-12-34-56.ipxe")?;
    ensure!(status == 200, "{status} {script}");
    ensure!(
        script.contains(&format!("kernel http://{boot_addr}/images/vmlinuz"))
            && script.contains(&format!("rdeploy.server={}", server.base)),
        "{script}"
    );
    // Nothing else answers there.
    for path in ["/nodes", "/healthz", "/upload"] {
        let (status, _) = get(path)?;
        ensure!(status == 404, "{path}: {status}");
    }
    Ok(())
}

#[test]
fn the_operator_commands_verify_with_ca() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a_dir)?;
    std::fs::create_dir_all(&b_dir)?;
    let a = tls_server(&a_dir, &[])?;
    let b = tls_server(&b_dir, &[])?;
    let ca_a = ca_of(&a)?;
    let out = run_binary("rdeploy", &["quota", "--server", &a.base, "--ca", &ca_a])?;
    ensure!(out.code == Some(0), "{}", show(&out));
    ensure!(out.stdout.contains("kvm"), "{}", show(&out));
    // Another server's certificate, or no --ca (the system's roots): refused.
    let out = run_binary("rdeploy", &["quota", "--server", &b.base, "--ca", &ca_a])?;
    ensure!(out.code != Some(0), "{}", show(&out));
    ensure!(
        out.stderr.contains("invalid peer certificate"),
        "{}",
        show(&out)
    );
    let out = run_binary("rdeploy", &["quota", "--server", &a.base])?;
    ensure!(out.code != Some(0), "{}", show(&out));
    // A CA file that is not one is named.
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "nope\n")?;
    let junk_s = junk.to_string_lossy();
    let out = run_binary("rdeploy", &["quota", "--server", &a.base, "--ca", &junk_s])?;
    ensure!(
        out.stderr.contains("junk.pem: no certificate"),
        "{}",
        show(&out)
    );
    Ok(())
}

#[test]
fn tls_files_that_are_not_are_named() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "nope\n")?;
    let junk_s = junk.to_string_lossy();
    let data = tmp.path().join("data");
    let out = run_binary(
        "rdeploy",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().context("path")?,
            "--tls-cert",
            &junk_s,
            "--tls-key",
            &junk_s,
        ],
    )?;
    ensure!(out.code != Some(0), "{}", show(&out));
    ensure!(
        out.stderr.contains("junk.pem: no certificate"),
        "{}",
        show(&out)
    );
    Ok(())
}

/// The newest `/boot/vmlinuz-VERSION` with its modules, and busybox (as the agent).
fn host_kernel() -> Option<(PathBuf, PathBuf)> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .is_some_and(|v| Path::new("/lib/modules").join(v).is_dir())
        })
        .collect();
    kernels.sort();
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    Some((kernels.pop()?, busybox))
}

#[test]
fn initrd_build_puts_the_ca_where_the_agent_reads_it() -> Result<()> {
    let Some((kernel, busybox)) = host_kernel() else {
        eprintln!(
            "skipped: no /boot/vmlinuz-VERSION with its modules, or no busybox (bash scripts/deps)"
        );
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let server = tls_server(tmp.path(), &[])?;
    let ca = ca_of(&server)?;
    let out_dir = tmp.path().join("images");
    let out = run_binary(
        "rdeploy-initrd",
        &[
            "build",
            "--kernel",
            kernel.to_str().context("path")?,
            "--agent",
            busybox.to_str().context("path")?,
            "--out",
            out_dir.to_str().context("path")?,
            "--no-grub",
            "--compress",
            "gzip",
            "--ca",
            &ca,
        ],
    )?;
    ensure!(out.code == Some(0), "{}", show(&out));
    let initrd = out_dir.join("initrd.img");
    let list = run_binary(
        "rdeploy-initrd",
        &["list", initrd.to_str().context("path")?],
    )?;
    let pem = std::fs::read(&ca)?;
    let line = format!("f 0644 {} {}", rdeploy_agent::tls::CA_FILE, pem.len());
    ensure!(
        list.stdout.lines().any(|l| l == line),
        "{line}\n{}",
        show(&list)
    );
    // The bytes themselves, read back with cpio.
    let member = rdeploy_agent::tls::CA_FILE.trim_start_matches('/');
    let got = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' | cpio -i --quiet --to-stdout '{member}'",
            initrd.display()
        ))
        .output()?;
    ensure!(got.status.success(), "{:?}", got);
    ensure!(got.stdout == pem, "the CA in the initramfs differs");
    // Not a certificate: refused, named.
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "nope\n")?;
    let out = run_binary(
        "rdeploy-initrd",
        &[
            "build",
            "--kernel",
            kernel.to_str().context("path")?,
            "--agent",
            busybox.to_str().context("path")?,
            "--out",
            tmp.path().join("images2").to_str().context("path")?,
            "--no-grub",
            "--ca",
            junk.to_str().context("path")?,
        ],
    )?;
    ensure!(out.code != Some(0), "{}", show(&out));
    ensure!(
        out.stderr.contains("junk.pem: no certificate"),
        "{}",
        show(&out)
    );
    Ok(())
}
