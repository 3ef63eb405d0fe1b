//! The identity rules, case by case.

use super::*;

const GOOD: &str = "spiffe://example.org/tenant/acme/env/prod/agent/billing-bot";

fn err(id: &str) -> IdError {
    AgentId::parse(id).expect_err(id)
}

#[test]
fn a_well_formed_id_round_trips() {
    let id = AgentId::parse(GOOD).unwrap();
    assert_eq!(id.trust_domain().as_str(), "example.org");
    assert_eq!(id.tenant().as_str(), "acme");
    assert_eq!(id.env().as_str(), "prod");
    assert_eq!(id.agent().as_str(), "billing-bot");
    assert_eq!(id.to_string(), GOOD);
    assert_eq!(id.path_key(), "acme/prod/billing-bot");
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, format!("\"{GOOD}\""));
    assert_eq!(serde_json::from_str::<AgentId>(&json).unwrap(), id);
}

#[test]
fn names_may_use_dots_dashes_underscores_and_digits() {
    let id = AgentId::parse("spiffe://a_b-c.d/tenant/0t/env/e.v_1/agent/a-b.c_d9").unwrap();
    assert_eq!(id.env().as_str(), "e.v_1");
    assert!(AgentId::new("td", "t", "e", &"a".repeat(63)).is_ok());
}

#[test]
fn empty_input_is_refused() {
    assert_eq!(err(""), IdError::Empty);
}

#[test]
fn empty_parts_are_refused() {
    assert_eq!(
        err("spiffe:///tenant/t/env/e/agent/a"),
        IdError::EmptyPart(Part::TrustDomain)
    );
    assert_eq!(
        err("spiffe://td/tenant//env/e/agent/a"),
        IdError::EmptySegment
    );
    assert_eq!(
        err("spiffe://td/tenant/t/env/e/agent/"),
        IdError::EmptySegment
    );
    assert_eq!(
        AgentId::new("td", "", "e", "a").unwrap_err(),
        IdError::EmptyPart(Part::Tenant)
    );
    assert_eq!(
        AgentId::new("td", "t", "", "a").unwrap_err(),
        IdError::EmptyPart(Part::Env)
    );
    assert_eq!(
        AgentId::new("td", "t", "e", "").unwrap_err(),
        IdError::EmptyPart(Part::Agent)
    );
    assert_eq!(
        AgentId::new("", "t", "e", "a").unwrap_err(),
        IdError::EmptyPart(Part::TrustDomain)
    );
}

#[test]
fn uppercase_is_refused_everywhere() {
    assert_eq!(
        err("SPIFFE://td/tenant/t/env/e/agent/a"),
        IdError::WrongScheme
    );
    assert_eq!(
        err("spiffe://TD/tenant/t/env/e/agent/a"),
        IdError::Uppercase(Part::TrustDomain)
    );
    assert_eq!(
        err("spiffe://td/tenant/T/env/e/agent/a"),
        IdError::Uppercase(Part::Tenant)
    );
    assert_eq!(
        err("spiffe://td/tenant/t/env/Prod/agent/a"),
        IdError::Uppercase(Part::Env)
    );
    assert_eq!(
        err("spiffe://td/tenant/t/env/e/agent/Bot"),
        IdError::Uppercase(Part::Agent)
    );
    assert_eq!(
        err("spiffe://td/Tenant/t/env/e/agent/a"),
        IdError::WrongShape
    );
}

#[test]
fn dot_segments_are_refused() {
    assert_eq!(
        err("spiffe://td/tenant/./env/e/agent/a"),
        IdError::DotSegment
    );
    assert_eq!(
        err("spiffe://td/tenant/t/env/../agent/a"),
        IdError::DotSegment
    );
    assert_eq!(
        err("spiffe://td/./tenant/t/env/e/agent/a"),
        IdError::DotSegment
    );
    assert_eq!(
        AgentId::new("td", "t", "e", "..").unwrap_err(),
        IdError::DotSegment
    );
    // A name may contain dots, but may not start with one.
    assert_eq!(
        err("spiffe://td/tenant/.t/env/e/agent/a"),
        IdError::BadStart(Part::Tenant)
    );
    assert_eq!(
        err("spiffe://td/tenant/t/env/e/agent/-a"),
        IdError::BadStart(Part::Agent)
    );
    assert_eq!(
        err("spiffe://td/tenant/t/env/_e/agent/a"),
        IdError::BadStart(Part::Env)
    );
}

#[test]
fn percent_encoding_is_refused() {
    assert_eq!(
        err("spiffe://td/tenant/t%41/env/e/agent/a"),
        IdError::PercentEncoded
    );
    assert_eq!(
        err("spiffe://t%64/tenant/t/env/e/agent/a"),
        IdError::PercentEncoded
    );
    assert_eq!(
        err("spiffe://td/tenant/t/env/e/agent/a%2Fb"),
        IdError::PercentEncoded
    );
}

