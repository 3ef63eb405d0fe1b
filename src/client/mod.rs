//! The agent side: keys, certificate signing requests, and the CA's HTTP
//! API (enroll, renew, bundle), over TLS that trusts only the CA.
//!
//! An agent meets its CA for the first time knowing two things: the CA's
//! URL and the SHA-256 fingerprint of its root ([`CaTrust::Pinned`]). The
//! first connection accepts the server only if it chains to a root with that
//! fingerprint; from then on the agent uses the CA's trust bundle
//! ([`CaTrust::Bundle`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), agentca::client::ClientError> {
//! use agentca::client::{CaClient, CaTrust, KeyAlgorithm, PrivateKey};
//!
//! let pin = "3f5c…".parse().expect("a fingerprint");
//! let ca = CaClient::new("https://ca.internal:8443", CaTrust::Pinned(pin), None)?;
//! let bundle = ca.bundle().await?;
//! let key = PrivateKey::generate(KeyAlgorithm::P256)?;
//! let issued = ca.enroll("the bootstrap token", &key.csr_pem()?).await?;
//! println!("{} until {}", issued.spiffe_id, issued.not_after);
//! # let _ = bundle; Ok(()) }
//! ```

pub mod agent;
pub mod files;
pub mod schedule;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bundle::{BundleError, Fingerprint, TrustBundle};
use crate::endpoints::{worth_another_replica, Endpoints};
use crate::wire::{EnrollRequest, ErrorBody, Health, IssuedCertificate, RenewRequest};

pub use crate::ca_tls::{client_config, CaTrust};
pub use agent::{Agent, AgentConfig, AgentError, Identity};

/// Largest response body read from the CA, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A CA URL is not a valid `https://` URL.
    #[error("the CA URL {0:?} is not a valid https:// URL")]
    InvalidUrl(String),
    /// A key could not be generated, parsed or used.
    #[error("key: {0}")]
    Key(String),
    /// A certificate or chain could not be parsed or used.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A trust bundle is invalid.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    TlsConfig(#[from] crate::ca_tls::TlsConfigError),
    /// The CA could not be reached, or the connection failed (including a
    /// TLS handshake refused because the CA's root does not match the pin).
    #[error("could not talk to the CA: {0}")]
    Transport(String),
    /// The CA refused the request.
    #[error("the CA refused the request ({status} {error}): {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error code from the CA.
        error: String,
        /// The CA's explanation.
        detail: String,
        /// `Retry-After` in seconds, when the CA asked the client to wait.
        retry_after: Option<u64>,
    },
    /// The CA answered something that is not what the API promises.
    #[error("the CA sent an invalid response: {0}")]
    InvalidResponse(String),
    /// The certificate files could not be read or written.
    #[error("certificate files: {0}")]
    Files(String),
    /// The CA's trust bundle does not contain the pinned root.
    #[error("the CA's trust bundle does not contain the pinned root {0}")]
    PinNotInBundle(Fingerprint),
}

fn transport(e: reqwest::Error) -> ClientError {
    // reqwest's Display hides the cause (e.g. the TLS alert); show the chain.
    ClientError::Transport(crate::error_chain(&e))
}

/// Key types the CA accepts for agents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256 (the default).
    #[default]
    P256,
    /// ECDSA on P-384 with SHA-384.
    P384,
    /// Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::P256 => "p256",
            KeyAlgorithm::P384 => "p384",
            KeyAlgorithm::Ed25519 => "ed25519",
        })
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "p256" => Ok(KeyAlgorithm::P256),
            "p384" => Ok(KeyAlgorithm::P384),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            other => Err(format!(
                "unknown key algorithm {other:?}; use p256, p384 or ed25519"
            )),
        }
    }
}

/// A private key generated on this machine. It never leaves it: the CA
/// only sees its public half, in a CSR.
pub struct PrivateKey {
    key: rcgen::KeyPair,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey").finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// A new key from the operating system's RNG.
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, ClientError> {
        let key = rcgen::KeyPair::generate_for(alg.rcgen())
            .map_err(|e| ClientError::Key(e.to_string()))?;
        Ok(Self { key })
    }

    /// A key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem_text: &str) -> Result<Self, ClientError> {
        let key =
            rcgen::KeyPair::from_pem(pem_text).map_err(|e| ClientError::Key(e.to_string()))?;
        Ok(Self { key })
    }

    /// The key as PKCS#8 PEM. Write it only to a file only its owner can read.
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A PEM PKCS#10 request for this key. The CA uses only its public key
    /// and checks its signature; the subject is left empty.
    pub fn csr_pem(&self) -> Result<String, ClientError> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&self.key)
            .map_err(|e| ClientError::Key(e.to_string()))?;
        csr.pem().map_err(|e| ClientError::Key(e.to_string()))
    }

    /// The SubjectPublicKeyInfo DER of the public key.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.key)
    }

    pub(crate) fn der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

