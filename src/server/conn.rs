//! One client connection: its socket, its lifecycle, its input bytes and its
//! output queue. The loop decides what happens to a connection; the steps
//! here keep its state consistent, do the connection's own I/O and report
//! what came of it, so they can be tested on a socket without a loop.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use tungstenite::protocol::frame::coding::{Control, OpCode};

use crate::server::jwt::Grant;
use crate::server::queue::{Out, OutQueue};
use crate::server::sock::Sender;
use crate::server::subs::Subs;
use crate::server::tls::{Input, Session, Writer as TlsWriter};
use crate::topic::{Encoded, Form};
use crate::wire::Shared;
use crate::wire::http::{Head, Next, RequestReader, Response, Route};
use crate::wire::mux::{self, Command};
use crate::wire::protocol::{self, CloseReason, Decoder, Incoming, Limits, code};

/// How long a connection waits for its peer to close after its last bytes
/// went out and its write side was shut, so a reset cannot destroy them.
pub const LINGER: Duration = Duration::from_secs(2);

/// Declares [`Close`] once: each cause's doc, its label (the counter's
/// name in `/healthz`, the `cause` of `statecast_closes_total`) and whether
/// the stats line reports it (the causes an operator should look at). The
/// counters, the `/healthz` keys, the metric and the log lines all come
/// from here.
macro_rules! close_causes {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident $(($field:ty))? => $label:literal, $reported:literal;
    )*) => {
        /// Why a connection ended: one variant per reason, counted and
        /// logged once, when the connection is removed.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Close {
            $($(#[doc = $doc])* $name $(($field))?,)*
        }

        /// The causes in declaration order, for indexing counters.
        #[repr(usize)]
        enum CauseIndex {
            $($name,)*
        }

        impl Close {
            /// Every cause's label, in declaration order.
            pub const LABELS: &'static [&'static str] = &[$($label),*];

            /// Whether the stats line reports each cause, in the same order.
            pub const REPORTED: &'static [bool] = &[$($reported),*];

            /// This cause's place in [`LABELS`](Self::LABELS).
            pub fn index(self) -> usize {
                match self {
                    $(Close::$name { .. } => CauseIndex::$name as usize,)*
                }
            }

        }
    };
}

close_causes! {
    /// The peer closed the TCP connection; on a WebSocket, without a close
    /// frame.
    PeerGone => "peer_gone", false;
    /// The client sent a close frame and got ours back (RFC 6455 §5.5.1).
    ClientClosed => "client_close", false;
    /// A frame broke RFC 6455; the close code says how (1002, 1007, 1009).
    Protocol(u16) => "protocol_error", true;
    /// Nothing heard for two ping intervals; closed with 1001.
    PingTimeout => "ping_timeout", true;
    /// The signed token it subscribed with reached its `exp`: closed with
    /// 4001, or a final event on SSE.
    TokenExpired => "token_expired", false;
    /// Pings far faster than their pongs can go out; closed with 1008.
    PingFlood => "ping_flood", true;
    /// Commands on a multiplexed connection far faster than their answers
    /// can go out; closed with 1008.
    CommandFlood => "command_flood", true;
    /// Output queued past `--max-queue-bytes`; closed with 1013.
    SlowConsumer => "slow_consumer", true;
    /// Output pending and no byte taken for `--write-timeout`; 1013.
    WriteTimeout => "write_timeout", true;
    /// No complete request within `--handshake-timeout` (408, or a silent
    /// close when nothing was sent).
    HandshakeTimeout => "handshake_timeout", true;
    /// An HTTP exchange that ends the connection: `Connection: close`, or
    /// an error response after which the stream cannot be trusted.
    HttpDone => "http_done", false;
    /// The server is shutting down or draining (1012 Service Restart, an
    /// SSE stream's end, or 503 to a request).
    Shutdown => "shutdown", false;
    /// The socket failed: read, write or poll registration.
    Io(io::ErrorKind) => "io_error", false;
    /// A bug (a panic) while decoding its frames or reading its request:
    /// closed with 1011, or answered 500; nothing else is affected.
    Internal => "internal_error", true;
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Close::PeerGone => f.write_str("peer closed the connection"),
            Close::ClientClosed => f.write_str("client sent a close frame"),
            Close::Protocol(code) => write!(f, "protocol error (close {code})"),
            Close::PingTimeout => f.write_str("silent for two ping intervals"),
            Close::TokenExpired => f.write_str("its token expired"),
            Close::PingFlood => f.write_str("ping flood: pongs superseded before they went out"),
            Close::CommandFlood => {
                f.write_str("command flood: answers to its commands piled up unread")
            }
            Close::SlowConsumer => f.write_str("slow consumer: queue over --max-queue-bytes"),
            Close::WriteTimeout => {
                f.write_str("slow consumer: no bytes accepted within --write-timeout")
            }
            Close::HandshakeTimeout => {
                f.write_str("no complete request within --handshake-timeout")
            }
            Close::HttpDone => f.write_str("final HTTP response sent"),
            Close::Shutdown => f.write_str("server shutting down"),
            Close::Io(kind) => write!(f, "socket error: {kind}"),
            Close::Internal => f.write_str("a bug while reading its input"),
        }
    }
}

