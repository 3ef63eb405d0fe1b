//! An agent's certificate directory: PEM files that other programs read,
//! replaced all at once, and the journal of a renewal in progress.
//!
//! ```text
//! dir/
//!   cert.pem     -> ..data/cert.pem      leaf, then intermediate
//!   key.pem      -> ..data/key.pem       private key (0600)
//!   bundle.pem   -> ..data/bundle.pem    trust bundle
//!   identity.pem -> ..data/identity.pem  chain and key in one file (0600)
//!   ..data       -> ..2026_11_22_10_00_00.123456789   the current generation
//!   ..2026_11_22_…/                      current and previous generations
//!   ..renewal.json                       journal of a renewal in progress (0600)
//! ```
//!
//! A new generation is written into a fresh directory, every file synced,
//! then `..data` is switched to it with one `rename` of a symlink, as
//! Kubernetes' atomic writer does: a reader never sees a half-written file.
//! A reader that needs the certificate and its key to match opens both
//! through one resolution of `..data` (or reads `identity.pem`, which holds
//! both); the previous generation is kept until the next swap, so a reader
//! that resolved it just before a swap still finds both files.
//!
//! Each certificate renews once, so the new key and CSR are written to the
//! journal before a renewal is sent, and the issued certificate after it
//! comes back: a renewal interrupted at any point is completed on the next
//! run with the same key and CSR, and the CA sees a retry, not a clone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::wire::{IssuedCertificate, Serial};

const DATA: &str = "..data";
const JOURNAL: &str = "..renewal.json";
const LOCK: &str = "..lock";
/// The files of a generation, and whether each is secret (0600).
const FILES: [(&str, bool); 4] = [
    ("cert.pem", false),
    ("key.pem", true),
    ("bundle.pem", false),
    ("identity.pem", true),
];

/// What the directory holds.
#[derive(Clone, Debug)]
pub struct Stored {
    /// `cert.pem`: the leaf, then the intermediate.
    pub chain_pem: String,
    /// `key.pem`.
    pub key_pem: String,
    /// `bundle.pem`.
    pub bundle_pem: String,
}

/// A renewal in progress.
#[derive(Clone, Serialize, Deserialize)]
pub struct Pending {
    /// Serial of the certificate being renewed.
    pub for_serial: Serial,
    /// The new key (PKCS#8 PEM).
    pub key_pem: String,
    /// The CSR sent for it.
    pub csr_pem: String,
    /// The certificate the CA issued, once it answered.
    #[serde(default)]
    pub issued: Option<IssuedCertificate>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("for_serial", &self.for_serial)
            .field("issued", &self.issued.as_ref().map(|i| &i.serial))
            .finish_non_exhaustive()
    }
}

/// Exclusive use of an agent directory; released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// An agent's certificate directory.
#[derive(Clone, Debug)]
pub struct AgentDir {
    path: PathBuf,
}

