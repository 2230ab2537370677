//! The HTTP listener: every connection under a deadline, a bounded number of them, and a
//! shutdown that finishes on time whatever clients do.
//!
//! axum's own `serve` has no header, body or idle timeout and no connection limit, so 3 000
//! idle or slowloris connections stayed open for minutes and one of them kept SIGTERM from
//! finishing. Here each connection is a hyper HTTP/1.1 connection whose reads are watched
//! ([`Watched`]) to know which phase it is in, and one deadline applies per phase:
//! - **idle** (nothing of a next request received yet): `keepalive_timeout`, or
//!   `header_timeout` on a new connection; then it is closed without a word, as HTTP allows for
//!   an idle connection;
//! - **head** (bytes of a request received, the headers not complete): `header_timeout`, then
//!   `408 Request Timeout` and close;
//! - **busy** (a request is being handled): the body must arrive within `body_timeout`
//!   ([`TimedBody`]; the handler then answers 408 and closes); the rest is sluice's own work.
//!
//! At most `max_connections` are open (fewer when the descriptor limit is lower, see
//! [`connection_budget`]); beyond that the listener stops accepting and clients wait in the
//! kernel's backlog. Accept errors, `EMFILE` included, never stop the listener: it waits a
//! little and accepts again once descriptors are free. At shutdown the listener stops
//! accepting, idle connections close at once, requests in flight get [`SHUTDOWN_GRACE`], and
//! whatever is still open then is dropped.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, StatusCode, header};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// How long requests in flight get to finish once shutdown begins; then their connections are
/// dropped. Together with the robots' own grace this keeps a stop within the README's 5 s.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The per-connection deadlines, read from the running config for each new connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header: Duration,
    pub body: Duration,
    pub keepalive: Duration,
}

/// Where a connection is, as its reads and its service tell.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request to begin, since then; `fresh` before the first one.
    Idle { since: Instant, fresh: bool },
    /// Part of a request head has arrived, the first of it then.
    Head { since: Instant },
    /// The service is handling a request.
    Busy,
}

#[derive(Debug)]
struct Tracker(Mutex<Phase>);

impl Tracker {
    fn set(&self, phase: Phase) {
        *self.0.lock().expect("phase lock") = phase;
    }

    fn get(&self) -> Phase {
        *self.0.lock().expect("phase lock")
    }

    /// Bytes arrived: on an idle connection they are the start of the next request's head.
    fn read_some(&self) {
        let mut phase = self.0.lock().expect("phase lock");
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
        }
    }

    /// When the current phase's deadline passes, and what then; `None` while busy.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        match self.get() {
            Phase::Idle { since, fresh: true } => Some((since + limits.header, Expiry::Close)),
            Phase::Idle {
                since,
                fresh: false,
            } => Some((since + limits.keepalive, Expiry::Close)),
            Phase::Head { since } => Some((since + limits.header, Expiry::RequestTimeout)),
            Phase::Busy => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Close,
    RequestTimeout,
}

