//! Interop: the real `openssl` binary and the `spiffe` crate read what the
//! CA issues.

mod common;

use agentca::client::{KeyAlgorithm, PrivateKey};
use agentca::wire::EnrollRequest;
use common::{leaf_der, openssl, refusal, write, TestCa};

/// The value line of an extension in `openssl x509 -text` output.
fn extension_value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = text.lines();
    lines.find(|l| l.trim_start().starts_with(name))?;
    lines.next().map(str::trim)
}

/// A CA with one enrolled agent; its chain written as leaf.pem and
/// intermediate.pem in the CA's temporary directory.
async fn enrolled() -> (TestCa, agentca::wire::IssuedCertificate) {
    let ca = TestCa::start();
    let (issued, _) = ca.enrolled("acme", "prod", "bot").await;
    let blocks = pem::parse_many(&issued.certificate_chain).unwrap();
    let dir = ca.root.path();
    write(dir, "leaf.pem", &pem::encode(&blocks[0]));
    write(dir, "intermediate.pem", &pem::encode(&blocks[1]));
    std::fs::copy(ca.bundle_path(), dir.join("root.pem")).unwrap();
    (ca, issued)
}

#[tokio::test]
async fn openssl_verifies_a_leaf_against_the_root_with_the_intermediate_untrusted() {
    let (ca, _) = enrolled().await;
    let dir = ca.root.path();
    for purpose in ["sslclient", "sslserver"] {
        let (ok, out) = openssl(
            &[
                "verify",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "intermediate.pem",
                "-purpose",
                purpose,
                "leaf.pem",
            ],
            dir,
        );
        assert!(ok && out.contains("leaf.pem: OK"), "{purpose}: {out}");
    }
    // Without the intermediate, or against another CA's root, it fails.
    let (ok, _) = openssl(&["verify", "-CAfile", "root.pem", "leaf.pem"], dir);
    assert!(!ok);
    let other = TestCa::start();
    std::fs::copy(other.bundle_path(), dir.join("other-root.pem")).unwrap();
    let (ok, _) = openssl(
        &[
            "verify",
            "-CAfile",
            "other-root.pem",
            "-untrusted",
            "intermediate.pem",
            "leaf.pem",
        ],
        dir,
    );
    assert!(!ok);
}

#[tokio::test]
async fn openssl_shows_the_certificate_profile() {
    let (ca, issued) = enrolled().await;
    let (ok, text) = openssl(
        &["x509", "-in", "leaf.pem", "-noout", "-text"],
        ca.root.path(),
    );
    assert!(ok, "{text}");
    let squashed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "X509v3 Key Usage: critical Digital Signature X509v3",
        "X509v3 Basic Constraints: critical CA:FALSE",
        "X509v3 Extended Key Usage: TLS Web Server Authentication, TLS Web Client Authentication",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        &format!("X509v3 Subject Alternative Name: URI:{}", issued.spiffe_id),
        &format!(
            "Subject: O = acme, OU = prod, CN = bot, serialNumber = {}",
            issued.instance_id
        ),
    ] {
        assert!(
            squashed.contains(expected),
            "missing {expected:?} in:\n{text}"
        );
    }
    assert_eq!(
        extension_value(&text, "X509v3 Subject Alternative Name"),
        Some(format!("URI:{}", issued.spiffe_id).as_str()),
        "exactly one SAN, the SPIFFE ID:\n{text}"
    );
    assert_eq!(
        extension_value(&text, "Full Name:"),
        Some(format!("URI:{}/v1/crl", ca.url).as_str()),
        "the CRL distribution point:\n{text}"
    );
    assert_eq!(
        extension_value(&text, "Authority Information Access"),
        Some(format!("OCSP - URI:{}/v1/ocsp", ca.url).as_str()),
        "the OCSP responder:\n{text}"
    );
    assert!(!text.contains("DNS:"), "no DNS SAN:\n{text}");
    let (_, serial) = openssl(
        &["x509", "-in", "leaf.pem", "-noout", "-serial"],
        ca.root.path(),
    );
    assert_eq!(
        serial.trim().to_lowercase(),
        format!("serial={}", issued.serial)
    );
}

