//! The event loop: one thread, one `mio::Poll`, every socket in a slab.
//!
//! A turn of the loop: wait for readiness; accept, read and answer; drain
//! the publishers' channel; write every connection that has output (one
//! `sendmsg` each); remove the connections marked done; run the timers.
//!
//! Where things happen, one file each:
//! - this file: the loop, reading, and what a request leads to;
//! - `conns.rs`: the connection registry (the slab, per-IP counts, the
//!   lists each turn works through) and the output policy, where every
//!   byte is queued;
//! - `accept.rs`: accepting, and the connection limits;
//! - `fanout.rs`: publishes, snapshots to subscribers, events to everyone;
//! - `closing.rs`: writing, closing, the timers, shutdown, and
//!   `EventLoop::remove`, the one place a connection leaves the poll and
//!   the slab;
//! - `conn.rs`: one connection's lifecycle and its own I/O;
//! - `endpoints.rs`: what each HTTP request asks the loop to do;
//! - `access.rs`: hosts, origins and tokens; `metrics.rs`: `/metrics`;
//! - `harness.rs`: the request path without a socket, for the fuzzer.

// Proof for the indexing below: a slab key is used only while its entry is
// there: keys come from poll tokens and the loop's own lists, each checked
// with `get` (and the connection's id) first, and an entry leaves the slab
// only in `remove`, after every event of the turn is handled.
#![allow(clippy::indexing_slicing)]

mod accept;
mod access;
mod closing;
mod cluster;
mod conn;
mod conns;
mod endpoints;
mod fanout;
#[doc(hidden)]
pub mod harness;
mod metrics;
mod queue;
mod sock;
mod stats;

pub use conn::LINGER;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::protocol::frame::coding::{Control, OpCode};

use crate::config::Config;
use crate::publisher::{self, Inbox, Publisher};
use crate::server::access::Access;
use crate::server::conn::would_block;
use crate::server::conn::{Close, Received, Reply, Timeouts};
use crate::server::conns::{Conns, OutputLimits};
use crate::server::endpoints::{Action, Answer, HealthView};
use crate::server::queue::Out;
use crate::server::stats::{Interval, Stats};
use crate::topic::adw;
use crate::topic::schema::Validator;
use crate::topic::{Form, Rules, Topics};
use crate::wire::Shared;
use crate::wire::http::{self, Head, Next, Purpose, Response, Route};
use crate::wire::protocol;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// One read buffer for the whole loop: connections own input bytes only
/// while a message is incomplete.
const SCRATCH_SIZE: usize = 64 << 10;

/// Bytes one connection may have read for it per turn: a client flooding
/// frames or requests delays the others by at most this much work.
const READ_BUDGET: usize = 4 * SCRATCH_SIZE;

/// Most channel commands handled per turn, so sockets are not starved by a
/// flood of publishes.
const MAX_DRAIN: usize = 64 * 1024;

/// Pending connections the kernel may hold before `accept`. std and mio use
/// 128; after a restart every dashboard reconnects at once, and SYNs dropped
/// from a full queue cost the client a one-second retransmit.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a non-blocking listener with a deep backlog.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Rebinding right after a restart must not wait out TIME_WAIT.
    socket.set_reuse_address(true)?;
    // Frames are complete when written; Nagle would only add latency. Linux
    // hands this on to every accepted socket, saving a syscall per accept.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The rules a configuration asks for: its topics, the preset's schemas
/// unless `--no-validate`, and every `--schema`, each compiled once.
fn rules_for(config: &Config) -> Result<Rules, String> {
    for (topic, _) in &config.schemas {
        check_topic(config, topic)
            .map_err(|e| format!("--schema: {e}; add it with --topic or --any-topic"))?;
    }
    if config.max_queue_bytes < crate::topic::MIN_QUEUE {
        return Err(format!(
            "--max-queue-bytes {} is too small: at least {} bytes, since a subscriber's \
             queue holds a response head and a snapshot's envelope beside its value",
            config.max_queue_bytes,
            crate::topic::MIN_QUEUE
        ));
    }
    let validator = if config.validate {
        Validator::new(config.preset, &config.schemas)?
    } else {
        Validator::off()
    };
    Ok(
        Rules::new(config.preset, &config.topics, config.any_topic, validator)
            .with_max_queue(config.max_queue_bytes),
    )
}

