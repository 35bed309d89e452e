//! Accepting: new connections into the slab, and the limits that refuse
//! them with an answer (503 or 429, with `Retry-After`) rather than a
//! dropped socket: `--max-connections` with a small reserve so `/healthz`
//! still answers, `--max-connections-per-ip`, and running out of file
//! descriptors, which must not turn into a busy loop.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::{EventLoop, interrupted, would_block};
use crate::server::conn::Conn;
use crate::wire::http;

/// Connections accepted past `--max-connections`, answered only for
/// `/healthz`, so an operator can see a full server. Past this too, a
/// client gets a 503 written at once.
const HEALTH_RESERVE: usize = 16;

/// Connections refused at once per wake-up when descriptors are out, so a
/// flood cannot keep the loop in `accept`.
const MAX_REFUSED_PER_TURN: usize = 64;

/// How long accepting pauses when descriptors are out.
const FD_PAUSE: Duration = Duration::from_millis(50);

impl EventLoop {
    pub(super) fn accept(&mut self, now: Instant) {
        let mut refused_now = 0;
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                // EMFILE / ENFILE.
                Err(e) if matches!(e.raw_os_error(), Some(24 | 23)) => {
                    if refused_now < MAX_REFUSED_PER_TURN && self.refuse_with_spare_fd() {
                        refused_now += 1;
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
                    self.accept_retry = Some(now + FD_PAUSE);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one connection only.
                    debug!("accept failed: {e}");
                    continue;
                }
            };
            if std::mem::take(&mut self.fds_exhausted) {
                info!("file descriptors available again: accepting");
            }
            self.admit(stream, peer, now);
        }
    }

    /// Applies the connection limits to a new connection.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        let client = super::conns::client_of(peer.ip());
        let per_ip = self.conns.open_from(peer.ip());
        let cap = self.config.max_connections_per_ip;
        if cap > 0 && per_ip as usize >= cap {
            let status = http::Status(429, "Too Many Requests");
            let why = format!("more than --max-connections-per-ip {cap} from {client}");
            return self.refuse_now(stream, status, &why, now);
        }
        let max = self.config.max_connections;
        let full = self.conns.len() >= max;
        if full && self.conns.len() >= max + HEALTH_RESERVE {
            let why = format!("at --max-connections {max}");
            return self.refuse_now(stream, http::UNAVAILABLE, &why, now);
        }
        if full {
            self.stats.refused += 1;
            self.log_refusal(
                now,
                &format!("{peer}: at --max-connections {max}: 503 but for /healthz"),
            );
        }
        self.add(stream, peer, now, full);
    }

    /// Answers a connection that cannot be taken in, without reading its
    /// request: one non-blocking write into a fresh socket's empty buffer,
    /// then close. Costs the loop one accept and one write.
    fn refuse_now(&mut self, stream: TcpStream, status: http::Status, why: &str, now: Instant) {
        self.stats.refused += 1;
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
        self.interval.note(&response);
        let _ = (&stream).write(&response.bytes);
    }

    /// With descriptors out, gives up the spare to accept one connection,
    /// answers it 503 and takes the spare back. Returns false when there
    /// was no spare or nothing to accept.
    fn refuse_with_spare_fd(&mut self) -> bool {
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
            self.stats.refused += 1;
        }
        self.spare_fd = std::fs::File::open("/dev/null").ok();
        took_one
    }

    /// Logs a refusal at most once a second: under a flood the log must not
    /// become the bottleneck.
    pub(super) fn log_refusal(&mut self, now: Instant, message: &str) {
        if self
            .last_refusal_log
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            self.last_refusal_log = Some(now);
            warn!("{message}");
        }
    }

    fn add(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant, reserve: bool) {
        // Elsewhere accepted sockets do not inherit TCP_NODELAY from the listener.
        #[cfg(not(target_os = "linux"))]
        if let Err(e) = stream.set_nodelay(true) {
            debug!("peer={peer} set_nodelay failed: {e}");
        }
        let key = self.conns.next_key();
        if let Err(e) = self
            .poll
            .registry()
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
        let (_, id) = self
            .conns
            .insert(|id| Conn::new(id, peer, stream, now, reserve));
        debug!("conn={id} peer={peer} accepted");
    }
}
