//! The admin commands: they talk to the running CA over its API.

use std::path::PathBuf;

use agentca::client::CaClient;
use agentca::wire::{
    AgentInfo, CreateTokenRequest, RegisterAgentRequest, RevokeRequest, RevokeResponse,
    TokenCreated,
};
use clap::Args;
use reqwest::Method;
use serde::Serialize;
use time::Duration;

use super::{default_data_dir, parse_duration, read_secret_file, CaConnection};
use crate::datadir::DataDir;

/// How to reach the CA as an admin.
#[derive(Args, Debug, Clone)]
pub struct AdminConnection {
    #[command(flatten)]
    ca: CaConnection,
    /// File holding an admin token (default: admin.token of the local CA).
    /// Alternatively set AGENTCA_ADMIN_TOKEN.
    #[arg(
        help_heading = "Reaching the CA",
        long,
        env = "AGENTCA_ADMIN_TOKEN_FILE"
    )]
    admin_token_file: Option<PathBuf>,
    /// How to print what the CA answers: json (for scripts) or table (for
    /// people).
    #[arg(
        help_heading = "Output",
        long,
        global = true,
        value_enum,
        default_value = "json"
    )]
    format: super::output::Format,
}

impl AdminConnection {
    /// Prints `value` in the `--format` asked for.
    pub(super) fn print<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        super::output::print(value, self.format)
    }

    fn connect(&self) -> anyhow::Result<(CaClient, String)> {
        let token = if let Some(path) = &self.admin_token_file {
            read_secret_file(path)?
        } else if let Ok(token) = std::env::var("AGENTCA_ADMIN_TOKEN") {
            token.trim().to_owned()
        } else {
            let local = DataDir::new(default_data_dir()).admin_token();
            anyhow::ensure!(
                local.exists(),
                "no admin token: give --admin-token-file <file> or set AGENTCA_ADMIN_TOKEN"
            );
            read_secret_file(&local)?
        };
        let client = CaClient::new(&self.ca.urls.list(), self.ca.trust()?, None)?;
        Ok((client, token))
    }

    /// `GET path` as an admin: the raw answer, at most `max_bytes`.
    pub(super) async fn download(&self, path: &str, max_bytes: usize) -> anyhow::Result<Vec<u8>> {
        let (client, token) = self.connect()?;
        Ok(client.download(path, Some(&token), max_bytes).await?)
    }

    /// [`AdminConnection::call`] with `If-Match: "version"`.
    pub(super) async fn call_if_match<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        version: u64,
    ) -> anyhow::Result<T> {
        let (client, token) = self.connect()?;
        Ok(client
            .call_if_match(method, path, Some(&token), body, version)
            .await?)
    }

    pub(super) async fn call<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let (client, token) = self.connect()?;
        Ok(client.call(method, path, Some(&token), body).await?)
    }
}

/// Names one agent.
#[derive(Args, Debug, Clone)]
pub struct AgentRef {
    /// Tenant.
    #[arg(long)]
    pub(super) tenant: String,
    /// Environment.
    #[arg(long)]
    pub(super) env: String,
    /// Agent name.
    #[arg(long)]
    pub(super) agent: String,
}

impl AgentRef {
    pub(super) fn path(&self) -> anyhow::Result<String> {
        // Validate locally so that a bad name is a clear error, not a 404
        // on a mangled path.
        agentca::identity::AgentId::new("check.invalid", &self.tenant, &self.env, &self.agent)?;
        Ok(format!(
            "/v1/admin/agents/{}/{}/{}",
            self.tenant, self.env, self.agent
        ))
    }
}

/// `agentca register`.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    #[command(flatten)]
    agent: AgentRef,
    /// Who is responsible for the agent.
    #[arg(long)]
    owner: String,
    /// What the agent is for.
    #[arg(long)]
    purpose: String,
    /// Lifetime of its certificates (default: the CA's default).
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<Duration>,
    /// A permission written into its certificates, such as tickets:read
    /// (repeat for more).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Register the name of a retired agent again: a new agent under the
    /// old name (audited; the old one's history stays).
    #[arg(long)]
    reuse_retired: bool,
    #[command(flatten)]
    conn: AdminConnection,
}

pub async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let body = RegisterAgentRequest {
        tenant: args.agent.tenant,
        env: args.agent.env,
        agent: args.agent.agent,
        owner: args.owner,
        purpose: args.purpose,
        ttl_seconds: args.ttl.map(|d| d.whole_seconds().max(0) as u64),
        scopes: args.scopes,
        reuse_retired: args.reuse_retired,
    };
    let info: AgentInfo = args
        .conn
        .call(Method::POST, "/v1/admin/agents", Some(&body))
        .await?;
    args.conn.print(&info)
}