/// Where a connection is in its life.
#[derive(Debug)]
pub enum Phase {
    /// Speaking HTTP/1.1: reading request heads and bodies, possibly several
    /// on one keep-alive connection.
    Http {
        /// When the current request began (accept time for the first): the
        /// handshake timeout runs from here.
        since: Instant,
        /// Where the request being read stands.
        reader: RequestReader,
    },
    /// An upgraded WebSocket, subscribed to one topic, or to several on
    /// the multiplexed route.
    Open {
        subs: Subs,
        decoder: Decoder,
        /// When the client last sent anything (a pong counts).
        last_heard: Instant,
        /// When the server last pinged it.
        last_ping: Instant,
        /// Pongs replaced before they were written since the output last
        /// drained: how far the client's pings outrun its reading.
        pongs_dropped: u32,
    },
    /// A Server-Sent Events stream, subscribed to one topic or several.
    /// The client never speaks; a comment line keeps the connection alive.
    Stream {
        subs: Subs,
        /// When the last keep-alive comment was queued.
        last_comment: Instant,
    },
    /// The last bytes (a close frame or a final HTTP response) are queued;
    /// `--write-timeout` applies until they are written.
    Closing { cause: Close },
    /// The last bytes are out and the write side is shut; input is read
    /// only to see the peer's end, until `deadline`.
    Draining { cause: Close, deadline: Instant },
    /// To be removed at the end of the turn; nothing more is read or written.
    Done { cause: Close },
}

/// The text message on which a test build's frame decoding panics.
#[cfg(test)]
pub const PANIC_TEXT: &str = "test: a frame-path panic";

/// The request start on which a test build's request reading panics.
#[cfg(test)]
pub const PANIC_REQUEST: &[u8] = b"PANIC /test/reader";

/// What one read from the socket came to.
#[derive(Debug)]
pub enum Received {
    /// `n` bytes were appended to the input.
    Data(usize),
    /// `n` bytes came after our last frame or response and were dropped.
    Ignored(usize),
    /// Nothing more for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// Plain text came to a TLS connection; it speaks plain from now on,
    /// for the refusal.
    NotTls,
    Failed(io::Error),
}

/// What the WebSocket frames read so far came to.
#[derive(Debug, Default)]
pub struct Frames {
    /// Replies to queue, in order: pongs and JSON pongs.
    pub replies: Vec<Reply>,
    /// A multiplexed connection's commands, in order, each read or the
    /// reason it could not be.
    pub commands: Vec<Result<Command, String>>,
    /// The connection must close with this reason, for this cause.
    pub close: Option<(CloseReason, Close)>,
}

/// An answer to a client's frame.
#[derive(Debug)]
pub enum Reply {
    /// To a ping: may be conflated with other pongs (RFC 6455 §5.5.3).
    Pong(Shared),
    /// To a JSON ping: conflated like a pong, with other JSON pongs only.
    Text(Shared),
}

/// What a write came to.
#[derive(Debug)]
pub enum Flushed {
    /// Everything queued is written.
    Idle,
    /// Bytes are left; the next WRITABLE event (registered for good) writes
    /// them.
    Pending,
    Failed(io::Error),
}

/// What became of a frame handed to [`Conn::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The socket took all of it.
    Written,
    /// Some or all of it waits in the queue; `superseded` says whether it
    /// replaced an older snapshot there.
    Queued { superseded: bool },
}

/// A timer's verdict on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Time to ping it.
    Ping,
    /// Time for an SSE keep-alive comment.
    KeepAlive,
    /// Silent for two ping intervals: close with 1001.
    PingTimeout,
    /// Output pending and nothing taken for `--write-timeout`.
    WriteTimeout,
    /// No request started within `--handshake-timeout`: just close.
    HandshakeTimeout,
    /// A request started but not finished in time: answer 408 and close.
    RequestTimeout,
    /// Draining past its deadline: the peer never closed; remove it.
    LingerOver,
    /// Subscribed with a signed token whose `exp` has come.
    TokenExpired,
}

