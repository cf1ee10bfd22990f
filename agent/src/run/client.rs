//! The agent's HTTP client of `rdeploy serve` (HTTP or HTTPS, blocking): every call has a
//! time limit and is retried with backoff while the server is down, slow or busy.
//!
//! Over HTTPS the server's certificate must chain to the agent's CA file when it has one
//! ([`Trust`]); a certificate that does not is a final refusal, not retried.
//!
//! A call is retried when the server cannot be reached, times out, or answers `5xx` or
//! `429` (`503` with `Retry-After` is admission control: `--max-installs` installs are under
//! way). Any other `4xx` is the server's final word (no match, quota used up) and is not
//! retried. Every retry says on the console what failed and when the next try is.
//!
//! Failover: the client may know several servers (`rdeploy.server=URL1,URL2`: servers that
//! share one rollout). It talks to one at a time; when that one cannot be reached or does
//! not answer in time, the next attempt goes to the next server, and the client stays there
//! (its clones too: one install, one current server). A server that answers, even `5xx`,
//! is up: it is retried, not left. The node's token goes with every call, whichever server
//! gets it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdeploy_configure::wire::{ProgressEvent, UploadReply};
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::StatusCode;

use super::backoff::Backoff;
use super::console::Console;
use crate::tls::{certificate_refusal, Trust};

/// Why a call to the server did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server answered with a final refusal (a 4xx other than 429).
    #[error("{what}: the server refused ({status} {code}): {message}")]
    Refused {
        /// The call (`upload`, `event configure/started` ...).
        what: String,
        /// HTTP status.
        status: u16,
        /// The server's stable error code (`no_match`), or `-` when it gave none.
        code: String,
        /// The server's message, with the profiles it tried for matching errors.
        message: String,
    },
    /// The server's certificate is not the pinned one (nor signed by the CA file).
    #[error("{what}: refused the certificate of {server}: {why} (the agent trusts only {ca})")]
    Untrusted {
        /// The call.
        what: String,
        /// The server's base URL.
        server: String,
        /// What TLS said (`invalid peer certificate: UnknownIssuer` ...).
        why: String,
        /// The CA file, or `the system's roots`.
        ca: String,
    },
    /// The server stayed unreachable or busy for the whole retry time.
    #[error(
        "{what}: gave up after {attempts} attempts in {secs:.0} s (retry time {total} s): {last}"
    )]
    GaveUp {
        /// The call.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// Seconds spent.
        secs: f64,
        /// The retry time allowed (`--retry-for`), in seconds.
        total: u64,
        /// What the last attempt ran into.
        last: String,
    },
}

