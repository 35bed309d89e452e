//! The WebSocket clients: a hand-rolled mio client per connection, one
//! prepared upgrade request, large reads, no per-message allocation.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::measure::now_ns;
use crate::options::Options;
use crate::schedule::http_post;
use crate::tls::{self, Session};

pub(crate) const UPGRADE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum ClientState {
    Connecting,
    Handshaking,
    Open,
    Closed,
}

pub(crate) struct Client {
    pub(crate) stream: TcpStream,
    pub(crate) state: ClientState,
    /// A partial frame carried over between reads; empty almost always.
    pub(crate) partial: Vec<u8>,
    /// The snapshot sent on connect has arrived.
    pub(crate) snapshot: bool,
    /// Index of the last message received, for loss and order checks.
    pub(crate) last: Option<u64>,
    pub(crate) received: u64,
    /// Warm-up messages received (they carry `"w"` instead of `"i"`).
    pub(crate) warmed: u64,
    pub(crate) stalled: bool,
    pub(crate) close_code: Option<u16>,
    /// Its place among the clients, which says its topic.
    pub(crate) index: u32,
    /// Its TLS session under `--tls`.
    pub(crate) tls: Option<Session>,
}

impl Client {
    /// Plaintext from the server into `buf`, through its TLS session if
    /// it has one.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            Some(session) => session.recv(&mut self.stream, buf),
            None => self.stream.read(buf),
        }
    }

    /// Sends `bytes`, through its TLS session if it has one.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.tls.as_mut() {
            Some(session) => session.send(&mut self.stream, bytes),
            None => self.stream.write(bytes).map(drop),
        }
    }
}

/// Everything the clients observed.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) snapshots: usize,
    pub(crate) latencies_us: Vec<u32>,
    pub(crate) deliveries: u64,
    pub(crate) out_of_order: u64,
    pub(crate) last_delivery_ns: u64,
    pub(crate) closed: usize,
    /// Clients the server closed before their snapshot came: not waited
    /// for, and reported.
    pub(crate) unanswered: usize,
    /// Frame bytes (header and payload) of the measured deliveries.
    pub(crate) wire_bytes: u64,
    /// Deliveries that came compressed.
    pub(crate) compressed: u64,
    /// Dashboards run: every message is a delivery, and each snapshot's
    /// `(client, seq, received at)` is kept to be matched with its publish.
    pub(crate) dashboards: bool,
    pub(crate) samples: Vec<(u32, u64, u64)>,
    /// Dashboards run: events (no seq) received.
    pub(crate) events: u64,
}

/// Inflates permessage-deflate messages with one inflater for every
/// connection, never reset: with no context takeover each message is a
/// run of whole deflate blocks that refers to nothing before it, so the
/// inflater's state between messages is harmless, and skipping the reset
/// (which clears its 32 KiB window) saves work. Output goes into a slice
/// zeroed once: `decompress_vec` would zero a vector's whole spare capacity
/// on every call. The generator inflates every message of every client on
/// one core.
pub(crate) struct Inflater {
    inflater: flate2::Decompress,
    input: Vec<u8>,
    out: Vec<u8>,
}

impl Inflater {
    fn new() -> Inflater {
        Inflater {
            inflater: flate2::Decompress::new(false),
            input: Vec::new(),
            out: vec![0; 1 << 20],
        }
    }

    /// The message `payload` carries, inflated (RFC 7692 §7.2.2).
    fn inflate(&mut self, payload: &[u8]) -> io::Result<&[u8]> {
        self.input.clear();
        self.input.extend_from_slice(payload);
        self.input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let (read, wrote) = (self.inflater.total_in(), self.inflater.total_out());
        self.inflater
            .decompress(&self.input, &mut self.out, flate2::FlushDecompress::Sync)
            .map_err(io::Error::other)?;
        if (self.inflater.total_in() - read) as usize != self.input.len() {
            return Err(io::Error::other("a compressed message inflates past 1 MiB"));
        }
        Ok(&self.out[..(self.inflater.total_out() - wrote) as usize])
    }
}

