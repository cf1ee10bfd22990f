//! File contents from the server, resumed after a transfer failure.
//!
//! A body that stops moving (no byte for the client's stall time-out), a connection that
//! closes or resets, or a body that ends short fails the file being read; the files written
//! before it stay, and the ones left are asked for again with `POST blobs` (by hash, in the
//! same order), after 1 s, 2 s, 4 s ... Each file is still checked against its sha256 before
//! it is put in place, so a resumed transfer installs exactly what an unbroken one does. An
//! error that asking again cannot mend (a content that does not match its hash on an intact
//! transfer, a local write error, a `4xx` such as a tree changed on the server) ends it.

use std::io::Read;
use std::time::Duration;

use anyhow::Result;
use rdeploy_configure::tree_wire::Entry;

use super::client::{Client, HttpStatus};

/// Tries in a row that write no file before the transfer is given up.
pub const TRIES: u32 = 6;

/// Files per `blobs` request (the server takes up to 10,000).
pub const BATCH: usize = 2000;

/// Reads a body and remembers whether the transfer itself failed (a read error, or the end
/// of the body while a file still wanted bytes).
struct Watched<R> {
    inner: R,
    broken: Option<String>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.broken = Some("the body ended early".to_owned());
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => {
                let text = chain(&e);
                self.broken = Some(
                    if e.kind() == std::io::ErrorKind::TimedOut || text.contains("timed out") {
                        format!("no data within the stall time-out ({text})")
                    } else {
                        text
                    },
                );
                Err(e)
            }
        }
    }
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

/// Whether an error opening a body is worth another try: no answer (connect, time-out,
/// reset) or a transient status.
fn transient(e: &anyhow::Error) -> bool {
    if let Some(s) = e.downcast_ref::<HttpStatus>() {
        return s.is_transient();
    }
    e.chain()
        .any(|c| c.downcast_ref::<reqwest::Error>().is_some())
}

/// Writes the contents of `files`, in order, with `write(i, body)` (`i` indexes `files`;
/// `write` reads exactly that file's bytes). The first body comes from `first` when given
/// (a stream part of exactly these files), the others from `POST blobs`. `say` gets a line
/// for each failure and what is done about it. Returns the number of retries made.
pub fn contents(
    client: &Client,
    role: &str,
    version: &str,
    files: &[&Entry],
    first: Option<&dyn Fn() -> Result<reqwest::blocking::Response>>,
    write: &mut dyn FnMut(usize, &mut dyn Read) -> Result<()>,
    say: &dyn Fn(&str),
) -> Result<u32> {
    let mut done = 0usize;
    let mut failures = 0u32;
    let mut retries = 0u32;
    let mut first = first;
    while done < files.len() {
        let (end, opened) = match first.take() {
            Some(open) => (files.len(), open()),
            None => {
                let end = files.len().min(done + BATCH);
                let hashes: Vec<&str> = files[done..end]
                    .iter()
                    .map(|e| e.sha256.as_deref().unwrap_or_default())
                    .collect();
                (end, client.blobs(role, version, &hashes))
            }
        };
        let before = done;
        let why = match opened {
            Err(e) if transient(&e) => format!("{e:#}"),
            Err(e) => return Err(e),
            Ok(body) => {
                let mut body = Watched {
                    inner: body,
                    broken: None,
                };
                let mut why = None;
                while done < end {
                    match write(done, &mut body) {
                        Ok(()) => done += 1,
                        Err(e) => match body.broken.take() {
                            Some(b) => {
                                why = Some(format!("{}: {b}", files[done].path));
                                break;
                            }
                            None => return Err(e),
                        },
                    }
                }
                match why {
                    None => continue,
                    Some(w) => w,
                }
            }
        };
        failures = if done > before { 1 } else { failures + 1 };
        anyhow::ensure!(
            failures < TRIES,
            "{why}; {TRIES} tries in a row moved nothing: giving up with {} of {} files written",
            done,
            files.len()
        );
        let wait = Duration::from_secs(1 << (failures - 1).min(5));
        say(&format!(
            "transfer failed at file {} of {} ({why}); asking again for the {} left in {} s",
            done + 1,
            files.len(),
            files.len() - done,
            wait.as_secs()
        ));
        retries += 1;
        std::thread::sleep(wait);
    }
    Ok(retries)
}
