//! Certificates that break each rule, and the error each gets.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::identity::IdError;

const TD: &str = "example.org";
const GOOD_ID: &str = "spiffe://example.org/tenant/acme/env/prod/agent/billing-bot";
const INSTANCE: &str = "0123456789abcdef0123456789abcdef";

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

struct Ca {
    root_der: CertificateDer<'static>,
    root: Issuer<'static, KeyPair>,
    intermediate_der: CertificateDer<'static>,
    intermediate: Issuer<'static, KeyPair>,
}

fn ca_params(cn: &str, path_len: u8) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now() - Duration::days(1);
    p.not_after = now() + Duration::days(30);
    p
}

fn ca(name: &str) -> Ca {
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params(&format!("{name} root"), 1);
    let root_der = root_params.self_signed(&root_key).unwrap().der().clone();
    let root = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate().unwrap();
    let int_params = ca_params(&format!("{name} intermediate"), 0);
    let intermediate_der = int_params.signed_by(&int_key, &root).unwrap().der().clone();
    let intermediate = Issuer::new(int_params, int_key);
    Ca {
        root_der,
        root,
        intermediate_der,
        intermediate,
    }
}

/// The agentca leaf profile.
fn leaf_params(uri: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.serial_number = Some(SerialNumber::from_slice(&[0x41, 1, 2, 3, 4, 5, 6, 7]));
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "billing-bot");
    p.distinguished_name.push(
        DnType::CustomDnType(vec![2, 5, 4, 5]),
        DnValue::PrintableString(INSTANCE.try_into().unwrap()),
    );
    p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = now() - Duration::seconds(30);
    p.not_after = now() + Duration::minutes(5);
    p
}

/// A chain (leaf, intermediate) for `params`, signed by `ca`'s intermediate.
fn chain(ca: &Ca, params: &CertificateParams) -> Vec<CertificateDer<'static>> {
    let key = KeyPair::generate().unwrap();
    let leaf = params
        .signed_by(&key, &ca.intermediate)
        .unwrap()
        .der()
        .clone();
    vec![leaf, ca.intermediate_der.clone()]
}

fn verifier(ca: &Ca, configure: impl FnOnce(VerifierBuilder) -> VerifierBuilder) -> Arc<Verifier> {
    let bundle = TrustBundle::from_der(vec![ca.root_der.clone()]).unwrap();
    let cache = RevocationCache::new();
    cache.apply_feed(&[], 0, now());
    configure(Verifier::builder(bundle, TrustDomain::new(TD).unwrap()).revocation(cache))
        .build()
        .unwrap()
}

fn refused(ca: &Ca, params: CertificateParams) -> VerifyError {
    let v = verifier(ca, |b| b);
    v.verify_peer(&chain(ca, &params), Usage::Client, now())
        .unwrap_err()
}

#[test]
fn a_valid_agent_certificate_is_accepted_with_its_identity() {
    let ca = ca("ours");
    let v = verifier(&ca, |b| b);
    let peer = v
        .verify_peer(&chain(&ca, &leaf_params(GOOD_ID)), Usage::Client, now())
        .unwrap();
    assert_eq!(peer.spiffe_id.to_string(), GOOD_ID);
    assert_eq!(
        peer.instance_id.as_ref().map(|i| i.as_str()),
        Some(INSTANCE)
    );
    assert_eq!(peer.serial.to_string(), "4101020304050607");
    assert_eq!(peer.not_after, now() + Duration::minutes(5));
    // The same certificate, verified as a server's.
    v.verify_peer(&chain(&ca, &leaf_params(GOOD_ID)), Usage::Server, now())
        .unwrap();
}

#[test]
fn an_extra_dns_san_is_accepted() {
    let ca = ca("ours");
    let mut p = leaf_params(GOOD_ID);
    p.subject_alt_names
        .push(SanType::DnsName("billing.internal".try_into().unwrap()));
    verifier(&ca, |b| b)
        .verify_peer(&chain(&ca, &p), Usage::Client, now())
        .unwrap();
}

#[test]
fn a_leaf_signed_by_the_root_directly_is_accepted() {
    let ca = ca("ours");
    let key = KeyPair::generate().unwrap();
    let leaf = leaf_params(GOOD_ID)
        .signed_by(&key, &ca.root)
        .unwrap()
        .der()
        .clone();
    verifier(&ca, |b| b)
        .verify_peer(&[leaf], Usage::Client, now())
        .unwrap();
}

