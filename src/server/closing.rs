//! Writing, closing and the clock: the write pass before the loop sleeps,
//! the closing handshake, slow consumers, timers, shutdown, and
//! [`EventLoop::remove`], the one place a connection leaves the poll and
//! the slab. Connections are marked done and removed after the event batch,
//! never in the middle of one.

// Proof for the indexing below: a slab key is used only while its entry is
// there: keys come from poll tokens and the loop's own lists, each checked
// with `get` (and the connection's id) first, and an entry leaves the slab
// only in `remove`, after every event of the turn is handled.
#![allow(clippy::indexing_slicing)]

use std::time::Instant;

use log::{debug, info};

use super::EventLoop;
use crate::server::conn::{Close, Due, Flushed, Phase};
use crate::server::conns::Eviction;
use crate::server::queue::Out;
use crate::topic::Message;
use crate::wire::Shared;
use crate::wire::http;
use crate::wire::protocol::{CloseReason, code, encode_close};

impl EventLoop {
    // ----- writing -----

    pub(super) fn mark_dirty(&mut self, key: usize) {
        if self.conns[key].mark_dirty() {
            self.conns.dirty.push(key);
        }
    }

    pub(super) fn flush_dirty(&mut self, now: Instant) {
        self.close_over_limit();
        let mut dirty = std::mem::take(&mut self.conns.dirty);
        for &key in &dirty {
            if let Some(cause) = self.flush(key, now) {
                self.finish(key, cause);
            }
        }
        dirty.clear();
        // Keep the allocation: the next publish needs it again.
        if self.conns.dirty.is_empty() {
            self.conns.dirty = dirty;
        }
    }

    /// Writes what the socket takes; what is left waits for a WRITABLE
    /// event. Returns the cause when the connection is done.
    fn flush(&mut self, key: usize, now: Instant) -> Option<Close> {
        let conn = self.conns.get_mut(key)?;
        let (flushed, written) = conn.flush(now, &mut self.stats.latency.ages_at(now));
        self.stats.bytes_out += written as u64;
        if let Flushed::Failed(e) = flushed {
            debug!("conn={} write failed: {e}", conn.id());
            return Some(Close::Io(e.kind()));
        }
        None
    }

    // ----- closing -----

    /// Starts the closing handshake on an open connection: its subscription
    /// goes back, and the close frame replaces whatever has not started.
    pub(super) fn close_ws(&mut self, key: usize, reason: &CloseReason, cause: Close) {
        if let Some(sub) = self.conns[key].close_ws(cause) {
            self.unsubscribe(sub);
            self.enqueue(key, Out::Bytes(Shared::from(encode_close(reason))));
        }
    }

    /// Ends an SSE stream: no close frame in SSE, the connection just ends
    /// once what has started going out is written.
    pub(super) fn end_stream(&mut self, key: usize, cause: Close) {
        if let Some(sub) = self.conns[key].end_stream(cause) {
            self.unsubscribe(sub);
            self.mark_dirty(key);
        }
    }

