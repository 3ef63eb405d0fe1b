//! How fast a scope block reaches subscribed verifiers, from outside:
//!
//! ```text
//! cargo bench -p agentca-ca --bench governance -- [--verifiers 100] [--blocks 50]
//!     [--binary PATH]... [--rounds N]
//! ```
//!
//! The real `agentca` serves on loopback. One agent is registered with the
//! scope `bench:write` and enrolled once. V verifiers each keep their own
//! cache with the library's feed subscription (`agentca::verify::feed`,
//! one long poll each). Then B blocks, one after the other, alternately for
//! every agent and for that one agent: each is timed from the block call's
//! answer until every verifier's cache refuses the scope for the agent's
//! certificate (a verifier that knew before the answer counts 0), then
//! lifted, and the lifting timed the same way.
//!
//! With `--binary` given more than once, the binaries are measured in
//! turn, `--rounds` times, and the best round of each is shown. Client and
//! CA share the machine.

mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentca::verify::{RevocationCache, ScopeRefusal};
use agentca::wire::{AgentInfo, BlockScopeRequest, RegisterAgentRequest, ScopeBlock, Serial};
use anyhow::{bail, ensure, Context};
use support::{ms, quantile, short, Ca};

const USAGE: &str = "\
usage: cargo bench -p agentca-ca --bench governance -- [options]

  --verifiers N   subscribed verifiers (default 100, at most 1000)
  --blocks N      blocks timed, and as many liftings (default 50, at most 1000)
  --binary PATH   the agentca binary to measure (repeat to compare)
  --rounds N      rounds over the binaries (default 1; 2+ with several)
";

const SCOPE: &str = "bench:write";

struct Options {
    verifiers: usize,
    blocks: usize,
    binaries: Vec<PathBuf>,
    rounds: usize,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        verifiers: 100,
        blocks: 50,
        binaries: Vec::new(),
        rounds: 0,
    };
    let mut it = args.iter();
    let number = |v: Option<&String>, max: usize| -> anyhow::Result<usize> {
        let v = v.context("a number is missing")?;
        let n: usize = v
            .parse()
            .with_context(|| format!("{v:?} is not a number"))?;
        ensure!((1..=max).contains(&n), "{n} is not within 1..={max}");
        Ok(n)
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bench" => {}
            "--verifiers" => o.verifiers = number(it.next(), 1000)?,
            "--blocks" => o.blocks = number(it.next(), 1000)?,
            "--rounds" => o.rounds = number(it.next(), 20)?,
            "--binary" => o
                .binaries
                .push(PathBuf::from(it.next().context("--binary needs a path")?)),
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    if o.binaries.is_empty() {
        o.binaries.push(support::default_binary());
    }
    if o.rounds == 0 {
        o.rounds = if o.binaries.len() > 1 { 2 } else { 1 };
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs this without --bench: nothing to do.
    if !args.iter().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    match parse(&args).and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("governance bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Delays of one round: blocks and liftings, and the share known before
/// the call answered.
#[derive(Clone, Default)]
struct Round {
    blocked: Vec<Duration>,
    lifted: Vec<Duration>,
    before: usize,
}

fn run(o: &Options) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut best: Vec<Option<Round>> = vec![None; o.binaries.len()];
    for round in 0..o.rounds {
        for (i, bin) in o.binaries.iter().enumerate() {
            eprintln!("round {} of {}: {}", round + 1, o.rounds, bin.display());
            let mut r = rt.block_on(blocks_phase(bin, o))?;
            r.blocked.sort();
            r.lifted.sort();
            let better = best[i]
                .as_ref()
                .is_none_or(|b| quantile(&r.blocked, 0.99) < quantile(&b.blocked, 0.99));
            if better {
                best[i] = Some(r);
            }
        }
    }
    println!(
        "\nScope block propagation: {} blocks (alternately of every agent and of one agent) and their liftings, each timed from the call's answer to its effect at each of {} subscribed verifiers",
        o.blocks, o.verifiers
    );
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8}",
        "binary", "p50 ms", "p99 ms", "max ms", "lift p50", "lift p99", "before"
    );
    for (bin, r) in o.binaries.iter().zip(&best) {
        let Some(r) = r else { continue };
        println!(
            "{:<40} {:>8.2} {:>8.2} {:>8.2} {:>10.2} {:>10.2} {:>7.1}%",
            short(bin),
            ms(quantile(&r.blocked, 0.5)),
            ms(quantile(&r.blocked, 0.99)),
            ms(*r.blocked.last().unwrap_or(&Duration::ZERO)),
            ms(quantile(&r.lifted, 0.5)),
            ms(quantile(&r.lifted, 0.99)),
            r.before as f64 * 100.0 / (r.blocked.len() + r.lifted.len()).max(1) as f64
        );
    }
    println!("(before: the share of verifiers that saw the change before the call answered)");
    Ok(())
}

