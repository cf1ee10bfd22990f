//! PXE Manager's test system end to end, with its users' own commands: a tests dir with
//! `wait.test` and a templated `hello.test`, `pxemngr synctestnames`, `pxemngr nexttest`,
//! `curl /nexttest/`, the seed's `curl --retry 0 -s -f -F "file=@$output" .../upload/`,
//! `pxemngr dpytest`, the pages, a restart, two systems at once, and `rdeploy-agent
//! test-loop`. Machines are told apart by their loopback address (127.0.0.1, 127.0.0.2:
//! their CMDB entries in `tests/fixtures/pxe-tests/config`), as PXE Manager told them
//! apart by address.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use rdeploy_tests::{binary, copy_dir, run_binary_env, workspace_path, Output, Server};

/// A server over the fixture config and tests dir, the `pxemngr` name, two machines.
struct Rack {
    server: Server,
    tmp: tempfile::TempDir,
    pxemngr: PathBuf,
    /// Node ids of the machines at 127.0.0.1 and 127.0.0.2.
    nodes: [String; 2],
}

fn inventory(n: u8) -> String {
    format!(
        "[['system', 'product', 'vendor', 'QEMU'], ['system', 'product', 'name', 'KVM'], \
          ['system', 'product', 'serial', 'RACK1-U0{n}'], ['disk', 'vda', 'size', '20'], \
          ['network', 'eth0', 'serial', '52:54:00:aa:00:0{n}'], ['network', 'eth0', 'link', 'yes']]"
    )
}

impl Rack {
    fn new() -> Result<Rack> {
        let tmp = tempfile::tempdir()?;
        let config = tmp.path().join("config");
        let tests = tmp.path().join("tests");
        copy_dir(&workspace_path("tests/fixtures/pxe-tests/config"), &config)?;
        copy_dir(&workspace_path("tests/fixtures/pxe-tests/tests"), &tests)?;
        let data = tmp.path().join("data");
        let server = Server::start(&config, &data, &["--tests-dir", &tests.to_string_lossy()])?;
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&bin)?;
        let pxemngr = bin.join("pxemngr");
        std::os::unix::fs::symlink(binary("rdeploy")?, &pxemngr)?;
        let mut nodes = [String::new(), String::new()];
        for (i, node) in nodes.iter_mut().enumerate() {
            let reply: serde_json::Value = reqwest::blocking::Client::new()
                .post(server.url("/upload"))
                .header("Accept", "application/json")
                .body(inventory(u8::try_from(i + 1)?))
                .send()?
                .json()?;
            *node = reply["node"]
                .as_str()
                .with_context(|| format!("upload answered {reply}"))?
                .to_owned();
            ensure!(
                reply["var"]["ip"] == format!("127.0.0.{}", i + 1),
                "{reply}"
            );
        }
        Ok(Rack {
            server,
            tmp,
            pxemngr,
            nodes,
        })
    }

    fn tests_dir(&self) -> PathBuf {
        self.tmp.path().join("tests")
    }

    /// `pxemngr ARGS...` against the server.
    fn pxemngr(&self, args: &[&str]) -> Result<Output> {
        let out = Command::new(&self.pxemngr)
            .args(args)
            .env("RDEPLOY_SERVER", &self.server.base)
            .output()
            .context("cannot run pxemngr")?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `curl -s [--interface ADDR] URL/path`, as machine `from` (127.0.0.1 or .2).
    fn curl_get(&self, from: &str, path: &str) -> Result<(String, String)> {
        let out = Command::new("curl")
            .args(["-s", "-D", "-", "--interface", from])
            .arg(self.server.url(path))
            .output()
            .context("cannot run curl")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .with_context(|| format!("curl {path}: {text}"))?;
        Ok((head.to_lowercase(), body.to_owned()))
    }

    /// The seed's upload, verbatim (`curl --retry 0 -s -f -F "file=@$output" URL`), as
    /// machine `from`.
    fn seed_upload(&self, from: &str, output: &Path, path: &str) -> Result<Output> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "curl --interface {from} --retry 0 -s -f -F \"file=@$output\" {}",
                self.server.url(path)
            ))
            .env("output", output)
            .output()?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs a script with `sh`, its output to a file; returns the file.
    fn run_script(&self, name: &str, script: &str) -> Result<(PathBuf, Output)> {
        let file = self.tmp.path().join(format!("{name}.sh"));
        std::fs::write(&file, script)?;
        let output = self.tmp.path().join(format!("{name}.out"));
        let out = Command::new("sh").arg(&file).output()?;
        std::fs::write(&output, &out.stdout)?;
        Ok((
            output,
            Output {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
        ))
    }
}

