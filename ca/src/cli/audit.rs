//! `agentca audit` and `agentca admin`: reading the audit trail and
//! managing named admins, over the API.

use std::io::Write;
use std::path::PathBuf;

use agentca::wire::{AdminInfo, AuditEvent, AuditPage, CreateAdminRequest, CreateAdminResponse};
use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::admin::AdminConnection;

/// `agentca audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
    #[command(flatten)]
    conn: AdminConnection,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Print events as JSON lines, from a sequence number to the current end.
    Export {
        /// Print the events after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Print events as JSON lines as they happen, until interrupted.
    Follow {
        /// Start after this sequence number (default: the current end, so
        /// only new events).
        #[arg(long)]
        since: Option<u64>,
    },
    /// Walk the whole chain and report the first changed, removed or
    /// reordered event. Exit code 1 if the trail is broken.
    Verify {
        /// A file remembering the head of the last verification: the event
        /// it names must still carry the same hash (so a trail rewritten
        /// from the start, hashes and all, is caught too). Written after a
        /// successful verification.
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
}

/// The head of a verified trail, as the anchor file keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Anchor {
    seq: u64,
    hash: String,
}

/// Most events one verification reads: the trail is walked in pages, and
/// only the last hash is kept.
const PAGE: usize = 1000;

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Export { since } => export(&args.conn, since).await,
        AuditCommand::Follow { since } => follow(&args.conn, since).await,
        AuditCommand::Verify { anchor } => verify(&args.conn, anchor).await,
    }
}

async fn page(conn: &AdminConnection, since: u64, wait: u64) -> anyhow::Result<AuditPage> {
    conn.call::<(), _>(
        Method::GET,
        &format!("/v1/admin/audit?since={since}&limit={PAGE}&wait={wait}"),
        None,
    )
    .await
}

fn print_lines(events: &[AuditEvent]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

async fn export(conn: &AdminConnection, mut since: u64) -> anyhow::Result<()> {
    loop {
        let page = page(conn, since, 0).await?;
        print_lines(&page.events)?;
        match page.events.last() {
            Some(last) => since = last.seq,
            None => return Ok(()),
        }
        if since >= page.head_seq {
            return Ok(());
        }
    }
}

async fn follow(conn: &AdminConnection, since: Option<u64>) -> anyhow::Result<()> {
    let mut since = match since {
        Some(s) => s,
        None => page(conn, u64::MAX - 1, 0).await?.head_seq,
    };
    loop {
        let page = tokio::select! {
            page = page(conn, since, 20) => page?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        print_lines(&page.events)?;
        if let Some(last) = page.events.last() {
            since = last.seq;
        }
    }
}

async fn verify(conn: &AdminConnection, anchor_path: Option<PathBuf>) -> anyhow::Result<()> {
    let anchor: Option<Anchor> = match &anchor_path {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the anchor {}", path.display()))?;
            Some(serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not an anchor written by audit verify",
                    path.display()
                )
            })?)
        }
        _ => None,
    };
    let mut since = 0;
    let mut prev = "0".repeat(64);
    let mut anchor_seen = false;
    let (head_seq, head_hash) = loop {
        let page = page(conn, since, 0).await?;
        if let Err(broken) = crate::audit::verify_chain(&page.events, since + 1, &prev) {
            anyhow::bail!("audit trail broken: {broken}");
        }
        if let Some(a) = &anchor {
            if let Some(e) = page.events.iter().find(|e| e.seq == a.seq) {
                anyhow::ensure!(
                    e.hash == a.hash,
                    "audit trail rewritten: event {} no longer has the hash anchored at the last verification",
                    a.seq
                );
                anchor_seen = true;
            }
        }
        match page.events.last() {
            Some(last) if last.seq < page.head_seq => {
                since = last.seq;
                prev = last.hash.clone();
            }
            last => {
                let (found, hash) = last.map_or((since, prev.clone()), |l| (l.seq, l.hash.clone()));
                if found != page.head_seq {
                    let broken = crate::audit::AuditBreak::Truncated {
                        expected: page.head_seq,
                        found,
                    };
                    anyhow::bail!("audit trail broken: {broken}");
                }
                anyhow::ensure!(
                    hash == page.head_hash,
                    "audit trail broken: event {found} was changed or replaced: its hash is not the one the CA recorded as the head"
                );
                break (found, hash);
            }
        }
    };
    if let Some(a) = &anchor {
        anyhow::ensure!(
            anchor_seen || a.seq == 0,
            "audit trail rewritten: event {} of the last verification is gone (the trail ends at {head_seq})",
            a.seq
        );
    }
    if let Some(path) = &anchor_path {
        let text = serde_json::to_string(&Anchor {
            seq: head_seq,
            hash: head_hash.clone(),
        })?;
        std::fs::write(path, text)
            .with_context(|| format!("writing the anchor {}", path.display()))?;
    }
    println!("audit trail intact: {head_seq} event(s), last hash {head_hash}");
    Ok(())
}

/// `agentca admin`.
#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
    #[command(flatten)]
    conn: AdminConnection,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create a named admin token (printed once on stdout).
    Create {
        /// Its name, as the audit trail will show it.
        #[arg(long)]
        name: String,
        /// Limit it to one tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List the named admins.
    List,
    /// Revoke an admin's token.
    Revoke {
        /// The admin's name.
        #[arg(long)]
        name: String,
    },
}

pub async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Create { name, tenant } => {
            let body = CreateAdminRequest { name, tenant };
            let created: CreateAdminResponse = args
                .conn
                .call(Method::POST, "/v1/admin/admins", Some(&body))
                .await?;
            println!("{}", created.token);
            eprintln!(
                "admin token for {:?} ({}). It is shown only once.",
                created.admin.name,
                match &created.admin.tenant {
                    Some(t) => format!("tenant {t} only"),
                    None => "every tenant".into(),
                }
            );
            Ok(())
        }
        AdminCommand::List => {
            let admins: Vec<AdminInfo> = args
                .conn
                .call::<(), _>(Method::GET, "/v1/admin/admins", None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&admins)?);
            Ok(())
        }
        AdminCommand::Revoke { name } => {
            let _: serde_json::Value = args
                .conn
                .call::<(), _>(Method::DELETE, &format!("/v1/admin/admins/{name}"), None)
                .await?;
            eprintln!("admin {name:?} revoked");
            Ok(())
        }
    }
}
