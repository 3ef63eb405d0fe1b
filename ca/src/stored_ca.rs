//! A CA kept in a shared store: its settings, certificates and encrypted
//! keys as one record, so that every replica loads the same CA from the
//! database with nothing but the key passphrase (as Vault keeps its keys
//! in its storage, behind its seal).
//!
//! The keys are stored as the data directory keeps them: PKCS#8 encrypted
//! with the passphrase (scrypt, AES-256-CBC). Whoever reads the database
//! without the passphrase cannot sign.

use rcgen::KeyPair;
use serde::{Deserialize, Serialize};

use crate::datadir::{check_key_matches, CaMeta, Created, DataDirError, InitOptions, LoadedCa};
use crate::issuance::keys::{self, Passphrase};
use crate::state::change;
use crate::store::{Store, StoreError, Table};

/// Meta key of the CA record.
const CA_KEY: &[u8] = b"ca";

/// The CA as stored.
#[derive(Serialize, Deserialize)]
struct StoredCa {
    meta: CaMeta,
    root_pem: String,
    intermediate_pem: String,
    root_key_pem: String,
    intermediate_key_pem: String,
}

/// Puts the CA `created` into `store`, with its first admin, in one
/// commit. Refuses a store that already holds a CA (of two concurrent
/// `init`s, one wins).
pub fn init(
    store: &dyn Store,
    created: &Created,
    opts: &InitOptions<'_>,
) -> Result<(), DataDirError> {
    let record = StoredCa {
        meta: created.meta(opts),
        root_pem: created.root_cert.pem(),
        intermediate_pem: created.int_cert.pem(),
        root_key_pem: keys::encrypt_pem(&created.root_key, opts.passphrase)?,
        intermediate_key_pem: keys::encrypt_pem(&created.int_key, opts.passphrase)?,
    };
    let bytes = serde_json::to_vec(&record).expect("the CA record serializes");
    let first_admin = created.first_admin();
    let mut fresh = false;
    store.write(&mut |txn| {
        fresh = txn.insert_new(Table::Meta, CA_KEY, &bytes)?;
        if fresh {
            change::apply(txn, &first_admin)?.map_err(|conflict| StoreError::Corrupt {
                table: Table::Admins.name(),
                detail: format!("the first admin of a new CA: {conflict}"),
            })?;
        }
        Ok(())
    })?;
    if !fresh {
        return Err(DataDirError::Stored(
            "the database already holds a CA; refusing to overwrite it".into(),
        ));
    }
    Ok(())
}

/// Loads the CA from `store`: what `serve` needs, and the root key.
pub fn load(
    store: &dyn Store,
    passphrase: &Passphrase,
) -> Result<(LoadedCa, KeyPair), DataDirError> {
    let bytes = store.get(Table::Meta, CA_KEY)?.ok_or_else(|| {
        DataDirError::Stored("it holds no CA; run `agentca init --store <url>` first".into())
    })?;
    let record: StoredCa = serde_json::from_slice(&bytes)
        .map_err(|e| DataDirError::Stored(format!("the CA record does not decode: {e}")))?;
    let trust_domain = agentca::identity::TrustDomain::new(&record.meta.trust_domain)
        .map_err(|e| DataDirError::Stored(e.to_string()))?;
    let cert = |pem: &str, what: &str| {
        let block = pem::parse(pem).map_err(|e| DataDirError::Stored(format!("{what}: {e}")))?;
        Ok::<_, DataDirError>(rustls_pki_types::CertificateDer::from(
            block.into_contents(),
        ))
    };
    let root = cert(&record.root_pem, "the root certificate")?;
    let intermediate = cert(&record.intermediate_pem, "the issuing certificate")?;
    let intermediate_key =
        keys::decrypt_pem(&record.intermediate_key_pem, passphrase, "the issuing key")?;
    let root_key = keys::decrypt_pem(&record.root_key_pem, passphrase, "the root key")?;
    let place = std::path::Path::new("the database's CA record");
    check_key_matches(&intermediate, &intermediate_key, place)?;
    check_key_matches(&root, &root_key, place)?;
    Ok((
        LoadedCa {
            meta: record.meta,
            trust_domain,
            root,
            intermediate,
            intermediate_key,
        },
        root_key,
    ))
}