fn ok(out: &Output, what: &str) -> Result<()> {
    if out.code != Some(0) {
        bail!(
            "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
    }
    Ok(())
}

#[test]
fn seed_commands_queue_run_upload_browse_and_survive_a_restart() -> Result<()> {
    let mut rack = Rack::new()?;
    let [node1, node2] = rack.nodes.clone();

    let sync = rack.pxemngr(&["synctestnames"])?;
    ok(&sync, "pxemngr synctestnames")?;
    for t in ["broken", "hello", "upload", "wait"] {
        ensure!(
            sync.stdout.contains(&format!("registering {t}\n")),
            "{}",
            sync.stdout
        );
    }
    ok(
        &rack.pxemngr(&["nexttest", &node1, "hello", "upload"])?,
        "nexttest",
    )?;
    ok(&rack.pxemngr(&["nexttest", &node2, "hello"])?, "nexttest")?;
    let unknown = rack.pxemngr(&["nexttest", &node1, "nosuch"])?;
    ensure!(unknown.code == Some(1), "{unknown:?}");
    ensure!(
        unknown.stderr.contains("test 'nosuch' is not defined"),
        "{}",
        unknown.stderr
    );

    // Machine 1 asks by its address and gets hello.test, rendered for it.
    let (head, script) = rack.curl_get("127.0.0.1", "/nexttest/")?;
    ensure!(head.contains("x-rdeploy-test-id: 1"), "{head}");
    let expected = format!(
        "#!/bin/sh\n# hello.test: written for PXE Manager (Django template syntax), unchanged.\n\
         echo \"V: demo-os 1.0\"\n\
         echo \"I: hello from {node1} at 127.0.0.1 (test hello #1)\"\n\
         echo \"I: mac 1 52:54:00:aa:00:01\"\n\
         echo \"W: node1 is a virtual machine\"\n\
         echo \"E: <script>alert('{node1}')</script> disk sdb failed\"\n\
         echo \"S: step one\"\necho \"T: 0.5\"\necho \"plain output is only in the raw file\"\n"
    );
    assert_eq!(script, expected);
    let (output1, run) = rack.run_script("hello1", &script)?;
    ok(&run, "hello.test")?;
    let up = rack.seed_upload("127.0.0.1", &output1, "/upload/")?;
    ok(&up, "the seed's upload to /upload/")?;
    assert_eq!(
        up.stdout,
        format!("uploaded: test run 1 (hello on {node1}): 1 errors, 1 warnings, 2 infos\n")
    );

    // Machine 2, by its own address; its result goes to /upload/<testid>/.
    let (head, script2) = rack.curl_get("127.0.0.2", "/nexttest")?;
    ensure!(head.contains("x-rdeploy-test-id: 3"), "{head}");
    ensure!(script2.contains(&format!("hello from {node2} at 127.0.0.2 (test hello #3)")));
    let (output2, _) = rack.run_script("hello2", &script2)?;
    ok(
        &rack.seed_upload("127.0.0.2", &output2, "/upload/3/")?,
        "upload to /upload/3/",
    )?;

    // Machine 1 again: upload.test uploads its own result; then nothing is left: wait.test.
    let (_, script) = rack.curl_get("127.0.0.1", "/nexttest/52:54:00:aa:00:01/")?;
    let (_, run) = rack.run_script("upload1", &script)?;
    ok(&run, "upload.test")?;
    ensure!(
        run.stdout.contains("uploaded: test run 2"),
        "{}",
        run.stdout
    );
    let (head, wait) = rack.curl_get("127.0.0.1", "/nexttest/")?;
    ensure!(!head.contains("x-rdeploy-test-id"), "{head}");
    assert_eq!(
        wait,
        format!(
            "#!/bin/sh\n# Nothing queued for {node1}: wait, then ask {}/nexttest/ again.\nsleep 60\n",
            rack.server.base
        )
    );

    // The operator's view: dpytest and the pages show the E: and W: lines.
    let dpy = rack.pxemngr(&["dpytest", &node1])?;
    ok(&dpy, "dpytest")?;
    ensure!(
        dpy.stdout.starts_with(&format!("Name: {node1}\n")),
        "{}",
        dpy.stdout
    );
    let rows: Vec<Vec<&str>> = dpy
        .stdout
        .lines()
        .skip(2)
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..3], ["1", "hello", "done"]);
    assert_eq!(rows[0][5..], ["1", "1", "2", "demo-os", "1.0"]);
    assert_eq!(rows[1][..3], ["2", "upload", "done"]);
    ensure!(dpy.stdout.contains(&format!(
        "run 1: W: node1 is a virtual machine\nrun 1: E: <script>alert('{node1}')</script> disk sdb failed\n"
    )), "{}", dpy.stdout);
    ensure!(
        dpy.stdout.contains("run 2: W: uploaded by the script\n"),
        "{}",
        dpy.stdout
    );
    let list = rack.pxemngr(&["dpytest", "-l"])?;
    assert_eq!(list.stdout, "broken\nhello\nupload\nwait\n");

    let page = rack.server.get_text(&format!("/tests/systems/{node1}"))?;
    ensure!(page.contains(&format!(
        "<li class=\"kind-E\">E: &lt;script&gt;alert(&#39;{node1}&#39;)&lt;/script&gt; disk sdb failed</li>"
    )), "{page}");
    ensure!(
        page.contains("<li class=\"kind-W\">W: node1 is a virtual machine</li>"),
        "{page}"
    );
    ensure!(
        !page.contains("<script>"),
        "an upload's text became markup: {page}"
    );
    let run_page = rack.server.get_text("/tests/runs/1")?;
    ensure!(run_page.contains("<h2>Errors (1)</h2>") && run_page.contains("<h2>Warnings (1)</h2>"));
    ensure!(
        run_page.contains("<li value=\"6\" class=\"kind-S\">S: step one</li>"),
        "{run_page}"
    );
    let raw = rack.server.get_text("/tests/runs/1/raw")?;
    assert_eq!(raw, std::fs::read_to_string(&output1)?);
    let index = rack.server.get_text("/tests/")?;
    for n in [&node1, &node2] {
        ensure!(
            index.contains(&format!("<a href=\"/tests/systems/{n}\">{n}</a>")),
            "{index}"
        );
    }
    let home = rack.server.get_text("/")?;
    ensure!(home.contains("<a href=\"/tests/\">Tests</a>"), "{home}");
    ensure!(
        !home.contains("http://") && !home.contains("https://"),
        "external link: {home}"
    );

    // A restart keeps runs, outputs, names and what is still queued.
    ok(
        &rack.pxemngr(&["nexttest", &node2, "hello"])?,
        "nexttest before the restart",
    )?;
    let before = rack.pxemngr(&["dpytest", &node1])?.stdout;
    let page_before = rack.server.get_text("/tests/runs/1")?;
    let (config, data) = (rack.server.config_dir.clone(), rack.server.data_dir.clone());
    rack.server.stop();
    let tests = rack.tests_dir();
    rack.server = Server::start(&config, &data, &["--tests-dir", &tests.to_string_lossy()])?;
    assert_eq!(rack.pxemngr(&["dpytest", &node1])?.stdout, before);
    assert_eq!(rack.server.get_text("/tests/runs/1")?, page_before);
    assert_eq!(rack.server.get_text("/tests/runs/1/raw")?, raw);
    let (head, _) = rack.curl_get("127.0.0.2", "/nexttest/")?;
    ensure!(
        head.contains("x-rdeploy-test-id: 4"),
        "the queued test did not survive: {head}"
    );
    Ok(())
}