/// Whether `topic` is one a server with `config` serves, before it is
/// started: a provider's topic must be.
pub fn check_topic(config: &Config, topic: &str) -> Result<(), String> {
    let rules = Rules::new(
        config.preset,
        &config.topics,
        config.any_topic,
        Validator::off(),
    );
    rules.check(topic).map_err(|e| e.to_string())
}

/// A WebSocket server for live dashboards: configure, bind, run.
pub struct Server {
    config: Config,
    access: Access,
    poll: Poll,
    listener: TcpListener,
    inbox: Inbox,
    publisher: Publisher,
    rules: Arc<Rules>,
    /// `--redis`: the writer's end, once its threads run.
    link: Option<crate::cluster::Link>,
}

impl Server {
    /// Binds the listening socket; fails if the address is taken.
    /// Fails with `InvalidInput` if a `--schema` cannot be used, before
    /// anything is bound.
    pub fn bind(config: Config) -> io::Result<Server> {
        let rules =
            rules_for(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let rules = Arc::new(rules);
        let access = Access::from_config(&config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let poll = Poll::new()?;
        let mut listener = listen(config.listen)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (publisher, inbox) = publisher::channel(waker, rules.clone());
        let link = match &config.redis {
            Some(url) => Some(
                crate::cluster::start(url.expose(), publisher.clone(), config.max_publish_bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            ),
            None => None,
        };
        Ok(Server {
            link,
            config,
            access,
            poll,
            listener,
            inbox,
            publisher,
            rules,
        })
    }

    /// Starts `providers` (see [`crate::providers::configured`] for the
    /// ones a configuration asks for), each on a thread of its own that
    /// publishes through this server's [`Publisher`].
    pub fn start_providers(
        &self,
        providers: Vec<Box<dyn crate::providers::Provider>>,
    ) -> io::Result<()> {
        for provider in providers {
            provider.start(self.publisher())?;
        }
        Ok(())
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle for publishing from other threads.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Runs until a shutdown is requested through a [`Publisher`], then
    /// closes every client with 1001 and returns. Errors are the server's
    /// own (the poll failing); a client's errors only end that client.
    pub fn run(self) -> io::Result<()> {
        let now = Instant::now();
        let config = self.config;
        let tick = [
            config.ping_interval,
            config.handshake_timeout,
            config.write_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(config.ping_interval)
        .div_f64(4.0)
        .clamp(Duration::from_millis(5), Duration::from_secs(1));
        let started = adw::rfc3339(std::time::SystemTime::now());
        let topics = Topics::new(
            self.rules,
            config.preset,
            &config.topics,
            config.max_topics,
            &started,
        );
        info!(
            "listening on {} ({} topics)",
            self.listener.local_addr()?,
            topics.len()
        );
        // Only the loop holds the publisher's inbox; our own Publisher copy
        // is dropped so `Closed` reaches producers when the loop ends.
        drop(self.publisher);
        give_back_startup_memory();
        let config_stats_interval = config.stats_interval;
        let timeouts = Timeouts {
            ping_interval: config.ping_interval,
            handshake: config.handshake_timeout,
        };
        let mut event_loop = EventLoop {
            conns: Conns::new(OutputLimits {
                max_queue: config.max_queue_bytes,
                write_timeout: config.write_timeout,
            }),
            config,
            access: self.access,
            timeouts,
            poll: self.poll,
            listener: Some(self.listener),
            inbox: self.inbox,
            topics,
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            started: now,
            tick,
            next_tick: now + tick,
            accept_retry: None,
            spare_fd: std::fs::File::open("/dev/null").ok(),
            fds_exhausted: false,
            shutdown_deadline: None,
            ping_frame: Arc::from(protocol::encode_frame(OpCode::Control(Control::Ping), b"")),
            pending: Vec::new(),
            pending_index: HashMap::new(),
            stats: Stats::default(),
            interval: Interval::default(),
            next_stats: now + config_stats_interval,
            last_refusal_log: None,
            backlog: false,
            cluster: self.link.map(cluster::Cluster::new),
        };
        event_loop.run()
    }
}

/// The loop's state. Only the loop thread touches it.
struct EventLoop {
    config: Config,
    /// Origins and tokens.
    access: Access,
    /// The connection timeouts of `config`, in the form `Conn` checks.
    timeouts: Timeouts,
    poll: Poll,
    /// `None` once shutdown has begun: no new connections.
    listener: Option<TcpListener>,
    /// Commands from `Publisher`s.
    inbox: Inbox,
    /// Every connection, keyed by its poll token, the per-turn lists and
    /// the output policy.
    conns: Conns,
    /// Topics, their snapshots and subscribers.
    topics: Topics,
    /// One read buffer for every connection.
    scratch: Box<[u8]>,
    /// For `/healthz`'s uptime.
    started: Instant,
    /// Timer resolution: a quarter of the shortest timeout, at most 1 s.
    tick: Duration,
    next_tick: Instant,
    /// Set when accept failed for lack of file descriptors.
    accept_retry: Option<Instant>,
    /// A descriptor held in reserve: given up to accept and refuse one
    /// connection when the process has no other (EMFILE).
    spare_fd: Option<std::fs::File>,
    /// Descriptors ran out and nothing has been accepted since: logged once.
    fds_exhausted: bool,
    /// Set when shutdown began: the loop ends by then at the latest.
    shutdown_deadline: Option<Instant>,
    /// Every ping is the same empty frame.
    ping_frame: Shared,
    /// Snapshots from the channel waiting to be encoded: topic, data, count.
    /// Only the newest per topic survives a drain.
    pending: Vec<(String, String, u64)>,
    pending_index: HashMap<String, usize>,
    stats: Stats,
    /// What the next stats line reports, and when it is due.
    interval: Interval,
    next_stats: Instant,
    /// When a refusal was last logged, so floods log once a second.
    last_refusal_log: Option<Instant>,
    /// The last drain stopped at `MAX_DRAIN` with commands left.
    backlog: bool,
    /// `--redis`: the link to the other nodes.
    cluster: Option<cluster::Cluster>,
}

/// Runs a pure request handler so that a bug in it (a panic) costs only
/// this request: it is answered 500 and its connection closed, and the
/// loop, which every client shares, carries on. The handlers only read the
/// loop's state, so nothing is left half-changed by an unwinding one.
fn contained<T>(head: &Head, handler: impl FnOnce() -> T) -> Result<T, Response> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler)).map_err(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log::error!(
            "the handler of {} {} panicked ({what}); answered 500",
            head.method,
            head.path
        );
        http::error(http::INTERNAL_ERROR, "internal error", "", true)
    })
}

/// Returns to the kernel the heap pages that starting up used and freed
/// (parsed schema documents, the config file): glibc keeps freed pages
/// resident until told. Other allocators give pages back themselves.
fn give_back_startup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory back to the kernel; it
    // touches no live allocation and may be called at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

impl EventLoop {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if interrupted(&e) {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    // The channel is drained every turn, below.
                    WAKER => {}
                    Token(key) => {
                        // Spurious or stale events happen; unknown keys are ignored.
                        if !self.conns.contains(key) {
                            continue;
                        }
                        let closed = event.is_read_closed() || event.is_error();
                        let readable = event.is_readable() || closed;
                        if readable && let Some(cause) = self.read(key, now, closed) {
                            self.finish(key, cause);
                        }
                        // WRITABLE is registered for good (edge-triggered, it
                        // fires only once a full socket drains), so it is
                        // news only to a connection with output waiting.
                        if event.is_writable() && self.conns[key].pending_bytes() > 0 {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            if self.end_of_turn(now) {
                return Ok(());
            }
        }
    }

