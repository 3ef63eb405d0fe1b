//! The CA's data directory: its certificates, encrypted keys, settings and
//! store.
//!
//! ```text
//! <data-dir>/
//!   ca.json               trust domain, key algorithm, store backend
//!   root.pem              root CA certificate
//!   root.key.pem          root key, encrypted PKCS#8 (0600)
//!   intermediate.pem      issuing CA certificate
//!   intermediate.key.pem  issuing key, encrypted PKCS#8 (0600)
//!   bundle.pem            the trust bundle to hand to verifiers (the root)
//!   admin.token           the first admin token (0600)
//!   store.redb | store.sled/
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use agentca::bundle::Fingerprint;
use agentca::client::KeyAlgorithm;
use agentca::identity::TrustDomain;
use rcgen::{Issuer, KeyPair};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::issuance::keys::{self, KeyError, Passphrase};
use crate::issuance::profile;
use crate::state::{self, Change};
use crate::store::{Backend, StoreError};
use crate::token;

/// Version of the data directory layout.
pub const LAYOUT_VERSION: u32 = 1;

/// Why the data directory could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `init` on a directory that already holds a CA.
    #[error("{0} already holds a CA; refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    /// `serve` on a directory that holds no CA.
    #[error("{0} holds no CA; run `agentca init` first")]
    NotInitialised(PathBuf),
    /// A file is not what it should be.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A key operation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A secret, or the directory of secrets, that others may read.
    #[error("{path}: {detail}")]
    Exposed {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong and the fix.
        detail: String,
    },
    /// The CA kept in a shared store is missing or damaged.
    #[error("the CA in the database: {0}")]
    Stored(String),
    /// Certificate generation failed.
    #[error("could not sign a CA certificate: {0}")]
    Sign(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `ca.json`: the settings fixed at init.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaMeta {
    /// Layout version.
    pub version: u32,
    /// The trust domain.
    pub trust_domain: String,
    /// CA key algorithm.
    pub key_algorithm: String,
    /// Store backend.
    pub store: Backend,
    /// When the CA was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What `init` needs.
pub struct InitOptions<'a> {
    /// The directory to create.
    pub dir: &'a Path,
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// CA key algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// Store backend.
    pub store: Backend,
    /// Encrypts the CA keys.
    pub passphrase: &'a Passphrase,
    /// Root lifetime.
    pub root_validity: Duration,
    /// Intermediate lifetime (capped at the root's).
    pub intermediate_validity: Duration,
    /// The time of creation.
    pub now: OffsetDateTime,
}

/// What `init` created.
#[derive(Debug)]
pub struct InitReport {
    /// SHA-256 fingerprint of the root: the pin for agents.
    pub root_fingerprint: Fingerprint,
    /// Where the first admin token was written.
    pub admin_token_path: PathBuf,
}

/// Paths of the files in a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    dir: PathBuf,
}

