//! Fleet soak: a fleet of agents living on one CA for a while, as they
//! would in production.
//!
//! ```text
//! cargo bench -p agentca-ca --bench soak -- [--agents 10000] [--duration SECS]
//!     [--ttl SECS] [--verifiers 100] [--revoke-every SECS] [--binary PATH]
//! ```
//!
//! The real `agentca` serves on loopback (redb, the default settings but
//! the issuance limits lifted for the fleet's few registered agents, and
//! the per-address connection limit raised: the whole fleet comes from
//! 127.0.0.1). Then:
//!
//! - `--agents` instances (of 100 registered agents) enroll, each with its
//!   own key, for `--ttl`-second certificates;
//! - each renews on the runtime's schedule (`client::schedule::renew_at`,
//!   two thirds of its certificate's life, jittered), with a fresh key, over
//!   a new mutual-TLS connection, as `agentca run` does; a failed renewal
//!   is retried on the runtime's back-off and counted;
//! - `--verifiers` verifiers keep revocation caches through the library's
//!   feed subscription;
//! - every `--revoke-every` seconds one certificate (of a pool enrolled for
//!   the purpose, so that the fleet's own renewals are not refused) is
//!   revoked, and the time until each verifier refuses it is measured.
//!
//! Every 10 seconds a line shows the progress; at the end a report gives
//! renewals per second, renewal latency, failed renewals, the CA's CPU,
//! its peak resident memory, the store's size at the start and the end,
//! and revocation propagation.

mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentca::client::schedule::{renew_at, retry_delay};
use agentca::client::{CaClient, CaTrust, ClientError, Credentials, KeyAlgorithm, PrivateKey};
use agentca::verify::RevocationCache;
use agentca::wire::IssuedCertificate;
use anyhow::{bail, ensure, Context};
use support::{ms, quantile, Ca};

const USAGE: &str = "\
usage: cargo bench -p agentca-ca --bench soak -- [options]

  --agents N          instances in the fleet (default 10000, at most 100000)
  --duration SECS     how long the fleet lives (default 600, at most 7200)
  --ttl SECS          certificate lifetime (default 60, at least 60)
  --verifiers N       subscribed verifiers (default 100, at most 1000)
  --revoke-every SECS one revocation this often (default 5)
  --retention SECS    the CA's --retention (default: the CA's default, 1 h)
  --binary PATH       the agentca binary (default: the one built beside this bench)
";

const REGISTERED: usize = 100;