#[test]
fn port_userinfo_query_and_fragment_are_refused() {
    assert_eq!(
        err("spiffe://td:8443/tenant/t/env/e/agent/a"),
        IdError::Port
    );
    assert_eq!(
        err("spiffe://user@td/tenant/t/env/e/agent/a"),
        IdError::Userinfo
    );
    assert_eq!(
        err("spiffe://user:pw@td/tenant/t/env/e/agent/a"),
        IdError::Userinfo
    );
    assert_eq!(
        err("spiffe://td/tenant/t/env/e/agent/a?x=1"),
        IdError::Query
    );
    assert_eq!(
        err("spiffe://td/tenant/t/env/e/agent/a#frag"),
        IdError::Fragment
    );
    assert_eq!(err("spiffe://td?/tenant/t/env/e/agent/a"), IdError::Query);
}

#[test]
fn other_schemes_are_refused() {
    assert_eq!(
        err("https://td/tenant/t/env/e/agent/a"),
        IdError::WrongScheme
    );
    assert_eq!(
        err("spiffe:/td/tenant/t/env/e/agent/a"),
        IdError::WrongScheme
    );
    assert_eq!(
        err("spiffe:td/tenant/t/env/e/agent/a"),
        IdError::WrongScheme
    );
    assert_eq!(err("td/tenant/t/env/e/agent/a"), IdError::WrongScheme);
    assert_eq!(
        err(" spiffe://td/tenant/t/env/e/agent/a"),
        IdError::WrongScheme
    );
}

#[test]
fn wrong_number_or_names_of_segments_are_refused() {
    for id in [
        "spiffe://td",
        "spiffe://td/tenant/t",
        "spiffe://td/tenant/t/env/e",
        "spiffe://td/tenant/t/env/e/agent",
        "spiffe://td/tenant/t/env/e/agent/a/extra",
        "spiffe://td/tenant/t/env/e/agent/a/x/y",
        "spiffe://td/tenants/t/env/e/agent/a",
        "spiffe://td/tenant/t/environment/e/agent/a",
        "spiffe://td/tenant/t/env/e/workload/a",
        "spiffe://td/env/e/tenant/t/agent/a",
    ] {
        assert_eq!(err(id), IdError::WrongShape, "{id}");
    }
    assert_eq!(err("spiffe://td/"), IdError::EmptySegment);
    assert_eq!(
        err("spiffe://td/tenant/t/env/e/agent/a/"),
        IdError::EmptySegment
    );
}

#[test]
fn characters_outside_the_allowed_set_are_refused() {
    assert_eq!(
        err("spiffe://td/tenant/t/env/e/agent/a b"),
        IdError::InvalidChar {
            part: Part::Agent,
            ch: ' '
        }
    );
    assert_eq!(
        err("spiffe://td/tenant/t+1/env/e/agent/a"),
        IdError::InvalidChar {
            part: Part::Tenant,
            ch: '+'
        }
    );
    assert_eq!(
        err("spiffe://tö/tenant/t/env/e/agent/a"),
        IdError::InvalidChar {
            part: Part::TrustDomain,
            ch: 'ö'
        }
    );
    assert_eq!(
        err("spiffe://td/tenant/t/env/é/agent/a"),
        IdError::InvalidChar {
            part: Part::Env,
            ch: 'é'
        }
    );
}

#[test]
fn over_long_parts_and_ids_are_refused() {
    let long = "a".repeat(64);
    assert_eq!(
        AgentId::new("td", &long, "e", "a").unwrap_err(),
        IdError::PartTooLong {
            part: Part::Tenant,
            len: 64,
            max: 63
        }
    );
    assert_eq!(
        err(&format!("spiffe://td/tenant/t/env/{long}/agent/a")),
        IdError::PartTooLong {
            part: Part::Env,
            len: 64,
            max: 63
        }
    );
    assert_eq!(
        err(&format!("spiffe://td/tenant/t/env/e/agent/{long}")),
        IdError::PartTooLong {
            part: Part::Agent,
            len: 64,
            max: 63
        }
    );
    let long_td = "d".repeat(256);
    assert_eq!(
        err(&format!("spiffe://{long_td}/tenant/t/env/e/agent/a")),
        IdError::PartTooLong {
            part: Part::TrustDomain,
            len: 256,
            max: 255
        }
    );
    assert!(AgentId::new(&"d".repeat(255), "t", "e", "a").is_ok());
    let huge = format!("spiffe://td/tenant/t/env/e/agent/{}", "a".repeat(2048));
    assert_eq!(err(&huge), IdError::TooLong(huge.len()));
}

#[test]
fn deserializing_checks_the_id() {
    let bad = "\"spiffe://td/tenant/T/env/e/agent/a\"";
    assert!(serde_json::from_str::<AgentId>(bad).is_err());
}

#[test]
fn instance_ids_are_random_lowercase_hex() {
    let a = InstanceId::random();
    let b = InstanceId::random();
    assert_ne!(a, b);
    assert_eq!(InstanceId::parse(a.as_str()).unwrap(), a);
    assert!(InstanceId::parse("0123456789ABCDEF0123456789ABCDEF").is_err());
    assert!(InstanceId::parse("0123").is_err());
    assert!(serde_json::from_str::<InstanceId>("\"xyz\"").is_err());
}