/// A certificate chain and its key, presented to the CA for renewal.
pub struct Credentials {
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKey,
}

impl Credentials {
    /// Parses a PEM chain (leaf first) and checks that `key` is the leaf's key.
    pub fn from_pem(chain_pem: &str, key: PrivateKey) -> Result<Self, ClientError> {
        let chain = parse_chain(chain_pem)?;
        let leaf_spki = leaf_public_key(&chain[0])?;
        if leaf_spki != key.public_key_der() {
            return Err(ClientError::Key(
                "the key does not match the certificate".into(),
            ));
        }
        Ok(Self { chain, key })
    }
}

/// Parses PEM certificates, in order. At least one is required.
pub fn parse_chain(pem_text: &str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let chain =
        crate::certs_from_pem(pem_text).map_err(|e| ClientError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(ClientError::Certificate(
            "no CERTIFICATE block in the PEM".into(),
        ));
    }
    Ok(chain)
}

fn leaf_public_key(der: &[u8]) -> Result<Vec<u8>, ClientError> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| ClientError::Certificate(e.to_string()))?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

/// A client of one CA's HTTP API, on one or several of its replicas.
#[derive(Clone)]
pub struct CaClient {
    http: reqwest::Client,
    endpoints: Arc<Endpoints>,
    trust: Arc<CaTrust>,
}

