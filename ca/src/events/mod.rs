//! Security events out: revocations, clone alerts, retirements, agents
//! disabled and enabled, scope blocks and issuance limits reached, pushed
//! to a security team's receivers as signed Security Event Tokens
//! (RFC 8417) by HTTP POST (RFC 8935).
//!
//! - [`set`]: which audit events are sent, and the claims of each token;
//! - [`sign`]: the signing key and its certificate, the JWS;
//! - [`deliver`]: one task per receiver, sending the trail's events after
//!   the receiver's cursor, retrying with backoff, and moving the cursor
//!   once the receiver acknowledged ([`crate::state::events`] decides the
//!   cursor's moves and which replica sends);
//! - [`push`]: one POST, and what counts as an acknowledgement.
//!
//! Receivers are listed in a TOML file (`agentca serve --event-receivers`),
//! read here. The audit trail is the outbox: nothing is stored twice, and
//! what committed is sent, across restarts.

pub mod deliver;
pub mod push;
pub mod set;
pub mod sign;

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use serde::Deserialize;

/// Most receivers one CA sends to.
pub const MAX_RECEIVERS: usize = 16;
/// Largest receivers file, and largest roots file.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Longest receiver name.
pub const MAX_NAME_LEN: usize = 63;
/// Longest URL or audience.
pub const MAX_URL_LEN: usize = 2048;
/// Longest bearer token.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;
/// The roots a receiver is verified with when its entry names none:
/// Debian's bundle of public CAs.
pub const DEFAULT_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A receiver of security events, as configured.
#[derive(Clone)]
pub struct Receiver {
    /// Its name: the key of its cursor in the store, and its metrics label.
    pub name: String,
    /// Where tokens are POSTed (https only).
    pub url: reqwest::Url,
    /// The tokens' `aud`.
    pub audience: String,
    /// A bearer token sent in `Authorization`, if the receiver wants one.
    pub authorization: Option<String>,
    /// The roots its TLS server certificate is verified with.
    pub roots: Arc<Vec<CertificateDer<'static>>>,
    /// The kinds of events it gets (all unless its entry chooses).
    pub kinds: Vec<set::Kind>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("audience", &self.audience)
            .field("authorization", &self.authorization.as_ref().map(|_| "…"))
            .field("roots", &self.roots.len())
            .field("kinds", &self.kinds)
            .finish()
    }
}

/// Starts sending to `receivers` (none: nothing starts) from this
/// process, until `stop` turns true; [`Sending::stopped`] waits for the
/// tasks to let go of their receivers.
pub fn start(
    receivers: Vec<Receiver>,
    store: Arc<dyn crate::store::Store>,
    ledger: crate::state::Ledger,
    ca: Arc<crate::issuance::issuer::IssuingCa>,
    metrics: Arc<crate::metrics::Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Sending, sign::SignError> {
    if receivers.is_empty() {
        return Ok(Sending(Vec::new()));
    }
    // Several replicas share a PostgreSQL store; an embedded one is this
    // process's alone.
    let exclusive = store.backend() != crate::store::Backend::Postgres;
    let outbox = deliver::Outbox::new(store, ledger, ca, metrics, replica_name(), exclusive)?;
    Ok(Sending(Arc::new(outbox).start(receivers, stop)?))
}

/// The running tasks, one per receiver.
pub struct Sending(Vec<tokio::task::JoinHandle<()>>);

impl Sending {
    /// Waits, once `stop` turned true, for the tasks to end: a POST under
    /// way is given its time ([`push::ATTEMPT_TIMEOUT`]), then the task
    /// records its cursor and releases its hold.
    pub async fn stopped(self) {
        let wait = push::ATTEMPT_TIMEOUT + std::time::Duration::from_secs(2);
        let all = async {
            for task in self.0 {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(wait, all).await.is_err() {
            tracing::warn!("security event delivery did not stop in time; its holds lapse");
        }
    }
}

/// This process's name in the receivers' holds: the host's name and a
/// random part, so that two processes never share one.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.len() <= 64)
        .unwrap_or_else(|| "replica".into());
    let mut random = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut random);
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}-{}-{suffix}", std::process::id())
}

/// Why the receivers file was not taken.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReceiverError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    receiver: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Entry {
    name: String,
    url: String,
    audience: Option<String>,
    ca_file: Option<std::path::PathBuf>,
    authorization_file: Option<std::path::PathBuf>,
    events: Option<Vec<String>>,
}

