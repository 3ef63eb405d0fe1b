//! The commands that govern an agent over its life: `update`, `history`,
//! `retire`, `pending`, `approve`, `reject`, and `scope
//! block|unblock|blocks`.

use agentca::wire::{
    AgentInfo, AgentVersion, BlockScopeRequest, PendingChange, ScopeBlock, UpdateAgentRequest,
};
use clap::{Args, Subcommand};
use reqwest::Method;
use time::Duration;

use super::admin::{AdminConnection, AgentArgs, AgentRef};
use super::parse_duration;

/// `agentca update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    agent: AgentRef,
    /// The new set of scopes (repeat for more; every scope the agent
    /// keeps must be given). Scopes removed stop being honoured at once by
    /// its live certificates, at verifiers that follow the CA's feed.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Remove every scope.
    #[arg(long, conflicts_with = "scopes")]
    no_scopes: bool,
    /// The new owner.
    #[arg(long)]
    owner: Option<String>,
    /// The new purpose.
    #[arg(long)]
    purpose: Option<String>,
    /// The new lifetime of its certificates.
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<Duration>,
    /// Apply only if the registration is at this version (as `agentca
    /// agent` shows it): refused with version_conflict if someone changed
    /// it since.
    #[arg(long)]
    if_version: Option<u64>,
    #[command(flatten)]
    conn: AdminConnection,
}

pub async fn update(args: UpdateArgs) -> anyhow::Result<()> {
    let scopes = if args.no_scopes {
        Some(Vec::new())
    } else if args.scopes.is_empty() {
        None
    } else {
        Some(args.scopes)
    };
    let body = UpdateAgentRequest {
        owner: args.owner,
        purpose: args.purpose,
        ttl_seconds: args.ttl.map(|d| d.whole_seconds().max(0) as u64),
        scopes,
    };
    anyhow::ensure!(
        body != UpdateAgentRequest::default(),
        "nothing to change: give --scope, --no-scopes, --owner, --purpose or --ttl"
    );
    let path = args.agent.path()?;
    let info: AgentInfo = match args.if_version {
        Some(v) => {
            args.conn
                .call_if_match(Method::PATCH, &path, Some(&body), v)
                .await?
        }
        None => args.conn.call(Method::PATCH, &path, Some(&body)).await?,
    };
    args.conn.print(&info)
}

/// `agentca history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    agent: AgentRef,
    /// Only the version in force at this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    at: Option<time::OffsetDateTime>,
    #[command(flatten)]
    conn: AdminConnection,
}

fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-03-03T14:32:00Z: {e}"))
}

pub async fn history(args: HistoryArgs) -> anyhow::Result<()> {
    let mut path = format!("{}/history", args.agent.path()?);
    if let Some(at) = args.at {
        path.push_str(&format!("?at={}", at.unix_timestamp()));
    }
    let versions: Vec<AgentVersion> = args.conn.call::<(), _>(Method::GET, &path, None).await?;
    args.conn.print(&versions)
}

pub async fn retire(args: AgentArgs) -> anyhow::Result<()> {
    let path = format!("{}/retire", args.agent.path()?);
    let info: AgentInfo = args.conn.call::<(), _>(Method::POST, &path, None).await?;
    args.conn.print(&info)
}

/// `agentca scope`.
#[derive(Args, Debug)]
pub struct ScopeArgs {
    #[command(subcommand)]
    command: ScopeCommand,
    #[command(flatten)]
    conn: AdminConnection,
}

#[derive(Subcommand, Debug)]
enum ScopeCommand {
    /// Block a scope (a kill switch for one tool): verifiers that follow
    /// the feed refuse it within a second while the agents keep their
    /// other scopes; new certificates leave it out while the block stands.
    Block {
        /// The scope, such as payments:write.
        scope: String,
        /// Only this tenant's agents (default: every agent; global admins
        /// only).
        #[arg(long)]
        tenant: Option<String>,
        /// Only this environment (with --tenant).
        #[arg(long, requires = "tenant")]
        env: Option<String>,
        /// Only this agent (with --tenant and --env).
        #[arg(long, requires = "env")]
        agent: Option<String>,
        /// Why, for the audit trail and the list of blocks.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a block, by the id `scope block` and `scope blocks` show.
    Unblock {
        /// The block's id.
        id: u64,
    },
    /// List the blocks in force.
    Blocks,
}

pub async fn scope(args: ScopeArgs) -> anyhow::Result<()> {
    match args.command {
        ScopeCommand::Block {
            scope,
            tenant,
            env,
            agent,
            reason,
        } => {
            let body = BlockScopeRequest {
                scope,
                tenant,
                env,
                agent,
                reason,
            };
            let block: ScopeBlock = args
                .conn
                .call(Method::POST, "/v1/admin/scopes/blocks", Some(&body))
                .await?;
            args.conn.print(&block)
        }
        ScopeCommand::Unblock { id } => {
            let block: ScopeBlock = args
                .conn
                .call::<(), _>(
                    Method::DELETE,
                    &format!("/v1/admin/scopes/blocks/{id}"),
                    None,
                )
                .await?;
            args.conn.print(&block)
        }
        ScopeCommand::Blocks => {
            let blocks: Vec<ScopeBlock> = args
                .conn
                .call::<(), _>(Method::GET, "/v1/admin/scopes/blocks", None)
                .await?;
            args.conn.print(&blocks)
        }
    }
}

/// `agentca approve` and `agentca reject`.
#[derive(Args, Debug)]
pub struct PendingArgs {
    /// The change's id (`agentca pending` lists them).
    id: u64,
    #[command(flatten)]
    conn: AdminConnection,
}

/// `agentca pending`.
#[derive(Args, Debug)]
pub struct PendingListArgs {
    #[command(flatten)]
    conn: AdminConnection,
}

pub async fn pending(args: PendingListArgs) -> anyhow::Result<()> {
    let waiting: Vec<PendingChange> = args
        .conn
        .call::<(), _>(Method::GET, "/v1/admin/pending", None)
        .await?;
    args.conn.print(&waiting)
}

pub async fn approve(args: PendingArgs) -> anyhow::Result<()> {
    let path = format!("/v1/admin/pending/{}/approve", args.id);
    let info: AgentInfo = args.conn.call::<(), _>(Method::POST, &path, None).await?;
    args.conn.print(&info)
}

pub async fn reject(args: PendingArgs) -> anyhow::Result<()> {
    let path = format!("/v1/admin/pending/{}", args.id);
    let dropped: PendingChange = args.conn.call::<(), _>(Method::DELETE, &path, None).await?;
    args.conn.print(&dropped)
}
