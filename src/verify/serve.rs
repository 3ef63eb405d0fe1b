//! Serving verified agents over mutual TLS (features `tokio` and `axum`).
//!
//! Two facts shape this module. TLS session resumption restores a peer's
//! certificate without running the verifier again, and a kept-alive
//! connection outlives a minutes-lived certificate. So each connection's
//! chain is verified again after the handshake ([`accept`]), and every
//! request is checked against expiry and revocation before the handler sees
//! it ([`Verifier::check_current`], done for you by [`serve`]). A request on
//! a connection opened before a revocation is refused as soon as the
//! revocation cache knows of it, without closing connections of other
//! agents or disabling resumption.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::{PeerIdentity, Verifier, VerifyError};

/// Longest TLS handshake [`accept`] waits for.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The TLS handshake failed (this includes a peer the verifier refused
    /// during the handshake).
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    /// The handshake took longer than [`HANDSHAKE_TIMEOUT`].
    #[error("TLS handshake timed out")]
    Timeout,
    /// The peer's certificate was refused after the handshake (a resumed
    /// session whose certificate is no longer acceptable).
    #[error(transparent)]
    Refused(#[from] VerifyError),
}

/// Completes the TLS handshake of `tcp` with `acceptor` (whose config should
/// come from [`Verifier::server_config`]) and returns the stream and who is
/// on the other end. After a full handshake through `verifier`, the
/// identity it verified is taken and re-checked (expiry, revocation,
/// policy); otherwise (a resumed session, whose handshake verifies
/// nothing, or another verifier) the peer's chain is verified in full.
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    verifier: &Verifier,
) -> Result<(TlsStream<TcpStream>, PeerIdentity), AcceptError> {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp).into_fallible())
        .await
        .map_err(|_| AcceptError::Timeout)?;
    let tls = match handshake {
        Ok(tls) => tls,
        Err((e, tcp)) => {
            linger(tcp).await;
            return Err(AcceptError::Handshake(e));
        }
    };
    let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
    let peer = verifier.peer_of_handshake(chain, OffsetDateTime::now_utc())?;
    Ok((tls, peer))
}

/// How long, and for how many bytes, a refused connection is drained.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Closes the connection of a refused handshake so that the peer reads the
/// alert saying why (tokio-rustls has written it).
///
/// In TLS 1.3 a client finishes its handshake before the server has
/// checked its certificate, and sends its request at once. Closing with
/// those bytes unread makes the kernel answer with a reset, which can
/// destroy the alert before the client reads it: the caller would see
/// "connection reset" instead of "certificate revoked". So the write side
/// is shut first, and what the client still sends is read and dropped,
/// for at most [`LINGER`] and [`LINGER_BYTES`].
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tcp.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// At most [`REFUSALS_LOGGED_PER_MINUTE`] refused callers are logged one by
/// one each minute; the others are counted, and the next line logged says
/// how many went unsaid. (A caller that keeps retrying must not flood the
/// service's log.)
pub const REFUSALS_LOGGED_PER_MINUTE: u32 = 10;

/// The rate limit of the refusal log lines of [`serve`](self::serve).
struct RefusalLog {
    /// When the current minute began, lines said in it, refusals unsaid.
    state: std::sync::Mutex<(Option<std::time::Instant>, u32, u64)>,
}

static REFUSALS: RefusalLog = RefusalLog {
    state: std::sync::Mutex::new((None, 0, 0)),
};

impl RefusalLog {
    /// Whether to log a refusal at `now`: `Some(unsaid)` (refusals not
    /// logged since the last line), or `None` when counted instead.
    fn say(&self, now: std::time::Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (start, said, unsaid) = &mut *state;
        if start.is_none_or(|s| now.duration_since(s) >= std::time::Duration::from_secs(60)) {
            *start = Some(now);
            *said = 0;
        }
        if *said < REFUSALS_LOGGED_PER_MINUTE {
            *said += 1;
            Some(std::mem::take(unsaid))
        } else {
            *unsaid += 1;
            None
        }
    }
}

/// Logs a refused caller (`what`, its identity or address, why), a few a
/// minute.
fn log_refusal(what: &str, who: &dyn std::fmt::Display, why: &dyn std::fmt::Display) {
    if let Some(unsaid) = REFUSALS.say(std::time::Instant::now()) {
        tracing::info!(%who, reason = %why, unsaid, "{what}");
    }
}

