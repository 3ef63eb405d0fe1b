//! Console sessions: an admin token exchanged for a random session id in
//! a `__Host-` cookie (`HttpOnly; Secure; SameSite=Strict; Path=/`, which
//! no sibling domain can set or shadow). The session keeps the token's
//! hash, as the store does, never the token; each request authenticates
//! with it again, so that an admin revoked while logged in is out at its
//! next click. Sessions end after [`IDLE`] without a request, [`LONGEST`]
//! after the login, or at logout; an admin has at most [`PER_ADMIN`], the
//! oldest giving way.
//! They are this replica's: behind a load balancer, keep a console user on
//! one replica (or log in again).

use std::collections::HashMap;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

use crate::authority::AdminKey;

/// A session ends after this long without a request…
pub const IDLE: Duration = Duration::minutes(15);
/// …and this long after the login, whatever happens.
pub const LONGEST: Duration = Duration::hours(8);
/// Most sessions at once; a login beyond them is refused until some end.
pub const MAX_SESSIONS: usize = 1024;
/// Most sessions of one admin token: one admin cannot fill the table.
pub const PER_ADMIN: usize = 8;

/// The session cookie's name.
pub const COOKIE: &str = "__Host-agentca_session";
/// The login form's own anti-forgery cookie (double submit: there is no
/// session yet to hold its token).
pub const LOGIN_COOKIE: &str = "__Host-agentca_login";

/// One logged-in admin.
#[derive(Clone)]
pub struct Session {
    /// The key of the admin token it logged in with.
    pub admin: AdminKey,
    /// The token every form of the session carries.
    pub csrf: String,
    started: OffsetDateTime,
    seen: OffsetDateTime,
}

/// Every session of this process, by the SHA-256 of its id (a memory dump
/// gives neither usable cookies nor tokens).
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

/// 32 random bytes, base64url.
pub fn random_id() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the operating system RNG failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn key(id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    agentca::hex(digest.as_ref())
}

/// Whether a session begun at `started` and last used at `seen` is over
/// at `now`.
pub fn expired(started: OffsetDateTime, seen: OffsetDateTime, now: OffsetDateTime) -> bool {
    now - seen >= IDLE || now - started >= LONGEST
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

impl Sessions {
    /// A new session for the admin of `admin`: its id (the
    /// cookie's value), or `None` when [`MAX_SESSIONS`] are open. The
    /// admin's oldest session ends if it has [`PER_ADMIN`] already.
    pub fn start(&self, admin: AdminKey, now: OffsetDateTime) -> Option<String> {
        let mut sessions = self.lock();
        sessions.retain(|_, s| !expired(s.started, s.seen, now));
        let mut mine: Vec<(OffsetDateTime, String)> = sessions
            .iter()
            .filter(|(_, s)| s.admin == admin)
            .map(|(k, s)| (s.started, k.clone()))
            .collect();
        mine.sort();
        for (_, k) in mine.iter().take((mine.len() + 1).saturating_sub(PER_ADMIN)) {
            sessions.remove(k);
        }
        if sessions.len() >= MAX_SESSIONS {
            return None;
        }
        let id = random_id();
        sessions.insert(
            key(&id),
            Session {
                admin,
                csrf: random_id(),
                started: now,
                seen: now,
            },
        );
        Some(id)
    }

    /// The session of cookie value `id`, if it is open at `now` (which
    /// counts as its latest use).
    pub fn get(&self, id: &str, now: OffsetDateTime) -> Option<Session> {
        let mut sessions = self.lock();
        let k = key(id);
        let session = sessions.get_mut(&k)?;
        if expired(session.started, session.seen, now) {
            sessions.remove(&k);
            return None;
        }
        session.seen = now;
        Some(session.clone())
    }

    /// Ends the session of cookie value `id`.
    pub fn end(&self, id: &str) {
        self.lock().remove(&key(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `HttpOnly; Secure; SameSite=Strict; Path=/`
/// (what a `__Host-` name requires), removed at once when `value` is
/// empty.
pub fn set_cookie(name: &str, value: &str) -> String {
    let age = if value.is_empty() {
        0
    } else {
        LONGEST.whole_seconds()
    };
    format!("{name}={value}; Path=/; Max-Age={age}; HttpOnly; Secure; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minutes: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::minutes(minutes)
    }

    #[test]
    fn a_session_ends_when_idle_too_long_or_open_too_long() {
        assert!(!expired(t(0), t(0), t(14)));
        assert!(expired(t(0), t(0), t(15)));
        assert!(!expired(t(0), t(470), t(479)));
        assert!(expired(t(0), t(479), t(480)));
    }

    #[test]
    fn sessions_start_are_found_by_their_id_and_end() {
        let sessions = Sessions::default();
        let id = sessions.start(AdminKey::from_bytes([1; 32]), t(0)).unwrap();
        let other = sessions.start(AdminKey::from_bytes([1; 32]), t(0)).unwrap();
        assert_ne!(id, other);
        let s = sessions.get(&id, t(10)).unwrap();
        assert_eq!(s.admin, AdminKey::from_bytes([1; 32]));
        assert_ne!(s.csrf, sessions.get(&other, t(10)).unwrap().csrf);
        // Used at 10, so still open at 24; not at 40.
        assert!(sessions.get(&id, t(24)).is_some());
        assert!(sessions.get(&id, t(40)).is_none());
        assert!(sessions.get("made-up", t(0)).is_none());
        sessions.end(&other);
        assert!(sessions.get(&other, t(11)).is_none());
    }

    #[test]
    fn sessions_are_bounded_in_all_and_per_admin() {
        let sessions = Sessions::default();
        // One admin: its oldest session gives way to its newest.
        let first = sessions.start(AdminKey::from_bytes([7; 32]), t(0)).unwrap();
        let later: Vec<String> = (1..=PER_ADMIN as i64)
            .map(|i| sessions.start(AdminKey::from_bytes([7; 32]), t(i)).unwrap())
            .collect();
        assert!(sessions.get(&first, t(9)).is_none());
        assert!(later.iter().all(|id| sessions.get(id, t(9)).is_some()));
        // Many admins: the table fills, then refuses…
        for i in 0..MAX_SESSIONS - PER_ADMIN {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(i as u64).to_be_bytes());
            sessions.start(AdminKey::from_bytes(hash), t(9)).unwrap();
        }
        assert!(sessions
            .start(AdminKey::from_bytes([9; 32]), t(10))
            .is_none());
        // …until expired ones make room.
        assert!(sessions
            .start(AdminKey::from_bytes([9; 32]), t(30))
            .is_some());
    }

    #[test]
    fn cookies_are_read_and_set_strictly() {
        assert_eq!(
            cookie("a=1; __Host-agentca_session=xyz; b=2", COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie("agentca_session=1", COOKIE), None);
        let set = set_cookie(COOKIE, "v");
        assert!(set.starts_with("__Host-"));
        for part in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/;"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(set_cookie(COOKIE, "").contains("Max-Age=0"));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd"));
    }
}