/// What a signed token said about the peer of the request that let it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// What the token grants: its `sub` names the peer in the log, and
    /// its `topics` are checked again for each topic a multiplexed
    /// connection subscribes to later.
    pub grant: Grant,
    /// The token's `exp`, on the loop's clock: a subscription opened with
    /// it is closed then.
    pub expires: Option<Instant>,
}

/// The timeouts a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub ping_interval: Duration,
    pub handshake: Duration,
}

/// A client connection and everything the loop knows about it.
#[derive(Debug)]
pub struct Conn {
    /// Monotonic id for logs; slab keys are reused, ids never are.
    id: u64,
    peer: SocketAddr,
    stream: TcpStream,
    /// On a TLS listener, the session every byte goes through.
    tls: Option<Box<Session>>,
    phase: Phase,
    /// Bytes read but not yet consumed. Empty (and unallocated) between
    /// messages, which for a dashboard is always.
    input: Vec<u8>,
    out: OutQueue,
    /// Since when output has been pending without the socket taking a byte.
    blocked_since: Option<Instant>,
    /// In the loop's list of connections to write this turn.
    dirty: bool,
    /// Accepted past `--max-connections`, into the reserve kept for
    /// `/healthz`: any other request gets 503.
    reserve: bool,
    /// An HTTP publish waits for Redis to order it: nothing more is read
    /// until it is answered, so answers keep the requests' order.
    awaiting: bool,
    /// Set by the signed token of its latest request, if one let it in;
    /// boxed, so a connection without one pays a pointer.
    identity: Option<Box<Identity>>,
}

/// How log lines name a connection: `conn=<id> peer=<addr>`, and the
/// token's `sub` when it has one (quoted: it is the issuer's text).
pub struct Tag<'a>(&'a Conn);

impl fmt::Display for Tag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn={} peer={}", self.0.id, self.0.peer)?;
        match self
            .0
            .identity
            .as_deref()
            .and_then(|i| i.grant.sub.as_deref())
        {
            Some(sub) => write!(f, " sub={sub:?}"),
            None => Ok(()),
        }
    }
}

