//! The store contract, run against every backend: what any [`Store`] must
//! do, tested only through the [`Store`] and [`WriteTxn`] traits.
//!
//! A backend proves itself by passing this suite: atomic writes, a
//! transaction that reads its own writes, conditional writes and sequences
//! that hold under concurrent [`Store::write`] calls from many threads,
//! scans that each see one committed state, durability across reopening.
//! Nothing here knows what the CA stores: tables are byte containers, and
//! any two of them serve.
//!
//! It must not depend on the records or changes built on the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use super::testing::{on_every_backend, Place};
use super::{Backend, Entry, Store, StoreError, Table, WriteTxn};

/// A table the tests keep their data in.
const DATA: Table = Table::Certs;
/// Another, for writes that span tables.
const OTHER: Table = Table::Audit;
/// Threads writing at once.
const THREADS: usize = 8;

on_every_backend!(
    a_failed_write_leaves_nothing_and_a_committed_one_is_seen_whole,
    a_transaction_reads_its_own_writes_and_deletes,
    a_prefetch_changes_no_result,
    a_snapshot_loads_into_every_backend_and_reads_the_same,
    conditional_writes_compare_with_the_committed_value,
    concurrent_inserts_of_one_key_succeed_once,
    concurrent_compare_and_swap_increments_lose_no_update,
    concurrent_sequences_hand_out_every_number_once_without_gaps,
    concurrent_transfers_keep_the_sum_in_every_scan,
    data_and_sequences_survive_reopening,
    a_sequence_that_is_not_8_bytes_is_corrupt,
);

fn open(place: &Place) -> Arc<dyn Store> {
    super::open_location(place.location(), None, super::DEFAULT_CACHE_BYTES).unwrap()
}

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// `pairs` as scan results.
fn entries(pairs: &[(&str, &str)]) -> Vec<Entry> {
    pairs.iter().map(|(k, v)| (bytes(k), bytes(v))).collect()
}

fn put(store: &dyn Store, table: Table, key: &str, value: &[u8]) {
    store
        .write(&mut |txn| txn.put(table, key.as_bytes(), value))
        .unwrap();
}

/// The error a closure fails with on purpose.
fn deliberate() -> StoreError {
    StoreError::Backend {
        backend: Backend::Redb,
        detail: "deliberate failure".into(),
    }
}

fn is_deliberate(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend { detail, .. } if detail == "deliberate failure")
}

