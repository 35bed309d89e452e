//! One client connection: its socket, its lifecycle, its input bytes and its
//! output queue. The loop in `server.rs` decides what happens to it; this
//! file only holds the state and the small steps that keep it consistent.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use crate::server::queue::OutQueue;
use crate::wire::protocol::{CloseReason, Decoder, encode_close};

/// Where a connection is in its life.
#[derive(Debug)]
pub enum Phase {
    /// Speaking HTTP/1.1: reading request heads and bodies, possibly several
    /// on one keep-alive connection.
    Http {
        /// A `100 Continue` went out for the request being read.
        continue_sent: bool,
    },
    /// An upgraded WebSocket, subscribed to one topic.
    Open {
        topic: usize,
        /// This connection's index in the topic's subscriber list.
        sub_index: usize,
        decoder: Decoder,
        /// When the client last sent anything (a pong counts).
        last_heard: Instant,
        /// When the server last pinged it.
        last_ping: Instant,
    },
    /// The last bytes (a close frame or a final HTTP response) are queued.
    /// Until they are written `--write-timeout` applies; then the write side
    /// is shut and the connection is forgotten when the peer closes too, or
    /// at `deadline`.
    Closing {
        /// Set when the write side is shut.
        deadline: Option<Instant>,
        /// Why, for the log line when the connection goes.
        reason: Cow<'static, str>,
    },
}

impl Phase {
    pub fn is_open(&self) -> bool {
        matches!(self, Phase::Open { .. })
    }

    pub fn is_closing(&self) -> bool {
        matches!(self, Phase::Closing { .. })
    }
}

/// A client connection and everything the loop knows about it.
#[derive(Debug)]
pub struct Conn {
    /// Monotonic id for logs; slab keys are reused, ids never are.
    pub id: u64,
    pub peer: SocketAddr,
    pub stream: TcpStream,
    pub phase: Phase,
    /// Bytes read but not yet consumed. Empty (and unallocated) between
    /// messages, which for a dashboard is always.
    pub input: Vec<u8>,
    pub out: OutQueue,
    /// When the current HTTP request began (accept time for the first);
    /// the handshake timeout runs from here.
    pub since: Instant,
    /// Since when output has been pending without the socket taking a byte.
    pub blocked_since: Option<Instant>,
    /// WRITABLE interest is registered: only while output is pending.
    pub writable: bool,
    /// Queued in the loop's list of connections to flush this turn.
    pub dirty: bool,
    /// The write side has been shut after the last bytes went out.
    pub write_shut: bool,
    /// Set when the connection is to be removed, with the reason logged.
    pub done: Option<Cow<'static, str>>,
}

impl Conn {
    pub fn new(id: u64, peer: SocketAddr, stream: TcpStream, now: Instant) -> Conn {
        Conn {
            id,
            peer,
            stream,
            phase: Phase::Http {
                continue_sent: false,
            },
            input: Vec::new(),
            out: OutQueue::default(),
            since: now,
            blocked_since: None,
            writable: false,
            dirty: false,
            write_shut: false,
            done: None,
        }
    }

    /// Removes `n` consumed bytes from the front of the input, releasing the
    /// buffer once it is empty so an idle connection holds none.
    pub fn consume(&mut self, n: usize) {
        if n >= self.input.len() {
            self.input = Vec::new();
        } else {
            self.input.drain(..n);
        }
    }

    /// Queues bytes owned by this connection alone.
    pub fn queue(&mut self, bytes: Vec<u8>) {
        self.out.push(Arc::from(bytes));
    }

    /// Replaces whatever has not started going out with a close frame and
    /// moves to `Closing`. The caller unsubscribes the connection first.
    pub fn queue_close(&mut self, reason: &CloseReason) {
        self.out.drop_unstarted();
        self.queue(encode_close(reason));
        // The close frame gets a full write timeout of its own.
        self.blocked_since = None;
        self.phase = Phase::Closing {
            deadline: None,
            reason: format!("sent close {reason}").into(),
        };
    }
}