#[test]
fn two_systems_testing_at_once_keep_their_own_results() -> Result<()> {
    let rack = Rack::new()?;
    let [node1, node2] = rack.nodes.clone();
    const ROUNDS: usize = 6;
    let many: Vec<&str> = std::iter::repeat_n("hello", ROUNDS).collect();
    for node in [&node1, &node2] {
        let mut args = vec!["nexttest", node.as_str()];
        args.extend(&many);
        ok(&rack.pxemngr(&args)?, "nexttest")?;
    }
    // Both machines loop at the same time: ask, run, upload to /upload/ (found by address).
    std::thread::scope(|s| -> Result<()> {
        let loops: Vec<_> = [("127.0.0.1", "a"), ("127.0.0.2", "b")]
            .into_iter()
            .map(|(from, tag)| {
                let rack = &rack;
                s.spawn(move || -> Result<()> {
                    for i in 0..ROUNDS {
                        let (head, script) = rack.curl_get(from, "/nexttest/")?;
                        ensure!(head.contains("x-rdeploy-test-id"), "{from}: {head}");
                        let (out, _) = rack.run_script(&format!("{tag}{i}"), &script)?;
                        ok(&rack.seed_upload(from, &out, "/upload/")?, "upload")?;
                    }
                    Ok(())
                })
            })
            .collect();
        for l in loops {
            l.join()
                .map_err(|_| anyhow::anyhow!("a machine's loop panicked"))??;
        }
        Ok(())
    })?;
    for (node, ip) in [(&node1, "127.0.0.1"), (&node2, "127.0.0.2")] {
        let list = rack.server.get_json(&format!("/testruns?system={node}"))?;
        let runs = list["runs"].as_array().context("runs")?;
        ensure!(runs.len() == ROUNDS, "{list}");
        for r in runs {
            ensure!(r["state"] == "done", "{r}");
            let id = r["id"].as_u64().context("id")?;
            let run = rack.server.get_json(&format!("/testruns/{id}"))?;
            let hello = run["lines"][0]["text"].as_str().unwrap_or_default();
            assert_eq!(
                hello,
                format!("hello from {node} at {ip} (test hello #{id})")
            );
        }
    }
    // A machine posting to another machine's run is refused, and nothing changes.
    let list = rack.server.get_json(&format!("/testruns?system={node1}"))?;
    let id = list["runs"][0]["id"].as_u64().context("id")?;
    let before = rack.server.get_text(&format!("/tests/runs/{id}/raw"))?;
    let other = rack.tmp.path().join("other.out");
    std::fs::write(&other, "E: not mine\n")?;
    let refused = Command::new("curl")
        .args(["--interface", "127.0.0.2", "-s", "-F"])
        .arg(format!("file=@{}", other.display()))
        .arg(rack.server.url(&format!("/upload/{id}/")))
        .output()?;
    let body = String::from_utf8_lossy(&refused.stdout);
    ensure!(body.contains("\"error\":\"wrong_system\""), "{body}");
    assert_eq!(
        rack.server.get_text(&format!("/tests/runs/{id}/raw"))?,
        before
    );
    Ok(())
}

