//! A receiver of Security Event Tokens (RFC 8935 push) over TLS on
//! 127.0.0.1, for the tests: it checks each token as a receiver that
//! trusts the agentca root must (the signing certificate in `x5c` chains
//! to the root, for document signing, names the trust domain that is the
//! token's `iss`; the ES256 signature holds), answers 202, and keeps what
//! it accepted in order. It can go away and come back on the same port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// id-kp-documentSigning (1.3.6.1.5.5.7.3.36), the OID's value bytes.
const DOCUMENT_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x24];
/// The bearer token the CA must present.
pub const BEARER: &str = "receiver-test-token";

/// A token the receiver accepted.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its JOSE header.
    pub header: Value,
    /// Its claims.
    pub claims: Value,
    /// The token as it came.
    pub token: String,
}

impl Received {
    /// Its one event type.
    pub fn event_type(&self) -> String {
        let events = self.claims["events"].as_object().expect("events");
        assert_eq!(events.len(), 1, "one event per token: {events:?}");
        events.keys().next().unwrap().clone()
    }

    /// Its event's payload.
    pub fn payload(&self) -> &Value {
        self.claims["events"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
    }
}

#[derive(Default)]
struct State {
    accepted: Vec<Received>,
    refused: Vec<String>,
    /// The `jti`s accepted more than once.
    duplicates: Vec<String>,
}

/// The receiver.
pub struct Receiver {
    /// Holds its TLS files and the receivers file for the CA.
    pub dir: tempfile::TempDir,
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    root_der: Arc<Mutex<Vec<u8>>>,
    trust_domain: String,
    state: Arc<Mutex<State>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// A receiver for tokens of `trust_domain`, listening; it refuses
    /// every token until told which root to trust ([`Receiver::trust`]).
    pub async fn start(trust_domain: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        params.is_ca = rcgen::IsCa::NoCa;
        // Self-signed: the receivers file names it as the one root.
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("receiver-ca.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("bearer"), format!("{BEARER}\n")).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut receiver = Self {
            dir,
            addr: listener.local_addr().unwrap(),
            tls: Arc::new(tls),
            root_der: Arc::default(),
            trust_domain: trust_domain.to_owned(),
            state: Arc::default(),
            server: None,
        };
        receiver.listen_on(listener);
        receiver
    }

    /// Trusts the root of the agentca bundle at `bundle`.
    pub fn trust(&self, bundle: &std::path::Path) {
        let pem = std::fs::read(bundle).unwrap();
        *self.root_der.lock().unwrap() = agentca::certs_from_pem(pem).unwrap()[0].to_vec();
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/events", self.addr.port())
    }

