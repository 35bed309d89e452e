//! The connection registry: every connection in a slab, the per-IP counts,
//! the lists the loop works through each turn (to write, over their limit,
//! to remove, to read again), and the output policy: how much a connection
//! may have queued, how long its output may stall, how far its pings may
//! outrun its reading, how many answers an HTTP client may leave unread,
//! and how a connection that breaks one of those goes. Every byte is
//! queued through [`Conns::enqueue`], [`Conns::enqueue_pong`] or
//! [`Conns::schedule`], where the limit is checked.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant};

use slab::Slab;

use log::warn;

use crate::server::conn::{Close, Conn, Due, Timeouts};
use crate::server::queue::Out;
use crate::wire::Shared;
use crate::wire::protocol::{CloseReason, code};

/// Responses an HTTP connection may have waiting before its further
/// pipelined requests are left unread until they drain.
const HTTP_OUTPUT_BOUND: usize = 64 << 10;

/// Pongs that may wait to go out, each answering its ping (Autobahn 2.10
/// checks that ten pings in a row get ten pongs), before a newer one
/// replaces the newest unsent one.
const MAX_UNSENT_PONGS: usize = 16;

/// Pongs a client may let the server replace unsent (RFC 6455 §5.5.3
/// allows answering only the latest ping) before it is closed as a ping
/// flood. Dashboards ping once in a while, never faster than they read.
const PING_FLOOD: u32 = 1024;

/// The operator's limits on output, from the config.
#[derive(Debug, Clone, Copy)]
pub(super) struct OutputLimits {
    /// Output a connection may have queued before it is closed as a slow
    /// consumer (`--max-queue-bytes`).
    pub max_queue: usize,
    /// How long output may stay pending with no byte taken before the
    /// connection is closed as a slow consumer (`--write-timeout`).
    pub write_timeout: Duration,
}

/// How a connection that broke the output policy leaves.
#[derive(Debug)]
pub(super) enum Eviction {
    /// With a close frame (WebSocket).
    Close(CloseReason),
    /// By ending its stream once what has started is written (SSE).
    EndStream,
    /// At once: it is closing already, or speaks plain HTTP.
    Finish,
}

/// Every connection and what the loop must do with them this turn.
#[derive(Debug)]
pub(super) struct Conns {
    slab: Slab<Conn>,
    limits: OutputLimits,
    /// Open connections per client, for `--max-connections-per-ip`.
    per_ip: HashMap<IpAddr, u32>,
    /// The id the next connection gets, for logs.
    next_id: u64,
    /// Connections with output queued this turn, written before the loop
    /// sleeps so several frames leave in one write.
    pub(super) dirty: Vec<usize>,
    /// Connections marked done, removed at the end of the turn.
    pub(super) doomed: Vec<usize>,
    /// Connections an enqueue found over their limit, closed before the
    /// write pass.
    pub(super) over_limit: Vec<usize>,
    /// Connections with input left unread (budget spent, or held back by
    /// backpressure), by key and id, read again after the write pass.
    pub(super) read_later: Vec<(usize, u64)>,
}

impl Conns {
    pub(super) fn new(limits: OutputLimits) -> Conns {
        Conns {
            slab: Slab::new(),
            limits,
            per_ip: HashMap::new(),
            next_id: 1,
            dirty: Vec::new(),
            doomed: Vec::new(),
            over_limit: Vec::new(),
            read_later: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(super) fn get(&self, key: usize) -> Option<&Conn> {
        self.slab.get(key)
    }

    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut Conn> {
        self.slab.get_mut(key)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Conn)> {
        self.slab.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Conn)> {
        self.slab.iter_mut()
    }

    pub(super) fn contains(&self, key: usize) -> bool {
        self.slab.contains(key)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The key the next connection will have, to register it under first.
    pub(super) fn next_key(&self) -> usize {
        self.slab.vacant_key()
    }

    /// Connections open from `peer`'s client (its /64, for IPv6).
    pub(super) fn open_from(&self, peer: IpAddr) -> u32 {
        self.per_ip.get(&client_of(peer)).copied().unwrap_or(0)
    }

    /// Adds a connection, under [`next_key`](Self::next_key); returns its
    /// key and its id.
    pub(super) fn insert(&mut self, make: impl FnOnce(u64) -> Conn) -> (usize, u64) {
        let id = self.next_id;
        self.next_id += 1;
        let conn = make(id);
        *self.per_ip.entry(client_of(conn.peer().ip())).or_default() += 1;
        (self.slab.insert(conn), id)
    }

    /// The one place a connection leaves the registry.
    pub(super) fn remove(&mut self, key: usize) -> Option<Conn> {
        let conn = self.slab.try_remove(key)?;
        let client = client_of(conn.peer().ip());
        if let Some(count) = self.per_ip.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&client);
            }
        }
        Some(conn)
    }

