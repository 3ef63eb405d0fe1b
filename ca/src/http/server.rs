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
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::{ApiError, ConnInfo, RequestId};

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
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
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
    // refusal: say so a few times a minute, not once per connection.
    let (mut quiet_total, mut quiet_per_ip) =
        (Quiet::new(Instant::now()), Quiet::new(Instant::now()));

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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.observe_refused_connection("total");
            if let Some(unsaid) = quiet_total.say(Instant::now()) {
                tracing::warn!(%remote, max = limits.max_connections, unsaid, "connection limit reached; closing new connections");
            }
            continue;
        };
        let Some(ip_slot) = per_ip.admit(remote.ip(), limits.max_connections_per_ip) else {
            metrics.observe_refused_connection("per_address");
            if let Some(unsaid) = quiet_per_ip.say(Instant::now()) {
                tracing::warn!(%remote, max = limits.max_connections_per_ip, unsaid, "per-address connection limit reached; closing new connections");
            }
            continue;
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
            let _permit = permit;
            let _ip_slot = ip_slot;
            let Some(acceptor) = acceptor else {
                let info = ConnInfo {
                    remote,
                    peer_chain: None,
                };
                return conn.serve(TokioIo::new(tcp), info).await;
            };
            match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let info = conn_info(remote, &tls);
                    conn.serve(TokioIo::new(tls), info).await;
                }
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
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

/// Open connections per peer address.
#[derive(Default)]
struct PerIp(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection's place in [`PerIp`], given back on drop.
struct IpSlot {
    table: Arc<PerIp>,
    ip: std::net::IpAddr,
}

impl PerIp {
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
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
    async fn serve<I>(self, io: I, info: ConnInfo)
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
            async move {
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

/// How many times a repeated warning is said in one window, and the window.
const QUIET_BURST: u32 = 5;
const QUIET_WINDOW: Duration = Duration::from_secs(60);

/// Says a repeated warning at most [`QUIET_BURST`] times per
/// [`QUIET_WINDOW`]; the first one said after a window tells how many went
/// unsaid in it.
struct Quiet {
    window_start: Instant,
    said: u32,
    unsaid: u64,
}

impl Quiet {
    fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            said: 0,
            unsaid: 0,
        }
    }

    /// Whether to say the warning that happens at `now`; if so, how many
    /// were left unsaid before it.
    fn say(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.window_start) >= QUIET_WINDOW {
            let unsaid = std::mem::take(&mut self.unsaid);
            self.window_start = now;
            self.said = 1;
            return Some(unsaid);
        }
        if self.said < QUIET_BURST {
            self.said += 1;
            return Some(0);
        }
        self.unsaid += 1;
        None
    }
}

#[cfg(test)]
mod quiet_tests {
    use super::*;

    #[test]
    fn a_repeated_warning_is_said_a_few_times_a_window_then_counted() {
        let t0 = Instant::now();
        let mut quiet = Quiet::new(t0);
        let said: Vec<Option<u64>> = (0..8).map(|_| quiet.say(t0)).collect();
        assert_eq!(
            said,
            [
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                None
            ]
        );
        let almost = t0 + QUIET_WINDOW - Duration::from_millis(1);
        assert_eq!(quiet.say(almost), None);
        // The next window's first says how many went unsaid.
        assert_eq!(quiet.say(t0 + QUIET_WINDOW), Some(4));
        assert_eq!(quiet.say(t0 + QUIET_WINDOW), Some(0));
    }
}
