//! The agent runtime: a certificate at start-up, renewal before expiry,
//! rotation without restarts.
//!
//! [`Agent::start`] enrolls (or picks up the certificate its directory
//! holds) and spawns a small loop around [`schedule`](super::schedule): sleep
//! until about two thirds of the lifetime, renew with a fresh key, retry with
//! backoff. The rustls configurations it hands out resolve the newest
//! certificate on every handshake, so connections opened after a rotation
//! present the new certificate without a restart.
//!
//! When the CA is unreachable the agent keeps its certificate until it
//! expires, then reports itself [`Health::Unhealthy`] and keeps trying; when
//! the CA returns with the certificate expired, it enrolls again with its
//! bootstrap token if the token allows another use. Revocation, a disabled
//! agent or a spent token end in [`Health::Failed`]: a human must act.

mod renewal;
mod withdrawals;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::ResolvesClientCert;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::files::{AgentDir, DirLock, Pending};
use super::schedule::{jitter, renew_at, retry_delay};
use super::{
    check_issued, parse_chain, CaClient, CaTrust, ClientError, Credentials, KeyAlgorithm,
    PrivateKey,
};
use crate::bundle::TrustBundle;
use crate::identity::{AgentId, InstanceId};
use crate::wire::{IssuedCertificate, Serial};
use renewal::*;

/// How to reach the CA and where to keep the certificate.
#[derive(Clone)]
pub struct AgentConfig {
    /// The CA's URL; for several replicas of one CA, their URLs separated
    /// by commas (each request moves to the next when one cannot be
    /// reached or answers with a 5xx).
    pub ca_url: String,
    /// How to trust the CA on first contact (a root fingerprint pin, or a
    /// bundle). Afterwards the CA's bundle is used.
    pub trust: CaTrust,
    /// The bootstrap token: for the first enrollment, and for enrolling
    /// again after the certificate expired while the CA was unreachable
    /// (if the token allows another use).
    pub token: Option<String>,
    /// Where to keep the certificate, key, bundle and renewal journal
    /// (see [`files`](super::files)); without it they live in memory only,
    /// and a restart enrolls again.
    pub dir: Option<PathBuf>,
    /// Algorithm of the keys generated for each certificate.
    pub key_algorithm: KeyAlgorithm,
    /// Follow the CA's feed and renew at once when a scope of the current
    /// certificate is withdrawn from the agent's registration (so that the
    /// next certificate carries the registration as it is now). It holds
    /// one long-poll connection to the CA per agent.
    pub follow_withdrawals: bool,
    /// Test hook: abort the process right after the CA answered a renewal
    /// and before anything is written, to exercise recovery.
    #[doc(hidden)]
    pub abort_after_renewal_response: bool,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("ca_url", &self.ca_url)
            .field("dir", &self.dir)
            .field("key_algorithm", &self.key_algorithm)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// A configuration for the CA at `ca_url`, trusted as `trust`.
    pub fn new(ca_url: impl Into<String>, trust: CaTrust) -> Self {
        Self {
            ca_url: ca_url.into(),
            trust,
            token: None,
            dir: None,
            key_algorithm: KeyAlgorithm::P256,
            follow_withdrawals: false,
            abort_after_renewal_response: false,
        }
    }
}

/// The agent's state, as a health check should report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Holding a valid certificate.
    Healthy,
    /// The certificate expired and the CA could not be reached to renew it;
    /// the agent keeps trying.
    Unhealthy(String),
    /// Renewal failed for good (revoked, disabled, token spent): the agent
    /// stopped trying and a human must act.
    Failed(String),
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Talking to the CA failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No usable certificate and no bootstrap token to enroll with.
    #[error("no certificate to renew and no bootstrap token to enroll with")]
    NoToken,
    /// The certificate directory could not be read or written.
    #[error("{0}")]
    Files(#[from] std::io::Error),
    /// A one-shot renewal did not complete; running it again retries with
    /// the same key.
    #[error("the renewal did not complete: {0}")]
    Retry(String),
    /// A one-shot renewal was refused for good.
    #[error("{0}")]
    Refused(String),
}

