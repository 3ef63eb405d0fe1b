//! The CRLs: signed here, published to the store, and the newest published
//! one served.
//!
//! Each replica signs the intermediate's CRL after revocations and before
//! it gets old, with a number from one store sequence, and publishes it
//! with how far into the feed it reaches; the store keeps it only if it
//! supersedes the published one ([`crate::state::crl::supersedes`]). What
//! is served is the newest published CRL, read from the store on each
//! request (the last one known while the store is unreachable): whichever
//! replica a client asks, CRL numbers only grow.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{Issuer, KeyPair};
use time::{Duration, OffsetDateTime};

use super::crl::{self, SignedCrl};
use super::{RevocationConfig, RevocationError, Revocations, CRL_NUMBER, ROOT_CRL_NUMBER};
use crate::issuance::issuer::IssuingCa;
use crate::state::records::{CrlIssuer, PublishedCrl, RevocationEvent};
use crate::state::{Applied, Change, Ledger, Records};
use crate::store::StoreError;

/// The root CA's key, when it is available to re-sign the root's CRL.
pub struct RootSigner {
    issuer: Issuer<'static, KeyPair>,
    /// Where the root's CRL is also written (DER), for those who read it
    /// from the data directory.
    path: Option<PathBuf>,
}

impl RootSigner {
    /// The root signer for the root certificate `root_der` and its key; the
    /// root CRL is also written to `path`, if given.
    pub fn new(
        root_der: &rustls_pki_types::CertificateDer<'_>,
        key: KeyPair,
        path: Option<PathBuf>,
    ) -> Result<Self, String> {
        let issuer = Issuer::from_ca_cert_der(root_der, key)
            .map_err(|e| format!("the root is not usable: {e}"))?;
        Ok(Self { issuer, path })
    }
}

/// Where the root's CRL comes from.
pub enum RootCrlSource {
    /// Signed (and re-signed before it expires) with the root key.
    Signer(Box<RootSigner>),
    /// Read from a file signed where the root key is kept offline.
    File(PathBuf),
    /// No root CRL.
    None,
}

impl Revocations {
    /// The intermediate's CRL to serve: the newest published one.
    pub fn crl(&self) -> Arc<SignedCrl> {
        let local = self.crl.load_full();
        // Only another replica can have published a newer one; and while
        // the store fails, the last one known is served without waiting.
        if !self.shared || self.store_failing() {
            return local;
        }
        match self.records.published_crl(CrlIssuer::Intermediate) {
            Ok(Some(published)) if published.number > local.number => match self.adopt(published) {
                Ok(newer) => newer,
                Err(e) => {
                    tracing::error!(error = %e, "the published CRL does not parse");
                    local
                }
            },
            Ok(_) => local,
            Err(e) => {
                // The store is unreachable: the last CRL known stays valid
                // until its nextUpdate, which verifiers check.
                tracing::debug!(error = %e, "serving the last CRL known");
                local
            }
        }
    }

    /// Serves `published` from now on if it is newer than what is served;
    /// returns what is served.
    pub(super) fn adopt(&self, published: PublishedCrl) -> Result<Arc<SignedCrl>, RevocationError> {
        let covers = published.covers;
        let crl = Arc::new(SignedCrl::from_der(published.der).map_err(RevocationError::Published)?);
        let served = self.crl.rcu(|current| {
            if crl.number > current.number {
                crl.clone()
            } else {
                current.clone()
            }
        });
        if crl.number > served.number {
            self.crl_covers.send_if_modified(|c| {
                let newer = covers > *c;
                *c = (*c).max(covers);
                newer
            });
            Ok(crl)
        } else {
            Ok(served)
        }
    }

    /// Signs a CRL of the feed as it is, publishes it, and serves the newest.
    pub(super) async fn rebuild_crl(&self, now: OffsetDateTime) -> Result<(), RevocationError> {
        let covers = *self.latest.borrow();
        let number = bump(&self.writer, CRL_NUMBER).await?;
        let signed = {
            let feed = self.feed.read().unwrap_or_else(|p| p.into_inner());
            sign_crl(&self.ca, &feed, number, now, self.config.crl_validity)?
        };
        tracing::debug!(
            number = signed.number,
            entries = signed.entries,
            "CRL signed"
        );
        let (served, covers) =
            publish(&self.writer, CrlIssuer::Intermediate, signed, covers).await?;
        self.crl.rcu(|current| {
            if served.number > current.number {
                Arc::new(served.clone())
            } else {
                current.clone()
            }
        });
        self.crl_covers.send_if_modified(|c| {
            let newer = covers > *c;
            *c = (*c).max(covers);
            newer
        });
        Ok(())
    }