#[test]
fn two_uri_sans_are_refused() {
    let ca = ca("ours");
    let mut p = leaf_params(GOOD_ID);
    p.subject_alt_names.push(SanType::URI(
        "spiffe://example.org/tenant/acme/env/prod/agent/other"
            .try_into()
            .unwrap(),
    ));
    assert_eq!(refused(&ca, p), VerifyError::MultipleUriSans(2));
}

#[test]
fn no_uri_san_is_refused() {
    let ca = ca("ours");
    let mut p = leaf_params(GOOD_ID);
    p.subject_alt_names = vec![SanType::DnsName("billing.internal".try_into().unwrap())];
    assert_eq!(refused(&ca, p), VerifyError::NoUriSan);
}

#[test]
fn a_non_spiffe_uri_is_refused() {
    let ca = ca("ours");
    let uri = "https://example.org/tenant/acme/env/prod/agent/billing-bot";
    assert_eq!(
        refused(&ca, leaf_params(uri)),
        VerifyError::NotSpiffe(uri.into())
    );
}

#[test]
fn a_foreign_trust_domain_signed_by_our_ca_is_refused() {
    let ca = ca("ours");
    assert_eq!(
        refused(
            &ca,
            leaf_params("spiffe://evil.org/tenant/acme/env/prod/agent/billing-bot")
        ),
        VerifyError::ForeignTrustDomain {
            expected: TD.into(),
            found: "evil.org".into()
        }
    );
}

#[test]
fn a_wrong_path_shape_is_refused() {
    let ca = ca("ours");
    assert_eq!(
        refused(
            &ca,
            leaf_params("spiffe://example.org/workload/billing-bot")
        ),
        VerifyError::NotAnAgentId(IdError::WrongShape)
    );
    assert_eq!(
        refused(
            &ca,
            leaf_params("spiffe://example.org/tenant/Acme/env/prod/agent/billing-bot")
        ),
        VerifyError::NotAnAgentId(IdError::Uppercase(crate::identity::Part::Tenant))
    );
}

#[test]
fn a_leaf_that_is_a_ca_is_refused() {
    let ca = ca("ours");
    let mut p = leaf_params(GOOD_ID);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    assert_eq!(refused(&ca, p), VerifyError::LeafIsCa);
}

#[test]
fn a_leaf_that_may_sign_certificates_or_crls_is_refused() {
    let ca = ca("ours");
    let mut p = leaf_params(GOOD_ID);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    assert_eq!(
        refused(&ca, p),
        VerifyError::ForbiddenKeyUsage("keyCertSign")
    );
    let mut p = leaf_params(GOOD_ID);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    assert_eq!(refused(&ca, p), VerifyError::ForbiddenKeyUsage("cRLSign"));
    let mut p = leaf_params(GOOD_ID);
    p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    assert_eq!(refused(&ca, p), VerifyError::MissingDigitalSignature);
}

#[test]
fn a_leaf_without_the_needed_extended_key_usage_is_refused() {
    let ca = ca("ours");
    let mut p = leaf_params(GOOD_ID);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    assert_eq!(
        refused(&ca, p.clone()),
        VerifyError::MissingExtendedKeyUsage(Usage::Client)
    );
    verifier(&ca, |b| b)
        .verify_peer(&chain(&ca, &p), Usage::Server, now())
        .unwrap();
    let mut p = leaf_params(GOOD_ID);
    p.extended_key_usages = vec![];
    assert_eq!(
        refused(&ca, p),
        VerifyError::MissingExtendedKeyUsage(Usage::Client)
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let ca = ca("ours");
    let mut p = leaf_params(GOOD_ID);
    p.not_before = now() - Duration::hours(2);
    p.not_after = now() - Duration::hours(1);
    assert_eq!(
        refused(&ca, p),
        VerifyError::Expired(now() - Duration::hours(1))
    );
    let mut p = leaf_params(GOOD_ID);
    p.not_before = now() + Duration::hours(1);
    p.not_after = now() + Duration::hours(2);
    assert_eq!(
        refused(&ca, p),
        VerifyError::NotYetValid(now() + Duration::hours(1))
    );
}

#[test]
fn an_untrusted_ca_with_the_same_trust_domain_is_refused() {
    let ours = ca("ours");
    let impostor = ca("ours");
    let v = verifier(&ours, |b| b);
    let err = v
        .verify_peer(
            &chain(&impostor, &leaf_params(GOOD_ID)),
            Usage::Client,
            now(),
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedChain(_)), "{err:?}");
    // Nor does presenting our intermediate help.
    let mut forged = chain(&impostor, &leaf_params(GOOD_ID));
    forged[1] = ours.intermediate_der.clone();
    let err = v.verify_peer(&forged, Usage::Client, now()).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedChain(_)), "{err:?}");
}

