//! What the `agentca` verifier costs a service, next to rustls's own
//! `WebPkiClientVerifier` with the same certificates, as ratios measured
//! in one run:
//!
//! ```text
//! cargo bench -p agentca-ca --bench handshake -- [--iterations N] [--rounds N]
//! ```
//!
//! 1. **verify**: `verify_client_cert` alone on an agent's chain (leaf and
//!    intermediate, P-256, as the CA issues them), N calls each.
//! 2. **handshake**: whole TLS 1.3 handshakes with a client certificate,
//!    client and server in this process over memory, with each verifier as
//!    the server's client verifier.
//! 3. **accept**: whole accepted connections over loopback TCP: the client
//!    connects and handshakes; the server runs `verify::serve::accept`
//!    (handshake, then the caller's identity) or, for the baseline, only
//!    the handshake with `WebPkiClientVerifier`. Sequential, one at a time.
//!
//! Each measurement alternates the two sides in `--rounds` rounds and keeps
//! each side's best, so that the machine's load hits both alike. The
//! agentca verifier runs without revocation checks here (a hash lookup that
//! the ratio should not hide behind) unless `--revocation` is given.

mod support;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentca::bundle::TrustBundle;
use agentca::identity::{AgentId, InstanceId, TrustDomain};
use agentca::verify::{RevocationCache, Verifier};
use anyhow::{bail, Context};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

const USAGE: &str = "\
usage: cargo bench -p agentca-ca --bench handshake -- [--iterations N] [--rounds N] [--revocation]
";

struct Options {
    iterations: usize,
    rounds: usize,
    revocation: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    match parse(&args).and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("handshake bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        iterations: 2000,
        rounds: 5,
        revocation: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |max: usize| -> anyhow::Result<usize> {
            let n: usize = it.next().context("a number is missing")?.parse()?;
            anyhow::ensure!((1..=max).contains(&n), "{n} is out of range 1..={max}");
            Ok(n)
        };
        match a.as_str() {
            "--bench" => {}
            "--iterations" => o.iterations = number(1_000_000)?,
            "--rounds" => o.rounds = number(50)?,
            "--revocation" => o.revocation = true,
            _ => bail!("unknown option {a:?}\n{USAGE}"),
        }
    }
    Ok(o)
}

/// An agent's chain and key, a service's chain and key, and the bundle,
/// all from one in-memory CA made the way `agentca` makes its own.
struct Pki {
    bundle: TrustBundle,
    root: CertificateDer<'static>,
    agent_chain: Vec<CertificateDer<'static>>,
    agent_key: PrivateKeyDer<'static>,
    service_chain: Vec<CertificateDer<'static>>,
    service_key: PrivateKeyDer<'static>,
}

fn pki() -> anyhow::Result<Pki> {
    use agentca_ca::issuance::profile;
    let ca = agentca_ca::issuance::issuer::test_ca(&rcgen::PKCS_ECDSA_P256_SHA256);
    let now = time::OffsetDateTime::now_utc();
    let leaf =
        |agent: &str| -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
            let id = AgentId::new("example.org", "acme", "prod", agent)?;
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let params = profile::agent_leaf(
                &id,
                &InstanceId::random(),
                &profile::random_serial(),
                now - time::Duration::minutes(1),
                now + time::Duration::hours(1),
                ca.distribution(),
                &["tool:search".to_owned()],
            )?;
            let der = ca.sign_leaf(&params, &key)?;
            let chain = vec![CertificateDer::from(der), ca.intermediate().clone()];
            Ok((chain, PrivateKeyDer::Pkcs8(key.serialize_der().into())))
        };
    let (agent_chain, agent_key) = leaf("caller")?;
    let (service_chain, service_key) = leaf("service")?;
    Ok(Pki {
        bundle: TrustBundle::from_pem(ca.bundle_pem().as_bytes())?,
        root: ca.root().clone(),
        agent_chain,
        agent_key,
        service_chain,
        service_key,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn agentca_verifier(pki: &Pki, revocation: bool) -> anyhow::Result<Arc<Verifier>> {
    let builder = Verifier::builder(pki.bundle.clone(), TrustDomain::new("example.org")?);
    let builder = if revocation {
        let cache = RevocationCache::new();
        cache.apply_feed(&[], 0, time::OffsetDateTime::now_utc());
        builder.revocation(cache)
    } else {
        builder.without_revocation_checks()
    };
    Ok(builder.build()?)
}

fn webpki_verifier(pki: &Pki) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.root.clone())?;
    Ok(WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?)
}

