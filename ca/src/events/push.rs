//! One push (RFC 8935): the HTTPS client of a receiver, a POST of one
//! token, and what its answer means.

use std::sync::Arc;

use super::set;
use super::sign::SignError;
use super::Receiver;
use crate::metrics::events::Failure;

/// Longest wait for a receiver's answer.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Most bytes of a refusal's body read (for the log).
const MAX_ANSWER_BYTES: usize = 4096;

/// The client that POSTs to `receiver`: TLS verified with its roots only,
/// https only, no redirects, [`ATTEMPT_TIMEOUT`] for an answer.
pub fn client(receiver: &Receiver) -> Result<reqwest::Client, SignError> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(receiver.roots.iter().cloned());
    if added == 0 {
        return Err(SignError::new(format!(
            "receiver {:?}: none of its roots is a usable certificate",
            receiver.name
        )));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SignError::new(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(ATTEMPT_TIMEOUT)
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .map_err(|e| SignError::new(format!("receiver {:?}: {e}", receiver.name)))
}

/// What an answer of `status` means: an acknowledgement (none), or the
/// kind of failure. RFC 8935 section 2.2: a receiver that took the token
/// answers 202 Accepted. Any other answer, even another 2xx (a web page at
/// the wrong URL, a proxy), is not taken for an acknowledgement: that would
/// lose the event.
pub fn failure_of(status: reqwest::StatusCode) -> Option<Failure> {
    if status == reqwest::StatusCode::ACCEPTED {
        None
    } else if status.is_server_error() {
        Some(Failure::ServerError)
    } else {
        Some(Failure::Rejected)
    }
}

/// One POST of `token` to `receiver` with `client`; the failure and what
/// the log says of it, unless acknowledged.
pub async fn post(
    client: &reqwest::Client,
    receiver: &Receiver,
    token: String,
) -> Result<(), (Failure, String)> {
    let mut request = client
        .post(receiver.url.clone())
        .header(reqwest::header::CONTENT_TYPE, set::MEDIA_TYPE)
        .header(reqwest::header::ACCEPT, "application/json")
        .body(token);
    if let Some(bearer) = &receiver.authorization {
        request = request.bearer_auth(bearer);
    }
    let mut answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) if e.is_timeout() => return Err((Failure::Timeout, e.to_string())),
        Err(e) => return Err((Failure::Unreachable, agentca::error_chain(&e))),
    };
    let status = answer.status();
    let Some(failure) = failure_of(status) else {
        return Ok(());
    };
    // RFC 8935 section 2.3: a refusal says why in JSON; keep a little of it
    // for the log.
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER_BYTES {
        match answer.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ANSWER_BYTES);
    let text = String::from_utf8_lossy(&body);
    Err((failure, format!("HTTP {status}: {}", text.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn only_202_acknowledges_a_token() {
        assert_eq!(failure_of(StatusCode::ACCEPTED), None);
        for status in [200, 201, 204, 301, 302, 400, 401, 404, 413, 429] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(failure_of(status), Some(Failure::Rejected), "{status}");
        }
        for status in [500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(failure_of(status), Some(Failure::ServerError), "{status}");
        }
    }
}
