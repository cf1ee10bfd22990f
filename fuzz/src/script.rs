//! Configure scripts from fuzz bytes. The first byte picks the way:
//!
//! - the rest as text (lossy UTF-8): what the fuzzer mutates from the seed scripts;
//! - a token soup: every byte one Rhai token, keyword, API name or literal, so that most
//!   scripts get past the tokenizer and many past the parser;
//! - snippets: every byte picks a statement of the configure API (disks, files, network,
//!   BMC, loops, recursion, `try`, limits) with arguments from pools of good and bad values,
//!   so that runs reach the API's argument checks and the recording host.

/// The variables a script gets as `var`.
pub fn vars() -> serde_json::Map<String, serde_json::Value> {
    let v = serde_json::json!({
        "ip": "10.0.0.5", "netmask": "255.255.255.0", "gateway": "10.0.0.1",
        "dns": "10.0.0.2", "hostname": "node1", "eth0": "eth0", "eth1": "eth1",
        "disk": "sda", "disks": ["sda", "sdb"], "n": 3, "f": 1.5, "none": null,
        "nested": {"a": [1, {"b": "c"}]},
    });
    v.as_object().cloned().unwrap_or_default()
}

/// The script the bytes stand for.
pub fn from_bytes(data: &[u8]) -> String {
    let Some((&mode, rest)) = data.split_first() else {
        return String::new();
    };
    match mode % 4 {
        0 | 1 => String::from_utf8_lossy(rest).into_owned(),
        2 => token_soup(rest),
        _ => snippets(rest),
    }
}

const TOKENS: &[&str] = &[
    "let",
    "const",
    "fn",
    "if",
    "else",
    "while",
    "loop",
    "for",
    "in",
    "do",
    "until",
    "break",
    "continue",
    "return",
    "throw",
    "try",
    "catch",
    "switch",
    "this",
    "true",
    "false",
    "var",
    "import",
    "export",
    "eval",
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_def_var",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "#{",
    ",",
    ";",
    ":",
    "::",
    ".",
    "?.",
    "?[",
    "..",
    "..=",
    "=",
    "+=",
    "-=",
    "*=",
    "/=",
    "<<=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "**",
    "<<",
    ">>",
    "&",
    "|",
    "^",
    "!",
    "&&",
    "||",
    "??",
    "==",
    "!=",
    "<",
    ">",
    "<=",
    ">=",
    "=>",
    "|x|",
    "x",
    "y",
    "s",
    "f",
    "0",
    "1",
    "-1",
    "2",
    "255",
    "4094",
    "0o644",
    "0x7fffffffffffffff",
    "1.5",
    "1e308",
    "\"\"",
    "\"sda\"",
    "\"/dev/sda1\"",
    "\"ext4\"",
    "\"/\"",
    "\"/etc/hosts\"",
    "\"10.0.0.1/24\"",
    "\"rest\"",
    "\"a\\nb\"",
    "'c'",
    "`${var.ip}`",
    "run",
    "run_status",
    "set_role",
    "grub_options",
    "inject_facts",
    "config",
    "line",
    "write",
    "close",
    "mode",
    "owner",
    "content",
    "path",
    "partition",
    "raid",
    "lvm",
    "mkfs",
    "mount",
    "ipmi_network",
    "ipmi_user",
    "network_interfaces",
    "netplan",
    "len",
    "pad",
    "split",
    "sub_string",
    "to_string",
    "to_debug",
    "push",
    "keys",
    "values",
    "ip",
    "eth0",
    "\n",
];

fn token_soup(data: &[u8]) -> String {
    let mut out = String::new();
    for &b in data {
        out.push_str(TOKENS[usize::from(b) % TOKENS.len()]);
        out.push(' ');
    }
    out
}