impl DataDir {
    /// The data directory at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `ca.json`.
    pub fn meta(&self) -> PathBuf {
        self.dir.join("ca.json")
    }
    /// `root.pem`.
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("root.pem")
    }
    /// `root.key.pem`.
    pub fn root_key(&self) -> PathBuf {
        self.dir.join("root.key.pem")
    }
    /// `intermediate.pem`.
    pub fn intermediate_cert(&self) -> PathBuf {
        self.dir.join("intermediate.pem")
    }
    /// `intermediate.key.pem`.
    pub fn intermediate_key(&self) -> PathBuf {
        self.dir.join("intermediate.key.pem")
    }
    /// `bundle.pem`.
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle.pem")
    }
    /// `admin.token`.
    pub fn admin_token(&self) -> PathBuf {
        self.dir.join("admin.token")
    }
    /// `root.crl`: the root's CRL (DER), covering the intermediate.
    pub fn root_crl(&self) -> PathBuf {
        self.dir.join("root.crl")
    }

    /// Decrypts the root key, if it is here (it may have been moved
    /// offline: then the root CRL must be signed where the key is).
    pub fn load_root_key(&self, passphrase: &Passphrase) -> Result<Option<KeyPair>, DataDirError> {
        let path = self.root_key();
        let pem = match fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let key = keys::decrypt_pem(&pem, passphrase, &path.display().to_string())?;
        check_key_matches(&read_cert(&self.root_cert())?, &key, &self.root_cert())?;
        Ok(Some(key))
    }

    /// Whether a CA was initialised here.
    pub fn exists(&self) -> bool {
        self.meta().exists()
    }

    /// Creates a new CA here: root, intermediate, encrypted keys, store and
    /// a first admin token. Refuses a directory that already holds a CA.
    pub fn init(&self, opts: &InitOptions<'_>) -> Result<InitReport, DataDirError> {
        if self.exists() {
            return Err(DataDirError::AlreadyInitialised(self.dir.clone()));
        }
        create_private_dir(&self.dir)?;
        let created = Created::new(opts)?;
        let store = state::open_store(&crate::store::Location::Embedded {
            backend: opts.store,
            dir: self.dir.clone(),
        })?;
        crate::store::writer::commit(&*store, &[created.first_admin()])?;
        drop(store);

        write_file(
            &self.root_key(),
            keys::encrypt_pem(&created.root_key, opts.passphrase)?.as_bytes(),
            true,
        )?;
        write_file(
            &self.intermediate_key(),
            keys::encrypt_pem(&created.int_key, opts.passphrase)?.as_bytes(),
            true,
        )?;
        write_file(&self.root_cert(), created.root_cert.pem().as_bytes(), false)?;
        write_file(
            &self.intermediate_cert(),
            created.int_cert.pem().as_bytes(),
            false,
        )?;
        self.write_outputs(&created)?;
        let meta = created.meta(opts);
        // ca.json goes last: its presence means the CA is complete.
        let meta_json = serde_json::to_vec_pretty(&meta).expect("CaMeta serializes");
        write_file(&self.meta(), &meta_json, false)?;

        Ok(InitReport {
            root_fingerprint: created.root_fingerprint(),
            admin_token_path: self.admin_token(),
        })
    }

    /// Writes what an operator takes from `init`: the trust bundle and the
    /// first admin token (for a CA kept in a shared store, all it writes
    /// here).
    pub fn write_outputs(&self, created: &Created) -> Result<(), DataDirError> {
        create_private_dir(&self.dir)?;
        write_file(&self.bundle(), created.root_cert.pem().as_bytes(), false)?;
        write_file(
            &self.admin_token(),
            format!("{}\n", created.admin_token).as_bytes(),
            true,
        )
    }

    /// Reads `ca.json`.
    pub fn read_meta(&self) -> Result<CaMeta, DataDirError> {
        if !self.exists() {
            return Err(DataDirError::NotInitialised(self.dir.clone()));
        }
        let path = self.meta();
        let bytes = fs::read(&path).map_err(io(&path))?;
        let meta: CaMeta = serde_json::from_slice(&bytes).map_err(|e| DataDirError::Invalid {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if meta.version != LAYOUT_VERSION {
            return Err(DataDirError::Invalid {
                path,
                detail: format!(
                    "layout version {} is not supported (expected {LAYOUT_VERSION})",
                    meta.version
                ),
            });
        }
        Ok(meta)
    }

    /// Loads what `serve` needs: the settings, the certificates and the
    /// decrypted issuing key.
    pub fn load(&self, passphrase: &Passphrase) -> Result<LoadedCa, DataDirError> {
        let meta = self.read_meta()?;
        let trust_domain =
            TrustDomain::new(&meta.trust_domain).map_err(|e| DataDirError::Invalid {
                path: self.meta(),
                detail: e.to_string(),
            })?;
        let root = read_cert(&self.root_cert())?;
        let intermediate = read_cert(&self.intermediate_cert())?;
        let key_path = self.intermediate_key();
        let key_pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = keys::decrypt_pem(&key_pem, passphrase, &key_path.display().to_string())?;
        check_key_matches(&intermediate, &key, &self.intermediate_cert())?;
        Ok(LoadedCa {
            meta,
            trust_domain,
            root,
            intermediate,
            intermediate_key: key,
        })
    }
}

/// A new CA: its keys and certificates, and its first admin token.
pub struct Created {
    /// The root key.
    pub root_key: KeyPair,
    /// The issuing key.
    pub int_key: KeyPair,
    /// The root certificate.
    pub root_cert: rcgen::Certificate,
    /// The issuing certificate.
    pub int_cert: rcgen::Certificate,
    /// The first admin's token.
    pub admin_token: String,
    trust_domain: TrustDomain,
    now: OffsetDateTime,
}

impl Created {
    /// Generates the keys, signs the root and the intermediate, and draws
    /// the first admin token.
    pub fn new(opts: &InitOptions<'_>) -> Result<Self, DataDirError> {
        let td = &opts.trust_domain;
        let root_key = keys::generate(opts.key_algorithm)?;
        let root_not_after = opts.now + opts.root_validity;
        let root_params = profile::root(td, opts.now - profile::BACKDATE, root_not_after);
        let root_cert = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, &root_key);

        let int_key = keys::generate(opts.key_algorithm)?;
        let int_not_after = (opts.now + opts.intermediate_validity).min(root_not_after);
        let int_params = profile::intermediate(td, opts.now - profile::BACKDATE, int_not_after);
        let int_cert = int_params.signed_by(&int_key, &root_issuer)?;
        Ok(Self {
            root_key,
            int_key,
            root_cert,
            int_cert,
            admin_token: token::generate(token::ADMIN_PREFIX),
            trust_domain: td.clone(),
            now: opts.now,
        })
    }

    /// The settings of the new CA.
    pub fn meta(&self, opts: &InitOptions<'_>) -> CaMeta {
        CaMeta {
            version: LAYOUT_VERSION,
            trust_domain: self.trust_domain.to_string(),
            key_algorithm: opts.key_algorithm.to_string(),
            store: opts.store,
            created_at: self.now,
        }
    }

    /// The SHA-256 fingerprint of the root: the pin for agents.
    pub fn root_fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.root_cert.der())
    }

    /// The first event of the audit trail: the CA itself creates the first
    /// admin.
    pub fn first_admin(&self) -> Change {
        let hash = token::hash(&self.admin_token).expect("generated tokens are well-formed");
        let mut created = agentca::wire::AuditEvent::new(
            crate::issuance::profile::whole_seconds(self.now),
            agentca::wire::Actor::System,
            "admin.create",
            Some("admin".into()),
        );
        created.reason = Some(format!(
            "every tenant; created by init for {}",
            self.trust_domain
        ));
        Change::Audited {
            change: Box::new(Change::PutAdmin {
                hash,
                admin: state::records::AdminRecord {
                    name: "admin".into(),
                    tenant: None,
                    created_at: self.now,
                    role: Default::default(),
                    version: 1,
                },
                by: "init".into(),
            }),
            audit: Box::new(created),
        }
    }
}

