//! The agentca certificate authority: issuing minutes-lived agent
//! certificates, and the `agentca` command.
//!
//! - [`authority`] decides what may be issued and what it contains
//!   ([`profile`], [`csr`], [`token`]);
//! - [`store`] persists it;
//! - [`http`] turns HTTPS requests into calls on the authority ([`tls`]);
//! - [`datadir`] and [`keys`] hold the CA's certificates and encrypted keys;
//! - [`cli`] is the `agentca` command.

#![forbid(unsafe_code)]

pub mod audit;
pub mod authority;
pub mod cli;
pub mod datadir;
pub mod http;
pub mod issuance;
pub mod metrics;
pub mod revocation;
pub mod state;
pub mod store;
pub mod token;

pub(crate) use agentca::hex;
