//! An agent with an identity of its own.
//!
//! It enrolls with a bootstrap token (pinning the CA by its root's
//! fingerprint), then calls `examples/service.rs` over mutual TLS in a loop,
//! printing the identity the service saw and every rotation of its
//! certificate. Renewal happens in the background; after each rotation the
//! agent opens new connections, which present the new certificate.
//!
//! ```text
//! AGENTCA_TOKEN=… cargo run --example agent --features client -- \
//!     --ca-url https://127.0.0.1:8443 --fingerprint <sha256> \
//!     --service https://127.0.0.1:9443 --trust-domain agentca.local
//! ```

use std::time::Duration;

use agentca::client::{Agent, AgentConfig, CaTrust};
use agentca::identity::TrustDomain;
use agentca::verify::{PeerIdentity, Verifier};
use clap::Parser;

#[derive(Parser)]
#[command(about = "An agent that calls a service with its agentca identity")]
struct Args {
    /// The CA's URL.
    #[arg(long)]
    ca_url: String,
    /// SHA-256 fingerprint of the CA's root.
    #[arg(long)]
    fingerprint: String,
    /// The service to call.
    #[arg(long)]
    service: String,
    /// The trust domain of the agent and the service.
    #[arg(long)]
    trust_domain: String,
    /// Agent name the service's certificate must carry.
    #[arg(long, default_value = "orders")]
    service_agent: String,
    /// Time between calls, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Stop after this many calls (forever when absent).
    #[arg(long)]
    count: Option<u64>,
}

fn client(agent: &Agent, args: &Args) -> anyhow::Result<reqwest::Client> {
    // The service is accepted by its SPIFFE identity, not a host name.
    let verifier = Verifier::builder(agent.bundle(), TrustDomain::new(&args.trust_domain)?)
        .allow_agent(&args.service_agent)
        .without_revocation_checks()
        .build()?;
    let tls = agent.client_config(verifier)?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = AgentConfig::new(&args.ca_url, CaTrust::Pinned(args.fingerprint.parse()?));
    config.token = std::env::var("AGENTCA_TOKEN").ok();
    let agent = Agent::start(config).await?;
    let current = agent.current();
    println!(
        "enrolled as {} (serial {}, valid to {})",
        current.spiffe_id, current.serial, current.not_after
    );

    let mut rotations = agent.rotations();
    rotations.borrow_and_update();
    let mut http = client(&agent, &args)?;
    let mut calls = 0;
    while args.count.is_none_or(|n| calls < n) {
        if rotations.has_changed()? {
            let identity = rotations.borrow_and_update().clone();
            println!(
                "rotated: serial {} valid to {}",
                identity.serial, identity.not_after
            );
            // Connections opened before the rotation keep the old certificate.
            http = client(&agent, &args)?;
        }
        match http.get(format!("{}/whoami", args.service)).send().await {
            Ok(resp) if resp.status().is_success() => {
                let peer: PeerIdentity = resp.json().await?;
                println!(
                    "the service sees {} (serial {})",
                    peer.spiffe_id, peer.serial
                );
            }
            Ok(resp) => println!(
                "refused: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            ),
            Err(e) => println!("call failed: {e}"),
        }
        calls += 1;
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    Ok(())
}
