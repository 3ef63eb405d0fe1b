//! Issuance load generator: how many certificates per second the real
//! `agentca` binary issues, and how long each takes.
//!
//! ```text
//! cargo bench -p agentca-ca --bench issuance -- [--duration SECS]
//!     [--concurrency 1,8,32] [--renew-concurrency 8,32] [--quick]
//!     [--store redb|sled|postgres|postgres://…[,…]] [--replicas 1,2,3]
//!     [--binary PATH]... [--rounds N]
//! ```
//!
//! With `--binary` (repeated), each binary is measured in turn, `--rounds`
//! times over (A, B, A, B, …, so that a change in the machine's load hits
//! both alike), and a last table compares the best round of each: this is
//! how a change is weighed against the binary before it.
//!
//! The bench starts the CA as a separate process on a loopback port (as the
//! end-to-end tests do), registers one agent, creates one bootstrap token
//! with many uses, then:
//!
//! 1. **enroll**: for each concurrency C, C keep-alive HTTPS/1.1
//!    connections each send `POST /v1/enroll` back to back for the run's
//!    duration. Latency is one request on an open connection.
//! 2. **renew**: certificates issued in phase 1 are renewed, each on a new
//!    mutual-TLS connection with a full handshake (no session resumption),
//!    as an agent renewing on its own would. Latency includes the TCP
//!    connect and the handshake.
//!
//! With `--store postgres` the bench starts a throwaway PostgreSQL cluster
//! on this machine (as the tests do) and also reports the database's CPU
//! per request; with `--store postgres://user@host/db` it uses that server
//! (the role must be allowed to create databases). Each PostgreSQL setup
//! runs once per `--replicas` count: that many CA replicas on one fresh
//! database, the load's connections spread over them in turn.
//!
//! Keys and CSRs are generated before any clock starts. Each run begins
//! with a warm-up whose requests are not counted; a request counts when it
//! completes inside the measured window. Every answer must be `200 OK`.
//!
//! Client and CA share the machine, so the figures are those of the CA with
//! the load generator competing for the same cores. Run without `--bench`
//! (as `cargo test --benches` does), the binary does nothing.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

mod support;