fn server_config(
    pki: &Pki,
    verifier: Arc<dyn ClientCertVerifier>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.service_chain.clone(), pki.service_key.clone_key())?;
    // Every handshake full: no tickets, no session cache.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The agent's side: it checks the service's SPIFFE identity with an
/// agentca verifier (the same on both sides of every comparison).
fn client_config(pki: &Pki, verifier: &Arc<Verifier>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut config = verifier.client_config(pki.agent_chain.clone(), pki.agent_key.clone_key())?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The best of `rounds` of `a` and `b` alternated, per iteration.
fn alternate(
    rounds: usize,
    mut a: impl FnMut() -> anyhow::Result<Duration>,
    mut b: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<(Duration, Duration)> {
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        best_a = best_a.min(a()?);
        best_b = best_b.min(b()?);
    }
    Ok((best_a, best_b))
}

fn run(o: &Options) -> anyhow::Result<()> {
    let pki = pki()?;
    let ours = agentca_verifier(&pki, o.revocation)?;
    let theirs = webpki_verifier(&pki)?;
    let n = o.iterations;
    let leaf = &pki.agent_chain[0];
    let intermediates = &pki.agent_chain[1..];

    // 1. verify_client_cert alone.
    let timed_verify = |v: &dyn ClientCertVerifier| -> anyhow::Result<Duration> {
        let started = Instant::now();
        for _ in 0..n {
            v.verify_client_cert(leaf, intermediates, UnixTime::now())?;
        }
        Ok(started.elapsed() / n as u32)
    };
    let (a, b) = alternate(o.rounds, || timed_verify(&*ours), || timed_verify(&*theirs))?;
    println!("\nverifier cost per client certificate (leaf + intermediate, P-256), best of {} rounds of {n}", o.rounds);
    report("verify_client_cert", a, b);

    // 2. Whole in-memory handshakes.
    let client = client_config(&pki, &agentca_verifier(&pki, false)?)?;
    let server_ours = server_config(&pki, ours.clone())?;
    let server_theirs = server_config(&pki, theirs.clone())?;
    let hs = |server: &Arc<ServerConfig>| -> anyhow::Result<Duration> {
        let started = Instant::now();
        for _ in 0..n / 10 {
            handshake(&client, server)?;
        }
        Ok(started.elapsed() / (n / 10).max(1) as u32)
    };
    let (a, b) = alternate(o.rounds, || hs(&server_ours), || hs(&server_theirs))?;
    println!("\nwhole TLS 1.3 handshake with a client certificate, in memory (client and server), best of {} rounds of {}", o.rounds, n / 10);
    report("handshake", a, b);

    // 3. Accepted connections over loopback.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let conns = (n / 10).max(1);
    let (a, b) = alternate(
        o.rounds,
        || rt.block_on(accepted(&client, &server_ours, Some(&ours), conns)),
        || rt.block_on(accepted(&client, &server_theirs, None, conns)),
    )?;
    println!("\naccepted connection over loopback: serve::accept (handshake + identity) vs the handshake alone with WebPkiClientVerifier, best of {} rounds of {conns}", o.rounds);
    report("serve::accept", a, b);

    // 4. The scope check: a certificate's whole check and then its scope,
    // with a cache of many withdrawals and blocks, against the certificate
    // check alone with a cache that has none.
    let plain = agentca_verifier(&pki, true)?;
    let governed = governed_verifier(&pki)?;
    let chain = &pki.agent_chain;
    let timed_check = |v: &Verifier, scope: bool| -> anyhow::Result<Duration> {
        let started = Instant::now();
        for _ in 0..n {
            let now = time::OffsetDateTime::now_utc();
            let peer = v.verify_peer(chain, agentca::verify::Usage::Client, now)?;
            if scope {
                v.require_scope(&peer, "tool:search", now)?;
            }
        }
        Ok(started.elapsed() / n as u32)
    };
    let (a, b) = alternate(
        o.rounds,
        || timed_check(&governed, true),
        || timed_check(&plain, false),
    )?;
    println!("\ncertificate check and scope check (require_scope) with {WITHDRAWALS} withdrawals and {BLOCKS} blocks in the cache, vs the certificate check alone without them, best of {} rounds of {n}", o.rounds);
    println!(
        "  {:<20} with scope {:>8.1} µs   certificate alone {:>8.1} µs   ratio ×{:.3} ({:+.2} µs)",
        "verify_peer",
        a.as_secs_f64() * 1e6,
        b.as_secs_f64() * 1e6,
        a.as_secs_f64() / b.as_secs_f64(),
        (a.as_secs_f64() - b.as_secs_f64()) * 1e6
    );
    Ok(())
}

/// Withdrawals of other certificates in the governed verifier's cache.
const WITHDRAWALS: usize = 10_000;
/// Blocks (of other scopes for other certificates, and one of every
/// certificate for another scope) in the governed verifier's cache.
const BLOCKS: usize = 1_000;

/// A verifier whose cache knows [`WITHDRAWALS`] withdrawals of the scope
/// the agent's certificate carries (from other certificates) and
/// [`BLOCKS`] blocks, none of which reaches the agent's.
fn governed_verifier(pki: &Pki) -> anyhow::Result<Arc<Verifier>> {
    use agentca::wire::{ScopeChange, ScopeEvent, Serial};
    let now = time::OffsetDateTime::now_utc();
    let serial =
        |i: usize| Serial::from_bytes(&[&[0x40u8][..], &(i as u64).to_be_bytes()].concat());
    let mut events = Vec::new();
    for i in 0..WITHDRAWALS {
        events.push(ScopeEvent {
            seq: events.len() as u64 + 1,
            at: now,
            change: ScopeChange::Withdrawn {
                serial: serial(i)?,
                scopes: vec!["tool:search".into()],
                not_after: now + time::Duration::hours(1),
            },
        });
    }
    for i in 0..BLOCKS {
        let seq = events.len() as u64 + 1;
        let change = if i == 0 {
            ScopeChange::Blocked {
                block: seq,
                scope: "tool:write".into(),
                serials: None,
                target: None,
            }
        } else {
            ScopeChange::Blocked {
                block: seq,
                scope: if i % 2 == 0 {
                    "tool:search"
                } else {
                    "tool:other"
                }
                .into(),
                serials: Some(
                    (0..10)
                        .map(|k| serial(WITHDRAWALS + i * 10 + k))
                        .collect::<Result<_, _>>()?,
                ),
                target: None,
            }
        };
        events.push(ScopeEvent {
            seq,
            at: now,
            change,
        });
    }
    let cache = RevocationCache::new();
    cache.apply_page(&[], &events, events.len() as u64, now);
    Ok(
        Verifier::builder(pki.bundle.clone(), TrustDomain::new("example.org")?)
            .revocation(cache)
            .build()?,
    )
}

fn report(what: &str, ours: Duration, theirs: Duration) {
    println!(
        "  {what:<20} agentca {:>8.1} µs   WebPkiClientVerifier {:>8.1} µs   ratio ×{:.3} ({:+.1} µs)",
        ours.as_secs_f64() * 1e6,
        theirs.as_secs_f64() * 1e6,
        ours.as_secs_f64() / theirs.as_secs_f64(),
        (ours.as_secs_f64() - theirs.as_secs_f64()) * 1e6
    );
}

/// One full handshake between `client` and `server`, over memory.
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> anyhow::Result<()> {
    let mut c = ClientConnection::new(
        client.clone(),
        ServerName::try_from("service.example")?.to_owned(),
    )?;
    let mut s = ServerConnection::new(server.clone())?;
    let mut buf = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf)?;
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd)?;
        }
        s.process_new_packets()?;
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf)?;
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd)?;
        }
        c.process_new_packets()?;
    }
    Ok(())
}

/// `n` connections, one at a time, accepted over loopback: with
/// `serve::accept` and `verifier` when given, else the handshake alone.
/// Time per connection, client and server together.
async fn accepted(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    verifier: Option<&Arc<Verifier>>,
    n: usize,
) -> anyhow::Result<Duration> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let name = ServerName::try_from("service.example")?.to_owned();
    let started = Instant::now();
    for _ in 0..n {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let mut tls = connector.connect(name.clone(), tcp).await?;
            // The server's first answer ends the client's wait: the
            // handshake is done on both sides and accept has returned.
            use tokio::io::AsyncReadExt;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await?;
            anyhow::Ok(())
        };
        let serve = async {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            let mut tls = match verifier {
                Some(v) => agentca::verify::serve::accept(&acceptor, tcp, v).await?.0,
                None => acceptor.accept(tcp).await?,
            };
            use tokio::io::AsyncWriteExt;
            tls.write_all(b"k").await?;
            tls.flush().await?;
            anyhow::Ok(tls)
        };
        let (c, s) = tokio::join!(connect, serve);
        c?;
        drop(s?);
    }
    Ok(started.elapsed() / n as u32)
}