const STRINGS: &[&str] = &[
    "\"sda\"",
    "\"/dev/sda\"",
    "\"/dev/sda1\"",
    "\"nvme0n1\"",
    "\"md0\"",
    "\"md5\"",
    "\"/dev/vg0/root\"",
    "\"ext4\"",
    "\"xfs\"",
    "\"btrfs\"",
    "\"vfat\"",
    "\"swap\"",
    "\"ntfs\"",
    "\"/\"",
    "\"/boot\"",
    "\"/etc/hosts\"",
    "\"/etc/../x\"",
    "\"relative\"",
    "\"/dir/\"",
    "\"a b\"",
    "\"$(reboot)\"",
    "\"\"",
    "\"10.0.0.1\"",
    "\"10.0.0.1/24\"",
    "\"10.0.0.1/33\"",
    "\"255.255.255.0\"",
    "\"255.0.255.0\"",
    "\"fe80::1/64\"",
    "\"::1\"",
    "\"1.2.3\"",
    "\"300.1.1.1\"",
    "\"rest\"",
    "\"*\"",
    "\"1M\"",
    "\"512MiB\"",
    "\"20G\"",
    "\"1.5T\"",
    "\"9999999999P\"",
    "\"50%FREE\"",
    "\"0600\"",
    "\"0999\"",
    "\"root:root\"",
    "\"nobody:\"",
    "\"bios\"",
    "\"efi\"",
    "\"raid\"",
    "\"lvm\"",
    "\"8300\"",
    "\"EF0\"",
    "\"802.3ad\"",
    "\"active-backup\"",
    "\"fast\"",
    "\"layer3+4\"",
    "\"networkd\"",
    "\"eth0\"",
    "\"eth1\"",
    "\"bond0\"",
    "\"bond0.20\"",
    "\"vlan\"",
    "\"admin\"",
    "\"s3cret-password-that-is-too-long\"",
    "\"1.0\"",
    "\"base\"",
    "\"../etc\"",
    "\"x\\ny\"",
    "\"\\u{1F600}\"",
    "var.ip",
    "var.eth0",
    "var.disk",
    "var.hostname",
    "var.netmask",
    "var.gateway",
    "`${var.ip}/24`",
    "\"x\".pad(70000, \"y\")",
];

const INTS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "10",
    "-1",
    "63",
    "64",
    "100",
    "644",
    "0o644",
    "0o7777",
    "4094",
    "4095",
    "9000",
    "65536",
    "9223372036854775807",
    "(-9223372036854775807 - 1)",
    "var.n",
    "1.5",
];

const EXPRS: &[&str] = &[
    "()",
    "true",
    "[]",
    "#{}",
    "var",
    "var.nested",
    "var.disks",
    "[1, \"a\", ()]",
    "#{a: 1, b: [2]}",
    "var.none",
    "var.f",
];

struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    fn pick<'p>(&mut self, pool: &[&'p str]) -> &'p str {
        pool[usize::from(self.next()) % pool.len()]
    }

    fn s(&mut self) -> &'static str {
        self.pick(STRINGS)
    }

    fn n(&mut self) -> &'static str {
        self.pick(INTS)
    }

    fn x(&mut self) -> &'static str {
        match self.next() % 3 {
            0 => self.s(),
            1 => self.n(),
            _ => self.pick(EXPRS),
        }
    }
}

fn iface(b: &mut Bytes<'_>) -> String {
    let mut keys = Vec::new();
    for _ in 0..b.next() % 4 {
        keys.push(match b.next() % 12 {
            0 => format!("address: {}", b.s()),
            1 => format!("netmask: {}", b.s()),
            2 => format!("gateway: {}", b.s()),
            3 => format!("addresses: [{}, {}]", b.s(), b.s()),
            4 => format!("dhcp: {}", b.x()),
            5 => format!("mtu: {}", b.n()),
            6 => format!("nameservers: [{}]", b.s()),
            7 => format!("interfaces: [{}, {}]", b.s(), b.s()),
            8 => format!("mode: {}", b.s()),
            9 => format!("id: {}", b.n()),
            10 => format!("link: {}", b.s()),
            _ => format!(
                "{}: {}",
                b.pick(&["miimon", "lacp_rate", "primary", "bogus"]),
                b.x()
            ),
        });
    }
    format!("#{{{}}}", keys.join(", "))
}

fn network(b: &mut Bytes<'_>) -> String {
    format!(
        "#{{renderer: {}, ethernets: #{{eth0: {}, eth1: {}}}, bonds: #{{bond0: {}}}, vlans: #{{\"bond0.20\": {}}}}}",
        b.s(),
        iface(b),
        iface(b),
        iface(b),
        iface(b)
    )
}