impl fmt::Debug for CaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaClient")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl CaClient {
    /// A client of the CA at `url` (`https://host:port`), trusting it as
    /// `trust` says, presenting `credentials` when given (for renewal).
    ///
    /// `url` may list several replicas of the CA, separated by commas: a
    /// request that cannot reach one, or gets a 5xx from it, goes to the
    /// next ([`crate::endpoints`]).
    pub fn new(
        url: &str,
        trust: CaTrust,
        credentials: Option<Credentials>,
    ) -> Result<Self, ClientError> {
        let endpoints = Endpoints::parse(url).map_err(ClientError::InvalidUrl)?;
        let tls = client_config(&trust, credentials.map(|c| (c.chain, c.key.der())))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(transport)?;
        Ok(Self {
            http,
            endpoints: Arc::new(endpoints),
            trust: Arc::new(trust),
        })
    }

    /// The CA's base URL: of the replica that answered last.
    pub fn url(&self) -> &str {
        self.endpoints.preferred()
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.send(|base| self.http.get(format!("{base}/healthz")))
            .await
    }

    /// `GET /v1/bundle`: the CA's trust bundle. With a pinned client, the
    /// bundle must contain the pinned root.
    pub async fn bundle(&self) -> Result<TrustBundle, ClientError> {
        let resp = self
            .exchange(|base| self.http.get(format!("{base}/v1/bundle")))
            .await?;
        let status = resp.status();
        let retry_after = retry_after(&resp);
        let body = read_limited(resp).await?;
        if !status.is_success() {
            return Err(refused(status.as_u16(), &body, retry_after));
        }
        let bundle = TrustBundle::from_pem(&body)?;
        if let CaTrust::Pinned(pin) = &*self.trust {
            if !bundle.contains(pin) {
                return Err(ClientError::PinNotInBundle(*pin));
            }
        }
        Ok(bundle)
    }

    /// `POST /v1/enroll`: a first certificate for the key of `csr_pem`, with
    /// a bootstrap token.
    pub async fn enroll(
        &self,
        token: &str,
        csr_pem: &str,
    ) -> Result<IssuedCertificate, ClientError> {
        let body = EnrollRequest {
            token: token.to_owned(),
            csr: csr_pem.to_owned(),
        };
        self.send(|base| self.http.post(format!("{base}/v1/enroll")).json(&body))
            .await
    }

    /// `POST /v1/renew`: a new certificate for the key of `csr_pem`. The
    /// client must have been built with the current [`Credentials`].
    pub async fn renew(&self, csr_pem: &str) -> Result<IssuedCertificate, ClientError> {
        let body = RenewRequest {
            csr: csr_pem.to_owned(),
        };
        self.send(|base| self.http.post(format!("{base}/v1/renew")).json(&body))
            .await
    }

    /// Sends a request with an optional bearer token and a JSON body to
    /// `path`, and decodes the JSON answer: the building block of the admin
    /// CLI.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.send(|base| {
            let mut req = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(token) = bearer {
                req = req.bearer_auth(token);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            req
        })
        .await
    }

    /// [`CaClient::call`] with `If-Match: "version"`: the change applies
    /// only to that version of what `path` names (`409 version_conflict`
    /// otherwise).
    pub async fn call_if_match<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&B>,
        version: u64,
    ) -> Result<T, ClientError> {
        self.send(|base| {
            let mut req = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .header(reqwest::header::IF_MATCH, format!("\"{version}\""));
            if let Some(token) = bearer {
                req = req.bearer_auth(token);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            req
        })
        .await
    }

    /// `GET path` with an optional bearer token: the raw answer, at most
    /// `max_bytes` of it (for downloads larger than an API answer, such as
    /// a backup).
    pub async fn download(
        &self,
        path: &str,
        bearer: Option<&str>,
        max_bytes: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let resp = self
            .exchange(|base| {
                let req = self.http.get(format!("{base}{path}"));
                match bearer {
                    Some(token) => req.bearer_auth(token),
                    None => req,
                }
            })
            .await?;
        let status = resp.status();
        let retry_after = retry_after(&resp);
        let body = read_up_to(resp, max_bytes).await?;
        if !status.is_success() {
            return Err(refused(status.as_u16(), &body, retry_after));
        }
        Ok(body)
    }

    /// `GET /v1/admin/agents?{query}`: one page of the agent listing, and
    /// the `after=` of the next page when there is one
    /// ([`crate::wire::NEXT_AFTER_HEADER`]).
    pub async fn list_agents(
        &self,
        admin_token: &str,
        query: &str,
    ) -> Result<(Vec<crate::wire::AgentInfo>, Option<String>), ClientError> {
        let resp = self
            .exchange(|base| {
                self.http
                    .get(format!("{base}/v1/admin/agents?{query}"))
                    .bearer_auth(admin_token)
            })
            .await?;
        let next = resp.headers().get(crate::wire::NEXT_AFTER_HEADER).cloned();
        // A refusal is reported as such before the header is judged.
        let agents = self.parse(resp).await?;
        let next = next
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| {
                ClientError::InvalidResponse(format!(
                    "{} is not text",
                    crate::wire::NEXT_AFTER_HEADER
                ))
            })?;
        Ok((agents, next))
    }

    /// Sends the request `build` makes for a replica's base URL, to each
    /// replica in turn until one answers with something other than a 5xx;
    /// that answer, or the last failure.
    async fn exchange(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let mut last = None;
        let replicas = self.endpoints.len();
        for (tried, (index, base)) in self.endpoints.in_order().enumerate() {
            let outcome = build(base).send().await;
            let another = tried + 1 < replicas
                && worth_another_replica(&outcome.as_ref().map(|r| r.status()));
            match outcome {
                Ok(resp) if !another => {
                    self.endpoints.answered(index);
                    return Ok(resp);
                }
                Ok(resp) => {
                    tracing::debug!(replica = base, status = %resp.status(), "trying another CA replica");
                    last = Some(Ok(resp));
                }
                Err(e) if !another => return Err(transport(e)),
                Err(e) => {
                    tracing::debug!(replica = base, error = %e, "trying another CA replica");
                    last = Some(Err(transport(e)));
                }
            }
        }
        last.expect("at least one replica")
    }

    async fn send<T: DeserializeOwned>(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.exchange(build).await?;
        self.parse(resp).await
    }

    async fn parse<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, ClientError> {
        let status = resp.status();
        let retry_after = retry_after(&resp);
        let body = read_limited(resp).await?;
        if !status.is_success() {
            return Err(refused(status.as_u16(), &body, retry_after));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::InvalidResponse(e.to_string()))
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn refused(status: u16, body: &[u8], retry_after: Option<u64>) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError::Refused {
            status,
            error: e.error,
            detail: e.detail,
            retry_after,
        },
        Err(_) => ClientError::Refused {
            status,
            error: "http_error".into(),
            detail: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            retry_after,
        },
    }
}

async fn read_limited(resp: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    read_up_to(resp, MAX_RESPONSE_BYTES).await
}

async fn read_up_to(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > max {
            return Err(ClientError::InvalidResponse(format!(
                "the response is larger than {max} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Checks an issued certificate against the key it was requested for:
/// returns the parsed chain if the leaf carries `key`'s public key.
pub fn check_issued(
    issued: &IssuedCertificate,
    key: &PrivateKey,
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let chain = parse_chain(&issued.certificate_chain)?;
    if leaf_public_key(&chain[0])? != key.public_key_der() {
        return Err(ClientError::InvalidResponse(
            "the issued certificate is not for the key in the request".into(),
        ));
    }
    Ok(chain)
}