pub(super) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Conn {
    pub fn new(id: u64, peer: SocketAddr, stream: TcpStream, now: Instant, reserve: bool) -> Conn {
        Conn {
            id,
            peer,
            stream,
            tls: None,
            phase: Phase::Http {
                since: now,
                reader: RequestReader::default(),
            },
            input: Vec::new(),
            out: OutQueue::default(),
            blocked_since: None,
            dirty: false,
            reserve,
            awaiting: false,
            identity: None,
        }
    }

    /// Speaks TLS through `session` from its first byte.
    pub fn speak_tls(&mut self, session: Session) {
        self.tls = Some(Box::new(session));
    }

    /// Output waits: queued, or encrypted and not yet sent.
    pub fn has_output(&self) -> bool {
        self.out.pending_bytes() > 0 || self.tls.as_deref().is_some_and(Session::wants_write)
    }

    /// `conn=.. peer=..` (and `sub=..`) for a log line.
    pub fn tag(&self) -> Tag<'_> {
        Tag(self)
    }

    /// Who the latest request's signed token said the peer is; `None`
    /// when no signed token let it in.
    pub fn set_identity(&mut self, identity: Option<Identity>) {
        self.identity = identity.map(Box::new);
    }

    /// An HTTP publish of its waits for Redis (`--redis`).
    pub fn is_awaiting(&self) -> bool {
        self.awaiting
    }

    pub fn set_awaiting(&mut self, awaiting: bool) {
        self.awaiting = awaiting;
    }

    /// Accepted into the `/healthz` reserve past `--max-connections`.
    pub fn in_reserve(&self) -> bool {
        self.reserve
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// An open WebSocket.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }

    /// Subscribed to a topic, by WebSocket or by SSE.
    pub fn is_subscriber(&self) -> bool {
        matches!(self.phase, Phase::Open { .. } | Phase::Stream { .. })
    }

    /// Still speaking HTTP: reading requests.
    pub fn is_http(&self) -> bool {
        matches!(self.phase, Phase::Http { .. })
    }

    /// The encoding its messages go out in; `None` before it subscribes.
    pub fn form(&self) -> Option<Form> {
        match &self.phase {
            Phase::Open { subs, .. } | Phase::Stream { subs, .. } => Some(subs.form()),
            _ => None,
        }
    }

    /// Whether its output is over `--max-queue-bytes` (`max`), each
    /// queued item counted with its overhead. A multiplexed connection
    /// holds a snapshot of each of its topics, so its snapshots may take
    /// `max` per topic; everything else it is sent (events, pongs, the
    /// answers to its commands) only `max`, or a client with many topics
    /// could pile up tiny items far past what one topic needs.
    pub fn over_limit(&self, max: usize) -> bool {
        match &self.phase {
            Phase::Open { subs, .. } | Phase::Stream { subs, .. } if subs.is_mux() => {
                let snapshots = self.out.snapshot_charge();
                let rest = self.out.charge().saturating_sub(snapshots);
                rest > max || snapshots > max.saturating_mul(subs.len().max(1))
            }
            _ => self.out.charge() > max,
        }
    }

    /// Answers to its commands queued and not yet written whole.
    pub fn unsent_replies(&self) -> usize {
        self.out.unsent_replies()
    }

    /// The signed token that let it in, if one did.
    pub fn grant(&self) -> Option<&Grant> {
        self.identity.as_deref().map(|i| &i.grant)
    }

    /// A Server-Sent Events stream.
    pub fn is_stream(&self) -> bool {
        matches!(self.phase, Phase::Stream { .. })
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done { .. })
    }

    /// Whether it is leaving: its last bytes are queued or written.
    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. } | Phase::Draining { .. })
    }

    /// What it is subscribed to, while open.
    pub fn subs(&self) -> Option<&Subs> {
        match &self.phase {
            Phase::Open { subs, .. } | Phase::Stream { subs, .. } => Some(subs),
            _ => None,
        }
    }

    pub fn subs_mut(&mut self) -> Option<&mut Subs> {
        match &mut self.phase {
            Phase::Open { subs, .. } | Phase::Stream { subs, .. } => Some(subs),
            _ => None,
        }
    }

    /// What a fanned-out snapshot is for this per-topic subscriber (see
    /// `Entry::pick`); `None` when it is not one.
    pub fn pick(&mut self, encoded: &Encoded<'_>) -> Option<Shared> {
        let (Phase::Open {
            subs: Subs::One(entry),
            ..
        }
        | Phase::Stream {
            subs: Subs::One(entry),
            ..
        }) = &mut self.phase
        else {
            return None;
        };
        let out = &self.out;
        entry.pick(encoded, || out.has_unstarted_snapshot(None))
    }

    /// What a fanned-out snapshot of topic `topic` is for this multiplexed
    /// connection (see `Entry::pick`), whose entry notes every seq
    /// queued, for its seq vector; `None` when it does not have the topic.
    pub fn pick_of(&mut self, topic: usize, encoded: &Encoded<'_>) -> Option<Shared> {
        let entry = match &mut self.phase {
            Phase::Open { subs, .. } | Phase::Stream { subs, .. } => subs.get_mut(topic)?,
            _ => return None,
        };
        if entry.sub.delta.is_none() {
            entry.queued = Some(encoded.seq);
        }
        let out = &self.out;
        entry.pick(encoded, || out.has_unstarted_snapshot(Some(topic)))
    }

    /// Told by the topic registry when a swap-remove moved this
    /// connection's place in topic `topic`'s subscriber list.
    pub fn moved_to(&mut self, topic: usize, index: usize) {
        if let Some(subs) = self.subs_mut() {
            subs.moved(topic, index);
        }
    }

    /// Drops whatever of topic `topic` has not started going out, when the
    /// client unsubscribed from it.
    pub fn drop_topic(&mut self, topic: usize) {
        self.out.drop_topic(topic);
    }

    pub fn has_input(&self) -> bool {
        !self.input.is_empty()
    }

    pub fn pending_bytes(&self) -> usize {
        self.out.pending_bytes()
    }

    /// Puts it in the loop's write list; false if it was there already.
    pub fn mark_dirty(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }

    // ----- input -----

    /// One read from the socket into `scratch` (through the TLS session,
    /// if any); data is kept only while the connection still reads
    /// requests or frames.
    pub fn receive(&mut self, scratch: &mut [u8], now: Instant) -> Received {
        let keep = matches!(self.phase, Phase::Http { .. } | Phase::Open { .. });
        let n = match self.tls.as_deref_mut() {
            Some(session) => match session.receive(&self.stream, scratch, &mut self.input) {
                Input::Data(n) => n,
                Input::WouldBlock => return Received::WouldBlock,
                Input::Eof => return Received::Eof,
                Input::NotTls => {
                    self.tls = None;
                    return Received::NotTls;
                }
                Input::Failed(e) => return Received::Failed(e),
            },
            None => match self.stream.read(scratch) {
                Ok(0) => return Received::Eof,
                Ok(n) => {
                    if keep {
                        let data = scratch.get(..n).unwrap_or_default();
                        self.input.extend_from_slice(data);
                    }
                    n
                }
                Err(e) if would_block(&e) => return Received::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    return self.receive(scratch, now);
                }
                Err(e) => return Received::Failed(e),
            },
        };
        match &mut self.phase {
            Phase::Open { last_heard, .. } => *last_heard = now,
            // An SSE client has nothing to say; after our last bytes, input
            // is read only to see the peer's end.
            _ if !keep => {
                self.input = Vec::new();
                return Received::Ignored(n);
            }
            _ => {}
        }
        Received::Data(n)
    }

    /// Removes `n` consumed bytes from the front of the input, releasing the
    /// buffer once it is empty so an idle connection holds none.
    fn consume(&mut self, n: usize) {
        if n >= self.input.len() {
            self.input = Vec::new();
        } else {
            self.input.drain(..n);
        }
    }

    /// Takes the next step of the request being read: a head to route and
    /// authorize, then (once [`admit`](Self::admit)ted) its body, as far
    /// as the input goes. What is used leaves the input.
    pub fn next_request(&mut self, now: Instant) -> Next {
        let Phase::Http { since, reader } = &mut self.phase else {
            return Next::Partial;
        };
        // A bug on purpose, for the test of the loop's panic boundary on
        // the read path; test builds only.
        #[cfg(test)]
        #[allow(clippy::panic)]
        if self.input.starts_with(PANIC_REQUEST) {
            panic!("a request-reader bug made for a test");
        }
        let (used, next) = reader.next(&self.input);
        if matches!(next, Next::Complete(..)) {
            *since = now;
        }
        self.consume(used);
        next
    }

    /// Whether an admitted request is reading its body.
    pub fn is_reading_body(&self) -> bool {
        matches!(&self.phase, Phase::Http { reader, .. } if reader.is_reading_body())
    }

    /// Lets the request whose head was just taken read its body, at most
    /// `max_body` bytes of it.
    pub fn admit(
        &mut self,
        head: Box<Head>,
        head_len: usize,
        route: Route,
        max_body: usize,
    ) -> Result<(), Response> {
        match &mut self.phase {
            Phase::Http { reader, .. } => reader.admit(head, head_len, route, max_body),
            _ => Ok(()),
        }
    }

    /// Decodes every complete frame in the input: answers pings and JSON
    /// pings, and reports a close the peer asked for or a protocol error.
    pub fn read_frames(&mut self, limits: Limits) -> Frames {
        let Phase::Open { decoder, subs, .. } = &mut self.phase else {
            return Frames::default();
        };
        let takes_commands = subs.is_mux();
        let mut frames = Frames::default();
        let mut used = 0;
        while frames.close.is_none() {
            let rest = self.input.get_mut(used..).unwrap_or_default();
            let (n, incoming) = match decoder.decode(rest, limits) {
                Ok((0, _)) => break,
                Ok(decoded) => decoded,
                Err(reason) => {
                    let cause = Close::Protocol(reason.code);
                    frames.close = Some((reason, cause));
                    break;
                }
            };
            used += n;
            let reply = match incoming {
                Some(Incoming::Ping(payload)) => {
                    let pong = protocol::encode_frame(OpCode::Control(Control::Pong), &payload);
                    Some(Reply::Pong(Shared::from(pong)))
                }
                Some(Incoming::Text(text)) => {
                    // A bug on purpose, for the test of the loop's panic
                    // boundary on the frame path; test builds only.
                    #[cfg(test)]
                    #[allow(clippy::panic)]
                    if text == PANIC_TEXT {
                        panic!("a frame-path bug made for a test");
                    }
                    let pong = protocol::json_pong(&text)
                        .map(|pong| Reply::Text(Shared::from(protocol::encode_text(&pong))));
                    if pong.is_none()
                        && takes_commands
                        && let Some(command) = mux::parse_command(&text)
                    {
                        frames.commands.push(command);
                    }
                    pong
                }
                // RFC 6455 §5.5.1: reply with a close, echoing the code.
                Some(Incoming::Close(code)) => {
                    let reason = CloseReason::new(code.unwrap_or(code::NORMAL), "bye");
                    frames.close = Some((reason, Close::ClientClosed));
                    None
                }
                Some(Incoming::Binary | Incoming::Pong) | None => None,
            };
            if let Some(reply) = reply {
                frames.replies.push(reply);
            }
        }
        self.consume(used);
        frames
    }

    // ----- output -----

    /// Queues `out` by its rule; returns whether it superseded something.
    /// Called by `Conns::enqueue` and `deliver`; `Conns` checks the limit.
    pub fn enqueue(&mut self, out: Out) -> bool {
        self.out.enqueue(out)
    }

    /// Queues a pong (`json`: the answer to a JSON ping), `keep` of its
    /// kind at most unsent; one replaced counts toward a ping flood until
    /// the queue next drains.
    pub fn enqueue_pong(&mut self, pong: Shared, keep: usize, json: bool) -> bool {
        let replaced = self.out.push_pong(pong, keep, json);
        if let (true, Phase::Open { pongs_dropped, .. }) = (replaced, &mut self.phase) {
            *pongs_dropped = pongs_dropped.saturating_add(1);
        }
        replaced
    }

    /// Sends a fanned-out frame at once when nothing is queued before it:
    /// one `send` and no queue is the common case of a delivery. What the
    /// socket does not take is queued; the caller then applies the limit
    /// and schedules the write.
    pub fn deliver(
        &mut self,
        out: Out,
        now: Instant,
        done: &mut impl FnMut(Instant),
    ) -> (Delivered, usize) {
        if !self.out.is_empty() || self.is_done() || out.has_tail() {
            let superseded = self.enqueue(out);
            return (Delivered::Queued { superseded }, 0);
        }
        // On an error the frame is queued whole: the write pass meets the
        // error again and ends the connection, outside the walk over
        // subscribers.
        let mut wire = Wire::new(&self.stream, &mut self.tls);
        let written = self
            .out
            .write_through(&mut wire, out, done)
            .unwrap_or_default();
        if self.out.is_empty() {
            return (Delivered::Written, written);
        }
        self.blocked_since.get_or_insert(now);
        (Delivered::Queued { superseded: false }, written)
    }

    /// Whether its pings outrun its reading by more than `limit` pongs: a
    /// flood, which conflation keeps small but must not keep forever.
    pub fn ping_flooding(&self, limit: u32) -> bool {
        matches!(self.phase, Phase::Open { pongs_dropped, .. } if pongs_dropped > limit)
    }

    /// Completes the upgrade; the loop queues the 101 and the snapshots.
    pub fn open(&mut self, subs: impl Into<Subs>, now: Instant) {
        let subs = subs.into();
        self.phase = Phase::Open {
            decoder: Decoder::new(subs.form() == Form::Deflate),
            subs,
            last_heard: now,
            last_ping: now,
            pongs_dropped: 0,
        };
    }

    /// Starts an SSE stream; the loop queues the response head and the
    /// snapshots.
    pub fn open_stream(&mut self, subs: impl Into<Subs>, now: Instant) {
        self.phase = Phase::Stream {
            subs: subs.into(),
            last_comment: now,
        };
    }

    /// Ends an SSE stream: what has not started going out is dropped, and
    /// the connection closes once the rest is written. Returns the
    /// subscriptions to give back.
    pub fn end_stream(&mut self, cause: Close) -> Option<Subs> {
        if !self.is_stream() {
            return None;
        }
        self.out.drop_unstarted();
        self.blocked_since = None;
        self.leave(Phase::Closing { cause })
    }

    /// Moves to `next`, handing back the subscriptions it held.
    fn leave(&mut self, next: Phase) -> Option<Subs> {
        match std::mem::replace(&mut self.phase, next) {
            Phase::Open { subs, .. } | Phase::Stream { subs, .. } => Some(subs),
            _ => None,
        }
    }

    /// After a response that ends the exchange: nothing more is read.
    pub fn end_http(&mut self, cause: Close) {
        self.input = Vec::new();
        self.phase = Phase::Closing { cause };
    }

    /// Starts the closing handshake: whatever has not started going out is
    /// dropped, for the close frame the loop queues next. Returns the
    /// subscriptions the caller must give back to the topic registry.
    pub fn close_ws(&mut self, cause: Close) -> Option<Subs> {
        if !self.is_subscriber() {
            return None;
        }
        self.out.drop_unstarted();
        // The close frame gets a full write timeout of its own.
        self.blocked_since = None;
        self.leave(Phase::Closing { cause })
    }

    /// Marks it for removal. Returns `None` if it already was; otherwise
    /// the subscriptions (if any) the caller must give back. A connection
    /// already closing keeps the cause it is closing for.
    pub fn finish(&mut self, cause: Close) -> Option<Option<Subs>> {
        let cause = match self.phase {
            Phase::Done { .. } => return None,
            Phase::Closing { cause } | Phase::Draining { cause, .. } => cause,
            _ => cause,
        };
        Some(self.leave(Phase::Done { cause }))
    }

    /// Why it is leaving, once it is.
    pub fn cause(&self) -> Option<Close> {
        match self.phase {
            Phase::Closing { cause } | Phase::Draining { cause, .. } | Phase::Done { cause } => {
                Some(cause)
            }
            _ => None,
        }
    }

    /// Writes what the socket takes. Once a closing connection's last bytes
    /// are out, shuts its write side and starts draining: reading until the
    /// peer closes so a reset cannot destroy what was sent.
    pub fn flush(&mut self, now: Instant, done: &mut impl FnMut(Instant)) -> (Flushed, usize) {
        self.dirty = false;
        if self.is_done() {
            return (Flushed::Idle, 0);
        }
        let mut wire = Wire::new(&self.stream, &mut self.tls);
        let written = match self.out.write_to(&mut wire, done) {
            Ok(n) => n,
            Err(e) => return (Flushed::Failed(e), 0),
        };
        // What the session took may wait in it, encrypted.
        let sealed = match self.tls.as_deref_mut().map(|s| s.send(&self.stream)) {
            Some(Err(e)) => return (Flushed::Failed(e), written),
            Some(Ok(left)) => left,
            None => false,
        };
        if !self.out.is_empty() || sealed {
            if written > 0 || self.blocked_since.is_none() {
                self.blocked_since = Some(now);
            }
            return (Flushed::Pending, written);
        }
        self.blocked_since = None;
        if let Phase::Open { pongs_dropped, .. } = &mut self.phase {
            *pongs_dropped = 0;
        }
        if let Phase::Closing { cause } = self.phase {
            if let Some(session) = self.tls.as_deref_mut() {
                session.close_notify();
                let _ = session.send(&self.stream);
            }
            let _ = self.stream.shutdown(Shutdown::Write);
            self.phase = Phase::Draining {
                cause,
                deadline: now + LINGER,
            };
        }
        (Flushed::Idle, written)
    }

    // ----- timers -----

    /// Since when its output has been pending with no byte taken.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.blocked_since
    }

    /// What the clock says about this connection now. The write timeout is
    /// the registry's output policy, checked there.
    pub fn due(&mut self, now: Instant, limits: &Timeouts) -> Option<Due> {
        let expired = self
            .identity
            .as_deref()
            .and_then(|i| i.expires)
            .is_some_and(|at| now >= at);
        match &mut self.phase {
            Phase::Done { .. } => None,
            Phase::Open { .. } | Phase::Stream { .. } if expired => Some(Due::TokenExpired),
            Phase::Http { since, reader } if now.duration_since(*since) >= limits.handshake => {
                Some(if self.input.is_empty() && !reader.is_reading_body() {
                    Due::HandshakeTimeout
                } else {
                    Due::RequestTimeout
                })
            }
            Phase::Open {
                last_heard,
                last_ping,
                ..
            } => {
                // Saturating: `Duration * 2` panics past its range, and
                // `--ping-interval` may be as long as an option can say.
                let silence = limits.ping_interval.saturating_mul(2);
                if now.duration_since(*last_heard) >= silence {
                    Some(Due::PingTimeout)
                } else if now.duration_since(*last_ping) >= limits.ping_interval {
                    *last_ping = now;
                    Some(Due::Ping)
                } else {
                    None
                }
            }
            Phase::Stream { last_comment, .. }
                if now.duration_since(*last_comment) >= limits.ping_interval =>
            {
                *last_comment = now;
                Some(Due::KeepAlive)
            }
            Phase::Draining { deadline, .. } if now >= *deadline => Some(Due::LingerOver),
            _ => None,
        }
    }
}

