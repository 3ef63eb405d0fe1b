//! `agentca audit` and `agentca admin`: reading the audit trail and
//! managing named admins, over the API.

use std::io::Write;
use std::path::PathBuf;

use agentca::wire::{
    AdminInfo, AdminVersion, AuditEvent, AuditPage, CreateAdminRequest, CreateAdminResponse,
    SetAdminRoleRequest,
};
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
        /// Exports written by `audit prune`, oldest first: the pruned part
        /// of the trail, verified as one chain with what the CA holds (the
        /// last exported event must be the CA's checkpoint). Repeatable.
        #[arg(long = "export")]
        exports: Vec<PathBuf>,
    },
    /// Export the oldest events to a file, then remove them from the CA's
    /// store. The trail the CA keeps links to the last exported event (its
    /// checkpoint), so `audit verify --export FILE` still verifies the
    /// whole history.
    Prune {
        /// Where to write the events (JSON lines; must not exist).
        #[arg(long)]
        export: PathBuf,
        /// Prune the events older than this (`30d`, `12h`).
        #[arg(long, value_parser = super::parse_duration, conflicts_with = "through", required_unless_present = "through")]
        older_than: Option<time::Duration>,
        /// Prune the events up to this sequence number.
        #[arg(long)]
        through: Option<u64>,
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
        AuditCommand::Verify { anchor, exports } => verify(&args.conn, anchor, &exports).await,
        AuditCommand::Prune {
            export,
            older_than,
            through,
        } => prune(&args.conn, &export, older_than, through).await,
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

/// The events of the export files, in order, checked as one chain from
/// the first event: calls `each` with every event after checking it.
/// Returns the last event's number and hash (0 and zeros for no file).
fn walk_exports(
    exports: &[PathBuf],
    mut each: impl FnMut(&AuditEvent),
) -> anyhow::Result<(u64, String)> {
    use std::io::BufRead;
    let mut last = (0u64, crate::audit::chain::genesis());
    for path in exports {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read the export {}", path.display()))?;
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let event: AuditEvent = serde_json::from_str(&line).with_context(|| {
                format!("{} line {}: not an audit event", path.display(), n + 1)
            })?;
            crate::audit::verify_chain(std::slice::from_ref(&event), last.0 + 1, &last.1).map_err(
                |broken| anyhow::anyhow!("audit export {} broken: {broken}", path.display()),
            )?;
            each(&event);
            last = (event.seq, event.hash.clone());
        }
    }
    Ok(last)
}

async fn verify(
    conn: &AdminConnection,
    anchor_path: Option<PathBuf>,
    exports: &[PathBuf],
) -> anyhow::Result<()> {
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
    let mut anchor_seen = false;
    let mut anchor_changed = false;
    let mut check_anchor = |e: &AuditEvent| {
        if let Some(a) = &anchor {
            if e.seq == a.seq {
                anchor_seen = true;
                anchor_changed |= e.hash != a.hash;
            }
        }
    };
    // The pruned part, from the exports; then the CA's part, which must
    // start where the exports end.
    let exported = walk_exports(exports, &mut check_anchor)?;
    let first = page(conn, 0, 0).await?;
    let (mut since, mut prev) = match &first.checkpoint {
        Some(c) => {
            anyhow::ensure!(
                exports.is_empty() || (exported.0, exported.1.as_str()) == (c.seq, c.hash.as_str()),
                "the exports end at event {}, but the CA's trail starts after its checkpoint, event {}{}",
                exported.0,
                c.seq,
                if exported.0 == c.seq { " with another hash" } else { "" }
            );
            (c.seq, c.hash.clone())
        }
        None => {
            anyhow::ensure!(
                exported.0 == 0,
                "exports were given, but the CA's trail was never pruned"
            );
            (0, crate::audit::chain::genesis())
        }
    };
    let pruned = since;
    let (head_seq, head_hash) = loop {
        let page = page(conn, since, 0).await?;
        if let Err(broken) = crate::audit::verify_chain(&page.events, since + 1, &prev) {
            anyhow::bail!("audit trail broken: {broken}");
        }
        page.events.iter().for_each(&mut check_anchor);
        match page.events.last() {
            Some(last) if last.seq < page.head_seq => {
                since = last.seq;
                prev = last.hash.clone();
            }
            last => {
                let (found, hash) = last.map_or((since, prev.clone()), |l| (l.seq, l.hash.clone()));
                let head = crate::audit::Head {
                    seq: page.head_seq,
                    hash: page.head_hash.clone(),
                };
                if let Err(broken) = crate::audit::ends_at_head((found, &hash), &head) {
                    anyhow::bail!("audit trail broken: {broken}");
                }
                break (found, hash);
            }
        }
    };
    if let Some(a) = &anchor {
        anyhow::ensure!(
            !anchor_changed,
            "audit trail rewritten: event {} no longer has the hash anchored at the last verification",
            a.seq
        );
        if !anchor_seen && a.seq != 0 {
            anyhow::ensure!(
                a.seq > pruned,
                "event {} of the last verification was pruned (the CA's trail starts after event {pruned}): pass the export that holds it with --export",
                a.seq
            );
            anyhow::bail!(
                "audit trail rewritten: event {} of the last verification is gone (the trail ends at {head_seq})",
                a.seq
            );
        }
    }
    if let Some(path) = &anchor_path {
        let text = serde_json::to_string(&Anchor {
            seq: head_seq,
            hash: head_hash.clone(),
        })?;
        std::fs::write(path, text)
            .with_context(|| format!("writing the anchor {}", path.display()))?;
    }
    if pruned > 0 && exports.is_empty() {
        println!(
            "audit trail intact: events {}..={head_seq} (events up to {pruned} were pruned; pass their exports with --export to verify them too), last hash {head_hash}",
            pruned + 1
        );
    } else {
        println!("audit trail intact: {head_seq} event(s), last hash {head_hash}");
    }
    Ok(())
}

