//! The connection registry: every connection in a slab, the per-IP counts,
//! the lists the loop works through each turn (to write, over their limit,
//! to remove, to read again), the output policy (how much a connection
//! may have queued, how long its output may stall, how far its pings may
//! outrun its reading, how many answers an HTTP client may leave unread),
//! and how a connection goes: the closing handshake, an eviction, the
//! write pass and [`Conns::reap`], the one place a connection leaves the
//! poll and the slab. Every byte is queued here, through
//! [`Conns::enqueue`], [`Conns::enqueue_pong`], [`Conns::deliver`] or
//! [`Conns::broadcast`], where the limit is checked. Connections are
//! marked done and removed after the event batch, never in the middle of
//! one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant};

use slab::Slab;

use log::{debug, warn};

use crate::server::conn::{Close, Conn, Delivered, Due, Flushed, Timeouts};
use crate::server::queue::Out;
use crate::server::stats::{CloseCounts, Stats};
use crate::server::subs::Subs;
use crate::topic::{Compressor, Encoded, Form, Message, MuxFan, Names, Subscription, Topics};
use crate::wire::Shared;
use crate::wire::http::Response;
use crate::wire::mux;
use crate::wire::protocol::{CloseReason, code, encode_close};

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

/// Answers to a multiplexed connection's commands that may wait unsent
/// before it is closed as a command flood. A command is answered at most
/// once per topic it names, and a dashboard reads its answers; a client
/// that keeps sending commands while reading nothing only piles up
/// answers, each of them a queued item.
const COMMAND_FLOOD: usize = 1024;

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
    /// Every connection, keyed by its poll token.
    slab: Slab<Conn>,
    /// The output policy's bounds.
    limits: OutputLimits,
    /// Open connections per client, for `--max-connections-per-ip`.
    per_ip: HashMap<IpAddr, u32>,
    /// The id the next connection gets, for logs.
    next_id: u64,
    /// What this turn still has to do with which connection.
    turn: Turn,
}

/// The lists one turn works through, by slab key. Keys are listed, never
/// acted on at once, so nothing leaves the slab while it is walked.
#[derive(Debug, Default)]
struct Turn {
    /// Connections with output queued this turn, written before the loop
    /// sleeps so several frames leave in one write.
    dirty: Vec<usize>,
    /// Connections marked done, removed at the end of the turn.
    doomed: Vec<usize>,
    /// Connections an enqueue found over their limit, closed before the
    /// write pass.
    over_limit: Vec<usize>,
    /// Connections with input left unread (budget spent, or held back by
    /// backpressure), by key and id, read again after the write pass.
    read_later: Vec<(usize, u64)>,
}

impl Turn {
    /// Lists `conn` (under `key`) for the write pass, and one over
    /// `max_queue` to be closed once the current pass over connections is
    /// done. Takes the connection the caller holds, so a fan-out looks
    /// each subscriber up once.
    fn schedule(&mut self, key: usize, conn: &mut Conn, max_queue: usize) {
        if conn.over_limit(max_queue) {
            self.over_limit.push(key);
        }
        if conn.mark_dirty() {
            self.dirty.push(key);
        }
    }
}

