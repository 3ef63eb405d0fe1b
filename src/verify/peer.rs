//! Who is calling: the identity, instance, scopes and certificate of a
//! verified peer, and what it was verified for.

use super::*;

/// Which extended key usage a peer certificate must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A client (clientAuth): an agent calling a service.
    Client,
    /// A server (serverAuth): an agent or service being called.
    Server,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::Client => "clientAuth",
            Usage::Server => "serverAuth",
        })
    }
}

/// Who is calling, once verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerIdentity {
    /// The agent's identity, from the certificate's URI SAN.
    pub spiffe_id: AgentId,
    /// The running instance, from the subject's serialNumber (absent for
    /// SVIDs from other issuers in the trust domain).
    pub instance_id: Option<InstanceId>,
    /// The certificate's serial.
    pub serial: Serial,
    /// When the certificate expires.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The permissions its registration grants, from the certificate's
    /// scopes extension ([`crate::scopes`]); empty without one.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl PeerIdentity {
    /// The agent's identity.
    pub fn id(&self) -> &AgentId {
        &self.spiffe_id
    }

    /// Whether the certificate grants `scope` (exact match).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// `Ok` if the certificate grants `scope`, else a [`MissingScope`]
    /// naming the agent and the scope, for a 403.
    ///
    /// This reads the certificate alone. A service that follows the CA's
    /// feed asks [`Verifier::require_scope`](super::Verifier::require_scope)
    /// instead, which also refuses a scope withdrawn from the registration
    /// or blocked since the certificate was issued (the axum layer
    /// [`require_scope`](super::serve::require_scope) does).
    ///
    /// ```
    /// # use agentca::verify::PeerIdentity;
    /// fn delete_ticket(peer: &PeerIdentity) -> Result<(), agentca::verify::MissingScope> {
    ///     peer.require_scope("tickets:write")?;
    ///     // …
    ///     Ok(())
    /// }
    /// # let mut peer = PeerIdentity {
    /// #     spiffe_id: "spiffe://example.org/tenant/acme/env/prod/agent/bot".parse().unwrap(),
    /// #     instance_id: None,
    /// #     serial: agentca::wire::Serial::from_bytes(&[0x40, 1]).unwrap(),
    /// #     not_after: time::OffsetDateTime::now_utc(),
    /// #     scopes: vec!["tickets:read".into()],
    /// # };
    /// let refused = delete_ticket(&peer).unwrap_err();
    /// assert_eq!(refused.scope, "tickets:write");
    /// peer.scopes.push("tickets:write".into());
    /// assert!(delete_ticket(&peer).is_ok());
    /// ```
    // The refusal names the agent for the 403's text; refusals are the
    // rare path, so it is not boxed.
    #[allow(clippy::result_large_err)]
    pub fn require_scope(&self, scope: &str) -> Result<(), MissingScope> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(MissingScope {
                agent: self.spiffe_id.clone(),
                scope: scope.to_owned(),
                reason: ScopeRefusal::NotGranted,
            })
        }
    }
}

/// A peer may not use a scope that the action requires.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{agent} may not use the scope {scope:?}: {reason}")]
pub struct MissingScope {
    /// The agent.
    pub agent: AgentId,
    /// The scope it may not use.
    pub scope: String,
    /// Why.
    pub reason: ScopeRefusal,
}
