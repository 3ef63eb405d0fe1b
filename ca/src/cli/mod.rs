//! The `agentca` command.
//!
//! One binary for the three users: the operator (`init`, `serve`,
//! `backup`, `restore`, `store migrate`), the
//! admin (`register`, `agents`, `agent`, `token`, `enable`, `disable`,
//! `revoke`, `update`, `history`, `retire`, `scope`, `pending`,
//! `approve`, `reject`, which
//! talk to the running CA over its API, since the store belongs to one
//! process), and the agent (`enroll`, `renew`).

mod admin;
mod agent;
mod audit;
mod backup;
mod config;
mod crl;
mod govern;
mod info;
mod init;
mod local;
mod output;
mod serve;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use time::Duration;

/// Exit code for a failure not otherwise classed (clap uses 2 for usage
/// errors); [`exit_code`] gives the others.
const EXIT_FAILURE: u8 = 1;

/// Exit code of a refusal (unauthenticated, forbidden, revoked, disabled,
/// retired).
pub const EXIT_REFUSED: u8 = 4;

/// The exit code of a command that failed with `error`, by what the CA
/// answered: 3 not found, 4 refused (unauthenticated, forbidden, revoked,
/// disabled, retired), 5 conflict, 75 asked to retry later (rate limited),
/// 69 unavailable (the CA unreachable or failing); 1 otherwise. (2 is a
/// usage error, from the argument parser.)
pub fn exit_code(error: &anyhow::Error) -> u8 {
    use agentca::client::ClientError;
    for cause in error.chain() {
        match cause.downcast_ref::<ClientError>() {
            Some(ClientError::Refused { status, .. }) => {
                return match status {
                    404 => 3,
                    401 | 403 => EXIT_REFUSED,
                    409 => 5,
                    429 => 75,
                    500..=599 => 69,
                    _ => EXIT_FAILURE,
                }
            }
            Some(ClientError::Transport(_)) => return 69,
            _ => {}
        }
    }
    EXIT_FAILURE
}

#[derive(Parser, Debug)]
#[command(
    name = "agentca",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("AGENTCA_COMMIT"), ")"),
    about = "A certificate authority for AI-agent workload identity",
    long_about = "agentca gives every AI agent its own SPIFFE identity and a certificate that lives \
minutes, not months.\n\nRun the CA:      agentca serve\nRegister agents: agentca register / token\n\
Get a cert:      agentca enroll / renew"
)]
struct Cli {
    /// Log filter (tracing syntax, e.g. `info`, `agentca_ca=debug`).
    #[arg(
        help_heading = "Logging",
        long,
        global = true,
        env = "AGENTCA_LOG",
        default_value = "info"
    )]
    log: String,
    /// Log format: `human` (one readable line per event) or `json` (one
    /// JSON object per line, for log collectors).
    #[arg(help_heading = "Logging", long, global = true, env = "AGENTCA_LOG_FORMAT", default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