/// The receivers listed in the TOML file at `path`; relative file names in
/// it are taken from the file's directory.
pub fn load(path: &Path) -> Result<Vec<Receiver>, ReceiverError> {
    let text = read_limited(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|e| ReceiverError(format!("{}: {e}", path.display())))
}

/// The receivers in `text`, a receivers file in the directory `base`.
pub fn parse(text: &str, base: &Path) -> Result<Vec<Receiver>, ReceiverError> {
    let file: File = toml::from_str(text).map_err(|e| ReceiverError(e.to_string()))?;
    if file.receiver.len() > MAX_RECEIVERS {
        return Err(ReceiverError(format!(
            "{} receivers; at most {MAX_RECEIVERS}",
            file.receiver.len()
        )));
    }
    let mut receivers: Vec<Receiver> = Vec::new();
    for entry in file.receiver {
        let receiver = entry_to_receiver(entry, base)?;
        if receivers.iter().any(|r| r.name == receiver.name) {
            return Err(ReceiverError(format!(
                "receiver {:?} is listed twice",
                receiver.name
            )));
        }
        receivers.push(receiver);
    }
    Ok(receivers)
}

fn entry_to_receiver(entry: Entry, base: &Path) -> Result<Receiver, ReceiverError> {
    let name = entry.name;
    check_name(&name)?;
    let fail = |what: String| ReceiverError(format!("receiver {name:?}: {what}"));
    if entry.url.len() > MAX_URL_LEN {
        return Err(fail(format!("url is longer than {MAX_URL_LEN} bytes")));
    }
    let url = reqwest::Url::parse(&entry.url)
        .map_err(|e| fail(format!("url {:?} is not a URL: {e}", entry.url)))?;
    if url.scheme() != "https" || url.host().is_none() {
        return Err(fail(format!(
            "url {:?} must be https:// with a host (RFC 8935 pushes over TLS)",
            entry.url
        )));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(fail(format!(
            "url {:?} must not carry credentials, a query or a fragment (a secret goes in authorization-file)",
            entry.url
        )));
    }
    let audience = entry.audience.unwrap_or_else(|| url.to_string());
    if audience.is_empty() || audience.len() > MAX_URL_LEN || audience.chars().any(char::is_control)
    {
        return Err(fail(format!(
            "audience must be 1 to {MAX_URL_LEN} bytes without control characters"
        )));
    }
    let authorization = match entry.authorization_file {
        None => None,
        Some(file) => {
            let path = base.join(file);
            let text = read_limited(&path).map_err(|e| fail(e.0))?;
            let token = text.trim();
            if token.is_empty()
                || token.len() > MAX_AUTHORIZATION_LEN
                || !token.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(fail(format!(
                    "{} must hold one bearer token: 1 to {MAX_AUTHORIZATION_LEN} printable ASCII characters",
                    path.display()
                )));
            }
            Some(token.to_owned())
        }
    };
    let roots_path = match entry.ca_file {
        Some(file) => base.join(file),
        None => Path::new(DEFAULT_ROOTS).to_path_buf(),
    };
    let pem_text = read_limited(&roots_path).map_err(|e| fail(e.0))?;
    let roots = agentca::certs_from_pem(&pem_text).map_err(|e| {
        fail(format!(
            "{} holds no usable certificate: {e}",
            roots_path.display()
        ))
    })?;
    if roots.is_empty() {
        return Err(fail(format!(
            "{} holds no certificate",
            roots_path.display()
        )));
    }
    let kinds = match entry.events {
        None => set::Kind::ALL.to_vec(),
        Some(names) => {
            let mut kinds = Vec::new();
            for name in &names {
                let kind = set::Kind::named(name).ok_or_else(|| {
                    let known: Vec<&str> = set::Kind::ALL.iter().map(|k| k.name()).collect();
                    fail(format!(
                        "events: unknown kind {name:?}; the kinds are: {}",
                        known.join(", ")
                    ))
                })?;
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            if kinds.is_empty() {
                return Err(fail("events: name at least one kind".into()));
            }
            kinds
        }
    };
    Ok(Receiver {
        name,
        url,
        audience,
        authorization,
        roots: Arc::new(roots),
        kinds,
    })
}