/// Where a connection's output goes: the socket, or the TLS session that
/// encrypts it on its way there.
enum Wire<'a> {
    Plain(Sender<'a, TcpStream>),
    Tls(TlsWriter<'a>),
}

impl<'a> Wire<'a> {
    fn new(stream: &'a TcpStream, tls: &'a mut Option<Box<Session>>) -> Wire<'a> {
        match tls.as_deref_mut() {
            Some(session) => Wire::Tls(session.writer(stream)),
            None => Wire::Plain(Sender(stream)),
        }
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(w) => w.write(buf),
            Wire::Tls(w) => w.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Wire::Plain(w) => w.write_vectored(bufs),
            Wire::Tls(w) => w.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::protocol::encode_close;

    const LIMITS: Limits = Limits {
        max_message: 4096,
        max_fragments: 128,
    };

    /// A connected pair: our side as the server's mio stream, and the peer.
    fn pair() -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, addr) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let conn = Conn::new(1, addr, TcpStream::from_std(ours), Instant::now(), false);
        (conn, peer)
    }

    fn sub() -> crate::topic::Subscription {
        crate::topic::Subscription {
            topic: 0,
            index: 0,
            form: crate::topic::Form::Frame,
            delta: None,
            mux: false,
        }
    }

    /// A closing connection whose last bytes are written shuts its write
    /// side and drains until its deadline; the peer sees the bytes, then EOF.
    #[test]
    fn a_written_close_moves_to_draining_and_the_peer_sees_eof() {
        let (mut conn, mut peer) = pair();
        let now = Instant::now();
        conn.open(sub(), now);
        let reason = CloseReason::new(code::GOING_AWAY, "going away");
        assert_eq!(conn.close_ws(Close::Shutdown), Some(sub().into()));
        conn.enqueue(Out::Bytes(Shared::from(encode_close(&reason))));
        assert!(matches!(conn.phase(), Phase::Closing { .. }));
        assert!(matches!(conn.flush(now, &mut |_| {}).0, Flushed::Idle));
        match conn.phase() {
            Phase::Draining { cause, deadline } => {
                assert_eq!(*cause, Close::Shutdown);
                assert_eq!(*deadline, now + LINGER);
            }
            other => panic!("expected Draining, got {other:?}"),
        }
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert!(got.ends_with(&encode_close(&reason)), "{got:?}");
        let limits = Timeouts {
            ping_interval: Duration::from_secs(20),
            handshake: Duration::from_secs(10),
        };
        assert_eq!(conn.due(now, &limits), None);
        assert_eq!(conn.due(now + LINGER, &limits), Some(Due::LingerOver));
    }

    /// The longest `--ping-interval` an option can say is a verdict like
    /// any other, not an overflow in the timer pass.
    #[test]
    fn the_longest_ping_interval_is_no_overflow() {
        let (mut conn, _peer) = pair();
        let now = Instant::now();
        conn.open(sub(), now);
        let limits = Timeouts {
            ping_interval: Duration::from_secs(u64::MAX),
            handshake: Duration::from_secs(10),
        };
        assert_eq!(conn.due(now + Duration::from_secs(3600), &limits), None);
    }

    /// Output the peer does not take stays pending, stalled since the write
    /// that left it; a write that takes bytes moves that instant on.
    #[test]
    fn unread_output_is_pending_and_stalled() {
        let (mut conn, mut peer) = pair();
        let now = Instant::now();
        conn.open(sub(), now);
        assert_eq!(conn.stalled_since(), None);
        conn.enqueue(Out::Bytes(Shared::from(vec![b'x'; 64 << 20])));
        assert!(matches!(conn.flush(now, &mut |_| {}).0, Flushed::Pending));
        assert_eq!(conn.stalled_since(), Some(now));
        let later = now + Duration::from_millis(300);
        assert!(matches!(conn.flush(later, &mut |_| {}).0, Flushed::Pending));
        assert_eq!(conn.stalled_since(), Some(now), "nothing was taken");
        let mut buf = vec![0; 1 << 20];
        peer.read_exact(&mut buf).unwrap();
        let _ = conn.flush(later, &mut |_| {});
        assert_eq!(conn.stalled_since(), Some(later), "bytes were taken");
    }

    /// A close frame from the client is answered with the same code; a bad
    /// frame is a protocol error with its close code.
    #[test]
    fn frames_report_the_close_they_call_for() {
        let (mut conn, _peer) = pair();
        conn.open(sub(), Instant::now());
        conn.input = protocol::encode_masked(0x88, &1000u16.to_be_bytes(), [1, 2, 3, 4]);
        let frames = conn.read_frames(LIMITS);
        let (reason, cause) = frames.close.expect("a close");
        assert_eq!((reason.code, cause), (1000, Close::ClientClosed));

        conn.open(sub(), Instant::now());
        // Unmasked client frames break RFC 6455 §5.1.
        conn.input = vec![0x81, 0x01, b'a'];
        let (reason, cause) = conn.read_frames(LIMITS).close.expect("a close");
        assert_eq!((reason.code, cause), (1002, Close::Protocol(1002)));
    }

    /// Finishing keeps the cause a closing connection is leaving for, and
    /// hands back the subscription exactly once.
    #[test]
    fn finish_keeps_the_first_cause_and_reports_once() {
        let (mut conn, _peer) = pair();
        conn.open(sub(), Instant::now());
        assert_eq!(conn.finish(Close::PeerGone), Some(Some(sub().into())));
        assert_eq!(conn.finish(Close::PeerGone), None);
        assert_eq!(conn.cause(), Some(Close::PeerGone));

        let (mut conn, _peer) = pair();
        conn.end_http(Close::HttpDone);
        assert_eq!(conn.finish(Close::PeerGone), Some(None));
        assert_eq!(conn.cause(), Some(Close::HttpDone));
    }
}