use agentca::bundle::TrustBundle;
use agentca::client::{
    check_issued, client_config, CaClient, CaTrust, ClientError, KeyAlgorithm, PrivateKey,
};
use agentca::wire::{AgentInfo, EnrollRequest, IssuedCertificate, RenewRequest};
use anyhow::{anyhow, bail, ensure, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const USAGE: &str = "\
usage: cargo bench -p agentca-ca --bench issuance -- [options]

  --duration SECS            measured time of each run (default 5, at most 600)
  --concurrency LIST         enrollment concurrencies (default 1,8,32)
  --renew-concurrency LIST   renewal concurrencies (default 8,32; 0 to skip)
  --store LIST               the CA's stores, comma-separated: redb (default), sled, postgres
                             (a throwaway cluster on this machine) or a postgres:// server URL
  --replicas LIST            CA replicas on each PostgreSQL store (default 1)
  --quick                    1-second runs and smaller key pools, to check that it works
  --binary PATH              an agentca binary to measure (repeat to compare; default: this build's)
  --rounds N                 with several binaries, measure each N times, interleaved (default 1)";

const PASSPHRASE: &str = "correct horse battery staple";
const TRUST_DOMAIN: &str = "example.org";
const TENANT: &str = "bench";
const ENV: &str = "load";
const AGENT: &str = "issuer";

/// Failed requests tolerated in one run before the bench stops with an
/// error: every answer should be 200, but a loaded machine may drop a rare
/// connection.
const MAX_FAILURES: u64 = 5;
/// Longest wait for one request (connection and handshake included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the CA to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest measured duration accepted: the bootstrap token lives an hour.
const MAX_DURATION: Duration = Duration::from_secs(600);
/// Lifetime of the bench agent's certificates: long enough that none
/// expires before the renewal phase presents it.
const CERT_TTL_SECONDS: u64 = 3600;
/// Renewal rate the pool of certificates to renew is sized for: a faster
/// CA runs out of certificates before the end of a run, and the report
/// says so.
const RENEWALS_PER_SECOND: f64 = 2_500.0;
/// Most certificates set aside for one renewal run.
const MAX_RENEWALS_PER_RUN: usize = 50_000;
/// Error messages kept per run, to show what failed.
const ERRORS_SHOWN: usize = 3;

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    duration: Duration,
    warmup: Duration,
    concurrency: Vec<usize>,
    renew_concurrency: Vec<usize>,
    /// Distinct keys and CSRs for enrollment. They are used in turn, and
    /// again from the start if a run needs more: the CA does the same work
    /// for a CSR it has seen before.
    enroll_keys: usize,
    /// Certificates issued in the enroll phase kept for renewal (each
    /// renews once), with as many fresh keys for the renewal CSRs.
    renew_certs: usize,
    /// What the CA runs on, in the order measured.
    setups: Vec<Setup>,
    /// The binaries measured, in order.
    binaries: Vec<PathBuf>,
    /// How many times each binary is measured.
    rounds: usize,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut duration = None;
        let mut concurrency = vec![1, 8, 32];
        let mut renew_concurrency = vec![8, 32];
        let mut quick = false;
        let mut stores = vec!["redb".to_owned()];
        let mut replicas = vec![1];
        let mut binaries = Vec::new();
        let mut rounds = 1;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| anyhow!("{arg} needs a value"))
                    .cloned()
            };
            match arg.as_str() {
                // Passed by `cargo bench`; its presence is checked in main.
                "--bench" => {}
                "--quick" => quick = true,
                "--duration" => {
                    let v = value()?;
                    let secs: f64 = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s > 0.0)
                        .ok_or_else(|| anyhow!("--duration {v:?} is not a positive number"))?;
                    let d = Duration::from_secs_f64(secs);
                    ensure!(
                        d <= MAX_DURATION,
                        "--duration is at most {} s",
                        MAX_DURATION.as_secs()
                    );
                    duration = Some(d);
                }
                "--concurrency" => concurrency = parse_list(&value()?, 1)?,
                "--binary" => {
                    let path = PathBuf::from(value()?);
                    ensure!(path.is_file(), "--binary {}: no such file", path.display());
                    binaries.push(path);
                }
                "--rounds" => {
                    let v = value()?;
                    rounds = v
                        .parse()
                        .ok()
                        .filter(|&r| (1..=10).contains(&r))
                        .ok_or_else(|| anyhow!("--rounds {v:?} is not between 1 and 10"))?;
                }
                "--store" => {
                    stores = value()?.split(',').map(|s| s.trim().to_owned()).collect();
                    for store in &stores {
                        ensure!(
                            ["redb", "sled", "postgres"].contains(&store.as_str())
                                || store.starts_with("postgres://")
                                || store.starts_with("postgresql://"),
                            "--store {store:?}: use redb, sled, postgres or a postgres:// URL"
                        );
                    }
                }
                "--replicas" => {
                    replicas = parse_list(&value()?, 1)?;
                    ensure!(replicas.iter().all(|&n| n <= 16), "--replicas: at most 16");
                }
                "--renew-concurrency" => {
                    renew_concurrency = parse_list(&value()?, 0)?;
                    renew_concurrency.retain(|&c| c > 0);
                }
                "-h" | "--help" => bail!("help requested"),
                other if other.starts_with('-') => bail!("unknown option {other}"),
                // `cargo bench FILTER` hands the filter to every bench
                // binary; this one has a single benchmark and ignores it.
                _ => {}
            }
        }
        let mut options = Self {
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            concurrency,
            renew_concurrency,
            enroll_keys: 20_000,
            renew_certs: 0,
            setups: Setup::all(&stores, &replicas),
            binaries,
            rounds,
        };
        if options.binaries.is_empty() {
            options
                .binaries
                .push(PathBuf::from(env!("CARGO_BIN_EXE_agentca")));
        }
        if quick {
            options.duration = Duration::from_secs(1);
            options.warmup = Duration::from_millis(250);
            options.enroll_keys = 4_000;
        }
        if let Some(duration) = duration {
            options.duration = duration;
        }
        let per_run = (options.warmup + options.duration).as_secs_f64() * RENEWALS_PER_SECOND;
        options.renew_certs =
            (per_run.ceil() as usize).min(MAX_RENEWALS_PER_RUN) * options.renew_concurrency.len();
        // Each certificate kept for renewal has a key of its own.
        options.enroll_keys = options.enroll_keys.max(options.renew_certs);
        Ok(options)
    }
}