#[test]
fn a_template_that_does_not_render_gets_wait_and_tells_the_operator_where() -> Result<()> {
    let rack = Rack::new()?;
    let node = rack.nodes[0].clone();
    ok(
        &rack.pxemngr(&["nexttest", &node, "broken", "hello"])?,
        "nexttest",
    )?;
    let (head, script) = rack.curl_get("127.0.0.1", "/nexttest/")?;
    ensure!(!head.contains("x-rdeploy-test-id"), "{head}");
    ensure!(script.contains("sleep 60"), "not wait.test: {script}");
    let dpy = rack.pxemngr(&["dpytest", &node])?;
    let line = dpy
        .stdout
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_default();
    ensure!(
        line.split_whitespace().nth(2) == Some("error"),
        "{}",
        dpy.stdout
    );
    let why = "broken.test:3: undefined variable in `var.nosuch`";
    ensure!(
        dpy.stdout
            .contains(&format!("run 1: template error: {why}")),
        "{}",
        dpy.stdout
    );
    ensure!(rack.server.get_text("/tests/runs/1")?.contains(why));
    // The next request gets the next test: the broken one does not block the queue.
    let (head, _) = rack.curl_get("127.0.0.1", "/nexttest/")?;
    ensure!(head.contains("x-rdeploy-test-id: 2"), "{head}");

    // A syntax error is found at sync time, with its file and line.
    std::fs::write(
        rack.tests_dir().join("syntax.test"),
        "#!/bin/sh\n\n{% if %}\n",
    )?;
    let sync = run_binary_env(
        "rdeploy",
        &["test", "sync", "--server", &rack.server.base],
        &[],
    )?;
    ensure!(sync.code == Some(2), "{sync:?}");
    ensure!(
        sync.stderr.contains("error: syntax.test:3: syntax error"),
        "{}",
        sync.stderr
    );
    Ok(())
}