/// `agentca agents`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this environment (with --tenant).
    #[arg(long, requires = "tenant")]
    env: Option<String>,
    /// Only enabled or only disabled agents.
    #[arg(long, value_parser = ["enabled", "disabled"])]
    state: Option<String>,
    /// Only agents issued no certificate for at least this long (or
    /// never), such as 30m.
    #[arg(long, value_parser = parse_duration)]
    idle_for: Option<Duration>,
    /// At most this many (fetched a page at a time).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    limit: u64,
    #[command(flatten)]
    conn: AdminConnection,
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(t) = &args.tenant {
        agentca::identity::Name::new(agentca::identity::Part::Tenant, t)?;
        query.push(format!("tenant={t}"));
    }
    if let Some(e) = &args.env {
        agentca::identity::Name::new(agentca::identity::Part::Env, e)?;
        query.push(format!("env={e}"));
    }
    if let Some(state) = &args.state {
        query.push(format!("state={state}"));
    }
    if let Some(idle) = args.idle_for {
        query.push(format!("idle_for={}", idle.whole_seconds().max(0)));
    }
    let limit = usize::try_from(args.limit)?;
    let (client, token) = args.conn.connect()?;
    let mut agents: Vec<AgentInfo> = Vec::new();
    let mut after: Option<String> = None;
    while agents.len() < limit {
        let mut page_query = query.clone();
        page_query.push(format!("limit={}", limit - agents.len()));
        if let Some(after) = &after {
            // Agent keys are names and slashes: nothing to escape.
            page_query.push(format!("after={after}"));
        }
        let (page, next) = client.list_agents(&token, &page_query.join("&")).await?;
        agents.extend(page);
        match next {
            // The CA moves on or says it is done; anything else would loop.
            Some(next) if after.as_deref().is_none_or(|a| next.as_str() > a) => after = Some(next),
            Some(next) => {
                anyhow::bail!("the CA returned a page cursor {next:?} that does not advance")
            }
            None => break,
        }
    }
    args.conn.print(&agents)
}

/// Commands on one agent: `agent`, `enable`, `disable`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    pub(super) agent: AgentRef,
    #[command(flatten)]
    pub(super) conn: AdminConnection,
}

pub async fn show(args: AgentArgs) -> anyhow::Result<()> {
    let info: AgentInfo = args
        .conn
        .call::<(), _>(Method::GET, &args.agent.path()?, None)
        .await?;
    args.conn.print(&info)
}

pub async fn set_enabled(args: AgentArgs, enabled: bool) -> anyhow::Result<()> {
    let path = format!(
        "{}/{}",
        args.agent.path()?,
        if enabled { "enable" } else { "disable" }
    );
    let info: AgentInfo = args.conn.call::<(), _>(Method::POST, &path, None).await?;
    args.conn.print(&info)
}

/// `agentca token`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    agent: AgentRef,
    /// How long the token may be used.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    ttl: Duration,
    /// How many enrollments it allows (for pools of identical agents).
    #[arg(long, default_value_t = 1)]
    uses: u32,
    /// Print only the token (for scripts).
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    conn: AdminConnection,
}

pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let body = CreateTokenRequest {
        ttl_seconds: Some(args.ttl.whole_seconds().max(0) as u64),
        uses: Some(args.uses),
    };
    let path = format!("{}/tokens", args.agent.path()?);
    let created: TokenCreated = args.conn.call(Method::POST, &path, Some(&body)).await?;
    if args.quiet {
        println!("{}", created.token);
    } else {
        println!("{}", created.token);
        eprintln!(
            "bootstrap token {} for {}: {} use(s), valid until {}. It is shown only once.",
            created.token_id,
            created.spiffe_id,
            created.uses,
            agentca::rfc3339(created.expires_at)
        );
    }
    Ok(())
}

/// `agentca revoke`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["serial", "instance", "tenant"])))]
pub struct RevokeArgs {
    /// One certificate, by serial (hex).
    #[arg(long)]
    serial: Option<agentca::wire::Serial>,
    /// Every live certificate of one instance.
    #[arg(long)]
    instance: Option<agentca::identity::InstanceId>,
    /// A whole tenant; with --env one environment of it; with --env and
    /// --agent one agent. Revoking agents also disables them and voids
    /// their unused tokens.
    #[arg(long)]
    tenant: Option<String>,
    /// Environment (with --tenant).
    #[arg(long, requires = "tenant")]
    env: Option<String>,
    /// Agent (with --tenant and --env).
    #[arg(long, requires = "env")]
    agent: Option<String>,
    /// RFC 5280 reason: unspecified, keyCompromise, affiliationChanged,
    /// superseded, cessationOfOperation or privilegeWithdrawn.
    #[arg(long, default_value = "unspecified")]
    reason: String,
    #[command(flatten)]
    conn: AdminConnection,
}

pub async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let body = RevokeRequest {
        serial: args.serial,
        instance_id: args.instance,
        tenant: args.tenant,
        env: args.env,
        agent: args.agent,
        reason: Some(args.reason),
    };
    let done: RevokeResponse = args
        .conn
        .call(Method::POST, "/v1/admin/revoke", Some(&body))
        .await?;
    args.conn.print(&done)
}