#[cfg(feature = "axum")]
pub use self::axum_integration::{require_scope, serve, Peer, RequireScope};

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_few_refusals_a_minute_are_logged_and_the_rest_counted() {
        let log = RefusalLog {
            state: std::sync::Mutex::new((None, 0, 0)),
        };
        let t0 = Instant::now();
        for _ in 0..REFUSALS_LOGGED_PER_MINUTE {
            assert_eq!(log.say(t0), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(log.say(t0 + Duration::from_secs(59)), None);
        }
        // The next minute's first line says how many went unsaid.
        assert_eq!(log.say(t0 + Duration::from_secs(60)), Some(5));
        assert_eq!(log.say(t0 + Duration::from_secs(61)), Some(0));
    }
}

#[cfg(feature = "axum")]
mod axum_integration {
    use std::future::Future;
    use std::sync::Arc;

    use axum::extract::FromRequestParts;
    use axum::http::request::Parts;
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::{Json, Router};
    use hyper::body::Incoming;
    use hyper::server::conn::{http1, http2};
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use time::OffsetDateTime;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;
    use tower::ServiceExt;

    use super::{accept, AcceptError};
    use crate::verify::{PeerIdentity, ScopeRefusal, Verifier, VerifyError};
    use crate::wire::ErrorBody;

    /// The verified caller of a request served by [`serve`]: use it as an
    /// axum extractor.
    ///
    /// ```
    /// use agentca::verify::serve::Peer;
    ///
    /// async fn whoami(Peer(peer): Peer) -> String {
    ///     format!("hello {}", peer.spiffe_id)
    /// }
    /// ```
    #[derive(Clone, Debug)]
    pub struct Peer(pub PeerIdentity);