/// A TCP stream whose reads move its connection's [`Phase`].
struct Watched {
    io: TcpStream,
    tracker: Arc<Tracker>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.tracker.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The reason a body read failed after its deadline; [`crate::http`] answers 408 for it.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within server.body_timeout ({0:?})")]
pub struct BodyTimeout(pub Duration);

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
struct TimedBody {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// How many connections may be open at once: `wanted`, but never so many that the process could
/// run out of file descriptors for its store (WAL, segments, sled) and its robots' connections,
/// which would fail the store. Returns the budget and the soft descriptor limit it obeyed.
pub fn connection_budget(wanted: usize) -> (usize, Option<u64>) {
    /// Descriptors kept for everything but client connections.
    const RESERVE: u64 = 256;
    match crate::fd::soft_limit() {
        Some(soft) => {
            let spare = soft.saturating_sub(RESERVE).max(soft / 2).max(1);
            (wanted.min(spare as usize), Some(soft))
        }
        None => (wanted, None),
    }
}

/// Serves `router` on `listener` until `stop` turns true, then shuts down as the module header
/// says. `limits` is asked for each new connection, so a reload applies to the next one.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    limits: impl Fn() -> Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut last_warning: Option<Instant> = None;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = crate::supervisor::stopped(&mut stop) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = crate::supervisor::stopped(&mut stop) => break,
        };
        match accepted {
            Ok((stream, _)) => {
                let conn = connection(stream, router.clone(), limits(), stop.clone());
                tokio::spawn(async move {
                    conn.await;
                    drop(permit);
                });
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // EMFILE/ENFILE above all: wait for descriptors to be freed, then accept again.
                let now = Instant::now();
                if last_warning.is_none_or(|t| now - t > Duration::from_secs(10)) {
                    tracing::error!(
                        "cannot accept a connection ({e}); retrying (is the file descriptor limit too low? see server.max_connections)"
                    );
                    last_warning = Some(now);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    // Every connection holds a slot; all slots back means all connections are gone.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(
        SHUTDOWN_GRACE + Duration::from_millis(500),
        slots.acquire_many(all),
    )
    .await;
    if drained.is_err() {
        tracing::warn!(
            "shutdown: some HTTP connections did not close within {SHUTDOWN_GRACE:?}; dropped"
        );
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection, start to end.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let tracker = Arc::new(Tracker(Mutex::new(Phase::Idle {
        since: Instant::now(),
        fresh: true,
    })));
    let io = TokioIo::new(Watched {
        io: stream,
        tracker: tracker.clone(),
    });
    let on_request = tracker.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        on_request.set(Phase::Busy);
        let request = request.map(|inner| {
            Body::new(TimedBody {
                inner,
                sleep: Box::pin(tokio::time::sleep(limits.body)),
                limit: limits.body,
            })
        });
        let router = router.clone();
        let tracker = on_request.clone();
        async move {
            let response = router.oneshot(request).await;
            tracker.set(Phase::Idle {
                since: Instant::now(),
                fresh: false,
            });
            response
        }
    });
    // hyper's own header timeout (30 s by default once a timer is set) also runs while a
    // connection idles between requests; the deadlines here replace it.
    let mut conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut shutdown_by: Option<Instant> = None;
    loop {
        let deadline = match shutdown_by {
            Some(at) => Some((at, Expiry::Close)),
            None => tracker.deadline(&limits),
        };
        let sleep = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = &mut conn => {
                if let Err(e) = done {
                    tracing::debug!("HTTP connection ended: {e}");
                }
                return;
            }
            () = sleep => {
                if shutdown_by.is_some() {
                    return;
                }
                // The phase may have moved on since the deadline was taken.
                match tracker.deadline(&limits) {
                    Some((at, expiry)) if at <= Instant::now() => {
                        if expiry == Expiry::RequestTimeout {
                            let mut stream = conn.into_parts().io.into_inner().io;
                            request_timeout(&mut stream, limits.header).await;
                        }
                        return;
                    }
                    _ => {}
                }
            }
            _ = crate::supervisor::stopped(&mut stop), if shutdown_by.is_none() => {
                Pin::new(&mut conn).graceful_shutdown();
                shutdown_by = Some(Instant::now() + SHUTDOWN_GRACE);
            }
        }
    }
}

/// Answers `408 Request Timeout` on a connection whose request head did not arrive in time,
/// and closes it.
async fn request_timeout(stream: &mut TcpStream, limit: Duration) {
    let body = serde_json::json!({
        "error": format!(
            "the request headers did not arrive within server.header_timeout ({})",
            humantime::format_duration(limit)
        )
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// The 408 a handler gives when its body did not arrive in time; it closes the connection,
/// since the rest of the body may still be on its way.
pub fn body_timeout_error(e: &BodyTimeout) -> crate::http::ApiError {
    crate::http::ApiError::new(StatusCode::REQUEST_TIMEOUT, e.to_string())
        .with_header(header::CONNECTION, HeaderValue::from_static("close"))
}