    /// A subscription whose signed token reached its `exp` ends as the
    /// client can tell apart from a fault, so it fetches a new token and
    /// reconnects: a WebSocket with 4001 "token expired", an SSE stream
    /// with a last event saying the same, in the form of every other.
    fn token_expired(&mut self, key: usize) {
        debug!("{} token expired: closing", self.conns[key].tag());
        let reason = CloseReason::new(code::TOKEN_EXPIRED, "token expired");
        if self.conns[key].is_open() {
            return self.close_ws(key, &reason, Close::TokenExpired);
        }
        if !self.conns[key].is_stream() {
            return;
        }
        self.end_stream(key, Close::TokenExpired);
        let data = format!(r#"{{"code":{},"reason":"{}"}}"#, reason.code, reason.reason);
        let last = Message::event(r#""close""#, &data).sse(None);
        self.enqueue(key, Out::Bytes(last));
    }

    /// Closes the connections an enqueue found over `--max-queue-bytes`,
    /// now that no pass over a subscriber list is under way.
    fn close_over_limit(&mut self) {
        for key in self.conns.take_over_limit() {
            self.slow_consumer(key, Close::SlowConsumer);
        }
    }

    fn unsubscribe(&mut self, sub: crate::topic::Subscription) {
        if let Some(moved) = self.topics.unsubscribe(sub) {
            self.conns[moved].moved_to(sub.index);
        }
    }

    /// A connection whose output is over the limit, or that takes nothing,
    /// leaves the way the registry's output policy says.
    pub(super) fn slow_consumer(&mut self, key: usize, cause: Close) {
        match self.conns.evict(key, cause) {
            Eviction::Close(reason) => self.close_ws(key, &reason, cause),
            Eviction::EndStream => self.end_stream(key, cause),
            Eviction::Finish => self.finish(key, cause),
        }
    }

    /// Marks a connection for removal at the end of the turn.
    pub(super) fn finish(&mut self, key: usize, cause: Close) {
        if let Some(sub) = self.conns[key].finish(cause) {
            if let Some(sub) = sub {
                self.unsubscribe(sub);
            }
            self.conns.doomed.push(key);
        }
    }

    pub(super) fn reap(&mut self) {
        while let Some(key) = self.conns.doomed.pop() {
            self.remove(key);
        }
    }

    /// The one place a connection leaves the poll and the slab. Its cause
    /// is counted and logged here, once.
    fn remove(&mut self, key: usize) {
        // Closing the descriptor (dropping `conn`) takes it out of the
        // epoll set: no `EPOLL_CTL_DEL` is needed, a syscall per close saved.
        let Some(conn) = self.conns.remove(key) else {
            return;
        };
        let cause = conn.cause().unwrap_or(Close::PeerGone);
        self.stats.closes.count(cause);
        debug!("{} closed: {cause}", conn.tag());
    }

    // ----- timers -----

    /// Runs every connection's timers: pings, and the timeouts that close.
    pub(super) fn sweep(&mut self, now: Instant) {
        // Acted on after the pass, which holds the connections.
        for (key, verdict) in self.conns.due(now, &self.timeouts) {
            match verdict {
                Due::Ping => self.enqueue(key, Out::Bytes(self.ping_frame.clone())),
                Due::KeepAlive => {
                    let comment = Shared::from(http::EVENT_STREAM_KEEPALIVE);
                    self.enqueue(key, Out::Bytes(comment));
                }
                Due::RequestTimeout => {
                    let why = "request not completed within --handshake-timeout";
                    let response = http::error(http::REQUEST_TIMEOUT, why, "", true);
                    self.respond(key, response, Close::HandshakeTimeout);
                }
                Due::HandshakeTimeout => self.finish(key, Close::HandshakeTimeout),
                Due::WriteTimeout => self.slow_consumer(key, Close::WriteTimeout),
                Due::PingTimeout => {
                    debug!("{} silent for two ping intervals", self.conns[key].tag());
                    let reason = CloseReason::new(code::GOING_AWAY, "ping timeout");
                    self.close_ws(key, &reason, Close::PingTimeout);
                }
                // The cause it was closing for is kept.
                Due::LingerOver => self.finish(key, Close::PeerGone),
                Due::TokenExpired => self.token_expired(key),
            }
        }
    }

    // ----- shutdown -----

    /// Stops accepting and starts closing everyone: 1001 to WebSockets, 503
    /// to a request under way, and idle HTTP connections just go.
    pub(super) fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        info!("shutting down: closing {} connections", self.conns.len());
        self.shutdown_deadline = Some(now + self.config.shutdown_timeout);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &self.conns[key];
            match conn.phase() {
                Phase::Open { .. } => {
                    let reason = CloseReason::new(code::GOING_AWAY, "going away");
                    self.close_ws(key, &reason, Close::Shutdown);
                }
                Phase::Stream { .. } => self.end_stream(key, Close::Shutdown),
                Phase::Http { reader, .. }
                    if conn.pending_bytes() == 0
                        && !conn.has_input()
                        && !reader.is_reading_body() =>
                {
                    self.finish(key, Close::Shutdown)
                }
                Phase::Http { .. } => {
                    let response = http::error(http::UNAVAILABLE, "shutting down", "", true);
                    self.respond(key, response, Close::Shutdown);
                }
                Phase::Closing { .. } | Phase::Draining { .. } | Phase::Done { .. } => {}
            }
        }
    }
}