    /// A receivers file naming it as `name`, for `agentca serve
    /// --event-receivers`; it gets the kinds of events `events` names
    /// (every kind when empty).
    pub fn receivers_file(&self, name: &str, events: &[&str]) -> PathBuf {
        let path = self.dir.path().join("receivers.toml");
        let mut text = format!(
            "[[receiver]]\nname = \"{name}\"\nurl = \"{}\"\naudience = \"urn:test:soc\"\nca-file = \"receiver-ca.pem\"\nauthorization-file = \"bearer\"\n",
            self.url()
        );
        if !events.is_empty() {
            text.push_str(&format!("events = {events:?}\n"));
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn listen_on(&mut self, listener: TcpListener) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        let state = self.state.clone();
        let root = self.root_der.clone();
        let td = self.trust_domain.clone();
        self.server = Some(tokio::spawn(async move {
            // Dropped with the task: every connection ends with it.
            let mut connections = JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = state.clone();
                let root = root.clone();
                let td = td.clone();
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        let root = root.clone();
                        let td = td.clone();
                        async move {
                            let root = root.lock().unwrap().clone();
                            Ok::<_, std::convert::Infallible>(handle(req, &state, &root, &td).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        }));
    }

    /// Goes away: stops listening and drops every connection.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Comes back on the same port.
    pub async fn resume(&mut self) {
        assert!(self.server.is_none(), "the receiver is up");
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("the receiver's port again");
        self.listen_on(listener);
    }

    /// What it accepted so far, in order.
    pub fn accepted(&self) -> Vec<Received> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// Tokens it refused (none, when the CA is right).
    pub fn refused(&self) -> Vec<String> {
        self.state.lock().unwrap().refused.clone()
    }

    /// Asserts that it refused nothing and took no `jti` twice (a token is
    /// sent again only when its acknowledgement was lost, which the tests
    /// do not do).
    pub fn assert_each_taken_once(&self) {
        let state = self.state.lock().unwrap();
        assert!(state.refused.is_empty(), "refused: {:?}", state.refused);
        assert!(
            state.duplicates.is_empty(),
            "taken twice: {:?}",
            state.duplicates
        );
    }

    /// Waits (at most 30 s) until it accepted `n` tokens; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let accepted = self.accepted();
            if accepted.len() >= n {
                return accepted;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the receiver has {} token(s), not {n}: {accepted:#?}; refused: {:?}",
                accepted.len(),
                self.refused()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    root: &[u8],
    trust_domain: &str,
) -> hyper::Response<Full<Bytes>> {
    let answer = |status: u16, body: &str| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if req.method() != hyper::Method::POST
        || header("content-type") != "application/secevent+jwt"
        || header("authorization") != format!("Bearer {BEARER}")
    {
        let why = format!(
            "{} {} content-type {:?} authorization {:?}",
            req.method(),
            req.uri(),
            header("content-type"),
            header("authorization")
        );
        state.lock().unwrap().refused.push(why);
        return answer(401, r#"{"err":"authentication_failed"}"#);
    }
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return answer(400, r#"{"err":"invalid_request"}"#),
    };
    let token = String::from_utf8_lossy(&body).into_owned();
    match verify(&token, root, trust_domain) {
        Ok((header, claims)) => {
            let mut state = state.lock().unwrap();
            if state
                .accepted
                .iter()
                .any(|r| r.claims["jti"] == claims["jti"])
            {
                state.duplicates.push(claims["jti"].to_string());
            }
            state.accepted.push(Received {
                header,
                claims,
                token,
            });
            answer(202, "")
        }
        Err(why) => {
            state.lock().unwrap().refused.push(why);
            answer(400, r#"{"err":"invalid_key"}"#)
        }
    }
}

/// Checks `token` as a receiver trusting the root `root_der` must; its
/// header and claims.
pub fn verify(token: &str, root_der: &[u8], trust_domain: &str) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err(format!("{} parts, not 3", parts.len()));
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|e| e.to_string());
    let header: Value = serde_json::from_slice(&decode(header_b64)?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&decode(claims_b64)?).map_err(|e| e.to_string())?;
    if header["alg"] != "ES256" || header["typ"] != "secevent+jwt" {
        return Err(format!("header {header}"));
    }
    let x5c: Vec<Vec<u8>> = header["x5c"]
        .as_array()
        .ok_or("no x5c")?
        .iter()
        .map(|c| {
            STANDARD
                .decode(c.as_str().unwrap_or(""))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    if x5c.len() != 2 {
        return Err(format!("x5c has {} certificates, not 2", x5c.len()));
    }
    let leaf = rustls_pki_types::CertificateDer::from(x5c[0].clone());
    let intermediate = rustls_pki_types::CertificateDer::from(x5c[1].clone());
    let root = rustls_pki_types::CertificateDer::from(root_der.to_vec());
    let anchor = webpki::anchor_from_trusted_cert(&root).map_err(|e| e.to_string())?;
    let end_entity = webpki::EndEntityCert::try_from(&leaf).map_err(|e| e.to_string())?;
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[intermediate],
            rustls_pki_types::UnixTime::now(),
            webpki::KeyUsage::required_if_present(DOCUMENT_SIGNING),
            None,
            None,
        )
        .map_err(|e| format!("the signing certificate does not verify: {e}"))?;
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(&x5c[0]).map_err(|e| e.to_string())?;
    // The chain's EKUs allow document signing; the leaf must say it.
    let eku = cert
        .extended_key_usage()
        .map_err(|e| e.to_string())?
        .ok_or("the signing certificate has no EKU")?
        .value;
    let document_signing = x509_parser::oid_registry::Oid::from(&[1, 3, 6, 1, 5, 5, 7, 3, 36])
        .map_err(|e| format!("{e:?}"))?;
    if eku.client_auth || eku.server_auth || eku.any || eku.other != vec![document_signing] {
        return Err(format!("the signing certificate's EKU is {eku:?}"));
    }
    let issuer = format!("spiffe://{trust_domain}");
    let san = cert
        .subject_alternative_name()
        .map_err(|e| e.to_string())?
        .ok_or("no SAN")?;
    if san.value.general_names != vec![GeneralName::URI(&issuer)]
        || claims["iss"] != issuer.as_str()
    {
        return Err(format!(
            "iss {} and the certificate's SAN must be {issuer}",
            claims["iss"]
        ));
    }
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        cert.public_key().subject_public_key.data.to_vec(),
    );
    key.verify(
        format!("{header_b64}.{claims_b64}").as_bytes(),
        &decode(signature_b64)?,
    )
    .map_err(|_| "the signature does not verify".to_owned())?;
    Ok((header, claims))
}