pub(crate) struct Clients {
    pub(crate) poll: Poll,
    pub(crate) clients: Vec<Client>,
    pub(crate) scratch: Vec<u8>,
    /// One upgrade request per topic; client `k` uses `k % len`.
    pub(crate) requests: Vec<Vec<u8>>,
    pub(crate) tally: Tally,
    pub(crate) inflater: Inflater,
    /// Sockets made by `prepare`, not yet connected.
    spare: std::collections::VecDeque<(Token, TcpStream)>,
}

/// Parses the decimal number after `key` in `text`.
pub(crate) fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

impl Clients {
    /// Clients of `topic`; with `deflate`, they offer permessage-deflate the
    /// way Chromium does.
    pub(crate) fn new(topic: &str, host: SocketAddr, deflate: bool) -> io::Result<Clients> {
        Clients::of(&[topic], host, deflate)
    }

    /// Clients spread over `topics` in turn: a dashboard's sockets when
    /// the count is a multiple of them.
    pub(crate) fn of(topics: &[&str], host: SocketAddr, deflate: bool) -> io::Result<Clients> {
        let offer = if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let requests = topics.iter().map(|topic| {
            format!(
                "GET /api/v1/ws/{topic} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
            )
            .into_bytes()
        });
        Ok(Clients {
            poll: Poll::new()?,
            clients: Vec::new(),
            scratch: vec![0; 256 << 10],
            requests: requests.collect(),
            tally: Tally::default(),
            inflater: Inflater::new(),
            spare: std::collections::VecDeque::new(),
        })
    }

