//! The lifecycle of a bootstrap token: created for one registered agent,
//! redeemed up to its number of uses before it expires, voided when its
//! agent is revoked, pruned after the retention window.
//!
//! Pure functions of a [`TokenRecord`] and the time: nothing here reads or
//! writes the store.

use time::OffsetDateTime;

use super::records::TokenRecord;

/// Why a token may not be redeemed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// It was voided (its agent was revoked).
    #[error("the token was voided")]
    Voided,
    /// Its lifetime is over.
    #[error("the token has expired")]
    Expired,
    /// Every use was spent.
    #[error("the token has no uses left")]
    UsedUp,
}

/// Whether `token` may be redeemed at `now`: not voided, `now` strictly
/// before its expiry, and a use left. The first reason that holds is the
/// refusal, in that order.
pub fn redeemable(token: &TokenRecord, now: OffsetDateTime) -> Result<(), TokenRefusal> {
    if token.voided {
        return Err(TokenRefusal::Voided);
    }
    if now >= token.expires_at {
        return Err(TokenRefusal::Expired);
    }
    if remaining_uses(token) == 0 {
        return Err(TokenRefusal::UsedUp);
    }
    Ok(())
}

/// How many enrollments `token` still allows (ignoring expiry and voiding).
pub fn remaining_uses(token: &TokenRecord) -> u32 {
    token.max_uses.saturating_sub(token.used)
}

/// Spends one use of `token` at `now`, if it is [`redeemable`].
pub fn redeem(token: &mut TokenRecord, now: OffsetDateTime) -> Result<(), TokenRefusal> {
    redeemable(token, now)?;
    token.used += 1;
    Ok(())
}

/// Voids `token` because its agent is revoked at `now`, if it could still
/// be redeemed then; returns whether it changed. Tokens already spent,
/// expired or voided are left as they are, so that the record keeps why
/// each one stopped working.
pub fn void(token: &mut TokenRecord, now: OffsetDateTime) -> bool {
    if redeemable(token, now).is_err() {
        return false;
    }
    token.voided = true;
    true
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::state::tests::t0;

    fn token(uses: u32) -> TokenRecord {
        crate::state::tests::token("acme/prod/bot", uses)
    }

    #[test]
    fn a_token_is_redeemable_until_the_second_before_its_expiry() {
        let t = token(1);
        let expiry = t.expires_at;
        assert_eq!(redeemable(&t, expiry - Duration::seconds(1)), Ok(()));
        assert_eq!(redeemable(&t, expiry), Err(TokenRefusal::Expired));
        assert_eq!(
            redeemable(&t, expiry + Duration::seconds(1)),
            Err(TokenRefusal::Expired)
        );
    }

    #[test]
    fn a_token_redeems_exactly_its_uses() {
        let mut t = token(3);
        for left in (0..3).rev() {
            assert_eq!(redeem(&mut t, t0()), Ok(()));
            assert_eq!(remaining_uses(&t), left);
        }
        assert_eq!(redeem(&mut t, t0()), Err(TokenRefusal::UsedUp));
        assert_eq!(t.used, 3, "a refused redemption spends nothing");
    }

    #[test]
    fn a_voided_token_is_refused_first_whatever_else_holds() {
        let mut t = token(1);
        t.voided = true;
        t.used = 1;
        assert_eq!(
            redeemable(&t, t.expires_at + Duration::seconds(1)),
            Err(TokenRefusal::Voided)
        );
    }

    #[test]
    fn an_expired_token_is_expired_before_it_is_used_up() {
        let mut t = token(1);
        t.used = 1;
        assert_eq!(redeemable(&t, t.expires_at), Err(TokenRefusal::Expired));
    }

    #[test]
    fn revocation_voids_only_tokens_that_could_still_be_redeemed() {
        let mut live = token(2);
        assert!(void(&mut live, t0()));
        assert!(live.voided);
        assert!(!void(&mut live, t0()), "voiding twice changes nothing");

        let mut spent = token(1);
        spent.used = 1;
        assert!(!void(&mut spent, t0()));
        assert!(!spent.voided);

        let mut expired = token(1);
        let at = expired.expires_at;
        assert!(!void(&mut expired, at));
        assert!(!expired.voided);
        let mut last_second = token(1);
        assert!(void(&mut last_second, at - Duration::seconds(1)));
    }
}
