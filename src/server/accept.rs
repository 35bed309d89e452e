//! Accepting: new connections into the slab, and the limits that refuse
//! them with an answer (503 or 429, with `Retry-After`) rather than a
//! dropped socket: `--max-accept-rate`, `--max-connections` with a small
//! reserve so `/healthz` still answers, `--max-connections-per-ip`, and
//! running out of file descriptors, which must not turn into a busy loop.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::server::conn::{Conn, would_block};
use crate::server::conns::{Conns, client_of};
use crate::server::stats::{Interval, Stats};
use crate::server::tls::Certs;
use crate::wire::http;

/// Connections accepted past `--max-connections`, answered only for
/// `/healthz`, so an operator can see a full server. Past this too, a
/// client gets a 503 written at once.
const HEALTH_RESERVE: usize = 16;

/// How long accepting pauses when descriptors are out.
const FD_PAUSE: Duration = Duration::from_millis(50);

/// Connections (or refusals) one accept pass takes from the listener; a
/// turn runs at most two passes (the listener's event, then `retry`), and
/// the requests of what they took are read in the next turn. Accepting
/// until `EAGAIN` while clients kept connecting ran for as long as they did
/// (2,000 connections, tens of milliseconds), each of them waiting for its
/// snapshot until the last was accepted. Bounds from 8 to 256 all ended
/// that in the measurements (too noisy to rank them); 32 keeps a pass to
/// about a quarter of a millisecond. A flood of refusals (out of
/// descriptors) is answered 32
/// at a time, each client its 503 at once, between turns that serve the
/// rest.
const MAX_ACCEPTS_PER_PASS: usize = 32;

/// Descriptors the table is grown to hold at start, at most: about 132 KiB
/// of kernel memory (8 bytes a slot and two bitmaps), charged to the
/// service's memory cgroup, not in its RSS. Past it the table doubles as
/// connections come, each doubling a stall of milliseconds as before.
const MAX_PRESIZED_FDS: usize = 16_384;

/// Descriptors besides connections: the listener, poll, waker, log,
/// providers' sockets and pipes.
const OTHER_FDS: usize = 64;

/// The listener and the limits on who gets in.
#[derive(Debug)]
pub(super) struct Acceptor {
    /// `None` once shutdown has begun: no new connections.
    listener: Option<TcpListener>,
    /// `--max-connections`.
    max_connections: usize,
    /// `--max-connections-per-ip`; 0 for none.
    max_per_ip: usize,
    /// Set when accept failed for lack of file descriptors, or for a
    /// reason not the connection's own: accepting pauses until then.
    retry_at: Option<Instant>,
    /// A descriptor held in reserve: given up to accept and refuse one
    /// connection when the process has no other (EMFILE).
    spare_fd: Option<std::fs::File>,
    /// Descriptors ran out and nothing has been accepted since: logged once.
    fds_exhausted: bool,
    /// When a refusal was last logged, so floods log once a second.
    last_refusal_log: Option<Instant>,
    /// `--max-accept-rate`; `None` for no limit.
    rate: Option<TokenBucket>,
    /// The last pass stopped at `MAX_ACCEPTS_PER_PASS`: connections may be
    /// waiting, which edge-triggered readiness will not report again.
    more: bool,
}

/// `--max-accept-rate`: `rate` tokens a second, held up to one second's
/// worth, so a burst of `rate` is let in at once and a stampede beyond it
/// is refused before its request is read.
#[derive(Debug)]
struct TokenBucket {
    /// Tokens added per second, and the most held.
    rate: f64,
    /// Tokens held at `filled`; an accept takes one.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    filled: Instant,
}

impl TokenBucket {
    /// A full bucket: the first `rate` connections after start get in.
    fn new(rate: usize, now: Instant) -> TokenBucket {
        let rate = rate as f64;
        TokenBucket {
            rate,
            tokens: rate,
            filled: now,
        }
    }

    /// Takes a token if one is there.
    fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.filled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.rate);
        self.filled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What accepting changes besides the acceptor: the poll a connection is
/// registered with, the registry it joins, the counters.
pub(super) struct Admission<'a> {
    /// On a TLS listener, the certificate a new connection's session gets.
    pub tls: Option<&'a Certs>,
    /// Where new sockets are registered.
    pub registry: &'a Registry,
    /// Where new connections go.
    pub conns: &'a mut Conns,
    /// The counters.
    pub stats: &'a mut Stats,
    /// What the next stats line reports (refusals).
    pub interval: &'a mut Interval,
}

impl Acceptor {
    /// `max_rate` is `--max-accept-rate`, 0 for no limit.
    pub(super) fn new(
        listener: TcpListener,
        max_connections: usize,
        max_per_ip: usize,
        max_rate: usize,
        now: Instant,
    ) -> Self {
        Acceptor {
            rate: (max_rate > 0).then(|| TokenBucket::new(max_rate, now)),
            listener: Some(listener),
            max_connections,
            max_per_ip,
            retry_at: None,
            spare_fd: std::fs::File::open("/dev/null").ok(),
            fds_exhausted: false,
            last_refusal_log: None,
            more: false,
        }
    }