#[test]
fn a_result_posted_to_the_inventory_upload_gets_a_clear_error() -> Result<()> {
    let rack = Rack::new()?;
    let node = rack.nodes[0].clone();
    ok(&rack.pxemngr(&["nexttest", &node, "hello"])?, "nexttest")?;
    let (_, script) = rack.curl_get("127.0.0.1", "/nexttest/")?;
    let (output, _) = rack.run_script("hello", &script)?;
    let hw_before = std::fs::read_dir(rack.server.data_dir.join("hw"))?.count();
    let wrong = rack.seed_upload("127.0.0.1", &output, "/upload")?;
    ensure!(
        wrong.code == Some(22),
        "curl -f should fail on the 400: {wrong:?}"
    );
    let resp = reqwest::blocking::Client::new()
        .post(rack.server.url("/upload"))
        .multipart(reqwest::blocking::multipart::Form::new().file("file", &output)?)
        .send()?;
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json()?;
    assert_eq!(body["error"], "test_output_to_inventory_upload");
    ensure!(body["message"]
        .as_str()
        .unwrap_or_default()
        .contains("/upload/ with the slash"));
    assert_eq!(
        std::fs::read_dir(rack.server.data_dir.join("hw"))?.count(),
        hw_before
    );
    let run = rack.server.get_json("/testruns/1")?;
    assert_eq!(run["state"], "running");
    Ok(())
}

#[test]
fn the_agent_test_loop_runs_queued_tests_and_junit_exports_them() -> Result<()> {
    let rack = Rack::new()?;
    let node = rack.nodes[0].clone();
    ok(
        &rack.pxemngr(&["nexttest", &node, "hello", "upload"])?,
        "nexttest",
    )?;
    let work = rack.tmp.path().join("agent");
    for expected in ["test run 1", "test run 2"] {
        let out = run_binary_env(
            "rdeploy-agent",
            &[
                "test-loop",
                "--server",
                &rack.server.base,
                "--mac",
                "52:54:00:aa:00:01",
                "--once",
                "--work-dir",
                &work.to_string_lossy(),
            ],
            &[],
        )?;
        ok(&out, "rdeploy-agent test-loop --once")?;
        ensure!(out.stderr.contains(expected), "{}", out.stderr);
    }
    let run = rack.server.get_json("/testruns/1")?;
    assert_eq!(run["state"], "done");
    assert_eq!(run["exit"], 0);
    assert_eq!(run["counts"]["errors"], 1);
    assert_eq!(rack.server.get_json("/testruns/2")?["state"], "done");

    // No server: --once says so and exits 2.
    let down = run_binary_env(
        "rdeploy-agent",
        &[
            "test-loop",
            "--server",
            "http://127.0.0.1:1",
            "--once",
            "--work-dir",
            &work.to_string_lossy(),
        ],
        &[],
    )?;
    ensure!(
        down.code == Some(2)
            && down
                .stderr
                .contains("cannot reach http://127.0.0.1:1/nexttest/"),
        "{down:?}"
    );

    let xml = rack.server.get_text("/tests/results.xml")?;
    ensure!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"rdeploy\" tests=\"2\" failures=\"1\" errors=\"0\">"), "{xml}");
    ensure!(
        xml.contains(&format!("<testcase classname=\"{node}\" name=\"hello #1\"")),
        "{xml}"
    );
    ensure!(
        xml.contains("<failure type=\"errors\" message=\"1 errors\">E: &lt;script&gt;"),
        "{xml}"
    );
    ensure!(
        xml.contains(&format!(
            "<testcase classname=\"{node}\" name=\"upload #2\""
        )),
        "{xml}"
    );
    Ok(())
}

