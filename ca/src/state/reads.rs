//! Typed reads of the CA's state, from the last committed (for redb:
//! logged) state of the store.

use std::sync::Arc;

use agentca::identity::InstanceId;
use agentca::wire::{AuditEvent, Serial};
use serde::de::DeserializeOwned;

use super::records::{
    decode, index_key, AdminRecord, AgentRecord, CertRecord, CloneAlertRecord, RevocationEvent,
    TokenHash, TokenRecord,
};
use crate::store::{Store, StoreError, Table};

/// Typed reads of the last committed state.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
}

impl Records {
    /// Reads from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn get<T: DeserializeOwned>(&self, table: Table, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.store
            .get(table, key)?
            .map(|bytes| decode(table, &bytes))
            .transpose()
    }

    /// The agent registered under `tenant/env/agent`.
    pub fn agent(&self, key: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.get(Table::Agents, key.as_bytes())
    }

    /// Up to `limit` agents whose key starts with `prefix` (`""` for all,
    /// `"tenant/"` for one tenant), in key order.
    pub fn agents(&self, prefix: &str, limit: usize) -> Result<Vec<AgentRecord>, StoreError> {
        self.agents_after(prefix, None, limit)
    }

    /// Up to `limit` agents whose key starts with `prefix` and sorts after
    /// `after` (every one when `None`), in key order.
    pub fn agents_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        // The first key after `after` is `after` followed by a NUL byte.
        let start = match after {
            Some(after) if after.as_bytes() >= prefix.as_bytes() => {
                let mut start = after.as_bytes().to_vec();
                start.push(0);
                start
            }
            _ => prefix.as_bytes().to_vec(),
        };
        self.store
            .scan_from(Table::Agents, &start, limit)?
            .iter()
            .take_while(|(k, _)| k.starts_with(prefix.as_bytes()))
            .map(|(_, v)| decode(Table::Agents, v))
            .collect()
    }

    /// The token with this hash.
    pub fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        self.get(Table::Tokens, hash)
    }

    /// The certificate with this serial.
    pub fn cert(&self, serial: &Serial) -> Result<Option<CertRecord>, StoreError> {
        self.get(Table::Certs, serial.as_bytes())
    }

    /// Up to `limit` certificates of the agent `tenant/env/agent`, in serial
    /// order.
    pub fn certs_of(&self, agent_key: &str, limit: usize) -> Result<Vec<CertRecord>, StoreError> {
        let prefix = index_key(agent_key, &[]);
        let mut out = Vec::new();
        for (k, _) in self.store.scan_prefix(Table::AgentCerts, &prefix, limit)? {
            let serial =
                Serial::from_bytes(&k[prefix.len()..]).map_err(|e| StoreError::Corrupt {
                    table: Table::AgentCerts.name(),
                    detail: e.to_string(),
                })?;
            if let Some(cert) = self.cert(&serial)? {
                out.push(cert);
            }
        }
        Ok(out)
    }

    /// Up to `limit` certificates of the instance, in serial order.
    pub fn instance_certs(
        &self,
        instance: &InstanceId,
        limit: usize,
    ) -> Result<Vec<CertRecord>, StoreError> {
        let prefix = index_key(instance.as_str(), &[]);
        let mut out = Vec::new();
        for (k, _) in self
            .store
            .scan_prefix(Table::InstanceCerts, &prefix, limit)?
        {
            let serial =
                Serial::from_bytes(&k[prefix.len()..]).map_err(|e| StoreError::Corrupt {
                    table: Table::InstanceCerts.name(),
                    detail: e.to_string(),
                })?;
            if let Some(cert) = self.cert(&serial)? {
                out.push(cert);
            }
        }
        Ok(out)
    }

    /// Up to `limit` audit events after `since`, in order.
    pub fn audit_since(&self, since: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        crate::audit::since(&*self.store, since, limit)
    }

    /// The audit trail's head.
    pub fn audit_head(&self) -> Result<crate::audit::Head, StoreError> {
        crate::audit::head(&*self.store)
    }

    /// The last audit event pruned, if any was.
    pub fn audit_checkpoint(&self) -> Result<Option<crate::audit::Head>, StoreError> {
        let checkpoint = crate::audit::checkpoint(&*self.store)?;
        Ok((checkpoint.seq > 0).then_some(checkpoint))
    }

    /// The admins, in name order.
    pub fn admins(&self) -> Result<Vec<AdminRecord>, StoreError> {
        let mut out = Vec::new();
        for (_, hash) in self.store.scan_prefix(Table::AdminNames, &[], usize::MAX)? {
            if let Some(admin) = self.get(Table::Admins, &hash)? {
                out.push(admin);
            }
        }
        Ok(out)
    }

    /// The admin whose token has this hash.
    pub fn admin(&self, hash: &TokenHash) -> Result<Option<AdminRecord>, StoreError> {
        self.get(Table::Admins, hash)
    }

    /// Every revocation event still kept (pruning drops those of
    /// certificates expired longer than the retention window), in order.
    pub fn revocation_events(&self) -> Result<Vec<RevocationEvent>, StoreError> {
        self.store
            .scan_prefix(Table::Revocations, &[], usize::MAX)?
            .iter()
            .map(|(_, v)| decode(Table::Revocations, v))
            .collect()
    }

    /// Up to `limit` revocation events after `seq`, in order.
    pub fn revocation_events_after(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<RevocationEvent>, StoreError> {
        let Some(start) = seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.store
            .scan_from(Table::Revocations, &start.to_be_bytes(), limit)?
            .iter()
            .map(|(_, v)| decode(Table::Revocations, v))
            .collect()
    }

    /// Up to `limit` scope events after `seq`, in order.
    pub fn scope_events_after(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<super::records::ScopeEventRecord>, StoreError> {
        let Some(start) = seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.store
            .scan_from(Table::ScopeEvents, &start.to_be_bytes(), limit)?
            .iter()
            .map(|(_, v)| decode(Table::ScopeEvents, v))
            .collect()
    }

    /// The changes waiting for review (lapsed ones too, until pruned),
    /// oldest first (at most [`super::governance::MAX_PENDING_SCAN`]).
    pub fn pending_changes(&self) -> Result<Vec<super::records::PendingRecord>, StoreError> {
        self.store
            .scan_prefix(
                Table::PendingChanges,
                &[],
                super::governance::MAX_PENDING_SCAN,
            )?
            .iter()
            .map(|(_, v)| decode(Table::PendingChanges, v))
            .collect()
    }

    /// The pending change `id`.
    pub fn pending_change(
        &self,
        id: u64,
    ) -> Result<Option<super::records::PendingRecord>, StoreError> {
        self.get(Table::PendingChanges, &id.to_be_bytes())
    }

    /// The scope blocks in force.
    pub fn scope_blocks(&self) -> Result<Vec<super::records::BlockRecord>, StoreError> {
        Ok(self
            .get::<super::records::ScopeBlocks>(Table::Meta, super::records::SCOPE_BLOCKS_KEY)?
            .unwrap_or_default()
            .blocks)
    }

    /// The versions of the admin `name`, oldest first.
    pub fn admin_history(
        &self,
        name: &str,
    ) -> Result<Vec<super::records::AdminVersionRecord>, StoreError> {
        self.store
            .scan_prefix(
                Table::AdminHistory,
                &super::records::index_key(name, &[]),
                usize::MAX,
            )?
            .iter()
            .map(|(_, v)| decode(Table::AdminHistory, v))
            .collect()
    }

    /// The versions of the registration under `agent_key`, oldest first.
    pub fn agent_history(
        &self,
        agent_key: &str,
    ) -> Result<Vec<super::records::AgentVersionRecord>, StoreError> {
        self.store
            .scan_prefix(
                Table::AgentHistory,
                &super::records::index_key(agent_key, &[]),
                usize::MAX,
            )?
            .iter()
            .map(|(_, v)| decode(Table::AgentHistory, v))
            .collect()
    }

    /// The CRL of `issuer` that replicas serve, as last published.
    pub fn published_crl(
        &self,
        issuer: super::records::CrlIssuer,
    ) -> Result<Option<super::records::PublishedCrl>, StoreError> {
        self.get(Table::Meta, issuer.key())
    }

    /// The last number of a sequence (0 if none was taken).
    pub fn sequence(&self, name: &str) -> Result<u64, StoreError> {
        self.store.sequence(name)
    }

    /// How many issued certificates expire at each second (Unix) after
    /// `now`, from the expiry index.
    pub fn unexpired_by_second(
        &self,
        now: time::OffsetDateTime,
    ) -> Result<std::collections::BTreeMap<i64, u64>, StoreError> {
        const CHUNK: usize = 10_000;
        let mut counts = std::collections::BTreeMap::new();
        let mut start = super::records::time_key(now + time::Duration::seconds(1), &[]);
        loop {
            let entries = self.store.scan_from(Table::CertExpiry, &start, CHUNK)?;
            for (key, _) in &entries {
                if let Some(secs) = key.get(..8) {
                    let secs = u64::from_be_bytes(secs.try_into().expect("8 bytes"));
                    *counts.entry(secs as i64).or_default() += 1;
                }
            }
            match entries.last() {
                Some((key, _)) if entries.len() == CHUNK => {
                    start = key.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok(counts)
    }

    /// Up to `limit` clone alerts of the agent `tenant/env/agent`, newest first.
    pub fn alerts_of(
        &self,
        agent_key: &str,
        limit: usize,
    ) -> Result<Vec<CloneAlertRecord>, StoreError> {
        // Alerts are pruned after the retention window, so all of one
        // agent's fit in memory; the newest are the ones that matter.
        let all = self
            .store
            .scan_prefix(Table::Alerts, &index_key(agent_key, &[]), usize::MAX)?;
        all.iter()
            .rev()
            .take(limit)
            .map(|(_, v)| decode(Table::Alerts, v))
            .collect()
    }
}