    /// Makes `n` unconnected sockets, registered for reading under the
    /// tokens of the next `n` clients, for `open` to use: a timed `open`
    /// then charges the generator for connecting, not for making and
    /// registering its own sockets (a `socket()` and an `epoll_ctl`, about
    /// a sixth of its CPU per connect), which a browser does on its own
    /// machine. For a fresh `Clients` only: it takes every event pending.
    pub(crate) fn prepare(&mut self, n: usize) -> io::Result<()> {
        use socket2::{Domain, Protocol, Socket, Type};
        let first = self.clients.len() + self.spare.len();
        self.spare.reserve(n);
        for k in 0..n {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(socket.into());
            let token = Token(first + k);
            self.poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)?;
            self.spare.push_back((token, stream));
        }
        // An unconnected socket polls as hung up: those events are taken
        // now, so that none is left for the clients' turns.
        let mut events = Events::with_capacity(4096);
        loop {
            self.poll.poll(&mut events, Some(Duration::ZERO))?;
            if events.is_empty() {
                return Ok(());
            }
        }
    }

    /// A non-blocking connect to `addr` for the next client: from a
    /// prepared socket (registered for reading) if one is left and `addr`
    /// is IPv4 as they are, else from a new unregistered one.
    fn connect(&mut self, addr: SocketAddr) -> io::Result<(TcpStream, bool)> {
        let next = Token(self.clients.len());
        let usable = addr.is_ipv4() && self.spare.front().is_some_and(|(token, _)| *token == next);
        let spare = if usable { self.spare.pop_front() } else { None };
        match spare {
            Some((_, stream)) => {
                match socket2::SockRef::from(&stream).connect(&addr.into()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(e) => return Err(e),
                }
                Ok((stream, true))
            }
            None => Ok((TcpStream::connect(addr)?, false)),
        }
    }

    /// Opens `n` more connections, a bounded number in flight at a time,
    /// and waits until every open one holds its snapshot.
    pub(crate) fn open(
        &mut self,
        addr: SocketAddr,
        n: usize,
        stalled: usize,
        deadline: Duration,
    ) -> io::Result<()> {
        let start = Instant::now();
        let target = self.clients.len() + n;
        let first_stalled = target - stalled;
        let mut events = Events::with_capacity(4096);
        let done = |tally: &Tally| tally.snapshots + tally.unanswered;
        while done(&self.tally) < target {
            // Connecting and handshaking clients; bounded so the listen
            // backlog never overflows.
            while self.clients.len() < target && self.clients.len() - done(&self.tally) < 2048 {
                let (mut stream, registered) = self.connect(addr)?;
                let token = Token(self.clients.len());
                let request = &self.requests[token.0 % self.requests.len()];
                let mut tls = tls::session()?;
                // On loopback the connection is usually up by now: send the
                // upgrade (under TLS, the hello, the session holding the
                // upgrade until the handshake is done) at once and skip a
                // round of readiness events.
                let state = match tls.as_mut() {
                    Some(session) => match session.send(&mut stream, request) {
                        Ok(()) => ClientState::Handshaking,
                        Err(_) => ClientState::Connecting,
                    },
                    None => match stream.write(request) {
                        Ok(n) if n == request.len() => ClientState::Handshaking,
                        Ok(_) => {
                            return Err(io::Error::other("short write of the upgrade request"));
                        }
                        Err(_) => ClientState::Connecting,
                    },
                };
                let interest = if state == ClientState::Connecting {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if !registered {
                    self.poll
                        .registry()
                        .register(&mut stream, token, interest)?;
                } else if state == ClientState::Connecting {
                    self.poll
                        .registry()
                        .reregister(&mut stream, token, interest)?;
                }
                let index = self.clients.len();
                self.clients.push(Client {
                    stream,
                    state,
                    partial: Vec::new(),
                    snapshot: false,
                    last: None,
                    received: 0,
                    warmed: 0,
                    stalled: index >= first_stalled,
                    close_code: None,
                    index: index as u32,
                    tls,
                });
            }
            self.turn(&mut events, Some(Duration::from_millis(50)))?;
            if start.elapsed() > deadline {
                return Err(io::Error::other(format!(
                    "only {} of {target} snapshots after {deadline:?}",
                    self.tally.snapshots
                )));
            }
        }
        Ok(())
    }

    /// Publishes `--warmup` messages one at a time, each waited for until
    /// every healthy client has it. Measured here: on fresh loopback
    /// connections the first ten to fifteen rounds of 16 KiB frames cost
    /// the writer about 60% more per write than later ones, which would
    /// charge a one-off start-up cost to the per-delivery figure.
    pub(crate) fn warm_up(&mut self, addr: SocketAddr, o: &Options) -> io::Result<()> {
        let pad = "x".repeat(o.payload.saturating_sub(20));
        let mut events = Events::with_capacity(4096);
        for k in 0..o.warmup as u64 {
            http_post(
                addr,
                "/api/v1/publish/load",
                &format!(r#"{{"w":{k},"p":"{pad}"}}"#),
            )?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while self
                .clients
                .iter()
                .any(|c| !c.stalled && c.state == ClientState::Open && c.warmed <= k)
            {
                if Instant::now() > deadline {
                    return Err(io::Error::other(format!(
                        "warm-up publish {k} not delivered in 30 s"
                    )));
                }
                self.turn(&mut events, Some(Duration::from_millis(20)))?;
            }
        }
        Ok(())
    }

    pub(crate) fn turn(
        &mut self,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.poll.poll(events, timeout)?;
        for event in events.iter() {
            let index = event.token().0;
            let closing = event.is_read_closed() || event.is_error();
            self.ready(index, event.is_writable(), closing)?;
        }
        Ok(())
    }

    /// A connecting client that became writable: its connect's outcome,
    /// then its upgrade request (under TLS, what its session holds).
    fn connected(&mut self, index: usize) -> io::Result<()> {
        let client = &mut self.clients[index];
        match client.stream.take_error() {
            Ok(Some(e)) | Err(e) => {
                return Err(io::Error::other(format!("connect failed: {e}")));
            }
            Ok(None) => {}
        }
        let request = &self.requests[index % self.requests.len()];
        let sent = match client.tls.as_mut() {
            // The hello and the upgrade are in the session already.
            Some(session) => session.flush(&mut client.stream).map(|()| request.len()),
            None => client.stream.write(request),
        };
        match sent {
            Ok(n) if n == request.len() => {}
            Ok(_) => return Err(io::Error::other("short write of the upgrade request")),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(e),
        }
        client.state = ClientState::Handshaking;
        self.poll
            .registry()
            .reregister(&mut client.stream, Token(index), Interest::READABLE)
    }

    /// Handles readiness of client `index`; `closing` when the event says
    /// the peer has closed, or errored, so that its end is read now.
    pub(crate) fn ready(&mut self, index: usize, writable: bool, closing: bool) -> io::Result<()> {
        if self.clients[index].state == ClientState::Connecting && writable {
            self.connected(index)?;
        }
        let client = &self.clients[index];
        if client.state == ClientState::Connecting || client.state == ClientState::Closed {
            return Ok(());
        }
        loop {
            let client = &mut self.clients[index];
            if client.stalled && client.snapshot {
                return Ok(());
            }
            let n = match client.recv(&mut self.scratch) {
                Ok(0) => {
                    client.state = ClientState::Closed;
                    self.tally.closed += 1;
                    self.tally.unanswered += usize::from(!client.snapshot);
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    client.state = ClientState::Closed;
                    self.tally.closed += 1;
                    self.tally.unanswered += usize::from(!client.snapshot);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let received_at = now_ns();
            // Frames are parsed where they landed; only a trailing partial
            // frame is copied.
            let mut data = std::mem::take(&mut client.partial);
            let buf: &[u8] = if data.is_empty() {
                &self.scratch[..n]
            } else {
                data.extend_from_slice(&self.scratch[..n]);
                &data
            };
            let used = process(
                client,
                buf,
                received_at,
                &mut self.tally,
                &mut self.inflater,
            )?;
            let rest = buf[used..].to_vec();
            let client = &mut self.clients[index];
            client.partial = rest;
            // A short read emptied the socket, and epoll (edge-triggered)
            // reports any byte that comes after it: the read that would
            // only say EAGAIN is skipped, a tenth of a connect's reads.
            // Not when the event said the peer closed (its EOF came with
            // the same edge, so it must be read now), nor under TLS, whose
            // session may hold plaintext it has not handed out.
            if n < self.scratch.len() && !closing && client.tls.is_none() {
                return Ok(());
            }
        }
    }
}

/// Consumes complete frames (and the 101) from `buf`; returns bytes used.
/// Tallies one text message of `wire` bytes on the wire.
fn text(
    client: &mut Client,
    payload: &[u8],
    wire: u64,
    compressed: bool,
    at: u64,
    tally: &mut Tally,
) {
    if !client.snapshot {
        client.snapshot = true;
        tally.snapshots += 1;
    } else if tally.dashboards {
        match number_after(payload, b"\"seq\":") {
            Some(seq) => tally.samples.push((client.index, seq, at)),
            None => tally.events += 1,
        }
        tally.deliveries += 1;
        tally.wire_bytes += wire;
        tally.compressed += u64::from(compressed);
    } else if let (Some(i), Some(t)) = (
        number_after(payload, b"\"i\":"),
        number_after(payload, b"\"t\":"),
    ) {
        if client.last.is_some_and(|last| i <= last) {
            tally.out_of_order += 1;
        }
        client.last = Some(i);
        client.received += 1;
        tally.deliveries += 1;
        tally.wire_bytes += wire;
        tally.compressed += u64::from(compressed);
        tally
            .latencies_us
            .push((at.saturating_sub(t) / 1000) as u32);
        tally.last_delivery_ns = at;
    } else if number_after(payload, b"\"w\":").is_some() {
        client.warmed += 1;
    }
}

pub(crate) fn process(
    client: &mut Client,
    buf: &[u8],
    at: u64,
    tally: &mut Tally,
    inflater: &mut Inflater,
) -> io::Result<usize> {
    let mut used = 0;
    if client.state == ClientState::Handshaking {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(0);
        };
        if !buf.starts_with(b"HTTP/1.1 101") {
            return Err(io::Error::other(format!(
                "upgrade refused: {}",
                String::from_utf8_lossy(&buf[..end])
            )));
        }
        used = end + 4;
        client.state = ClientState::Open;
    }
    loop {
        let rest = &buf[used..];
        if rest.len() < 2 {
            return Ok(used);
        }
        let (len, header) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return Ok(used),
            n => (n as usize, 2),
        };
        if rest.len() < header + len {
            return Ok(used);
        }
        let compressed = rest[0] & 0x40 != 0;
        let payload = if compressed {
            inflater.inflate(&rest[header..header + len])?
        } else {
            &rest[header..header + len]
        };
        match rest[0] & 0x0f {
            0x1 => text(
                client,
                payload,
                (header + len) as u64,
                compressed,
                at,
                tally,
            ),
            0x9 => {
                // The mask is fixed: nothing here is secret.
                let pong = statecast::wire::protocol::encode_masked(0x8A, payload, [1, 2, 3, 4]);
                let _ = client.send(&pong);
            }
            0x8 => {
                client.close_code = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            }
            _ => {}
        }
        used += header + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client the server closes before its snapshot is counted as
    /// unanswered, and `open` returns rather than wait for it until its
    /// deadline.
    #[test]
    fn a_client_closed_before_its_snapshot_is_not_waited_for() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || drop(listener.accept().unwrap()));
        let mut clients = Clients::new("load", addr, false).unwrap();
        clients.open(addr, 1, 0, Duration::from_secs(10)).unwrap();
        server.join().unwrap();
        assert_eq!((clients.tally.snapshots, clients.tally.unanswered), (0, 1));
    }

    /// Prepared sockets are used in order, and those not connected yet
    /// (which poll as hung up) give the turns of `open` no event.
    #[test]
    fn prepared_sockets_give_no_event_until_connected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || drop(listener.accept().unwrap()));
        let mut clients = Clients::new("load", addr, false).unwrap();
        clients.prepare(4).unwrap();
        clients.open(addr, 1, 0, Duration::from_secs(10)).unwrap();
        server.join().unwrap();
        assert_eq!((clients.tally.snapshots, clients.tally.unanswered), (0, 1));
        assert_eq!(clients.spare.len(), 3);
        let mut events = Events::with_capacity(16);
        clients
            .poll
            .poll(&mut events, Some(Duration::ZERO))
            .unwrap();
        assert!(events.is_empty());
    }

    /// A close that comes with the last bytes, in one edge of readiness,
    /// is seen in that turn: the short read that would end the turn early
    /// is not taken when the event says the peer has closed.
    #[test]
    fn a_close_that_comes_with_data_is_seen_in_the_same_turn() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(b"HTTP/1.1 101 Switching").unwrap();
        drop(server);
        // Both the bytes and the FIN are in the client's socket before its
        // first turn (on loopback almost always at once; waited for, since
        // a loaded machine may defer them).
        let mut fd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&client),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd it is given.
        assert_eq!(unsafe { libc::poll(&mut fd, 1, 10_000) }, 1);
        client.set_nonblocking(true).unwrap();
        let mut clients = Clients::new("load", addr, false).unwrap();
        let mut stream = TcpStream::from_std(client);
        clients
            .poll
            .registry()
            .register(&mut stream, Token(0), Interest::READABLE)
            .unwrap();
        clients.clients.push(Client {
            stream,
            state: ClientState::Handshaking,
            partial: Vec::new(),
            snapshot: false,
            last: None,
            received: 0,
            warmed: 0,
            stalled: false,
            close_code: None,
            index: 0,
            tls: None,
        });
        let mut events = Events::with_capacity(16);
        clients
            .turn(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(clients.tally.unanswered, 1);
        assert_eq!(clients.clients[0].state, ClientState::Closed);
    }
}