    /// Queues `out` for connection `key`: the one way any byte is queued
    /// (redis checks its output limit on every append, and so does this).
    /// Returns whether it superseded an older snapshot.
    pub(super) fn enqueue(&mut self, key: usize, out: Out) -> bool {
        let Some(conn) = self.slab.get_mut(key) else {
            return false;
        };
        let superseded = conn.enqueue(out);
        self.schedule(key);
        superseded
    }

    /// Queues a pong for connection `key`, conflated past
    /// `MAX_UNSENT_PONGS`.
    pub(super) fn enqueue_pong(&mut self, key: usize, pong: Shared) {
        if let Some(conn) = self.slab.get_mut(key) {
            conn.enqueue_pong(pong, MAX_UNSENT_PONGS);
            self.schedule(key);
        }
    }

    /// The close a connection gets for flooding pings: its pongs replaced
    /// unsent more than `PING_FLOOD` times since its queue last drained.
    pub(super) fn ping_flood(&self, key: usize) -> Option<(CloseReason, Close)> {
        let conn = self.slab.get(key)?;
        conn.ping_flooding(PING_FLOOD).then(|| {
            (
                CloseReason::new(code::POLICY, "ping flood"),
                Close::PingFlood,
            )
        })
    }

    /// Lists connection `key` for the write pass, and one over
    /// `--max-queue-bytes` to be closed once the current pass over
    /// connections is done.
    pub(super) fn schedule(&mut self, key: usize) {
        let Some(conn) = self.slab.get_mut(key) else {
            return;
        };
        if conn.pending_bytes() > self.limits.max_queue {
            self.over_limit.push(key);
        }
        if conn.mark_dirty() {
            self.dirty.push(key);
        }
    }

    /// The connections an enqueue found over `--max-queue-bytes` that still
    /// are, now that no pass over a subscriber list is under way: each is
    /// to be closed as a slow consumer.
    pub(super) fn take_over_limit(&mut self) -> Vec<usize> {
        let listed = std::mem::take(&mut self.over_limit);
        let max = self.limits.max_queue;
        listed
            .into_iter()
            .filter(|&key| {
                self.slab
                    .get(key)
                    .is_some_and(|c| !c.is_done() && !c.is_closing() && c.pending_bytes() > max)
            })
            .collect()
    }

    /// Every connection's timers: the write timeout, checked here with the
    /// rest of the output policy, then the connection's own.
    pub(super) fn due(&mut self, now: Instant, timeouts: &Timeouts) -> Vec<(usize, Due)> {
        let write_timeout = self.limits.write_timeout;
        let mut due = Vec::new();
        for (key, conn) in self.slab.iter_mut() {
            let stalled = !conn.is_done()
                && conn
                    .stalled_since()
                    .is_some_and(|at| now.duration_since(at) >= write_timeout);
            let verdict = if stalled {
                Some(Due::WriteTimeout)
            } else {
                conn.due(now, timeouts)
            };
            if let Some(verdict) = verdict {
                due.push((key, verdict));
            }
        }
        due
    }

    /// How a slow consumer goes (its queue over the limit, or its output
    /// stalled past `--write-timeout`): an operator must see it, and a
    /// WebSocket gets 1008.
    pub(super) fn evict(&self, key: usize, cause: Close) -> Eviction {
        let Some(conn) = self.slab.get(key) else {
            return Eviction::Finish;
        };
        if conn.is_closing() {
            // Already leaving, and not even its last bytes go out.
            return Eviction::Finish;
        }
        warn!(
            "{} {cause} ({} bytes queued): closing",
            conn.tag(),
            conn.pending_bytes()
        );
        if conn.is_open() {
            Eviction::Close(CloseReason::new(code::POLICY, "slow consumer"))
        } else if conn.is_stream() {
            Eviction::EndStream
        } else {
            Eviction::Finish
        }
    }

    /// Whether an HTTP connection's answers are piling up unread, or one is
    /// still waiting for Redis: it is not read again until they drain
    /// (backpressure, as HTTP servers do it).
    pub(super) fn held_back(&self, key: usize) -> bool {
        self.slab.get(key).is_some_and(|conn| {
            conn.is_http() && (conn.pending_bytes() > HTTP_OUTPUT_BOUND || conn.is_awaiting())
        })
    }
}

// Proof for the indexing: a slab key is used only while its entry is
// there (see the loop's files).
#[allow(clippy::indexing_slicing)]
impl Index<usize> for Conns {
    type Output = Conn;

    fn index(&self, key: usize) -> &Conn {
        &self.slab[key]
    }
}