async fn blocks_phase(bin: &std::path::Path, o: &Options) -> anyhow::Result<Round> {
    let ca = Ca::start(bin, &["--max-connections-per-ip", "4096"])?;
    let register = RegisterAgentRequest {
        tenant: "bench".into(),
        env: "load".into(),
        agent: "scoped".into(),
        owner: "benchmarks".into(),
        purpose: "scope blocks".into(),
        ttl_seconds: Some(3600),
        scopes: vec![SCOPE.into()],
        reuse_retired: false,
    };
    let _: AgentInfo = ca
        .admin(reqwest::Method::POST, "/v1/admin/agents", Some(&register))
        .await
        .context("this binary cannot register scopes")?;
    let token: agentca::wire::TokenCreated = ca
        .admin(
            reqwest::Method::POST,
            "/v1/admin/agents/bench/load/scoped/tokens",
            Some(&agentca::wire::CreateTokenRequest::default()),
        )
        .await?;
    let (cert, _) = ca.enroll(&token.token).await?;
    let (caches, subscriptions) = support::subscribed_verifiers(&ca, o.verifiers).await?;
    let mut round = Round::default();
    for i in 0..o.blocks {
        let req = BlockScopeRequest {
            scope: SCOPE.into(),
            tenant: (i % 2 == 1).then(|| "bench".into()),
            env: (i % 2 == 1).then(|| "load".into()),
            agent: (i % 2 == 1).then(|| "scoped".into()),
            reason: None,
        };
        let watch = watchers(&caches, &cert.serial, true);
        let block: ScopeBlock = ca
            .admin(reqwest::Method::POST, "/v1/admin/scopes/blocks", Some(&req))
            .await
            .context("this binary cannot block scopes")?;
        collect(watch, Instant::now(), &mut round.blocked, &mut round.before).await?;
        let watch = watchers(&caches, &cert.serial, false);
        let _: ScopeBlock = ca
            .admin::<(), _>(
                reqwest::Method::DELETE,
                &format!("/v1/admin/scopes/blocks/{}", block.id),
                None,
            )
            .await?;
        collect(watch, Instant::now(), &mut round.lifted, &mut round.before).await?;
    }
    drop(subscriptions);
    Ok(round)
}

type Watch = tokio::task::JoinHandle<Option<Instant>>;

/// One task per cache, ending when `serial` may (`blocked` false) or may
/// not (`blocked` true) be used for the scope.
fn watchers(caches: &[Arc<RevocationCache>], serial: &Serial, blocked: bool) -> Vec<Watch> {
    caches
        .iter()
        .map(|cache| {
            let (cache, serial) = (cache.clone(), serial.clone());
            tokio::spawn(async move {
                let granted = [SCOPE.to_string()];
                let give_up = Instant::now() + Duration::from_secs(30);
                loop {
                    let refused =
                        cache.scope_usable(&serial, &granted, SCOPE) == Err(ScopeRefusal::Blocked);
                    if refused == blocked {
                        return Some(Instant::now());
                    }
                    if Instant::now() > give_up {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            })
        })
        .collect()
}

async fn collect(
    watch: Vec<Watch>,
    answered: Instant,
    delays: &mut Vec<Duration>,
    before: &mut usize,
) -> anyhow::Result<()> {
    for w in watch {
        let seen = w.await?.context("a verifier never saw a block change")?;
        match seen.checked_duration_since(answered) {
            Some(d) => delays.push(d),
            None => {
                *before += 1;
                delays.push(Duration::ZERO);
            }
        }
    }
    Ok(())
}