fn statement(b: &mut Bytes<'_>, depth: u32) -> String {
    let choice = b.next() % 33;
    match choice {
        0 => format!("run({});", b.s()),
        1 => format!("run([{}, {}, {}]);", b.s(), b.s(), b.n()),
        2 => format!("run({}, {});", b.s(), b.n()),
        3 => format!("let st = run_status({});", b.x()),
        4 => format!("set_role({}, {}, {});", b.s(), b.s(), b.s()),
        5 => format!("grub_options({});", b.x()),
        6 => format!("inject_facts(#{{k: {}, {}: {}}});", b.x(), b.s(), b.x()),
        7 => format!("config({}, {});", b.s(), b.x()),
        8 => format!("config({}, {}, {});", b.s(), b.s(), b.n()),
        9 => format!(
            "config({}, {}, #{{mode: {}, owner: {}}});",
            b.s(),
            b.s(),
            b.x(),
            b.s()
        ),
        10 => format!(
            "let w = config({}); w.line({}); w.write({}); w.mode = {}; w.owner = {}; {}",
            b.s(),
            b.x(),
            b.s(),
            b.x(),
            b.s(),
            b.pick(&["w.close();", "", "w.close(); w.line(\"late\");", "print(w.content);"])
        ),
        11 => format!(
            "let p = partition({}, [#{{size: {}, type: {}, name: {}}}, #{{size: {}}}, #{{size: {}, type: {}}}]);",
            b.s(),
            b.x(),
            b.s(),
            b.s(),
            b.n(),
            b.s(),
            b.s()
        ),
        12 => format!("let md = raid({}, [{}, {}]);", b.n(), b.s(), b.s()),
        13 => format!("raid({}, {}, [{}, {}, {}]);", b.s(), b.n(), b.s(), b.s(), b.s()),
        14 => format!(
            "let lv = lvm({}, [{}], [#{{name: {}, size: {}}}, #{{name: {}}}]);",
            b.s(),
            b.s(),
            b.s(),
            b.x(),
            b.s()
        ),
        15 => format!("mkfs({}, {});", b.s(), b.s()),
        16 => format!("mkfs({}, {}, {});", b.s(), b.s(), b.s()),
        17 => format!("mount({}, {});", b.s(), b.s()),
        18 => format!("ipmi_network({}, {}, {}, {});", b.n(), b.s(), b.s(), b.s()),
        19 => format!("ipmi_user({}, {}, {});", b.n(), b.s(), b.s()),
        20 => format!("ipmi_user({}, {}, {}, {});", b.n(), b.n(), b.s(), b.s()),
        21 => format!("network_interfaces({});", network(b)),
        22 => format!("netplan({});", network(b)),
        23 => format!("print({}); debug({});", b.x(), b.x()),
        24 => format!("let m = #{{}}; m[{}] = {}; m[{}] = m;", b.s(), b.x(), b.s()),
        25 => format!("let s = {}; s += s; s += s; s.pad({}, \"z\");", b.s(), b.n()),
        26 => format!("throw {};", b.x()),
        27 if depth < 3 => format!(
            "for i in 0..{} {{ {} }}",
            b.n(),
            statement(b, depth + 1)
        ),
        28 if depth < 3 => format!(
            "try {{ {} }} catch (e) {{ print(e.kind); print(e.message); }}",
            statement(b, depth + 1)
        ),
        29 if depth < 3 => format!(
            "fn f{depth}(x) {{ {} if x > 0 {{ f{depth}(x - 1) }} }} f{depth}({});",
            statement(b, depth + 1),
            b.n()
        ),
        30 if depth < 3 => format!(
            "if {} {{ {} }} else {{ {} }}",
            b.x(),
            statement(b, depth + 1),
            statement(b, depth + 1)
        ),
        31 => format!(
            "let big = {}; big.pad({}, \"y\"); for i in 0..{} {{ {} }}",
            b.s(),
            b.pick(&["1000", "65536", "1048576", "1048577"]),
            b.n(),
            b.pick(&[
                "run(big + i);",
                "config(`/etc/f${i}`, big);",
                "print(big);",
                "grub_options(big);",
                "let m = #{}; m[`k${i}`] = big; inject_facts(m);",
                "let w = config(\"/etc/w\"); w.write(big); w.write(big);",
            ])
        ),
        _ => format!("let a = [{}, {}]; a.push(a); a.len();", b.x(), b.x()),
    }
}

fn snippets(data: &[u8]) -> String {
    let mut b = Bytes { data, at: 0 };
    let mut out = String::new();
    while !b.done() {
        out.push_str(&statement(&mut b, 0));
        out.push('\n');
    }
    out
}