/// Exports the oldest events to `path`, then has the CA remove them.
async fn prune(
    conn: &AdminConnection,
    path: &std::path::Path,
    older_than: Option<time::Duration>,
    through: Option<u64>,
) -> anyhow::Result<()> {
    let cutoff = older_than.map(|d| time::OffsetDateTime::now_utc() - d);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create the export {} (it must not exist)",
                path.display()
            )
        })?;
    let first = page(conn, 0, 0).await?;
    let (mut since, mut prev) = match &first.checkpoint {
        Some(c) => (c.seq, c.hash.clone()),
        None => (0, crate::audit::chain::genesis()),
    };
    let start = since;
    // The last event to prune: before the head, at most MAX_PRUNED.
    let limit = first
        .head_seq
        .saturating_sub(1)
        .min(start + crate::audit::MAX_PRUNED)
        .min(through.unwrap_or(u64::MAX));
    let mut out = std::io::BufWriter::new(&mut file);
    'pages: while since < limit {
        let page = page(conn, since, 0).await?;
        if page.events.is_empty() {
            break;
        }
        crate::audit::verify_chain(&page.events, since + 1, &prev)
            .map_err(|broken| anyhow::anyhow!("audit trail broken, nothing pruned: {broken}"))?;
        for event in &page.events {
            if event.seq > limit || cutoff.is_some_and(|c| event.at >= c) {
                break 'pages;
            }
            serde_json::to_writer(&mut out, event)?;
            out.write_all(b"\n")?;
            since = event.seq;
            prev = event.hash.clone();
        }
    }
    out.flush()?;
    drop(out);
    // On disk before anything is removed.
    file.sync_all()
        .with_context(|| format!("writing the export {}", path.display()))?;
    if since == start {
        println!("nothing to prune: no event is old enough (the last event always stays)");
        return Ok(());
    }
    let answer: agentca::wire::PruneAuditResponse = conn
        .call(
            Method::POST,
            "/v1/admin/audit/prune",
            Some(&agentca::wire::PruneAuditRequest {
                through: since,
                hash: prev.clone(),
            }),
        )
        .await?;
    println!(
        "pruned {} event(s), {}..={since}, exported to {}; the CA's trail now starts after checkpoint {since} {prev}",
        answer.pruned,
        start + 1,
        path.display()
    );
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
        /// `admin` (reads and changes) or `auditor` (reads agents, their
        /// history, the audit trail and the metrics; changes nothing).
        #[arg(long, default_value = "admin", value_parser = ["admin", "auditor"])]
        role: String,
    },
    /// List the named admins.
    List,
    /// Revoke an admin's token.
    Revoke {
        /// The admin's name.
        #[arg(long)]
        name: String,
    },
    /// Give an admin another role (a new version of it; the last global
    /// admin does not become an auditor).
    Role {
        /// The admin's name.
        #[arg(long)]
        name: String,
        /// `admin` or `auditor`.
        #[arg(long, value_parser = ["admin", "auditor"])]
        role: String,
        /// Apply only if the admin is at this version (`admin list` shows
        /// it): refused with version_conflict otherwise.
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Show an admin's versions: when it was created and its role changed,
    /// and by whom.
    History {
        /// The admin's name.
        #[arg(long)]
        name: String,
    },
}

pub async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Create { name, tenant, role } => {
            let body = CreateAdminRequest {
                name,
                tenant,
                role: Some(role),
            };
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
            args.conn.print(&admins)?;
            Ok(())
        }
        AdminCommand::Role {
            name,
            role,
            if_version,
        } => {
            let path = format!("/v1/admin/admins/{name}");
            let body = SetAdminRoleRequest { role };
            let info: AdminInfo = match if_version {
                Some(v) => {
                    args.conn
                        .call_if_match(Method::PATCH, &path, Some(&body), v)
                        .await?
                }
                None => args.conn.call(Method::PATCH, &path, Some(&body)).await?,
            };
            args.conn.print(&info)?;
            Ok(())
        }
        AdminCommand::History { name } => {
            let versions: Vec<AdminVersion> = args
                .conn
                .call::<(), _>(
                    Method::GET,
                    &format!("/v1/admin/admins/{name}/history"),
                    None,
                )
                .await?;
            args.conn.print(&versions)?;
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
