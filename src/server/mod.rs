//! The event loop: one thread, one `mio::Poll`, every socket in a slab.
//!
//! A turn of the loop: wait for readiness; accept, read and answer; drain
//! the publishers' channel; write every connection that has output (one
//! `writev` each); remove the connections marked done (only [`EventLoop::remove`]
//! does that); run the timers. Snapshots go out in [`EventLoop::fan_out`],
//! events in [`EventLoop::broadcast`].

pub mod conn;
pub mod queue;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::value::RawValue;
use slab::Slab;
use tungstenite::protocol::frame::coding::{Control, OpCode};

use crate::config::Config;
use crate::publisher::{self, Command, Inbox, Publisher};
use crate::server::conn::{Conn, Phase};
use crate::topic::adw;
use crate::topic::schema::{SchemaError, Validator};
use crate::topic::{self, Message, Rules, TopicError, Topics};
use crate::wire::Shared;
use crate::wire::http::{self, ParsedBody, ParsedHead, Response, Route};
use crate::wire::protocol::{self, CloseReason, Incoming, code};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// One read buffer for the whole loop: connections own input bytes only
/// while a message is incomplete.
const SCRATCH_SIZE: usize = 64 << 10;

/// How long a closing connection waits for its peer to close after the last
/// bytes went out, so the final frame or response is not lost to a reset.
const LINGER: Duration = Duration::from_secs(2);

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
        Rules::new(
            config.preset,
            &config.topics,
            config.any_topic,
            Validator::off(),
        )
        .check(topic)
        .map_err(|e| format!("--schema: {e}; add it with --topic or --any-topic"))?;
    }
    let validator = if config.validate {
        Validator::new(config.preset, &config.schemas)?
    } else {
        Validator::off()
    };
    Ok(Rules::new(
        config.preset,
        &config.topics,
        config.any_topic,
        validator,
    ))
}

/// A WebSocket server for live dashboards: configure, bind, run.
pub struct Server {
    config: Config,
    poll: Poll,
    listener: TcpListener,
    inbox: Inbox,
    publisher: Publisher,
    rules: Arc<Rules>,
}

