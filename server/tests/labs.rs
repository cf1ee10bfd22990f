//! Labs (`docs/labs.md`): hosts added with an address, DHCP configs, VMs, through the real
//! binary and a real server on loopback, as an operator types the commands.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A running `rdeploy serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(config: &Path, data: &Path) -> Res<Server> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rdeploy"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config-dir"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
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
        Ok(Server { child, base })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rdeploy ARGS... --server URL`: (exit code, stdout, stderr).
fn rdeploy(args: &[&str]) -> Res<(i32, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_rdeploy"))
        .args(args)
        .env_remove("RDEPLOY_TOKEN")
        .env_remove("RDEPLOY_TOKEN_FILE")
        .env_remove("RDEPLOY_SERVER")
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A config dir: a `vm` profile whose CMDB holds 10.0.0.1-3, and `labs.toml`.
fn lab_config(labs_toml: &str) -> Res<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let p = dir.path();
    fs::write(p.join("state"), "[('vm', '*')]\n")?;
    fs::write(
        p.join("vm.specs"),
        "[('system', 'product', 'name', 'KVM'), ('network', '$eth', 'serial', '$mac')]\n",
    )?;
    fs::write(
        p.join("vm.cmdb"),
        "generate({'ip': '10.0.0.1-3', 'hostname': 'vm1-3'})\n",
    )?;
    fs::write(p.join("vm.configure"), "// vm\n")?;
    fs::write(p.join("labs.toml"), labs_toml)?;
    Ok(dir)
}

/// The MAC and address of a `system add` line `NAME: MAC, IP (next boot install)`.
fn added(out: &str) -> Option<(String, String, String)> {
    let (name, rest) = out.trim().split_once(": ")?;
    let (mac, rest) = rest.split_once(", ")?;
    let (ip, _) = rest.split_once(' ')?;
    Some((name.to_owned(), mac.to_owned(), ip.to_owned()))
}

#[test]
fn system_add_auto_takes_free_addresses_names_and_macs() -> Res {
    let config = lab_config("range = \"10.0.0.1-10.0.0.6\"\nname_pattern = \"lab-{n:02}\"\n")?;
    let data = tempfile::tempdir()?;
    let server = Server::start(config.path(), data.path())?;
    let url = server.base.as_str();

    // A system PXE Manager's way holds 10.0.0.4; the CMDB holds 10.0.0.1-3.
    let (code, _, err) = rdeploy(&[
        "system",
        "add",
        "other",
        "52:54:00:00:00:01",
        "10.0.0.4",
        "--server",
        url,
    ])?;
    assert_eq!(code, 0, "{err}");

    // --auto: the first free address, a name from the pattern, a derived MAC.
    let (code, out, err) = rdeploy(&[
        "system",
        "add",
        "--auto",
        "--name-pattern",
        "lab-{n:02}",
        "--server",
        url,
    ])?;
    assert_eq!(code, 0, "{err}");
    let (name, mac, ip) = added(&out).ok_or(out.clone())?;
    assert_eq!(
        (name.as_str(), ip.as_str()),
        ("lab-01", "10.0.0.5"),
        "{out}"
    );
    let first = u8::from_str_radix(&mac[..2], 16)?;
    assert_eq!(first & 3, 2, "{mac}: locally administered unicast");

    // Again: the same host, the same address and MAC (stable).
    let (code, again, err) = rdeploy(&["system", "add", "lab-01", "--auto", "--server", url])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, out);

    // Given a MAC (as the first word, no name): that MAC, the next name.
    let (code, out, err) = rdeploy(&[
        "system",
        "add",
        "52:54:00:00:00:02",
        "--auto",
        "--name-pattern",
        "lab-{n:02}",
        "--server",
        url,
    ])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "lab-02: 52:54:00:00:00:02, 10.0.0.6 (next boot install)"
    );

    // The range is used up: what and where.
    let (code, _, err) = rdeploy(&["system", "add", "--auto", "--server", url])?;
    assert_eq!(code, 2);
    let labs = config.path().join("labs.toml");
    assert!(
        err.contains(&format!(
            "no free address in 10.0.0.1-10.0.0.6 ({}): all 6 taken (system: 3, vm.cmdb: 3)",
            labs.display()
        )),
        "{err}"
    );
    // A CMDB entry's address, a system's address: taken, and by whom.
    let (code, _, err) = rdeploy(&["system", "add", "x", "--ip", "10.0.0.2", "--server", url])?;
    assert_eq!(code, 2);
    assert!(
        err.contains("10.0.0.2 is taken by vm.cmdb (hostname vm2)"),
        "{err}"
    );
    let (_, _, err) = rdeploy(&["system", "add", "x", "--ip", "10.0.0.5", "--server", url])?;
    assert!(err.contains("10.0.0.5 is taken by system lab-01"), "{err}");
    // Bad MACs, bad ranges, bad patterns.
    let (code, _, err) = rdeploy(&[
        "system", "add", "x", "nope", "--ip", "10.0.0.9", "--server", url,
    ])?;
    assert_eq!(code, 2);
    assert!(err.contains("\"nope\" is not a MAC address"), "{err}");
    let (_, _, err) = rdeploy(&[
        "system",
        "add",
        "x",
        "01:00:5e:00:00:01",
        "--ip",
        "10.0.0.9",
        "--server",
        url,
    ])?;
    assert!(err.contains("not a unicast MAC address"), "{err}");
    let (_, _, err) = rdeploy(&[
        "system",
        "add",
        "--auto",
        "--range",
        "10.0.1.9-3",
        "--server",
        url,
    ])?;
    assert!(err.contains("the range ends before it starts"), "{err}");
    let (_, _, err) = rdeploy(&[
        "system",
        "add",
        "--ip",
        "10.0.0.9",
        "--name-pattern",
        "lab",
        "--server",
        url,
    ])?;
    assert!(err.contains("needs {n} or {ip}"), "{err}");

    // --ip: that address; the MAC derived from the name is the same as it was for lab-01
    // on any server (stable), and different for another name.
    let (code, out, err) = rdeploy(&[
        "system",
        "add",
        "web1",
        "--ip",
        "10.0.0.21",
        "--server",
        url,
    ])?;
    assert_eq!(code, 0, "{err}");
    let (_, web_mac, _) = added(&out).ok_or(out.clone())?;
    assert_ne!(web_mac, mac);
    let (_, list, _) = rdeploy(&["system", "list", "--server", url])?;
    assert!(
        list.contains(&format!("web1    {web_mac}  10.0.0.21")),
        "{list}"
    );
    Ok(())
}

/// Without a name pattern asked for, the resolver's name for the address wins:
/// 127.0.0.1 is `localhost` in every /etc/hosts.
#[test]
fn system_add_auto_names_a_host_the_resolver_knows() -> Res {
    let config = lab_config("")?;
    let data = tempfile::tempdir()?;
    let server = Server::start(config.path(), data.path())?;
    let url = server.base.as_str();
    let (code, _, err) = rdeploy(&["system", "add", "--auto", "--server", url])?;
    assert_eq!(code, 2);
    assert!(err.contains("no address range: set `range"), "{err}");
    let (code, out, err) = rdeploy(&[
        "system",
        "add",
        "--auto",
        "--range",
        "127.0.0.1-127.0.0.2",
        "--server",
        url,
    ])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("localhost: "), "{out}");
    Ok(())
}

