//! Who gets a connection when the listener is full.
//!
//! Refusing every new connection at a limit lets one client lock others
//! out: 256 connections that never finish a request (slowloris) would shut
//! out everyone behind the same NAT or proxy until they time out. Instead,
//! a new connection at a limit takes the place of one that is doing
//! nothing: [`victim`] picks it. A connection with a request in progress
//! is never closed; among the others, one that never completed a request
//! goes before a kept-alive one that did, the longest idle first. At the
//! overall limit, connections without a client certificate go before those
//! of authenticated agents, so that under a flood the CA keeps serving its
//! agents first. Only when every connection is busy is the new one closed.
//!
//! [`Connections`] is the table the listener keeps: each connection's
//! address and what it is doing, and a handle to close it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// What one connection is doing, as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    /// Requests in progress.
    pub in_flight: u32,
    /// Requests completed.
    pub served: u64,
    /// Whether it presented a client certificate the handshake accepted.
    pub authenticated: bool,
    /// Since when it has done nothing: its opening, or its last request's
    /// end.
    pub idle_since: Instant,
}

/// Which of `candidates` to close for a new connection: `None` when every
/// one has a request in progress. `spare_authenticated`: prefer closing
/// those without a client certificate (at the overall limit).
pub fn victim<K: Copy>(
    candidates: impl IntoIterator<Item = (K, Activity)>,
    spare_authenticated: bool,
) -> Option<K> {
    candidates
        .into_iter()
        .filter(|(_, a)| a.in_flight == 0)
        .min_by_key(|(_, a)| {
            (
                spare_authenticated && a.authenticated,
                a.served > 0,
                a.idle_since,
            )
        })
        .map(|(k, _)| k)
}

/// One open connection's state, shared by its task and the table.
#[derive(Debug)]
pub struct ConnState {
    in_flight: AtomicU32,
    served: AtomicU64,
    authenticated: AtomicBool,
    /// Nanoseconds after the table's epoch.
    idle_since: AtomicU64,
    epoch: Instant,
    close: Notify,
}

impl ConnState {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The handshake accepted a client certificate.
    pub fn authenticated(&self) {
        self.authenticated.store(true, Ordering::Relaxed);
    }

    /// A request begins; it ends when the guard is dropped.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Resolves when the table decided to close this connection.
    pub async fn closed(&self) {
        self.close.notified().await
    }

    fn activity(&self) -> Activity {
        Activity {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            authenticated: self.authenticated.load(Ordering::Relaxed),
            idle_since: self.epoch
                + std::time::Duration::from_nanos(self.idle_since.load(Ordering::Relaxed)),
        }
    }
}

/// A request in progress on a connection.
pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.served.fetch_add(1, Ordering::Relaxed);
        self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, (IpAddr, Arc<ConnState>)>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Which limit a new connection met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `--max-connections`.
    Total,
    /// `--max-connections-per-ip`.
    PerAddress,
}

impl Limit {
    /// Its metric label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Total => "total",
            Limit::PerAddress => "per_address",
        }
    }
}

/// What became of a new connection.
pub enum Admission {
    /// Admitted; no other was closed.
    Admitted(Slot),
    /// Admitted in place of an idle one, closed at `Limit`.
    Replaced(Slot, Limit),
    /// Closed at `Limit`: every connection there is busy.
    Refused(Limit),
}

/// The open connections of one listener.
pub struct Connections {
    table: Mutex<Table>,
    max_total: usize,
    max_per_ip: usize,
    epoch: Instant,
}