impl Conns {
    pub(super) fn new(limits: OutputLimits) -> Conns {
        Conns {
            slab: Slab::new(),
            limits,
            per_ip: HashMap::new(),
            next_id: 1,
            turn: Turn::default(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(super) fn get(&self, key: usize) -> Option<&Conn> {
        self.slab.get(key)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Conn)> {
        self.slab.iter()
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

    // ----- queueing -----

    /// Queues `out` for connection `key`: the one way any byte is queued
    /// (redis checks its output limit on every append, and so does this).
    /// Returns whether it superseded an older snapshot.
    pub(super) fn enqueue(&mut self, key: usize, out: Out) -> bool {
        let Some(conn) = self.slab.get_mut(key) else {
            return false;
        };
        let superseded = conn.enqueue(out);
        self.turn.schedule(key, conn, self.limits.max_queue);
        superseded
    }

    /// Queues a pong (`json`: the answer to a JSON ping) for connection
    /// `key`, conflated past `MAX_UNSENT_PONGS` of its kind.
    pub(super) fn enqueue_pong(&mut self, key: usize, pong: Shared, json: bool) {
        if let Some(conn) = self.slab.get_mut(key) {
            conn.enqueue_pong(pong, MAX_UNSENT_PONGS, json);
            self.turn.schedule(key, conn, self.limits.max_queue);
        }
    }

    /// Queues an HTTP response; one that ends the exchange closes the
    /// connection once written, for `cause`.
    pub(super) fn respond(&mut self, key: usize, response: Response, cause: Close) {
        self.enqueue(key, Out::Bytes(Shared::from(response.bytes)));
        if response.close
            && let Some(conn) = self.slab.get_mut(key)
        {
            conn.end_http(cause);
        }
    }

    /// Hands a topic's newest snapshot, `encoded` once per form, to each
    /// of its `subscribers`: a clone of the same `Arc`, never a copy,
    /// written at once when the socket has room and nothing is queued
    /// before it. Counts the deliveries, the bytes written, the snapshots
    /// superseded and each one's age when written whole. Closing would
    /// change the subscriber list being walked: a connection over its
    /// limit is listed, and closed after the pass.
    pub(super) fn deliver(
        &mut self,
        subscribers: &[usize],
        encoded: Encoded<'_>,
        published: Instant,
        now: Instant,
        stats: &mut Stats,
    ) {
        let max_queue = self.limits.max_queue;
        stats.deliveries += subscribers.len() as u64;
        for &key in subscribers {
            let Some(conn) = self.slab.get_mut(key) else {
                continue;
            };
            let Some(bytes) = conn.pick(&encoded) else {
                continue;
            };
            let out = Out::Snapshot(bytes, Some(published));
            let (delivered, bytes) = conn.deliver(out, now, &mut stats.latency.ages_at(now));
            stats.bytes_out += bytes as u64;
            if let Delivered::Queued { superseded } = delivered {
                stats.superseded += u64::from(superseded);
                self.turn.schedule(key, conn, max_queue);
            }
        }
    }

    /// Hands a topic's newest snapshot, with its `"topic"`, to each of its
    /// multiplexed subscribers, as [`deliver`](Self::deliver) does for the
    /// others: the same shared bytes, conflated in each queue with that
    /// topic's older snapshot only. Each subscriber notes the seq queued;
    /// an SSE stream ends the event with its own seq vector as `id:`,
    /// naming its topics through `topics`.
    pub(super) fn deliver_mux(
        &mut self,
        fan: &MuxFan<'_>,
        names: Names<'_>,
        now: Instant,
        stats: &mut Stats,
    ) {
        let max_queue = self.limits.max_queue;
        stats.deliveries += fan.subscribers.len() as u64;
        let encoded = fan.encoded();
        for &key in fan.subscribers {
            let Some(conn) = self.slab.get_mut(key) else {
                continue;
            };
            let Some(bytes) = conn.pick_of(fan.topic, &encoded) else {
                continue;
            };
            let Some(subs) = conn.subs() else {
                continue;
            };
            let tail = (subs.form() == Form::Sse).then(|| sse_tail(subs, |id| names.name(id)));
            let out = Out::Mux {
                topic: fan.topic,
                bytes,
                published: Some(fan.published),
                tail,
            };
            let (delivered, bytes) = conn.deliver(out, now, &mut stats.latency.ages_at(now));
            stats.bytes_out += bytes as u64;
            if let Delivered::Queued { superseded } = delivered {
                stats.superseded += u64::from(superseded);
                self.turn.schedule(key, conn, max_queue);
            }
        }
    }

    /// Hands a one-off event to every subscriber, whatever its topic,
    /// encoded for SSE and compressed once each, only if a subscriber
    /// needs it. Counts the deliveries and the bytes written; returns the
    /// subscribers it reached.
    pub(super) fn broadcast(
        &mut self,
        message: &Message,
        compressor: &mut Compressor,
        now: Instant,
        stats: &mut Stats,
    ) -> usize {
        let max_queue = self.limits.max_queue;
        let (mut sse, mut deflated) = (None, None);
        let mut count = 0;
        for (key, conn) in self.slab.iter_mut() {
            if !conn.is_subscriber() {
                continue;
            }
            count += 1;
            let bytes = match conn.form() {
                Some(Form::Sse) => sse.get_or_insert_with(|| message.sse(None)).clone(),
                Some(Form::Deflate) => deflated
                    .get_or_insert_with(|| compressor.compress(message))
                    .as_ref()
                    .unwrap_or(&message.frame)
                    .clone(),
                _ => message.frame.clone(),
            };
            let (delivered, written) =
                conn.deliver(Out::Bytes(bytes), now, &mut stats.latency.ages_at(now));
            stats.bytes_out += written as u64;
            if let Delivered::Queued { .. } = delivered {
                self.turn.schedule(key, conn, max_queue);
            }
        }
        stats.deliveries += count as u64;
        count
    }

    /// Lists connection `key` for the write pass, if it has output the
    /// socket may take now.
    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.slab.get_mut(key)
            && conn.mark_dirty()
        {
            self.turn.dirty.push(key);
        }
    }

    // ----- the output policy -----

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

    /// The close a multiplexed connection gets for a command flood: more
    /// than `COMMAND_FLOOD` answers to its commands unsent. It is closed,
    /// not left unread until its output drains: a WebSocket left unread
    /// would have its pings and its close frame go unread too, and its
    /// output, which it does not read, would only end in a write timeout.
    pub(super) fn command_flood(&self, key: usize) -> Option<(CloseReason, Close)> {
        let conn = self.slab.get(key)?;
        (conn.unsent_replies() > COMMAND_FLOOD).then(|| {
            (
                CloseReason::new(code::POLICY, "command flood"),
                Close::CommandFlood,
            )
        })
    }

    /// The connections an enqueue found over `--max-queue-bytes` that still
    /// are, now that no pass over a subscriber list is under way: each is
    /// to be closed as a slow consumer.
    pub(super) fn take_over_limit(&mut self) -> Vec<usize> {
        let listed = std::mem::take(&mut self.turn.over_limit);
        let max = self.limits.max_queue;
        listed
            .into_iter()
            .filter(|&key| {
                self.slab
                    .get(key)
                    .is_some_and(|c| !c.is_done() && !c.is_closing() && c.over_limit(max))
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
    /// WebSocket gets 1013 Try Again Later, not 1008: it is overload, not a
    /// broken rule, so a client may come back.
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
            Eviction::Close(CloseReason::new(code::TRY_AGAIN_LATER, "slow consumer"))
        } else if conn.is_stream() {
            Eviction::EndStream
        } else {
            Eviction::Finish
        }
    }

    /// A connection whose output is over the limit, or that takes nothing,
    /// leaves the way [`evict`](Self::evict) says.
    pub(super) fn slow_consumer(&mut self, key: usize, cause: Close, topics: &mut Topics) {
        match self.evict(key, cause) {
            Eviction::Close(reason) => self.close_ws(key, &reason, cause, topics),
            Eviction::EndStream => self.end_stream(key, cause, topics),
            Eviction::Finish => self.finish(key, cause, topics),
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

    // ----- reading later -----

    /// Lists connection `key`, with input left unread, to read again after
    /// the write pass.
    pub(super) fn read_later(&mut self, key: usize) {
        if let Some(conn) = self.slab.get(key) {
            self.turn.read_later.push((key, conn.id()));
        }
    }

    /// The connections listed to read again, by key and id: a key may have
    /// been reused since, the id says whose entry it is.
    pub(super) fn take_read_later(&mut self) -> Vec<(usize, u64)> {
        std::mem::take(&mut self.turn.read_later)
    }

    /// Whether a connection listed to read again may be read now: the loop
    /// must not sleep while one is.
    pub(super) fn reads_waiting(&self) -> bool {
        self.turn
            .read_later
            .iter()
            .any(|&(key, _)| self.slab.contains(key) && !self.held_back(key))
    }

    // ----- writing -----

    /// The write pass, before the loop sleeps: closes the connections an
    /// enqueue found over their limit, then writes each listed connection
    /// what its socket takes; what is left waits for a WRITABLE event.
    pub(super) fn flush_dirty(&mut self, now: Instant, topics: &mut Topics, stats: &mut Stats) {
        for key in self.take_over_limit() {
            self.slow_consumer(key, Close::SlowConsumer, topics);
        }
        let mut dirty = std::mem::take(&mut self.turn.dirty);
        for &key in &dirty {
            let Some(conn) = self.slab.get_mut(key) else {
                continue;
            };
            let (flushed, written) = conn.flush(now, &mut stats.latency.ages_at(now));
            stats.bytes_out += written as u64;
            if let Flushed::Failed(e) = flushed {
                debug!("conn={} write failed: {e}", conn.id());
                self.finish(key, Close::Io(e.kind()), topics);
            }
        }
        dirty.clear();
        // Keep the allocation: the next publish needs it again.
        if self.turn.dirty.is_empty() {
            self.turn.dirty = dirty;
        }
    }

    // ----- closing -----

    /// Starts the closing handshake on an open connection: its subscription
    /// goes back, and the close frame replaces whatever has not started.
    pub(super) fn close_ws(
        &mut self,
        key: usize,
        reason: &CloseReason,
        cause: Close,
        topics: &mut Topics,
    ) {
        let Some(conn) = self.slab.get_mut(key) else {
            return;
        };
        if let Some(subs) = conn.close_ws(cause) {
            self.unsubscribe_all(&subs, topics);
            self.enqueue(key, Out::Bytes(Shared::from(encode_close(reason))));
        }
    }

    /// Ends an SSE stream: no close frame in SSE, the connection just ends
    /// once what has started going out is written.
    pub(super) fn end_stream(&mut self, key: usize, cause: Close, topics: &mut Topics) {
        let Some(conn) = self.slab.get_mut(key) else {
            return;
        };
        if let Some(subs) = conn.end_stream(cause) {
            self.unsubscribe_all(&subs, topics);
            self.mark_dirty(key);
        }
    }

    /// A subscription whose signed token reached its `exp` ends as the
    /// client can tell apart from a fault, so it fetches a new token and
    /// reconnects: a WebSocket with 4001 "token expired", an SSE stream
    /// with a last event saying the same, in the form of every other.
    pub(super) fn token_expired(&mut self, key: usize, topics: &mut Topics) {
        let Some(conn) = self.slab.get(key) else {
            return;
        };
        debug!("{} token expired: closing", conn.tag());
        let reason = CloseReason::new(code::TOKEN_EXPIRED, "token expired");
        if conn.is_open() {
            return self.close_ws(key, &reason, Close::TokenExpired, topics);
        }
        if !conn.is_stream() {
            return;
        }
        self.end_stream(key, Close::TokenExpired, topics);
        let data = format!(r#"{{"code":{},"reason":"{}"}}"#, reason.code, reason.reason);
        let last = Message::event(&format!("\"{}\"", mux::CLOSE_EVENT), &data).sse(None);
        self.enqueue(key, Out::Bytes(last));
    }

    /// Marks a connection for removal at the end of the turn.
    pub(super) fn finish(&mut self, key: usize, cause: Close, topics: &mut Topics) {
        let Some(conn) = self.slab.get_mut(key) else {
            return;
        };
        if let Some(subs) = conn.finish(cause) {
            if let Some(subs) = subs {
                self.unsubscribe_all(&subs, topics);
            }
            self.turn.doomed.push(key);
        }
    }

    /// Gives a subscription back to its topic; the subscriber moved into
    /// its place learns its new index.
    pub(super) fn unsubscribe(&mut self, sub: Subscription, topics: &mut Topics) {
        if let Some(moved) = topics.unsubscribe(sub)
            && let Some(conn) = self.slab.get_mut(moved)
        {
            conn.moved_to(sub.topic, sub.index);
        }
    }

    /// Gives back every subscription a leaving connection held.
    fn unsubscribe_all(&mut self, subs: &Subs, topics: &mut Topics) {
        for sub in subs.subscriptions() {
            self.unsubscribe(sub, topics);
        }
    }

    /// Removes the connections marked done, each counted in `closes` by
    /// its cause.
    pub(super) fn reap(&mut self, closes: &mut CloseCounts) {
        while let Some(key) = self.turn.doomed.pop() {
            if let Some(cause) = self.remove(key) {
                closes.count(cause);
            }
        }
    }

    /// The one place a connection leaves the poll and the registry. Its
    /// cause is logged here, once, and returned to be counted.
    fn remove(&mut self, key: usize) -> Option<Close> {
        // Closing the descriptor (dropping `conn`) takes it out of the
        // epoll set: no `EPOLL_CTL_DEL` is needed, a syscall per close saved.
        let conn = self.slab.try_remove(key)?;
        let client = client_of(conn.peer().ip());
        if let Some(count) = self.per_ip.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&client);
            }
        }
        let cause = conn.cause().unwrap_or(Close::PeerGone);
        debug!("{} closed: {cause}", conn.tag());
        Some(cause)
    }
}

// Proof for the indexing: a slab key is used only while its entry is
// there: keys come from poll tokens and the registry's own lists, each
// checked with `get` (and the connection's id) first, and an entry leaves
// the slab only in `reap`, after every event of the turn is handled.
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

/// The end of a multiplexed SSE event: its `id:`, the stream's seq vector
/// (every topic it has been sent, at the seq sent), which a browser's
/// reconnect brings back as `Last-Event-ID`.
pub(super) fn sse_tail<'n>(subs: &Subs, name: impl Fn(usize) -> &'n str) -> Shared {
    let vector = subs.vector(name);
    Shared::from(format!("id: {vector}\n\n").into_bytes())
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
    use crate::server::queue::ITEM_OVERHEAD;
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
            delta: None,
            mux: false,
        };
        conns[key].open(sub, now);
        (conns, key, peer)
    }

    const TIMEOUTS: Timeouts = Timeouts {
        ping_interval: Duration::from_secs(3600),
        handshake: Duration::from_secs(10),
    };

    /// Output nobody takes for `--write-timeout` is due as a write timeout,
    /// and the policy closes that WebSocket with 1013.
    #[test]
    fn stalled_output_is_a_write_timeout_closed_with_1013() {
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
            Eviction::Close(reason) => assert_eq!(reason.code, code::TRY_AGAIN_LATER),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Past `--max-queue-bytes` a connection is listed to close; under it,
    /// it is not. Each item counts its overhead beside its bytes, so many
    /// tiny ones reach the limit as well as one big one.
    #[test]
    fn a_queue_over_the_limit_is_listed_to_close() {
        let now = Instant::now();
        let limits = OutputLimits {
            max_queue: 1000,
            write_timeout: Duration::from_secs(30),
        };
        let (mut conns, key, _peer) = one_open(limits, now);
        let one = 1000 - ITEM_OVERHEAD;
        conns.enqueue(key, Out::Bytes(Shared::from(vec![b'x'; one])));
        assert!(conns.take_over_limit().is_empty());
        conns.enqueue(key, Out::Bytes(Shared::from(vec![b'x'; 1])));
        assert_eq!(conns.take_over_limit(), vec![key]);

        let (mut conns, key, _peer) = one_open(limits, now);
        let tiny = 1000 / (ITEM_OVERHEAD + 1);
        for _ in 0..tiny {
            conns.enqueue(key, Out::Bytes(Shared::from(&b"x"[..])));
        }
        assert!(conns.take_over_limit().is_empty());
        conns.enqueue(key, Out::Bytes(Shared::from(&b"x"[..])));
        assert_eq!(conns.take_over_limit(), vec![key]);
    }

    /// Opens connection `key` of `conns` as multiplexed on `n` topics.
    fn open_mux(conns: &mut Conns, key: usize, n: usize, now: Instant) {
        let mut subs = Subs::mux(Form::Frame, None);
        for topic in 0..n {
            let sub = Subscription {
                topic,
                index: 0,
                form: Form::Frame,
                delta: None,
                mux: true,
            };
            subs.push(sub, None);
        }
        conns[key].open(subs, now);
    }

    /// A multiplexed connection's `--max-queue-bytes` is per topic for its
    /// snapshots only: with 32 topics it may hold a snapshot of each as big
    /// as a per-topic route's, but events, pongs and command answers (here
    /// answers) only `--max-queue-bytes` in all, each counted with its
    /// overhead.
    #[test]
    fn a_multiplexed_queue_scales_only_for_snapshots() {
        let now = Instant::now();
        let limits = OutputLimits {
            max_queue: 1000,
            write_timeout: Duration::from_secs(30),
        };
        // 32 topics do not make room for other bytes.
        let (mut conns, key, _peer) = one_open(limits, now);
        open_mux(&mut conns, key, 32, now);
        conns.enqueue(
            key,
            Out::Bytes(Shared::from(vec![b'x'; 1000 - ITEM_OVERHEAD])),
        );
        assert!(conns.take_over_limit().is_empty());
        conns.enqueue(key, Out::Bytes(Shared::from(&b"x"[..])));
        assert_eq!(conns.take_over_limit(), vec![key]);

        // But for a snapshot of each, and answers beside them up to the
        // limit.
        let (mut conns, key, _peer) = one_open(limits, now);
        open_mux(&mut conns, key, 32, now);
        let snapshot = Shared::from(vec![b's'; 1000 - ITEM_OVERHEAD]);
        for topic in 0..32 {
            let out = Out::Mux {
                topic,
                bytes: snapshot.clone(),
                published: None,
                tail: None,
            };
            conns.enqueue(key, out);
        }
        assert!(conns.take_over_limit().is_empty());
        let answer = Shared::from(vec![b'r'; 100 - ITEM_OVERHEAD]);
        for _ in 0..10 {
            conns.enqueue(key, Out::Reply(answer.clone()));
        }
        assert!(conns.take_over_limit().is_empty());
        conns.enqueue(key, Out::Reply(answer.clone()));
        assert_eq!(conns.take_over_limit(), vec![key]);

        // And a snapshot past its topics' share is over as well.
        let (mut conns, key, _peer) = one_open(limits, now);
        open_mux(&mut conns, key, 2, now);
        let out = Out::Mux {
            topic: 0,
            bytes: Shared::from(vec![b's'; 2001 - ITEM_OVERHEAD]),
            published: None,
            tail: None,
        };
        conns.enqueue(key, out);
        assert_eq!(conns.take_over_limit(), vec![key]);
    }

    /// A multiplexed client sending commands while it reads nothing is
    /// closed with 1008 "command flood" once more than `COMMAND_FLOOD`
    /// answers wait unsent, even when every answer fits under its queue
    /// limit; up to that many, it is not.
    #[test]
    fn commands_whose_answers_pile_up_are_a_command_flood() {
        use crate::server::multiplex::Multiplex;
        use crate::topic::{Preset, Rules, schema::Validator};

        let now = Instant::now();
        let rules = std::sync::Arc::new(Rules::new(Preset::Adw, &[], false, Validator::off()));
        let mut topics = Topics::new(rules, Preset::Adw, &[], 100, "2026-11-26T02:15:00Z");
        let limits = OutputLimits {
            max_queue: usize::MAX,
            write_timeout: Duration::from_secs(30),
        };
        let (mut conns, key, _peer) = one_open(limits, now);
        open_mux(&mut conns, key, 1, now);
        // Something unsent ahead of the answers, so none of them starts.
        conns.enqueue(key, Out::Bytes(Shared::from(vec![b'x'; 64 << 20])));
        let _ = conns[key].flush(now, &mut |_| {});
        let mut mux = Multiplex {
            conns: &mut conns,
            topics: &mut topics,
            max_topics: 32,
        };
        for _ in 0..COMMAND_FLOOD {
            mux.command(key, Err("not a command".into()));
        }
        assert!(conns.command_flood(key).is_none());
        let mut mux = Multiplex {
            conns: &mut conns,
            topics: &mut topics,
            max_topics: 32,
        };
        mux.command(key, Err("not a command".into()));
        let (reason, cause) = conns.command_flood(key).expect("a flood");
        assert_eq!(
            (reason.code, reason.reason, cause),
            (code::POLICY, "command flood", Close::CommandFlood)
        );
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
            conns.enqueue_pong(key, Shared::from(b"pong".to_vec()), false);
        }
        assert!(conns.ping_flood(key).is_none());
        conns.enqueue_pong(key, Shared::from(b"pong".to_vec()), false);
        let (reason, cause) = conns.ping_flood(key).expect("a flood");
        assert_eq!((reason.code, cause), (code::POLICY, Close::PingFlood));
        assert!(matches!(conns[key].phase(), Phase::Open { .. }));
    }

    /// Adds an open WebSocket to `conns` subscribed as `sub`; returns its
    /// key and the peer's end, which reads nothing unless told to.
    fn add_open(
        conns: &mut Conns,
        sub: Subscription,
        now: Instant,
    ) -> (usize, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, addr) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let stream = mio::net::TcpStream::from_std(ours);
        let (key, _) = conns.insert(|id| Conn::new(id, addr, stream, now, false));
        conns[key].open(sub, now);
        (key, peer)
    }