/// The outcome of one attempt.
enum Attempt {
    Done(Response),
    Untrusted(String),
    Again {
        why: String,
        retry_after: Option<Duration>,
        /// The server was not reached or did not answer: worth trying another.
        unreachable: bool,
    },
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

/// A client of a server, or of several that share a rollout (tried in turn on failure).
#[derive(Debug, Clone)]
pub struct Client {
    http: Http,
    timeout: Duration,
    /// The servers' base URLs, in the order given.
    bases: Arc<[String]>,
    /// Which of `bases` calls go to now; shared by the clones.
    current: Arc<AtomicUsize>,
    backoff: Backoff,
    /// The node's token from the upload reply: sent on every later call.
    token: Option<String>,
    /// The server certificates trusted.
    trust: Trust,
}

/// The servers of a `rdeploy.server=` / `--server` value: base URLs separated by commas
/// (`http://10.0.0.1:8080,http://10.0.0.2:8080`), trailing slashes dropped, empty ones
/// skipped.
pub fn server_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().trim_end_matches('/'))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Client {
    /// A client of `base` (`https://10.0.0.1:8443`, or several separated by commas): each
    /// request may take `timeout`, connecting at most 10 s of it; failed calls are retried
    /// under `backoff`, on the next server when the current one is unreachable; servers'
    /// certificates are checked against `trust`.
    pub fn new(
        base: &str,
        timeout: Duration,
        backoff: Backoff,
        trust: &Trust,
    ) -> anyhow::Result<Self> {
        let bases = server_list(base);
        if bases.is_empty() {
            anyhow::bail!("no server URL in {base:?}");
        }
        Ok(Self {
            http: http_client(timeout, trust)
                .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?,
            timeout,
            bases: bases.into(),
            current: Arc::new(AtomicUsize::new(0)),
            backoff,
            token: None,
            trust: trust.clone(),
        })
    }

    /// The same servers, the same current one, another retry schedule (a client made once
    /// the machine's inventory is known, to spread retries by machine).
    pub fn with_backoff(&self, backoff: Backoff) -> Self {
        let mut c = self.clone();
        c.backoff = backoff;
        c
    }

    /// Sends `token` (the upload reply's) on every later call, as
    /// `Authorization: Bearer <token>`.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// The request with the node's token, if it has one.
    fn auth(&self, rb: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// The same client with another total retry time (failure reports do not wait forever).
    pub fn with_total(&self, total: Duration) -> Self {
        let mut c = self.clone();
        c.backoff.total = total;
        c
    }

    /// The base URL of the server calls go to now.
    pub fn base(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.bases.len();
        &self.bases[i]
    }

    /// Every server, the current one first (what an installed host keeps for upgrades).
    pub fn servers(&self) -> Vec<String> {
        let i = self.current.load(Ordering::Relaxed) % self.bases.len();
        self.bases[i..]
            .iter()
            .chain(&self.bases[..i])
            .cloned()
            .collect()
    }

    /// Moves to the next server (after the current one could not be reached); says so.
    fn fail_over(&self, console: &Console, from: &str) {
        if self.bases.len() < 2 {
            return;
        }
        let next = (self.current.load(Ordering::Relaxed) + 1) % self.bases.len();
        self.current.store(next, Ordering::Relaxed);
        console.say(&format!(
            "{from} cannot be reached: moving to the next server, {}",
            self.bases[next]
        ));
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// `POST /upload` with the inventory: the matched profile, its variables and script.
    pub fn upload(&self, console: &Console, inventory: &str) -> Result<UploadReply, CallError> {
        let what = "upload";
        let resp = self.call(console, what, |http| {
            let (content_type, body) = multipart(&[("file", Some("hw.json"), inventory)]);
            http.post(self.url("/upload"))
                .header("Accept", "application/json")
                .header("Content-Type", content_type)
                .body(body)
        })?;
        let text = resp.text().map_err(|e| refused_body(what, &e))?;
        serde_json::from_str(&text).map_err(|e| CallError::Refused {
            what: what.into(),
            status: 200,
            code: "bad_reply".into(),
            message: format!(
                "the answer is not an upload reply ({e}): {}",
                excerpt(&text)
            ),
        })
    }

    /// `POST /upload` with `failure=<profile>` (and the inventory, so the node is marked
    /// `failed`): the profile gets its install back.
    pub fn report_failure(
        &self,
        console: &Console,
        profile: &str,
        inventory: &str,
    ) -> Result<String, CallError> {
        let resp = self.call(console, "failure report", |http| {
            let (content_type, body) = multipart(&[
                ("failure", None, profile),
                ("file", Some("hw.json"), inventory),
            ]);
            self.auth(http.post(self.url("/upload")))
                .header("Accept", "application/json")
                .header("Content-Type", content_type)
                .body(body)
        })?;
        Ok(message_of(resp))
    }

    /// `POST /nodes/{id}/events`.
    pub fn event(
        &self,
        console: &Console,
        node: &str,
        event: &ProgressEvent,
    ) -> Result<(), CallError> {
        let what = format!("event {}", event_name(event));
        self.call(console, &what, |http| {
            self.auth(http.post(self.url(&format!("/nodes/{node}/events"))))
                .json(event)
        })
        .map(drop)
    }

    /// `POST /nodes/{id}/log` with the log as text.
    pub fn upload_log(&self, console: &Console, node: &str, log: &str) -> Result<(), CallError> {
        self.call(console, "log upload", |http| {
            self.auth(http.post(self.url(&format!("/nodes/{node}/log"))))
                .header("Content-Type", "text/plain; charset=utf-8")
                .body(log.to_owned())
        })
        .map(drop)
    }

    /// `GET /localboot/{mac}` (PXE Manager's call): the machine boots its disk from now on.
    pub fn localboot(&self, console: &Console, mac: &str) -> Result<String, CallError> {
        let resp = self.call(console, "localboot", |http| {
            self.auth(http.get(self.url(&format!("/localboot/{mac}"))))
        })?;
        Ok(message_of(resp))
    }

    /// Sends the request `build` makes until it succeeds, is refused, or the retry time is up.
    fn call(
        &self,
        console: &Console,
        what: &str,
        build: impl Fn(&Http) -> RequestBuilder,
    ) -> Result<Response, CallError> {
        let start = Instant::now();
        let mut attempt = 0;
        let mut http = self.http.clone();
        loop {
            match classify(build(&http).send()) {
                Attempt::Done(r) => return Ok(r),
                Attempt::Untrusted(why) => {
                    return Err(CallError::Untrusted {
                        what: what.to_owned(),
                        server: self.base().to_owned(),
                        why,
                        ca: self.trust.ca_file().map_or_else(
                            || "the system's roots".to_owned(),
                            |p| p.display().to_string(),
                        ),
                    })
                }
                Attempt::Refused {
                    status,
                    code,
                    message,
                } => {
                    return Err(CallError::Refused {
                        what: what.to_owned(),
                        status,
                        code,
                        message,
                    })
                }
                Attempt::Again {
                    why,
                    retry_after,
                    unreachable,
                } => {
                    let base = self.base().to_owned();
                    let Some(pause) = self.backoff.pause(attempt, start.elapsed(), retry_after)
                    else {
                        return Err(CallError::GaveUp {
                            what: what.to_owned(),
                            attempts: attempt + 1,
                            secs: start.elapsed().as_secs_f64(),
                            total: self.backoff.total.as_secs(),
                            last: why,
                        });
                    };
                    console.say(&format!(
                        "{what} to {base}: {why}; next try in {:.1} s (attempt {}, giving up {:.0} s after the first)",
                        pause.as_secs_f64(),
                        attempt + 1,
                        self.backoff.total.as_secs_f64(),
                    ));
                    if unreachable {
                        self.fail_over(console, &base);
                    }
                    std::thread::sleep(pause);
                    attempt += 1;
                    // A fresh client for the next attempt: nothing of the failed one (a
                    // half-open connection, a dead pool entry) can fail it again.
                    if let Ok(fresh) = http_client(self.timeout, &self.trust) {
                        http = fresh;
                    }
                }
            }
        }
    }
}

/// The blocking client: a time limit on each request, 10 s at most to connect, no idle
/// connections kept (a few calls a minute do not need them).
fn http_client(timeout: Duration, trust: &Trust) -> reqwest::Result<Http> {
    trust
        .builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("rdeploy-agent/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(0)
        .build()
}

/// A `multipart/form-data` body built in memory, the form eDeploy's agents sent
/// (`curl -F file=@hw.json`): fields `(name, file name, content)`. Returns the content type
/// and the body. (reqwest's blocking multipart streams the body from another thread, and a
/// refused connection then sometimes reports the stream's end instead of the refusal.)
fn multipart(fields: &[(&str, Option<&str>, &str)]) -> (String, Vec<u8>) {
    let mut n: u64 = 0;
    let boundary = loop {
        let b = format!("rdeploy-agent-{n:016x}");
        if fields.iter().all(|(_, _, c)| !c.contains(&b)) {
            break b;
        }
        n += 1;
    };
    let mut body = String::new();
    for (name, file, content) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        ));
        if let Some(f) = file {
            body.push_str(&format!(
                "; filename=\"{f}\"\r\nContent-Type: application/json"
            ));
        }
        body.push_str("\r\n\r\n");
        body.push_str(content);
        body.push_str("\r\n");
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

fn event_name(e: &ProgressEvent) -> String {
    let v = serde_json::to_value(e).unwrap_or_default();
    format!(
        "{}/{}",
        v.get("step").and_then(|s| s.as_str()).unwrap_or("?"),
        v.get("status").and_then(|s| s.as_str()).unwrap_or("?")
    )
}

fn classify(result: Result<Response, reqwest::Error>) -> Attempt {
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(why) = certificate_refusal(&e) {
                return Attempt::Untrusted(why);
            }
            return Attempt::Again {
                why: describe(&e),
                retry_after: None,
                unreachable: e.is_connect() || e.is_timeout(),
            };
        }
    };
    let status = resp.status();
    if status.is_success() {
        return Attempt::Done(resp);
    }
    let retry_after = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.text().unwrap_or_default();
    let (code, message) = error_body(&body);
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Attempt::Again {
            why: format!("the server answered {} {code}: {message}", status.as_u16()),
            retry_after,
            unreachable: false,
        }
    } else {
        Attempt::Refused {
            status: status.as_u16(),
            code,
            message,
        }
    }
}