// One value per run, parsed once: the size of `serve`'s options is no cost.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Create a CA: root, issuing intermediate, encrypted keys, first admin token.
    Init(init::InitArgs),
    /// Run the CA's HTTPS API (initialising a local CA on first run).
    Serve(serve::ServeArgs),
    /// Show the CA: trust domain, root fingerprint, key types, validity, store (`agentca ca info`).
    Ca(info::CaArgs),
    /// Register an agent (admin).
    Register(admin::RegisterArgs),
    /// List registered agents (admin).
    Agents(admin::ListArgs),
    /// Show one agent with its live certificates and clone alerts (admin).
    Agent(admin::AgentArgs),
    /// Create a bootstrap token for a registered agent (admin).
    Token(admin::TokenArgs),
    /// Enable an agent (admin).
    Enable(admin::AgentArgs),
    /// Disable an agent: it can no longer enroll or renew (admin).
    Disable(admin::AgentArgs),
    /// Revoke certificates by serial, instance, agent, env or tenant (admin).
    Revoke(admin::RevokeArgs),
    /// Change an agent's registration: scopes, owner, purpose, lifetime; a new version (admin).
    Update(govern::UpdateArgs),
    /// Show the versions of an agent's registration, or the one in force at a time (admin).
    History(govern::HistoryArgs),
    /// Retire an agent: certificates revoked, tokens voided, never issued again (admin).
    Retire(admin::AgentArgs),
    /// Block or unblock a scope for everyone, a tenant, an environment or one agent (admin).
    Scope(govern::ScopeArgs),
    /// List the changes of registrations waiting for a second admin (admin).
    Pending(govern::PendingListArgs),
    /// Approve a change another admin asked for: it applies now (admin).
    Approve(govern::PendingArgs),
    /// Reject a change waiting for review: it is dropped (admin).
    Reject(govern::PendingArgs),
    /// Export, follow or verify the audit trail (global admin).
    Audit(audit::AuditArgs),
    /// Create, list or revoke named admin tokens; change their role, see their versions (global admin).
    Admin(audit::AdminArgs),
    /// Get a first certificate with a bootstrap token; writes cert.pem, key.pem, bundle.pem.
    Enroll(agent::EnrollArgs),
    /// Renew the certificate in a directory with a fresh key.
    Renew(agent::RenewArgs),
    /// Keep an agent's certificate files current: enroll, then renew before expiry.
    Run(agent::RunArgs),
    /// Check a certificate chain offline as a service would; print the identity.
    Verify(verify::VerifyArgs),
    /// Keep the CA's CRLs in a PEM file for nginx or HAProxy, checked and fresh (--watch).
    Crl(crl::CrlArgs),
    /// Write a backup of the running CA to a file (global admin).
    Backup(backup::BackupArgs),
    /// Restore a backup into a new data directory or an empty database.
    Restore(backup::RestoreArgs),
    /// Move a stopped CA's store onto PostgreSQL (`agentca store migrate`).
    Store(backup::StoreArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (agentca.1 and one per command) into a directory.
    Man {
        /// Where to write them.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
}

/// Runs the command line; the process's exit code.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("agentca: error: {e:#}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // Daemons log what they do; one-shot commands only what goes wrong.
    let quiet_default = !matches!(
        cli.command,
        Command::Serve(_) | Command::Run(_) | Command::Crl(_)
    );
    init_logging(&cli.log, cli.log_format == "json", quiet_default);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentca: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Init(args) => init::init(args),
            Command::Serve(args) => serve::serve(args).await,
            Command::Ca(args) => info::ca(args),
            Command::Register(args) => admin::register(args).await,
            Command::Agents(args) => admin::list(args).await,
            Command::Agent(args) => admin::show(args).await,
            Command::Token(args) => admin::token(args).await,
            Command::Enable(args) => admin::set_enabled(args, true).await,
            Command::Disable(args) => admin::set_enabled(args, false).await,
            Command::Revoke(args) => admin::revoke(args).await,
            Command::Update(args) => govern::update(args).await,
            Command::History(args) => govern::history(args).await,
            Command::Retire(args) => govern::retire(args).await,
            Command::Scope(args) => govern::scope(args).await,
            Command::Pending(args) => govern::pending(args).await,
            Command::Approve(args) => govern::approve(args).await,
            Command::Reject(args) => govern::reject(args).await,
            Command::Audit(args) => audit::audit(args).await,
            Command::Admin(args) => audit::admin(args).await,
            Command::Enroll(args) => agent::enroll(args).await,
            Command::Renew(args) => agent::renew(args).await,
            Command::Run(args) => agent::run(args).await,
            Command::Verify(args) => verify::verify(args),
            Command::Crl(args) => crl::crl(args).await,
            Command::Backup(args) => backup::backup(args).await,
            Command::Restore(args) => backup::restore(args),
            Command::Store(args) => backup::store(args),
            Command::Completions { shell } => completions(shell),
            Command::Man { out_dir } => man_pages(&out_dir),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentca: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Prints the completion script of `shell` (written whole, so that a
/// closed pipe is an error, not a panic).
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "agentca", &mut script);
    match std::io::stdout().write_all(&script) {
        // Piped into a reader that stopped (`| head`): nothing to report.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Writes `agentca.1` and `agentca-<command>.1` (for every command and
/// subcommand) into `dir`.
fn man_pages(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // No pages for the `help` subcommands: `--help` is on every page.
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    println!("manual pages written to {}", dir.display());
    Ok(())
}

/// The command line, with `serve --config <file>` applied: the file's
/// settings become options, unless the command line or the environment
/// gives them.
fn parse() -> anyhow::Result<Cli> {
    use clap::{CommandFactory, FromArgMatches};
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    command.build();
    // Usage errors and --help exit here, as with Cli::parse.
    let matches = command.clone().get_matches_from(&args);
    if let Some(("serve", serve)) = matches.subcommand() {
        if let Some(path) = serve.get_one::<PathBuf>("config") {
            let serve_command = command
                .find_subcommand("serve")
                .expect("the serve subcommand exists");
            args.extend(config::arguments_from_file(path, serve_command, serve)?);
            return Cli::try_parse_from(&args).map_err(|e| {
                anyhow::anyhow!("in the configuration {}: {}", path.display(), e.render())
            });
        }
    }
    Ok(Cli::from_arg_matches(&matches)?)
}

fn init_logging(filter: &str, json: bool, quiet_default: bool) {
    // Client commands log only warnings unless asked, so their output stays
    // clean for scripts.
    let filter = if quiet_default && filter == "info" {
        "warn"
    } else {
        filter
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journald gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Where a local CA lives when no directory is given: `$AGENTCA_HOME`, or
/// `$XDG_DATA_HOME/agentca`, or `~/.local/share/agentca`.
pub fn default_home() -> PathBuf {
    home_from(
        std::env::var_os("AGENTCA_HOME"),
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`default_home`] from the values of `AGENTCA_HOME`, `XDG_DATA_HOME` and
/// `HOME`. An empty variable counts as unset, and so does a relative
/// `XDG_DATA_HOME`, as the XDG base directory specification says: a CA
/// must not land in whatever directory the command happened to run in.
fn home_from(
    agentca_home: Option<std::ffi::OsString>,
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    let set = |v: Option<std::ffi::OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(home) = set(agentca_home) {
        return home;
    }
    if let Some(xdg) = set(xdg_data_home).filter(|p| p.is_absolute()) {
        return xdg.join("agentca");
    }
    match set(home) {
        Some(home) => home.join(".local/share/agentca"),
        None => PathBuf::from(".agentca"),
    }
}

/// The default data directory: `<home>/ca`.
pub fn default_data_dir() -> PathBuf {
    default_home().join("ca")
}

/// Parses a duration: a number with an optional unit `s`, `m`, `h` or `d`
/// (seconds when bare), such as `90s`, `5m`, `24h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 5m, 24h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or("duration too large")?,
        "h" => n.checked_mul(3600).ok_or("duration too large")?,
        "d" => n.checked_mul(86_400).ok_or("duration too large")?,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::seconds(secs))
}

/// Runs an `--exec` command (`agentca run`, `agentca crl --watch`) with
/// `sh -c`, `var` set to `value` (the files it is about); a failure is
/// logged, not fatal.
fn run_hook(cmd: &str, var: &str, value: &Path) {
    match std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env(var, value)
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::warn!(%status, "the --exec command failed"),
        Err(e) => tracing::warn!(error = %e, "cannot run the --exec command"),
    }
}

/// Reads a small secret file (a token), without its final line break.
fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    anyhow::ensure!(
        meta.len() <= 4096,
        "{} is too large to be a token file",
        path.display()
    );
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// Where the CA is.
#[derive(Args, Debug, Clone)]
struct CaUrls {
    /// The CA's URL. Repeatable, or a comma-separated list in AGENTCA_URL,
    /// for several replicas of one CA: a request moves to the next when
    /// one cannot be reached or answers with a 5xx.
    #[arg(
        help_heading = "Reaching the CA",
        long = "ca-url",
        env = "AGENTCA_URL",
        value_delimiter = ',',
        default_value = "https://127.0.0.1:8443"
    )]
    ca_url: Vec<String>,
}

