//! Scopes: action-shaped permissions (`tickets:read`) that an admin grants
//! an agent at registration and the CA writes into each of its
//! certificates, for services to check with
//! [`PeerIdentity::require_scope`](crate::verify::PeerIdentity::require_scope).
//!
//! # The certificate extension
//!
//! Non-critical, present only when the agent has scopes:
//!
//! ```text
//! id-agentca-scopes OBJECT IDENTIFIER ::=
//!     { joint-iso-itu-t(2) uuid(25) 163477060796012666147945439712647624935 }
//!     -- 2.25.<the UUID 7afc8962-993e-4d9c-9aaa-e2950b94b8e7 as an integer>
//!
//! AgentScopes ::= SEQUENCE SIZE (1..32) OF UTF8String (SIZE (1..64))
//!     -- each scope once, in ascending byte order
//! ```
//!
//! An OID under the 2.25 arc is derived from a UUID (ITU-T X.667) and
//! needs no registration. Software that does not know the extension
//! ignores it, as it is not critical.
//!
//! # Scope syntax
//!
//! 1 to 64 characters of `a-z`, `0-9`, `.`, `_`, `-`, `*` and `:`, neither
//! starting nor ending with `:`, e.g. `tickets:read` or `db.orders:write`.
//! A scope is an opaque string to agentca: `tickets:*` matches only a
//! required scope spelled `tickets:*`.

/// The extension's OID, dotted.
pub const SCOPES_OID: &str = "2.25.163477060796012666147945439712647624935";

/// The extension's OID as its DER content octets (without tag and length).
pub const SCOPES_OID_DER: [u8; 20] = [
    0x69, 0x81, 0xf5, 0xfc, 0xc4, 0xd8, 0xd3, 0x93, 0xf2, 0xb6, 0xb9, 0x9a, 0xd5, 0xb8, 0xd2, 0xd0,
    0xdc, 0xd2, 0xf1, 0x67,
];

/// Most scopes of one agent.
pub const MAX_SCOPES: usize = 32;
/// Longest scope, in bytes.
pub const MAX_SCOPE_LEN: usize = 64;

/// Why scopes were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A scope breaks the syntax.
    #[error("scope {0:?}: use 1 to {max} characters of a-z, 0-9, '.', '_', '-', '*', ':', not starting or ending with ':'", max = MAX_SCOPE_LEN)]
    Invalid(String),
    /// Too many scopes.
    #[error("{0} scopes: at most {max}", max = MAX_SCOPES)]
    TooMany(usize),
    /// The extension's DER is malformed.
    #[error("the scopes extension is malformed: {0}")]
    Malformed(&'static str),
}

/// Checks one scope's syntax.
pub fn check_scope(scope: &str) -> Result<(), ScopeError> {
    let ok = !scope.is_empty()
        && scope.len() <= MAX_SCOPE_LEN
        && !scope.starts_with(':')
        && !scope.ends_with(':')
        && scope
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-*:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ScopeError::Invalid(scope.chars().take(80).collect()))
    }
}

/// Checks `scopes` and returns them sorted, each once.
pub fn normalize(scopes: &[String]) -> Result<Vec<String>, ScopeError> {
    for s in scopes {
        check_scope(s)?;
    }
    let mut out = scopes.to_vec();
    out.sort();
    out.dedup();
    if out.len() > MAX_SCOPES {
        return Err(ScopeError::TooMany(out.len()));
    }
    Ok(out)
}

/// DER of `AgentScopes` for normalized, non-empty `scopes`.
pub fn encode(scopes: &[String]) -> Vec<u8> {
    let mut body = Vec::new();
    for s in scopes {
        body.push(0x0c); // UTF8String
        push_len(&mut body, s.len());
        body.extend_from_slice(s.as_bytes());
    }
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend(body);
    out
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // 32 scopes of 64 bytes stay below 65536.
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend([0x81, len as u8]),
        _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
}

/// One DER TLV of `input`: (tag, content, rest). Definite, minimal
/// lengths up to two bytes only.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), ScopeError> {
    let (&tag, rest) = input
        .split_first()
        .ok_or(ScopeError::Malformed("truncated"))?;
    let (&first, rest) = rest
        .split_first()
        .ok_or(ScopeError::Malformed("truncated"))?;
    let (len, rest) = match first {
        0..=0x7f => (first as usize, rest),
        0x81 => match rest.split_first() {
            Some((&l, rest)) if l >= 0x80 => (l as usize, rest),
            _ => return Err(ScopeError::Malformed("non-minimal length")),
        },
        0x82 => match rest {
            [hi, lo, rest @ ..] if *hi != 0 => (((*hi as usize) << 8) | *lo as usize, rest),
            _ => return Err(ScopeError::Malformed("non-minimal length")),
        },
        _ => return Err(ScopeError::Malformed("unsupported length")),
    };
    if rest.len() < len {
        return Err(ScopeError::Malformed("truncated"));
    }
    let (content, rest) = rest.split_at(len);
    Ok((tag, content, rest))
}

