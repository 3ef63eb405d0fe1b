//! Issuance: what goes into a certificate and who signs it.
//!
//! - [`profile`]: the certificate profiles (agent leaf, the CA's own TLS
//!   server certificate, root, intermediate) and where verifiers find
//!   revocation data;
//! - [`issuer`]: the issuing intermediate and its key, which sign leaves,
//!   CRLs and OCSP responses;
//! - [`csr`]: what a CSR is allowed to contribute (its key, proven);
//! - [`keys`]: CA keys, generated and encrypted at rest.
//!
//! Issuance decides nothing about who may have a certificate (that is
//! [`crate::authority`]) and stores nothing; it must not depend on the
//! store, the authority or HTTP. `issuer` uses `profile`, never the
//! reverse.

pub mod csr;
pub mod issuer;
pub mod keys;
pub mod profile;