#[test]
fn an_empty_chain_or_garbage_is_refused() {
    let ca = ca("ours");
    let v = verifier(&ca, |b| b);
    assert_eq!(
        v.verify_peer(&[], Usage::Client, now()).unwrap_err(),
        VerifyError::NoCertificate
    );
    let garbage = CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]);
    assert!(matches!(
        v.verify_peer(&[garbage], Usage::Client, now()),
        Err(VerifyError::Malformed(_))
    ));
}

#[test]
fn a_revoked_certificate_is_refused() {
    let ca = ca("ours");
    let cache = RevocationCache::new();
    cache.apply_feed(&[], 0, now());
    let bundle = TrustBundle::from_der(vec![ca.root_der.clone()]).unwrap();
    let v = Verifier::builder(bundle, TrustDomain::new(TD).unwrap())
        .revocation(cache.clone())
        .build()
        .unwrap();
    let c = chain(&ca, &leaf_params(GOOD_ID));
    let peer = v.verify_peer(&c, Usage::Client, now()).unwrap();
    cache.insert(peer.serial.clone(), peer.not_after);
    assert_eq!(
        v.verify_peer(&c, Usage::Client, now()).unwrap_err(),
        VerifyError::Revoked(peer.serial.clone())
    );
    assert_eq!(
        v.check_current(&peer, now()).unwrap_err(),
        VerifyError::Revoked(peer.serial)
    );
}

#[test]
fn stale_revocation_data_fails_closed_unless_told_otherwise() {
    let ca = ca("ours");
    let bundle = TrustBundle::from_der(vec![ca.root_der.clone()]).unwrap();
    let cache = RevocationCache::new();
    let c = chain(&ca, &leaf_params(GOOD_ID));
    let closed = Verifier::builder(bundle.clone(), TrustDomain::new(TD).unwrap())
        .revocation(cache.clone())
        .max_staleness(Duration::seconds(30))
        .build()
        .unwrap();
    let open = Verifier::builder(bundle, TrustDomain::new(TD).unwrap())
        .revocation(cache.clone())
        .max_staleness(Duration::seconds(30))
        .fail_open_when_stale()
        .build()
        .unwrap();
    // Never synchronised.
    assert!(matches!(
        closed.verify_peer(&c, Usage::Client, now()),
        Err(VerifyError::RevocationStale(_))
    ));
    open.verify_peer(&c, Usage::Client, now()).unwrap();
    // Fresh, then older than the bound.
    cache.apply_feed(&[], 0, now() - Duration::seconds(10));
    closed.verify_peer(&c, Usage::Client, now()).unwrap();
    let later = now() + Duration::seconds(25);
    assert!(matches!(
        closed.verify_peer(&c, Usage::Client, later),
        Err(VerifyError::RevocationStale(_))
    ));
    open.verify_peer(&c, Usage::Client, later).unwrap();
}

#[test]
fn the_policy_limits_tenants_envs_and_agents() {
    let ca = ca("ours");
    let c = chain(&ca, &leaf_params(GOOD_ID));
    let accepts = |f: fn(VerifierBuilder) -> VerifierBuilder| {
        verifier(&ca, f).verify_peer(&c, Usage::Client, now())
    };
    accepts(|b| b.allow_tenant("acme")).unwrap();
    accepts(|b| {
        b.allow_tenant("other")
            .allow_tenant("acme")
            .allow_env("prod")
    })
    .unwrap();
    accepts(|b| b.allow_agent("billing-bot")).unwrap();
    accepts(|b| b.allow_agent_prefix("billing-")).unwrap();
    accepts(|b| b.require(|p| p.spiffe_id.env().as_str() == "prod")).unwrap();
    for deny in [
        (|b: VerifierBuilder| b.allow_tenant("other")) as fn(VerifierBuilder) -> VerifierBuilder,
        |b| b.allow_env("dev"),
        |b| b.allow_agent("billing"),
        |b| b.allow_agent_prefix("support-"),
        |b| b.require(|_| false),
        |b| {
            b.allow_tenant("acme")
                .require(|p| p.spiffe_id.agent().as_str() == "other")
        },
    ] {
        assert!(matches!(accepts(deny), Err(VerifyError::PolicyDenied(_))));
    }
}