/// Runs `write` on one [`Store::write`] and returns what it found. `write`
/// starts over on each call of the closure, as the contract asks.
fn write_returning<T>(
    store: &dyn Store,
    mut write: impl FnMut(&mut dyn WriteTxn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut found = None;
    store.write(&mut |txn| {
        found = Some(write(txn)?);
        Ok(())
    })?;
    Ok(found.expect("a committed write ran its closure"))
}

fn next_in_sequence(store: &dyn Store, name: &str) -> u64 {
    write_returning(store, |txn| txn.next_in_sequence(name)).unwrap()
}

/// Runs `work(store, thread)` on [`THREADS`] threads that start together,
/// each with its own handle on `store`; returns their results in thread
/// order.
fn on_threads<T: Send>(
    store: &Arc<dyn Store>,
    work: impl Fn(&dyn Store, usize) -> T + Sync,
) -> Vec<T> {
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = Arc::clone(store);
                let (start, work) = (&start, &work);
                s.spawn(move || {
                    start.wait();
                    work(&*store, thread)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Sets its flag when dropped, even by a panic: a reader waiting for the
/// writers to finish then stops, and the test fails instead of hanging.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn a_failed_write_leaves_nothing_and_a_committed_one_is_seen_whole(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    put(&*store, DATA, "k/kept", b"old");
    put(&*store, DATA, "k/gone", b"old");
    let before = entries(&[("k/gone", "old"), ("k/kept", "old")]);

    let mut writes = |txn: &mut dyn WriteTxn| -> Result<(), StoreError> {
        txn.put(DATA, b"k/new", b"data")?;
        txn.put(OTHER, b"k/new", b"other")?;
        txn.put(DATA, b"k/kept", b"changed")?;
        txn.delete(DATA, b"k/gone")?;
        assert!(txn.insert_new(DATA, b"k/inserted", b"new")?);
        assert_eq!(txn.next_in_sequence("atomic")?, 1);
        Ok(())
    };
    let failed = store.write(&mut |txn| {
        writes(txn)?;
        Err(deliberate())
    });
    assert!(
        failed.as_ref().is_err_and(is_deliberate),
        "the closure's error comes back: {failed:?}"
    );
    assert_eq!(store.scan_prefix(DATA, b"k/", 100).unwrap(), before);
    assert_eq!(store.scan_from(DATA, b"", 100).unwrap(), before);
    assert_eq!(store.get(DATA, b"k/new").unwrap(), None);
    assert_eq!(store.get(DATA, b"k/kept").unwrap(), Some(bytes("old")));
    assert_eq!(store.scan_from(OTHER, b"", 100).unwrap(), vec![]);
    assert_eq!(store.sequence("atomic").unwrap(), 0, "no number handed out");

    store.write(&mut writes).unwrap();
    let after = entries(&[
        ("k/inserted", "new"),
        ("k/kept", "changed"),
        ("k/new", "data"),
    ]);
    assert_eq!(store.scan_prefix(DATA, b"k/", 100).unwrap(), after);
    assert_eq!(store.scan_from(DATA, b"", 100).unwrap(), after);
    assert_eq!(store.get(DATA, b"k/gone").unwrap(), None);
    assert_eq!(store.get(DATA, b"k/kept").unwrap(), Some(bytes("changed")));
    assert_eq!(
        store.scan_from(OTHER, b"", 100).unwrap(),
        entries(&[("k/new", "other")])
    );
    assert_eq!(store.sequence("atomic").unwrap(), 1);
}

fn a_transaction_reads_its_own_writes_and_deletes(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    for (k, v) in [("k/1", "a"), ("k/2", "b"), ("k/3", "c"), ("l/1", "l")] {
        put(&*store, DATA, k, v.as_bytes());
    }
    put(&*store, OTHER, "k/9", b"other table");
    let committed = entries(&[("k/1", "a"), ("k/2", "b"), ("k/3", "c")]);

    let outside = store.clone();
    store
        .write(&mut |txn| {
            txn.put(DATA, b"k/1", b"A")?;
            txn.delete(DATA, b"k/2")?;
            txn.put(DATA, b"k/4", b"d")?;
            assert_eq!(txn.get(DATA, b"k/1")?, Some(bytes("A")));
            assert_eq!(txn.get(DATA, b"k/2")?, None);
            assert_eq!(txn.get(DATA, b"k/3")?, Some(bytes("c")));
            assert_eq!(txn.get(DATA, b"k/4")?, Some(bytes("d")));
            assert_eq!(
                txn.scan_prefix(DATA, b"k/", 100)?,
                entries(&[("k/1", "A"), ("k/3", "c"), ("k/4", "d")])
            );
            assert_eq!(
                txn.scan_prefix(DATA, b"k/", 2)?,
                entries(&[("k/1", "A"), ("k/3", "c")]),
                "a deleted key does not count against the limit"
            );
            assert_eq!(
                txn.scan_prefix(OTHER, b"k/", 100)?,
                entries(&[("k/9", "other table")])
            );

            // Deleted, then written again; written, then deleted.
            txn.put(DATA, b"k/2", b"B")?;
            txn.delete(DATA, b"k/4")?;
            assert_eq!(txn.get(DATA, b"k/2")?, Some(bytes("B")));
            assert_eq!(txn.get(DATA, b"k/4")?, None);
            // Conditional writes and sequences see them too.
            assert!(!txn.insert_new(DATA, b"k/2", b"x")?);
            assert!(txn.insert_new(DATA, b"k/4", b"D")?);
            assert_eq!(
                txn.compare_and_swap(DATA, b"k/4", Some(b"d"), None)?,
                Err(Some(bytes("D")))
            );
            assert_eq!(
                txn.compare_and_swap(DATA, b"k/4", Some(b"D"), None)?,
                Ok(())
            );
            assert_eq!(txn.next_in_sequence("own")?, 1);
            assert_eq!(txn.next_in_sequence("own")?, 2);
            assert_eq!(
                txn.scan_prefix(DATA, b"k/", 100)?,
                entries(&[("k/1", "A"), ("k/2", "B"), ("k/3", "c")])
            );

            // Nobody else sees any of it before the commit.
            assert_eq!(outside.get(DATA, b"k/1")?, Some(bytes("a")));
            assert_eq!(outside.scan_prefix(DATA, b"k/", 100)?, committed);
            assert_eq!(outside.sequence("own")?, 0);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        store.scan_prefix(DATA, b"k/", 100).unwrap(),
        entries(&[("k/1", "A"), ("k/2", "B"), ("k/3", "c")])
    );
    assert_eq!(store.get(DATA, b"k/4").unwrap(), None);
    assert_eq!(store.sequence("own").unwrap(), 2);
}

fn a_prefetch_changes_no_result(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    put(&*store, DATA, "stored", b"1");
    put(&*store, DATA, "gone", b"2");
    let seen = write_returning(&*store, |txn| {
        txn.put(DATA, b"own", b"3")?;
        txn.prefetch(&[
            (DATA, bytes("stored")),
            (DATA, bytes("own")),
            (DATA, bytes("absent")),
            (DATA, bytes("gone")),
            (OTHER, bytes("stored")),
        ])?;
        txn.delete(DATA, b"gone")?;
        // A second prefetch of what is known changes nothing either.
        txn.prefetch(&[(DATA, bytes("own")), (DATA, bytes("gone"))])?;
        Ok([
            txn.get(DATA, b"stored")?,
            txn.get(DATA, b"own")?,
            txn.get(DATA, b"absent")?,
            txn.get(DATA, b"gone")?,
            txn.get(OTHER, b"stored")?,
        ])
    })
    .unwrap();
    assert_eq!(seen, [Some(bytes("1")), Some(bytes("3")), None, None, None]);
    assert_eq!(
        store.scan_prefix(DATA, b"", 10).unwrap(),
        entries(&[("own", "3"), ("stored", "1")])
    );
}

fn a_snapshot_loads_into_every_backend_and_reads_the_same(backend: Backend) {
    let dir = Place::new(backend);
    {
        let store = open(&dir);
        put(&*store, DATA, "a", b"1");
        put(&*store, DATA, "b", b"");
        put(&*store, OTHER, "c", &[0, 255]);
        next_in_sequence(&*store, "n");
        next_in_sequence(&*store, "n");
    }
    // Reopened: the embedded stores' own bookkeeping is written by now,
    // and is not part of the snapshot.
    let store = open(&dir);
    let snapshot = store.snapshot().unwrap();
    let count: usize = snapshot.iter().map(|(_, e)| e.len()).sum();
    assert_eq!(count, 4, "{snapshot:?}");
    for target in [Backend::Redb, Backend::Sled, Backend::Postgres] {
        let place = Place::new(target);
        let copy = open(&place);
        super::load(&*copy, &snapshot).unwrap();
        assert_eq!(
            copy.snapshot().unwrap(),
            snapshot,
            "{backend} into {target}"
        );
        assert_eq!(copy.sequence("n").unwrap(), 2);
        // Only into an empty store.
        let again = super::load(&*copy, &snapshot).unwrap_err().to_string();
        assert!(again.contains("not empty"), "{again}");
    }
}

fn conditional_writes_compare_with_the_committed_value(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let store = &*store;
    let insert = |value: &[u8]| write_returning(store, |txn| txn.insert_new(DATA, b"c", value));
    let swap = |expected: Option<&[u8]>, new: Option<&[u8]>| {
        write_returning(store, |txn| txn.compare_and_swap(DATA, b"c", expected, new)).unwrap()
    };
    let value = || store.get(DATA, b"c").unwrap();

    assert!(insert(b"1").unwrap());
    assert_eq!(value(), Some(bytes("1")));
    assert!(!insert(b"2").unwrap());
    assert_eq!(value(), Some(bytes("1")), "a refused insert writes nothing");

    assert_eq!(swap(None, Some(b"x")), Err(Some(bytes("1"))));
    assert_eq!(swap(Some(b"9"), Some(b"x")), Err(Some(bytes("1"))));
    assert_eq!(swap(Some(b"9"), None), Err(Some(bytes("1"))));
    assert_eq!(value(), Some(bytes("1")), "a refused swap writes nothing");
    assert_eq!(swap(Some(b"1"), Some(b"2")), Ok(()));
    assert_eq!(value(), Some(bytes("2")));
    assert_eq!(swap(Some(b"2"), None), Ok(()), "swapping to None deletes");
    assert_eq!(value(), None);
    assert_eq!(swap(Some(b"2"), Some(b"3")), Err(None));
    assert_eq!(value(), None);
    assert_eq!(swap(None, Some(b"")), Ok(()), "None expects an absent key");
    assert_eq!(value(), Some(Vec::new()), "an empty value is not absent");
    assert_eq!(swap(None, Some(b"4")), Err(Some(Vec::new())));
    assert!(!insert(b"5").unwrap());
    assert_eq!(swap(Some(b""), None), Ok(()));
    assert!(insert(b"6").unwrap());
    assert_eq!(value(), Some(bytes("6")));
}

fn concurrent_inserts_of_one_key_succeed_once(backend: Backend) {
    const KEYS: usize = 10;
    let dir = Place::new(backend);
    let store = open(&dir);
    let key = |k: usize| format!("once/{k}").into_bytes();
    // Every thread tries every key, in the same order, at the same time.
    let won = on_threads(&store, |store, thread| {
        (0..KEYS)
            .filter(|&k| {
                write_returning(store, |txn| txn.insert_new(DATA, &key(k), &[thread as u8]))
                    .unwrap()
            })
            .collect::<Vec<usize>>()
    });
    for k in 0..KEYS {
        let winners: Vec<usize> = (0..THREADS).filter(|t| won[*t].contains(&k)).collect();
        assert_eq!(winners.len(), 1, "key {k} inserted by threads {winners:?}");
        assert_eq!(
            store.get(DATA, &key(k)).unwrap(),
            Some(vec![winners[0] as u8]),
            "key {k} holds its winner's value"
        );
    }
    assert_eq!(store.scan_prefix(DATA, b"once/", 100).unwrap().len(), KEYS);
}

fn concurrent_compare_and_swap_increments_lose_no_update(backend: Backend) {
    const INCREMENTS: u64 = 20;
    let dir = Place::new(backend);
    let store = open(&dir);
    let count = |value: &Option<Vec<u8>>| {
        value
            .as_ref()
            .map_or(0, |v| u64::from_be_bytes(v.as_slice().try_into().unwrap()))
    };
    let swapped = on_threads(&store, |store, _| {
        // Read outside any transaction, so usually stale by the time the
        // swap runs: the swap must refuse it and say what it found.
        let mut seen = store.get(DATA, b"counter").unwrap();
        let mut swapped = 0;
        for _ in 0..INCREMENTS {
            loop {
                let next = (count(&seen) + 1).to_be_bytes();
                let outcome = write_returning(store, |txn| {
                    txn.compare_and_swap(DATA, b"counter", seen.as_deref(), Some(&next))
                })
                .unwrap();
                match outcome {
                    Ok(()) => {
                        seen = Some(next.to_vec());
                        swapped += 1;
                        break;
                    }
                    Err(current) => {
                        assert!(
                            count(&current) > count(&seen) || seen.is_none(),
                            "a refused swap finds a newer value"
                        );
                        seen = current;
                    }
                }
            }
        }
        swapped
    });
    assert_eq!(swapped, vec![INCREMENTS; THREADS]);
    assert_eq!(
        count(&store.get(DATA, b"counter").unwrap()),
        INCREMENTS * THREADS as u64,
        "every increment is there"
    );
}

fn concurrent_sequences_hand_out_every_number_once_without_gaps(backend: Backend) {
    const EACH: usize = 25;
    const TOTAL: u64 = (EACH * THREADS) as u64;
    let dir = Place::new(backend);
    let store = open(&dir);
    let writers_done = AtomicBool::new(false);
    let (handed_out, reads) = std::thread::scope(|s| {
        // A reader alongside: the committed value only grows.
        let reader = s.spawn(|| {
            let (mut last, mut reads) = (0, 0u64);
            loop {
                let done = writers_done.load(Ordering::Acquire);
                let now = store.sequence("seq").unwrap();
                assert!(now >= last, "the sequence went from {last} back to {now}");
                assert!(now <= TOTAL);
                last = now;
                reads += 1;
                if done {
                    return reads;
                }
            }
        });
        let handed_out = {
            let _done = SetOnDrop(&writers_done);
            on_threads(&store, |store, _| {
                (0..EACH)
                    .map(|_| next_in_sequence(store, "seq"))
                    .collect::<Vec<u64>>()
            })
        };
        (handed_out, reader.join().unwrap())
    });
    assert!(reads > 0);
    for (thread, numbers) in handed_out.iter().enumerate() {
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "thread {thread}'s numbers follow its commit order: {numbers:?}"
        );
    }
    let mut all: Vec<u64> = handed_out.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=TOTAL).collect::<Vec<u64>>(), "each number once");
    assert_eq!(store.sequence("seq").unwrap(), TOTAL);
    assert_eq!(store.sequence("another").unwrap(), 0);
}

fn concurrent_transfers_keep_the_sum_in_every_scan(backend: Backend) {
    // Enough keys that a scan spans several of a B-tree's leaves (sled's
    // hold 16 entries).
    const ACCOUNTS: usize = 64;
    const START: u64 = 1000;
    const MOVES: usize = 12;
    const SUM: u64 = START * ACCOUNTS as u64;
    let dir = Place::new(backend);
    let store = open(&dir);
    let key = |a: usize| format!("acct/{a:02}").into_bytes();
    let balance = |v: &[u8]| u64::from_be_bytes(v.try_into().unwrap());
    store
        .write(&mut |txn| {
            (0..ACCOUNTS).try_for_each(|a| txn.put(DATA, &key(a), &START.to_be_bytes()))
        })
        .unwrap();
    let check = |accounts: &[Entry]| {
        assert_eq!(accounts.len(), ACCOUNTS);
        let sum: u64 = accounts.iter().map(|(_, v)| balance(v)).sum();
        assert_eq!(sum, SUM, "a scan saw part of a transfer");
    };
    let writers_done = AtomicBool::new(false);
    let scans = std::thread::scope(|s| {
        // Scans alongside the transfers, each of which must see one state.
        let reader = s.spawn(|| {
            let mut scans = 0u64;
            loop {
                let done = writers_done.load(Ordering::Acquire);
                check(&store.scan_prefix(DATA, b"acct/", 100).unwrap());
                check(&store.scan_from(DATA, b"acct/", ACCOUNTS).unwrap());
                scans += 1;
                std::thread::yield_now();
                if done {
                    return scans;
                }
            }
        });
        let done = SetOnDrop(&writers_done);
        on_threads(&store, |store, thread| {
            for i in 0..MOVES {
                // From the first account to the last and back: a scan in
                // between would see the unit twice or not at all.
                let (from, to) = if (thread + i) % 2 == 0 {
                    (0, ACCOUNTS - 1)
                } else {
                    (ACCOUNTS - 1, 0)
                };
                store
                    .write(&mut |txn| {
                        let have = balance(&txn.get(DATA, &key(from))?.unwrap());
                        let get = balance(&txn.get(DATA, &key(to))?.unwrap());
                        txn.put(DATA, &key(from), &(have - 1).to_be_bytes())?;
                        txn.put(DATA, &key(to), &(get + 1).to_be_bytes())?;
                        check(&txn.scan_prefix(DATA, b"acct/", 100)?);
                        Ok(())
                    })
                    .unwrap();
            }
        });
        drop(done);
        reader.join().unwrap()
    });
    assert!(scans > 0);
    let accounts = store.scan_prefix(DATA, b"acct/", 100).unwrap();
    check(&accounts);
    // Each thread moved as many units one way as the other, and no
    // transfer was lost.
    for (k, v) in &accounts {
        assert_eq!(balance(v), START, "{}", String::from_utf8_lossy(k));
    }
}

fn data_and_sequences_survive_reopening(backend: Backend) {
    let dir = Place::new(backend);
    {
        let store = open(&dir);
        put(&*store, DATA, "d/1", b"one");
        put(&*store, DATA, "d/2", b"two");
        put(&*store, OTHER, "d/3", b"three");
        store
            .write(&mut |txn| {
                txn.delete(DATA, b"d/2")?;
                txn.put(DATA, b"d/4", b"four")
            })
            .unwrap();
        for expected in 1..=3 {
            assert_eq!(next_in_sequence(&*store, "durable"), expected);
        }
        // A failed write, just before closing, is not there after.
        let failed = store.write(&mut |txn| {
            txn.next_in_sequence("durable")?;
            txn.put(DATA, b"d/5", b"five")?;
            Err(deliberate())
        });
        assert!(failed.is_err());
    }
    for round in 0..2u64 {
        let store = open(&dir);
        assert_eq!(
            store.scan_prefix(DATA, b"d/", 100).unwrap(),
            entries(&[("d/1", "one"), ("d/4", "four")]),
            "round {round}"
        );
        assert_eq!(
            store.scan_from(OTHER, b"", 100).unwrap(),
            entries(&[("d/3", "three")])
        );
        assert_eq!(store.sequence("durable").unwrap(), 3 + round);
        assert_eq!(next_in_sequence(&*store, "durable"), 4 + round);
    }
}

fn a_sequence_that_is_not_8_bytes_is_corrupt(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let corrupt = |r: &Result<u64, StoreError>| matches!(r, Err(StoreError::Corrupt { table, .. }) if *table == Table::Meta.name());
    for bad in [
        &[][..],
        &[0, 0, 0, 1][..],
        &[0; 9][..],
        &u64::MAX.to_be_bytes()[..],
    ] {
        put(&*store, Table::Meta, "bad", bad);
        let read = store.sequence("bad");
        if bad.len() == 8 {
            assert_eq!(read.unwrap(), u64::MAX, "the last value reads back");
        } else {
            assert!(corrupt(&read), "{bad:?} read as {read:?}");
        }
        let appended = write_returning(&*store, |txn| {
            let n = txn.next_in_sequence("bad")?;
            txn.put(DATA, b"after", b"must not be written")?;
            Ok(n)
        });
        assert!(corrupt(&appended), "{bad:?} appended to as {appended:?}");
        assert_eq!(
            store.get(Table::Meta, b"bad").unwrap(),
            Some(bad.to_vec()),
            "the write failed whole"
        );
        assert_eq!(store.get(DATA, b"after").unwrap(), None);
    }
    // A sequence that is fine is not disturbed by one that is not.
    assert_eq!(next_in_sequence(&*store, "good"), 1);
}
