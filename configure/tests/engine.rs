//! Behaviour of the configure engine: located errors, limits, the sandbox, and the API's edge cases.

use std::rc::Rc;

use rdeploy_configure::{
    compile, run, CommandOutput, ErrorKind, Limits, Options, Outcome, RecordingHost, RunError,
    ScriptError,
};

fn vars() -> serde_json::Map<String, serde_json::Value> {
    serde_json::json!({"ip": "10.0.0.5", "disk": "sda", "n": 3})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn run_on(
    host: RecordingHost,
    src: &str,
    options: &Options,
) -> (Rc<RecordingHost>, Result<Outcome, RunError>) {
    let host = Rc::new(host);
    let result = match compile("t.configure", src) {
        Ok(script) => run(&script, &vars(), host.clone(), options),
        Err(e) => panic!("unexpected compile error: {e}"),
    };
    (host, result)
}

fn ok(src: &str) -> (Rc<RecordingHost>, Outcome) {
    let (host, r) = run_on(RecordingHost::new(), src, &Options::default());
    (host, r.unwrap_or_else(|e| panic!("{e}")))
}

fn fails(src: &str) -> ScriptError {
    fails_on(RecordingHost::new(), src, &Options::default())
}

fn fails_on(host: RecordingHost, src: &str, options: &Options) -> ScriptError {
    match run_on(host, src, options).1 {
        Ok(o) => panic!("script succeeded: {o:?}"),
        Err(e) => *e.error,
    }
}

fn at(e: &ScriptError) -> (Option<usize>, Option<usize>, ErrorKind) {
    (e.line, e.column, e.kind)
}

#[test]
fn syntax_errors_are_located_without_running_anything() {
    let e = compile("bad.configure", "run(\"true\");\nlet x = ;\n").err();
    let e = e.unwrap_or_else(|| panic!("compiled"));
    assert_eq!(at(&e), (Some(2), Some(9), ErrorKind::Syntax));
    assert!(
        e.to_string()
            .starts_with("bad.configure:2:9: syntax error: "),
        "{e}"
    );
}

#[test]
fn modules_and_eval_are_not_available() {
    for src in ["import \"os\" as os;", "eval(\"run(`x`)\");"] {
        let e = compile("t.configure", src).err();
        assert_eq!(e.map(|e| e.kind), Some(ErrorKind::Syntax), "{src}");
    }
}

#[test]
fn unknown_function_names_the_line() {
    let e = fails("let a = 1;\nformat_disk(\"sda\");");
    assert_eq!(at(&e), (Some(2), Some(1), ErrorKind::MissingFunction));
    assert_eq!(
        e.to_string(),
        "t.configure:2:1: unknown function: no function `format_disk (string)`"
    );
}

#[test]
fn wrong_argument_types_show_the_usage() {
    let e = fails("\n  mkfs(\"sda1\", 4);");
    assert_eq!(at(&e), (Some(2), Some(3), ErrorKind::WrongType));
    assert_eq!(
        e.message,
        "`mkfs (string, int)` does not match mkfs(device: string, fs: string[, label: string])"
    );
}

#[test]
fn invalid_values_are_refused_before_any_command() {
    let (host, r) = run_on(
        RecordingHost::new(),
        "mkfs(\"sda1\", \"zfs\");",
        &Options::default(),
    );
    let e = r.err().map(|e| *e.error);
    assert_eq!(
        e.as_ref().map(at),
        Some((Some(1), Some(1), ErrorKind::InvalidArgument))
    );
    assert!(host.command_lines().is_empty());
    for src in [
        "raid(1, [\"sda1\"]);",
        "partition(\"sda\", [#{size: \"rest\"}, #{size: \"1G\"}]);",
        "partition(\"sda\", [#{sise: \"1G\"}]);",
        "config(\"etc/hosts\", \"x\");",
        "config(\"/etc/../../x\", \"x\");",
        "config(\"/etc/x\", \"x\", 644);",
        "set_role(\"../../etc\", \"1\", \"sda\");",
        "ipmi_network(1, \"10.0.0.300\", \"255.255.255.0\", \"10.0.0.1\");",
        "netplan(#{ethernets: #{eno1: #{adress: \"10.0.0.5/24\"}}});",
        "run([]);",
        "run(\"true\", 0);",
    ] {
        assert_eq!(fails(src).kind, ErrorKind::InvalidArgument, "{src}");
    }
}

#[test]
fn a_failed_command_aborts_with_its_output() {
    let host = RecordingHost::new().respond(
        "mdadm --create /dev/md0 --run --metadata=1.2 --level=1 --raid-devices=2 /dev/sda1 /dev/sdb1",
        CommandOutput::failed(1, "mdadm: cannot open /dev/sda1: Device or resource busy\n"),
    );
    let (host, r) = run_on(
        host,
        "run(\"true\");\nlet md = raid(1, [\"sda1\", \"sdb1\"]);\nmkfs(md, \"ext4\");",
        &Options::default(),
    );
    let e = r.err().unwrap_or_else(|| panic!("succeeded"));
    assert_eq!(at(&e.error), (Some(2), Some(10), ErrorKind::CommandFailed));
    assert_eq!(
        e.to_string(),
        "t.configure:2:10: command failed: `mdadm --create /dev/md0 --run --metadata=1.2 --level=1 \
         --raid-devices=2 /dev/sda1 /dev/sdb1` exited with status 1: mdadm: cannot open /dev/sda1: \
         Device or resource busy"
    );
    assert_eq!(e.error.failure.as_ref().map(|f| f.status), Some(1));
    // What ran before the failure is kept for the log; nothing ran after it.
    assert_eq!(e.partial.commands.len(), 2);
    assert_eq!(host.command_lines().len(), 2);
}

#[test]
fn run_status_returns_the_status_and_run_returns_stdout() {
    let host = RecordingHost::new()
        .respond(
            "/bin/sh -c 'test -d /sys/firmware/efi'",
            CommandOutput::failed(1, ""),
        )
        .respond(
            "cat /proc/cmdline",
            CommandOutput::ok("quiet rdeploy.server=x\n"),
        );
    let (_, r) = run_on(
        host,
        "let efi = run_status(\"test -d /sys/firmware/efi\");\n\
         let cmdline = run([\"cat\", \"/proc/cmdline\"]);\n\
         print(`efi=${efi} ${cmdline.trim(); cmdline}`);",
        &Options::default(),
    );
    let log = r.map(|o| o.log).map_err(|e| e.to_string());
    assert_eq!(log, Ok(vec!["efi=1 quiet rdeploy.server=x".to_owned()]));
}

#[test]
fn a_command_that_times_out_is_named() {
    let host = RecordingHost::new().time_out("sleep 99");
    let e = fails_on(host, "\nrun([\"sleep\", 99], 5);", &Options::default());
    assert_eq!(at(&e), (Some(2), Some(1), ErrorKind::Host));
    assert_eq!(e.message, "`sleep 99` timed out after 5s and was killed");
}

#[test]
fn errors_inside_functions_point_inside_them() {
    let e = fails("fn setup(d) {\n    mkfs(d, \"nope\");\n}\nsetup(\"sda\");");
    assert_eq!(at(&e), (Some(2), Some(5), ErrorKind::InvalidArgument));
    assert_eq!(e.call_stack, [("setup".to_owned(), 4, 1)]);
    assert!(
        e.to_string().ends_with("(in function setup called at 4:1)"),
        "{e}"
    );
}

#[test]
fn var_is_read_only_and_visible_in_functions() {
    let (_, o) = ok("fn ip() { var.ip }\nprint(ip() + \" \" + var[\"disk\"] + \" \" + var.n);");
    assert_eq!(o.log, ["10.0.0.5 sda 3"]);
    assert_eq!(fails("print(var.nope);").kind, ErrorKind::Runtime);
    assert_eq!(
        compile("t", "var = 1;").err().map(|e| e.kind),
        Some(ErrorKind::Syntax)
    );
    // Copies can be changed.
    let (_, o) = ok("let v = var; v.ip = \"x\"; print(v.ip + var.ip);");
    assert_eq!(o.log, ["x10.0.0.5"]);
}

#[test]
fn limits_stop_runaway_scripts() {
    let options = Options {
        limits: Limits {
            max_operations: 10_000,
            ..Limits::default()
        },
        ..Options::default()
    };
    let e = fails_on(
        RecordingHost::new(),
        "let i = 0;\nloop { i += 1; }",
        &options,
    );
    assert_eq!(e.kind, ErrorKind::Limit);
    assert_eq!(fails("fn f(n) { f(n + 1) }\nf(0);").kind, ErrorKind::Limit);
    assert_eq!(
        fails("let s = \"x\";\nloop { s += s; }").kind,
        ErrorKind::Limit
    );
    assert_eq!(
        fails("let a = [];\nloop { a.push(1); }").kind,
        ErrorKind::Limit
    );
}

/// Issue 11: a value nested thousands of levels deep once overflowed the stack when printed
/// (the process aborted and its node stayed `configuring`). Printing it is a clean limit
/// error; a value nested deeper than the element limits cannot be built. The binaries run
/// scripts on a thread with a large stack, as this test does: comparing, copying or dropping
/// such a value recurses once per level.
#[test]
fn deeply_nested_values_hit_a_limit_instead_of_the_stack() {
    let checks = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| {
            let printed = fails("let a = [];\nfor i in 0..1500 { a = [a]; }\nprint(a);");
            let map = fails("let m = #{};\nfor i in 0..1500 { m = #{x: m}; }\ndebug(m);");
            let small = Options {
                limits: Limits {
                    max_array_size: 1_000,
                    ..Limits::default()
                },
                ..Options::default()
            };
            let built = fails_on(
                RecordingHost::new(),
                "let a = [];\nfor i in 0..1500 { a = [a]; }",
                &small,
            );
            let facts = fails("let a = [];\nfor i in 0..100 { a = [a]; }\ninject_facts(#{a: a});");
            let (_, compared) = ok("let a = [];\nfor i in 0..1500 { a = [a]; }\nprint(a == a);");
            (printed, map, built, facts, compared.log)
        })
        .map(|t| t.join());
    let Ok(Ok((printed, map, built, facts, compared))) = checks else {
        panic!("the test thread failed");
    };
    assert_eq!(
        at(&printed),
        (Some(3), Some(1), ErrorKind::Limit),
        "{printed}"
    );
    assert!(printed.message.contains("more than 64 levels"), "{printed}");
    assert_eq!(map.kind, ErrorKind::Limit, "{map}");
    assert_eq!(built.kind, ErrorKind::Limit, "{built}");
    assert_eq!(facts.kind, ErrorKind::Limit, "{facts}");
    assert_eq!(compared, ["true"]);
    // A value of ordinary depth prints as Rhai prints it.
    let (_, o) = ok("let a = [1, [2, #{\"k\": \"v\"}]];\nprint(a);\nprint(`${a}`);");
    assert_eq!(
        o.log,
        ["[1, [2, #{\"k\": \"v\"}]]", "[1, [2, #{\"k\": \"v\"}]]"]
    );
}