#[test]
fn a_verifier_needs_a_revocation_source_or_an_explicit_opt_out() {
    let ca = ca("ours");
    let bundle = TrustBundle::from_der(vec![ca.root_der.clone()]).unwrap();
    let td = TrustDomain::new(TD).unwrap();
    assert!(matches!(
        Verifier::builder(bundle.clone(), td.clone()).build(),
        Err(BuildError::NoRevocationSource)
    ));
    assert!(matches!(
        Verifier::builder(bundle.clone(), td.clone())
            .allow_tenant("Acme")
            .without_revocation_checks()
            .build(),
        Err(BuildError::Policy(_))
    ));
    let v = Verifier::builder(bundle, td)
        .without_revocation_checks()
        .build()
        .unwrap();
    v.verify_peer(&chain(&ca, &leaf_params(GOOD_ID)), Usage::Client, now())
        .unwrap();
}

#[test]
fn the_rustls_verifiers_refuse_with_the_reason() {
    use rustls::server::danger::ClientCertVerifier;
    let ca = ca("ours");
    let v = verifier(&ca, |b| b.allow_tenant("other"));
    let c = chain(&ca, &leaf_params(GOOD_ID));
    let time =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(now().unix_timestamp() as u64));
    let err = v.verify_client_cert(&c[0], &c[1..], time).unwrap_err();
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            assert!(
                other
                    .to_string()
                    .contains("not allowed by this service's policy"),
                "{other}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut expired = leaf_params(GOOD_ID);
    expired.not_after = now() - Duration::seconds(1);
    expired.not_before = now() - Duration::hours(1);
    let c = chain(&ca, &expired);
    assert_eq!(
        v.verify_client_cert(&c[0], &c[1..], time).unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::Expired)
    );
}

#[test]
fn accept_takes_the_identity_a_full_handshake_verified_and_verifies_anything_else() {
    use rustls::server::danger::ClientCertVerifier;
    let ours = ca("ours");
    let cache = RevocationCache::new();
    cache.apply_feed(&[], 0, now());
    let bundle = TrustBundle::from_der(vec![ours.root_der.clone()]).unwrap();
    let v = Verifier::builder(bundle, TrustDomain::new(TD).unwrap())
        .revocation(cache.clone())
        .build()
        .unwrap();
    let time =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(now().unix_timestamp() as u64));
    let c = chain(&ours, &leaf_params(GOOD_ID));

    // Before any accept, a handshake keeps nothing: accept verifies all.
    v.verify_client_cert(&c[0], &c[1..], time).unwrap();
    let peer = v.peer_of_handshake(&c, now()).unwrap();
    assert_eq!(peer.spiffe_id.to_string(), GOOD_ID);

    // Once accept is in use, a handshake keeps the identity…
    v.verify_client_cert(&c[0], &c[1..], time).unwrap();
    let kept = v.handshaken.take(&c[0], std::time::Instant::now());
    assert_eq!(kept.as_ref(), Some(&peer));
    // …and accept takes it, once.
    v.verify_client_cert(&c[0], &c[1..], time).unwrap();
    assert_eq!(v.peer_of_handshake(&c, now()).unwrap(), peer);
    assert!(v
        .handshaken
        .take(&c[0], std::time::Instant::now())
        .is_none());

    // No handshake verified it (a resumed session): the whole chain is
    // verified, so a chain of another CA is refused.
    let theirs = ca("theirs");
    let foreign = chain(&theirs, &leaf_params(GOOD_ID));
    assert!(matches!(
        v.peer_of_handshake(&foreign, now()).unwrap_err(),
        VerifyError::UntrustedChain(_)
    ));
    assert_eq!(
        v.peer_of_handshake(&[], now()).unwrap_err(),
        VerifyError::NoCertificate
    );

    // Revoked between the handshake and accept: refused all the same.
    v.verify_client_cert(&c[0], &c[1..], time).unwrap();
    cache.insert(peer.serial.clone(), peer.not_after);
    assert_eq!(
        v.peer_of_handshake(&c, now()).unwrap_err(),
        VerifyError::Revoked(peer.serial)
    );
}

