//! Revocation benchmarks: OCSP responses per second, the time to build a
//! CRL of many entries, and how fast a revocation reaches subscribed
//! verifiers.
//!
//! ```text
//! cargo bench -p agentca-ca --bench revocation -- [--ocsp] [--crl] [--propagation]
//!     [--duration SECS] [--concurrency 1,8,32] [--crl-sizes 10000,100000]
//!     [--verifiers 100] [--revocations 50] [--binary PATH]... [--rounds N]
//! ```
//!
//! Without a phase named, all three run.
//!
//! - **ocsp** (from outside, per `--binary`): the real `agentca` serving
//!   on loopback with its plain-HTTP listener; one enrolled certificate;
//!   C keep-alive HTTP/1.1 connections send the same request (made by
//!   `openssl ocsp -reqout`) back to back, as `POST /v1/ocsp` and as `GET
//!   /v1/ocsp/{base64}`. Every response is signed when asked (nothing is
//!   pre-signed); each must be `200` with an OCSP response body.
//! - **crl** (in this process; not per binary): `revocation::crl::sign`
//!   over N entries with random 16-byte serials, the median of 5, and the
//!   CRL's size.
//! - **propagation** (from outside, per `--binary`): V verifiers, each with
//!   its own revocation cache kept by the library's feed subscription
//!   (`agentca::verify::feed`, one long-poll connection each), then R
//!   revocations one after the other; for each, the time from the revoke
//!   call's answer until each verifier's cache refuses the serial (a
//!   verifier that knew before the answer counts 0).
//!
//! With `--binary` given more than once, the binaries are measured in turn,
//! `--rounds` times (A, B, A, B, …), and the best round of each is
//! compared. Client and CA share the machine.

mod support;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use support::{ms, quantile, short, Ca};
use tokio::net::TcpStream;

const USAGE: &str = "\
usage: cargo bench -p agentca-ca --bench revocation -- [options]

  --ocsp, --crl, --propagation  the phases to run (default: all)
  --duration SECS               measured time of each OCSP run (default 5, at most 600)
  --concurrency LIST            OCSP connections (default 1,8,32)
  --crl-sizes LIST              CRL entries (default 10000,100000)
  --verifiers N                 subscribed verifiers (default 100, at most 1000)
  --revocations N               revocations timed (default 50, at most 1000)
  --binary PATH                 the agentca binary to measure (repeat to compare)
  --rounds N                    rounds over the binaries (default 1; 2+ with several)
";