#[test]
fn thrown_values_and_caught_failures() {
    let e = fails("throw \"no disks\";");
    assert_eq!(
        e.to_string(),
        "t.configure:1:1: runtime error: script threw no disks"
    );
    let host = RecordingHost::new().respond("false", CommandOutput::failed(3, "boom"));
    let (_, r) = run_on(
        host,
        "try { run([\"false\"]); } catch (e) { print(e.kind + \": \" + e.message); }",
        &Options::default(),
    );
    assert_eq!(
        r.map(|o| o.log).map_err(|e| e.to_string()),
        Ok(vec![
            "command failed: `false` exited with status 3: boom".to_owned()
        ])
    );
}

#[test]
fn config_writers_and_modes() {
    let (host, o) = ok(r#"
        let motd = config("/etc/motd");
        motd.write("hello ");
        motd.line("world");
        config("/etc/a", "a\n", "0640");
        let key = config("/root/.ssh/authorized_keys", 0o600);
        key.owner = "root:root";
        key.line("ssh-ed25519 AAAA");
        key.close();
    "#);
    let files: Vec<_> = host
        .files_written()
        .into_iter()
        .map(|f| (f.path, f.contents, f.mode, f.owner))
        .collect();
    assert_eq!(
        files,
        [
            ("/etc/a".to_owned(), "a\n".to_owned(), 0o640, None),
            (
                "/root/.ssh/authorized_keys".to_owned(),
                "ssh-ed25519 AAAA\n".to_owned(),
                0o600,
                Some("root:root".to_owned())
            ),
            // Left open: written when the script ends.
            (
                "/etc/motd".to_owned(),
                "hello world\n".to_owned(),
                0o644,
                None
            ),
        ]
    );
    assert_eq!(o.files.len(), 3);
    let e = fails("let f = config(\"/etc/x\");\nf.close();\nf.write(\"late\");");
    assert_eq!(at(&e), (Some(3), Some(3), ErrorKind::Runtime));
}

#[test]
fn settings_accumulate() {
    let (_, o) = ok(r#"
        grub_options("console=ttyS0");
        grub_options("nomodeset");
        inject_facts(#{a: 1, b: [true, ()]});
        inject_facts(#{a: "two"});
        set_role("base", "1.0", "sda");
        set_role("web", "2.0", "/dev/nvme0n1");
    "#);
    assert_eq!(o.grub_options, "console=ttyS0 nomodeset");
    assert_eq!(
        serde_json::Value::Object(o.facts),
        serde_json::json!({"a": "two", "b": [true, null]})
    );
    assert_eq!(o.role.map(|r| r.disk), Some("/dev/nvme0n1".to_owned()));
}

#[test]
fn raid_devices_are_numbered_and_not_reused() {
    let (host, _) = ok("let a = raid(1, [\"sda1\", \"sdb1\"]);\nlet b = raid(\"md5\", 0, [\"sdc\", \"sdd\"]);\nraid(1, [\"sde\", \"sdf\"]);");
    let lines = host.command_lines();
    let devices: Vec<_> = lines.iter().filter_map(|l| l.split(' ').nth(2)).collect();
    assert_eq!(devices, ["/dev/md0", "/dev/md5", "/dev/md1"]);
    assert_eq!(
        fails("raid(\"md0\", 1, [\"a\", \"b\"]);\nraid(\"md0\", 1, [\"c\", \"d\"]);").kind,
        ErrorKind::InvalidArgument
    );
}

#[test]
fn print_never_reaches_stdout_and_is_logged() {
    let (_, o) = ok("print(\"a\");\ndebug(\"b\");");
    assert_eq!(o.log, ["a", "[line 2] \"b\""]);
}
