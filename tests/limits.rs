//! End-to-end: the limits that keep one client from taking the CA down.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentca::client::{client_config, CaTrust, ClientError};
use common::{csr, TestCa};
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A TLS connection to the CA that sends nothing.
async fn idle_connection(
    ca: &TestCa,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let addr = ca.url.trim_start_matches("https://").to_owned();
    let tcp = TcpStream::connect(&addr).await?;
    let config = client_config(&CaTrust::Bundle(ca.bundle()), None).unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// Whether the CA has closed the connection (reads end of stream).
async fn closed_by_peer(
    stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
    within: Duration,
) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let ca = TestCa::start_with(&[], &["--header-timeout", "2s"]);
    let mut idle = idle_connection(&ca).await.unwrap();
    let started = Instant::now();
    assert!(
        closed_by_peer(&mut idle, Duration::from_secs(10)).await,
        "still open after 10 s"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed too early: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_from_one_address_are_capped() {
    let ca = TestCa::start_with(&[], &["--max-connections-per-ip", "2"]);
    let _a = idle_connection(&ca).await.unwrap();
    let _b = idle_connection(&ca).await.unwrap();
    let third = idle_connection(&ca).await;
    let refused = match third {
        Err(_) => true,
        Ok(mut s) => closed_by_peer(&mut s, Duration::from_secs(2)).await,
    };
    assert!(
        refused,
        "a third connection from the same address got through"
    );
    // A client that keeps opening connections at the limit: counted each
    // time, said in the log a few times only.
    for _ in 0..40 {
        if let Ok(mut s) = idle_connection(&ca).await {
            closed_by_peer(&mut s, Duration::from_secs(2)).await;
        }
    }
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    ca.client().health().await.expect("a slot is free again");
    drop(_b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, metrics) = ca.get("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("agentca_connections_refused_total{limit=\"per_address\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("the refusals are counted");
    assert!(refused >= 41, "{refused} refusals counted");
    let said = ca
        .log()
        .matches("per-address connection limit reached")
        .count();
    assert!(
        (1..=5).contains(&said),
        "{said} log lines for {refused} refusals"
    );
}

#[tokio::test]
async fn an_issuance_storm_gets_503_with_retry_after_instead_of_a_queue() {
    let ca = TestCa::start_with(&[], &["--max-issuing", "1"]);
    ca.register("acme", "prod", "pool").await;
    let token = ca.token("acme", "prod", "pool", 1000).await;
    const STORM: usize = 48;
    let csrs: Vec<String> = (0..STORM).map(|_| csr()).collect();
    // Separate clients: separate connections, each open (handshake done)
    // before all send at once, so the requests overlap on any machine.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(STORM));
    let tasks: Vec<_> = csrs
        .into_iter()
        .map(|csr| {
            let client = ca.client();
            let (token, start) = (token.clone(), start.clone());
            tokio::spawn(async move {
                // Every task reaches the barrier, or the others would wait
                // for it forever.
                let opened = client.health().await;
                start.wait().await;
                opened.expect("the connection opens");
                client.enroll(&token, &csr).await
            })
        })
        .collect();
    let (mut issued, mut overloaded) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => issued += 1,
            Err(ClientError::Refused {
                status: 503,
                error,
                retry_after,
                ..
            }) => {
                assert_eq!(error, "overloaded");
                let secs = retry_after.expect("a Retry-After header");
                assert!((1..=5).contains(&secs), "{secs}");
                overloaded += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(issued >= 1, "some got through");
    assert!(overloaded >= 1, "some were turned away: {issued} issued");
}
