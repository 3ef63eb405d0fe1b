//! Certificate serial numbers as the API writes them: lowercase hex.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest certificate serial accepted (RFC 5280 §4.1.2.2), in bytes.
pub const MAX_SERIAL_LEN: usize = 20;

/// A certificate serial number: its big-endian bytes, shown as lowercase hex.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(Vec<u8>);

/// Why a serial was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a serial is 1 to 20 bytes written as hex digits (colons allowed)")]
pub struct InvalidSerial;

impl Serial {
    /// A serial from its big-endian bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InvalidSerial> {
        if bytes.is_empty() || bytes.len() > MAX_SERIAL_LEN {
            return Err(InvalidSerial);
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The big-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex(&self.0))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl FromStr for Serial {
    type Err = InvalidSerial;
    fn from_str(s: &str) -> Result<Self, InvalidSerial> {
        let digits: String = s.trim().chars().filter(|c| *c != ':').collect();
        let bytes = crate::unhex(&digits).ok_or(InvalidSerial)?;
        Self::from_bytes(&bytes)
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