    /// A fan-out through the registry hands every subscriber the same
    /// bytes (a clone of one `Arc`, never a copy), writes through to one
    /// with room, queues for one whose output is blocked, counts each
    /// delivery and the bytes written, and lists the one its snapshot
    /// put over `--max-queue-bytes` to be closed after the pass.
    #[test]
    fn a_fan_out_shares_one_frame_counts_it_and_lists_one_over_its_limit() {
        let now = Instant::now();
        let mut conns = Conns::new(OutputLimits {
            max_queue: 100,
            write_timeout: Duration::from_secs(30),
        });
        let sub = |index| Subscription {
            topic: 0,
            index,
            form: Form::Frame,
            delta: None,
            mux: false,
        };
        let (free, _free_peer) = add_open(&mut conns, sub(0), now);
        let (blocked, _blocked_peer) = add_open(&mut conns, sub(1), now);
        conns.enqueue(blocked, Out::Bytes(Shared::from(vec![b'x'; 64 << 20])));
        let _ = conns[blocked].flush(now, &mut |_| {});
        assert_eq!(conns.take_over_limit(), vec![blocked]);
        let before = conns[blocked].pending_bytes();

        let frame = Shared::from(vec![b'y'; 50]);
        let encoded = Encoded {
            frame: &frame,
            deflated: None,
            sse: None,
            seq: 1,
            deltas: None,
        };
        let mut stats = Stats::default();
        conns.deliver(&[free, blocked], encoded, now, now, &mut stats);

        assert_eq!(stats.deliveries, 2);
        assert_eq!(stats.bytes_out, 50, "written through to the free one");
        assert_eq!(conns[free].pending_bytes(), 0);
        assert_eq!(conns[blocked].pending_bytes(), before + 50);
        // Ours and the blocked subscriber's queue: shared, not copied.
        assert_eq!(std::sync::Arc::strong_count(&frame), 2);
        assert_eq!(conns.take_over_limit(), vec![blocked]);
    }