struct Options {
    ocsp: bool,
    crl: bool,
    propagation: bool,
    duration: Duration,
    concurrency: Vec<usize>,
    crl_sizes: Vec<usize>,
    verifiers: usize,
    revocations: usize,
    binaries: Vec<PathBuf>,
    rounds: usize,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Options {
            ocsp: false,
            crl: false,
            propagation: false,
            duration: Duration::from_secs(5),
            concurrency: vec![1, 8, 32],
            crl_sizes: vec![10_000, 100_000],
            verifiers: 100,
            revocations: 50,
            binaries: Vec::new(),
            rounds: 0,
        };
        let mut it = args.iter();
        let list = |v: Option<&String>, min: usize, max: usize| -> anyhow::Result<Vec<usize>> {
            let v = v.context("a list is missing")?;
            v.split(',')
                .map(|n| {
                    let n: usize = n
                        .trim()
                        .parse()
                        .with_context(|| format!("{n:?} is not a number"))?;
                    ensure!((min..=max).contains(&n), "{n} is not within {min}..={max}");
                    Ok(n)
                })
                .collect()
        };
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--bench" => {}
                "--ocsp" => o.ocsp = true,
                "--crl" => o.crl = true,
                "--propagation" => o.propagation = true,
                "--duration" => {
                    let secs = list(it.next(), 1, 600)?;
                    o.duration = Duration::from_secs(secs[0] as u64);
                }
                "--concurrency" => o.concurrency = list(it.next(), 1, 512)?,
                "--crl-sizes" => o.crl_sizes = list(it.next(), 1, 1_000_000)?,
                "--verifiers" => o.verifiers = list(it.next(), 1, 1000)?[0],
                "--revocations" => o.revocations = list(it.next(), 1, 1000)?[0],
                "--rounds" => o.rounds = list(it.next(), 1, 20)?[0],
                "--binary" => o
                    .binaries
                    .push(PathBuf::from(it.next().context("--binary needs a path")?)),
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        if !(o.ocsp || o.crl || o.propagation) {
            (o.ocsp, o.crl, o.propagation) = (true, true, true);
        }
        if o.binaries.is_empty() {
            o.binaries.push(support::default_binary());
        }
        if o.rounds == 0 {
            o.rounds = if o.binaries.len() > 1 { 2 } else { 1 };
        }
        Ok(o)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs this without --bench: nothing to do.
    if !args.iter().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    let result = Options::parse(&args).and_then(|o| run(&o));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("revocation bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: &Options) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if o.crl {
        crl_phase(o)?;
    }
    let mut ocsp: Vec<Vec<OcspRow>> = vec![Vec::new(); o.binaries.len()];
    let mut prop: Vec<Vec<PropRow>> = vec![Vec::new(); o.binaries.len()];
    for round in 0..o.rounds {
        for (i, bin) in o.binaries.iter().enumerate() {
            eprintln!("round {} of {}: {}", round + 1, o.rounds, bin.display());
            if o.ocsp {
                ocsp[i].extend(rt.block_on(ocsp_phase(bin, o))?);
            }
            if o.propagation {
                prop[i].push(rt.block_on(propagation_phase(bin, o))?);
            }
        }
    }
    if o.ocsp {
        println!("\nOCSP: the same request on C keep-alive HTTP/1.1 connections for {} s, each response signed when asked", o.duration.as_secs());
        println!(
            "{:<40} {:>5} {:>5} {:>10} {:>8} {:>8} {:>10}",
            "binary", "how", "conc", "per sec", "p50 ms", "p99 ms", "CA µs/resp"
        );
        for (i, bin) in o.binaries.iter().enumerate() {
            for method in ["POST", "GET"] {
                for &c in &o.concurrency {
                    // The best round of this binary for this cell.
                    let best = ocsp[i]
                        .iter()
                        .filter(|r| r.method == method && r.concurrency == c)
                        .max_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
                    if let Some(r) = best {
                        println!(
                            "{:<40} {:>5} {:>5} {:>10.0} {:>8.2} {:>8.2} {:>10.1}",
                            short(bin),
                            method,
                            c,
                            r.per_sec,
                            ms(r.p50),
                            ms(r.p99),
                            r.cpu_us
                        );
                    }
                }
            }
        }
    }
    if o.propagation {
        println!(
            "\nRevocation propagation: {} revocations, each timed from the revoke call's answer to refusal at each of {} subscribed verifiers",
            o.revocations, o.verifiers
        );
        println!(
            "{:<40} {:>8} {:>8} {:>8} {:>10}",
            "binary", "p50 ms", "p99 ms", "max ms", "before"
        );
        for (i, bin) in o.binaries.iter().enumerate() {
            if let Some(r) = prop[i].iter().min_by_key(|r| r.p99) {
                println!(
                    "{:<40} {:>8.2} {:>8.2} {:>8.2} {:>9.1}%",
                    short(bin),
                    ms(r.p50),
                    ms(r.p99),
                    ms(r.max),
                    r.before_answer * 100.0
                );
            }
        }
        println!("(before: the share of verifiers that refused the serial before the revoke call answered)");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// CRL

fn crl_phase(o: &Options) -> anyhow::Result<()> {
    use agentca::wire::Serial;
    use agentca_ca::revocation::crl;
    let ca = agentca_ca::issuance::issuer::test_ca(&rcgen::PKCS_ECDSA_P256_SHA256);
    let now = time::OffsetDateTime::now_utc();
    let urls = vec!["http://ca.example.org/v1/crl".to_owned()];
    println!("\nCRL build: revocation::crl::sign over N entries (random 16-byte serials), median of 5, in this process");
    println!(
        "{:>9} {:>10} {:>10} {:>12}",
        "entries", "median ms", "min ms", "CRL bytes"
    );
    for &n in &o.crl_sizes {
        let entries: Vec<crl::Entry> = (0..n)
            .map(|i| {
                let mut b = [0u8; 16];
                aws_lc_rs::rand::fill(&mut b).expect("random bytes");
                b[0] = 0x40 | (b[0] & 0x3f);
                crl::Entry {
                    serial: Serial::from_bytes(&b).expect("a serial"),
                    revoked_at: now - time::Duration::seconds(i as i64 % 3600),
                    reason: [0, 1, 4, 5][i % 4],
                }
            })
            .collect();
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..5 {
            let started = Instant::now();
            let signed = crl::sign(
                ca.issuer(),
                &entries,
                7,
                now,
                time::Duration::minutes(5),
                Some(&urls),
            )?;
            times.push(started.elapsed());
            size = signed.der.len();
        }
        times.sort();
        println!(
            "{:>9} {:>10.2} {:>10.2} {:>12}",
            n,
            ms(times[2]),
            ms(times[0]),
            size
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// OCSP

#[derive(Clone)]
struct OcspRow {
    method: &'static str,
    concurrency: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    cpu_us: f64,
}

/// An OCSP request for a certificate of `ca`, made by `openssl ocsp`.
async fn ocsp_request(ca: &Ca) -> anyhow::Result<Vec<u8>> {
    let token = ca.agent_token("bench", "load", "ocsp", 3600, 10).await?;
    let (issued, _key) = ca.enroll(&token).await?;
    let dir = ca.root.path();
    let pems: Vec<&str> = issued
        .certificate_chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    ensure!(pems.len() >= 2, "the chain has no intermediate");
    std::fs::write(dir.join("leaf.pem"), pems[0])?;
    std::fs::write(dir.join("int.pem"), pems[1])?;
    let out = Command::new("openssl")
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(dir.join("int.pem"))
        .arg("-cert")
        .arg(dir.join("leaf.pem"))
        .arg("-reqout")
        .arg(dir.join("req.der"))
        .output()
        .context("cannot run openssl (the OCSP phase needs it)")?;
    ensure!(
        out.status.success(),
        "openssl ocsp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(std::fs::read(dir.join("req.der"))?)
}

async fn ocsp_phase(bin: &std::path::Path, o: &Options) -> anyhow::Result<Vec<OcspRow>> {
    let ca = Ca::start(bin, &["--http-listen", "127.0.0.1:0"])?;
    let request = Bytes::from(ocsp_request(&ca).await?);
    let http = ca.http_url.clone().context("no plain-HTTP listener")?;
    let addr = http.trim_start_matches("http://").to_owned();
    let get_path = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&request);
        format!(
            "/v1/ocsp/{}",
            b64.replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        )
    };
    let mut rows = Vec::new();
    for method in ["POST", "GET"] {
        for &c in &o.concurrency {
            // A warm-up, then the measured window.
            let _ = ocsp_load(
                &addr,
                method,
                &request,
                &get_path,
                c,
                Duration::from_millis(300),
            )
            .await?;
            let cpu0 = ca.cpu();
            let (count, mut lat) =
                ocsp_load(&addr, method, &request, &get_path, c, o.duration).await?;
            let cpu = ca.cpu() - cpu0;
            lat.sort();
            rows.push(OcspRow {
                method,
                concurrency: c,
                per_sec: count as f64 / o.duration.as_secs_f64(),
                p50: quantile(&lat, 0.5),
                p99: quantile(&lat, 0.99),
                cpu_us: cpu.as_secs_f64() * 1e6 / count.max(1) as f64,
            });
            eprintln!("  ocsp {method} c={c}: {count} responses");
        }
    }
    Ok(rows)
}

/// `c` connections asking the same OCSP question for `window`: answers
/// counted and their latencies. Any answer but 200 with an OCSP body fails.
async fn ocsp_load(
    addr: &str,
    method: &'static str,
    request: &Bytes,
    get_path: &str,
    c: usize,
    window: Duration,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let deadline = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..c {
        let addr = addr.to_owned();
        let request = request.clone();
        let get_path = get_path.to_owned();
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let req = match method {
                    "POST" => Request::post("/v1/ocsp")
                        .header("host", &addr)
                        .header("content-type", "application/ocsp-request")
                        .body(Full::new(request.clone()))?,
                    _ => Request::get(get_path.as_str())
                        .header("host", &addr)
                        .body(Full::new(Bytes::new()))?,
                };
                let started = Instant::now();
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                ensure!(
                    status == 200 && body.first() == Some(&0x30),
                    "OCSP answered {status} with {} bytes",
                    body.len()
                );
                if Instant::now() <= deadline {
                    lat.push(started.elapsed());
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all.len(), all))
}

// ---------------------------------------------------------------------------
// Propagation

#[derive(Clone)]
struct PropRow {
    p50: Duration,
    p99: Duration,
    max: Duration,
    before_answer: f64,
}

async fn propagation_phase(bin: &std::path::Path, o: &Options) -> anyhow::Result<PropRow> {
    let ca = Ca::start(bin, &["--max-connections-per-ip", "4096"])?;
    let token = ca
        .agent_token("bench", "load", "revoked", 3600, o.revocations as u32)
        .await?;
    let mut certs = Vec::new();
    for _ in 0..o.revocations {
        certs.push(ca.enroll(&token).await?.0);
    }
    let (caches, subscriptions) = support::subscribed_verifiers(&ca, o.verifiers).await?;
    let mut delays = Vec::new();
    let mut before = 0usize;
    for cert in &certs {
        for seen in support::timed_revocation(&ca, cert.serial.clone(), &caches).await? {
            before += usize::from(seen.is_none());
            delays.push(seen.unwrap_or_default());
        }
    }
    drop(subscriptions);
    delays.sort();
    Ok(PropRow {
        p50: quantile(&delays, 0.5),
        p99: quantile(&delays, 0.99),
        max: *delays.last().unwrap_or(&Duration::ZERO),
        before_answer: before as f64 / delays.len().max(1) as f64,
    })
}