    /// Whether connections may be waiting that the last pass left: the
    /// loop must not sleep while they are.
    pub(super) fn more_waiting(&self) -> bool {
        self.more && self.listener.is_some() && self.retry_at.is_none()
    }

    /// When accepting is to be tried again after a pause.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Accepts again if the last pass stopped at its bound, or if a pause
    /// is over: edge-triggered readiness will not report what waited
    /// meanwhile.
    pub(super) fn retry(&mut self, into: &mut Admission<'_>, now: Instant) {
        let paused = self.retry_at.is_some_and(|at| now < at);
        if !paused && (self.more || self.retry_at.is_some()) {
            self.retry_at = None;
            self.accept(into, now);
        }
    }

    /// Stops accepting, for good: shutdown has begun.
    pub(super) fn stop(&mut self, registry: &Registry) {
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
        }
    }

    /// Accepts until `WouldBlock` or `MAX_ACCEPTS_PER_PASS`, each connection
    /// let in or refused.
    pub(super) fn accept(&mut self, into: &mut Admission<'_>, now: Instant) {
        self.more = false;
        for _ in 0..MAX_ACCEPTS_PER_PASS {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                // Refusals count against the pass's bound like accepts.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if self.refuse_with_spare_fd(into) {
                        continue;
                    }
                    if !self.fds_exhausted {
                        self.fds_exhausted = true;
                        warn!(
                            "out of file descriptors ({e}): answering new connections 503 \
                             until some close; raise `ulimit -n` or lower --max-connections"
                        );
                    }
                    // Edge-triggered readiness will not fire again for what
                    // waits in the backlog: retry on a timer.
                    self.retry_at = Some(now + FD_PAUSE);
                    return;
                }
                // The connection's own failure, passed on by accept(2).
                Err(e) if one_connection(&e) => {
                    debug!("accept failed: {e}");
                    continue;
                }
                // Anything else (memory, a security module) would fail the
                // same way at once: pause as for descriptors, and say so.
                Err(e) => {
                    self.log_refusal(now, &format!("accept failed: {e}; retrying in 50 ms"));
                    self.retry_at = Some(now + FD_PAUSE);
                    return;
                }
            };
            if std::mem::take(&mut self.fds_exhausted) {
                info!("file descriptors available again: accepting");
            }
            self.admit(stream, peer, into, now);
        }
        self.more = true;
    }

    /// Applies the connection limits to a new connection.
    fn admit(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        into: &mut Admission<'_>,
        now: Instant,
    ) {
        // First: the cheapest answer, and the point is to do no more work.
        if let Some(bucket) = self.rate.as_mut()
            && !bucket.take(now)
        {
            let why = format!("over --max-accept-rate {}/s", bucket.rate);
            return self.refuse_now(stream, http::UNAVAILABLE, &why, into, now);
        }
        let client = client_of(peer.ip());
        let per_ip = into.conns.open_from(peer.ip());
        let cap = self.max_per_ip;
        if cap > 0 && per_ip as usize >= cap {
            let status = http::Status(429, "Too Many Requests");
            let why = format!("more than --max-connections-per-ip {cap} from {client}");
            return self.refuse_now(stream, status, &why, into, now);
        }
        let max = self.max_connections;
        let full = into.conns.len() >= max;
        if full && into.conns.len() >= max + HEALTH_RESERVE {
            let why = format!("at --max-connections {max}");
            return self.refuse_now(stream, http::UNAVAILABLE, &why, into, now);
        }
        if full {
            into.stats.refused += 1;
            self.log_refusal(
                now,
                &format!("{peer}: at --max-connections {max}: 503 but for /healthz"),
            );
        }
        into.add(stream, peer, now, full);
    }

    /// Answers a connection that cannot be taken in, without reading its
    /// request: one non-blocking write into a fresh socket's empty buffer,
    /// then close. Costs the loop one accept and one write.
    fn refuse_now(
        &mut self,
        stream: TcpStream,
        status: http::Status,
        why: &str,
        into: &mut Admission<'_>,
        now: Instant,
    ) {
        into.stats.refused += 1;
        self.log_refusal(
            now,
            &format!(
                "refusing {}: {why}",
                stream.peer_addr().map_or("?".into(), |a| a.to_string())
            ),
        );
        let response = http::error(
            status,
            &format!("{why}; retry later"),
            "Retry-After: 1\r\n",
            true,
        );
        into.interval.note(&response);
        let _ = (&stream).write(&response.bytes);
    }

    /// With descriptors out, gives up the spare to accept one connection,
    /// answers it 503 and takes the spare back. Returns false when there
    /// was no spare or nothing to accept.
    fn refuse_with_spare_fd(&mut self, into: &mut Admission<'_>) -> bool {
        if self.spare_fd.take().is_none() {
            return false;
        }
        let accepted = self.listener.as_ref().and_then(|l| l.accept().ok());
        let took_one = accepted.is_some();
        if let Some((stream, _)) = accepted {
            let response = http::error(
                http::UNAVAILABLE,
                "server out of file descriptors; retry later",
                "Retry-After: 1\r\n",
                true,
            );
            let _ = (&stream).write(&response.bytes);
            into.stats.refused += 1;
        }
        self.spare_fd = std::fs::File::open("/dev/null").ok();
        took_one
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
}