struct Options {
    agents: usize,
    duration: Duration,
    ttl: u64,
    verifiers: usize,
    revoke_every: Duration,
    retention: Option<u64>,
    binary: std::path::PathBuf,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        agents: 10_000,
        duration: Duration::from_secs(600),
        ttl: 60,
        verifiers: 100,
        revoke_every: Duration::from_secs(5),
        retention: None,
        binary: support::default_binary(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |min: u64, max: u64| -> anyhow::Result<u64> {
            let n: u64 = it.next().context("a number is missing")?.parse()?;
            ensure!(
                (min..=max).contains(&n),
                "{n} is out of range {min}..={max}"
            );
            Ok(n)
        };
        match a.as_str() {
            "--bench" => {}
            "--agents" => o.agents = number(1, 100_000)? as usize,
            "--duration" => o.duration = Duration::from_secs(number(10, 7200)?),
            "--ttl" => o.ttl = number(60, 86_400)?,
            "--verifiers" => o.verifiers = number(1, 1000)? as usize,
            "--revoke-every" => o.revoke_every = Duration::from_secs(number(1, 3600)?),
            "--retention" => o.retention = Some(number(0, 86_400)?),
            "--binary" => o.binary = it.next().context("--binary needs a path")?.into(),
            _ => bail!("unknown option {a:?}\n{USAGE}"),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    let result = parse(&args).and_then(|o| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(soak(&o))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One agent instance: its current certificate and key.
struct Instance {
    issued: IssuedCertificate,
    key: PrivateKey,
}

#[derive(Default)]
struct Tally {
    renewals: AtomicU64,
    failures: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
    errors: Mutex<Vec<String>>,
}

async fn soak(o: &Options) -> anyhow::Result<()> {
    let retention = o.retention.map(|s| format!("{s}s"));
    let mut serve_args = vec![
        "--max-connections-per-ip",
        "16384",
        "--max-connections",
        "16384",
    ];
    if let Some(r) = &retention {
        serve_args.extend(["--retention", r.as_str()]);
    }
    let ca = Arc::new(Ca::start(&o.binary, &serve_args)?);
    let bundle = ca.bundle()?;
    eprintln!("enrolling {} instances of {REGISTERED} agents…", o.agents);
    let mut tokens = Vec::new();
    for a in 0..REGISTERED.min(o.agents) {
        let uses = o.agents.div_ceil(REGISTERED) as u32;
        tokens.push(
            ca.agent_token("fleet", "soak", &format!("agent-{a}"), o.ttl, uses)
                .await?,
        );
    }
    let fleet = enroll_all(&ca, &tokens, o.agents).await?;
    let pool_size = (o.duration.as_secs() / o.revoke_every.as_secs()).max(1) as usize + 5;
    let pool_token = ca
        .agent_token("fleet", "soak", "revoked", 3600, pool_size as u32)
        .await?;
    let mut pool = Vec::new();
    for _ in 0..pool_size {
        pool.push(ca.enroll(&pool_token).await?.0.serial);
    }
    let (caches, subscriptions) = support::subscribed_verifiers(&ca, o.verifiers).await?;
    let store_start = ca.store_bytes();
    let (rss_start, _) = ca.memory();
    let cpu_start = ca.cpu();
    let started = Instant::now();
    let deadline = started + o.duration;
    eprintln!(
        "fleet of {} enrolled; store {:.1} MiB, CA RSS {:.1} MiB; soaking for {} s",
        fleet.len(),
        mib(store_start),
        mib(rss_start),
        o.duration.as_secs()
    );

    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for instance in fleet {
        let (ca, bundle, tally) = (ca.clone(), bundle.clone(), tally.clone());
        tasks.push(tokio::spawn(live(instance, ca, bundle, tally, deadline)));
    }
    let revoker = {
        let (ca, every) = (ca.clone(), o.revoke_every);
        tokio::spawn(async move { revoke_and_time(&ca, pool, caches, every, deadline).await })
    };
    // Progress every 10 s.
    let mut peak_rss = 0;
    let mut last = (Instant::now(), 0u64, ca.cpu());
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(10).min(deadline - Instant::now())).await;
        let (rss, hwm) = ca.memory();
        peak_rss = peak_rss.max(hwm);
        let renewals = tally.renewals.load(Ordering::Relaxed);
        let cpu = ca.cpu();
        let secs = last.0.elapsed().as_secs_f64();
        eprintln!(
            "  {:>4} s: {:>7} renewals ({:>5.0}/s), {} failed; CA {:.2} cores, RSS {:.1} MiB; store {:.1} MiB",
            started.elapsed().as_secs(),
            renewals,
            (renewals - last.1) as f64 / secs,
            tally.failures.load(Ordering::Relaxed),
            (cpu - last.2).as_secs_f64() / secs,
            mib(rss),
            mib(ca.store_bytes())
        );
        last = (Instant::now(), renewals, cpu);
    }
    for t in tasks {
        t.await?;
    }
    let propagation = revoker.await??;
    drop(subscriptions);
    let elapsed = started.elapsed();
    let cpu = ca.cpu() - cpu_start;
    let (rss_end, hwm) = ca.memory();
    peak_rss = peak_rss.max(hwm);
    let store_end = ca.store_bytes();
    let renewals = tally.renewals.load(Ordering::Relaxed);
    let failures = tally.failures.load(Ordering::Relaxed);
    let mut lat = std::mem::take(&mut *tally.latencies.lock().unwrap());
    lat.sort();
    let mut prop = propagation;
    prop.sort();

    println!("\nagentca fleet soak ({}):", o.binary.display());
    println!("  fleet:        {} instances of {REGISTERED} agents, {}-second certificates, renewing at 2/3 of their life over new mutual-TLS connections", o.agents, o.ttl);
    println!(
        "  run:          {:.0} s; {} verifiers on the feed; one revocation every {} s; retention {}",
        elapsed.as_secs_f64(),
        o.verifiers,
        o.revoke_every.as_secs(),
        o.retention
            .map_or("1 h (the default)".to_owned(), |s| format!("{s} s"))
    );
    println!(
        "  renewals:     {renewals} ({:.1}/s sustained), {failures} failed",
        renewals as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency:      p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (connect + handshake + renewal)",
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO))
    );
    println!("  CA CPU:       {:.2} cores on average ({:.0} µs per renewal, the feed and revocations included)", cpu.as_secs_f64() / elapsed.as_secs_f64(), cpu.as_secs_f64() * 1e6 / renewals.max(1) as f64);
    println!(
        "  CA memory:    RSS {:.1} MiB at the start, {:.1} MiB at the end, peak {:.1} MiB",
        mib(rss_start),
        mib(rss_end),
        mib(peak_rss)
    );
    println!(
        "  store:        {:.1} MiB at the start, {:.1} MiB at the end",
        mib(store_start),
        mib(store_end)
    );
    println!("  propagation:  {} revocations × {} verifiers: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms after the revoke call's answer", prop.len() / o.verifiers.max(1), o.verifiers, ms(quantile(&prop, 0.5)), ms(quantile(&prop, 0.99)), ms(*prop.last().unwrap_or(&Duration::ZERO)));
    let errors = tally.errors.lock().unwrap();
    for e in errors.iter().take(5) {
        println!("  error:        {e}");
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Enrolls `n` instances, 32 at a time, spread over `tokens`.
async fn enroll_all(ca: &Arc<Ca>, tokens: &[String], n: usize) -> anyhow::Result<Vec<Instance>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (ca, tokens, next) = (ca.clone(), tokens.to_vec(), next.clone());
        workers.push(tokio::spawn(async move {
            let client = ca.client()?;
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return anyhow::Ok(out);
                }
                let key = PrivateKey::generate(KeyAlgorithm::P256)?;
                let issued = client
                    .enroll(&tokens[i % tokens.len()], &key.csr_pem()?)
                    .await?;
                out.push(Instance { issued, key });
            }
        }));
    }
    let mut fleet = Vec::new();
    for w in workers {
        fleet.extend(w.await??);
    }
    Ok(fleet)
}

