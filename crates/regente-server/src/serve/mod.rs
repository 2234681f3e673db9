//! The serving loop: accepts connections, optionally terminates TLS, and hands
//! each connection to hyper's HTTP/1 server with axum's router as the service.
//! It is ours rather than `axum::serve` for what a server facing networks
//! nobody here controls needs:
//!
//! - a deadline for a request's head and for a TLS handshake (a client that
//!   trickles header lines is closed when it passes);
//! - a minimum rate for request bodies ([`body`]);
//! - a cap on open connections, agents' WebSockets included: past it a new
//!   connection gets a short 503 in the API's error shape ([`busy`]);
//! - TLS whose certificate is read again on SIGHUP ([`tls`]);
//! - a graceful stop: no new connections, requests in flight get a grace
//!   period.

mod body;
mod busy;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::config::ConnectionLimits;
use tls::ReloadableTls;

/// How long in-flight requests may take to finish once a stop is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Refused connections answered at once; past this they are dropped unanswered.
const BUSY_ANSWERS_AT_ONCE: usize = 64;

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in
/// flight finish for up to [`SHUTDOWN_GRACE`]. Upgraded connections (agents'
/// WebSockets) are not waited for.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<ReloadableTls>>,
    shutdown: impl Future<Output = ()>,
) {
    raise_open_files_limit(limits.max_connections);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let busy_answers = Arc::new(Semaphore::new(BUSY_ANSWERS_AT_ONCE));
    let (stop, stopping) = watch::channel(false);
    // Every connection task holds a sender: all dropped means all done.
    let (in_flight, mut all_done) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin; per-connection errors pass at once.
                    if !is_connection_error(&e) {
                        warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
        };
        // Small answers must not wait on Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                let connection = Connection {
                    app: app.clone(),
                    remote,
                    limits: limits.clone(),
                    stopping: stopping.clone(),
                    _in_flight: in_flight.clone(),
                };
                let io = Counted {
                    io: tcp,
                    _permit: permit,
                };
                // Two task types: a plain connection's task is not sized for
                // a TLS session and its handshake (about 5 KB against 1.3).
                match &tls {
                    None => tokio::spawn(connection.http(io)),
                    Some(tls) => tokio::spawn(connection.tls(io, tls.clone())),
                };
            }
            Err(_) => match busy_answers.clone().try_acquire_owned() {
                Ok(permit) => {
                    debug!(%remote, "too many connections: answering 503");
                    tokio::spawn(busy::answer(tcp, tls.clone(), permit));
                }
                Err(_) => drop(tcp),
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    drop(in_flight);
    if tokio::time::timeout(SHUTDOWN_GRACE, all_done.recv())
        .await
        .is_err()
    {
        warn!("requests still open {SHUTDOWN_GRACE:?} after the stop signal were cut");
    }
}

/// Errors that concern one connection only, not the listener.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Lets the process hold the connections it is set to accept: the soft limit
/// on open files (often 1,024) goes up to the hard one when it is lower than
/// the cap plus room for the store and the rest.
fn raise_open_files_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        let wanted = max_connections as libc::rlim_t + 256;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= wanted {
                return;
            }
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 && raised.rlim_cur < wanted {
                warn!(
                    open_files = raised.rlim_cur,
                    max_connections, "the open-files limit is lower than the connection cap needs"
                );
            }
        }
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    app: Router,
    remote: SocketAddr,
    limits: ConnectionLimits,
    stopping: watch::Receiver<bool>,
    _in_flight: mpsc::Sender<()>,
}

impl Connection {
    /// Serves HTTP over TLS once the handshake ends within the head's deadline.
    async fn tls(self, io: Counted<TcpStream>, tls: Arc<ReloadableTls>) {
        let handshake = tls.acceptor().accept(io);
        match tokio::time::timeout(self.limits.header_timeout, handshake).await {
            Ok(Ok(stream)) => self.http(stream).await,
            Ok(Err(e)) => debug!(remote = %self.remote, error = %e, "TLS handshake failed"),
            Err(_) => debug!(remote = %self.remote, "TLS handshake too slow: closed"),
        }
    }

    /// Serves HTTP/1 on `io` until the client leaves or the server stops.
    async fn http<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let remote = self.remote;
        let limits = self.limits.clone();
        let service = hyper::service::service_fn(move |request| {
            handle(app.clone(), remote, limits.clone(), request)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        let outcome = tokio::select! {
            outcome = connection.as_mut() => outcome,
            () = stopped(&mut self.stopping) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = outcome {
            // Clients that leave, time out or send garbage: theirs, not ours.
            debug!(remote = %self.remote, error = %e, "connection ended with an error");
        }
    }
}

async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// One request through the router, its body held to the minimum rate.
async fn handle(
    app: Router,
    remote: SocketAddr,
    limits: ConnectionLimits,
    request: Request<Incoming>,
) -> Result<Response<axum::body::Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let has_body = declares_body(&request);
    let watch = body::Watch::default();
    let mut request = request.map(|incoming| {
        axum::body::Body::new(body::MinRate::new(
            incoming,
            limits.body_min_rate,
            limits.header_timeout,
            watch.clone(),
        ))
    });
    request.extensions_mut().insert(ConnectInfo(remote));
    let mut response = match tower_service::Service::call(&mut app.clone(), request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if watch.too_slow() {
        let message = format!(
            "the request body arrived slower than {} bytes per second",
            limits.body_min_rate
        );
        response =
            crate::api::error::shaped(axum::http::StatusCode::REQUEST_TIMEOUT, message, path);
    }
    if has_body && !watch.ended() {
        // The answer came before the body was read (a bad token, a body over
        // the limit): say that the connection closes, so that a client does
        // not send its next request on it.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

fn declares_body(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim() != "0")
}

/// A connection's stream holding its place under the cap until it is dropped,
/// which, for an upgraded connection, is when the WebSocket ends.
struct Counted<I> {
    io: I,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