impl Server {
    /// Binds the listening socket; fails if the address is taken.
    /// Fails with `InvalidInput` if a `--schema` cannot be used, before
    /// anything is bound.
    pub fn bind(config: Config) -> io::Result<Server> {
        let rules =
            rules_for(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let rules = Arc::new(rules);
        let poll = Poll::new()?;
        let mut listener = listen(config.listen)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (publisher, inbox) = publisher::channel(waker, rules.clone());
        Ok(Server {
            config,
            poll,
            listener,
            inbox,
            publisher,
            rules,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Which topics exist and what each accepts.
    pub fn rules(&self) -> &Rules {
        &self.rules
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
        .expect("three durations")
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
        let mut event_loop = EventLoop {
            config,
            poll: self.poll,
            listener: Some(self.listener),
            inbox: self.inbox,
            conns: Slab::new(),
            topics,
            next_id: 1,
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            dirty: Vec::new(),
            doomed: Vec::new(),
            dirty_topics: Vec::new(),
            started: now,
            tick,
            next_tick: now + tick,
            accept_retry: None,
            shutdown_deadline: None,
            open: 0,
            ping_frame: Arc::from(protocol::encode_frame(OpCode::Control(Control::Ping), b"")),
            pending: Vec::new(),
            pending_index: HashMap::new(),
            stats: Stats::default(),
            last_refusal_log: None,
            backlog: false,
        };
        event_loop.run()
    }
}

/// Counters shown in `/healthz`.
#[derive(Debug, Default, serde::Serialize)]
struct Stats {
    accepted: u64,
    refused: u64,
    upgraded: u64,
    publishes: u64,
    events: u64,
    superseded: u64,
    slow_consumers: u64,
    ping_timeouts: u64,
    protocol_errors: u64,
}

/// A timer's verdict on one connection.
enum Due {
    HttpTimeout,
    PingTimeout,
    Slow,
    Expired,
}

struct EventLoop {
    config: Config,
    poll: Poll,
    /// `None` once shutdown has begun: no new connections.
    listener: Option<TcpListener>,
    inbox: Inbox,
    conns: Slab<Conn>,
    topics: Topics,
    next_id: u64,
    scratch: Box<[u8]>,
    /// Connections with output queued this turn, written before the loop
    /// sleeps so several frames leave in one write.
    dirty: Vec<usize>,
    /// Connections to remove at the end of the turn.
    doomed: Vec<usize>,
    /// Topics published this turn, fanned out before writing.
    dirty_topics: Vec<usize>,
    started: Instant,
    /// Timer resolution: a quarter of the shortest timeout, at most 1 s.
    tick: Duration,
    next_tick: Instant,
    /// Set when accept failed for lack of file descriptors.
    accept_retry: Option<Instant>,
    shutdown_deadline: Option<Instant>,
    /// Open WebSocket connections.
    open: usize,
    /// Every ping is the same empty frame.
    ping_frame: Shared,
    /// Snapshots from the channel waiting to be encoded: topic, data, count.
    /// Only the newest per topic survives a drain.
    pending: Vec<(String, String, u64)>,
    pending_index: HashMap<String, usize>,
    stats: Stats,
    last_refusal_log: Option<Instant>,
    /// The last drain stopped at `MAX_DRAIN` with commands left.
    backlog: bool,
}

/// After a fan-out queued a frame for `conn`: schedule its write, and note
/// it as slow if its queue is now over the limit (closed after the pass,
/// since closing changes the subscriber list being walked).
fn after_queueing(
    conn: &mut Conn,
    key: usize,
    max: usize,
    dirty: &mut Vec<usize>,
    slow: &mut Vec<usize>,
) {
    if conn.out.pending_bytes() > max {
        slow.push(key);
    }
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(key);
    }
}

/// A malformed name is the request's fault (400); a well-formed one the
/// server does not serve is not found (404); a full table is 503.
fn refused_topic(e: &TopicError, close: bool) -> Response {
    let status = match e {
        TopicError::Invalid(_) => http::BAD_REQUEST,
        TopicError::Unknown(_) => http::NOT_FOUND,
        TopicError::Full(_) => http::UNAVAILABLE,
    };
    http::error(status, &e.to_string(), "", close)
}

/// 422 with the pointer and the rule on one line; logged at info, since a
/// producer sending what the dashboard cannot render is worth seeing.
fn refused_by_schema(topic: &str, error: &SchemaError, close: bool) -> Response {
    info!("publish to {topic:?} refused by its schema: {error}");
    http::error(http::UNPROCESSABLE, &error.to_string(), "", close)
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
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
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(key, now);
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            self.drain_commands(now);
            self.fan_out();
            self.flush_dirty(now);
            self.reap();
            if self.accept_retry.is_some_and(|at| now >= at) {
                self.accept_retry = None;
                self.accept(now);
            }
            if now >= self.next_tick {
                self.next_tick = now + self.tick;
                self.sweep(now);
                self.flush_dirty(now);
                self.reap();
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() {
                    info!("shutdown complete");
                    return Ok(());
                }
                if now >= deadline {
                    warn!(
                        "shutdown timeout: dropping {} connections that did not finish closing",
                        self.conns.len()
                    );
                    return Ok(());
                }
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        if self.backlog {
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

    // ----- accepting -----

    fn accept(&mut self, now: Instant) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(24 | 23)) => {
                    // EMFILE / ENFILE: the connection waits in the backlog.
                    // Edge-triggered readiness will not fire again for it,
                    // so retry on a timer.
                    self.log_refusal(now, &format!("accept failed: {e}"));
                    self.accept_retry = Some(now + Duration::from_millis(50));
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one connection only.
                    debug!("accept failed: {e}");
                    continue;
                }
            };
            if self.conns.len() >= self.config.max_connections {
                self.stats.refused += 1;
                let max = self.config.max_connections;
                self.log_refusal(now, &format!("refusing {peer}: at --max-connections {max}"));
                drop(stream);
                continue;
            }
            self.add(stream, peer, now);
        }
    }

    /// Logs a refusal at most once a second: under a flood the log must not
    /// become the bottleneck.
    fn log_refusal(&mut self, now: Instant, message: &str) {
        if self
            .last_refusal_log
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            self.last_refusal_log = Some(now);
            warn!("{message}");
        }
    }

