//! Which signed CRL is the one to serve.
//!
//! Every CA replica signs CRLs, each with a number from one store sequence,
//! and publishes them to the store; every replica serves the newest
//! published one. A CRL replaces the published one only if it has a
//! greater number (RFC 5280 §5.2.3: numbers only grow for a CRL's scope)
//! and lists every revocation the published one does: a replica that has
//! not yet heard of another's revocation must not publish a CRL without it,
//! whatever its number.
//!
//! A pure function of the two CRLs' numbers and coverage.

/// What decides between two CRLs of one issuer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// Its CRL number.
    pub number: u64,
    /// It lists every revocation up to this feed sequence number (less
    /// those of certificates that have expired).
    pub covers: u64,
}

/// Whether `candidate` replaces `published` (none yet: it does).
pub fn supersedes(candidate: Coverage, published: Option<Coverage>) -> bool {
    published.is_none_or(|p| candidate.number > p.number && candidate.covers >= p.covers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crl(number: u64, covers: u64) -> Coverage {
        Coverage { number, covers }
    }

    #[test]
    fn a_crl_replaces_the_published_one_only_if_newer_and_no_less_complete() {
        assert!(supersedes(crl(1, 0), None));
        assert!(supersedes(crl(5, 3), Some(crl(4, 3))));
        assert!(supersedes(crl(5, 4), Some(crl(4, 3))));
        // An older or equal number never does.
        assert!(!supersedes(crl(4, 9), Some(crl(4, 3))));
        assert!(!supersedes(crl(3, 9), Some(crl(4, 3))));
        // A newer number without a revocation the published one lists.
        assert!(!supersedes(crl(9, 2), Some(crl(4, 3))));
    }
}
