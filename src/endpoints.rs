//! Several CA replicas behind one client: the URLs to try, in order, and
//! which one answered last (for the agent side and the revocation feed).
//!
//! A CA URL may name several replicas, separated by commas
//! (`https://ca-1:8443,https://ca-2:8443`), as `AGENTCA_URL` does. A
//! request goes first to the replica that answered last; on a connection
//! error, a timeout or a 5xx answer it moves on to the next, and only when
//! every replica failed does the caller see the failure (and retry with its
//! own backoff). A DNS name with several addresses behind one URL needs
//! nothing of this: the connector tries each address in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Most replicas one client knows.
pub const MAX_ENDPOINTS: usize = 16;

/// The base URLs of a CA's replicas.
#[derive(Debug)]
pub struct Endpoints {
    urls: Vec<String>,
    preferred: AtomicUsize,
}

impl Endpoints {
    /// The replicas of `list`: one `https://host[:port]` URL, or several
    /// separated by commas. `Err` names the first that is not one.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut urls = Vec::new();
        for url in list.split(',').map(str::trim) {
            let base = url.trim_end_matches('/');
            let parsed = reqwest::Url::parse(base).map_err(|_| url.to_owned())?;
            if parsed.scheme() != "https"
                || parsed.host().is_none()
                || parsed.query().is_some()
                || parsed.fragment().is_some()
            {
                return Err(url.to_owned());
            }
            if !urls.iter().any(|u| u == base) {
                urls.push(base.to_owned());
            }
        }
        if urls.len() > MAX_ENDPOINTS {
            return Err(format!("{list} (more than {MAX_ENDPOINTS} URLs)"));
        }
        Ok(Self {
            urls,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The replica that answered last (the first, until one has).
    pub fn preferred(&self) -> &str {
        &self.urls[self.preferred.load(Ordering::Relaxed) % self.urls.len()]
    }

    /// Every replica, the one that answered last first, then the others in
    /// the order given.
    pub fn in_order(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        let first = self.preferred.load(Ordering::Relaxed) % self.urls.len();
        (0..self.urls.len())
            .map(move |i| (first + i) % self.urls.len())
            .map(|i| (i, self.urls[i].as_str()))
    }

    /// Notes that replica `index` answered.
    pub fn answered(&self, index: usize) {
        self.preferred.store(index, Ordering::Relaxed);
    }

    /// How many replicas there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Never: a list parses to at least one URL.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }
}

/// Whether a request that failed this way may be sent to another replica:
/// it did not reach a replica that could answer (connection refused or
/// reset, a timeout) or the replica could not serve it (a 5xx).
pub fn worth_another_replica(outcome: &Result<reqwest::StatusCode, &reqwest::Error>) -> bool {
    match outcome {
        Ok(status) => status.is_server_error(),
        // A body that does not decode is the replica's answer, not a
        // failure to reach it.
        Err(e) => !e.is_decode() && !e.is_builder() && !e.is_redirect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_replicas_parses_and_the_last_one_that_answered_goes_first() {
        let e = Endpoints::parse("https://a:1/, https://b:2,https://a:1,https://c").unwrap();
        assert_eq!(e.len(), 3);
        let order = |e: &Endpoints| e.in_order().map(|(_, u)| u.to_owned()).collect::<Vec<_>>();
        assert_eq!(order(&e), ["https://a:1", "https://b:2", "https://c"]);
        e.answered(2);
        assert_eq!(e.preferred(), "https://c");
        assert_eq!(order(&e), ["https://c", "https://a:1", "https://b:2"]);
        for bad in [
            "",
            "http://a",
            "https://a,",
            "https://a?x=1",
            "a,b",
            "https://",
        ] {
            assert!(Endpoints::parse(bad).is_err(), "{bad}");
        }
        let many = vec!["https://a"; 1]
            .into_iter()
            .chain((0..MAX_ENDPOINTS).map(|_| "https://b"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(Endpoints::parse(&many).is_ok(), "duplicates count once");
        let many: Vec<String> = (0..=MAX_ENDPOINTS)
            .map(|i| format!("https://h{i}"))
            .collect();
        assert!(Endpoints::parse(&many.join(",")).is_err());
    }

    #[test]
    fn connection_failures_and_5xx_move_on_and_answers_do_not() {
        use reqwest::StatusCode;
        assert!(worth_another_replica(&Ok(StatusCode::SERVICE_UNAVAILABLE)));
        assert!(worth_another_replica(&Ok(StatusCode::BAD_GATEWAY)));
        assert!(!worth_another_replica(&Ok(StatusCode::CONFLICT)));
        assert!(!worth_another_replica(&Ok(StatusCode::UNAUTHORIZED)));
        assert!(!worth_another_replica(&Ok(StatusCode::OK)));
    }
}