/// One instance's life until `deadline`: renew at the runtime's time,
/// retry on failure.
async fn live(
    mut me: Instance,
    ca: Arc<Ca>,
    bundle: agentca::bundle::TrustBundle,
    tally: Arc<Tally>,
    deadline: Instant,
) {
    loop {
        let jitter = random_unit();
        let at = renew_at(me.issued.not_before, me.issued.not_after, jitter);
        let wait = (at - time::OffsetDateTime::now_utc()).max(time::Duration::ZERO);
        let wake = Instant::now() + wait.unsigned_abs();
        if wake >= deadline {
            return;
        }
        tokio::time::sleep_until(wake.into()).await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            match renew(&ca.url, &bundle, &me).await {
                Ok(next) => {
                    tally.renewals.fetch_add(1, Ordering::Relaxed);
                    tally.latencies.lock().unwrap().push(started.elapsed());
                    me = next;
                    break;
                }
                Err(e) => {
                    tally.failures.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut errors = tally.errors.lock().unwrap();
                        if errors.len() < 20 {
                            errors.push(e.to_string());
                        }
                    }
                    let retry_after = match &e {
                        ClientError::Refused { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    let delay = retry_delay(attempt, random_unit(), retry_after);
                    if Instant::now() + delay >= deadline {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

async fn renew(
    url: &str,
    bundle: &agentca::bundle::TrustBundle,
    me: &Instance,
) -> Result<Instance, ClientError> {
    let key = PrivateKey::from_pem(&me.key.to_pem())?;
    let creds = Credentials::from_pem(&me.issued.certificate_chain, key)?;
    let client = CaClient::new(url, CaTrust::Bundle(bundle.clone()), Some(creds))?;
    let next = PrivateKey::generate(KeyAlgorithm::P256)?;
    let issued = client.renew(&next.csr_pem()?).await?;
    Ok(Instance { issued, key: next })
}

/// A uniform number in [0, 1).
fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Revokes one serial of `pool` every `every` until `deadline`; for each,
/// how long after the revoke call's answer each verifier refused it.
async fn revoke_and_time(
    ca: &Ca,
    pool: Vec<agentca::wire::Serial>,
    caches: Vec<Arc<RevocationCache>>,
    every: Duration,
    deadline: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut delays = Vec::new();
    for serial in pool {
        tokio::time::sleep(every).await;
        if Instant::now() >= deadline {
            break;
        }
        let seen = support::timed_revocation(ca, serial, &caches).await?;
        delays.extend(seen.into_iter().map(Option::unwrap_or_default));
    }
    Ok(delays)
}