/// A loaded CA.
pub struct LoadedCa {
    /// The settings.
    pub meta: CaMeta,
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// The root certificate.
    pub root: CertificateDer<'static>,
    /// The issuing certificate.
    pub intermediate: CertificateDer<'static>,
    /// The issuing key.
    pub intermediate_key: KeyPair,
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, DataDirError> {
    let text = fs::read(path).map_err(io(path))?;
    let block = pem::parse(&text).map_err(|e| DataDirError::Invalid {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    if block.tag() != "CERTIFICATE" {
        return Err(DataDirError::Invalid {
            path: path.to_owned(),
            detail: format!("expected a CERTIFICATE, found {:?}", block.tag()),
        });
    }
    Ok(CertificateDer::from(block.into_contents()))
}

pub(crate) fn check_key_matches(
    cert: &CertificateDer<'_>,
    key: &KeyPair,
    path: &Path,
) -> Result<(), DataDirError> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert).map_err(|e| {
        DataDirError::Invalid {
            path: path.to_owned(),
            detail: e.to_string(),
        }
    })?;
    if parsed.tbs_certificate.subject_pki.raw != rcgen::PublicKeyData::subject_public_key_info(key)
    {
        return Err(DataDirError::Invalid {
            path: path.to_owned(),
            detail: "the certificate does not match its key".into(),
        });
    }
    Ok(())
}

/// Refuses a secret file (or, with `directory`, a directory of secrets)
/// that anyone but its owner may read, write or enter: its group and
/// others must have no permission at all. The error says the `chmod` that
/// fixes it. Off Unix, nothing is checked.
pub fn check_private(path: &Path, directory: bool) -> Result<(), DataDirError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let (what, fix) = if directory {
                ("a directory of CA keys", "700")
            } else {
                ("a secret", "600")
            };
            return Err(DataDirError::Exposed {
                path: path.to_owned(),
                detail: format!(
                    "{what} that others may read (mode {mode:04o}): run `chmod {fix} {}`, or give \
                     --allow-open-permissions where the platform mounts secrets so",
                    path.display()
                ),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, directory);
    Ok(())
}

/// Creates `dir` (and its parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), DataDirError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io(dir))
}

/// Writes `contents` to `path` atomically: a temporary file in the same
/// directory, synced, then renamed over `path`, then the directory synced.
/// With `secret`, the file is created with mode 0600.
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), DataDirError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // An unpredictable name, created afresh: a file or symlink planted in
    // its place makes the write fail instead of being written through.
    let mut suffix = [0u8; 8];
    aws_lc_rs::rand::fill(&mut suffix)
        .map_err(|_| io(path)(std::io::Error::other("RNG failure")))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::hex(&suffix)));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_secret_or_key_directory_others_may_read_is_refused_with_its_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passphrase");
        fs::write(&file, "correct horse battery staple").unwrap();
        let set = |path: &Path, mode| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap()
        };
        set(&file, 0o600);
        set(dir.path(), 0o700);
        check_private(&file, false).unwrap();
        check_private(dir.path(), true).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            set(&file, mode);
            let e = check_private(&file, false).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{mode:o}: {e}");
        }
        set(&file, 0o400);
        check_private(&file, false).unwrap();
        set(dir.path(), 0o755);
        let e = check_private(dir.path(), true).unwrap_err().to_string();
        assert!(e.contains("chmod 700") && e.contains("0755"), "{e}");
        set(dir.path(), 0o700);
    }
}