/// The `error` code and message of an rdeploy error body, with the profiles it tried.
fn error_body(body: &str) -> (String, String) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return ("-".into(), excerpt(body));
    };
    let code = v
        .get("error")
        .and_then(|c| c.as_str())
        .unwrap_or("-")
        .to_owned();
    let mut message = v
        .get("message")
        .and_then(|m| m.as_str())
        .map_or_else(|| excerpt(body), str::to_owned);
    if let Some(tried) = v.get("tried").and_then(|t| t.as_array()) {
        for t in tried {
            let profile = t.get("profile").and_then(|p| p.as_str()).unwrap_or("?");
            let reason = t.get("reason").and_then(|r| r.as_str()).unwrap_or("?");
            message.push_str(&format!("\n  {profile}: {reason}"));
        }
    }
    (code, message)
}

/// The `message` of a JSON answer, else the text.
fn message_of(resp: Response) -> String {
    let body = resp.text().unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| excerpt(&body))
}

fn refused_body(what: &str, e: &reqwest::Error) -> CallError {
    CallError::Refused {
        what: what.into(),
        status: 200,
        code: "bad_reply".into(),
        message: format!("cannot read the answer: {}", describe(e)),
    }
}

/// A reqwest error in a person's words: what failed and its innermost cause
/// (`cannot connect: Connection refused (os error 111)`, `timed out: ...`).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(c) = cause.source() {
        cause = c;
    }
    format!("{what}: {cause}")
}