/// Runs Debian's chromium headless with its own profile dir; its output.
fn chromium(profile: &Path, args: &[&str]) -> Result<Output> {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .context("cannot run chromium (Debian's package `chromium`, in scripts/apt-packages)")?;
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[test]
fn a_real_browser_shows_the_errors_and_warnings_as_text() -> Result<()> {
    let rack = Rack::new()?;
    let node = rack.nodes[0].clone();
    ok(&rack.pxemngr(&["nexttest", &node, "hello"])?, "nexttest")?;
    let (_, script) = rack.curl_get("127.0.0.1", "/nexttest/")?;
    let (output, _) = rack.run_script("hello", &script)?;
    ok(
        &rack.seed_upload("127.0.0.1", &output, "/upload/")?,
        "upload",
    )?;
    let profile = rack.tmp.path().join("chromium");

    // The DOM after the browser parsed the page: the uploaded markup is text, no element.
    let dom = chromium(
        &profile,
        &[
            "--dump-dom",
            &rack.server.url(&format!("/tests/systems/{node}")),
        ],
    )?;
    ok(&dom, "chromium --dump-dom")?;
    ensure!(
        dom.stdout.contains(&format!(
            "<li class=\"kind-E\">E: &lt;script&gt;alert('{node}')&lt;/script&gt; disk sdb failed</li>"
        )),
        "{}",
        dom.stdout
    );
    ensure!(dom
        .stdout
        .contains("<li class=\"kind-W\">W: node1 is a virtual machine</li>"));
    // The only script element is the console's own (the layout's `/ui/console.js`).
    ensure!(
        dom.stdout.matches("<script").count() == 1
            && dom
                .stdout
                .contains("<script src=\"/ui/console.js\" defer=\"\"></script>"),
        "a script element in the DOM besides the console's: {}",
        dom.stdout
    );

    // A screenshot of the run's page, kept in the target dir for a person to look at.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pxe-tests-run.png");
    let _ = std::fs::remove_file(&shot);
    let taken = chromium(
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,900",
            &rack.server.url("/tests/runs/1"),
        ],
    )?;
    ok(&taken, "chromium --screenshot")?;
    let png =
        std::fs::read(&shot).with_context(|| format!("no screenshot at {}", shot.display()))?;
    ensure!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a screenshot: {} bytes",
        png.len()
    );
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    assert_eq!(width, 1200);
    Ok(())
}

#[test]
fn a_test_with_no_upload_within_the_timeout_is_lost_and_a_late_upload_still_counts() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (config, tests, data) = (
        tmp.path().join("config"),
        tmp.path().join("tests"),
        tmp.path().join("data"),
    );
    copy_dir(&workspace_path("tests/fixtures/pxe-tests/config"), &config)?;
    copy_dir(&workspace_path("tests/fixtures/pxe-tests/tests"), &tests)?;
    let server = Server::start(
        &config,
        &data,
        &[
            "--tests-dir",
            &tests.to_string_lossy(),
            "--test-timeout",
            "3s",
        ],
    )?;
    let c = reqwest::blocking::Client::new();
    c.post(server.url("/upload"))
        .body(inventory(1))
        .send()?
        .error_for_status()?;
    let runs: serde_json::Value = c
        .post(server.url("/testruns"))
        .body(r#"{"system": "KVM-RACK1U01-52-54-00-aa-00-01", "tests": ["hello"]}"#)
        .send()?
        .error_for_status()?
        .json()?;
    assert_eq!(runs[0]["state"], "queued");
    let script = c
        .get(server.url("/nexttest/52:54:00:aa:00:01/"))
        .send()?
        .error_for_status()?
        .text()?;
    ensure!(script.contains("(test hello #1)"), "{script}");
    assert_eq!(server.get_json("/testruns/1")?["state"], "running");
    // Past the timeout (3 s, and up to 1 s more: times are kept to the second), it is lost.
    std::thread::sleep(std::time::Duration::from_secs(5));
    let lost = server.get_json("/testruns/1")?;
    assert_eq!(lost["state"], "lost");
    ensure!(lost["lost_at"].is_string(), "{lost}");
    let xml = server.get_text("/tests/results.xml")?;
    ensure!(xml.contains("<error type=\"lost\""), "{xml}");
    let late = c
        .post(server.url("/upload/1/"))
        .multipart(reqwest::blocking::multipart::Form::new().text("file", "I: late but here\n"))
        .send()?;
    assert_eq!(late.status().as_u16(), 200);
    assert_eq!(server.get_json("/testruns/1")?["state"], "done");
    Ok(())
}