/// A receiver's name: lowercase letters, digits, `-` and `_`, starting
/// with a letter or digit.
fn check_name(name: &str) -> Result<(), ReceiverError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ReceiverError(format!(
            "receiver name {name:?}: 1 to {MAX_NAME_LEN} lowercase letters, digits, '-' or '_', starting with a letter or digit"
        )))
    }
}

/// The text of the file at `path`, at most [`MAX_FILE_BYTES`] (whatever
/// the file claims to be: a pipe or a device is read only so far).
fn read_limited(path: &Path) -> Result<String, ReceiverError> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| ReceiverError(format!("cannot read {}: {e}", path.display()));
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ReceiverError(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_roots() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::issuance::issuer::test_ca(&rcgen::PKCS_ECDSA_P256_SHA256);
        std::fs::write(dir.path().join("roots.pem"), ca.bundle_pem()).unwrap();
        std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
        dir
    }

    fn parsed(dir: &tempfile::TempDir, text: &str) -> Result<Vec<Receiver>, String> {
        parse(text, dir.path()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_receiver_is_read_with_its_roots_and_token() {
        let dir = dir_with_roots();
        let receivers = parsed(
            &dir,
            r#"
            [[receiver]]
            name = "siem"
            url = "https://siem.example.com/events"
            ca-file = "roots.pem"
            authorization-file = "token"

            [[receiver]]
            name = "soc-2"
            url = "https://soc.example.com/ssf"
            audience = "urn:soc"
            ca-file = "roots.pem"
            events = ["revocation", "clone", "revocation"]
            "#,
        )
        .unwrap();
        assert_eq!(receivers.len(), 2);
        assert_eq!(receivers[0].name, "siem");
        assert_eq!(receivers[0].audience, "https://siem.example.com/events");
        assert_eq!(receivers[0].authorization.as_deref(), Some("s3cret-token"));
        assert!(!receivers[0].roots.is_empty());
        assert!(!format!("{:?}", receivers[0]).contains("s3cret"));
        assert_eq!(receivers[0].kinds, set::Kind::ALL.to_vec());
        assert_eq!(receivers[1].audience, "urn:soc");
        assert_eq!(
            receivers[1].kinds,
            vec![set::Kind::Revocation, set::Kind::Clone]
        );
        assert_eq!(receivers[1].authorization, None);
        assert!(parsed(&dir, "").unwrap().is_empty());
    }

    #[test]
    fn a_bad_receiver_is_refused_with_what_is_wrong() {
        let dir = dir_with_roots();
        let entry = |name: &str, url: &str, extra: &str| {
            format!(
                "[[receiver]]\nname = {name:?}\nurl = {url:?}\nca-file = \"roots.pem\"\n{extra}"
            )
        };
        for (text, says) in [
            (entry("siem", "http://siem.example.com/", ""), "must be https://"),
            (entry("siem", "https://u:p@siem.example.com/", ""), "credentials"),
            (entry("siem", "https://siem.example.com/?key=s3cret", ""), "a query"),
            (
                entry("siem", "https://siem.example.com/", "events = [\"revoke\"]"),
                "unknown kind \"revoke\"",
            ),
            (
                entry("siem", "https://siem.example.com/", "events = []"),
                "at least one",
            ),
            (entry("siem", "not a url", ""), "is not a URL"),
            (entry("Siem", "https://siem.example.com/", ""), "lowercase"),
            (entry("", "https://siem.example.com/", ""), "lowercase"),
            (
                entry("siem", "https://siem.example.com/", "authorization-file = \"missing\""),
                "cannot read",
            ),
            (
                entry("siem", "https://siem.example.com/", "colour = \"red\""),
                "unknown field",
            ),
            (
                format!(
                    "{}\n{}",
                    entry("siem", "https://a.example.com/", ""),
                    entry("siem", "https://b.example.com/", "")
                ),
                "listed twice",
            ),
            (
                "[[receiver]]\nname = \"siem\"\nurl = \"https://a.example.com/\"\nca-file = \"token\"\n"
                    .to_owned(),
                "no",
            ),
        ] {
            let err = parsed(&dir, &text).err().unwrap_or_else(|| panic!("{text} was taken"));
            assert!(err.contains(says), "{text}: {err}");
        }
        let many: String = (0..=MAX_RECEIVERS)
            .map(|i| entry(&format!("r{i}"), "https://a.example.com/", ""))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(parsed(&dir, &many).unwrap_err().contains("at most"));
    }
}
