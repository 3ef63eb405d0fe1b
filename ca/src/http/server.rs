//! The HTTPS listener: TLS handshakes, HTTP/1.1, and the limits that keep
//! one slow or greedy client from taking the CA down.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::fairness::{Admission, ConnState, Connections};
use super::{ApiError, ConnInfo, RequestId};
use crate::quiet::Quiet;

/// A new request id: 16 hex digits from the OS RNG.
fn new_request_id() -> String {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    crate::hex(&b)
}

/// Time and size limits of the listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a request's headers, including the idle time of a
    /// kept-alive connection.
    pub header_read_timeout: Duration,
    /// Longest time for one request, body included.
    pub request_timeout: Duration,
    /// Most open connections; further ones are closed at once.
    pub max_connections: usize,
    /// Most open connections from one IP address.
    pub max_connections_per_ip: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_ip: 256,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until
/// `shutdown` completes, then stops accepting and waits (up to the grace
/// period) for open requests.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
    limits: Limits,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let connections = Connections::new(limits.max_connections, limits.max_connections_per_ip);
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: its header read timeout also bounds how long a
    // connection may sit idle, which HTTP/2 (and the protocol sniffing of
    // an auto-detecting server) would not.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    // A client that holds its connections makes every further one a
    // replacement or a refusal: say so a few times a minute, not once per
    // connection.
    let mut quiet = [Quiet::new(Instant::now()), Quiet::new(Instant::now())];

    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match connections.admit(remote.ip()) {
            Admission::Admitted(slot) => slot,
            Admission::Replaced(slot, limit) => {
                metrics.observe_replaced_connection(limit.label());
                if let Some(unsaid) = quiet[limit as usize].say(Instant::now()) {
                    tracing::warn!(%remote, limit = limit.label(), unsaid, "connection limit reached; closed an idle connection to make room");
                }
                slot
            }
            Admission::Refused(limit) => {
                metrics.observe_refused_connection(limit.label());
                if let Some(unsaid) = quiet[limit as usize].say(Instant::now()) {
                    tracing::warn!(%remote, limit = limit.label(), unsaid, "connection limit reached and every connection busy; closing new connections");
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let conn = Conn {
            app: app.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            request_timeout: limits.request_timeout,
            metrics: metrics.clone(),
        };
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let state = slot.state().clone();
            let serve = async {
                let Some(acceptor) = acceptor else {
                    let info = ConnInfo {
                        remote,
                        peer_chain: None,
                    };
                    return conn.serve(TokioIo::new(tcp), info, state.clone()).await;
                };
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let info = conn_info(remote, &tls);
                        if info.peer_chain.is_some() {
                            state.authenticated();
                        }
                        conn.serve(TokioIo::new(tls), info, state.clone()).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            };
            tokio::select! {
                () = serve => {}
                () = state.closed() => tracing::debug!(%remote, "idle connection closed to make room"),
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing the remaining connections");
    }
}

/// What serving one connection needs.
struct Conn {
    app: Router,
    builder: Arc<http1::Builder>,
    watcher: hyper_util::server::graceful::Watcher,
    request_timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Conn {
    async fn serve<I>(self, io: I, info: ConnInfo, state: Arc<ConnState>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let remote = info.remote;
        let app = self.app;
        let timeout = self.request_timeout;
        let metrics = self.metrics;
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let request_id = new_request_id();
            req.extensions_mut().insert(info.clone());
            req.extensions_mut().insert(RequestId(request_id.clone()));
            let method = req.method().clone();
            // Paths carry no secrets (tokens travel in bodies and headers);
            // an OCSP GET path can be long.
            let path: String = req.uri().path().chars().take(128).collect();
            let app = app.clone();
            let metrics = metrics.clone();
            let started = Instant::now();
            let request = state.request();
            async move {
                let _request = request;
                let req = req.map(axum::body::Body::new);
                let mut response = match tokio::time::timeout(timeout, app.oneshot(req)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        format!("the request took longer than {} s", timeout.as_secs()),
                    )
                    .into_response(),
                };
                if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert("x-request-id", value);
                }
                let elapsed = started.elapsed();
                let route = response
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|m| m.as_str());
                metrics.observe_request(route, response.status().as_u16(), elapsed);
                tracing::info!(
                    target: "agentca::request",
                    request_id = %request_id,
                    %remote,
                    %method,
                    path = %path,
                    status = response.status().as_u16(),
                    ms = elapsed.as_secs_f64() * 1e3,
                    "request"
                );
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let conn = self.builder.serve_connection(io, svc);
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
        }
    }
}

fn conn_info(
    remote: SocketAddr,
    tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> ConnInfo {
    let peer_chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|certs| Arc::new(certs.iter().map(|c| c.clone().into_owned()).collect()));
    ConnInfo { remote, peer_chain }
}