/// A comma-separated list of concurrencies, each at least `min`.
fn parse_list(text: &str, min: usize) -> anyhow::Result<Vec<usize>> {
    let list = text
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&c| c >= min && c <= 1024)
                .ok_or_else(|| anyhow!("{s:?} is not a concurrency between {min} and 1024"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!list.is_empty(), "empty concurrency list");
    Ok(list)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` (and `--all-targets`) runs bench binaries
        // without --bench; a load test has no place there.
        eprintln!("issuance: skipped (run it with `cargo bench -p agentca-ca --bench issuance`)");
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("issuance: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("issuance: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> anyhow::Result<()> {
    let mut measured: Vec<(usize, Vec<RunResult>)> = Vec::new();
    for round in 1..=options.rounds {
        for (index, binary) in options.binaries.iter().enumerate() {
            if options.binaries.len() > 1 || options.rounds > 1 {
                println!(
                    "\n=== {} (binary {}), round {round} of {}",
                    binary.display(),
                    index + 1,
                    options.rounds
                );
            }
            measured.push((index, run_one(binary, options)?));
        }
    }
    if options.binaries.len() > 1 || options.rounds > 1 {
        print_comparison(&measured, options);
    }
    Ok(())
}

/// Measures `binary`: a fresh CA on each setup, every run of `options`.
fn run_one(binary: &std::path::Path, options: &Options) -> anyhow::Result<Vec<RunResult>> {
    let mut all = Vec::new();
    // A throwaway cluster, started once for every setup that asks for one.
    let mut cluster = None;
    for setup in &options.setups {
        eprintln!("=== store {}", setup.label());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        let database = match &setup.store {
            Store::Embedded(_) => None,
            Store::Postgres(server) => {
                let server = match server {
                    Some(url) => url.clone(),
                    None => cluster.get_or_insert_with(pg::own_cluster).url("postgres"),
                };
                Some(runtime.block_on(Database::create(&server))?)
            }
        };
        // Declared after the database so that it is dropped first: the CA
        // processes are killed on every way out, panics included.
        let ca = Ca::start(binary, setup, database.as_ref(), cluster.as_ref())?;
        let result = runtime.block_on(bench(&ca, options));
        if result.is_err() {
            eprintln!("\nlast lines of the CA's log:\n{}", ca.log_tail(20));
        }
        let mut results = result?;
        for r in &mut results {
            r.setup = setup.label();
        }
        print_report(&results, options, setup);
        all.extend(results);
        drop(ca);
        if let Some(database) = database {
            runtime.block_on(database.drop_it());
        }
    }
    Ok(all)
}

/// The best round of each binary, run by run, side by side.
fn print_comparison(measured: &[(usize, Vec<RunResult>)], options: &Options) {
    println!(
        "\n=== comparison: best of {} round(s) per binary: requests per second (p99 ms) [lowest CA cpu µs per request]",
        options.rounds
    );
    for (index, binary) in options.binaries.iter().enumerate() {
        println!("  binary {}: {}", index + 1, binary.display());
    }
    let first = &measured[0].1;
    print!("{:<12} {:<8} {:>5}", "store", "phase", "conc");
    for index in 0..options.binaries.len() {
        print!(" {:>26}", format!("binary {}", index + 1));
    }
    if options.binaries.len() == 2 {
        print!(" {:>9}", "change");
    }
    println!();
    for (row, run) in first.iter().enumerate() {
        print!("{:<12} {:<8} {:>5}", run.setup, run.phase, run.concurrency);
        let mut best = Vec::new();
        for index in 0..options.binaries.len() {
            let fastest = measured
                .iter()
                .filter(|(i, _)| *i == index)
                .filter_map(|(_, results)| results.get(row))
                .max_by(|a, b| a.per_second().total_cmp(&b.per_second()));
            match fastest {
                Some(r) => {
                    let p99 = r.percentile_ms(99.0).unwrap_or(f64::NAN);
                    let cpu = measured
                        .iter()
                        .filter(|(i, _)| *i == index)
                        .filter_map(|(_, results)| results.get(row)?.ca_cpu_per_request)
                        .min()
                        .map_or_else(
                            || "-".to_owned(),
                            |d| format!("{:.0}", d.as_secs_f64() * 1e6),
                        );
                    print!(
                        " {:>26}",
                        format!("{:.0} ({p99:.2}) [{cpu}]", r.per_second())
                    );
                    best.push(r.per_second());
                }
                None => print!(" {:>26}", "-"),
            }
        }
        if let [before, after] = best[..] {
            print!(" {:>+8.1}%", (after / before - 1.0) * 100.0);
        }
        println!();
    }
}

async fn bench(ca: &Ca, options: &Options) -> anyhow::Result<Vec<RunResult>> {
    let bundle = ca.bundle()?;
    let (agent, token) = ca.register_agent(&bundle).await?;
    let targets = ca
        .urls
        .iter()
        .map(|url| Target::new(url).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;

    eprintln!(
        "generating {} enrollment and {} renewal keys and CSRs (P-256)...",
        options.enroll_keys, options.renew_certs
    );
    let generating = Instant::now();
    let enrollments: Arc<Vec<Enrollment>> = Arc::new(
        generate_keys(options.enroll_keys)?
            .into_iter()
            .map(|(key, csr)| {
                let body = json(&EnrollRequest {
                    token: token.clone(),
                    csr,
                })?;
                Ok(Enrollment { key, body })
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let renew_bodies = if options.renew_concurrency.is_empty() {
        Vec::new()
    } else {
        generate_keys(options.renew_certs)?
            .into_iter()
            .map(|(_, csr)| json(&RenewRequest { csr }))
            .collect::<anyhow::Result<Vec<_>>>()?
    };

    eprintln!("  done in {:.1} s", generating.elapsed().as_secs_f64());

    let mut issuance_tls = client_config(&CaTrust::Bundle(bundle.clone()), None)
        .context("cannot build the client TLS configuration")?;
    issuance_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let issuance_tls = TlsConnector::from(Arc::new(issuance_tls));

    let mut results = Vec::new();
    let mut kept = Vec::new();
    let next = Arc::new(AtomicUsize::new(0));
    for &concurrency in &options.concurrency {
        eprintln!("enroll, concurrency {concurrency}...");
        let cpu_before = ca.cpu_time();
        let (mut result, mut issued) = enroll_run(
            &targets,
            &issuance_tls,
            &enrollments,
            &next,
            options.renew_certs.saturating_sub(kept.len()),
            concurrency,
            options,
        )
        .await?;
        result.set_cpu(cpu_before, ca.cpu_time());
        kept.append(&mut issued);
        let failed = result.failures > MAX_FAILURES;
        results.push(result);
        if failed {
            return failure(&results);
        }
    }
    let issued_total: u64 = results.iter().map(|r| r.succeeded).sum();

    if !options.renew_concurrency.is_empty() {
        // Checks every kept answer (a certificate for the bench agent and
        // for the key it was requested for), and builds each one's
        // mutual-TLS client before any clock starts.
        eprintln!("preparing {} certificates for renewal...", kept.len());
        let mut renewals = Vec::with_capacity(kept.len());
        for ((index, body), csr) in kept.into_iter().zip(renew_bodies) {
            let key = &enrollments[index].key;
            renewals.push(Renewal::new(&bundle, &agent, &body, key, csr)?);
        }
        // Each renewal consumes a certificate; share them out evenly.
        let share = renewals.len() / options.renew_concurrency.len();
        for &concurrency in &options.renew_concurrency {
            eprintln!("renew, concurrency {concurrency}...");
            let pool: Vec<Renewal> = renewals.drain(..share).collect();
            let cpu_before = ca.cpu_time();
            let mut result = renew_run(&targets, pool, concurrency, options).await?;
            result.set_cpu(cpu_before, ca.cpu_time());
            let failed = result.failures > MAX_FAILURES;
            results.push(result);
            if failed {
                return failure(&results);
            }
        }
    }

    eprintln!("{issued_total} certificates issued by enrollment (warm-ups included)");
    Ok(results)
}

/// Prints what was measured and the errors seen, and fails.
fn failure<T>(results: &[RunResult]) -> anyhow::Result<T> {
    print_table(results);
    let last = results.last().expect("a failed run");
    bail!(
        "{} requests failed in the {} run at concurrency {} (at most {MAX_FAILURES} are tolerated)",
        last.failures,
        last.phase,
        last.concurrency
    )
}

// ---------------------------------------------------------------------------
// The CA under test

#[path = "../tests/support/postgres.rs"]
mod pg;

/// What one setup runs on: a store, and for PostgreSQL how many replicas.
#[derive(Clone, Debug)]
struct Setup {
    store: Store,
    replicas: usize,
}

#[derive(Clone, Debug)]
enum Store {
    /// `redb` or `sled`, in the data directory.
    Embedded(String),
    /// PostgreSQL: a server URL, or `None` for a throwaway cluster here.
    Postgres(Option<String>),
}

impl Setup {
    /// Every setup of `--store` and `--replicas`, in order.
    fn all(stores: &[String], replicas: &[usize]) -> Vec<Self> {
        let mut setups = Vec::new();
        for store in stores {
            match store.as_str() {
                "redb" | "sled" => setups.push(Setup {
                    store: Store::Embedded(store.clone()),
                    replicas: 1,
                }),
                _ => {
                    let server = (store != "postgres").then(|| store.clone());
                    for &n in replicas {
                        setups.push(Setup {
                            store: Store::Postgres(server.clone()),
                            replicas: n,
                        });
                    }
                }
            }
        }
        setups
    }

    /// `redb`, `sled`, or `pg x N`.
    fn label(&self) -> String {
        match &self.store {
            Store::Embedded(name) => name.clone(),
            Store::Postgres(_) => format!("pg x {}", self.replicas),
        }
    }
}

/// A fresh database for one setup, dropped afterwards.
struct Database {
    /// The server's maintenance database, to drop this one from.
    server: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(server: &str) -> anyhow::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "agentca_bench_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self::execute(server, &format!("CREATE DATABASE {name}")).await?;
        let mut url = reqwest::Url::parse(server).context("the --store URL")?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            server: server.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    async fn drop_it(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = Self::execute(&self.server, &sql).await {
            eprintln!("could not drop the database {}: {e:#}", self.name);
        }
    }

    async fn execute(server: &str, sql: &str) -> anyhow::Result<()> {
        let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to {server}"))?;
        let driver = tokio::spawn(connection);
        client
            .batch_execute(sql)
            .await
            .with_context(|| sql.to_owned())?;
        drop(client);
        let _ = driver.await;
        Ok(())
    }
}

/// CPU time used so far by the CA's processes and the database's.
#[derive(Clone, Copy, Debug, Default)]
struct CpuTimes {
    ca: Option<Duration>,
    db: Option<Duration>,
}

/// The `agentca` binary, initialised in a temporary directory (or a
/// database) and serving on free loopback ports, once per replica.
/// Dropping it kills the processes.
struct Ca {
    root: tempfile::TempDir,
    data_dir: PathBuf,
    /// Each replica's URL.
    urls: Vec<String>,
    url: String,
    children: Vec<Child>,
    /// The postmaster of a database on this machine.
    db_pid: Option<u32>,
}

impl Ca {
    fn start(
        bin: &std::path::Path,
        setup: &Setup,
        database: Option<&Database>,
        cluster: Option<&pg::Cluster>,
    ) -> anyhow::Result<Self> {
        let bin = bin.display().to_string();
        let root = tempfile::tempdir().context("cannot create a temporary directory")?;
        let data_dir = root.path().join("ca");
        let passphrase_file = root.path().join("passphrase");
        std::fs::write(&passphrase_file, PASSPHRASE).context("cannot write the passphrase")?;
        {
            // The CA refuses a passphrase file that others may read.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&passphrase_file, std::fs::Permissions::from_mode(0o600))
                .context("cannot protect the passphrase")?;
        }
        let store = match (&setup.store, database) {
            (Store::Embedded(name), _) => name.clone(),
            (Store::Postgres(_), Some(db)) => db.url.clone(),
            (Store::Postgres(_), None) => bail!("a PostgreSQL setup without a database"),
        };
        let out = Command::new(&bin)
            .arg("init")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--trust-domain", TRUST_DOMAIN])
            .arg("--passphrase-file")
            .arg(&passphrase_file)
            // Named even for the default, so that the report's durability
            // claim cannot silently change with it.
            .args(["--store", &store])
            .env("HOME", root.path())
            .output()
            .with_context(|| format!("cannot run {bin} init"))?;
        ensure!(
            out.status.success(),
            "agentca init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let db_pid = match (&setup.store, cluster) {
            (Store::Postgres(None), Some(cluster)) => {
                std::fs::read_to_string(cluster.dir.join("data/postmaster.pid"))
                    .ok()
                    .and_then(|text| text.lines().next()?.trim().parse().ok())
            }
            _ => None,
        };
        let mut ca = Self {
            root,
            data_dir,
            urls: Vec::new(),
            url: String::new(),
            children: Vec::new(),
            db_pid,
        };
        for replica in 0..setup.replicas {
            let log_path = ca.root.path().join(format!("serve-{replica}.log"));
            let log =
                std::fs::File::create(&log_path).context("cannot create the CA's log file")?;
            let mut command = Command::new(&bin);
            command.arg("serve");
            // One agent is issued every certificate of the run: lift the
            // per-agent limit where the binary has one.
            command.args(support::lifted_limits(std::path::Path::new(&bin))?);
            match &setup.store {
                Store::Embedded(_) => command.arg("--data-dir").arg(&ca.data_dir),
                Store::Postgres(_) => command.args(["--store", &store]),
            };
            let mut child = command
                .arg("--passphrase-file")
                .arg(&passphrase_file)
                .args(["--listen", "127.0.0.1:0"])
                .env("HOME", ca.root.path())
                .env("AGENTCA_LOG", "info")
                // A log file, not a terminal: no colour escapes.
                .env("NO_COLOR", "1")
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot run {bin} serve"))?;
            let stdout = child.stdout.take().expect("stdout is piped");
            // From here on, Drop kills the process whatever happens.
            ca.children.push(child);
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                // Reads to the end, so that the CA never blocks on a full pipe.
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix("agentca listening on ") {
                        let _ = tx.send(url.to_owned());
                    }
                }
            });
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(url) => ca.urls.push(url),
                Err(_) => bail!("the CA did not start:\n{}", ca.log_tail(40)),
            }
        }
        ca.url = ca.urls[0].clone();
        Ok(ca)
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("serve-0.log")
    }

    /// CPU time the CA's processes and the database have used so far.
    fn cpu_time(&self) -> CpuTimes {
        let ca = self
            .children
            .iter()
            .map(|c| support::process_cpu(c.id()))
            .sum::<Option<Duration>>();
        let db = self.db_pid.and_then(|postmaster| {
            // The postmaster and its children: the backends serving the
            // replicas' connections, the WAL writer, the checkpointer.
            let mut total = support::process_cpu(postmaster)?;
            for entry in std::fs::read_dir("/proc").ok()?.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                if support::parent_of(pid) == Some(postmaster) {
                    total += support::process_cpu(pid).unwrap_or_default();
                }
            }
            Some(total)
        });
        CpuTimes { ca, db }
    }

    /// The last `lines` lines of the CA's log.
    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn read(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.data_dir.join(name);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    fn bundle(&self) -> anyhow::Result<TrustBundle> {
        TrustBundle::from_pem(&self.read("bundle.pem")?).context("invalid bundle.pem")
    }

    /// Registers the bench agent and creates a bootstrap token for it with
    /// as many uses as the CA allows.
    async fn register_agent(&self, bundle: &TrustBundle) -> anyhow::Result<(AgentInfo, String)> {
        let admin_token = String::from_utf8(self.read("admin.token")?)
            .context("admin.token is not UTF-8")?
            .trim()
            .to_owned();
        let client = CaClient::new(&self.url, CaTrust::Bundle(bundle.clone()), None)?;
        support::register_with_token(
            &client,
            &admin_token,
            [TENANT, ENV, AGENT],
            CERT_TTL_SECONDS,
            1_000_000,
        )
        .await
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Requests

/// Where the CA listens, in the forms the client needs.
struct Target {
    addr: SocketAddr,
    /// For the `Host` header, which HTTP/1.1 requires.
    authority: String,
    /// The name the server certificate is checked against.
    server_name: ServerName<'static>,
}

impl Target {
    fn new(url: &str) -> anyhow::Result<Self> {
        let authority = url
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("unexpected CA URL {url:?}"))?;
        let addr: SocketAddr = authority
            .parse()
            .with_context(|| format!("unexpected CA address {authority:?}"))?;
        Ok(Self {
            addr,
            authority: authority.to_owned(),
            server_name: ServerName::from(addr.ip()),
        })
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

/// Opens an HTTP/1.1 connection over TLS.
async fn connect(target: &Target, tls: &TlsConnector) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .context("TCP connect")?;
    // Requests and answers are small: do not let Nagle hold them back.
    tcp.set_nodelay(true).context("TCP_NODELAY")?;
    let stream = tls
        .connect(target.server_name.clone(), tcp)
        .await
        .context("TLS handshake")?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake")?;
    // The connection's errors surface on the sender's next request.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// What became of one request.
enum Outcome {
    /// 200, with the body.
    Ok(Bytes),
    /// Another status: the connection is still usable.
    Refused(String),
    /// The connection failed or the request timed out.
    Broken(String),
}

/// Sends one JSON POST and reads the whole answer (so that the connection
/// can carry the next request).
async fn post(sender: &mut Sender, target: &Target, path: &str, body: Bytes) -> Outcome {
    let exchange = async {
        sender.ready().await.context("connection")?;
        let request = Request::post(path)
            .header(HOST, &target.authority)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .context("request")?;
        let response = sender.send_request(request).await.context("request")?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("response body")?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok((StatusCode::OK, body))) => Outcome::Ok(body),
        Ok(Ok((status, body))) => Outcome::Refused(format!(
            "{path}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )),
        Ok(Err(e)) => Outcome::Broken(format!("{path}: {e:#}")),
        Err(_) => Outcome::Broken(format!(
            "{path}: no answer in {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
    }
}

fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<Bytes> {
    Ok(Bytes::from(
        serde_json::to_vec(value).context("cannot serialise a request")?,
    ))
}

/// `n` new P-256 keys with a CSR each, made on every core.
fn generate_keys(n: usize) -> anyhow::Result<Vec<(PrivateKey, String)>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let per_thread = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let count = per_thread.min(n.saturating_sub(t * per_thread));
                scope.spawn(move || {
                    (0..count)
                        .map(|_| {
                            let key = PrivateKey::generate(KeyAlgorithm::P256)?;
                            let csr = key.csr_pem()?;
                            Ok((key, csr))
                        })
                        .collect::<Result<Vec<_>, ClientError>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for worker in workers {
            let keys = worker
                .join()
                .map_err(|_| anyhow!("a key generation thread panicked"))?
                .context("cannot generate a key and CSR")?;
            all.extend(keys);
        }
        Ok(all)
    })
}

// ---------------------------------------------------------------------------
// Measurement

/// The clock of one run: a warm-up, then the measured window.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    deadline: Instant,
}

impl Window {
    fn start(options: &Options) -> Self {
        let measure_from = Instant::now() + options.warmup;
        Self {
            measure_from,
            deadline: measure_from + options.duration,
        }
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Whether a request completed at `done` is counted.
    fn counts(&self, done: Instant) -> bool {
        done >= self.measure_from && done <= self.deadline
    }
}

/// What one connection (or renewal task) saw.
#[derive(Default)]
struct WorkerReport {
    /// Requests answered 200, counted or not.
    succeeded: u64,
    latencies: Vec<Duration>,
    last_counted: Option<Instant>,
    failures: u64,
    errors: Vec<String>,
    /// Pool index and body of enroll answers kept for renewal.
    kept: Vec<(usize, Bytes)>,
    /// The renewal pool ran out before the deadline.
    exhausted: bool,
}

impl WorkerReport {
    fn record(&mut self, window: &Window, started: Instant, done: Instant) {
        self.succeeded += 1;
        if window.counts(done) {
            self.latencies.push(done - started);
            self.last_counted = Some(done);
        }
    }

    fn fail(&mut self, error: String) {
        self.failures += 1;
        if self.errors.len() < ERRORS_SHOWN {
            self.errors.push(error);
        }
    }
}

/// The figures of one run.
struct RunResult {
    /// The store (and replicas) it ran on.
    setup: String,
    phase: &'static str,
    concurrency: usize,
    /// Length of the measured window (shorter than asked if the renewal
    /// pool ran out).
    window: Duration,
    /// Latency of every counted request, sorted.
    latencies: Vec<Duration>,
    /// Requests answered 200, warm-up and stragglers included.
    succeeded: u64,
    failures: u64,
    errors: Vec<String>,
    note: Option<String>,
    /// CPU time of the CA during the run (warm-up included), per request
    /// it answered 200 (warm-up included); all replicas together.
    ca_cpu_per_request: Option<Duration>,
    /// The same for the database, when it runs on this machine.
    db_cpu_per_request: Option<Duration>,
}

impl RunResult {
    fn collect(
        phase: &'static str,
        concurrency: usize,
        window: &Window,
        reports: Vec<WorkerReport>,
        options: &Options,
    ) -> (Self, Vec<(usize, Bytes)>) {
        let mut result = Self {
            setup: String::new(),
            phase,
            concurrency,
            window: options.duration,
            latencies: Vec::new(),
            succeeded: 0,
            failures: 0,
            errors: Vec::new(),
            note: None,
            ca_cpu_per_request: None,
            db_cpu_per_request: None,
        };
        let mut kept = Vec::new();
        let mut exhausted = false;
        let mut last_counted = None;
        for mut report in reports {
            result.latencies.append(&mut report.latencies);
            result.succeeded += report.succeeded;
            result.failures += report.failures;
            result.errors.append(&mut report.errors);
            kept.append(&mut report.kept);
            exhausted |= report.exhausted;
            last_counted = last_counted.max(report.last_counted);
        }
        result.latencies.sort_unstable();
        result.errors.truncate(ERRORS_SHOWN);
        if exhausted {
            // The rate is over the time the certificates lasted.
            let end = last_counted.unwrap_or(window.measure_from);
            result.window = end.saturating_duration_since(window.measure_from);
            result.note = Some(format!(
                "certificates ran out after {:.2} s of the measured window",
                result.window.as_secs_f64()
            ));
        }
        (result, kept)
    }

    /// Sets the CPU per request from the CA's and the database's CPU times
    /// before and after the run.
    fn set_cpu(&mut self, before: CpuTimes, after: CpuTimes) {
        let per_request = |before: Option<Duration>, after: Option<Duration>| {
            let (before, after) = (before?, after?);
            (self.succeeded > 0)
                .then(|| after.saturating_sub(before) / self.succeeded.min(u32::MAX as u64) as u32)
        };
        self.ca_cpu_per_request = per_request(before.ca, after.ca);
        self.db_cpu_per_request = per_request(before.db, after.db);
    }

    fn per_second(&self) -> f64 {
        if self.window.is_zero() {
            return 0.0;
        }
        self.latencies.len() as f64 / self.window.as_secs_f64()
    }

    /// Nearest-rank percentile `p` (0 to 100), in milliseconds.
    fn percentile_ms(&self, p: f64) -> Option<f64> {
        let n = self.latencies.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        Some(self.latencies[rank.clamp(1, n) - 1].as_secs_f64() * 1000.0)
    }
}

// ---------------------------------------------------------------------------
// Phase 1: enroll

/// A pre-generated key and its ready-to-send enroll body.
struct Enrollment {
    key: PrivateKey,
    body: Bytes,
}

/// One enroll run at `concurrency`; also returns up to `keep` of the
/// certificates issued (pool index and answer).
async fn enroll_run(
    targets: &[Arc<Target>],
    tls: &TlsConnector,
    enrollments: &Arc<Vec<Enrollment>>,
    next: &Arc<AtomicUsize>,
    keep: usize,
    concurrency: usize,
    options: &Options,
) -> anyhow::Result<(RunResult, Vec<(usize, Bytes)>)> {
    // Connections are open before the clock starts.
    // Spread over the replicas in turn.
    let mut senders = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let target = targets[i % targets.len()].clone();
        let sender = connect(&target, tls)
            .await
            .context("cannot connect to the CA")?;
        senders.push((sender, target));
    }
    let kept = Arc::new(AtomicUsize::new(0));
    let window = Window::start(options);
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|(sender, target)| {
            tokio::spawn(enroll_worker(
                sender,
                target,
                tls.clone(),
                enrollments.clone(),
                next.clone(),
                kept.clone(),
                keep,
                window,
            ))
        })
        .collect();
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        reports.push(task.await.context("an enroll task panicked")?);
    }
    Ok(RunResult::collect(
        "enroll",
        concurrency,
        &window,
        reports,
        options,
    ))
}

/// Sends enroll requests back to back on one keep-alive connection until
/// the window closes.
#[allow(clippy::too_many_arguments)]
async fn enroll_worker(
    mut sender: Sender,
    target: Arc<Target>,
    tls: TlsConnector,
    enrollments: Arc<Vec<Enrollment>>,
    next: Arc<AtomicUsize>,
    kept: Arc<AtomicUsize>,
    keep: usize,
    window: Window,
) -> WorkerReport {
    let mut report = WorkerReport::default();
    while window.running() {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let enrollment = &enrollments[index % enrollments.len()];
        let started = Instant::now();
        let outcome = post(&mut sender, &target, "/v1/enroll", enrollment.body.clone()).await;
        let done = Instant::now();
        match outcome {
            Outcome::Ok(body) => {
                report.record(&window, started, done);
                // Only the first use of a key, so that renewal keys are
                // never shared between kept certificates.
                if index < enrollments.len()
                    && kept.load(Ordering::Relaxed) < keep
                    && kept.fetch_add(1, Ordering::Relaxed) < keep
                {
                    report.kept.push((index, body));
                }
            }
            Outcome::Refused(e) => report.fail(e),
            Outcome::Broken(e) => {
                report.fail(e);
                match connect(&target, &tls).await {
                    Ok(s) => sender = s,
                    Err(e) => {
                        report.fail(format!("reconnecting: {e:#}"));
                        break;
                    }
                }
            }
        }
    }
    report
}

// ---------------------------------------------------------------------------
// Phase 2: renew

/// A certificate ready to be renewed: a client presenting it, and the
/// renew body with a CSR for a fresh key.
struct Renewal {
    tls: TlsConnector,
    body: Bytes,
}

impl Renewal {
    /// Checks the enroll answer `issued` for `key` and `agent`, and builds a
    /// mutual-TLS client presenting it.
    fn new(
        bundle: &TrustBundle,
        agent: &AgentInfo,
        issued: &[u8],
        key: &PrivateKey,
        renew_body: Bytes,
    ) -> anyhow::Result<Self> {
        let issued: IssuedCertificate =
            serde_json::from_slice(issued).context("an enroll answer is not a certificate")?;
        ensure!(
            issued.spiffe_id == agent.spiffe_id,
            "a certificate was issued for {} instead of {}",
            issued.spiffe_id,
            agent.spiffe_id
        );
        let chain: Vec<CertificateDer<'static>> =
            check_issued(&issued, key).context("an issued certificate does not match its key")?;
        let mut config = client_config(&CaTrust::Bundle(bundle.clone()), Some((chain, der(key)?)))
            .context("cannot build a mutual-TLS client")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Every renewal pays for a full handshake, as an agent renewing
        // after minutes or hours would.
        config.resumption = Resumption::disabled();
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            body: renew_body,
        })
    }
}

/// The DER of `key` (the client API keeps it private; its PEM is public).
fn der(key: &PrivateKey) -> anyhow::Result<PrivateKeyDer<'static>> {
    let block = pem::parse(key.to_pem()).context("a generated key's PEM does not parse")?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        block.into_contents(),
    )))
}

/// One renew run at `concurrency`, each renewal consuming one certificate
/// of `pool`.
async fn renew_run(
    targets: &[Arc<Target>],
    pool: Vec<Renewal>,
    concurrency: usize,
    options: &Options,
) -> anyhow::Result<RunResult> {
    let pool = Arc::new(pool);
    let next = Arc::new(AtomicUsize::new(0));
    let window = Window::start(options);
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            tokio::spawn(renew_worker(
                targets[i % targets.len()].clone(),
                pool.clone(),
                next.clone(),
                window,
            ))
        })
        .collect();
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        reports.push(task.await.context("a renew task panicked")?);
    }
    let (mut result, _) = RunResult::collect("renew", concurrency, &window, reports, options);
    if let Some(note) = result.note.take() {
        result.note = Some(format!("{note} (pool of {})", pool.len()));
    }
    Ok(result)
}

/// Renews certificates one after the other, each on a new connection,
/// until the window closes or the pool runs out.
async fn renew_worker(
    target: Arc<Target>,
    pool: Arc<Vec<Renewal>>,
    next: Arc<AtomicUsize>,
    window: Window,
) -> WorkerReport {
    let mut report = WorkerReport::default();
    while window.running() {
        let Some(renewal) = pool.get(next.fetch_add(1, Ordering::Relaxed)) else {
            report.exhausted = true;
            break;
        };
        let started = Instant::now();
        let outcome =
            match tokio::time::timeout(REQUEST_TIMEOUT, connect(&target, &renewal.tls)).await {
                Ok(Ok(mut sender)) => {
                    post(&mut sender, &target, "/v1/renew", renewal.body.clone()).await
                }
                Ok(Err(e)) => Outcome::Broken(format!("connecting: {e:#}")),
                Err(_) => Outcome::Broken("connecting: timed out".into()),
            };
        let done = Instant::now();
        match outcome {
            Outcome::Ok(_) => report.record(&window, started, done),
            Outcome::Refused(e) | Outcome::Broken(e) => report.fail(e),
        }
    }
    report
}

// ---------------------------------------------------------------------------
// Report

fn print_report(results: &[RunResult], options: &Options, setup: &Setup) {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    println!();
    println!("agentca issuance benchmark");
    println!("  machine:    {cores} cores, shared by the CA, the database and this load generator (loopback)");
    println!(
        "  runs:       {:.1} s measured after {:.2} s of warm-up; P-256 keys and CSRs made beforehand",
        options.duration.as_secs_f64(),
        options.warmup.as_secs_f64()
    );
    let durability = match &setup.store {
        Store::Embedded(name) if name == "redb" => "every certificate is durable before its answer: its batch is synced to the write-ahead log (fdatasync, group commit); redb is written behind, once a second".to_owned(),
        Store::Embedded(_) => "every certificate is flushed by sled before its answer (sled 0.34.7 does not fsync on flush: see the store docs)".to_owned(),
        Store::Postgres(server) => format!(
            "every certificate is committed to PostgreSQL before its answer (synchronous_commit on: WAL flushed); {} replica(s) on one database{}",
            setup.replicas,
            if server.is_none() { ", a throwaway cluster on this machine" } else { "" }
        ),
    };
    println!("  store:      {} ({durability})", setup.label());
    println!(
        "  enroll:     POST /v1/enroll on C keep-alive HTTPS/1.1 connections, spread over the replicas; latency per request"
    );
    println!("  renew:      POST /v1/renew, each on a new mutual-TLS connection (full handshake, no resumption); latency includes connect and handshake");
    println!(
        "  keys:       {} distinct enrollment keys, used in turn (the CA's work is the same for a key it has seen)",
        options.enroll_keys
    );
    println!();
    print_table(results);
}

fn print_table(results: &[RunResult]) {
    println!(
        "{:<12} {:<8} {:>5} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>11} {:>11}",
        "store",
        "phase",
        "conc",
        "requests",
        "failed",
        "per sec",
        "p50 ms",
        "p99 ms",
        "max ms",
        "CA cpu µs",
        "DB cpu µs"
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    let us = |d: Option<Duration>| {
        d.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.0}", d.as_secs_f64() * 1e6),
        )
    };
    for r in results {
        println!(
            "{:<12} {:<8} {:>5} {:>9} {:>7} {:>9.0} {:>8} {:>8} {:>8} {:>11} {:>11}",
            r.setup,
            r.phase,
            r.concurrency,
            r.latencies.len(),
            r.failures,
            r.per_second(),
            ms(r.percentile_ms(50.0)),
            ms(r.percentile_ms(99.0)),
            ms(r.percentile_ms(100.0)),
            us(r.ca_cpu_per_request),
            us(r.db_cpu_per_request),
        );
        if let Some(note) = &r.note {
            println!("         note: {note}");
        }
        for e in &r.errors {
            println!("         error: {e}");
        }
    }
}