fn excerpt(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_name_code_message_and_profiles() {
        let (code, msg) = error_body(
            r#"{"error": "no_match", "message": "unable to match", "tried": [{"profile": "hp", "reason": "spec #1 not satisfied"}]}"#,
        );
        assert_eq!(code, "no_match");
        assert_eq!(msg, "unable to match\n  hp: spec #1 not satisfied");
        assert_eq!(
            error_body("<html>oops</html>"),
            ("-".into(), "<html>oops</html>".into())
        );
    }

    #[test]
    fn an_unreachable_server_is_retried_then_given_up() -> anyhow::Result<()> {
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let backoff = Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(20),
            total: Duration::from_millis(200),
            seed: 1,
        };
        let client = Client::new(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(5),
            backoff,
            &Trust::system(),
        )?;
        let console = Console::silent();
        let err = client.localboot(&console, "52:54:00:00:00:01");
        let Err(CallError::GaveUp { attempts, last, .. }) = err else {
            anyhow::bail!("expected a give-up, got {err:?}");
        };
        assert!(attempts >= 2, "{attempts}");
        assert!(last.starts_with("cannot connect"), "{last}");
        let log = console.text();
        assert!(log.contains("localboot to http://127.0.0.1:"), "{log}");
        assert!(log.contains("next try in"), "{log}");
        Ok(())
    }

    #[test]
    fn an_unreachable_server_is_left_for_the_next_which_gets_the_token() -> anyhow::Result<()> {
        use std::io::{BufRead, BufReader, Write};
        let dead = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // The second server: answers one request, hands back what it received.
        let live = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = live.local_addr()?.port();
        let got = std::thread::spawn(move || -> std::io::Result<Vec<String>> {
            let (stream, _) = live.accept()?;
            let mut reader = BufReader::new(stream.try_clone()?);
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                if line.trim().is_empty() {
                    break;
                }
                head.push(line.trim().to_owned());
            }
            let mut w = stream;
            w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")?;
            Ok(head)
        });
        let backoff = Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(20),
            total: Duration::from_secs(30),
            seed: 1,
        };
        let mut client = Client::new(
            &format!("http://127.0.0.1:{dead}/, http://127.0.0.1:{port}"),
            Duration::from_secs(5),
            backoff,
            &Trust::system(),
        )?;
        client.set_token(Some("node-token".into()));
        let clone = client.with_total(Duration::from_secs(30));
        let console = Console::silent();
        let answer = clone.localboot(&console, "52:54:00:00:00:01")?;
        assert_eq!(answer, "ok");
        let head = got
            .join()
            .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
        assert!(
            head[0].starts_with("GET /localboot/52:54:00:00:00:01 "),
            "{head:?}"
        );
        assert!(
            head.iter()
                .any(|h| h.eq_ignore_ascii_case("authorization: Bearer node-token")),
            "{head:?}"
        );
        // The original client follows its clone: one install, one current server.
        assert_eq!(client.base(), format!("http://127.0.0.1:{port}"));
        assert_eq!(
            client.servers(),
            vec![
                format!("http://127.0.0.1:{port}"),
                format!("http://127.0.0.1:{dead}")
            ]
        );
        let log = console.text();
        assert!(
            log.contains(&format!(
                "moving to the next server, http://127.0.0.1:{port}"
            )),
            "{log}"
        );
        Ok(())
    }

    #[test]
    fn server_lists_are_split_on_commas() {
        assert_eq!(
            server_list("http://a:1/, http://b:2,,"),
            vec!["http://a:1".to_owned(), "http://b:2".to_owned()]
        );
        assert!(server_list(" , ").is_empty());
    }
}