#[allow(clippy::indexing_slicing)]
impl IndexMut<usize> for Conns {
    fn index_mut(&mut self, key: usize) -> &mut Conn {
        &mut self.slab[key]
    }
}

/// Who a peer address counts as for `--max-connections-per-ip`: an IPv4
/// address itself, an IPv6 address by its /64. One host is commonly given
/// a whole /64 and may pick any address in it, so counting each address
/// would let it open as many connections as it likes.
pub(super) fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !0u128 << 64)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::conn::Phase;
    use crate::topic::{Form, Subscription};

    /// A registry holding one open WebSocket whose peer reads nothing.
    fn one_open(limits: OutputLimits, now: Instant) -> (Conns, usize, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, addr) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let stream = mio::net::TcpStream::from_std(ours);
        let mut conns = Conns::new(limits);
        let (key, _) = conns.insert(|id| Conn::new(id, addr, stream, now, false));
        let sub = Subscription {
            topic: 0,
            index: 0,
            form: Form::Frame,
        };
        conns[key].open(sub, now);
        (conns, key, peer)
    }

    const TIMEOUTS: Timeouts = Timeouts {
        ping_interval: Duration::from_secs(3600),
        handshake: Duration::from_secs(10),
    };

    /// Output nobody takes for `--write-timeout` is due as a write timeout,
    /// and the policy closes that WebSocket with 1008.
    #[test]
    fn stalled_output_is_a_write_timeout_closed_with_1008() {
        let now = Instant::now();
        let limits = OutputLimits {
            max_queue: usize::MAX,
            write_timeout: Duration::from_millis(300),
        };
        let (mut conns, key, _peer) = one_open(limits, now);
        conns.enqueue(key, Out::Bytes(Shared::from(vec![b'x'; 64 << 20])));
        let _ = conns[key].flush(now, &mut |_| {});
        assert!(
            conns
                .due(now + Duration::from_millis(299), &TIMEOUTS)
                .is_empty()
        );
        let due = conns.due(now + Duration::from_millis(300), &TIMEOUTS);
        assert!(
            matches!(due.as_slice(), [(k, Due::WriteTimeout)] if *k == key),
            "{due:?}"
        );
        match conns.evict(key, Close::WriteTimeout) {
            Eviction::Close(reason) => assert_eq!(reason.code, code::POLICY),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Past `--max-queue-bytes` a connection is listed to close; under it,
    /// it is not.
    #[test]
    fn a_queue_over_the_limit_is_listed_to_close() {
        let now = Instant::now();
        let limits = OutputLimits {
            max_queue: 1000,
            write_timeout: Duration::from_secs(30),
        };
        let (mut conns, key, _peer) = one_open(limits, now);
        conns.enqueue(key, Out::Bytes(Shared::from(vec![b'x'; 1000])));
        assert!(conns.take_over_limit().is_empty());
        conns.enqueue(key, Out::Bytes(Shared::from(vec![b'x'; 1])));
        assert_eq!(conns.take_over_limit(), vec![key]);
    }

    /// Pongs replaced unsent past `PING_FLOOD` make a ping flood, closed
    /// with 1008; pongs that drain do not.
    #[test]
    fn pongs_replaced_past_the_limit_are_a_ping_flood() {
        let now = Instant::now();
        let limits = OutputLimits {
            max_queue: usize::MAX,
            write_timeout: Duration::from_secs(30),
        };
        let (mut conns, key, _peer) = one_open(limits, now);
        // Something unsent ahead of the pongs, so none of them starts.
        conns.enqueue(key, Out::Bytes(Shared::from(vec![b'x'; 64 << 20])));
        let _ = conns[key].flush(now, &mut |_| {});
        let pongs = MAX_UNSENT_PONGS + PING_FLOOD as usize;
        for _ in 0..pongs {
            conns.enqueue_pong(key, Shared::from(b"pong".to_vec()));
        }
        assert!(conns.ping_flood(key).is_none());
        conns.enqueue_pong(key, Shared::from(b"pong".to_vec()));
        let (reason, cause) = conns.ping_flood(key).expect("a flood");
        assert_eq!((reason.code, cause), (code::POLICY, Close::PingFlood));
        assert!(matches!(conns[key].phase(), Phase::Open { .. }));
    }

    /// One /64 is one client; another /64, or an IPv4 address (mapped or
    /// not), is another.
    #[test]
    fn ipv6_clients_count_by_their_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = client_of(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, client_of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_ne!(a, client_of(ip("2001:db8:1:3::1")));
        assert_eq!(client_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(client_of(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_ne!(client_of(ip("10.0.0.1")), client_of(ip("10.0.0.2")));
    }
}