    /// The registry decides what an evicted connection becomes and makes
    /// it so: an open WebSocket gives its subscription back, is closing,
    /// and its peer gets a 1013 "slow consumer" close frame.
    #[test]
    fn an_evicted_websocket_gives_its_subscription_back_and_gets_1013() {
        use crate::topic::{Preset, Rules, schema::Validator};
        use std::io::Read;

        let now = Instant::now();
        let rules = std::sync::Arc::new(Rules::new(Preset::Adw, &[], false, Validator::off()));
        let mut topics = Topics::new(rules, Preset::Adw, &[], 100, "2026-11-26T02:15:00Z");
        let id = topics.find("queue").unwrap();
        let mut conns = Conns::new(OutputLimits {
            max_queue: usize::MAX,
            write_timeout: Duration::from_secs(30),
        });
        let key = conns.next_key();
        let (sub, _) = topics.subscribe(id, key, Form::Frame, None);
        let (key, mut peer) = add_open(&mut conns, sub, now);
        assert_eq!(topics.subscriptions(), 1);

        conns.slow_consumer(key, Close::SlowConsumer, &mut topics);

        assert!(conns[key].is_closing(), "{:?}", conns[key].phase());
        assert_eq!(topics.subscriptions(), 0);
        let mut stats = Stats::default();
        conns.flush_dirty(now, &mut topics, &mut stats);
        let close = encode_close(&CloseReason::new(code::TRY_AGAIN_LATER, "slow consumer"));
        let mut got = vec![0; close.len()];
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, close);
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
