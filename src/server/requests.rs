//! The loop's other half: reading each connection until `WouldBlock`
//! within its budget, decoding its frames or requests, and carrying out
//! what a request asks (see `endpoints.rs`): a subscription, an SSE
//! stream, a publish or broadcast (handed to `publishing.rs`), an answer.
//! A bug in a handler or a decoder costs its own connection only.

// Proof for the indexing below: a slab key is used only while its entry is
// there: keys come from poll tokens and the registry's own lists, each
// checked with `get` (and the connection's id) first, and an entry leaves
// the slab only in `Conns::reap`, after every event of the turn is handled.
#![allow(clippy::indexing_slicing)]

use std::io;
use std::time::Instant;

use log::{debug, warn};

use super::{EventLoop, SCRATCH_SIZE};
use crate::server::conn::{Close, Identity, Received, Reply};
use crate::server::endpoints::{self, Action, Answer, HealthView, Reader};
use crate::server::metrics;
use crate::server::multiplex::Multiplex;
use crate::server::queue::Out;
use crate::server::subs::Entry;
use crate::server::tls;
use crate::topic::delta::DeltaFormat;
use crate::topic::{Form, Subscription};
use crate::wire::Shared;
use crate::wire::http::{self, Head, Next, Purpose, Response, Route};
use crate::wire::protocol;

/// Bytes one connection may have read for it per turn: a client flooding
/// frames or requests delays the others by at most this much work.
const READ_BUDGET: usize = 4 * SCRATCH_SIZE;

/// Runs a pure request handler so that a bug in it (a panic) costs only
/// this request: it is answered 500 and its connection closed, and the
/// loop, which every client shares, carries on. The handlers only read the
/// loop's state, so nothing is left half-changed by an unwinding one.
fn contained<T>(head: &Head, handler: impl FnOnce() -> T) -> Result<T, Response> {
    contain(handler).map_err(|what| {
        log::error!(
            "the handler of {} {} panicked ({what}); answered 500",
            head.method,
            head.path
        );
        http::error(http::INTERNAL_ERROR, "internal error", "", true)
    })
}

/// The seq a subscriber may resume from: none for one taking deltas, which
/// always starts from a whole snapshot. A seq only counts within one run
/// of the server (a restart without Redis counts from 1 again), and a
/// patch against another run's value may still apply, leaving the client
/// wrong for good; a whole snapshot heals any such mix-up at once.
pub(super) fn resumable(since: Option<u64>, delta: Option<DeltaFormat>) -> Option<u64> {
    since.filter(|_| delta.is_none())
}

/// Runs a step that may panic, and turns a panic into its message. Around
/// a connection's own steps (decoding its frames, reading its request) it
/// makes a bug cost that connection alone: those steps change nothing but
/// the connection, which is closed after, so nothing they left half-done
/// is used again. A library call that asserts on what a client or the
/// configuration chose (`clamp` once did) lands here, not in `main`.
/// A per-topic subscription and the seq of its topic it has, kept only
/// for a `?delta=` one (see `Entry::queued`): `current`, when its snapshot
/// is queued (`sent`) or `since` names it; else none.
fn per_topic(sub: Subscription, since: Option<u64>, current: Option<u64>, sent: bool) -> Entry {
    let has = (since == current || sent).then_some(current).flatten();
    Entry {
        sub,
        queued: has.filter(|_| sub.delta.is_some()),
    }
}

fn contain<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

impl EventLoop {
    // ----- reading -----

    /// Reads until `WouldBlock` or a short read, handling what arrives as it
    /// comes, within this turn's budget. Returns the cause when the
    /// connection is done; the caller finishes it. A connection left with
    /// bytes unread (budget spent, or HTTP responses piling up) is listed to
    /// read again later.
    ///
    /// A read that did not fill the buffer emptied the socket: bytes that
    /// come later raise a new edge, so the `recv` that would only say
    /// `EAGAIN` is skipped (a syscall per request, as tokio does). Unless
    /// the peer's end was reported (`closed`): its EOF must still be read.
    pub(super) fn read(&mut self, key: usize, now: Instant, closed: bool) -> Option<Close> {
        let mut budget = READ_BUDGET;
        loop {
            if self.conns[key].is_done() {
                return None;
            }
            if budget == 0 || self.conns.held_back(key) {
                self.stats.reads_deferred += u64::from(budget == 0);
                self.conns.read_later(key);
                return None;
            }
            let conn = &mut self.conns[key];
            match conn.receive(&mut self.scratch, now) {
                Received::Data(n) => {
                    budget = budget.saturating_sub(n);
                    self.process_input(key, now);
                    // Held back, it must be listed to finish its input later.
                    if n < self.scratch.len() && !closed && !self.conns.held_back(key) {
                        return None;
                    }
                }
                // Dropped bytes cost a read all the same: a peer that keeps
                // writing to a closing connection or a stream must not hold
                // the loop.
                Received::Ignored(n) => budget = budget.saturating_sub(n),
                Received::WouldBlock => return None,
                Received::Eof => return Some(Close::PeerGone),
                // Answered in plain text, which is what the client speaks.
                Received::NotTls => {
                    debug!("{} sent plain text to the TLS port", conn.tag());
                    let response = http::error(http::BAD_REQUEST, tls::PLAIN_REFUSAL, "", true);
                    self.respond(key, response, Close::HttpDone);
                    return None;
                }
                // A reset is the peer leaving abruptly, not a fault here.
                Received::Failed(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Some(Close::PeerGone);
                }
                Received::Failed(e) => {
                    debug!("conn={} read failed: {e}", conn.id());
                    return Some(Close::Io(e.kind()));
                }
            }
        }
    }

