//! Bootstrap and admin tokens: 256 random bits, shown once, stored only as
//! a SHA-256 hash.
//!
//! A token is a prefix naming its kind (so secret scanners and humans can
//! tell them apart) followed by 43 base64url characters.

use base64::Engine;

use crate::state::records::TokenHash;

/// Prefix of bootstrap tokens.
pub const BOOTSTRAP_PREFIX: &str = "agentca-bt-";
/// Prefix of admin tokens.
pub const ADMIN_PREFIX: &str = "agentca-admin-";
/// Longest token accepted as input; anything longer is refused unread.
pub const MAX_TOKEN_LEN: usize = 128;

/// A new token with the given prefix.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the operating system RNG failed");
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The hash under which a token is stored; `None` for input that cannot be
/// a token (too long, or characters no token has).
pub fn hash(token: &str) -> Option<TokenHash> {
    if token.is_empty()
        || token.len() > MAX_TOKEN_LEN
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Some(out)
}

/// The public id of a token: the first 8 bytes of its hash, as hex. Safe to
/// log; it does not reveal the token.
pub fn id(hash: &TokenHash) -> String {
    crate::hex(&hash[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_consistently() {
        let a = generate(BOOTSTRAP_PREFIX);
        let b = generate(BOOTSTRAP_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with(BOOTSTRAP_PREFIX));
        assert_eq!(a.len(), BOOTSTRAP_PREFIX.len() + 43);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(id(&hash(&a).unwrap()).len(), 16);
    }

    #[test]
    fn garbage_is_not_a_token() {
        assert_eq!(hash(""), None);
        assert_eq!(hash("has space"), None);
        assert_eq!(hash(&"a".repeat(MAX_TOKEN_LEN + 1)), None);
        assert_eq!(hash("ünïcode"), None);
    }
}