impl AgentDir {
    /// The directory at `path` (created on first install).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the directory for this process: two agents renewing from one
    /// directory would overwrite each other's journal, and a renewal with
    /// the other's key would look like a clone. Held until the guard drops.
    pub fn lock(&self) -> io::Result<DirLock> {
        create_dir(&self.path)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.join(LOCK))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("another agentca process is using {}", self.path.display()),
            )),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// What the directory holds, if it holds a certificate, key and bundle.
    /// Files written flat by older tools (not symlinks) are read too.
    pub fn load(&self) -> io::Result<Option<Stored>> {
        let read = |name: &str| match fs::read_to_string(self.path.join(name)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        match (read("cert.pem")?, read("key.pem")?, read("bundle.pem")?) {
            (Some(chain_pem), Some(key_pem), Some(bundle_pem)) => Ok(Some(Stored {
                chain_pem,
                key_pem,
                bundle_pem,
            })),
            _ => Ok(None),
        }
    }

    /// Writes a new generation and switches to it atomically.
    pub fn install(
        &self,
        chain_pem: &str,
        key_pem: &str,
        bundle_pem: &str,
        now: OffsetDateTime,
    ) -> io::Result<()> {
        create_dir(&self.path)?;
        let name = generation_name(now);
        let generation = self.path.join(&name);
        create_dir(&generation)?;
        let identity = format!("{chain_pem}{key_pem}");
        for ((file, secret), contents) in
            FILES
                .iter()
                .zip([chain_pem, key_pem, bundle_pem, identity.as_str()])
        {
            write_synced(&generation.join(file), contents.as_bytes(), *secret)?;
        }
        sync_dir(&generation)?;
        let previous = fs::read_link(self.path.join(DATA)).ok();
        // Switch ..data with one rename of a new symlink over it.
        let tmp = self.path.join(format!("{DATA}.tmp"));
        let _ = fs::remove_file(&tmp);
        symlink(Path::new(&name), &tmp)?;
        fs::rename(&tmp, self.path.join(DATA))?;
        // The visible names point into ..data once and for all; a regular
        // file left by an older tool is replaced by its symlink.
        for (file, _) in FILES {
            let link = self.path.join(file);
            let target = Path::new(DATA).join(file);
            if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
                let tmp = self.path.join(format!("{file}.tmp"));
                let _ = fs::remove_file(&tmp);
                symlink(&target, &tmp)?;
                fs::rename(&tmp, &link)?;
            }
        }
        sync_dir(&self.path)?;
        // Keep the previous generation for readers that resolved it just
        // before the switch; remove the older ones.
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let n = entry.file_name();
            let Some(n) = n.to_str() else { continue };
            let is_generation =
                n.starts_with("..") && n != DATA && n.len() > 2 && n.as_bytes()[2].is_ascii_digit();
            let keep = n == name || previous.as_deref().is_some_and(|p| p == Path::new(n));
            if is_generation && !keep {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// The renewal in progress, if any.
    pub fn pending(&self) -> io::Result<Option<Pending>> {
        match fs::read(self.path.join(JOURNAL)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is damaged ({e}); remove it to start a new renewal",
                        self.path.join(JOURNAL).display()
                    ),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records the renewal in progress, durably, before anything is sent.
    pub fn save_pending(&self, pending: &Pending) -> io::Result<()> {
        create_dir(&self.path)?;
        let bytes = serde_json::to_vec(pending).map_err(io::Error::other)?;
        let path = self.path.join(JOURNAL);
        let tmp = self.path.join(format!("{JOURNAL}.{}.tmp", random_suffix()));
        if let Err(e) = write_synced(&tmp, &bytes, true).and_then(|()| fs::rename(&tmp, &path)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&self.path)
    }

    /// Forgets the renewal in progress.
    pub fn clear_pending(&self) -> io::Result<()> {
        match fs::remove_file(self.path.join(JOURNAL)) {
            Ok(()) => sync_dir(&self.path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    crate::hex(&b)
}

fn generation_name(now: OffsetDateTime) -> String {
    let mut suffix = [0u8; 3];
    let _ = aws_lc_rs::rand::fill(&mut suffix);
    format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond(),
        crate::hex(&suffix)
    )
}

fn create_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o755);
    }
    builder.create(path)
}

/// Writes a new file (never an existing one: a file or symlink planted in
/// its place makes this fail instead of being written through) and syncs it.
fn write_synced(path: &Path, contents: &[u8], secret: bool) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "agent directories need symlinks (Unix)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn generations_switch_atomically_and_the_previous_one_stays() {
        let tmp = tempfile_dir();
        let dir = AgentDir::new(tmp.join("agent"));
        assert!(dir.load().unwrap().is_none());
        dir.install("CERT1", "KEY1", "BUNDLE", t(0)).unwrap();
        let first = fs::read_link(dir.path().join(DATA)).unwrap();
        dir.install("CERT2", "KEY2", "BUNDLE", t(1)).unwrap();
        let second = fs::read_link(dir.path().join(DATA)).unwrap();
        let stored = dir.load().unwrap().unwrap();
        assert_eq!(
            (stored.chain_pem.as_str(), stored.key_pem.as_str()),
            ("CERT2", "KEY2")
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("identity.pem")).unwrap(),
            "CERT2KEY2"
        );
        // A reader that resolved the first generation still reads a matching pair.
        assert_eq!(
            fs::read_to_string(dir.path().join(&first).join("key.pem")).unwrap(),
            "KEY1"
        );
        dir.install("CERT3", "KEY3", "BUNDLE", t(2)).unwrap();
        assert!(
            !dir.path().join(&first).exists(),
            "older generations are removed"
        );
        assert!(dir.path().join(&second).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f: &str| {
                fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode("key.pem"), 0o600);
            assert_eq!(mode("identity.pem"), 0o600);
            assert_eq!(mode("cert.pem"), 0o644);
        }
        fs::remove_dir_all(tmp).unwrap();
    }

    #[test]
    fn flat_files_of_older_tools_are_replaced_by_links() {
        let tmp = tempfile_dir();
        let dir = AgentDir::new(&tmp);
        for (f, _) in FILES {
            fs::write(tmp.join(f), "old").unwrap();
        }
        assert_eq!(dir.load().unwrap().unwrap().chain_pem, "old");
        dir.install("NEW", "KEY", "B", t(0)).unwrap();
        assert_eq!(dir.load().unwrap().unwrap().chain_pem, "NEW");
        assert!(fs::symlink_metadata(tmp.join("cert.pem"))
            .unwrap()
            .file_type()
            .is_symlink());
        fs::remove_dir_all(tmp).unwrap();
    }

    #[test]
    fn the_journal_survives_until_cleared() {
        let tmp = tempfile_dir();
        let dir = AgentDir::new(&tmp);
        assert!(dir.pending().unwrap().is_none());
        let pending = Pending {
            for_serial: "4a5b".parse().unwrap(),
            key_pem: "K".into(),
            csr_pem: "C".into(),
            issued: None,
        };
        dir.save_pending(&pending).unwrap();
        assert_eq!(dir.pending().unwrap().unwrap().csr_pem, "C");
        dir.clear_pending().unwrap();
        assert!(dir.pending().unwrap().is_none());
        fs::write(tmp.join(JOURNAL), "{broken").unwrap();
        assert!(dir.pending().is_err());
        fs::remove_dir_all(tmp).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let mut b = [0u8; 8];
        aws_lc_rs::rand::fill(&mut b).unwrap();
        let p = std::env::temp_dir().join(format!("agentca-files-{}", crate::hex(&b)));
        fs::create_dir_all(&p).unwrap();
        p
    }
}