impl CaUrls {
    /// The URLs as the client takes them: comma-separated.
    fn list(&self) -> String {
        self.ca_url.join(",")
    }
}

/// How to reach and trust the CA.
#[derive(Args, Debug, Clone)]
struct CaConnection {
    #[command(flatten)]
    urls: CaUrls,
    /// PEM trust bundle of the CA (default: bundle.pem of the local CA, if any).
    #[arg(
        help_heading = "Reaching the CA",
        long,
        env = "AGENTCA_BUNDLE",
        conflicts_with = "fingerprint"
    )]
    bundle: Option<PathBuf>,
    /// SHA-256 fingerprint of the CA's root, to pin on first contact.
    #[arg(help_heading = "Reaching the CA", long, env = "AGENTCA_FINGERPRINT")]
    fingerprint: Option<String>,
}

impl CaConnection {
    fn trust(&self) -> anyhow::Result<agentca::client::CaTrust> {
        use agentca::client::CaTrust;
        if let Some(fp) = &self.fingerprint {
            return Ok(CaTrust::Pinned(fp.parse()?));
        }
        let path = match &self.bundle {
            Some(p) => p.clone(),
            None => {
                let local = crate::datadir::DataDir::new(default_data_dir()).bundle();
                anyhow::ensure!(
                    local.exists(),
                    "how should the CA be trusted? Give --bundle <bundle.pem> or --fingerprint <sha256>"
                );
                local
            }
        };
        let pem = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Ok(CaTrust::Bundle(agentca::bundle::TrustBundle::from_pem(
            &pem,
        )?))
    }
}

