//! The lifecycle of an issued certificate: live from issuance until it
//! expires or is revoked; renewed at most once (a retry with the same key
//! gets the same answer, another key is a clone); pruned after the
//! retention window.
//!
//! Pure functions of a [`CertRecord`] and the time: nothing here reads or
//! writes the store.

use time::OffsetDateTime;

use super::records::{CertRecord, Renewal};

/// Why a certificate may not be renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertRefusal {
    /// Its validity ended.
    #[error("the certificate has expired")]
    Expired,
    /// It is revoked.
    #[error("the certificate is revoked")]
    Revoked,
    /// The renewal asks for the key the certificate already has.
    #[error("the renewal reuses the certificate's key")]
    KeyReused,
}

/// Whether `cert` counts at `now`: not revoked, and `now` strictly before
/// its notAfter.
pub fn is_live(cert: &CertRecord, now: OffsetDateTime) -> bool {
    cert.revoked.is_none() && now < cert.not_after
}

/// Whether `cert` may be presented for renewal at `now`: it has not
/// expired (`now` strictly before notAfter), then it is not revoked.
pub fn renewable(cert: &CertRecord, now: OffsetDateTime) -> Result<(), CertRefusal> {
    if now >= cert.not_after {
        return Err(CertRefusal::Expired);
    }
    if cert.revoked.is_some() {
        return Err(CertRefusal::Revoked);
    }
    Ok(())
}

/// What a renewal of a certificate asking for a new key amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewalVerdict<'a> {
    /// Its first renewal: issue.
    First,
    /// The renewal already made, asked again for the same key (an agent
    /// retrying after a lost answer): answer with what it issued.
    Retry(&'a Renewal),
    /// Renewed before for another key: someone else holds a copy of the
    /// certificate and its key. Refuse and raise a clone alert.
    Clone(&'a Renewal),
}

/// Judges a renewal of `cert` for the key whose SubjectPublicKeyInfo has
/// SHA-256 `requested_key` (hex). Each certificate renews once, each time
/// with a new key.
pub fn renewal<'a>(
    cert: &'a CertRecord,
    requested_key: &str,
) -> Result<RenewalVerdict<'a>, CertRefusal> {
    if requested_key == cert.key_sha256 {
        return Err(CertRefusal::KeyReused);
    }
    Ok(match &cert.renewed_by {
        None => RenewalVerdict::First,
        Some(done) => again(done, requested_key),
    })
}

/// Judges a renewal of a certificate already renewed by `done`, asking for
/// the key with SHA-256 `requested_key`: the same key is a retry, another
/// is a clone.
pub fn again<'a>(done: &'a Renewal, requested_key: &str) -> RenewalVerdict<'a> {
    if done.key_sha256 == requested_key {
        RenewalVerdict::Retry(done)
    } else {
        RenewalVerdict::Clone(done)
    }
}

/// Whether a revocation at `at` revokes `cert`: a certificate named by its
/// serial is revoked whatever its validity (an admin may want an expired
/// one on record); one reached through its instance or agent only while it
/// is live. A revoked certificate stays revoked with its first reason.
pub fn revoked_by(cert: &CertRecord, at: OffsetDateTime, named_by_serial: bool) -> bool {
    cert.revoked.is_none() && (named_by_serial || at < cert.not_after)
}

#[cfg(test)]
mod tests {
    use agentca::wire::Serial;
    use time::Duration;

    use super::*;
    use crate::state::records::Revocation;
    use crate::state::tests::t0;

    /// A live certificate whose key is `old`.
    fn cert() -> CertRecord {
        let mut c = crate::state::tests::cert("acme/prod/bot", 1);
        c.key_sha256 = "old".into();
        c
    }

    fn revoked(mut c: CertRecord) -> CertRecord {
        c.revoked = Some(Revocation {
            at: t0(),
            reason: 1,
            seq: 1,
        });
        c
    }

    #[test]
    fn a_certificate_is_live_until_the_second_before_its_not_after() {
        let c = cert();
        let end = c.not_after;
        assert!(is_live(&c, end - Duration::seconds(1)));
        assert!(!is_live(&c, end));
        assert!(!is_live(&c, end + Duration::seconds(1)));
        assert!(!is_live(&revoked(cert()), t0()));
    }

    #[test]
    fn a_certificate_renews_until_the_second_before_it_expires() {
        let c = cert();
        let end = c.not_after;
        assert_eq!(renewable(&c, end - Duration::seconds(1)), Ok(()));
        assert_eq!(renewable(&c, end), Err(CertRefusal::Expired));
        assert_eq!(
            renewable(&c, end + Duration::seconds(1)),
            Err(CertRefusal::Expired)
        );
    }

    #[test]
    fn a_revoked_certificate_does_not_renew_and_expiry_is_said_first() {
        let r = revoked(cert());
        assert_eq!(renewable(&r, t0()), Err(CertRefusal::Revoked));
        assert_eq!(renewable(&r, r.not_after), Err(CertRefusal::Expired));
    }

    #[test]
    fn a_second_renewal_is_a_retry_for_the_same_key_and_a_clone_for_another() {
        let mut c = cert();
        assert_eq!(renewal(&c, "new"), Ok(RenewalVerdict::First));
        assert_eq!(renewal(&c, "old"), Err(CertRefusal::KeyReused));
        c.renewed_by = Some(Renewal {
            serial: Serial::from_bytes(&[0x40, 2]).unwrap(),
            key_sha256: "new".into(),
            at: t0(),
        });
        let done = c.renewed_by.as_ref().unwrap();
        assert_eq!(renewal(&c, "new"), Ok(RenewalVerdict::Retry(done)));
        assert_eq!(renewal(&c, "thief"), Ok(RenewalVerdict::Clone(done)));
        assert_eq!(renewal(&c, "old"), Err(CertRefusal::KeyReused));
    }

    #[test]
    fn revocation_reaches_live_certificates_and_any_named_by_serial() {
        let c = cert();
        let end = c.not_after;
        assert!(revoked_by(&c, end - Duration::seconds(1), false));
        assert!(!revoked_by(&c, end, false));
        assert!(!revoked_by(&c, end + Duration::seconds(1), false));
        assert!(revoked_by(&c, end + Duration::seconds(1), true));
        let r = revoked(cert());
        assert!(
            !revoked_by(&r, t0(), true),
            "revoked once, with its first reason"
        );
    }
}
