//! Runs the example profiles under `configure/examples/` with the recording host and compares the
//! exact commands and files with the `.plan` files beside them (`UPDATE_EXPECT=1` rewrites them).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use rdeploy_configure::{compile, run, CommandOutput, Options, Outcome, RecordingHost};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `examples/NAME.configure` with `examples/NAME.vars.json` on `host`.
fn run_example(name: &str, host: &Rc<RecordingHost>) -> Outcome {
    let dir = examples();
    let file = format!("{name}.configure");
    let script = compile(&file, &read(&dir.join(&file))).unwrap_or_else(|e| panic!("{e}"));
    let vars: serde_json::Value =
        serde_json::from_str(&read(&dir.join(format!("{name}.vars.json"))))
            .unwrap_or_else(|e| panic!("{name}.vars.json: {e}"));
    let vars = vars.as_object().cloned().unwrap_or_default();
    run(&script, &vars, host.clone(), &Options::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Compares the dry-run listing with `examples/NAME.plan`.
fn check_plan(name: &str, outcome: &Outcome, host: &RecordingHost) {
    let actual = format!("{}\n{}", outcome.summary(), host.render());
    let path = examples().join(format!("{name}.plan"));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = read(&path);
    assert!(
        actual == expected,
        "{name}: the plan differs from {} (UPDATE_EXPECT=1 rewrites it on purpose)\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn raid1_lvm_server() {
    let host = Rc::new(RecordingHost::new());
    let outcome = run_example("raid1-lvm", &host);
    check_plan("raid1-lvm", &outcome, &host);

    // The exact commands, spelled out here too: this is the contract with the real tools.
    assert_eq!(
        host.command_lines(),
        [
            "sgdisk --clear --new=1:0:+1M --typecode=1:EF02 --new=2:0:+512M --typecode=2:EF00 --change-name=2:EFI --new=3:0:+1G --typecode=3:FD00 --change-name=3:boot --new=4:0:0 --typecode=4:FD00 --change-name=4:system /dev/sda",
            "sgdisk --clear --new=1:0:+1M --typecode=1:EF02 --new=2:0:+512M --typecode=2:EF00 --change-name=2:EFI --new=3:0:+1G --typecode=3:FD00 --change-name=3:boot --new=4:0:0 --typecode=4:FD00 --change-name=4:system /dev/sdb",
            "mdadm --create /dev/md0 --run --metadata=1.2 --level=1 --raid-devices=2 /dev/sda3 /dev/sdb3",
            "mdadm --create /dev/md1 --run --metadata=1.2 --level=1 --raid-devices=2 /dev/sda4 /dev/sdb4",
            "pvcreate -ff -y /dev/md1",
            "vgcreate vg0 /dev/md1",
            "lvcreate -y -n root -L 20G vg0",
            "lvcreate -y -n swap -L 4G vg0",
            "lvcreate -y -n var -l 100%FREE vg0",
            "mkfs.vfat -F 32 -n EFI /dev/sda2",
            "mkfs.vfat -F 32 -n EFI2 /dev/sdb2",
            "mkfs.ext4 -F -L boot /dev/md0",
            "mkfs.ext4 -F -L root /dev/vg0/root",
            "mkfs.xfs -f -L var /dev/vg0/var",
            "mkswap -f -L swap /dev/vg0/swap",
            "mkdir -p /chroot",
            "mount /dev/vg0/root /chroot",
            "mkdir -p /chroot/boot",
            "mount /dev/md0 /chroot/boot",
            "mkdir -p /chroot/boot/efi",
            "mount /dev/sda2 /chroot/boot/efi",
            "mkdir -p /chroot/var",
            "mount /dev/vg0/var /chroot/var",
            "ipmitool lan set 1 ipsrc static",
            "ipmitool lan set 1 ipaddr 10.1.0.11",
            "ipmitool lan set 1 netmask 255.255.255.0",
            "ipmitool lan set 1 defgw ipaddr 10.1.0.1",
            "ipmitool user set name 2 admin",
            "ipmitool user set password 2 s3cret",
            "ipmitool channel setaccess 1 2 link=on ipmi=on callin=on privilege=4",
            "ipmitool user enable 2",
        ]
    );
    let files: Vec<(String, u32, Option<String>)> = host
        .files_written()
        .into_iter()
        .map(|f| (f.path, f.mode, f.owner))
        .collect();
    assert_eq!(
        files,
        [
            ("/etc/network/interfaces".to_owned(), 0o644, None),
            ("/etc/hostname".to_owned(), 0o644, None),
            ("/etc/hosts".to_owned(), 0o644, None),
            (
                "/etc/ssh/sshd_config.d/10-rdeploy.conf".to_owned(),
                0o600,
                Some("root:root".to_owned())
            ),
        ]
    );
    let role = outcome
        .role
        .as_ref()
        .map(|r| (r.role.as_str(), r.version.as_str(), r.disk.as_str()));
    assert_eq!(role, Some(("mysql", "D7-F.1.0.0", "/dev/sda")));
    assert_eq!(outcome.grub_options, "console=tty0 console=ttyS1,115200n8");
    assert_eq!(
        serde_json::Value::Object(outcome.facts.clone()),
        serde_json::json!({"role": "mysql", "rack": "A1"})
    );
    let mounts: Vec<_> = outcome
        .mounts
        .iter()
        .map(|m| (m.path.as_str(), m.fs.as_deref()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("/", Some("ext4")),
            ("/boot", Some("ext4")),
            ("/boot/efi", Some("vfat")),
            ("/var", Some("xfs"))
        ]
    );
    // The outcome's journal and the host's agree.
    let lines: Vec<_> = outcome.commands.iter().map(|c| c.line.clone()).collect();
    assert_eq!(lines, host.command_lines());
    assert_eq!(outcome.files, host.files_written());
}

#[test]
fn kvm_guest() {
    let host = Rc::new(RecordingHost::new());
    let outcome = run_example("kvm-guest", &host);
    check_plan("kvm-guest", &outcome, &host);
    assert_eq!(
        host.command_lines(),
        [
            "systemd-detect-virt --vm --quiet",
            "sgdisk --clear --new=1:0:+1M --typecode=1:EF02 --new=2:0:+256M --typecode=2:EF00 --change-name=2:EFI --new=3:0:0 --typecode=3:8300 --change-name=3:root /dev/vda",
            "mkfs.vfat -F 32 -n EFI /dev/vda2",
            "mkfs.ext4 -F -L root /dev/vda3",
            "mkdir -p /chroot",
            "mount /dev/vda3 /chroot",
            "mkdir -p /chroot/boot/efi",
            "mount /dev/vda2 /chroot/boot/efi",
        ]
    );
    let netplan = host
        .files_written()
        .into_iter()
        .find(|f| f.path == "/etc/netplan/50-rdeploy.yaml")
        .map(|f| (f.mode, f.contents));
    assert_eq!(
        netplan,
        Some((
            0o600,
            "# Generated by rdeploy from the profile's configure script.
network:
  version: 2
  renderer: networkd
  ethernets:
    enp1s0:
      addresses: [192.168.122.42/24]
      routes:
        - to: default
          via: 192.168.122.1
      nameservers:
        addresses: [192.168.122.1]
"
            .to_owned()
        ))
    );
    assert_eq!(outcome.role.map(|r| r.role), Some("cloud-base".to_owned()));
}

#[test]
fn kvm_guest_refuses_bare_metal() {
    let host = Rc::new(RecordingHost::new().respond(
        "systemd-detect-virt --vm --quiet",
        CommandOutput::failed(1, ""),
    ));
    let dir = examples();
    let script = compile(
        "kvm-guest.configure",
        &read(&dir.join("kvm-guest.configure")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let vars = serde_json::json!({"disk": "vda", "nic": "enp1s0", "hostname": "x"});
    let err = run(
        &script,
        vars.as_object().unwrap_or(&serde_json::Map::new()),
        host.clone(),
        &Options::default(),
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("kvm-guest.configure:7:5: runtime error: script threw the kvm-guest profile is for virtual machines only")
    );
    assert_eq!(host.command_lines(), ["systemd-detect-virt --vm --quiet"]);
}
