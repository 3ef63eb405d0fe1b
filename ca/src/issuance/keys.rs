//! CA keys: generation, and encryption at rest.
//!
//! CA private keys are stored as standard encrypted PKCS#8
//! (`-----BEGIN ENCRYPTED PRIVATE KEY-----`, PBES2 with scrypt and
//! AES-256-CBC), so an operator can move them to other tools or an HSM with
//! `openssl pkey`. The passphrase comes from a file or the environment and
//! never reaches a log line.

use std::fmt;
use std::path::Path;

use agentca::client::KeyAlgorithm;
use pkcs8::der::Decode;
use pkcs8::pkcs5::{pbes2, scrypt};
use pkcs8::{EncryptedPrivateKeyInfo, LineEnding, PrivateKeyInfo};
use rcgen::KeyPair;

/// Shortest passphrase accepted, in bytes.
pub const MIN_PASSPHRASE_LEN: usize = 12;
/// Longest passphrase file read, in bytes.
const MAX_PASSPHRASE_LEN: usize = 4096;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Key generation failed.
    #[error("could not generate a {0} key: {1}")]
    Generate(KeyAlgorithm, String),
    /// Encryption failed.
    #[error("could not encrypt the key: {0}")]
    Encrypt(String),
    /// The key file is not an encrypted PKCS#8 key.
    #[error("{0} is not an encrypted PKCS#8 private key")]
    NotEncrypted(String),
    /// Wrong passphrase, or a damaged key file.
    #[error("could not decrypt {0}: wrong passphrase, or the file is damaged")]
    Decrypt(String),
    /// The decrypted key is not usable.
    #[error("{0} does not hold a usable key: {1}")]
    Unusable(String, String),
    /// The passphrase is missing, too short or unreadable.
    #[error("passphrase: {0}")]
    Passphrase(String),
}

/// The passphrase protecting the CA keys.
#[derive(Clone)]
pub struct Passphrase(Vec<u8>);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Drop for Passphrase {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

impl Passphrase {
    /// A passphrase from bytes; at least [`MIN_PASSPHRASE_LEN`] of them.
    pub fn new(bytes: Vec<u8>) -> Result<Self, KeyError> {
        if bytes.len() < MIN_PASSPHRASE_LEN {
            return Err(KeyError::Passphrase(format!(
                "it is {} bytes; at least {MIN_PASSPHRASE_LEN} are required",
                bytes.len()
            )));
        }
        Ok(Self(bytes))
    }

    /// Reads a passphrase file: its content without the final line break.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| KeyError::Passphrase(format!("cannot read {}: {e}", path.display())))?;
        if meta.len() > MAX_PASSPHRASE_LEN as u64 {
            return Err(KeyError::Passphrase(format!(
                "{} is larger than {MAX_PASSPHRASE_LEN} bytes",
                path.display()
            )));
        }
        let mut bytes = std::fs::read(path)
            .map_err(|e| KeyError::Passphrase(format!("cannot read {}: {e}", path.display())))?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        Self::new(bytes)
    }

    /// A new random passphrase (256 bits, base64url), for local use.
    pub fn generate() -> Self {
        use base64::Engine;
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("the operating system RNG failed");
        Self(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(bytes)
                .into_bytes(),
        )
    }

    /// The passphrase bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The rcgen signature algorithm for a key algorithm.
pub fn signature_algorithm(alg: KeyAlgorithm) -> &'static rcgen::SignatureAlgorithm {
    match alg {
        KeyAlgorithm::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
    }
}

/// A new key pair.
pub fn generate(alg: KeyAlgorithm) -> Result<KeyPair, KeyError> {
    KeyPair::generate_for(signature_algorithm(alg))
        .map_err(|e| KeyError::Generate(alg, e.to_string()))
}

/// The key as encrypted PKCS#8 PEM.
pub fn encrypt_pem(key: &KeyPair, passphrase: &Passphrase) -> Result<String, KeyError> {
    let der = key.serialize_der();
    let info = PrivateKeyInfo::from_der(&der).map_err(|e| KeyError::Encrypt(e.to_string()))?;
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| KeyError::Encrypt("RNG failure".into()))?;
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| KeyError::Encrypt("RNG failure".into()))?;
    // scrypt N=2^14, r=8, p=1 (16 MiB per guess): OpenSSL's own default for
    // `openssl pkcs8 -scrypt`. N=2^15 would exceed OpenSSL's 32 MiB limit on
    // PBE memory, and the keys must stay readable by `openssl pkey`.
    let params = scrypt::Params::new(14, 8, 1, 32).map_err(|e| KeyError::Encrypt(e.to_string()))?;
    let pbes2 = pbes2::Parameters::scrypt_aes256cbc(params, &salt, &iv)
        .map_err(|e| KeyError::Encrypt(e.to_string()))?;
    let doc = info
        .encrypt_with_params(pbes2, passphrase.as_bytes())
        .map_err(|e| KeyError::Encrypt(e.to_string()))?;
    let pem = doc
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|e| KeyError::Encrypt(e.to_string()))?;
    Ok(pem.to_string())
}

/// Decrypts an encrypted PKCS#8 PEM key; `name` says which, in errors.
pub fn decrypt_pem(
    pem_text: &str,
    passphrase: &Passphrase,
    name: &str,
) -> Result<KeyPair, KeyError> {
    let block = pem::parse(pem_text).map_err(|_| KeyError::NotEncrypted(name.into()))?;
    if block.tag() != "ENCRYPTED PRIVATE KEY" {
        return Err(KeyError::NotEncrypted(name.into()));
    }
    let info = EncryptedPrivateKeyInfo::from_der(block.contents())
        .map_err(|_| KeyError::NotEncrypted(name.into()))?;
    let der = info
        .decrypt(passphrase.as_bytes())
        .map_err(|_| KeyError::Decrypt(name.into()))?;
    // A wrong passphrase that happens to unpad correctly yields garbage that
    // does not parse as a key: report it as a decryption failure too.
    KeyPair::try_from(der.as_bytes()).map_err(|_| KeyError::Decrypt(name.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_encryption_with_the_right_passphrase_only() {
        for alg in [
            KeyAlgorithm::P256,
            KeyAlgorithm::P384,
            KeyAlgorithm::Ed25519,
        ] {
            let key = generate(alg).unwrap();
            let pass = Passphrase::new(b"correct horse battery".to_vec()).unwrap();
            let pem = encrypt_pem(&key, &pass).unwrap();
            assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
            let back = decrypt_pem(&pem, &pass, "test key").unwrap();
            assert_eq!(back.public_key_raw(), key.public_key_raw());
            let wrong = Passphrase::new(b"wrong horse battery".to_vec()).unwrap();
            assert!(matches!(
                decrypt_pem(&pem, &wrong, "test key"),
                Err(KeyError::Decrypt(_))
            ));
        }
    }

    #[test]
    fn short_passphrases_and_plain_keys_are_refused() {
        assert!(Passphrase::new(b"short".to_vec()).is_err());
        let key = generate(KeyAlgorithm::P256).unwrap();
        let pass = Passphrase::generate();
        assert!(matches!(
            decrypt_pem(&key.serialize_pem(), &pass, "plain"),
            Err(KeyError::NotEncrypted(_))
        ));
    }
}