#[test]
fn the_cache_loads_a_crl_signed_by_the_intermediate_and_refuses_others() {
    use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams};
    let ca = ca("ours");
    let bundle = TrustBundle::from_der(vec![ca.root_der.clone()]).unwrap();
    let crl = |issuer: &Issuer<'_, KeyPair>, next: Duration| {
        CertificateRevocationListParams {
            this_update: now() - Duration::minutes(1),
            next_update: now() + next,
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[0x41, 9, 9]),
                revocation_time: now() - Duration::minutes(2),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(issuer)
        .unwrap()
        .der()
        .to_vec()
    };
    let cache = RevocationCache::new();
    assert_eq!(
        cache.load_crl(
            &crl(&ca.intermediate, Duration::minutes(4)),
            &ca.intermediate_der,
            &bundle,
            now()
        ),
        Ok(1)
    );
    assert!(cache.is_revoked(&Serial::from_bytes(&[0x41, 9, 9]).unwrap()));
    assert_eq!(cache.synced_at(), Some(now() - Duration::minutes(1)));

    // Expired CRL, untrusted issuer, another issuer, a changed signature.
    assert!(matches!(
        cache.load_crl(
            &crl(&ca.intermediate, Duration::seconds(-1)),
            &ca.intermediate_der,
            &bundle,
            now()
        ),
        Err(CrlError::NotCurrent(_))
    ));
    let other = self::ca("other");
    assert!(matches!(
        cache.load_crl(
            &crl(&other.intermediate, Duration::minutes(4)),
            &other.intermediate_der,
            &bundle,
            now()
        ),
        Err(CrlError::UntrustedIssuer(_))
    ));
    // Another CA's CRL, presented with our intermediate: another issuer.
    assert!(matches!(
        cache.load_crl(
            &crl(&other.intermediate, Duration::minutes(4)),
            &ca.intermediate_der,
            &bundle,
            now()
        ),
        Err(CrlError::UntrustedIssuer(_))
    ));
    let mut tampered = crl(&ca.intermediate, Duration::minutes(4));
    let n = tampered.len();
    tampered[n - 5] ^= 0x01;
    assert!(matches!(
        cache.load_crl(&tampered, &ca.intermediate_der, &bundle, now()),
        Err(CrlError::BadSignature)
    ));
}

#[test]
fn only_the_feed_with_its_scope_events_keeps_the_scope_state_fresh() {
    use crate::wire::{ScopeChange, ScopeEvent};
    let bound = Duration::seconds(60);
    let cache = RevocationCache::new();
    let serial = Serial::from_bytes(&[0x40, 1]).unwrap();
    let granted = ["pay".to_string()];
    // Revocations alone (an integrator's own loop, or a CRL): the scope
    // state is unknown, and a verifier refuses scope checks.
    cache.apply_feed(&[], 7, now());
    assert!(cache.staleness(now(), bound).is_none());
    assert!(cache.scopes_staleness(now(), bound).is_some());
    // The page's scope events: fresh, and a block applies.
    let block = ScopeEvent {
        seq: 8,
        at: now(),
        change: ScopeChange::Blocked {
            block: 8,
            scope: "pay".into(),
            serials: None,
            target: None,
        },
    };
    cache.apply_page(&[], std::slice::from_ref(&block), 8, now());
    assert!(cache.scopes_staleness(now(), bound).is_none());
    assert_eq!(
        cache.scope_usable(&serial, &granted, "pay"),
        Err(ScopeRefusal::Blocked)
    );
    // Lifted, then the same page read again (a retry): the lifted block
    // does not come back.
    let lifted = ScopeEvent {
        seq: 9,
        at: now(),
        change: ScopeChange::Unblocked { block: 8 },
    };
    cache.apply_page(&[], std::slice::from_ref(&lifted), 9, now());
    assert_eq!(cache.scope_usable(&serial, &granted, "pay"), Ok(()));
    // The block's page again, alone: it is behind the position, and stays
    // lifted.
    cache.apply_page(&[], std::slice::from_ref(&block), 8, now());
    assert_eq!(cache.scope_usable(&serial, &granted, "pay"), Ok(()));
    cache.apply_page(&[], &[block, lifted], 9, now());
    assert_eq!(cache.scope_usable(&serial, &granted, "pay"), Ok(()));
    assert_eq!(cache.feed_position(), 9);
}
