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