/// One certificate of the agent, with its key.
pub struct Identity {
    /// The agent's identity.
    pub spiffe_id: AgentId,
    /// The instance id, kept across renewals.
    pub instance_id: InstanceId,
    /// The certificate's serial.
    pub serial: Serial,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// When this agent got the certificate (its notBefore when read back
    /// from disk): the start of the lifetime renewal is scheduled on, since
    /// the CA backdates notBefore for clock skew.
    pub received_at: OffsetDateTime,
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The chain as PEM.
    pub chain_pem: String,
    key_pem: String,
    certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id)
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Identity {
    fn new(issued: &IssuedCertificate, key: &PrivateKey) -> Result<Self, ClientError> {
        let chain = check_issued(issued, key)?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let signing = provider.key_provider.load_private_key(key.der())?;
        Ok(Self {
            spiffe_id: issued.spiffe_id.clone(),
            instance_id: issued.instance_id.clone(),
            serial: issued.serial.clone(),
            not_before: issued.not_before,
            not_after: issued.not_after,
            received_at: OffsetDateTime::now_utc().clamp(issued.not_before, issued.not_after),
            certified: Arc::new(CertifiedKey::new(chain.clone(), signing)),
            chain,
            chain_pem: issued.certificate_chain.clone(),
            key_pem: key.to_pem(),
        })
    }

    /// From what a certificate directory holds.
    /// An identity from its chain (leaf first) and key, as PEM: what an
    /// agent directory holds.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, ClientError> {
        let key = PrivateKey::from_pem(key_pem)?;
        let chain = parse_chain(chain_pem)?;
        use x509_parser::prelude::FromDer;
        let (_, leaf) = x509_parser::certificate::X509Certificate::from_der(&chain[0])
            .map_err(|e| ClientError::Certificate(e.to_string()))?;
        let uri = crate::identity::x509::uri_sans(&leaf)
            .ok()
            .and_then(|uris| uris.first().map(|u| u.to_string()))
            .ok_or_else(|| {
                ClientError::Certificate("the stored certificate has no URI SAN".into())
            })?;
        let instance = crate::identity::x509::instance_id(&leaf).ok_or_else(|| {
            ClientError::Certificate("the stored certificate has no instance id".into())
        })?;
        let issued = IssuedCertificate {
            spiffe_id: AgentId::parse(&uri).map_err(|e| ClientError::Certificate(e.to_string()))?,
            instance_id: instance,
            serial: Serial::from_bytes(leaf.raw_serial())
                .map_err(|e| ClientError::Certificate(e.to_string()))?,
            not_before: leaf.validity().not_before.to_datetime(),
            not_after: leaf.validity().not_after.to_datetime(),
            certificate_chain: chain_pem.to_owned(),
        };
        let mut identity = Self::new(&issued, &key)?;
        identity.received_at = identity.not_before;
        Ok(identity)
    }

    fn key(&self) -> Result<PrivateKey, ClientError> {
        PrivateKey::from_pem(&self.key_pem)
    }
}

struct Shared {
    config: AgentConfig,
    dir: Option<AgentDir>,
    current: ArcSwap<Identity>,
    bundle: ArcSwap<TrustBundle>,
    rotations: watch::Sender<Arc<Identity>>,
    health: watch::Sender<Health>,
    /// The renewal in progress when there is no directory to journal it in.
    pending: Mutex<Option<Pending>>,
    /// Wakes the renewal loop before its time.
    renew_soon: tokio::sync::Notify,
}

/// A running agent.
pub struct Agent {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    _lock: Option<DirLock>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(w) = &self.watcher {
            w.abort();
        }
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("current", &self.current())
            .finish()
    }
}