#[cfg(test)]
mod exit_tests {
    use agentca::client::ClientError;

    use super::exit_code;

    fn refused(status: u16) -> anyhow::Error {
        anyhow::Error::from(ClientError::Refused {
            status,
            error: "x".into(),
            detail: "x".into(),
            retry_after: None,
        })
        .context("doing something")
    }

    #[test]
    fn each_kind_of_answer_has_its_exit_code() {
        for (status, code) in [
            (404, 3),
            (401, 4),
            (403, 4),
            (409, 5),
            (429, 75),
            (503, 69),
            (500, 69),
            (400, 1),
        ] {
            assert_eq!(exit_code(&refused(status)), code, "{status}");
        }
        let down = anyhow::Error::from(ClientError::Transport("refused".into()));
        assert_eq!(exit_code(&down), 69);
        assert_eq!(exit_code(&anyhow::anyhow!("a local file is missing")), 1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_coherent_in_every_command() {
        // Duplicate names, conflicting defaults, bad headings: clap checks
        // them all here rather than when a user runs the command.
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn an_empty_or_relative_xdg_data_home_is_ignored() {
        use std::ffi::OsString;
        let v = |s: &str| Some(OsString::from(s));
        let home = |a, x, h| super::home_from(a, x, h);
        assert_eq!(home(v("/ca"), v("/x"), v("/h")), PathBuf::from("/ca"));
        assert_eq!(home(v(""), v("/x"), v("/h")), PathBuf::from("/x/agentca"));
        assert_eq!(
            home(None, v(""), v("/h")),
            PathBuf::from("/h/.local/share/agentca")
        );
        assert_eq!(
            home(None, v("rel"), v("/h")),
            PathBuf::from("/h/.local/share/agentca")
        );
        assert_eq!(home(None, None, None), PathBuf::from(".agentca"));
    }

    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), Duration::seconds(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::seconds(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::minutes(5));
        assert_eq!(parse_duration("24h").unwrap(), Duration::hours(24));
        assert_eq!(parse_duration("7d").unwrap(), Duration::days(7));
        for bad in ["", "m", "5x", "-5m", "1.5h", "99999999999999999999"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