    /// Rebuilds the CRL after revocations and before it gets old; re-signs
    /// the root CRL before it expires.
    pub(super) async fn keep_crls_current(self: Arc<Self>) {
        let mut failures: u32 = 0;
        loop {
            let now = OffsetDateTime::now_utc();
            let mut next = crl::refresh_at(&self.crl.load());
            if self.root.is_some() {
                if let Some(root_crl) = self.root_crl() {
                    next = next.min(crl::refresh_at(&root_crl));
                }
            }
            let wait = (next - now).max(Duration::ZERO).unsigned_abs();
            tokio::select! {
                () = self.dirty.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            let now = OffsetDateTime::now_utc();
            if let Err(e) = self.rebuild_crl(now).await {
                // Retried every second: said once, then once a minute.
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::error!(error = %e, failures, "could not rebuild the CRL; retrying every second");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                self.dirty.notify_one();
                continue;
            }
            if failures > 0 {
                tracing::info!(after = failures, "the CRL is rebuilt again");
                failures = 0;
            }
            if let (Some(signer), Some(root_crl)) = (&self.root, self.root_crl()) {
                if now >= crl::refresh_at(&root_crl) {
                    match sign_root_crl(signer, &self.writer, &self.config, now).await {
                        Ok(fresh) => self.root_crl.store(Some(Arc::new(fresh))),
                        Err(e) => tracing::error!(error = %e, "could not re-sign the root CRL"),
                    }
                }
            }
        }
    }
}

pub(super) async fn bump(writer: &Ledger, name: &'static str) -> Result<u64, StoreError> {
    match writer.apply(Change::BumpCounter(name.to_owned())).await? {
        Ok(Applied::Counter(n)) => Ok(n),
        other => Err(StoreError::Corrupt {
            table: "meta",
            detail: format!("bumping {name} gave {other:?}"),
        }),
    }
}

/// Publishes `signed`, which lists every revocation up to `covers`; returns
/// the CRL to serve with what it covers: `signed`, or a newer one another
/// replica published first.
pub(super) async fn publish(
    writer: &Ledger,
    issuer: CrlIssuer,
    signed: SignedCrl,
    covers: u64,
) -> Result<(SignedCrl, u64), RevocationError> {
    let change = Change::PublishCrl {
        issuer,
        crl: PublishedCrl {
            number: signed.number,
            covers,
            der: signed.der.clone(),
        },
    };
    match writer.apply(change).await? {
        Ok(Applied::Crl(Some(p))) if p.number == signed.number => Ok((signed, covers)),
        Ok(Applied::Crl(Some(p))) => Ok((
            SignedCrl::from_der(p.der).map_err(RevocationError::Published)?,
            p.covers,
        )),
        other => Err(StoreError::Corrupt {
            table: "meta",
            detail: format!("publishing a CRL gave {other:?}"),
        }
        .into()),
    }
}

/// The CRL numbered `number` of the feed's events whose certificates have
/// not expired at `now`.
pub(super) fn sign_crl(
    ca: &IssuingCa,
    feed: &BTreeMap<u64, RevocationEvent>,
    number: u64,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<SignedCrl, RevocationError> {
    let entries: Vec<crl::Entry> = feed
        .values()
        .filter(|e| e.not_after > now)
        .map(|e| crl::Entry {
            serial: e.serial.clone(),
            revoked_at: e.revoked_at,
            reason: e.reason,
        })
        .collect();
    let urls = &ca.distribution().crl;
    crl::sign(ca.issuer(), &entries, number, now, validity, Some(urls))
        .map_err(|e| RevocationError::Sign(e.to_string()))
}

/// The root CRL: no entries, since agentca does not revoke its intermediate
/// while running (rotating it means a new `init`). Published for every
/// replica, and written to the signer's file if it has one.
async fn sign_root_crl(
    signer: &RootSigner,
    writer: &Ledger,
    config: &RevocationConfig,
    now: OffsetDateTime,
) -> Result<SignedCrl, RevocationError> {
    let number = bump(writer, ROOT_CRL_NUMBER).await?;
    let crl = crl::sign(
        &signer.issuer,
        &[],
        number,
        now,
        config.root_crl_validity,
        None,
    )
    .map_err(|e| RevocationError::Sign(e.to_string()))?;
    let (crl, _) = publish(writer, CrlIssuer::Root, crl, 0).await?;
    if let Some(path) = &signer.path {
        crate::datadir::write_file(path, &crl.der, false).map_err(|e| {
            RevocationError::RootCrl {
                path: path.clone(),
                detail: e.to_string(),
            }
        })?;
    }
    let next_update = agentca::rfc3339(crl.next_update);
    tracing::info!(number = crl.number, %next_update, "root CRL signed");
    Ok(crl)
}

/// The root CRL to start with: the published one, or the signer's file,
/// while fresh; else a new one.
pub(super) async fn load_or_sign_root_crl(
    signer: &RootSigner,
    records: &Records,
    writer: &Ledger,
    config: &RevocationConfig,
    now: OffsetDateTime,
) -> Result<SignedCrl, RevocationError> {
    let published = match records.published_crl(CrlIssuer::Root)? {
        Some(p) => Some(SignedCrl::from_der(p.der).map_err(RevocationError::Published)?),
        None => None,
    };
    let existing = match (published, &signer.path) {
        (Some(crl), _) => Some(crl),
        (None, Some(path)) => read_root_crl(path)?,
        (None, None) => None,
    };
    if let Some(existing) = existing {
        if now < crl::refresh_at(&existing) {
            return Ok(existing);
        }
    }
    sign_root_crl(signer, writer, config, now).await
}

/// Reads a root CRL written by an earlier run (or signed offline).
pub(super) fn read_root_crl(path: &PathBuf) -> Result<Option<SignedCrl>, RevocationError> {
    let der = match std::fs::read(path) {
        Ok(der) => der,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RevocationError::RootCrl {
                path: path.clone(),
                detail: e.to_string(),
            })
        }
    };
    SignedCrl::from_der(der)
        .map(Some)
        .map_err(|detail| RevocationError::RootCrl {
            path: path.clone(),
            detail,
        })
}
