//! Connections: the accept loop, with a cap on open connections and time limits on slow
//! clients, so that half-sent requests cannot hold descriptors (and with them every commit)
//! forever.
//!
//! - At start the descriptor limit (`RLIMIT_NOFILE`) is raised to its hard limit
//!   ([`raise_nofile`]). Connections are capped well below it ([`connection_cap`]): each may
//!   hold a second descriptor (a role tree file it streams), and [`RESERVED_FDS`] stay free
//!   for the server's own files (the config dir's commits, the disk thread's records, boot
//!   files). At the cap the loop stops accepting; new clients wait in the listen backlog.
//! - A request head (and the wait for the next one on a kept-alive connection) must arrive
//!   within [`Timeouts::header`]; a request body must send something every
//!   [`Timeouts::body_stall`] and be whole within [`Timeouts::body_total`] (else
//!   `408 request_timeout`); an answer the client stops reading for [`Timeouts::write_stall`]
//!   closes the connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};

/// Descriptors kept free for the server's own files, beyond two per connection.
pub const RESERVED_FDS: u64 = 512;

/// Most connections ever served at once, whatever the descriptor limit.
pub const MAX_CONNECTIONS: usize = 8192;

/// Most header lines the HTTP layer reads (above `http::guard`'s own limit, so a request
/// with a few too many gets its JSON answer rather than a bare status line).
pub const MAX_HEAD_LINES: usize = 400;

/// Most requests one HTTP/2 connection may have under way at once.
pub const MAX_HTTP2_STREAMS: u32 = 64;

/// How long a TLS client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To send a request head; also the longest a kept-alive connection waits idle.
    pub header: Duration,
    /// Between two pieces of a request body.
    pub body_stall: Duration,
    /// For a whole request body.
    pub body_total: Duration,
    /// To read on while an answer is being written (the client stopped reading).
    pub write_stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            header: Duration::from_secs(10),
            body_stall: Duration::from_secs(10),
            body_total: Duration::from_secs(60),
            write_stall: Duration::from_secs(60),
        }
    }
}

/// Raises the soft descriptor limit to the hard one; returns the soft limit now in force.
pub fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if limit.current != limit.maximum {
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the descriptor limit");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Connections served at once: `requested` (`--max-connections`) or [`MAX_CONNECTIONS`],
/// but never more than two descriptors each within `nofile` minus [`RESERVED_FDS`] (at
/// least 16).
pub fn connection_cap(nofile: u64, requested: Option<usize>) -> usize {
    let fit = nofile.saturating_sub(RESERVED_FDS) / 2;
    let fit = usize::try_from(fit).unwrap_or(usize::MAX);
    requested.unwrap_or(MAX_CONNECTIONS).min(fit).max(16)
}

/// Places for connections, shared by the listeners of one server.
#[derive(Debug, Clone)]
pub struct Cap {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Cap {
    /// Room for `max` connections at once.
    pub fn new(max: usize) -> Cap {
        Cap {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

/// The body a request timed out sending (see [`Timeouts`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body was not sent in time ({0})")]
pub struct BodyTimeout(&'static str);

/// Serves `router` on `listener` until `shutdown` completes, then lets the connections
/// under way finish their requests.
///
/// With `tls`, each connection's handshake (within [`HANDSHAKE_TIMEOUT`], holding its
/// place under the cap) comes first, and a client that chose `h2` by ALPN is served
/// HTTP/2; without, HTTP/1.1. Several listeners may share one [`Cap`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    cap: Cap,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let Cap {
        permits,
        max: max_connections,
    } = cap;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a
                    // little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = stop_rx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(ConnectInfo(peer));
                let body = Body::new(TimedBody::new(body, timeouts));
                let req = Request::from_parts(parts, body);
                let mut router = router.clone();
                async move { tower::Service::call(&mut router, req).await }
            });
            let Some(acceptor) = acceptor else {
                serve_http1(stream, service, timeouts, stop).await;
                return;
            };
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                serve_http2(tls, service, timeouts, stop).await;
            } else {
                serve_http1(tls, service, timeouts, stop).await;
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection gives its permit back when it ends.
    let _ = permits
        .acquire_many(u32::try_from(max_connections).unwrap_or(u32::MAX))
        .await;
}

/// Serves one HTTP/1.1 connection until it ends or the server stops.
async fn serve_http1<I, S>(io: I, service: S, timeouts: Timeouts, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(StallIo::new(io, timeouts.write_stall));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .max_headers(MAX_HEAD_LINES)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        r = conn.as_mut() => log_end(r),
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            log_end(conn.await);
        }
    }
}

/// Serves one HTTP/2 connection (TLS, `h2` by ALPN) until it ends or the server stops. An
/// idle connection is pinged and closed when the pings go unanswered.
async fn serve_http2<I, S>(io: I, service: S, timeouts: Timeouts, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(StallIo::new(io, timeouts.write_stall));
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(timeouts.header))
        .keep_alive_timeout(timeouts.header)
        .max_concurrent_streams(MAX_HTTP2_STREAMS)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        r = conn.as_mut() => log_end(r),
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            log_end(conn.await);
        }
    }
}

fn log_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        if e.is_timeout() {
            tracing::debug!(error = %e, "connection timed out");
        } else {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// A connection whose writes must make progress: a write that stays pending for the
/// write stall fails (the connection closes).
struct StallIo<T> {
    inner: T,
    stall: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> StallIo<T> {
    fn new(inner: T, stall: Duration) -> StallIo<T> {
        StallIo {
            inner,
            stall,
            timer: None,
        }
    }

    /// After a pending write: fails once the stall has lasted too long.
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let stall = self.stall;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading the answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx).map(|r| r.map(|()| 0)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx).map(|r| r.map(|()| 0)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                self.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must keep coming: each frame within the stall time, all of it
/// within the total time (see [`Timeouts`]).
struct TimedBody {
    inner: hyper::body::Incoming,
    stall: Duration,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
}

impl TimedBody {
    fn new(inner: hyper::body::Incoming, t: Timeouts) -> TimedBody {
        let now = Instant::now();
        TimedBody {
            inner,
            stall: t.body_stall,
            deadline: now + t.body_total,
            timer: Box::pin(tokio::time::sleep_until(
                (now + t.body_stall).min(now + t.body_total),
            )),
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = (Instant::now() + self.stall).min(self.deadline);
                self.timer.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let why = if Instant::now() >= self.deadline {
                        "the whole body took too long"
                    } else {
                        "nothing came for too long"
                    };
                    Poll::Ready(Some(Err(Box::new(BodyTimeout(why)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error (or one of its sources) is a request body that timed out.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_in_the_descriptors() {
        assert_eq!(connection_cap(1024, None), 256);
        assert_eq!(connection_cap(4096, None), 1792);
        assert_eq!(connection_cap(1 << 20, None), MAX_CONNECTIONS);
        assert_eq!(connection_cap(1 << 20, Some(100)), 100);
        assert_eq!(connection_cap(4096, Some(100_000)), 1792);
        assert_eq!(connection_cap(100, None), 16);
    }
}