    /// Everything after the readiness events: publishes, writes, removals,
    /// timers. Returns true when shutdown is complete.
    fn end_of_turn(&mut self, now: Instant) -> bool {
        self.drain_commands(now);
        self.fan_out(now);
        self.flush_dirty(now);
        self.read_again(now);
        self.flush_dirty(now);
        self.reap();
        if self.accept_retry.is_some_and(|at| now >= at) {
            self.accept_retry = None;
            self.accept(now);
        }
        if now >= self.next_stats {
            self.next_stats = now + self.config.stats_interval;
            let (connections, topics) = (self.topics.subscriptions(), self.topics.len());
            self.interval
                .log(&self.stats, connections, topics, self.config.stats_interval);
        }
        if now >= self.next_tick {
            self.next_tick = now + self.tick;
            self.sweep(now);
            self.flush_dirty(now);
            self.reap();
        }
        let Some(deadline) = self.shutdown_deadline else {
            return false;
        };
        if self.conns.is_empty() {
            info!("shutdown complete");
            return true;
        }
        if now >= deadline {
            warn!(
                "shutdown timeout: dropping {} connections that did not finish closing",
                self.conns.len()
            );
            return true;
        }
        false
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        let budget_spent = self
            .conns
            .read_later
            .iter()
            .any(|&(key, _)| self.conns.contains(key) && !self.held_back(key));
        if self.backlog || budget_spent {
            return Duration::ZERO;
        }
        let mut until = self.next_tick;
        if let Some(at) = self.accept_retry {
            until = until.min(at);
        }
        if let Some(at) = self.shutdown_deadline {
            until = until.min(at);
        }
        until.saturating_duration_since(now)
    }

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
    fn read(&mut self, key: usize, now: Instant, closed: bool) -> Option<Close> {
        let mut budget = READ_BUDGET;
        loop {
            if self.conns[key].is_done() {
                return None;
            }
            if budget == 0 || self.held_back(key) {
                self.stats.reads_deferred += u64::from(budget == 0);
                self.conns.read_later.push((key, self.conns[key].id()));
                return None;
            }
            let conn = &mut self.conns[key];
            match conn.receive(&mut self.scratch, now) {
                Received::Data(n) => {
                    budget = budget.saturating_sub(n);
                    self.process_input(key, now);
                    // Held back, it must be listed to finish its input later.
                    if n < self.scratch.len() && !closed && !self.held_back(key) {
                        return None;
                    }
                }
                // Dropped bytes cost a read all the same: a peer that keeps
                // writing to a closing connection or a stream must not hold
                // the loop.
                Received::Ignored(n) => budget = budget.saturating_sub(n),
                Received::WouldBlock => return None,
                Received::Eof => return Some(Close::PeerGone),
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

    /// Whether an HTTP connection's answers are piling up unread, or one is
    /// still waiting for Redis: it is not read again until they drain
    /// (backpressure, as HTTP servers do it).
    fn held_back(&self, key: usize) -> bool {
        self.conns.held_back(key)
    }

    /// Reads again the connections a previous read left with input unread,
    /// those no longer held back first in line. One still waiting for its
    /// budget is listed again (and the loop does not sleep while any is).
    fn read_again(&mut self, now: Instant) {
        let waiting = std::mem::take(&mut self.conns.read_later);
        for (key, id) in waiting {
            // A slab key may have been reused: the id says whose entry it is.
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            if conn.id() != id || conn.is_done() {
                continue;
            }
            if self.held_back(key) {
                self.conns.read_later.push((key, id));
                continue;
            }
            // Input already read may hold complete requests.
            self.process_input(key, now);
            if let Some(cause) = self.read(key, now, true) {
                self.finish(key, cause);
            }
        }
    }

    /// Handles every complete request or frame the input holds, until a
    /// pipelining client's answers pile up.
    fn process_input(&mut self, key: usize, now: Instant) {
        // A request admitted with its whole body read may be complete with
        // no input left: reading it again finishes it.
        while (self.conns[key].has_input() || self.conns[key].is_reading_body())
            && !self.held_back(key)
        {
            let conn = &mut self.conns[key];
            if conn.is_open() {
                let frames = conn.read_frames(self.config.max_client_message);
                for reply in frames.replies {
                    match reply {
                        Reply::Pong(pong) => self.conns.enqueue_pong(key, pong),
                        Reply::Text(text) => self.enqueue(key, Out::Bytes(text)),
                    }
                }
                let close = frames.close.or_else(|| self.conns.ping_flood(key));
                if let Some((reason, cause)) = close {
                    self.close_ws(key, &reason, cause);
                }
                return;
            }
            match conn.next_request(now) {
                Next::Partial => return,
                Next::Continue => {
                    let bytes = Shared::from(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]);
                    return self.enqueue(key, Out::Bytes(bytes));
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

    /// Routes and authorizes a request's head; only if it is let in is its
    /// body read.
    fn admit_request(&mut self, key: usize, head: Box<Head>, len: usize) -> Result<(), Response> {
        let reserve = self.conns[key].in_reserve();
        let (topics, access) = (&self.topics, &self.access);
        let admitted = contained(&head, || endpoints::admit(&head, topics, access, reserve));
        let route = match admitted {
            Ok(Ok(route)) => route,
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
        let max_body = self.config.max_publish_bytes;
        // Only publish and broadcast take a body, so only they meet its limit.
        self.conns[key]
            .admit(head, len, route, max_body)
            .inspect_err(|_| self.stats.refused_publishes.count(413))
    }

    /// Does what a complete request asks (see [`endpoints`]).
    fn handle_request(&mut self, key: usize, head: &Head, route: Route, body: &[u8], now: Instant) {
        let shutting_down = self.shutdown_deadline.is_some();
        let answer = Answer {
            close: !head.keep_alive || shutting_down,
            head_only: head.method == "HEAD",
        };
        let purpose = route.purpose();
        let (topics, access) = (&self.topics, &self.access);
        let action = contained(head, || {
            endpoints::handle(head, route, body, topics, access, shutting_down)
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
            } => {
                let deflate = self.config.compression && head.deflate;
                return self.subscribe(key, &topic, &accept, since, deflate, now);
            }
            Action::Stream {
                topic,
                since,
                origin,
            } => return self.stream(key, &topic, since, origin.as_deref(), now),
            Action::Publish { topic, data } => match self.topics.find_or_create(&topic) {
                // Under --redis, answered once Redis has ordered it.
                Ok(_) if self.publish_http(key, &topic, &data, answer) => return,
                Ok(id) => {
                    let published = self.publish(id, &data, 1);
                    endpoints::published(&topic, published, answer.close)
                }
                Err(e) => endpoints::no_room(&e, answer.close),
            },
            Action::Broadcast { type_json, data } => {
                let delivered = self.send_event(type_json.clone(), data, now);
                endpoints::broadcasted(&type_json, delivered, answer.close)
            }
            Action::Health { details } => endpoints::health(&self.health_view(), answer, details),
            Action::Metrics => self.metrics(answer),
        };
        self.count_refusal(purpose, &response);
        self.respond(key, response, Close::HttpDone);
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
        self.enqueue(key, Out::Bytes(Shared::from(response.bytes)));
        if response.close {
            self.conns[key].end_http(cause);
        }
    }

    /// Completes an upgrade the endpoint accepted: the 101 and the snapshot
    /// leave in the same write, so the client never waits. A client that
    /// says it has the topic's current `seq` (`?since=`) gets no resend;
    /// one that agreed to permessage-deflate (`deflate`) gets compressed
    /// frames.
    fn subscribe(
        &mut self,
        key: usize,
        name: &str,
        accept: &str,
        since: Option<u64>,
        deflate: bool,
        now: Instant,
    ) {
        let id = match self.topics.find_or_open(name) {
            Ok(id) => id,
            Err(e) => return self.respond(key, endpoints::no_room(&e, true), Close::HttpDone),
        };
        let current = Some(self.topics.get(id).seq());
        let form = if deflate { Form::Deflate } else { Form::Frame };
        let (sub, snapshot) = self.topics.subscribe(id, key, form);
        let snapshot = snapshot.filter(|_| since != current);
        self.conns[key].open(sub, now);
        let switching = Shared::from(http::switching_protocols(accept, deflate));
        self.enqueue(key, Out::Bytes(switching));
        if let Some(snapshot) = snapshot {
            self.enqueue(key, Out::Snapshot(snapshot, None));
        }
        let conn = &self.conns[key];
        debug!(
            "conn={} peer={} subscribed to {name}",
            conn.id(),
            conn.peer()
        );
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
        origin: Option<&str>,
        now: Instant,
    ) {
        let id = match self.topics.find_or_open(name) {
            Ok(id) => id,
            Err(e) => return self.respond(key, endpoints::no_room(&e, true), Close::HttpDone),
        };
        let current = Some(self.topics.get(id).seq());
        let (sub, snapshot) = self.topics.subscribe(id, key, Form::Sse);
        self.conns[key].open_stream(sub, now);
        let head = Shared::from(http::event_stream_head(&http::cors(origin)));
        self.enqueue(key, Out::Bytes(head));
        if let Some(snapshot) = snapshot.filter(|_| since != current) {
            self.enqueue(key, Out::Snapshot(snapshot, None));
        }
        let conn = &self.conns[key];
        debug!("conn={} peer={} streaming {name}", conn.id(), conn.peer());
        self.stats.subscribed += 1;
    }

    /// The one way bytes are queued for a connection; see [`enqueue`].
    fn enqueue(&mut self, key: usize, out: Out) {
        self.conns.enqueue(key, out);
    }

    fn metrics(&self, answer: Answer) -> Response {
        let providers = self
            .inbox
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
            shutting_down: self.shutdown_deadline.is_some(),
            uptime_seconds: self.started.elapsed().as_secs(),
            connections: self.topics.subscriptions(),
            topics: self.topics.len(),
            sockets: self.conns.len(),
            queued_bytes: self.conns.iter().map(|(_, c)| c.pending_bytes()).sum(),
            stats: &self.stats,
            providers: self.inbox.providers(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepted sockets carry TCP_NODELAY without a setsockopt of their own.
    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if would_block(&e) => std::thread::yield_now(),
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }

    /// A handler that panics (a bug) costs its own request only: it is
    /// answered 500 and closed, counted in /metrics, and the loop goes on
    /// serving a subscriber that was already there, and new requests.
    #[test]
    fn a_panicking_handler_answers_500_and_the_server_carries_on() {
        use std::io::{Read, Write};

        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        let server = Server::bind(config).unwrap();
        let addr = server.local_addr().unwrap();
        let publisher = server.publisher();
        let running = std::thread::spawn(move || server.run());
        let exchange = |request: &str| {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            // The server closes after the answer: read to the end.
            stream.read_to_string(&mut answer).unwrap();
            answer
        };
        let mut subscriber = std::net::TcpStream::connect(addr).unwrap();
        subscriber
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        subscriber
            .write_all(
                b"GET /api/v1/ws/queue HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .unwrap();
        let mut greeting = [0u8; 512];
        let n = subscriber.read(&mut greeting).unwrap();
        assert!(greeting[..n].starts_with(b"HTTP/1.1 101"));

        let request = format!(
            "GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            endpoints::PANIC_PATH
        );
        let answer = exchange(&request);
        assert!(answer.starts_with("HTTP/1.1 500 "), "{answer}");
        assert!(answer.contains("Connection: close"), "{answer}");
        let answer = exchange(&request);
        assert!(answer.starts_with("HTTP/1.1 500 "), "{answer}");

        let metrics =
            exchange("GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        assert!(
            metrics.contains("\nstatecast_handler_panics_total 2\n"),
            "{metrics}"
        );
        publisher
            .publish("queue", &serde_json::json!({"phases": [], "paused": true}))
            .unwrap();
        let mut update = Vec::new();
        while !String::from_utf8_lossy(&update).contains(r#""paused":true"#) {
            let mut buf = [0u8; 4096];
            let n = subscriber
                .read(&mut buf)
                .expect("the subscriber still gets updates");
            assert!(n > 0, "the subscriber was closed");
            update.extend_from_slice(&buf[..n]);
        }
        publisher.shutdown().unwrap();
        running.join().unwrap().unwrap();
    }
}
