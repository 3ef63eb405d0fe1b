//! The loop behind an [`Agent`](super::Agent): sleep until the schedule
//! says, renew with a fresh key (journaled, so a restart retries with the
//! same CSR), retry with backoff, enroll again when the certificate expired
//! and the token allows.

use super::*;

pub(super) async fn enroll(
    client: &CaClient,
    token: &str,
    alg: KeyAlgorithm,
) -> Result<Identity, ClientError> {
    let key = PrivateKey::generate(alg)?;
    let issued = client.enroll(token, &key.csr_pem()?).await?;
    Identity::new(&issued, &key)
}

/// What one renewal attempt came to.
pub(super) enum Step {
    Renewed(Box<Identity>),
    /// Try again later (the CA is unreachable or busy).
    Retry {
        retry_after: Option<u64>,
        reason: String,
    },
    /// The certificate cannot be renewed any more: enroll again.
    Reenroll(String),
    /// Nothing this agent can do will help.
    Fatal(String),
}

pub(super) async fn run(shared: Arc<Shared>) {
    loop {
        let current = shared.current.load_full();
        let at = renew_at(current.received_at, current.not_after, jitter());
        let wait = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait.unsigned_abs()) => {}
            () = shared.renew_soon.notified() => {
                tracing::info!(serial = %current.serial, "renewing before the scheduled time");
            }
        }
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let step = if OffsetDateTime::now_utc() >= current.not_after {
                Step::Reenroll(format!("the certificate expired at {}", current.not_after))
            } else {
                renew_once(&shared, &current).await
            };
            let step = match step {
                Step::Reenroll(why) => reenroll(&shared, why).await,
                other => other,
            };
            match step {
                Step::Renewed(identity) => {
                    install(&shared, *identity);
                    break;
                }
                Step::Retry {
                    retry_after,
                    reason,
                } => {
                    if OffsetDateTime::now_utc() >= current.not_after {
                        let why = format!(
                            "the certificate expired at {} and could not be renewed: {reason}",
                            current.not_after
                        );
                        if *shared.health.borrow() != Health::Unhealthy(why.clone()) {
                            tracing::error!("{why}");
                        }
                        shared.health.send_replace(Health::Unhealthy(why));
                    } else {
                        tracing::warn!(attempt, reason = %reason, "renewal failed; retrying");
                    }
                    tokio::time::sleep(retry_delay(attempt, jitter(), retry_after)).await;
                }
                Step::Reenroll(why) | Step::Fatal(why) => {
                    tracing::error!("{why}");
                    shared.health.send_replace(Health::Failed(why));
                    return;
                }
            }
        }
    }
}

pub(super) fn install(shared: &Shared, identity: Identity) {
    let identity = Arc::new(identity);
    shared.current.store(identity.clone());
    tracing::info!(
        id = %identity.spiffe_id,
        serial = %identity.serial,
        not_after = %crate::rfc3339(identity.not_after),
        "certificate rotated"
    );
    shared.health.send_replace(Health::Healthy);
    shared.rotations.send_replace(identity);
}

pub(super) fn classify(e: ClientError) -> Step {
    match e {
        ClientError::Refused {
            status,
            error,
            detail,
            retry_after,
        } => match (status, error.as_str()) {
            (_, "certificate_expired") => Step::Reenroll(detail),
            (408 | 429, _) | (500..=599, _) => Step::Retry {
                retry_after,
                reason: format!("{status} {error}: {detail}"),
            },
            _ => Step::Fatal(format!(
                "the CA refused the renewal ({status} {error}): {detail}"
            )),
        },
        ClientError::Transport(t) | ClientError::Files(t) => Step::Retry {
            retry_after: None,
            reason: t,
        },
        other => Step::Fatal(other.to_string()),
    }
}

pub(super) async fn renew_once(shared: &Shared, current: &Identity) -> Step {
    match try_renew(shared, current).await {
        Ok(step) => step,
        Err(e) => classify(e),
    }
}

pub(super) fn load_pending(shared: &Shared) -> Result<Option<Pending>, ClientError> {
    match &shared.dir {
        Some(dir) => dir.pending().map_err(|e| ClientError::Files(e.to_string())),
        None => Ok(shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()),
    }
}

