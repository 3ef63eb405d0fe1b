//! What only a shared store must do: several replicas on one database, a
//! database that goes away and comes back, and the URL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster::{fresh_database, own_cluster};
use super::*;

fn open(url: &str) -> Arc<PostgresStore> {
    Arc::new(PostgresStore::open(&url.parse().unwrap(), Timeouts::default()).unwrap())
}

#[test]
fn the_successor_of_a_prefix_bounds_its_keys() {
    assert_eq!(successor(b"ab"), Some(b"ac".to_vec()));
    assert_eq!(successor(&[1, 0xFF]), Some(vec![2]));
    assert_eq!(successor(&[0xFF, 0xFF]), None);
    assert_eq!(successor(b""), None);
}

#[test]
fn replicas_on_one_database_hand_out_each_sequence_number_once() {
    let url = fresh_database();
    let replicas = [open(&url), open(&url), open(&url)];
    let per_thread = 40;
    let mut handles = Vec::new();
    for replica in &replicas {
        for _ in 0..3 {
            let replica = replica.clone();
            handles.push(std::thread::spawn(move || {
                (0..per_thread)
                    .map(|_| {
                        let mut got = 0;
                        replica
                            .write(&mut |txn| {
                                got = txn.next_in_sequence("n")?;
                                Ok(())
                            })
                            .unwrap();
                        got
                    })
                    .collect::<Vec<u64>>()
            }));
        }
    }
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    let expected: Vec<u64> = (1..=(9 * per_thread)).collect();
    assert_eq!(all, expected, "every number once, none skipped");
    for replica in &replicas {
        assert_eq!(replica.sequence("n").unwrap(), 9 * per_thread);
    }
}