impl Connections {
    /// A table admitting at most `max_total` connections, `max_per_ip`
    /// from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::default(),
            max_total,
            max_per_ip,
            epoch: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip`, closing an idle one at a full limit
    /// ([`victim`]).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        let mut table = self.lock();
        let mut replaced = None;
        if table.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            let same_ip = table
                .open
                .iter()
                .filter(|(_, (i, _))| *i == ip)
                .map(|(id, (_, s))| (*id, s.activity()));
            match victim(same_ip, false) {
                Some(id) => {
                    close(&mut table, id);
                    replaced = Some(Limit::PerAddress);
                }
                None => return Admission::Refused(Limit::PerAddress),
            }
        }
        if table.open.len() >= self.max_total {
            let all = table.open.iter().map(|(id, (_, s))| (*id, s.activity()));
            match victim(all, true) {
                Some(id) => {
                    close(&mut table, id);
                    replaced = replaced.or(Some(Limit::Total));
                }
                None => return Admission::Refused(Limit::Total),
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let state = Arc::new(ConnState {
            in_flight: AtomicU32::new(0),
            served: AtomicU64::new(0),
            authenticated: AtomicBool::new(false),
            idle_since: AtomicU64::new(
                u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX),
            ),
            epoch: self.epoch,
            close: Notify::new(),
        });
        table.open.insert(id, (ip, state.clone()));
        *table.per_ip.entry(ip).or_default() += 1;
        let slot = Slot {
            table: self.clone(),
            id,
            state,
        };
        match replaced {
            None => Admission::Admitted(slot),
            Some(limit) => Admission::Replaced(slot, limit),
        }
    }
}

/// Takes connection `id` out of the table and tells its task to close it.
fn close(table: &mut Table, id: u64) {
    if let Some((ip, state)) = table.open.remove(&id) {
        release(table, ip);
        state.close.notify_one();
    }
}

fn release(table: &mut Table, ip: IpAddr) {
    if let Some(count) = table.per_ip.get_mut(&ip) {
        *count -= 1;
        if *count == 0 {
            table.per_ip.remove(&ip);
        }
    }
}

/// A connection's place in the table, given back when it closes.
pub struct Slot {
    table: Arc<Connections>,
    id: u64,
    state: Arc<ConnState>,
}

impl Slot {
    /// The connection's state.
    pub fn state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        if let Some((ip, _)) = table.open.remove(&self.id) {
            release(&mut table, ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn activity(t: Instant, idle_for: u64, in_flight: u32, served: u64, auth: bool) -> Activity {
        Activity {
            in_flight,
            served,
            authenticated: auth,
            idle_since: t - Duration::from_secs(idle_for),
        }
    }

    #[test]
    fn a_busy_connection_is_never_the_victim() {
        let t = Instant::now();
        assert_eq!(victim([(1, activity(t, 99, 1, 0, false))], false), None);
        assert_eq!(victim(Vec::<(u8, Activity)>::new(), false), None);
        assert_eq!(
            victim(
                [
                    (1, activity(t, 99, 1, 0, false)),
                    (2, activity(t, 1, 0, 5, true))
                ],
                true
            ),
            Some(2)
        );
    }

    #[test]
    fn one_that_never_finished_a_request_goes_first_the_oldest_first() {
        let t = Instant::now();
        let conns = [
            (1, activity(t, 50, 0, 3, false)), // kept alive, idle longest
            (2, activity(t, 5, 0, 0, false)),  // never served, newer
            (3, activity(t, 9, 0, 0, false)),  // never served, older
        ];
        assert_eq!(victim(conns, false), Some(3));
        assert_eq!(victim([conns[0], conns[1]], false), Some(2));
        assert_eq!(victim([conns[0]], false), Some(1));
    }

    #[test]
    fn at_the_overall_limit_an_agents_connection_is_spared() {
        let t = Instant::now();
        let agent = (1, activity(t, 60, 0, 0, true));
        let anonymous = (2, activity(t, 1, 0, 4, false));
        assert_eq!(victim([agent, anonymous], true), Some(2));
        assert_eq!(victim([agent, anonymous], false), Some(1));
    }

    #[test]
    fn a_full_address_replaces_its_idle_connection_and_refuses_when_all_are_busy() {
        let conns = Connections::new(10, 2);
        let ip: IpAddr = [192, 0, 2, 1].into();
        let Admission::Admitted(a) = conns.admit(ip) else {
            panic!()
        };
        let Admission::Admitted(b) = conns.admit(ip) else {
            panic!()
        };
        let _busy_b = b.state().request();
        // The third takes a's place: a is told to close.
        let Admission::Replaced(c, Limit::PerAddress) = conns.admit(ip) else {
            panic!("not replaced")
        };
        let closed = a.state().clone();
        assert!(futures_ready(closed.closed()));
        drop(a);
        let _busy_c = c.state().request();
        assert!(matches!(
            conns.admit(ip),
            Admission::Refused(Limit::PerAddress)
        ));
        // Another address is not affected.
        assert!(matches!(
            conns.admit([192, 0, 2, 2].into()),
            Admission::Admitted(_)
        ));
    }

    #[test]
    fn at_the_overall_limit_the_idle_anonymous_connection_goes() {
        let conns = Connections::new(2, 10);
        let Admission::Admitted(agent) = conns.admit([192, 0, 2, 1].into()) else {
            panic!()
        };
        agent.state().authenticated();
        let Admission::Admitted(anon) = conns.admit([192, 0, 2, 2].into()) else {
            panic!()
        };
        let Admission::Replaced(_new, Limit::Total) = conns.admit([192, 0, 2, 3].into()) else {
            panic!("not replaced")
        };
        assert!(futures_ready(anon.state().closed()));
        assert!(!futures_ready(agent.state().closed()));
    }

    /// Whether `f` is ready at once.
    fn futures_ready(f: impl std::future::Future<Output = ()>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut cx).is_ready()
    }
}