/// A program of the Debian packages the tests need (scripts/apt-packages), or why not.
fn tool(path: &str) -> Option<&str> {
    if Path::new(path).exists() {
        Some(path)
    } else if std::env::var_os("CI").is_some() {
        panic!("{path} is missing: run scripts/deps (scripts/apt-packages lists its package)");
    } else {
        eprintln!("skipped: {path} is not installed (scripts/deps installs it)");
        None
    }
}

/// `rdeploy dhcp-config`: a host for every registered system and every node with a CMDB
/// `ip`, the boot lines, `--write` only on change; the daemons' own checkers accept both.
#[test]
fn dhcp_config_for_dnsmasq_and_isc_passes_the_daemons_checks() -> Res {
    let config = lab_config("range = \"10.0.0.100-10.0.0.199\"\n")?;
    // A CMDB entry with a MAC: known before the machine ever booted.
    fs::write(
        config.path().join("vm.cmdb"),
        "[{'ip': '10.0.0.1', 'hostname': 'vm1'}, {'ip': '10.0.0.2', 'hostname': 'vm2', 'mac': '52:54:00:00:00:22'}]\n",
    )?;
    let data = tempfile::tempdir()?;
    let server = Server::start(config.path(), data.path())?;
    let url = server.base.as_str();
    // A node with a CMDB ip: an upload allocates vm1's entry.
    let hw = "[('system', 'product', 'name', 'KVM'), ('network', 'eth0', 'serial', '52:54:00:00:00:11')]";
    let (code, _, err) = curl_upload(url, hw)?;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = rdeploy(&["system", "add", "web1", "--auto", "--server", url])?;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = rdeploy(&[
        "system",
        "add",
        "old",
        "52:54:00:00:00:33",
        "10.0.0.33",
        "--server",
        url,
    ])?;
    assert_eq!(code, 0, "{err}");

    let out = tempfile::tempdir()?;
    let common = [
        "--subnet",
        "10.0.0.0/24",
        "--public-url",
        "http://10.0.0.1:8080",
        "--router",
        "10.0.0.254",
        "--server",
        url,
    ];
    let dnsmasq_conf = out.path().join("dnsmasq.conf");
    let mut args = vec!["dhcp-config", "--dnsmasq", "--write"];
    let file = dnsmasq_conf.to_str().ok_or("path")?;
    args.push(file);
    args.extend(common);
    let (code, _, err) = rdeploy(&args)?;
    assert_eq!(
        (code, err.trim()),
        (0, format!("{file}: changed (4 hosts)").as_str())
    );
    let text = fs::read_to_string(&dnsmasq_conf)?;
    for line in [
        "dhcp-host=52:54:00:00:00:11,10.0.0.1,vm1\n",
        "dhcp-host=52:54:00:00:00:22,10.0.0.2,vm2\n",
        "dhcp-host=52:54:00:00:00:33,10.0.0.33,old\n",
        "dhcp-boot=tag:ipxe,http://10.0.0.1:8080/boot.ipxe\n",
        "pxe-service=tag:!ipxe,x86PC,\"rdeploy (BIOS)\",undionly.kpxe\n",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    assert!(text.contains(",10.0.0.100,web1\n"), "{text}");
    let (code, _, err) = rdeploy(&args)?;
    assert_eq!(
        (code, err.trim()),
        (1, format!("{file}: unchanged").as_str())
    );
    // What `rdeploy dnsmasq-config` prints is the same boot part.
    let (_, proxy, _) = rdeploy(&[
        "dnsmasq-config",
        "--subnet",
        "10.0.0.0",
        "--public-url",
        "http://10.0.0.1:8080",
    ])?;
    assert!(proxy.contains("dhcp-boot=tag:ipxe,http://10.0.0.1:8080/boot.ipxe\n"));
    if let Some(dnsmasq) = tool("/usr/sbin/dnsmasq") {
        for conf in [text.clone(), proxy] {
            let f = out.path().join("check.conf");
            fs::write(&f, &conf)?;
            let o = Command::new(dnsmasq)
                .arg("--test")
                .arg("-C")
                .arg(&f)
                .output()?;
            assert!(
                o.status.success(),
                "dnsmasq --test: {}\n{conf}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    let mut args = vec!["dhcp-config", "--isc"];
    args.extend(common);
    let (code, isc, err) = rdeploy(&args)?;
    assert_eq!(code, 0, "{err}");
    assert!(
        isc.contains(
            "host old {\n    hardware ethernet 52:54:00:00:00:33;\n    fixed-address 10.0.0.33;\n"
        ),
        "{isc}"
    );
    assert!(
        isc.contains("filename \"http://10.0.0.1:8080/boot.ipxe\";"),
        "{isc}"
    );
    if let Some(dhcpd) = tool("/usr/sbin/dhcpd") {
        let f = out.path().join("dhcpd.conf");
        fs::write(&f, &isc)?;
        let o = Command::new(dhcpd).args(["-t", "-cf"]).arg(&f).output()?;
        assert!(
            o.status.success(),
            "dhcpd -t: {}\n{isc}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

/// `curl -F file=@hw.json URL/upload`, the way agents send an inventory.
fn curl_upload(url: &str, hw: &str) -> Res<(i32, String, String)> {
    let dir = tempfile::tempdir()?;
    let f = dir.path().join("hw.json");
    fs::write(&f, hw)?;
    let o = Command::new("curl")
        .args(["-sf", "-F"])
        .arg(format!("file=@{}", f.display()))
        .arg(format!("{url}/upload"))
        .output()?;
    Ok((
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

/// A config dir whose one profile matches any machine with a NIC.
fn any_config() -> Res<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let p = dir.path();
    fs::write(p.join("state"), "[('any', '*')]\n")?;
    fs::write(
        p.join("any.specs"),
        "[('network', '$eth', 'serial', '$mac')]\n",
    )?;
    fs::write(p.join("any.configure"), "// any\n")?;
    fs::write(p.join("labs.toml"), "range = \"10.0.0.100-10.0.0.199\"\n")?;
    Ok(dir)
}

/// Uploads a fixture inventory; the node id the server gave it.
fn upload_fixture(url: &str, fixture: &str) -> Res<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/hw")
        .join(fixture);
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-", "-F"])
        .arg(format!("file=@{}", path.display()))
        .arg(format!("{url}/upload"))
        .output()?;
    let headers = String::from_utf8_lossy(&o.stdout).into_owned();
    headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-rdeploy-node")
                .then(|| v.trim().to_owned())
        })
        .ok_or_else(|| format!("no node in {headers}").into())
}

/// `vm create --like NODE`: the stored inventory's CPU count, 80% of its memory, its disks
/// and NICs, the MAC of the system registered on the spot; libvirt's schema accepts the XML.
#[test]
fn vm_create_like_a_stored_inventory() -> Res {
    let config = any_config()?;
    let data = tempfile::tempdir()?;
    let server = Server::start(config.path(), data.path())?;
    let url = server.base.as_str();
    let node = upload_fixture(url, "dell-r630.json")?;
    let out = tempfile::tempdir()?;

    // QEMU: 40 CPUs, 80% of 128 GiB, 8 disks, 4 NICs, network first.
    let script = out.path().join("r630.sh");
    let (code, _, err) = rdeploy(&[
        "vm",
        "create",
        "r630-vm",
        "--like",
        &node,
        "--format",
        "qemu",
        "--disk-dir",
        "/vms",
        "--out",
        script.to_str().ok_or("path")?,
        "--server",
        url,
    ])?;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("registered r630-vm: "), "{err}");
    let (_, shown, _) = rdeploy(&["system", "show", "r630-vm", "--server", url])?;
    let mac = shown
        .lines()
        .find_map(|l| l.strip_prefix("Mac: "))
        .ok_or(shown.clone())?
        .to_owned();
    assert!(shown.contains("IP: 10.0.0.100 "), "{shown}");
    let text = fs::read_to_string(&script)?;
    let words: Vec<&str> = text
        .split(" \\\n    ")
        .flat_map(|w| w.lines().next())
        .collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1).copied())
    };
    assert_eq!(after("-smp"), Some("40"), "{text}");
    assert_eq!(after("-m"), Some("104857"), "{text}");
    assert!(
        text.contains(&format!("netdev=n0,mac={mac},bootindex=1")),
        "{text}"
    );
    assert_eq!(text.matches("virtio-blk-pci").count(), 8, "{text}");
    assert_eq!(text.matches("virtio-net-pci").count(), 4, "{text}");
    assert!(text.contains("/vms/r630-vm-disk7.qcow2 571250M"), "{text}");
    // --cpus/--memory win over the inventory; --memory-ratio changes the share.
    let (_, small, _) = rdeploy(&[
        "vm",
        "create",
        "r630-vm",
        "--like",
        &node,
        "--cpus",
        "2",
        "--memory-ratio",
        "0.5",
        "--format",
        "qemu",
        "--server",
        url,
    ])?;
    assert!(
        small.contains("-smp \\\n    2 \\\n    -m \\\n    65536 \\\n"),
        "{small}"
    );

    // libvirt: the same machine, checked against libvirt's schema.
    let xml = out.path().join("r630.xml");
    let (code, _, err) = rdeploy(&[
        "vm",
        "create",
        "r630-vm",
        "--like",
        &node,
        "--format",
        "libvirt",
        "--out",
        xml.to_str().ok_or("path")?,
        "--server",
        url,
    ])?;
    assert_eq!(code, 0, "{err}");
    let text = fs::read_to_string(&xml)?;
    assert!(text.contains("<vcpu>40</vcpu>"), "{text}");
    assert!(
        text.contains("<memory unit='MiB'>104857</memory>"),
        "{text}"
    );
    assert!(text.contains(&format!("<mac address='{mac}'/>")), "{text}");
    assert_eq!(text.matches("<boot order='1'/>").count(), 1, "{text}");
    if let Some(validate) = tool("/usr/bin/virt-xml-validate") {
        let o = Command::new(validate).arg(&xml).arg("domain").output()?;
        assert!(
            o.status.success(),
            "virt-xml-validate: {}{}\n{text}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // A MAC the registered system does not hold is refused.
    let (code, _, err) = rdeploy(&[
        "vm",
        "create",
        "r630-vm",
        "--mac",
        "52:54:00:99:99:99",
        "--format",
        "qemu",
        "--server",
        url,
    ])?;
    assert_eq!(code, 2);
    assert!(err.contains("r630-vm is registered with the MACs"), "{err}");
    Ok(())
}

/// The VirtualBox form, command by command.
#[test]
fn vm_create_virtualbox_script_is_these_commands() -> Res {
    let config = any_config()?;
    let data = tempfile::tempdir()?;
    let server = Server::start(config.path(), data.path())?;
    let url = server.base.as_str();
    let (code, script, err) = rdeploy(&[
        "vm",
        "create",
        "vbox1",
        "--mac",
        "08:00:27:12:34:56",
        "--ip",
        "10.0.0.150",
        "--cpus",
        "2",
        "--memory",
        "1024",
        "--disk",
        "8G",
        "--disk",
        "512M",
        "--nics",
        "2",
        "--bridge",
        "eth1",
        "--disk-dir",
        "/vms",
        "--format",
        "virtualbox",
        "--server",
        url,
    ])?;
    assert_eq!(code, 0, "{err}");
    let (_, shown, _) = rdeploy(&["system", "show", "vbox1", "--server", url])?;
    assert!(
        shown.contains("Mac: 08:00:27:12:34:56\nIP: 10.0.0.150 "),
        "{shown}"
    );
    let nic2 = script
        .lines()
        .find_map(|l| l.split("--macaddress2 ").nth(1))
        .ok_or(script.clone())?;
    assert_eq!(nic2.len(), 12);
    let expected = format!(
        "#!/bin/sh
# rdeploy vm create vbox1 --format virtualbox: 2 CPUs, 1024 MiB, network boot first (MAC 08:00:27:12:34:56).
set -e
VBoxManage createvm --name vbox1 --ostype Linux_64 --register
VBoxManage modifyvm vbox1 --cpus 2 --memory 1024 --ioapic on --rtcuseutc on --boot1 net --boot2 disk --boot3 none --boot4 none
VBoxManage modifyvm vbox1 --nic1 bridged --bridgeadapter1 eth1 --nictype1 82540EM --macaddress1 080027123456
VBoxManage modifyvm vbox1 --nic2 bridged --bridgeadapter2 eth1 --nictype2 82540EM --macaddress2 {nic2}
VBoxManage storagectl vbox1 --name SATA --add sata --portcount 2
VBoxManage createmedium disk --filename /vms/vbox1-disk0.vdi --size 8192
VBoxManage storageattach vbox1 --storagectl SATA --port 0 --device 0 --type hdd --medium /vms/vbox1-disk0.vdi
VBoxManage createmedium disk --filename /vms/vbox1-disk1.vdi --size 512
VBoxManage storageattach vbox1 --storagectl SATA --port 1 --device 0 --type hdd --medium /vms/vbox1-disk1.vdi
"
    );
    assert_eq!(script, expected);
    Ok(())
}

/// `vm start` runs the QEMU form (here a stand-in that records its arguments), making the
/// missing disks first.
#[test]
fn vm_start_runs_qemu_with_the_registered_mac() -> Res {
    let Some(qemu_img) = tool("/usr/bin/qemu-img") else {
        return Ok(());
    };
    let _ = qemu_img;
    let config = any_config()?;
    let data = tempfile::tempdir()?;
    let server = Server::start(config.path(), data.path())?;
    let url = server.base.as_str();
    let dir = tempfile::tempdir()?;
    let fake = dir.path().join("qemu");
    let args_file = dir.path().join("args");
    fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" > {}\n", args_file.display()),
    )?;
    Command::new("chmod").arg("755").arg(&fake).status()?;
    let (code, _, err) = rdeploy(&[
        "vm",
        "start",
        "lab-9",
        "--mac",
        "52:54:00:00:00:99",
        "--cpus",
        "3",
        "--memory",
        "700",
        "--disk",
        "16M",
        "--user-net",
        "127.0.0.1:8080",
        "--disk-dir",
        dir.path().to_str().ok_or("path")?,
        "--qemu",
        fake.to_str().ok_or("path")?,
        "--server",
        url,
    ])?;
    assert_eq!(code, 0, "{err}");
    let args = fs::read_to_string(&args_file)?;
    let accel = if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
    {
        "kvm"
    } else {
        "tcg"
    };
    assert!(
        args.starts_with(&format!("-name lab-9 -accel {accel} -smp 3 -m 700 ")),
        "{args}"
    );
    assert!(args.contains("guestfwd=tcp:10.0.2.100:80-cmd:socat - TCP:127.0.0.1:8080,bootfile=http://10.0.2.100/boot.ipxe"), "{args}");
    assert!(args.contains("mac=52:54:00:00:00:99,bootindex=1"), "{args}");
    assert!(dir.path().join("lab-9-disk0.qcow2").exists());
    Ok(())
}
