//! Renewing early when the CA withdraws a scope from the agent's own
//! certificate ([`AgentConfig::follow_withdrawals`]): the runtime follows
//! the CA's feed (one long poll, anonymous: the feed names serials, not
//! agents) and wakes the renewal loop when a withdrawal names the current
//! certificate's serial. The next certificate carries the registration's
//! scopes as they are now.

use super::*;
use crate::wire::{FeedSnapshot, RevocationPage, ScopeChange, ScopeEvent};

/// How long each poll asks the CA to wait.
const POLL_WAIT_SECS: u64 = 20;

/// Whether `events` withdraw a scope from the certificate `serial`.
pub(super) fn names(events: &[ScopeEvent], serial: &Serial) -> bool {
    events
        .iter()
        .any(|e| matches!(&e.change, ScopeChange::Withdrawn { serial: s, .. } if s == serial))
}

pub(super) async fn watch(shared: Arc<Shared>) {
    let mut since: Option<u64> = None;
    let mut failures: u32 = 0;
    // One client (and its kept-alive connection) for as long as the trust
    // bundle stays the same.
    let mut client: Option<(Arc<TrustBundle>, CaClient)> = None;
    loop {
        let bundle = shared.bundle.load_full();
        if !client
            .as_ref()
            .is_some_and(|(b, _)| Arc::ptr_eq(b, &bundle))
        {
            match CaClient::new(
                &shared.config.ca_url,
                CaTrust::Bundle((*bundle).clone()),
                None,
            ) {
                Ok(c) => client = Some((bundle, c)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow the CA's feed for withdrawn scopes");
                    return;
                }
            }
        }
        let (_, client) = client.as_ref().expect("set above");
        let asked = match since {
            // A snapshot may be larger than an API answer.
            None => client
                .download(
                    "/v1/revocations/snapshot",
                    None,
                    crate::wire::MAX_SNAPSHOT_BYTES,
                )
                .await
                .and_then(|body| {
                    serde_json::from_slice::<FeedSnapshot>(&body)
                        .map_err(|e| ClientError::InvalidResponse(format!("the snapshot: {e}")))
                })
                .map(|s| (s.scopes, s.latest)),
            Some(after) => client
                .call::<(), RevocationPage>(
                    reqwest::Method::GET,
                    &format!("/v1/revocations?since={after}&wait={POLL_WAIT_SECS}"),
                    None,
                    None,
                )
                .await
                .map(|p| (p.scopes, p.latest)),
        };
        // The certificate held when the answer came: it may have rotated
        // during a long poll.
        let serial = shared.current.load().serial.clone();
        let found = asked.map(|(events, latest)| (names(&events, &serial), latest));
        match found {
            Ok((withdrawn, latest)) => {
                failures = 0;
                since = Some(latest);
                if withdrawn {
                    tracing::info!(serial = %serial, "the CA withdrew a scope from this certificate; renewing now");
                    shared.renew_soon.notify_one();
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %e, failures, "the CA's feed is unreachable; retrying");
                }
                // After a gap, start again from the CA's state.
                since = None;
                tokio::time::sleep(retry_delay(failures, jitter(), None)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_withdrawal_of_this_certificate_wakes_the_renewal() {
        let mine = Serial::from_bytes(&[0x40, 1]).unwrap();
        let other = Serial::from_bytes(&[0x40, 2]).unwrap();
        let at = OffsetDateTime::UNIX_EPOCH;
        let withdrawn = |serial: &Serial| ScopeEvent {
            seq: 1,
            at,
            change: ScopeChange::Withdrawn {
                serial: serial.clone(),
                scopes: vec!["tickets:read".into()],
                not_after: at,
            },
        };
        let blocked = ScopeEvent {
            seq: 2,
            at,
            change: ScopeChange::Blocked {
                block: 2,
                scope: "tickets:read".into(),
                serials: Some(vec![mine.clone()]),
                target: None,
            },
        };
        assert!(names(&[withdrawn(&mine)], &mine));
        assert!(!names(&[withdrawn(&other)], &mine));
        // A block stands whatever the certificate: renewing would not help.
        assert!(!names(&[blocked], &mine));
        assert!(!names(&[], &mine));
    }
}