    /// Reads again the connections a previous read left with input unread,
    /// those no longer held back first in line. One still waiting for its
    /// budget is listed again (and the loop does not sleep while any is).
    pub(super) fn read_again(&mut self, now: Instant) {
        let waiting = self.conns.take_read_later();
        for (key, id) in waiting {
            // A slab key may have been reused: the id says whose entry it is.
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            if conn.id() != id || conn.is_done() {
                continue;
            }
            if self.conns.held_back(key) {
                self.conns.read_later(key);
                continue;
            }
            // Input already read may hold complete requests.
            self.process_input(key, now);
            if let Some(cause) = self.read(key, now, true) {
                self.conns.finish(key, cause, &mut self.topics);
            }
        }
    }

    /// Handles every complete request or frame the input holds, until a
    /// pipelining client's answers pile up.
    fn process_input(&mut self, key: usize, now: Instant) {
        // A request admitted with its whole body read may be complete with
        // no input left: reading it again finishes it.
        while (self.conns[key].has_input() || self.conns[key].is_reading_body())
            && !self.conns.held_back(key)
        {
            let conn = &mut self.conns[key];
            if conn.is_open() {
                let limits = protocol::Limits {
                    max_message: self.config.max_client_message,
                    max_fragments: self.config.max_client_fragments,
                };
                let frames = match contain(|| conn.read_frames(limits)) {
                    Ok(frames) => frames,
                    Err(what) => return self.input_panicked(key, &what),
                };
                for reply in frames.replies {
                    match reply {
                        Reply::Pong(pong) => self.conns.enqueue_pong(key, pong, false),
                        Reply::Text(pong) => self.conns.enqueue_pong(key, pong, true),
                    }
                }
                for command in frames.commands {
                    self.multiplex().command(key, command);
                }
                let close = frames
                    .close
                    .or_else(|| self.conns.ping_flood(key))
                    .or_else(|| self.conns.command_flood(key));
                if let Some((reason, cause)) = close {
                    self.conns.close_ws(key, &reason, cause, &mut self.topics);
                }
                return;
            }
            let next = match contain(|| conn.next_request(now)) {
                Ok(next) => next,
                Err(what) => return self.input_panicked(key, &what),
            };
            match next {
                Next::Partial => return,
                Next::Continue => {
                    let bytes = Shared::from(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]);
                    self.conns.enqueue(key, Out::Bytes(bytes));
                    return;
                }
                Next::Refused(response) => return self.respond(key, response, Close::HttpDone),
                Next::Head(head, len) => {
                    if let Err(response) = self.admit_request(key, head, len) {
                        return self.respond(key, response, Close::HttpDone);
                    }
                }
                Next::Complete(head, route, body) => {
                    self.handle_request(key, &head, route, &body, now)
                }
            }
            if self.conns[key].is_closing() {
                return;
            }
        }
    }

    /// Ends a connection whose own input step panicked (a bug): a
    /// WebSocket is closed with 1011, an HTTP request answered 500, and
    /// every other connection carries on. Counted as `internal_error`.
    fn input_panicked(&mut self, key: usize, what: &str) {
        let conn = &self.conns[key];
        let (id, peer, open) = (conn.id(), conn.peer(), conn.is_open());
        if open {
            warn!("conn={id} peer={peer} panicked decoding its frames ({what}); closed with 1011");
            let reason = protocol::CloseReason::new(protocol::code::INTERNAL, "internal error");
            self.conns
                .close_ws(key, &reason, Close::Internal, &mut self.topics);
        } else {
            warn!("conn={id} peer={peer} panicked reading its request ({what}); answered 500");
            let response = http::error(http::INTERNAL_ERROR, "internal error", "", true);
            self.respond(key, response, Close::Internal);
        }
    }

    /// Routes and authorizes a request's head; only if it is let in is its
    /// body read.
    fn admit_request(&mut self, key: usize, head: Box<Head>, len: usize) -> Result<(), Response> {
        let reserve = self.conns[key].in_reserve();
        let (topics, access) = (&self.topics, &self.access);
        let admitted = contained(&head, || endpoints::admit(&head, topics, access, reserve));
        let (route, grant) = match admitted {
            Ok(Ok(admitted)) => admitted,
            Ok(Err(response)) => {
                let purpose = http::route(&head.method, &head.path).purpose();
                self.count_refusal(purpose, &response);
                return Err(response);
            }
            Err(response) => {
                self.stats.handler_panics += 1;
                return Err(response);
            }
        };
        let identity = grant.map(|grant| Identity {
            expires: grant.expires_at(Instant::now()),
            grant,
        });
        self.conns[key].set_identity(identity);
        let max_body = self.config.max_publish_bytes;
        // Only publish and broadcast take a body, so only they meet its limit.
        self.conns[key]
            .admit(head, len, route, max_body)
            .inspect_err(|_| self.stats.refused_publishes.count(413))
    }

    /// Does what a complete request asks (see [`endpoints`]).
    fn handle_request(&mut self, key: usize, head: &Head, route: Route, body: &[u8], now: Instant) {
        let shutting_down = self.stage.is_stopping();
        let answer = Answer {
            close: !head.keep_alive || shutting_down,
            head_only: head.method == "HEAD",
        };
        let purpose = route.purpose();
        let (topics, access) = (&self.topics, &self.access);
        let reader = Reader {
            grant: self.conns[key].grant(),
            max_topics: self.config.max_topics_per_connection,
        };
        let action = contained(head, || {
            endpoints::handle(head, route, body, topics, access, reader, shutting_down)
        });
        let action = action.unwrap_or_else(|response| {
            self.stats.handler_panics += 1;
            Action::Respond(response)
        });
        let response = match action {
            Action::Respond(response) => response,
            Action::Subscribe {
                topic,
                accept,
                since,
                delta,
            } => {
                let deflate = self.config.compression && head.deflate;
                let form = if deflate { Form::Deflate } else { Form::Frame };
                return self.subscribe(key, &topic, &accept, since, (form, delta), now);
            }
            Action::Stream {
                topic,
                since,
                delta,
                origin,
            } => return self.stream(key, &topic, since, delta, origin.as_deref(), now),
            many @ (Action::SubscribeMany { .. } | Action::StreamMany { .. }) => {
                return self.open_many(key, many, head.deflate, now);
            }
            Action::Publish { topic, data } => {
                let (publishing, mut reach) = self.publishing();
                // Under --redis, answered once Redis has ordered it.
                match publishing.publish_request(key, &topic, &data, answer, &mut reach) {
                    Some(response) => response,
                    None => return,
                }
            }
            Action::Broadcast { type_json, data } => {
                let (publishing, mut reach) = self.publishing();
                let delivered = publishing.send_event(type_json.clone(), data, &mut reach, now);
                endpoints::broadcasted(&type_json, delivered, answer.close)
            }
            Action::Health { details } => endpoints::health(&self.health_view(), answer, details),
            Action::Metrics => self.metrics(answer),
        };
        self.count_refusal(purpose, &response);
        self.respond(key, response, Close::HttpDone);
    }

    /// What a multiplexed connection's opening or commands change.
    fn multiplex(&mut self) -> Multiplex<'_> {
        Multiplex {
            conns: &mut self.conns,
            topics: &mut self.topics,
            max_topics: self.config.max_topics_per_connection,
        }
    }

    /// Opens a multiplexed connection the endpoint accepted (`many`, a
    /// `SubscribeMany` or a `StreamMany`); `deflate`: the client offered
    /// permessage-deflate.
    fn open_many(&mut self, key: usize, many: Action, deflate: bool, now: Instant) {
        let deflate = self.config.compression && deflate;
        let opened = match many {
            Action::SubscribeMany {
                topics,
                accept,
                since,
                delta,
            } => self.multiplex().subscribe_many(
                key,
                &topics,
                &since,
                &accept,
                (deflate, delta),
                now,
            ),
            Action::StreamMany {
                topics,
                since,
                delta,
                origin,
            } => {
                self.multiplex()
                    .stream_many(key, &topics, &since, (origin.as_deref(), delta), now)
            }
            _ => return,
        };
        self.opened(key, opened);
    }

    /// Counts a multiplexed connection opened, or answers its refusal.
    fn opened(&mut self, key: usize, opened: Result<(), Response>) {
        match opened {
            Ok(()) => self.stats.subscribed += 1,
            Err(response) => self.respond(key, response, Close::HttpDone),
        }
    }

    /// Counts a refused publish by reason, or a rejected subscription.
    fn count_refusal(&mut self, purpose: Purpose, response: &Response) {
        let status = response.status.0;
        if status < 400 {
            return;
        }
        match purpose {
            Purpose::Publish => self.stats.refused_publishes.count(status),
            Purpose::Subscribe => self.stats.rejected_subscriptions += 1,
            Purpose::Other => {}
        }
    }

    /// Queues a response; one that ends the exchange closes the connection
    /// once written, for `cause`.
    fn respond(&mut self, key: usize, response: Response, cause: Close) {
        self.interval.note(&response);
        self.conns.respond(key, response, cause);
    }

    /// Completes an upgrade the endpoint accepted: the 101 and the snapshot
    /// leave in the same write, so the client never waits. A client that
    /// says it has the topic's current `seq` (`?since=`) gets no resend;
    /// one that agreed to permessage-deflate (`Form::Deflate`) gets
    /// compressed frames, and one that asked for deltas gets them after
    /// its first snapshot.
    fn subscribe(
        &mut self,
        key: usize,
        name: &str,
        accept: &str,
        since: Option<u64>,
        (form, delta): (Form, Option<DeltaFormat>),
        now: Instant,
    ) {
        let id = match self.topics.find_or_open(name) {
            Ok(id) => id,
            Err(e) => return self.respond(key, endpoints::no_room(&e, true), Close::HttpDone),
        };
        let current = Some(self.topics.get(id).seq());
        let since = resumable(since, delta);
        let (sub, snapshot) = self.topics.subscribe(id, key, form, delta);
        let entry = per_topic(sub, since, current, snapshot.is_some());
        let snapshot = snapshot.filter(|_| since != current);
        self.conns[key].open(entry, now);
        let deflate = form == Form::Deflate;
        let switching = Shared::from(http::switching_protocols(accept, deflate));
        self.conns.enqueue(key, Out::Bytes(switching));
        if let Some(snapshot) = snapshot {
            self.conns.enqueue(key, Out::Snapshot(snapshot, None));
        }
        debug!("{} subscribed to {name}", self.conns[key].tag());
        self.stats.subscribed += 1;
    }

    /// Starts an SSE stream the endpoint accepted: the response head and
    /// the snapshot as its first event (none if `since` is the topic's
    /// current seq, as `Last-Event-ID` says after a reconnect).
    fn stream(
        &mut self,
        key: usize,
        name: &str,
        since: Option<u64>,
        delta: Option<DeltaFormat>,
        origin: Option<&str>,
        now: Instant,
    ) {
        let id = match self.topics.find_or_open(name) {
            Ok(id) => id,
            Err(e) => return self.respond(key, endpoints::no_room(&e, true), Close::HttpDone),
        };
        let current = Some(self.topics.get(id).seq());
        let since = resumable(since, delta);
        let (sub, snapshot) = self.topics.subscribe(id, key, Form::Sse, delta);
        let entry = per_topic(sub, since, current, snapshot.is_some());
        self.conns[key].open_stream(entry, now);
        let head = Shared::from(http::event_stream_head(&http::cors(origin)));
        self.conns.enqueue(key, Out::Bytes(head));
        if let Some(snapshot) = snapshot.filter(|_| since != current) {
            self.conns.enqueue(key, Out::Snapshot(snapshot, None));
        }
        debug!("{} streaming {name}", self.conns[key].tag());
        self.stats.subscribed += 1;
    }

    fn metrics(&self, answer: Answer) -> Response {
        let providers = self
            .publishing
            .providers()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let streams = self.topics.iter().map(|t| t.streams()).sum::<usize>();
        let view = metrics::MetricsView {
            stats: &self.stats,
            topics: &self.topics,
            websockets: self.topics.subscriptions() - streams,
            streams,
            providers: &providers,
            now: Instant::now(),
            tls: self.tls.as_ref().map(|c| (c.not_after(), c.reloads())),
        };
        let body = metrics::render(&view);
        let content_type = "text/plain; version=0.0.4; charset=utf-8";
        http::response(
            http::OK,
            content_type,
            "",
            body.as_bytes(),
            answer.close,
            answer.head_only,
        )
    }

    fn health_view(&self) -> HealthView<'_> {
        HealthView {
            shutting_down: self.stage.is_stopping(),
            uptime_seconds: self.started.elapsed().as_secs(),
            connections: self.topics.subscriptions(),
            topics: self.topics.len(),
            sockets: self.conns.len(),
            queued_bytes: self.conns.iter().map(|(_, c)| c.pending_bytes()).sum(),
            stats: &self.stats,
            providers: self.publishing.providers(),
        }
    }
}