impl Admission<'_> {
    /// Registers a connection let in and adds it to the registry;
    /// `reserve` if it came in past `--max-connections`.
    fn add(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant, reserve: bool) {
        // Elsewhere accepted sockets do not inherit TCP_NODELAY from the listener.
        #[cfg(not(target_os = "linux"))]
        if let Err(e) = stream.set_nodelay(true) {
            debug!("peer={peer} set_nodelay failed: {e}");
        }
        let session = match self.tls.map(Certs::session) {
            Some(Ok(session)) => Some(session),
            Some(Err(e)) => {
                warn!("peer={peer} no TLS session: {e}");
                return;
            }
            None => None,
        };
        let key = self.conns.next_key();
        if let Err(e) = self
            .registry
            // Both interests for good: edge-triggered, WRITABLE fires only
            // when a full socket drains, so a slow consumer costs no
            // `EPOLL_CTL_MOD` on the way in or out.
            .register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
        {
            warn!("peer={peer} could not be registered: {e}");
            return;
        }
        self.stats.accepted += 1;
        let (_, id) = self.conns.insert(|id| {
            let mut conn = Conn::new(id, peer, stream, now, reserve);
            if let Some(session) = session {
                conn.speak_tls(session);
            }
            conn
        });
        debug!("conn={id} peer={peer} accepted");
    }
}

/// Grows the process's descriptor table, once at start, to hold
/// `connections` and the server's own descriptors (within `RLIMIT_NOFILE`
/// and `MAX_PRESIZED_FDS`). Linux doubles the table as descriptors are
/// opened, and in a process with more than one thread each doubling waits
/// for an RCU grace period: measured, `accept4` held the loop 5 to 16 ms at
/// 256, 512, ... 8,192 open connections, answering nobody meanwhile, in the
/// burst of a restart's reconnects. Grown here, that wait comes once, before
/// any client. `listener` is any open descriptor, to duplicate.
pub(super) fn presize_descriptor_table(listener: &impl std::os::fd::AsRawFd, connections: usize) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let want = connections
        .saturating_add(HEALTH_RESERVE + OTHER_FDS)
        .min(MAX_PRESIZED_FDS);
    let top = usize::try_from(limit.rlim_cur)
        .unwrap_or(usize::MAX)
        .min(want);
    let Ok(lowest) = libc::c_int::try_from(top.saturating_sub(1)) else {
        return;
    };
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor (the lowest free one
    // from `lowest`) for an open one and touches nothing else.
    let fd = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD_CLOEXEC, lowest) };
    if fd < 0 {
        debug!(
            "descriptor table not grown to {top}: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: `fd` was just made here and nothing else owns it; the table
    // keeps its size once it is closed.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// An accept error that concerns only the connection it failed on: what
/// accept(2) passes on of a pending connection's network errors, or its
/// abort.
fn one_connection(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ETIMEDOUT
                | libc::EPERM
        )
    )
}

pub(super) fn interrupted(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Interrupted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::conns::OutputLimits;

    /// One pass takes at most `MAX_ACCEPTS_PER_PASS` connections and says
    /// more may wait; the loop's `retry` takes the next pass, and a pass
    /// that drains the backlog says nothing waits.
    #[test]
    fn a_pass_stops_at_its_bound_and_retry_takes_the_rest() {
        let waiting = 2 * MAX_ACCEPTS_PER_PASS + 5;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        std_listener.set_nonblocking(true).unwrap();
        // The kernel completes each handshake into the backlog.
        let _clients: Vec<_> = (0..waiting)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let poll = mio::Poll::new().unwrap();
        let now = Instant::now();
        let mut acceptor = Acceptor::new(TcpListener::from_std(std_listener), 1000, 0, 0, now);
        let mut conns = Conns::new(OutputLimits {
            max_queue: 1 << 20,
            write_timeout: Duration::from_secs(30),
        });
        let (mut stats, mut interval) = (Stats::default(), Interval::default());
        let mut admission = Admission {
            tls: None,
            registry: poll.registry(),
            conns: &mut conns,
            stats: &mut stats,
            interval: &mut interval,
        };
        acceptor.accept(&mut admission, now);
        assert_eq!(admission.conns.len(), MAX_ACCEPTS_PER_PASS);
        assert!(acceptor.more_waiting());
        acceptor.retry(&mut admission, now);
        assert_eq!(admission.conns.len(), 2 * MAX_ACCEPTS_PER_PASS);
        acceptor.retry(&mut admission, now);
        assert_eq!(admission.conns.len(), waiting);
        assert!(!acceptor.more_waiting());
    }
}
