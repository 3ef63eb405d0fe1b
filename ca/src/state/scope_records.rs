//! The records of scope blocks and of the feed's scope events
//! (withdrawals, blocks, their lifting): see [`super::scopes`] for what
//! they mean, [`super::governance`] for how they are written.

use agentca::wire::Serial;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Meta key of the scope blocks in force (a [`ScopeBlocks`]).
pub const SCOPE_BLOCKS_KEY: &[u8] = b"scope_blocks";

/// The scope blocks in force: few, read whole by every issuance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeBlocks {
    /// The blocks, oldest first.
    pub blocks: Vec<BlockRecord>,
}

/// A scope block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// Its id: the feed sequence number of its first event.
    pub id: u64,
    /// The blocked scope.
    pub scope: String,
    /// `tenant`, `tenant/env` or `tenant/env/agent`; every agent when
    /// `None`.
    pub target: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// The admin who set it.
    pub by: String,
    /// When.
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
    /// Live certificates it reached when set (targeted blocks).
    #[serde(default)]
    pub certificates: Option<usize>,
    /// Whether an admin of every tenant set it: then only such an admin
    /// lifts it, not the tenant's own.
    #[serde(default)]
    pub set_globally: bool,
}

/// One scope event of the feed. Key: `seq`, big-endian, in
/// [`Table::ScopeEvents`](crate::store::Table::ScopeEvents); sequence numbers are shared with
/// [`RevocationEvent`](super::records::RevocationEvent)s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeEventRecord {
    /// Position in the feed.
    pub seq: u64,
    /// When.
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
    /// What changed.
    pub change: ScopeChangeRecord,
}

/// What a [`ScopeEventRecord`] changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ScopeChangeRecord {
    /// A certificate may no longer be used for `scopes`.
    Withdrawn {
        /// The certificate.
        serial: Serial,
        /// Its agent: `tenant/env/agent`.
        agent_key: String,
        /// The scopes.
        scopes: Vec<String>,
        /// Its end of validity.
        #[serde(with = "time::serde::timestamp")]
        not_after: OffsetDateTime,
    },
    /// A block set: for every certificate (`serials` absent) or these.
    Blocked {
        /// The block's id.
        block: u64,
        /// The scope.
        scope: String,
        /// The certificates it reaches; all when `None`.
        serials: Option<Vec<Serial>>,
        /// What the block names.
        target: Option<String>,
        /// The last end of validity of the listed certificates (none for
        /// a block of every agent): after it, the event lists nothing live.
        #[serde(with = "time::serde::timestamp::option", default)]
        not_after: Option<OffsetDateTime>,
        /// When the block was lifted, once it was.
        #[serde(with = "time::serde::timestamp::option", default)]
        lifted_at: Option<OffsetDateTime>,
    },
    /// A block lifted.
    Unblocked {
        /// The block's id.
        block: u64,
        /// What the block named.
        target: Option<String>,
    },
}

impl ScopeEventRecord {
    /// When the event stops mattering (then it is pruned after the
    /// retention window): a withdrawal once its certificate expired; a
    /// block's event once the block was lifted, or once every certificate
    /// it lists expired (one listing none, at once: certificates issued
    /// while it stands do not carry the scope); a block of every agent
    /// not while it stands; a lifting at once (a verifier that falls
    /// behind loads the CA's snapshot again).
    pub fn ends(&self) -> Option<OffsetDateTime> {
        match &self.change {
            ScopeChangeRecord::Withdrawn { not_after, .. } => Some(*not_after),
            ScopeChangeRecord::Blocked {
                serials,
                not_after,
                lifted_at,
                ..
            } => match (lifted_at, serials) {
                (Some(lifted), _) => Some(*lifted),
                (None, None) => None,
                (None, Some(_)) => Some(not_after.unwrap_or(self.at)),
            },
            ScopeChangeRecord::Unblocked { .. } => Some(self.at),
        }
    }

    /// Marks this event, if it is one of block `id`'s, as lifted at `at`.
    pub fn lift(&mut self, id: u64, at: OffsetDateTime) {
        if let ScopeChangeRecord::Blocked {
            block, lifted_at, ..
        } = &mut self.change
        {
            if *block == id {
                *lifted_at = Some(at);
            }
        }
    }
}
