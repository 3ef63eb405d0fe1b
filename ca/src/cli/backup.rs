//! `agentca backup`, `agentca restore` and `agentca store migrate`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::admin::AdminConnection;
use crate::backup::{Backup, Summary};
use crate::datadir::{write_file, DataDir};
use crate::store::{Backend, Location, StoreChoice};
use crate::stored_ca::CaMaterial;

/// Largest backup downloaded or read, in bytes.
pub const MAX_BACKUP_BYTES: usize = 4 << 30;

/// `agentca backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    conn: AdminConnection,
    /// File to write the backup to (created with mode 0600; it holds the
    /// CA's keys, encrypted with its passphrase, and every record).
    #[arg(long)]
    out: PathBuf,
}

/// Takes a backup of the running CA.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.out.exists(),
        "{} exists; refusing to overwrite it",
        args.out.display()
    );
    let bytes = args
        .conn
        .download("/v1/admin/backup", MAX_BACKUP_BYTES)
        .await?;
    // What the CA sent is checked as a restore would, before it is kept.
    let (_, summary) = Backup::decode(&bytes)?;
    write_file(&args.out, &bytes, true)?;
    println!(
        "backup written to {}: {} record(s), audit trail up to event {}, {} bytes",
        args.out.display(),
        summary.records,
        summary.audit_head,
        bytes.len()
    );
    Ok(())
}

/// `agentca restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long = "in")]
    input: PathBuf,
    /// A new data directory to restore into (with --store redb or sled).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// redb (default) or sled in the data directory, or an empty
    /// PostgreSQL database (`postgres://…`).
    #[arg(long, hide_env_values = true, default_value = "redb")]
    store: StoreChoice,
}

/// Restores a backup into a new data directory or an empty database.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let size = std::fs::metadata(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_BACKUP_BYTES as u64,
        "{} is larger than {MAX_BACKUP_BYTES} bytes",
        args.input.display()
    );
    let bytes = std::fs::read(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let (backup, summary) = Backup::decode(&bytes)?;
    let place = restore_into(
        &backup.header.ca,
        &backup.snapshot,
        &args.store,
        args.data_dir,
    )?;
    println!(
        "restored {} record(s), audit trail up to event {}, into {place}",
        summary.records, summary.audit_head
    );
    println!(
        "  taken {} by agentca {}",
        backup.header.created_at, backup.header.version
    );
    Ok(())
}

/// Writes a CA (`material` and `snapshot`) into a new data directory or an
/// empty database; where, for the report.
fn restore_into(
    material: &CaMaterial,
    snapshot: &crate::store::Snapshot,
    target: &StoreChoice,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<String> {
    match target {
        StoreChoice::Embedded(backend) => {
            let dir =
                DataDir::new(data_dir.context(
                    "where to? Give --data-dir <new directory> (or --store postgres://…)",
                )?);
            anyhow::ensure!(
                !dir.exists(),
                "{} already holds a CA; restore into a new directory",
                dir.path().display()
            );
            crate::datadir::create_private_dir(dir.path())?;
            let store = crate::store::open(*backend, dir.path())?;
            crate::store::load(&*store, snapshot)?;
            crate::state::check_schema(&*store)?;
            drop(store);
            // ca.json last: a directory without it holds no CA.
            material.write_dir(&dir, *backend)?;
            Ok(format!("{} ({backend})", dir.path().display()))
        }
        StoreChoice::Postgres(url) => {
            anyhow::ensure!(
                data_dir.is_none(),
                "--data-dir and a postgres:// --store name two places: give one"
            );
            let location = Location::Postgres(url.clone());
            let store =
                crate::store::open_location(&location, None, crate::store::DEFAULT_CACHE_BYTES)
                    .with_context(|| format!("cannot open the database {url}"))?;
            crate::store::load(&*store, snapshot)?;
            crate::state::check_schema(&*store)?;
            let mut material = material.clone();
            material.meta.store = Backend::Postgres;
            if crate::stored_ca::get(&*store)?.is_some() {
                // A backup of a CA kept in PostgreSQL holds its record.
                return Ok(url.to_string());
            }
            crate::stored_ca::put(&*store, &material, None)?;
            Ok(url.to_string())
        }
    }
}

/// `agentca store`.
#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Move a stopped single-node CA, its whole history and audit trail
    /// included, onto an empty PostgreSQL database.
    Migrate(MigrateArgs),
}

#[derive(Args, Debug)]
struct MigrateArgs {
    /// The CA's data directory (the CA must be stopped).
    #[arg(long, env = "AGENTCA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The empty database to move it to.
    #[arg(long, hide_env_values = true)]
    to: StoreChoice,
}

/// `agentca store …`.
pub fn store(args: StoreArgs) -> anyhow::Result<()> {
    match args.command {
        StoreCommand::Migrate(args) => migrate(args),
    }
}

fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(args.to, StoreChoice::Postgres(_)),
        "--to takes a postgres:// URL"
    );
    let dir = DataDir::new(args.data_dir.unwrap_or_else(super::default_data_dir));
    let material = CaMaterial::read_dir(&dir)?;
    let source = crate::state::open_store(&Location::Embedded {
        backend: material.meta.store,
        dir: dir.path().to_owned(),
    })
    .with_context(|| {
        format!(
            "cannot open the store in {} (stop the CA first)",
            dir.path().display()
        )
    })?;
    let snapshot = source.snapshot()?;
    drop(source);
    // Checked as a backup is, before anything is written.
    let Summary {
        records,
        audit_head,
    } = crate::backup::check(&snapshot)?;
    let place = restore_into(&material, &snapshot, &args.to, None)?;
    // Read back: the database holds exactly what the directory did.
    let StoreChoice::Postgres(url) = &args.to else {
        unreachable!("checked above")
    };
    let copy = crate::store::open_location(
        &Location::Postgres(url.clone()),
        None,
        crate::store::DEFAULT_CACHE_BYTES,
    )?;
    let mut moved = copy.snapshot()?;
    let meta = &mut moved[crate::store::Table::Meta.index()].1;
    meta.retain(|(key, _)| key.as_slice() != b"ca");
    anyhow::ensure!(
        moved == snapshot,
        "the database does not read back what was moved; it should be dropped and the move retried"
    );
    println!(
        "moved {records} record(s), audit trail up to event {audit_head}, from {} to {place}",
        dir.path().display()
    );
    println!(
        "  serve it with: agentca serve --store <url> (the data directory can be kept as a backup)"
    );
    Ok(())
}
