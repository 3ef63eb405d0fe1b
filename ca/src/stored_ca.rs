//! The CA's material (settings, certificates, encrypted keys) as one value:
//! kept as a record in a shared store, so that every replica loads the same
//! CA from the database with nothing but the key passphrase (as Vault keeps
//! its keys in its storage, behind its seal); read from and written to a
//! data directory; carried by backups.
//!
//! The keys stay as the data directory keeps them: PKCS#8 encrypted with
//! the passphrase (scrypt, AES-256-CBC). Whoever reads the database or a
//! backup without the passphrase cannot sign.

use rcgen::KeyPair;
use serde::{Deserialize, Serialize};

use crate::datadir::{
    check_key_matches, write_file, CaMeta, Created, DataDir, DataDirError, InitOptions, LoadedCa,
};
use crate::issuance::keys::{self, Passphrase};
use crate::state::change;
use crate::store::{Backend, Store, StoreError, Table};

/// Meta key of the CA record.
const CA_KEY: &[u8] = b"ca";

/// A CA's settings, certificates and encrypted keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaMaterial {
    /// The settings fixed at init.
    pub meta: CaMeta,
    /// The root certificate (PEM).
    pub root_pem: String,
    /// The issuing certificate (PEM).
    pub intermediate_pem: String,
    /// The root key, encrypted; absent when it is kept offline.
    #[serde(default)]
    pub root_key_pem: Option<String>,
    /// The issuing key, encrypted.
    pub intermediate_key_pem: String,
}

impl CaMaterial {
    /// The material of a new CA.
    pub fn of_created(created: &Created, opts: &InitOptions<'_>) -> Result<Self, DataDirError> {
        Ok(Self {
            meta: created.meta(opts),
            root_pem: created.root_cert.pem(),
            intermediate_pem: created.int_cert.pem(),
            root_key_pem: Some(keys::encrypt_pem(&created.root_key, opts.passphrase)?),
            intermediate_key_pem: keys::encrypt_pem(&created.int_key, opts.passphrase)?,
        })
    }

    /// The material of the CA in the data directory `dir`.
    pub fn read_dir(dir: &DataDir) -> Result<Self, DataDirError> {
        let meta = dir.read_meta()?;
        let read = |path: std::path::PathBuf| {
            std::fs::read_to_string(&path).map_err(|source| DataDirError::Io { path, source })
        };
        let root_key_pem = match std::fs::read_to_string(dir.root_key()) {
            Ok(pem) => Some(pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(DataDirError::Io {
                    path: dir.root_key(),
                    source,
                })
            }
        };
        Ok(Self {
            meta,
            root_pem: read(dir.root_cert())?,
            intermediate_pem: read(dir.intermediate_cert())?,
            root_key_pem,
            intermediate_key_pem: read(dir.intermediate_key())?,
        })
    }

    /// Writes this CA into the new data directory `dir`, whose store is
    /// `store` (`ca.json` last: its presence means the CA is complete).
    /// Refuses a directory that already holds a CA.
    pub fn write_dir(&self, dir: &DataDir, store: Backend) -> Result<(), DataDirError> {
        if dir.exists() {
            return Err(DataDirError::AlreadyInitialised(dir.path().to_owned()));
        }
        crate::datadir::create_private_dir(dir.path())?;
        if let Some(root_key) = &self.root_key_pem {
            write_file(&dir.root_key(), root_key.as_bytes(), true)?;
        }
        write_file(
            &dir.intermediate_key(),
            self.intermediate_key_pem.as_bytes(),
            true,
        )?;
        write_file(&dir.root_cert(), self.root_pem.as_bytes(), false)?;
        write_file(
            &dir.intermediate_cert(),
            self.intermediate_pem.as_bytes(),
            false,
        )?;
        write_file(&dir.bundle(), self.root_pem.as_bytes(), false)?;
        let meta = CaMeta {
            store,
            ..self.meta.clone()
        };
        let json = serde_json::to_vec_pretty(&meta).expect("CaMeta serializes");
        write_file(&dir.meta(), &json, false)
    }

    /// Decrypts the keys: what `serve` needs, and the root key if it is
    /// here.
    pub fn load(
        &self,
        passphrase: &Passphrase,
    ) -> Result<(LoadedCa, Option<KeyPair>), DataDirError> {
        let trust_domain = agentca::identity::TrustDomain::new(&self.meta.trust_domain)
            .map_err(|e| DataDirError::Stored(e.to_string()))?;
        let cert = |pem: &str, what: &str| {
            let block =
                pem::parse(pem).map_err(|e| DataDirError::Stored(format!("{what}: {e}")))?;
            Ok::<_, DataDirError>(rustls_pki_types::CertificateDer::from(
                block.into_contents(),
            ))
        };
        let root = cert(&self.root_pem, "the root certificate")?;
        let intermediate = cert(&self.intermediate_pem, "the issuing certificate")?;
        let intermediate_key =
            keys::decrypt_pem(&self.intermediate_key_pem, passphrase, "the issuing key")?;
        let place = std::path::Path::new("the CA record");
        check_key_matches(&intermediate, &intermediate_key, place)?;
        let root_key = match &self.root_key_pem {
            Some(pem) => {
                let key = keys::decrypt_pem(pem, passphrase, "the root key")?;
                check_key_matches(&root, &key, place)?;
                Some(key)
            }
            None => None,
        };
        Ok((
            LoadedCa {
                meta: self.meta.clone(),
                trust_domain,
                root,
                intermediate,
                intermediate_key,
            },
            root_key,
        ))
    }
}

/// Puts the CA `created` into `store`, with its first admin, in one
/// commit. Refuses a store that already holds a CA (of two concurrent
/// `init`s, one wins).
pub fn init(
    store: &dyn Store,
    created: &Created,
    opts: &InitOptions<'_>,
) -> Result<(), DataDirError> {
    put(
        store,
        &CaMaterial::of_created(created, opts)?,
        Some(created),
    )
}

/// Puts `material` into `store` (with the first admin of `created`, for a
/// new CA). Refuses a store that already holds a CA.
pub fn put(
    store: &dyn Store,
    material: &CaMaterial,
    created: Option<&Created>,
) -> Result<(), DataDirError> {
    let bytes = serde_json::to_vec(material).expect("the CA record serializes");
    let first_admin = created.map(Created::first_admin);
    let mut fresh = false;
    store.write(&mut |txn| {
        fresh = txn.insert_new(Table::Meta, CA_KEY, &bytes)?;
        if let (true, Some(first_admin)) = (fresh, &first_admin) {
            change::apply(txn, first_admin)?.map_err(|conflict| StoreError::Corrupt {
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

/// The CA kept in `store`, if it holds one.
pub fn get(store: &dyn Store) -> Result<Option<CaMaterial>, DataDirError> {
    let Some(bytes) = store.get(Table::Meta, CA_KEY)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| DataDirError::Stored(format!("the CA record does not decode: {e}")))
}

/// Loads the CA from `store`: what `serve` needs, and the root key.
pub fn load(
    store: &dyn Store,
    passphrase: &Passphrase,
) -> Result<(LoadedCa, Option<KeyPair>), DataDirError> {
    get(store)?
        .ok_or_else(|| {
            DataDirError::Stored("it holds no CA; run `agentca init --store <url>` first".into())
        })?
        .load(passphrase)
}
