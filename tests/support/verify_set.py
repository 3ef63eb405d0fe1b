#!/usr/bin/env python3
"""Verify agentca's Security Event Tokens with PyJWT and cryptography
(Debian's python3-jwt and python3-cryptography), as a receiver written in
Python would: the signing certificate in x5c chains through the
intermediate to the agentca root, has the document-signing EKU only, and
names the issuer; the ES256 signature and the audience hold.

    verify_set.py BUNDLE.pem TRUST_DOMAIN AUDIENCE < tokens (one per line)

Prints each token's jti, one per line; exits 1 at the first that fails.
"""

import base64
import datetime
import sys

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")


def signed_by(cert, issuer):
    """Whether issuer's key signed cert."""
    key = issuer.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes,
                   ec.ECDSA(cert.signature_hash_algorithm))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes)
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes,
                   padding.PKCS1v15(), cert.signature_hash_algorithm)
    else:
        raise ValueError(f"unexpected issuer key {type(key)}")
    if cert.issuer != issuer.subject:
        raise ValueError("issuer name mismatch")


def check(token, root, issuer, audience):
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "secevent+jwt" or header.get("alg") != "ES256":
        raise ValueError(f"header {header}")
    leaf, intermediate = (
        x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]
    )
    signed_by(leaf, intermediate)
    signed_by(intermediate, root)
    constraints = intermediate.extensions.get_extension_for_class(x509.BasicConstraints)
    if not constraints.value.ca:
        raise ValueError("x5c[1] is not a CA certificate")
    now = datetime.datetime.utcnow()
    for cert in (leaf, intermediate, root):
        if not cert.not_valid_before <= now <= cert.not_valid_after:
            raise ValueError(f"{cert.subject} is not valid now")
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    if list(eku) != [DOCUMENT_SIGNING] or ExtendedKeyUsageOID.CLIENT_AUTH in eku:
        raise ValueError(f"EKU {list(eku)}")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if san.get_values_for_type(x509.UniformResourceIdentifier) != [issuer]:
        raise ValueError(f"SAN {san}")
    claims = jwt.decode(
        token,
        key=leaf.public_key(),
        algorithms=["ES256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["iss", "iat", "jti", "aud"]},
    )
    if len(claims["events"]) != 1:
        raise ValueError(f"events {claims['events']}")
    return claims["jti"]


def main():
    bundle, trust_domain, audience = sys.argv[1:4]
    with open(bundle, "rb") as f:
        pem = f.read()
    end = b"-----END CERTIFICATE-----"
    root = x509.load_pem_x509_certificate(pem[: pem.index(end) + len(end)])
    for line in sys.stdin:
        token = line.strip()
        if not token:
            continue
        try:
            print(check(token, root, f"spiffe://{trust_domain}", audience))
        except Exception as e:  # the test prints why
            print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