#[test]
fn a_replica_hears_another_replicas_commit() {
    let url = fresh_database();
    let (a, b) = (open(&url), open(&url));
    let mut heard = b.commits().unwrap();
    // Wait until b listens (its counter moves once it does).
    let deadline = Instant::now() + Duration::from_secs(10);
    while *heard.borrow_and_update() == 0 {
        assert!(Instant::now() < deadline, "b never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = *heard.borrow_and_update();
    a.write(&mut |txn| txn.put(Table::Meta, b"k", b"v"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while *heard.borrow() == before {
        assert!(
            Instant::now() < deadline,
            "b did not hear a's commit within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(b.get(Table::Meta, b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn a_database_that_goes_away_is_a_quick_error_and_its_return_is_seen() {
    // A cluster of its own: this test stops it.
    let cluster = own_cluster();
    let store = open(&cluster.database());
    store
        .write(&mut |txn| txn.put(Table::Meta, b"k", b"1"))
        .unwrap();
    cluster.stop();
    let began = Instant::now();
    let read = store.get(Table::Meta, b"k");
    let write = store.write(&mut |txn| txn.put(Table::Meta, b"k", b"2"));
    assert!(read.is_err() && write.is_err(), "{read:?} {write:?}");
    let bound = 2 * (Timeouts::default().statement + Timeouts::default().pool_wait);
    assert!(began.elapsed() < bound, "took {:?}", began.elapsed());
    cluster.start();
    // The pool reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.write(&mut |txn| txn.put(Table::Meta, b"k", b"3")) {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "no reconnection: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(store.get(Table::Meta, b"k").unwrap(), Some(b"3".to_vec()));
}

#[test]
fn a_url_is_checked_and_its_password_never_shown() {
    let url: PostgresUrl = "postgres://ca:s3cret@db.example:5433/agentca"
        .parse()
        .unwrap();
    assert_eq!(
        url.to_string(),
        "postgres://ca:********@db.example:5433/agentca"
    );
    assert!(!format!("{url:?}").contains("s3cret"));
    for (bad, why) in [
        ("mysql://db/x", "postgres://"),
        ("postgres://db/x?sslmode=require", "sslrootcert"),
        (
            "postgres://db/x?sslmode=disable&sslrootcert=/x",
            "choose one",
        ),
        ("postgres:///x", "no host"),
        ("not a url", "not a URL"),
    ] {
        let e = bad.parse::<PostgresUrl>().unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
        assert!(!e.contains("s3cret"));
    }
    let e = "postgres://ca:s3cret@db/x?nonsense=1"
        .parse::<PostgresUrl>()
        .unwrap_err();
    assert!(!e.contains("s3cret"), "{e}");
    let long = format!("postgres://db/{}", "x".repeat(5000));
    assert!(long.parse::<PostgresUrl>().is_err());
}

#[test]
fn replicas_starting_together_apply_the_migrations_once() {
    let url = fresh_database();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                PostgresStore::open(&url.parse().unwrap(), Timeouts::default()).map(|_| ())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let store = open(&url);
    let versions = store
        .pooled(|client| async move {
            let rows = client
                .query("SELECT version FROM agentca_schema ORDER BY version", &[])
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>())
        })
        .unwrap();
    let expected: Vec<i32> = (1..=migrations::MIGRATIONS.len() as i32).collect();
    assert_eq!(versions, expected);
}

#[test]
fn a_database_of_a_newer_schema_is_refused() {
    let url = fresh_database();
    let store = open(&url);
    store
        .pooled(|client| async move {
            client
                .execute("INSERT INTO agentca_schema (version) VALUES (1000)", &[])
                .await
                .map_err(db)
        })
        .unwrap();
    drop(store);
    let Err(e) = PostgresStore::open(&url.parse().unwrap(), Timeouts::default()) else {
        panic!("a newer schema was opened");
    };
    assert!(e.to_string().contains("newer agentca"), "{e}");
}

#[test]
fn tls_to_the_database_is_rustls_and_verifies_the_server() {
    let cluster = super::cluster::own_tls_cluster();
    let database = cluster.database();
    // The server's certificate is for localhost, issued by a CA of the test.
    let ca = cluster.dir.join("tls-ca.pem");
    let name = database.rsplit('/').next().unwrap();
    let url = format!(
        "postgres://agentca@localhost:{}/{name}?sslrootcert={}",
        cluster.port,
        ca.display()
    );
    let store = open(&url);
    let ssl = store
        .pooled(|client| async move {
            let row = client
                .query_one(
                    "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok((row.get::<_, bool>(0), row.get::<_, Option<String>>(1)))
        })
        .unwrap();
    assert!(ssl.0, "the connection is TLS");
    assert_eq!(ssl.1.as_deref(), Some("TLSv1.3"));
    store
        .write(&mut |txn| txn.put(Table::Meta, b"over", b"tls"))
        .unwrap();
    // Another name than the certificate's: refused.
    let by_ip = url.replace("localhost", "127.0.0.1");
    let Err(e) = PostgresStore::open(&by_ip.parse().unwrap(), Timeouts::default()) else {
        panic!("a server certificate for another name was accepted");
    };
    assert!(e.to_string().contains("no connection"), "{e}");
    // Roots that the server's certificate does not chain to: refused.
    let other = cluster.dir.join("other-ca.pem");
    let wrong = url.replace(&ca.display().to_string(), &other.display().to_string());
    assert!(PostgresStore::open(&wrong.parse().unwrap(), Timeouts::default()).is_err());
}

#[test]
fn a_write_that_waited_too_long_for_the_lock_leaves_no_transaction_behind() {
    let url = fresh_database();
    let timeouts = Timeouts {
        statement: Duration::from_millis(500),
        ..Timeouts::default()
    };
    let store = PostgresStore::open(&url.parse().unwrap(), timeouts).unwrap();
    // Another session holds the write lock.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let holder = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
            ))
            .await
            .unwrap();
        client
    });
    let e = store
        .write(&mut |txn| txn.put(Table::Meta, b"k", b"1"))
        .unwrap_err();
    assert!(e.to_string().contains("timeout"), "{e}");
    runtime.block_on(holder.batch_execute("COMMIT")).unwrap();
    // Every pooled connection is usable again: none is stuck in the
    // aborted transaction.
    for i in 0..(2 * POOL_SIZE as u8) {
        store
            .write(&mut |txn| txn.put(Table::Meta, b"k", &[i]))
            .unwrap();
    }
    assert_eq!(
        store.get(Table::Meta, b"k").unwrap(),
        Some(vec![2 * POOL_SIZE as u8 - 1])
    );
}