pub(super) fn save_pending(shared: &Shared, pending: Option<&Pending>) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError::Files(format!("the renewal journal: {e}"));
    match (&shared.dir, pending) {
        (Some(dir), Some(p)) => dir.save_pending(p).map_err(io),
        (Some(dir), None) => dir.clear_pending().map_err(io),
        (None, p) => {
            *shared.pending.lock().unwrap_or_else(|e| e.into_inner()) = p.cloned();
            Ok(())
        }
    }
}

pub(super) async fn try_renew(shared: &Shared, current: &Identity) -> Result<Step, ClientError> {
    let pending = match load_pending(shared)? {
        Some(p) if p.for_serial == current.serial => p,
        _ => {
            // A fresh key for every renewal, journaled before it is sent.
            let key = PrivateKey::generate(shared.config.key_algorithm)?;
            let p = Pending {
                for_serial: current.serial.clone(),
                csr_pem: key.csr_pem()?,
                key_pem: key.to_pem(),
                issued: None,
            };
            save_pending(shared, Some(&p))?;
            p
        }
    };
    let key = PrivateKey::from_pem(&pending.key_pem)?;
    let issued = match &pending.issued {
        // The CA answered last time; only the files were not replaced.
        Some(issued) => issued.clone(),
        None => {
            let bundle = (**shared.bundle.load()).clone();
            let credentials = Credentials {
                chain: current.chain.clone(),
                key: current.key()?,
            };
            let client = CaClient::new(
                &shared.config.ca_url,
                CaTrust::Bundle(bundle),
                Some(credentials),
            )?;
            let result = client.renew(&pending.csr_pem).await;
            if shared.config.abort_after_renewal_response && result.is_ok() {
                tracing::error!(
                    "test hook: aborting after the renewal response, before writing anything"
                );
                std::process::abort();
            }
            match result {
                Ok(issued) => issued,
                Err(e) => {
                    let step = classify(e);
                    if matches!(step, Step::Fatal(_) | Step::Reenroll(_)) {
                        // The pending key will never be certified.
                        save_pending(shared, None)?;
                    }
                    return Ok(step);
                }
            }
        }
    };
    let identity = Identity::new(&issued, &key)?;
    if let Some(dir) = &shared.dir {
        save_pending(
            shared,
            Some(&Pending {
                issued: Some(issued),
                ..pending
            }),
        )?;
        dir.install(
            &identity.chain_pem,
            &identity.key_pem,
            &shared.bundle.load().to_pem(),
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| ClientError::Files(e.to_string()))?;
    }
    save_pending(shared, None)?;
    Ok(Step::Renewed(Box::new(identity)))
}

pub(super) async fn reenroll(shared: &Shared, why: String) -> Step {
    let Some(token) = shared.config.token.as_deref() else {
        return Step::Fatal(format!(
            "{why}; no bootstrap token to enroll again: a new token is needed"
        ));
    };
    let bundle = (**shared.bundle.load()).clone();
    let client = match CaClient::new(&shared.config.ca_url, CaTrust::Bundle(bundle), None) {
        Ok(c) => c,
        Err(e) => return Step::Fatal(e.to_string()),
    };
    match enroll(&client, token, shared.config.key_algorithm).await {
        Ok(identity) => {
            if let Some(dir) = &shared.dir {
                let bundle_pem = shared.bundle.load().to_pem();
                if let Err(e) = dir.install(&identity.chain_pem, &identity.key_pem, &bundle_pem, OffsetDateTime::now_utc()) {
                    return Step::Retry {
                        retry_after: None,
                        reason: format!("cannot write the certificate files: {e}"),
                    };
                }
                let _ = dir.clear_pending();
            }
            tracing::info!(reason = %why, "enrolled again with the bootstrap token");
            Step::Renewed(Box::new(identity))
        }
        Err(ClientError::Refused { status, error, detail, retry_after })
            if matches!(status, 408 | 429 | 500..=599) =>
        {
            Step::Retry {
                retry_after,
                reason: format!("{status} {error}: {detail}"),
            }
        }
        Err(ClientError::Refused { error, detail, .. }) if error.starts_with("token_") => Step::Fatal(format!(
            "{why}, and the bootstrap token cannot enroll again ({error}: {detail}): a new token is needed"
        )),
        Err(ClientError::Transport(t)) => Step::Retry {
            retry_after: None,
            reason: t,
        },
        Err(e) => Step::Fatal(format!("{why}, and enrolling again failed: {e}")),
    }
}
