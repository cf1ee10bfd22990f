//! The command line: every subcommand, with help that teaches by example.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// rdeploy: bare-metal provisioning the eDeploy way.
///
/// Machines PXE boot, send their hardware inventory, get matched against ordered hardware
/// profiles (the `state` file), receive settings from the profile's CMDB and a configure
/// script. An existing eDeploy config dir (state, *.specs, *.cmdb) works unchanged.
#[derive(Debug, Parser)]
#[command(name = "rdeploy", version, propagate_version = true, after_help = EXAMPLES)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug); RDEPLOY_LOG overrides (e.g. RDEPLOY_LOG=debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  rdeploy try-match hw/node1.json hp.specs     # which variables would hp.specs bind?
  rdeploy match --config-dir /etc/rdeploy hw/node1.json
                                               # allocate like one eDeploy upload
  rdeploy generate model.cmdb                  # expand generate({...}) ranges to JSON
  rdeploy check --config-dir /etc/rdeploy hw/*.json
                                               # lint the config dir, explain matches

Exit status: 0 success, 1 no match, 2 error (bad file, bad input).";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Match one inventory against one specs file and print the bound variables as JSON.
    ///
    /// Nothing is read or written besides the two files. Prints one JSON object, e.g.
    /// {"disk1": "sda", "eth": "eth0", "mac": "52:54:00:12:34:56"}, and exits 0;
    /// exits 1 with the first spec that could not be satisfied when there is no match.
    #[command(
        after_help = "Example:\n  rdeploy try-match tests/fixtures/hw/kvm-1.json tests/fixtures/config/edeploy-example/vm.specs"
    )]
    TryMatch(TryMatchArgs),

    /// Run the whole pipeline of one upload in process (the eDeploy CGI way).
    ///
    /// Locks the config dir, tries the profiles of `state` in order, decrements the
    /// matched profile's quota, hands out its CMDB entry and saves `state` and the CMDB
    /// atomically. Prints {"profile": NAME, "var": {...}}. On no match or an exhausted
    /// CMDB: exit 1, a one-line reason on stderr, and no file changed.
    #[command(
        after_help = "Examples:\n  rdeploy match --config-dir /etc/rdeploy node1.json\n  rdeploy match --config-dir /etc/rdeploy --failure hp   # give one install back to hp"
    )]
    Match(MatchArgs),

    /// Expand an eDeploy generate() model into the list of CMDB entries, as JSON.
    ///
    /// MODEL_FILE holds a dict such as {'ip': '192.168.122.3-7', 'hostname': 'node3-7'}
    /// or a whole CMDB file (generate({...}), a list, or both joined with +). Ranges:
    /// '10-12', zero-padded '001-010', descending '5-3', joined '1-3:10-12', IPv4 per
    /// octet '10.0.1-2.1-254'; lists give their elements; the shortest sequence wins.
    #[command(
        after_help = "Example:\n  echo \"{'ip': '10.0.0.1-3', 'hostname': 'node1-3'}\" > model && rdeploy generate model"
    )]
    Generate(GenerateArgs),

    /// Check a config dir: every file parsed, every problem with file:line:column.
    ///
    /// Reports unbalanced brackets, entries that are not 4-tuples, unknown functions
    /// (gtt(4)), profiles in state without a .specs, malformed generate() ranges, missing
    /// .configure scripts, configure scripts that do not compile, and eDeploy quirks worth
    /// knowing (a profile that binds no variable hands every node the first CMDB entry).
    /// With inventories, says which profile each would get and, when none, why — per
    /// profile, the quota or the first spec line that could not be satisfied — and prints
    /// the plan of the matched profile's script run with the matched variables (commands
    /// and files, nothing executed). Changes no file. Exit 0 when no error was found
    /// (warnings allowed), 2 otherwise, 1 when an inventory matches no profile.
    #[command(after_help = "Example:\n  rdeploy check --config-dir /etc/rdeploy hw/*.json")]
    Check(CheckArgs),

    /// Serve the HTTP API: uploads, node records, boot control.
    ///
    /// Agents POST their inventory to /upload (curl -F file=@hw.json URL/upload) and get
    /// the profile's configure script with the allocated variables. All state and CMDB
    /// changes go through one writer that batches uploads under one lock and one atomic
    /// commit. Operators may edit the config dir while the server runs: changes are picked
    /// up; a file that does not parse keeps its last good version and shows in /healthz.
    /// With no --config-dir, a demo config is extracted to DATA_DIR/demo-config and used.
    #[command(
        after_help = "Examples:\n  rdeploy serve                                  # demo config, ./rdeploy-data, 127.0.0.1:8080\n  rdeploy serve --config-dir /etc/rdeploy --data-dir /var/lib/rdeploy --listen 0.0.0.0:80"
    )]
    Serve(Box<ServeArgs>),

    /// List the server's nodes: node, state, profile, IP, next boot, last event, age.
    #[command(after_help = "Example:\n  rdeploy nodes --server http://10.0.0.1:8080")]
    Nodes(ServerArgs),

    /// One node's record.
    #[command(subcommand)]
    Node(NodeCommand),

    /// The config of servers sharing a PostgreSQL database (docs/ha.md): push a config
    /// dir's state and CMDBs into it, or pull them back as files.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Machines known by name, MACs and addresses before they send an inventory (PXE
    /// Manager's verbs: addsystem, delsystem, dpysystem, syncbootnames, nextboot).
    ///
    /// The same binary invoked as `pxemngr` (a symlink) takes PXE Manager's own command
    /// lines: `pxemngr addsystem NAME MAC|IP...`, `pxemngr nextboot NAME|default PROFILE`.
    #[command(subcommand)]
    System(SystemCommand),

    /// Set what a machine (node id, registered system, hostname, MAC or address) boots next:
    /// install, local or a boot profile; `default` sets the site default
    /// (pxelinux.cfg/default). `nextboot NODE install` re-installs an installed node.
    #[command(
        after_help = "Examples:\n  rdeploy nextboot KVM-S1-52-54-00-12-34-56 install\n  rdeploy nextboot 52:54:00:12:34:56 rescue\n  rdeploy nextboot default local"
    )]
    Nextboot(NextbootArgs),

    /// Make a node boot its local disk from now on (same as `nextboot NAME local`).
    Localboot(LocalbootArgs),

    /// Each profile: installs left, CMDB entries used, nodes.
    Quota(ServerArgs),

    /// PXE Manager's test system: learn the tests dir, queue tests for a system, list runs.
    #[command(
        subcommand,
        after_help = "Examples:\n  rdeploy test sync                       # read the server's tests dir (NAME.test)\n  rdeploy test queue rack1-u12 burnin hello\n  rdeploy test list rack1-u12             # runs, states, error/warning/info counts\n\nUnder the name `pxemngr`: synctestnames, nexttest SYSTEM TEST..., dpytest SYSTEM, dpytest -l."
    )]
    Test(TestCommand),

    /// List the role trees a server's data dir holds (DATA_DIR/install/<version>/<role>/):
    /// role, version, entries and bytes.
    #[command(after_help = "Example:\n  rdeploy roles --data-dir /var/lib/rdeploy")]
    Roles(RolesArgs),

    /// Convert an eDeploy Python configure script to a Rhai one, saying line by line what
    /// could not be converted.
    ///
    /// Converts the subset eDeploy's own examples use: var[...], run(...), set_role(...),
    /// config(path).write(...), open('/chroot/...').write(...), % formatting, for over
    /// tuples and range(), if/elif/else, try/except, print, ipmi.setup_user/setup_network,
    /// sleep. Each statement it cannot convert (eDeploy's hpacucli module, subprocess, ...)
    /// is reported on stderr as FILE:LINE: not converted: REASON, and kept in the output as
    /// a comment followed by a `throw`, so the script compiles and a run stops there. Exit
    /// 0 when everything converted, 1 when some statements did not, 2 on an error.
    #[command(
        name = "convert-configure",
        after_help = "Examples:\n  rdeploy convert-configure /etc/edeploy/vm.configure > vm.configure.rhai\n  rdeploy convert-configure hp.configure -o /etc/rdeploy/hp.configure"
    )]
    ConvertConfigure(ConvertConfigureArgs),
    /// Build a role tree from a role file; compare two versions and prepare the upgrade.
    #[command(subcommand)]
    Role(crate::role::RoleCommand),

    /// Print the dnsmasq snippet (proxy DHCP, TFTP, iPXE chainload to /boot.ipxe).
    #[command(
        name = "dnsmasq-config",
        after_help = "Example:\n  rdeploy dnsmasq-config --subnet 192.168.122.0 --public-url http://192.168.122.1:8080 > /etc/dnsmasq.d/rdeploy.conf"
    )]
    DnsmasqConfig(DnsmasqArgs),

    /// Print (or write) a whole DHCP server config, dnsmasq's or ISC dhcpd's: a fixed address
    /// for every registered system with a MAC and an address and every node with a CMDB ip,
    /// and the network-boot lines (iPXE over TFTP, then <public-url>/boot.ipxe).
    ///
    /// With --write FILE, the file is replaced atomically, and only when its text changes:
    /// exit 0 and "FILE: changed" when it did, exit 1 and "FILE: unchanged" when not, so
    /// a reload can follow (`rdeploy dhcp-config ... --write F && systemctl restart dnsmasq`).
    #[command(
        name = "dhcp-config",
        after_help = "Examples:\n  rdeploy dhcp-config --dnsmasq --subnet 10.0.0.0/24 --public-url http://10.0.0.1:8080 --write /etc/dnsmasq.d/rdeploy.conf\n  rdeploy dhcp-config --isc --subnet 10.0.0.0/24 --public-url http://10.0.0.1:8080 --router 10.0.0.254 > /etc/dhcp/dhcpd.conf"
    )]
    DhcpConfig(DhcpArgs),

    /// Virtual machines that network-boot first, with the MAC of the registered system of
    /// their name (registered on the spot, as `system add NAME --auto`, when new), sized by
    /// hand or like a real machine (--like NODE).
    #[command(subcommand)]
    Vm(Box<VmCommand>),
}

/// How to reach a running `rdeploy serve`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server's URL.
    #[arg(
        long,
        value_name = "URL",
        env = "RDEPLOY_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// File holding the admin token (else the RDEPLOY_TOKEN variable), for changes.
    #[arg(long, value_name = "FILE", env = "RDEPLOY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// For an https:// server: trust only this CA or pinned certificate (PEM), not the
    /// system's roots (e.g. the DATA_DIR/tls/self-signed.pem of `serve --tls-self-signed`).
    #[arg(long, value_name = "FILE", env = "RDEPLOY_CA")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TestCommand {
    /// Read the server's tests dir: every NAME.test becomes a test that can be queued
    /// (PXE Manager's synctestnames); templates that do not compile are reported.
    Sync(ServerArgs),
    /// Queue tests for a system (a registered system or a node), run in order
    /// (PXE Manager's nexttest).
    Queue(TestQueueArgs),
    /// Every test run or scheduled, with its state and counts; one system's with SYSTEM
    /// (PXE Manager's dpytest).
    List(TestListArgs),
}

#[derive(Debug, Args)]
pub struct TestQueueArgs {
    /// A registered system's name or a node id.
    pub system: String,
    /// Test names (files NAME.test of the tests dir).
    #[arg(value_name = "TEST", required = true)]
    pub tests: Vec<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct TestListArgs {
    /// A registered system's name or a node id; every run when left out.
    pub system: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check DIR like `rdeploy check`, then make its `state` and CMDBs the database's, in
    /// one transaction. Refused (exit 2, nothing changed) when DIR has errors or would take
    /// back an entry given out (each is named). The servers see it at their next batch.
    Push(ConfigDbArgs),
    /// Write the database's `state`, `<profile>.cmdb` (entries in use marked `used: 1`) and
    /// `.cmdb.orig` files into DIR, as eDeploy keeps them (`rdeploy check` reads them).
    Pull(ConfigDbArgs),
}

#[derive(Debug, Args)]
pub struct ConfigDbArgs {
    /// The config dir.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The servers' database (as given to `rdeploy serve --database-url`).
    #[arg(long, value_name = "URL", env = "RDEPLOY_DATABASE_URL")]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Print a node's whole record as JSON.
    Show(NodeShowArgs),
}

#[derive(Debug, Args)]
pub struct NodeShowArgs {
    /// The node id (as `rdeploy nodes` lists it).
    pub id: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Register a machine by name, MACs and IPv4 addresses (or their first octets, `10.34`,
    /// for a subnet); it boots `install` until told otherwise. A MAC or address another
    /// system held moves to this one. With --ip or --auto, a lab host: its address must be
    /// free (or is the range's first free one), its name and MAC are made when not given.
    #[command(
        visible_alias = "addsystem",
        after_help = "Examples:\n  rdeploy system add rack1-u12 52:54:00:12:34:56 10.0.0.12\n  rdeploy system add --auto                     # lab-001, a free address of labs.toml's range, a derived MAC\n  rdeploy system add web1 52:54:00:12:34:56 --ip 10.0.0.21\n  rdeploy system add --auto --range 10.0.0.100-199 --name-pattern 'lab-{n:03}'"
    )]
    Add(SystemAddArgs),
    /// Forget a registered system and remove its PXELINUX files.
    #[command(visible_alias = "delsystem")]
    Del(SystemNameArgs),
    /// Show a system (or node) by name, MAC or address: MACs, addresses, next boot; `-l`
    /// lists the names.
    #[command(visible_alias = "dpysystem")]
    Show(SystemShowArgs),
    /// List the registered systems: name, MACs, addresses, next boot.
    List(ServerArgs),
    /// The boot profiles the server finds (profiles/*.prof, conf/*), and what is missing
    /// (the mandatory local.prof); exit 1 when something is.
    #[command(visible_alias = "syncbootnames")]
    Profiles(ServerArgs),
    /// Same as `rdeploy nextboot NAME|default TARGET`.
    Nextboot(NextbootArgs),
}

#[derive(Debug, Args)]
pub struct SystemAddArgs {
    /// The system's name. With --ip or --auto it may be left out: the server makes one
    /// (the resolver's name for the address, else the name pattern); a first word that is a
    /// MAC is then a MAC.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// MAC addresses and IPv4 addresses, in any order (with --ip or --auto: MACs only; one
    /// is derived from the name when none is given).
    #[arg(value_name = "MAC|IP")]
    pub addrs: Vec<String>,
    /// A lab host at this address, which must be free (no system, node or CMDB entry has it).
    #[arg(long, value_name = "IP", conflicts_with = "auto")]
    pub ip: Option<String>,
    /// A lab host at the first free address of the range (`range` in CONFIG_DIR/labs.toml,
    /// or --range).
    #[arg(long)]
    pub auto: bool,
    /// The range --auto takes from, instead of labs.toml's: 10.0.0.100-10.0.0.199,
    /// 10.0.0.100-199 or 10.0.0.0/24.
    #[arg(long, value_name = "RANGE", requires = "auto")]
    pub range: Option<String>,
    /// How to name a lab host when NAME is left out: {n} counts from 1 to the first free
    /// name, {n:03} pads it, {ip} is the address with dashes; default: the resolver's name
    /// for the address, else labs.toml's name_pattern, else lab-{n:03}.
    #[arg(long, value_name = "PATTERN")]
    pub name_pattern: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct SystemNameArgs {
    pub name: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct SystemShowArgs {
    /// A system name, node id, MAC or address.
    #[arg(required_unless_present = "list")]
    pub key: Option<String>,
    /// List the system names instead.
    #[arg(short = 'l', conflicts_with = "key")]
    pub list: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct NextbootArgs {
    /// Node id, registered system name, hostname, MAC or address; `default` for the site
    /// default.
    pub name: String,
    /// install, local, or a boot profile name.
    pub target: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct LocalbootArgs {
    /// Node id, registered system name or MAC address.
    pub name: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct DnsmasqArgs {
    /// The network dnsmasq serves in proxy mode (its DHCP server stays in charge of addresses).
    #[arg(long, value_name = "NETWORK")]
    pub subnet: String,
    /// The rdeploy server's URL as machines reach it.
    #[arg(long, value_name = "URL")]
    pub public_url: String,
    /// The TFTP root (holds undionly.kpxe, ipxe.efi and the PXELINUX files).
    #[arg(long, value_name = "DIR", default_value = "/srv/tftp")]
    pub tftp_root: PathBuf,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("daemon").required(true).args(["isc", "dnsmasq"]))]
pub struct DhcpArgs {
    /// ISC dhcpd's dhcpd.conf.
    #[arg(long)]
    pub isc: bool,
    /// dnsmasq as the DHCP server (only the hosts listed get an address).
    #[arg(long)]
    pub dnsmasq: bool,
    /// The network served, with its prefix length.
    #[arg(long, value_name = "NETWORK/LEN")]
    pub subnet: String,
    /// The rdeploy server's URL as machines reach it.
    #[arg(long, value_name = "URL")]
    pub public_url: String,
    /// The TFTP root (dnsmasq's TFTP server; holds undionly.kpxe and ipxe.efi).
    #[arg(long, value_name = "DIR", default_value = "/srv/tftp")]
    pub tftp_root: PathBuf,
    /// The TFTP server's address (ISC's next-server); default: --public-url's host.
    #[arg(long, value_name = "IP")]
    pub tftp_server: Option<std::net::Ipv4Addr>,
    /// The default gateway handed out.
    #[arg(long, value_name = "IP")]
    pub router: Option<std::net::Ipv4Addr>,
    /// Replace FILE (atomically) when the text changes, instead of printing.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Print (or write) the VM as libvirt domain XML, a QEMU script or a VirtualBox script.
    #[command(
        after_help = "Examples:\n  rdeploy vm create lab-001 --like PowerEdge-R630-4FK10Z1 --format libvirt --out lab-001.xml && virsh define lab-001.xml\n  rdeploy vm create lab-002 --cpus 2 --memory 2048 --disk 20G --disk 20G --format qemu --out lab-002.sh\n  rdeploy vm create lab-003 --mac 08:00:27:12:34:56 --format virtualbox | sh"
    )]
    Create(VmCreateArgs),
    /// Run the QEMU form now (KVM when /dev/kvm is usable, TCG otherwise), making missing
    /// disks first; exits when QEMU does.
    #[command(
        after_help = "Examples:\n  rdeploy vm start lab-001 --like PowerEdge-R630-4FK10Z1 --cpus 4 --memory 4096 --bridge br0\n  rdeploy vm start lab-002 --user-net 127.0.0.1:8080    # no bridge: QEMU's own DHCP, boot.ipxe relayed to the server"
    )]
    Start(VmArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VmFormat {
    /// libvirt domain XML (virsh define).
    Libvirt,
    /// A shell script running qemu-system-x86_64.
    Qemu,
    /// A shell script of VBoxManage commands.
    Virtualbox,
}

#[derive(Debug, Args)]
pub struct VmCreateArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    #[arg(long, value_enum)]
    pub format: VmFormat,
    /// Write the VM there (replaced only when it changes; scripts made executable) instead
    /// of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VmArgs {
    /// The VM's name: a registered system (its MAC is used), or registered now.
    pub name: String,
    /// Size it like this node (its stored inventory): CPU count, --memory-ratio of its
    /// memory, its disks (count and sizes) and its number of NICs. Flags given win.
    #[arg(long, value_name = "NODE")]
    pub like: Option<String>,
    /// The boot NIC's MAC (a new system is registered with it; an existing one must hold it).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// A new system's address (else the first free one of the lab range, labs.toml).
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// A new system's address range, instead of labs.toml's.
    #[arg(long, value_name = "RANGE")]
    pub range: Option<String>,
    /// Virtual CPUs (default: --like's CPU count, else 2).
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// Memory in MiB (default: --memory-ratio of --like's memory, else 2048).
    #[arg(long, value_name = "MiB")]
    pub memory: Option<u64>,
    /// The share of --like's memory the VM gets.
    #[arg(long, value_name = "RATIO", default_value_t = 0.8)]
    pub memory_ratio: f64,
    /// A disk (20G, 512M, 1T; repeat for more; default: --like's disks, else one of 20G).
    #[arg(long = "disk", value_name = "SIZE")]
    pub disks: Vec<String>,
    /// NICs in all, the first one booting (default: --like's count, else 1).
    #[arg(long, value_name = "N")]
    pub nics: Option<u32>,
    /// The host bridge the NICs are plugged into (the lab network).
    #[arg(long, value_name = "BRIDGE", default_value = "br0")]
    pub bridge: String,
    /// QEMU: the boot NIC on this existing tap device instead of a bridge.
    #[arg(long, value_name = "TAP", conflicts_with = "user_net")]
    pub tap: Option<String>,
    /// QEMU: user-mode networking instead of a bridge; iPXE boots
    /// http://10.0.2.100/boot.ipxe, relayed to the rdeploy server at HOST:PORT (socat).
    #[arg(long, value_name = "HOST:PORT")]
    pub user_net: Option<String>,
    /// Where disk images are made.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub disk_dir: PathBuf,
    /// The QEMU program `vm start` runs.
    #[arg(long, value_name = "PROGRAM", default_value = "qemu-system-x86_64")]
    pub qemu: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl VmArgs {
    /// `bridge`, `tap` or `user`.
    pub fn net_kind(&self) -> &'static str {
        match (&self.tap, &self.user_net) {
            (Some(_), _) => "tap",
            (None, Some(_)) => "user",
            (None, None) => "bridge",
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config dir (state, <profile>.specs, .cmdb, .configure); default: the demo config.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Where inventories (hw/), node records (nodes/) and the demo config are kept.
    #[arg(long, value_name = "DIR", default_value = "rdeploy-data")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The server's URL as machines reach it (rdeploy.server= on the kernel command line);
    /// default: http://<listen address> (https:// with TLS).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2) with this certificate chain (PEM, leaf first);
    /// with --tls-key. Agents pin it (or its CA) with `rdeploy-initrd build --ca`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate for labs: made at the first start for
    /// localhost, the listen address, this host's name and --public-url's host
    /// (DATA_DIR/tls/self-signed.pem, key mode 0600), kept afterwards; prints how to pin it.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,
    /// With TLS: also serve plain HTTP on ADDR for what firmware and iPXE fetch
    /// (/boot.ipxe, /boot/*, /images/*), and nothing else; the default kernel and
    /// initrd URLs then use it.
    #[arg(long, value_name = "ADDR")]
    pub boot_listen: Option<std::net::SocketAddr>,
    /// TFTP root where PXELINUX files are written (pxelinux.cfg/01-<mac>, hex-IP names, and
    /// a `default` that boots the local disk when there is none); boot profiles are read
    /// from pxelinux.cfg/profiles/*.prof and PXE Pilot's pxelinux.cfg/conf/* there.
    #[arg(long, value_name = "DIR")]
    pub tftp_root: Option<PathBuf>,
    /// URL of the install kernel for iPXE; default: <public-url>/images/vmlinuz.
    #[arg(long, value_name = "URL")]
    pub kernel_url: Option<String>,
    /// URL of the install initramfs for iPXE; default: <public-url>/images/initrd.img.
    #[arg(long, value_name = "URL")]
    pub initrd_url: Option<String>,
    /// Serve DIR/vmlinuz and DIR/initrd.img at /images/vmlinuz and /images/initrd.img
    /// (the output of `rdeploy-initrd build --out DIR`; the default kernel and initrd URLs).
    #[arg(long, value_name = "DIR")]
    pub images_dir: Option<PathBuf>,
    /// Extra kernel arguments for the install boot (e.g. "console=ttyS0").
    #[arg(long, value_name = "ARGS", default_value = "")]
    pub kernel_args: String,
    /// At most N installs under way (matched, not yet installed or failed); beyond, an
    /// upload gets 503 with Retry-After and the agent retries later.
    #[arg(long, value_name = "N")]
    pub max_installs: Option<usize>,
    /// With --max-installs: an install slot whose node sent no upload or event for this long
    /// (an agent that died without reporting) is given to the next machine.
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = humantime::parse_duration)]
    pub install_timeout: std::time::Duration,
    /// File holding the bearer token that operator endpoints require (/nextboot,
    /// /systems, /nodes/ID/boot, PXE Pilot, OMF) and that reveals secret variables. When
    /// --listen is not a loopback address and none is given, the server makes one
    /// (DATA_DIR/admin-token, mode 0600) and says where. Agents use their node token
    /// (docs/security.md).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// At most N connections at once (default 8192); never more than the descriptor limit
    /// allows (two per connection, 512 kept for the server's files). Beyond, new clients
    /// wait in the listen backlog.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// How long a client may stall: sending a request head (or idle between requests on a
    /// kept-alive connection), between two pieces of a request body, or reading an answer.
    /// A whole request body must arrive within 6 times this.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub client_timeout: std::time::Duration,
    /// File holding a bearer token for reading node details (GET /nodes, /nodes/ID);
    /// the admin token works too. Needed only on a non-loopback listener.
    #[arg(long, value_name = "FILE")]
    pub read_token_file: Option<PathBuf>,
    /// A variable whose name matches this pattern (`*` for any text, case-insensitive) is
    /// secret: masked for all but the node itself and an admin. Repeatable; replaces the
    /// default patterns *password*, *secret*, *token*, *key*.
    #[arg(long = "secret-pattern", value_name = "PATTERN")]
    pub secret_patterns: Vec<String>,
    /// OMF's link lifetime: a `/pxe/setBootImage` link lapses after this long and the node
    /// boots its disk again (OMF used 300s); default: links stay until clearBootImage.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub omf_link_lifetime: Option<std::time::Duration>,
    /// The static rdeploy-agent served at GET /agent (deployed hosts fetch it with curl);
    /// default: rdeploy-agent beside this rdeploy binary, if there is one.
    #[arg(long, value_name = "FILE")]
    pub agent_binary: Option<PathBuf>,
    /// PXE Manager's tests dir: test scripts `NAME.test` (Jinja/Django templates) that
    /// systems get from /nexttest/; default: DATA_DIR/tests, created with a wait.test.
    #[arg(long, value_name = "DIR")]
    pub tests_dir: Option<PathBuf>,
    /// A test sent to a system whose output has not been uploaded after this long is
    /// `lost` (a late upload still counts).
    #[arg(long, value_name = "DURATION", default_value = "12h", value_parser = humantime::parse_duration)]
    pub test_timeout: std::time::Duration,
    /// Benchmark baseline: one upload per lock, every file re-read (eDeploy's CGI model).
    #[arg(long, hide = true)]
    pub cgi_baseline: bool,
    /// Keep node records and the mutable half of the config (quotas, CMDB entries, installs
    /// under way) in PostgreSQL, shared by every server given the same URL (docs/ha.md);
    /// the config dir is then read only. Default: SQLite in the data dir.
    #[arg(long, value_name = "URL", env = "RDEPLOY_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct RolesArgs {
    /// The server's data dir (as given to `rdeploy serve --data-dir`).
    #[arg(long, value_name = "DIR", default_value = "rdeploy-data")]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TryMatchArgs {
    /// Inventory: a Python-literal or JSON list of 4-element lists.
    #[arg(value_name = "HW_FILE")]
    pub hw: PathBuf,
    /// Specs file: a list of 4-tuples with $variables and tests.
    #[arg(value_name = "SPECS_FILE")]
    pub specs: PathBuf,
}

#[derive(Debug, Args)]
pub struct MatchArgs {
    /// The config dir (state, <profile>.specs, <profile>.cmdb).
    #[arg(long, value_name = "DIR")]
    pub config_dir: PathBuf,
    /// Inventory to match (required unless --failure is given).
    #[arg(value_name = "HW_FILE", required_unless_present = "failure")]
    pub hw: Option<PathBuf>,
    /// Report a failed install of PROFILE instead: gives its quota one install back.
    #[arg(long, value_name = "PROFILE", conflicts_with = "hw")]
    pub failure: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConvertConfigureArgs {
    /// The eDeploy configure script (Python).
    #[arg(value_name = "FILE.configure")]
    pub file: PathBuf,
    /// Write the Rhai script there (atomically) instead of stdout.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// File with a generate() model (a dict) or a whole CMDB file.
    #[arg(value_name = "MODEL_FILE")]
    pub model: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config dir to check.
    #[arg(long, value_name = "DIR")]
    pub config_dir: PathBuf,
    /// Inventories to explain: which profile each would get, and why not the others.
    #[arg(value_name = "HW_FILE")]
    pub hw: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