    impl<S: Send + Sync> FromRequestParts<S> for Peer {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
            parts
                .extensions
                .get::<Arc<PeerIdentity>>()
                .map(|p| Peer((**p).clone()))
                .ok_or_else(|| {
                    refuse(
                        StatusCode::UNAUTHORIZED,
                        "no_client_certificate",
                        "this route is served without agentca::verify::serve::serve, so no verified peer is known",
                    )
                })
        }
    }

    /// A layer that refuses requests whose verified caller may not use a
    /// scope: `403` with `missing_scope` (its certificate does not carry
    /// it), `scope_withdrawn` (its registration lost it since) or
    /// `scope_blocked` (an operator blocked it); `503 revocation_stale`
    /// when the service does not know the CA's current withdrawals and
    /// blocks; `401` without a verified caller. Put it on the routes that
    /// need the scope with `route_layer`. Under [`serve`], it asks
    /// [`Verifier::require_scope`]; elsewhere, the certificate alone.
    ///
    /// ```
    /// use agentca::verify::serve::{require_scope, Peer};
    /// use axum::routing::{get, post};
    ///
    /// async fn read() -> &'static str { "tickets" }
    /// async fn write(Peer(peer): Peer) -> String { format!("written by {}", peer.spiffe_id) }
    ///
    /// let app: axum::Router = axum::Router::new()
    ///     .route("/tickets", post(write))
    ///     .route_layer(require_scope("tickets:write"))
    ///     .route("/tickets/list", get(read));
    /// ```
    ///
    /// # Panics
    ///
    /// If `scope` breaks the scope syntax ([`crate::scopes`]): such a
    /// scope could never be granted.
    pub fn require_scope(scope: &str) -> RequireScope {
        if let Err(e) = crate::scopes::check_scope(scope) {
            panic!("require_scope: {e}");
        }
        RequireScope {
            scope: Arc::from(scope),
        }
    }

    /// The layer of [`require_scope`].
    #[derive(Clone, Debug)]
    pub struct RequireScope {
        scope: Arc<str>,
    }

    impl<S> tower::Layer<S> for RequireScope {
        type Service = RequireScopeService<S>;

        fn layer(&self, inner: S) -> Self::Service {
            RequireScopeService {
                inner,
                scope: self.scope.clone(),
            }
        }
    }

    /// The service of [`RequireScope`].
    #[derive(Clone, Debug)]
    pub struct RequireScopeService<S> {
        inner: S,
        scope: Arc<str>,
    }

    impl<S> tower::Service<axum::extract::Request> for RequireScopeService<S>
    where
        S: tower::Service<axum::extract::Request, Response = Response> + Send + 'static,
        S::Future: Send + 'static,
    {
        type Response = Response;
        type Error = S::Error;
        type Future =
            std::pin::Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send + 'static>>;

        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: axum::extract::Request) -> Self::Future {
            let refused = match req.extensions().get::<Arc<PeerIdentity>>() {
                None => Some(refuse(
                    StatusCode::UNAUTHORIZED,
                    "no_client_certificate",
                    "this route needs a verified agent certificate",
                )),
                // The connection stays open: another route may be allowed.
                Some(peer) => {
                    let checked = match req.extensions().get::<Arc<Verifier>>() {
                        Some(verifier) => {
                            verifier.require_scope(peer, &self.scope, OffsetDateTime::now_utc())
                        }
                        None => peer.require_scope(&self.scope),
                    };
                    checked.err().map(|e| {
                        let status = match e.reason {
                            ScopeRefusal::Unknown => StatusCode::SERVICE_UNAVAILABLE,
                            _ => StatusCode::FORBIDDEN,
                        };
                        let why = format!("{}: {}", e.reason.code(), self.scope);
                        super::log_refusal("scope refused", &peer.spiffe_id, &why);
                        error_response(status, e.reason.code(), e.to_string())
                    })
                }
            };
            match refused {
                Some(response) => Box::pin(async move { Ok(response) }),
                None => Box::pin(self.inner.call(req)),
            }
        }
    }

    fn error_response(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
        let body = ErrorBody {
            error: code.to_owned(),
            detail: detail.into(),
        };
        (status, Json(body)).into_response()
    }

    fn refuse(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
        let mut response = error_response(status, code, detail);
        // The connection's certificate will not become acceptable again.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }

    fn refusal(e: &VerifyError) -> Response {
        let (status, code) = match e {
            VerifyError::Revoked(_) => (StatusCode::UNAUTHORIZED, "certificate_revoked"),
            VerifyError::Expired(_) => (StatusCode::UNAUTHORIZED, "certificate_expired"),
            VerifyError::RevocationStale(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "revocation_stale")
            }
            VerifyError::PolicyDenied(_) => (StatusCode::FORBIDDEN, "forbidden"),
            _ => (StatusCode::UNAUTHORIZED, "certificate_refused"),
        };
        refuse(status, code, e.to_string())
    }

    /// Serves `app` on `listener` to agents that present a certificate
    /// `verifier` accepts, with `tls` (from [`Verifier::server_config`]),
    /// until `shutdown` completes. Each request is checked against expiry
    /// and revocation first, and carries the caller as [`Peer`].
    pub async fn serve(
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        verifier: Arc<Verifier>,
        app: Router,
        shutdown: impl Future<Output = ()>,
    ) {
        let acceptor = TlsAcceptor::from(tls);
        // The protocol comes from ALPN, not from sniffing the first bytes:
        // sniffing has no timeout, so a peer that sends nothing would hold
        // its connection forever. HTTP/1.1's header read timeout bounds idle
        // time; HTTP/2 pings detect a vanished peer.
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(std::time::Duration::from_secs(30));
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
            .keep_alive_timeout(std::time::Duration::from_secs(10));
        let (h1, h2) = (Arc::new(h1), Arc::new(h2));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let acceptor = acceptor.clone();
            let verifier = verifier.clone();
            let app = app.clone();
            let (h1, h2) = (h1.clone(), h2.clone());
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let (stream, peer) = match accept(&acceptor, tcp, &verifier).await {
                    Ok(ok) => ok,
                    Err(AcceptError::Refused(e)) => {
                        super::log_refusal("peer refused after handshake", &remote, &e);
                        return;
                    }
                    // A handshake the verifier refused (an unknown CA, a
                    // revoked certificate) is a refused caller too.
                    Err(AcceptError::Handshake(e)) => {
                        super::log_refusal("TLS handshake refused", &remote, &e);
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(%remote, error = %e, "connection not accepted");
                        return;
                    }
                };
                let peer = Arc::new(peer);
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    let verifier = verifier.clone();
                    let peer = peer.clone();
                    let app = app.clone();
                    async move {
                        if let Err(e) = verifier.check_current(&peer, OffsetDateTime::now_utc()) {
                            super::log_refusal("request refused", &peer.spiffe_id, &e);
                            return Ok::<_, std::convert::Infallible>(refusal(&e));
                        }
                        req.extensions_mut().insert(peer);
                        req.extensions_mut().insert(verifier);
                        let req = req.map(axum::body::Body::new);
                        app.oneshot(req).await
                    }
                });
                let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = TokioIo::new(stream);
                let result = if is_h2 {
                    watcher.watch(h2.serve_connection(io, svc)).await
                } else {
                    watcher.watch(h1.serve_connection(io, svc)).await
                };
                if let Err(e) = result {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
    }
}
