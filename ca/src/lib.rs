//! The agentca certificate authority: issuing minutes-lived agent
//! certificates, and the `agentca` command. `docs/ARCHITECTURE.md` is the
//! map: the parts, which may use which, and where each rule lives.
//!
//! - [`authority`] decides who may have which certificate and what each
//!   refusal is, asking [`state`] for the rules of each thing's life;
//! - [`issuance`] says what goes into a certificate and signs it;
//! - [`state`] holds the records and their rules, and turns decisions into
//!   conditional writes on the [`store`], which only stores;
//! - [`audit`] owns the hash-chained audit trail;
//! - [`revocation`] serves CRLs, OCSP and the live feed;
//! - [`http`] turns HTTPS requests into calls on the authority;
//! - [`metrics`] counts, as a handle passed to what records;
//! - [`datadir`] holds the CA's files and encrypted keys, [`token`] the
//!   secrets' hashing;
//! - [`cli`] is the `agentca` command.

#![forbid(unsafe_code)]

pub mod audit;
pub mod authority;
pub mod backup;
pub mod cli;
pub mod datadir;
pub mod events;
pub mod http;
pub mod issuance;
pub mod metrics;
pub mod quiet;
pub mod revocation;
pub mod state;
pub mod store;
pub mod stored_ca;
pub mod token;

pub(crate) use agentca::hex;