impl Agent {
    /// Gets a certificate (from the directory if it holds a valid one, by
    /// enrolling otherwise) and starts renewing it. Needs a tokio runtime.
    pub async fn start(config: AgentConfig) -> Result<Self, AgentError> {
        let dir = config.dir.clone().map(AgentDir::new);
        let lock = dir.as_ref().map(AgentDir::lock).transpose()?;
        let now = OffsetDateTime::now_utc();
        let stored = match &dir {
            Some(d) => d.load()?,
            None => None,
        };
        let from_disk = stored.and_then(|s| {
            let identity = Identity::from_pem(&s.chain_pem, &s.key_pem).ok()?;
            let bundle = TrustBundle::from_pem(s.bundle_pem.as_bytes()).ok()?;
            (identity.not_after > now).then_some((identity, bundle))
        });
        let (identity, bundle) = match from_disk {
            Some(found) => found,
            None => {
                let token = config.token.as_deref().ok_or(AgentError::NoToken)?;
                let client = CaClient::new(&config.ca_url, config.trust.clone(), None)?;
                let bundle = client.bundle().await?;
                let identity = enroll(&client, token, config.key_algorithm).await?;
                if let Some(d) = &dir {
                    d.install(
                        &identity.chain_pem,
                        &identity.key_pem,
                        &bundle.to_pem(),
                        now,
                    )?;
                    d.clear_pending()?;
                }
                (identity, bundle)
            }
        };
        let identity = Arc::new(identity);
        tracing::info!(id = %identity.spiffe_id, serial = %identity.serial, not_after = %crate::rfc3339(identity.not_after), "agent identity ready");
        let shared = Arc::new(Shared {
            config,
            dir,
            current: ArcSwap::new(identity.clone()),
            bundle: ArcSwap::from_pointee(bundle),
            rotations: watch::Sender::new(identity),
            health: watch::Sender::new(Health::Healthy),
            pending: Mutex::new(None),
            renew_soon: tokio::sync::Notify::new(),
        });
        let task = tokio::spawn(run(shared.clone()));
        let watcher = shared
            .config
            .follow_withdrawals
            .then(|| tokio::spawn(withdrawals::watch(shared.clone())));
        Ok(Self {
            shared,
            task,
            watcher,
            _lock: lock,
        })
    }

    /// Renews the certificate that `config.dir` holds, once, now (what the
    /// one-shot `agentca renew` does), with the same journal as the runtime:
    /// run again after an interruption, it completes the same renewal.
    pub async fn renew_now(config: AgentConfig) -> Result<Arc<Identity>, AgentError> {
        let dir = AgentDir::new(
            config
                .dir
                .clone()
                .ok_or_else(|| AgentError::Refused("no directory to renew".into()))?,
        );
        let stored = dir.load()?.ok_or_else(|| {
            AgentError::Refused(format!("{} holds no certificate", dir.path().display()))
        })?;
        let identity = Arc::new(Identity::from_pem(&stored.chain_pem, &stored.key_pem)?);
        let bundle =
            TrustBundle::from_pem(stored.bundle_pem.as_bytes()).map_err(ClientError::from)?;
        let shared = Shared {
            config,
            dir: Some(dir),
            current: ArcSwap::new(identity.clone()),
            bundle: ArcSwap::from_pointee(bundle),
            rotations: watch::Sender::new(identity.clone()),
            health: watch::Sender::new(Health::Healthy),
            pending: Mutex::new(None),
            renew_soon: tokio::sync::Notify::new(),
        };
        match renew_once(&shared, &identity).await {
            Step::Renewed(new) => Ok(Arc::new(*new)),
            Step::Retry { reason, .. } => Err(AgentError::Retry(reason)),
            Step::Reenroll(why) | Step::Fatal(why) => Err(AgentError::Refused(why)),
        }
    }

    /// Renews now rather than at the scheduled time: for example when a
    /// service refused the agent with `scope_withdrawn` (its registration
    /// changed since the certificate was issued).
    pub fn renew_soon(&self) {
        self.shared.renew_soon.notify_one();
    }

    /// The current certificate.
    pub fn current(&self) -> Arc<Identity> {
        self.shared.current.load_full()
    }

    /// The agent's identity.
    pub fn id(&self) -> AgentId {
        self.current().spiffe_id.clone()
    }

    /// The CA's trust bundle.
    pub fn bundle(&self) -> TrustBundle {
        (**self.shared.bundle.load()).clone()
    }

    /// Fires with the new certificate on every rotation.
    pub fn rotations(&self) -> watch::Receiver<Arc<Identity>> {
        self.shared.rotations.subscribe()
    }

    /// The agent's health, updated as it changes.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.shared.health.subscribe()
    }

    /// A rustls client configuration that presents the newest certificate
    /// on every handshake and verifies servers with `verifier` (for
    /// example an [`agentca::verify::Verifier`](crate::verify::Verifier)).
    pub fn client_config(
        &self,
        verifier: Arc<dyn ServerCertVerifier>,
    ) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(Newest(self.shared.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A rustls server configuration that presents the newest certificate
    /// on every handshake and verifies clients with `verifier`.
    pub fn server_config(
        &self,
        verifier: Arc<dyn ClientCertVerifier>,
    ) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(Newest(self.shared.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Resolves the newest certificate, for both sides of a handshake.
struct Newest(Arc<Shared>);

impl std::fmt::Debug for Newest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Newest")
    }
}

impl ResolvesClientCert for Newest {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for Newest {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().certified.clone())
    }
}