#[tokio::test]
async fn what_an_openssl_csr_asks_for_is_ignored() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    let dir = ca.root.path();
    let (ok, out) = openssl(
        &[
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "evil.key", "-out", "evil.csr",
            "-subj", "/CN=root-of-everything/O=evil",
            "-addext", "subjectAltName=DNS:evil.example,URI:spiffe://example.org/tenant/other/env/prod/agent/admin",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
    assert!(ok, "{out}");
    let csr = std::fs::read_to_string(dir.join("evil.csr")).unwrap();
    let issued = ca
        .client()
        .enroll(&ca.token("acme", "prod", "bot", 1).await, &csr)
        .await
        .expect("the CSR's own extensions are ignored, not refused");
    assert_eq!(
        issued.spiffe_id.to_string(),
        "spiffe://example.org/tenant/acme/env/prod/agent/bot"
    );
    write(dir, "issued.pem", &issued.certificate_chain);
    let (_, text) = openssl(&["x509", "-in", "issued.pem", "-noout", "-text"], dir);
    assert!(!text.contains("evil"), "{text}");
    assert!(!text.contains("CA:TRUE"), "{text}");
    assert!(!text.contains("Certificate Sign"), "{text}");
    assert_eq!(
        extension_value(&text, "X509v3 Subject Alternative Name"),
        Some(format!("URI:{}", issued.spiffe_id).as_str()),
        "{text}"
    );
}

#[tokio::test]
async fn rsa_keys_are_refused() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    let token = ca.token("acme", "prod", "bot", 1).await;
    let dir = ca.root.path();
    for bits in ["1024", "2048"] {
        let (ok, out) = openssl(
            &[
                "req",
                "-new",
                "-newkey",
                &format!("rsa:{bits}"),
                "-nodes",
                "-keyout",
                "rsa.key",
                "-out",
                "rsa.csr",
                "-subj",
                "/CN=x",
            ],
            dir,
        );
        assert!(ok, "{out}");
        let csr = std::fs::read_to_string(dir.join("rsa.csr")).unwrap();
        let result = ca.client().enroll(&token, &csr).await;
        let err = result.unwrap_err();
        assert!(err.to_string().contains(&format!("RSA-{bits}")), "{err}");
        assert_eq!(
            refusal::<()>(Err(err)),
            (400, "key_type_not_allowed".into())
        );
    }
    ca.enroll(&token)
        .await
        .expect("the refusals left the token unused");
}

#[tokio::test]
async fn ca_keys_are_encrypted_pkcs8_that_openssl_opens_with_the_passphrase_only() {
    let ca = TestCa::start_with(&["--key-alg", "p384"], &[]);
    let dir = &ca.data_dir;
    write(ca.root.path(), "wrong", "not the passphrase at all");
    for key in ["root.key.pem", "intermediate.key.pem"] {
        let path = dir.join(key);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{key}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        let pass = format!("file:{}", ca.passphrase_file.display());
        let (ok, out) = openssl(
            &[
                "pkey",
                "-in",
                path.to_str().unwrap(),
                "-passin",
                &pass,
                "-noout",
                "-text",
            ],
            dir,
        );
        assert!(ok, "{key}: {out}");
        assert!(out.contains("P-384"), "{key}: {out}");
        let wrong = format!("file:{}", ca.root.path().join("wrong").display());
        let (ok, _) = openssl(
            &[
                "pkey",
                "-in",
                path.to_str().unwrap(),
                "-passin",
                &wrong,
                "-noout",
            ],
            dir,
        );
        assert!(!ok, "{key} opened with a wrong passphrase");
    }
    let token_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.join("admin.token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(token_mode, 0o600);
}

#[tokio::test]
async fn ed25519_and_p384_cas_issue_certificates_openssl_verifies() {
    for alg in ["ed25519", "p384"] {
        let ca = TestCa::start_with(&["--key-alg", alg], &[]);
        let (issued, _) = ca.enrolled("acme", "prod", "bot").await;
        let dir = ca.root.path();
        let blocks = pem::parse_many(&issued.certificate_chain).unwrap();
        write(dir, "leaf.pem", &pem::encode(&blocks[0]));
        write(dir, "intermediate.pem", &pem::encode(&blocks[1]));
        let bundle = ca.bundle_path();
        let (ok, out) = openssl(
            &[
                "verify",
                "-CAfile",
                bundle.to_str().unwrap(),
                "-untrusted",
                "intermediate.pem",
                "leaf.pem",
            ],
            dir,
        );
        assert!(ok, "{alg}: {out}");
    }
}

#[tokio::test]
async fn the_spiffe_crate_parses_issued_certificates_as_x509_svids() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    let token = ca.token("acme", "prod", "bot", 1).await;
    let key = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
    let req = EnrollRequest {
        token,
        csr: key.csr_pem().unwrap(),
    };
    let issued = ca.client().enroll(&req.token, &req.csr).await.unwrap();
    let chain_der: Vec<u8> = pem::parse_many(&issued.certificate_chain)
        .unwrap()
        .iter()
        .flat_map(|b| b.contents().to_vec())
        .collect();
    let key_der = pem::parse(key.to_pem()).unwrap().into_contents();
    let svid = spiffe::X509Svid::parse_from_der(&chain_der, &key_der).expect("a valid X.509-SVID");
    assert_eq!(svid.spiffe_id().to_string(), issued.spiffe_id.to_string());
    assert_eq!(svid.spiffe_id().trust_domain().to_string(), "example.org");
    assert_eq!(svid.cert_chain().len(), 2);
    assert_eq!(
        svid.leaf().as_ref(),
        leaf_der(&issued.certificate_chain).as_slice()
    );

    let root_der = pem::parse(std::fs::read(ca.bundle_path()).unwrap())
        .unwrap()
        .into_contents();
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    spiffe::X509Bundle::parse_from_der(td, &root_der).expect("the root is a valid SPIFFE bundle");
}