    fn add(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        // Elsewhere accepted sockets do not inherit TCP_NODELAY from the listener.
        #[cfg(not(target_os = "linux"))]
        if let Err(e) = stream.set_nodelay(true) {
            debug!("peer={peer} set_nodelay failed: {e}");
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            warn!("peer={peer} could not be registered: {e}");
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.stats.accepted += 1;
        debug!("conn={id} peer={peer} accepted");
        entry.insert(Conn::new(id, peer, stream, now));
    }

    // ----- reading -----

    fn read(&mut self, key: usize, now: Instant) {
        loop {
            let conn = &mut self.conns[key];
            if conn.done.is_some() {
                return;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    let reason = match conn.phase {
                        Phase::Open { .. } => "peer closed without a close frame",
                        Phase::Closing { .. } => "closed",
                        Phase::Http { .. } => "peer closed",
                    };
                    self.finish(key, reason);
                    return;
                }
                Ok(n) => {
                    // After our last frame or response, input is read only
                    // to see the peer's end.
                    if conn.phase.is_closing() {
                        continue;
                    }
                    if let Phase::Open { last_heard, .. } = &mut conn.phase {
                        *last_heard = now;
                    }
                    conn.input.extend_from_slice(&self.scratch[..n]);
                    self.process_input(key, now);
                }
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    self.finish(key, format!("read failed: {e}"));
                    return;
                }
            }
        }
    }

    fn process_input(&mut self, key: usize, now: Instant) {
        loop {
            let conn = &mut self.conns[key];
            if conn.done.is_some() || conn.input.is_empty() {
                return;
            }
            match conn.phase {
                Phase::Http { .. } => {
                    if !self.handle_request(key, now) {
                        return;
                    }
                }
                Phase::Open { .. } => return self.handle_frames(key),
                Phase::Closing { .. } => {
                    conn.input = Vec::new();
                    return;
                }
            }
        }
    }

    // ----- HTTP -----

    /// Handles one complete request from the connection's input, if there
    /// is one. Returns whether more input may be processed.
    fn handle_request(&mut self, key: usize, now: Instant) -> bool {
        let conn = &mut self.conns[key];
        let (head, head_len) = match http::parse_head(&conn.input) {
            Ok(ParsedHead::Partial) => return false,
            Ok(ParsedHead::Complete { head, len }) => (head, len),
            Err(response) => return self.respond(key, response),
        };
        let body = http::parse_body(
            head.body,
            &conn.input[head_len..],
            self.config.max_publish_bytes,
        );
        let body = match body {
            Ok(ParsedBody::Complete(body, used)) => {
                conn.consume(head_len + used);
                conn.phase = Phase::Http {
                    continue_sent: false,
                };
                conn.since = now;
                body
            }
            Ok(ParsedBody::Partial) => {
                if head.expect_continue
                    && matches!(
                        conn.phase,
                        Phase::Http {
                            continue_sent: false
                        }
                    )
                {
                    conn.queue(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec());
                    conn.phase = Phase::Http {
                        continue_sent: true,
                    };
                    self.mark_dirty(key);
                }
                return false;
            }
            Err(response) => return self.respond(key, response),
        };
        let close = !head.keep_alive || self.shutdown_deadline.is_some();
        let head_only = head.method == "HEAD";
        let response = match http::route(&head.method, &head.path) {
            Route::Subscribe(topic) => return self.upgrade(key, &head, &topic, now),
            Route::Publish(topic) => self.http_publish(&topic, &body, close),
            Route::Broadcast => self.http_broadcast(&body, close),
            Route::State(topic) => self.http_state(&topic, close, head_only),
            Route::Health => http::json(&self.health(), close, head_only),
            Route::WrongMethod(allow) => http::error(
                http::METHOD_NOT_ALLOWED,
                &format!("method {} not allowed here", head.method),
                &format!("Allow: {allow}\r\n"),
                close,
            ),
            Route::NotFound => http::error(
                http::NOT_FOUND,
                &format!("no such endpoint {}", head.path),
                "",
                close,
            ),
        };
        self.respond(key, response)
    }

    /// Queues a response; a closing one moves the connection to `Closing`.
    /// Returns whether the connection reads further requests.
    fn respond(&mut self, key: usize, response: Response) -> bool {
        let conn = &mut self.conns[key];
        conn.queue(response.bytes);
        self.mark_dirty(key);
        if response.close {
            let conn = &mut self.conns[key];
            conn.input = Vec::new();
            conn.phase = Phase::Closing {
                deadline: None,
                reason: "final HTTP response sent".into(),
            };
        }
        !response.close
    }

    fn upgrade(&mut self, key: usize, head: &http::Head, name: &str, now: Instant) -> bool {
        let refuse = |e: TopicError| refused_topic(&e, true);
        // Every refusal comes before the 101: a client is never upgraded
        // only to be closed.
        if let Err(e) = self.topics.check(name) {
            return self.respond(key, refuse(e));
        }
        let accept = match http::check_upgrade(head) {
            Ok(accept) => accept,
            Err(response) => return self.respond(key, response),
        };
        if self.shutdown_deadline.is_some() {
            let response = http::error(http::UNAVAILABLE, "shutting down", "", true);
            return self.respond(key, response);
        }
        let topic_id = match self.topics.find_or_create(name) {
            Ok(id) => id,
            Err(e) => return self.respond(key, refuse(e)),
        };
        let topic = self.topics.get_mut(topic_id);
        let sub_index = topic.subscribe(key);
        let conn = &mut self.conns[key];
        conn.queue(http::switching_protocols(&accept));
        // The snapshot follows the 101 in the same write: the client never
        // has to ask, and never waits.
        if let Some(snapshot) = &topic.snapshot {
            conn.out.push_snapshot(snapshot.frame.clone());
        }
        conn.phase = Phase::Open {
            topic: topic_id,
            sub_index,
            decoder: Default::default(),
            last_heard: now,
            last_ping: now,
        };
        debug!("conn={} peer={} subscribed to {name}", conn.id, conn.peer);
        self.open += 1;
        self.stats.upgraded += 1;
        self.mark_dirty(key);
        true
    }

    fn http_publish(&mut self, name: &str, body: &[u8], close: bool) -> Response {
        // Validate everything before touching anything: a failed publish
        // changes nothing, not even the topic table.
        if let Err(e) = self.topics.check(name) {
            return refused_topic(&e, close);
        }
        let data: &RawValue = match serde_json::from_slice(body) {
            Ok(data) => data,
            Err(e) => {
                return http::error(http::BAD_REQUEST, &format!("invalid JSON: {e}"), "", close);
            }
        };
        // Parsed whole only for topics with a schema: the others keep the
        // cheaper `RawValue` check.
        if self.topics.rules().validates(name) {
            let value: serde_json::Value =
                serde_json::from_str(data.get()).expect("RawValue holds valid JSON");
            if let Err(e) = self.topics.rules().check_data(name, &value) {
                return refused_by_schema(name, &e, close);
            }
        }
        let id = match self.topics.find_or_create(name) {
            Ok(id) => id,
            Err(e) => return http::error(http::UNAVAILABLE, &e.to_string(), "", close),
        };
        let (seq, subscribers) = self.publish(id, data.get(), 1);
        let reply = format!(r#"{{"topic":"{name}","seq":{seq},"subscribers":{subscribers}}}"#);
        http::json(reply.as_bytes(), close, false)
    }

    fn http_broadcast(&mut self, body: &[u8], close: bool) -> Response {
        #[derive(serde::Deserialize)]
        struct Event<'a> {
            #[serde(rename = "type")]
            kind: String,
            #[serde(borrow)]
            data: Option<&'a RawValue>,
        }
        let bad = |why: String| http::error(http::BAD_REQUEST, &why, "", close);
        let event: Event = match serde_json::from_slice(body) {
            Ok(event) => event,
            Err(e) => return bad(format!("invalid event: {e}")),
        };
        // CONTRACT.md: a message of a known type without `data` breaks its panel.
        let Some(data) = event.data else {
            return bad("an event needs a \"data\" field".into());
        };
        if event.kind.is_empty() {
            return bad("an event needs a non-empty \"type\"".into());
        }
        let value: serde_json::Value =
            serde_json::from_str(data.get()).expect("RawValue holds valid JSON");
        if let Err(e) = self.topics.rules().check_event(&event.kind, &value) {
            return refused_by_schema(&event.kind, &e, close);
        }
        let type_json = serde_json::to_string(&event.kind).expect("a string serialises");
        let delivered = self.broadcast(&type_json, data.get());
        let reply = format!(r#"{{"type":{type_json},"delivered":{delivered}}}"#);
        http::json(reply.as_bytes(), close, false)
    }

    fn http_state(&self, name: &str, close: bool, head_only: bool) -> Response {
        let found = match self.topics.find(name) {
            Some(id) => self
                .topics
                .get(id)
                .snapshot
                .as_ref()
                .map(|m| m.json().to_vec()),
            // An adw-state topic nobody has opened yet would still greet a
            // subscriber with its default.
            None if self.topics.rules().check(name).is_ok()
                && name.starts_with(adw::ADW_STATE_PREFIX) =>
            {
                Some(topic::default_adw_state(name).json().to_vec())
            }
            None => {
                let e = match self.topics.rules().check(name) {
                    Err(e) => e,
                    Ok(()) => TopicError::Unknown(name.into()),
                };
                return refused_topic(&e, close);
            }
        };
        match found {
            Some(json) => http::json(&json, close, head_only),
            None => http::error(
                http::NOT_FOUND,
                &format!("topic {name:?} has no snapshot yet"),
                "",
                close,
            ),
        }
    }

    fn health(&self) -> Vec<u8> {
        /// Field order is the order an operator reads them in.
        #[derive(serde::Serialize)]
        struct Health<'a> {
            status: &'a str,
            uptime_seconds: u64,
            connections: usize,
            topics: usize,
            version: &'a str,
            sockets: usize,
            queued_bytes: usize,
            counters: &'a Stats,
            providers: &'a std::collections::BTreeMap<String, crate::publisher::ProviderStatus>,
        }
        let providers = self
            .inbox
            .providers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let status = if self.shutdown_deadline.is_some() {
            "shutting_down"
        } else if providers.values().any(|p| !p.ok) {
            "degraded"
        } else {
            "ok"
        };
        let health = Health {
            status,
            uptime_seconds: self.started.elapsed().as_secs(),
            connections: self.open,
            topics: self.topics.len(),
            version: env!("CARGO_PKG_VERSION"),
            sockets: self.conns.len(),
            queued_bytes: self.conns.iter().map(|(_, c)| c.out.pending_bytes()).sum(),
            counters: &self.stats,
            providers: &providers,
        };
        serde_json::to_vec(&health).expect("plain data serialises")
    }

    // ----- WebSocket -----

    fn handle_frames(&mut self, key: usize) {
        let max = self.config.max_client_message;
        let conn = &mut self.conns[key];
        let Conn {
            phase, input, out, ..
        } = conn;
        let Phase::Open { decoder, .. } = phase else {
            return;
        };
        let mut used = 0;
        let mut wrote = false;
        let close = loop {
            match decoder.decode(&mut input[used..], max) {
                Ok((0, _)) => break None,
                Ok((n, incoming)) => {
                    used += n;
                    let reply = match incoming {
                        Some(Incoming::Ping(payload)) => Some(protocol::encode_frame(
                            OpCode::Control(Control::Pong),
                            &payload,
                        )),
                        Some(Incoming::Text(text)) => {
                            protocol::json_pong(&text).map(|pong| protocol::encode_text(&pong))
                        }
                        Some(Incoming::Close(code)) => {
                            // RFC 6455 §5.5.1: reply with a close, echoing
                            // the status code.
                            break Some((
                                CloseReason::new(code.unwrap_or(code::NORMAL), "bye"),
                                false,
                            ));
                        }
                        Some(Incoming::Binary | Incoming::Pong) | None => None,
                    };
                    if let Some(reply) = reply {
                        out.push(Arc::from(reply));
                        wrote = true;
                    }
                }
                Err(reason) => break Some((reason, true)),
            }
        };
        conn.consume(used);
        if wrote {
            self.mark_dirty(key);
        }
        if let Some((reason, failed)) = close {
            if failed {
                self.stats.protocol_errors += 1;
            }
            self.close_ws(key, reason);
        }
    }

    /// Starts the closing handshake from an open connection: unsubscribe,
    /// queue the close frame, wait for the peer's close.
    fn close_ws(&mut self, key: usize, reason: CloseReason) {
        if !self.conns[key].phase.is_open() {
            return;
        }
        self.unsubscribe(key);
        let conn = &mut self.conns[key];
        conn.queue_close(&reason);
        self.mark_dirty(key);
    }

    fn unsubscribe(&mut self, key: usize) {
        let Phase::Open {
            topic, sub_index, ..
        } = self.conns[key].phase
        else {
            return;
        };
        let moved = self.topics.get_mut(topic).unsubscribe(sub_index);
        if let Some(Phase::Open { sub_index: s, .. }) = moved.map(|key| &mut self.conns[key].phase)
        {
            *s = sub_index;
        }
        self.topics.release_if_unused(topic);
        // The caller moves the connection out of `Open` (to `Closing`, or
        // out of the slab) right after, so this runs once per connection.
        self.open -= 1;
    }

    fn slow_consumer(&mut self, key: usize, why: &str) {
        let conn = &self.conns[key];
        if conn.phase.is_closing() {
            // Already leaving, and not even its last bytes go out.
            self.finish(key, format!("final bytes not taken: {why}"));
            return;
        }
        warn!(
            "conn={} peer={} slow consumer ({why}, {} bytes queued): closing with 1008",
            conn.id,
            conn.peer,
            conn.out.pending_bytes()
        );
        self.stats.slow_consumers += 1;
        if conn.phase.is_open() {
            self.close_ws(key, CloseReason::new(code::POLICY, "slow consumer"));
        } else {
            self.finish(key, "slow consumer");
        }
    }

    // ----- publishing -----

    /// Stores a topic's new snapshot and schedules its fan-out. Returns the
    /// topic's new `seq` and the number of subscribers it will reach.
    fn publish(&mut self, id: usize, data: &str, publishes: u64) -> (u64, usize) {
        self.stats.publishes += publishes;
        let seq = self.topics.get(id).seq + publishes;
        if self.topics.forget_if_default(id, data) {
            return (seq, 0);
        }
        self.topics.publish(id, data, publishes);
        let topic = self.topics.get_mut(id);
        if !topic.fan_out_pending {
            topic.fan_out_pending = true;
            self.dirty_topics.push(id);
        }
        (seq, topic.subscribers.len())
    }

    /// Queues each published topic's newest snapshot for every subscriber:
    /// a clone of the same `Arc`, never a copy. Runs once per turn (and
    /// before any event, to keep order), so a burst of publishes to one
    /// topic costs one pass over its subscribers, not one per publish.
    fn fan_out(&mut self) {
        let max_queue = self.config.max_queue_bytes;
        let mut slow = Vec::new();
        for id in self.dirty_topics.drain(..) {
            let topic = self.topics.get_mut(id);
            topic.fan_out_pending = false;
            let Some(snapshot) = &topic.snapshot else {
                continue;
            };
            for &key in &topic.subscribers {
                let conn = &mut self.conns[key];
                if conn.out.push_snapshot(snapshot.frame.clone()) {
                    self.stats.superseded += 1;
                }
                after_queueing(conn, key, max_queue, &mut self.dirty, &mut slow);
            }
        }
        for key in slow {
            self.slow_consumer(key, "queue over --max-queue-bytes");
        }
    }

    /// Sends a one-off event to every open connection, whatever its topic.
    fn broadcast(&mut self, type_json: &str, data: &str) -> usize {
        // Snapshots published before this event go out before it.
        self.fan_out();
        let message = Message::event(type_json, data);
        let max_queue = self.config.max_queue_bytes;
        let mut slow = Vec::new();
        let mut count = 0;
        for (key, conn) in self.conns.iter_mut() {
            if !conn.phase.is_open() || conn.done.is_some() {
                continue;
            }
            count += 1;
            conn.out.push(message.frame.clone());
            after_queueing(conn, key, max_queue, &mut self.dirty, &mut slow);
        }
        self.stats.events += 1;
        for key in slow {
            self.slow_consumer(key, "queue over --max-queue-bytes");
        }
        count
    }

    /// Handles what producer threads sent since the last turn. Snapshots for
    /// one topic are coalesced so only the newest is encoded, but never
    /// across an event, so a producer's events and snapshots keep their order.
    fn drain_commands(&mut self, now: Instant) {
        self.inbox.rearm();
        // Set again below if this turn cannot take everything.
        self.backlog = true;
        for _ in 0..MAX_DRAIN {
            let Ok(command) = self.inbox.rx.try_recv() else {
                self.backlog = false;
                break;
            };
            match command {
                Command::Snapshot { topic, data } => match self.pending_index.get(&topic) {
                    Some(&i) => {
                        let entry = &mut self.pending[i];
                        entry.1 = data;
                        entry.2 += 1;
                    }
                    None => {
                        self.pending_index.insert(topic.clone(), self.pending.len());
                        self.pending.push((topic, data, 1));
                    }
                },
                Command::Event { type_json, data } => {
                    self.apply_pending();
                    self.broadcast(&type_json, &data);
                }
                Command::Shutdown => {
                    self.apply_pending();
                    self.begin_shutdown(now);
                }
            }
        }
        self.apply_pending();
    }

    fn apply_pending(&mut self) {
        self.pending_index.clear();
        let pending = std::mem::take(&mut self.pending);
        for (name, data, count) in &pending {
            match self.topics.find_or_create(name) {
                Ok(id) => {
                    self.publish(id, data, *count);
                }
                Err(e) => warn!("publish to {name:?} dropped: {e}"),
            }
        }
        // Keep the allocation for the next drain.
        self.pending = pending;
        self.pending.clear();
    }

    // ----- writing -----

    fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn flush_dirty(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            self.flush(key, now);
        }
        dirty.clear();
        // Keep the allocation: the next publish needs it again.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Writes what the socket takes and sets WRITABLE interest to match what
    /// is left: registered while output is pending, dropped once it is not.
    fn flush(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        if conn.done.is_some() {
            return;
        }
        let written = match conn.out.write_to(&mut conn.stream) {
            Ok(n) => n,
            Err(e) => {
                self.finish(key, format!("write failed: {e}"));
                return;
            }
        };
        let want_writable = !conn.out.is_empty();
        if want_writable {
            if written > 0 || conn.blocked_since.is_none() {
                conn.blocked_since = Some(now);
            }
        } else {
            conn.blocked_since = None;
            if let (Phase::Closing { deadline, .. }, false) = (&mut conn.phase, conn.write_shut) {
                // The last frame or response is out: send FIN, then keep
                // reading until the peer closes so a reset cannot destroy
                // what we sent.
                conn.write_shut = true;
                *deadline = Some(now + LINGER);
                let _ = conn.stream.shutdown(Shutdown::Write);
            }
        }
        if want_writable != conn.writable {
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            conn.writable = want_writable;
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key), interest)
            {
                self.finish(key, format!("reregister failed: {e}"));
            }
        }
    }

    // ----- closing -----

    /// Marks a connection for removal at the end of the turn.
    fn finish(&mut self, key: usize, reason: impl Into<Cow<'static, str>>) {
        let conn = &mut self.conns[key];
        if conn.done.is_none() {
            conn.done = Some(reason.into());
            self.doomed.push(key);
        }
    }

    fn reap(&mut self) {
        while let Some(key) = self.doomed.pop() {
            self.remove(key);
        }
    }

    /// The one place a connection leaves the poll and the slab.
    fn remove(&mut self, key: usize) {
        self.unsubscribe(key);
        let mut conn = self.conns.remove(key);
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            debug!("conn={} deregister failed: {e}", conn.id);
        }
        let done = conn.done.as_deref().unwrap_or("removed");
        match &conn.phase {
            Phase::Closing { reason, .. } => {
                debug!(
                    "conn={} peer={} closed: {reason} ({done})",
                    conn.id, conn.peer
                )
            }
            _ => debug!("conn={} peer={} closed: {done}", conn.id, conn.peer),
        }
    }

    // ----- timers -----

    fn sweep(&mut self, now: Instant) {
        let ping = self.config.ping_interval;
        let mut due = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            if conn.done.is_some() {
                continue;
            }
            if conn
                .blocked_since
                .is_some_and(|at| now.duration_since(at) >= self.config.write_timeout)
            {
                due.push((key, Due::Slow));
                continue;
            }
            match &mut conn.phase {
                Phase::Http { .. } => {
                    if now.duration_since(conn.since) >= self.config.handshake_timeout {
                        due.push((key, Due::HttpTimeout));
                    }
                }
                Phase::Open {
                    last_heard,
                    last_ping,
                    ..
                } => {
                    if now.duration_since(*last_heard) >= ping * 2 {
                        due.push((key, Due::PingTimeout));
                    } else if now.duration_since(*last_ping) >= ping {
                        *last_ping = now;
                        conn.out.push(self.ping_frame.clone());
                        if !conn.dirty {
                            conn.dirty = true;
                            self.dirty.push(key);
                        }
                    }
                }
                Phase::Closing { deadline, .. } => {
                    if deadline.is_some_and(|at| now >= at) {
                        due.push((key, Due::Expired));
                    }
                }
            }
        }
        for (key, due) in due {
            match due {
                Due::Slow => self.slow_consumer(key, "no bytes accepted within --write-timeout"),
                Due::HttpTimeout => {
                    if self.conns[key].input.is_empty() {
                        self.finish(key, "idle");
                    } else {
                        let response = http::error(
                            http::REQUEST_TIMEOUT,
                            "request not completed within --handshake-timeout",
                            "",
                            true,
                        );
                        self.respond(key, response);
                    }
                }
                Due::PingTimeout => {
                    self.stats.ping_timeouts += 1;
                    let conn = &self.conns[key];
                    debug!(
                        "conn={} peer={} silent for two ping intervals",
                        conn.id, conn.peer
                    );
                    self.close_ws(key, CloseReason::new(code::GOING_AWAY, "ping timeout"));
                }
                Due::Expired => self.finish(key, "closing timed out"),
            }
        }
    }

    // ----- shutdown -----

    fn begin_shutdown(&mut self, now: Instant) {
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
            match conn.phase {
                Phase::Open { .. } => {
                    self.close_ws(key, CloseReason::new(code::GOING_AWAY, "going away"))
                }
                Phase::Http { .. } if conn.out.is_empty() && conn.input.is_empty() => {
                    self.finish(key, "shutdown")
                }
                Phase::Http { .. } => {
                    let response = http::error(http::UNAVAILABLE, "shutting down", "", true);
                    self.respond(key, response);
                }
                Phase::Closing { .. } => {}
            }
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
}
