//! Instance ids: one running copy of an agent, random at enrollment and
//! kept across renewals.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Identifies one running copy of an agent: chosen at random on enrollment
/// and kept across renewals. It is carried in the certificate subject's
/// serialNumber attribute as 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(String);

/// Why an instance id was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an instance id is 32 lowercase hex digits")]
pub struct InvalidInstanceId;

impl InstanceId {
    /// A new random instance id from the operating system's RNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // The OS RNG failing is not something a caller can handle.
        aws_lc_rs::rand::fill(&mut bytes).expect("the operating system RNG failed");
        Self(crate::hex(&bytes))
    }

    /// Checks an instance id: 32 lowercase hex digits.
    ///
    /// ```
    /// use agentca::identity::InstanceId;
    /// assert!(InstanceId::parse("0123456789abcdef0123456789abcdef").is_ok());
    /// assert!(InstanceId::parse("not-an-instance").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidInstanceId> {
        if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidInstanceId)
        }
    }

    /// The instance id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InstanceId {
    type Err = InvalidInstanceId;
    fn from_str(s: &str) -> Result<Self, InvalidInstanceId> {
        Self::parse(s)
    }
}

impl Serialize for InstanceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}
