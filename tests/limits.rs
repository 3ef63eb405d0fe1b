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
async fn connections_that_do_nothing_cannot_lock_out_their_address() {
    let ca = TestCa::start_with(&[], &["--max-connections-per-ip", "4"]);
    // A slowloris: the address's every connection open and silent.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(idle_connection(&ca).await.unwrap());
    }
    // Another client behind the same address is served at once (not after
    // the 30 s header timeout): its connection takes the place of the
    // oldest silent one.
    let started = Instant::now();
    ca.client().health().await.expect("served");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        closed_by_peer(&mut silent[0], Duration::from_secs(2)).await,
        "the oldest silent connection was closed to make room"
    );
    assert!(
        !closed_by_peer(&mut silent[3], Duration::from_millis(300)).await,
        "the newest silent connection is still open"
    );

    // A client that keeps opening connections replaces its own, and is
    // said in the log a few times only.
    for _ in 0..40 {
        silent.push(idle_connection(&ca).await.unwrap());
    }
    ca.client().health().await.expect("still served");
    let (_, metrics) = ca.get("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    let counted = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{limit=\"per_address\"}} ")))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("counted")
    };
    assert!(
        counted("agentca_connections_replaced_total") >= 40,
        "{metrics}"
    );
    let said = ca
        .log()
        .matches("closed an idle connection to make room")
        .count();
    assert!((1..=5).contains(&said), "{said} log lines");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_connection_of_an_address_is_busy_a_new_one_is_closed() {
    let ca = TestCa::start_with(&[], &["--max-connections-per-ip", "2"]);
    // Two long polls of the revocation feed: requests in progress, which
    // are never cut to make room.
    let polls: Vec<_> = (0..2)
        .map(|_| {
            let http = ca.http();
            let url = format!("{}/v1/revocations?since=0&wait=4", ca.url);
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    // Counted over another loopback address: this one is full.
    let other = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&CaTrust::Bundle(ca.bundle()), None).unwrap())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    ca.wait_feed_subscribers_with(&other, 2).await;
    let third = idle_connection(&ca).await;
    let refused = match third {
        Err(_) => true,
        Ok(mut s) => closed_by_peer(&mut s, Duration::from_secs(2)).await,
    };
    assert!(refused, "a third connection got through");
    for poll in polls {
        assert_eq!(poll.await.unwrap().unwrap(), 200, "the busy ones were kept");
    }
    let (_, metrics) = ca.get("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("agentca_connections_refused_total{limit=\"per_address\"} 1\n"),
        "{metrics}"
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

/// The renewal of `issued` with a new key: the answer, and the new key.
async fn renew(
    ca: &TestCa,
    issued: &agentca::wire::IssuedCertificate,
    key: &agentca::client::PrivateKey,
) -> (
    Result<agentca::wire::IssuedCertificate, ClientError>,
    agentca::client::PrivateKey,
) {
    let next = agentca::client::PrivateKey::generate(agentca::client::KeyAlgorithm::P256).unwrap();
    let result = ca
        .client_with(&issued.certificate_chain, key)
        .renew(&next.csr_pem().unwrap())
        .await;
    (result, next)
}

/// The `retry_after` of a 429 `issuance_limited` refusal.
fn limited<T: std::fmt::Debug>(result: Result<T, ClientError>) -> u64 {
    match result {
        Err(ClientError::Refused {
            status: 429,
            error,
            retry_after: Some(secs),
            detail,
        }) if error == "issuance_limited" => {
            assert!(detail.contains("retry after"), "{detail}");
            secs
        }
        other => panic!("expected 429 issuance_limited with Retry-After: {other:?}"),
    }
}

#[tokio::test]
async fn an_agent_renewing_in_a_loop_gets_429_and_a_retry_time_not_thousands_of_certificates() {
    let ca = TestCa::start_with(
        &[],
        &[
            "--max-renewals-per-instance",
            "3",
            "--max-certs-per-agent",
            "6",
        ],
    );
    // A 5-minute certificate: both windows last 5 minutes.
    let (mut issued, mut key) = ca.enrolled("acme", "prod", "looper").await;
    let mut renewed = 0;
    let refusal = loop {
        let (result, next) = renew(&ca, &issued, &key).await;
        match result {
            Ok(new) => {
                (issued, key) = (new, next);
                renewed += 1;
                assert!(renewed <= 3, "renewed past the instance's limit");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(renewed, 3);
    let retry_after = limited::<()>(Err(refusal));
    assert!((1..=300).contains(&retry_after), "{retry_after}");

    // Other instances of the agent enroll until the agent's limit
    // (1 + 3 + 2 = 6).
    for _ in 0..2 {
        let token = ca.token("acme", "prod", "looper", 1).await;
        ca.enroll(&token).await.unwrap();
    }
    let token = ca.token("acme", "prod", "looper", 1).await;
    limited(ca.enroll(&token).await);

    // Another agent is not affected.
    ca.enrolled("acme", "prod", "quiet").await;

    // Counted in the metrics, audited, logged a few times at most.
    let (_, metrics) = ca.get("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("\nagentca_issuance_limited_total 2\n"),
        "{metrics}"
    );
    let page: agentca::wire::AuditPage = ca
        .admin::<(), _>(
            reqwest::Method::GET,
            "/v1/admin/audit?since=0&limit=1000",
            None,
        )
        .await
        .unwrap();
    let limited_events: Vec<_> = page
        .events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("issuance_limited"))
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        limited_events,
        [("renew", "refused"), ("enroll", "refused")]
    );
    assert_eq!(ca.log().matches("issuance limit reached").count(), 2);
}