/// Parses the extension's value, holding it to the same rules the CA
/// issues by (syntax, count, order).
pub fn decode(der: &[u8]) -> Result<Vec<String>, ScopeError> {
    let (tag, mut body, rest) = tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(ScopeError::Malformed("not a single SEQUENCE"));
    }
    let mut scopes: Vec<String> = Vec::new();
    while !body.is_empty() {
        let (tag, content, rest) = tlv(body)?;
        if tag != 0x0c {
            return Err(ScopeError::Malformed("an element is not a UTF8String"));
        }
        let scope = std::str::from_utf8(content)
            .map_err(|_| ScopeError::Malformed("a scope is not UTF-8"))?;
        check_scope(scope)?;
        if scopes.last().is_some_and(|last| last.as_str() >= scope) {
            return Err(ScopeError::Malformed("scopes are not sorted and unique"));
        }
        if scopes.len() == MAX_SCOPES {
            return Err(ScopeError::TooMany(MAX_SCOPES + 1));
        }
        scopes.push(scope.to_owned());
        body = rest;
    }
    if scopes.is_empty() {
        return Err(ScopeError::Malformed("empty"));
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn oid_der_matches_the_dotted_oid() {
        // 2.25.N: first octet 2*40+25, then N in base 128.
        let n: u128 = SCOPES_OID.strip_prefix("2.25.").unwrap().parse().unwrap();
        let mut arc = vec![(n & 0x7f) as u8];
        let mut rest = n >> 7;
        while rest > 0 {
            arc.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        arc.push(0x69);
        arc.reverse();
        assert_eq!(arc, SCOPES_OID_DER);
        assert_eq!(
            n,
            u128::from_str_radix("7afc8962993e4d9c9aaae2950b94b8e7", 16).unwrap()
        );
    }

    #[test]
    fn syntax() {
        for good in [
            "tickets:read",
            "db.orders:write",
            "a",
            "x_y-z:*",
            &"a".repeat(64),
        ] {
            check_scope(good).unwrap();
        }
        for bad in [
            "",
            ":read",
            "read:",
            "Tickets:read",
            "a b",
            "ü",
            &"a".repeat(65),
            "a/b",
        ] {
            assert!(check_scope(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            normalize(&strings(&["b:x", "a:y", "b:x"])).unwrap(),
            strings(&["a:y", "b:x"])
        );
        let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        assert_eq!(normalize(&many), Err(ScopeError::TooMany(33)));
    }

    #[test]
    fn round_trip() {
        for scopes in [
            strings(&["tickets:read"]),
            strings(&["a:b", "c:d", "e:f"]),
            // A body of 128 to 255 bytes: a one-byte long-form length.
            (0..3).map(|i| format!("{i}{}", "y".repeat(59))).collect(),
            (0..32)
                .map(|i| format!("{i:02}{}", "x".repeat(62)))
                .collect(),
        ] {
            assert_eq!(decode(&encode(&scopes)).unwrap(), scopes);
        }
    }

    #[test]
    fn malformed_values_are_refused_for_what_they_are() {
        let malformed = |why| Err(ScopeError::Malformed(why));
        let good = encode(&strings(&["a:b", "c:d"]));
        assert_eq!(decode(&good[..good.len() - 1]), malformed("truncated"));
        assert_eq!(decode(&[]), malformed("truncated"));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), malformed("not a single SEQUENCE"));
        assert_eq!(
            decode(&[0x31, 0x03, 0x0c, 0x01, b'a']),
            malformed("not a single SEQUENCE"),
            "a SET"
        );
        for order in [["c:d", "a:b"], ["a:b", "a:b"]] {
            assert_eq!(
                decode(&encode(&strings(&order))),
                malformed("scopes are not sorted and unique")
            );
        }
        assert_eq!(decode(&[0x30, 0x00]), malformed("empty"));
        assert_eq!(
            decode(&[0x30, 0x03, 0x13, 0x01, b'a']),
            malformed("an element is not a UTF8String"),
            "a PrintableString"
        );
        assert_eq!(
            decode(&[0x30, 0x03, 0x0c, 0x01, 0xff]),
            malformed("a scope is not UTF-8")
        );
        assert_eq!(
            decode(&[0x30, 0x03, 0x0c, 0x01, b'A']),
            Err(ScopeError::Invalid("A".into()))
        );
        for non_minimal in [
            &[0x30, 0x81, 0x03, 0x0c, 0x01, b'a'][..],
            &[0x30, 0x82, 0x00, 0x03, 0x0c, 0x01, b'a'][..],
        ] {
            assert_eq!(decode(non_minimal), malformed("non-minimal length"));
        }
        assert_eq!(
            decode(&[0x30, 0x83, 0x00, 0x00, 0x03, 0x0c, 0x01, b'a']),
            malformed("unsupported length")
        );
        // One scope more than allowed, each valid and in order.
        let mut body = Vec::new();
        for i in 0..=MAX_SCOPES {
            body.extend([0x0c, 3]);
            body.extend(format!("s{i:02}").as_bytes());
        }
        let mut too_many = vec![0x30];
        push_len(&mut too_many, body.len());
        too_many.extend(body);
        assert_eq!(decode(&too_many), Err(ScopeError::TooMany(MAX_SCOPES + 1)));
    }
}
