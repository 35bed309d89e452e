//! The event loop: one thread, one `mio::Poll`, every socket in a slab.
//!
//! A turn of the loop: wait for readiness; accept, read and answer; drain
//! the publishers' channel; fan out; write every connection that has
//! output (one `sendmsg` each); remove the connections marked done; run the
//! timers.
//!
//! Where things happen, one concern per file, each its own type:
//! - this file: [`Server`], and the loop's turn, its timers and shutdown;
//! - `drain.rs`: when each subscriber is closed on SIGTERM (`--drain`);
//! - `requests.rs`: the loop's other half, reading, and what a request
//!   leads to;
//! - `conns.rs`: the connection registry, `Conns` (the slab, per-IP
//!   counts, the lists each turn works through) and the output policy:
//!   where every byte is queued, a snapshot is fanned out to its
//!   subscribers, a slow consumer is evicted, the write pass runs, and a
//!   connection is closed and removed (`Conns::reap`, the one place it
//!   leaves the poll and the slab);
//! - `accept.rs`: the `Acceptor`, accepting and the connection limits;
//! - `publishing.rs`: `Publishing`, where a publish goes, top to bottom:
//!   the channel, HTTP publishes, Redis under `--redis`, the store and the
//!   fan-out; `cluster.rs`: what it remembers of the link to Redis;
//! - `multiplex.rs`: one connection, many topics: opening `/api/v1/ws`
//!   and `/api/v1/sse`, and the subscribe and unsubscribe commands;
//!   `subs.rs`: what an open connection is subscribed to;
//! - `conn.rs`: one connection's lifecycle and its own I/O; `tls.rs`: the
//!   certificate pair (`--tls-cert`, reloaded on SIGHUP or a file change)
//!   and the rustls session a connection's I/O goes through on a TLS port;
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
mod assets;
mod cluster;
mod conn;
mod conns;
mod drain;
mod endpoints;
#[doc(hidden)]
pub mod harness;
pub mod jwt;
mod metrics;
mod multiplex;
mod publishing;
mod queue;
mod requests;
mod sock;
mod stats;
mod subs;
mod tls;

pub use conn::LINGER;

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
use crate::server::accept::{Acceptor, Admission, interrupted, presize_descriptor_table};
use crate::server::access::Access;
use crate::server::conn::{Close, Due, Phase, Timeouts};
use crate::server::conns::{Conns, OutputLimits};
use crate::server::drain::{Drain, retry_ms};
use crate::server::publishing::{Drained, Publishing, Reach};
use crate::server::queue::Out;
use crate::server::stats::{Interval, Stats};
use crate::server::tls::Certs;
use crate::topic::adw;
use crate::topic::schema::Validator;
use crate::topic::{Rules, Topics};
use crate::wire::Shared;
use crate::wire::http;
use crate::wire::protocol::{self, CloseReason, code};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// One read buffer for the whole loop: connections own input bytes only
/// while a message is incomplete.
const SCRATCH_SIZE: usize = 64 << 10;

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
/// started: a `--schema`'s topic must be.
fn check_topic(config: &Config, topic: &str) -> Result<(), String> {
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
    /// `--tls-cert` and `--tls-key`, loaded.
    tls: Option<Certs>,
}

impl Server {
    /// Binds the listening socket; fails if the address is taken.
    /// Fails with `InvalidInput` for a configuration that cannot run (a
    /// `--schema` that cannot be used, a bad token policy, `--tls-cert`
    /// without `--tls-key`), before anything is bound; with any other kind
    /// for what may go away by itself (the address taken, a certificate
    /// pair mid-renewal, a thread that cannot be spawned).
    pub fn bind(config: Config) -> io::Result<Server> {
        let rules =
            rules_for(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let rules = Arc::new(rules);
        let access = Access::from_config(&config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = Certs::from_config(&config)?;
        let poll = Poll::new()?;
        let mut listener = listen(config.listen).map_err(|e| {
            // Never taken for a configuration error: the address may free up.
            let kind = match e.kind() {
                io::ErrorKind::InvalidInput => io::ErrorKind::Other,
                kind => kind,
            };
            io::Error::new(kind, format!("cannot listen on {}: {e}", config.listen))
        })?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (publisher, inbox) = publisher::channel(waker, rules.clone());
        let link = match &config.redis {
            Some(url) => Some(crate::cluster::start(
                url.expose(),
                publisher.clone(),
                config.max_publish_bytes,
            )?),
            None => None,
        };
        Ok(Server {
            tls,
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
    /// publishes through this server's [`Publisher`]. First, every topic
    /// each one names is checked against this server's topic rules: one
    /// that is not served fails with `InvalidInput`, naming the provider
    /// and the topic, before any starts. Providers that share a topic are
    /// worth a warning.
    pub fn start_providers(
        &self,
        providers: Vec<Box<dyn crate::providers::Provider>>,
    ) -> io::Result<()> {
        for provider in &providers {
            for topic in provider.topics() {
                self.check_provider_topic(&topic).map_err(|e| {
                    let e = format!("{}: {e}", provider.origin());
                    io::Error::new(io::ErrorKind::InvalidInput, e)
                })?;
            }
        }
        for warning in crate::providers::shared_topics(&providers) {
            warn!("{warning}");
        }
        for provider in providers {
            provider.start(self.publisher())?;
        }
        Ok(())
    }

    /// Whether this server serves `topic` (a name or a family, as a
    /// provider states it); an ADW topic without the preset says so.
    fn check_provider_topic(&self, topic: &str) -> Result<(), String> {
        self.rules.check_pattern(topic).map_err(|e| {
            let adw_topic = adw::topic(topic).is_some() || topic.starts_with(adw::ADW_STATE_PREFIX);
            if adw_topic && self.config.preset != crate::topic::Preset::Adw {
                format!("{e}: the ADW topics need --preset adw")
            } else {
                e.to_string()
            }
        })
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
    /// closes every client with 1012 and returns: at once for
    /// [`Publisher::shutdown`], spread over `--drain` for
    /// [`Publisher::drain`]. Errors are the server's
    /// own (the poll failing); a client's errors only end that client.
    ///
    /// It acts on the whole process: it grows the descriptor table for
    /// `--max-connections`, returns freed heap to the kernel, and (once per
    /// process, on 64-bit Linux) unmaps the pages of every loaded object's
    /// code and read-only data, the embedding program's too, which come
    /// back from the page cache as they are used; a debugger's breakpoint
    /// or a uprobe set before then is lost.
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
            "listening on {}{} ({} topics)",
            self.listener.local_addr()?,
            if self.tls.is_some() { " with TLS" } else { "" },
            topics.len()
        );
        // Only the loop holds the publisher's inbox; our own Publisher copy
        // is dropped so `Closed` reaches producers when the loop ends.
        drop(self.publisher);
        presize_descriptor_table(&self.listener, config.max_connections);
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
            acceptor: Acceptor::new(
                self.listener,
                config.max_connections,
                config.max_connections_per_ip,
                config.max_accept_rate,
                now,
            ),
            publishing: Publishing::new(self.inbox, self.link),
            tls: self.tls,
            config,
            access: self.access,
            timeouts,
            poll: self.poll,
            topics,
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            started: now,
            tick,
            next_tick: now + tick,
            stage: Stage::Serving,
            ping_frame: Arc::from(protocol::encode_frame(OpCode::Control(Control::Ping), b"")),
            stats: Stats::default(),
            interval: Interval::default(),
            next_stats: now + config_stats_interval,
        };
        unmap_startup_code();
        event_loop.run()
    }
}

/// The loop's state. Only the loop thread touches it.
struct EventLoop {
    /// The options it runs with.
    config: Config,
    /// Hosts, origins and tokens.
    access: Access,
    /// The connection timeouts of `config`, in the form `Conn` checks.
    timeouts: Timeouts,
    /// Readiness of every socket, the listener and the waker.
    poll: Poll,
    /// The listener, and who is let in.
    acceptor: Acceptor,
    /// The publishers' channel and where a publish goes (Redis, or here).
    publishing: Publishing,
    /// The certificate new TLS connections get; `None` for plain HTTP.
    tls: Option<Certs>,
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
    /// When the timers run next.
    next_tick: Instant,
    /// Serving, draining or shutting down.
    stage: Stage,
    /// Every ping is the same empty frame.
    ping_frame: Shared,
    /// The counters, for `/healthz`, `/metrics` and the stats line.
    stats: Stats,
    /// What the next stats line reports.
    interval: Interval,
    /// When the next stats line is due.
    next_stats: Instant,
}

/// Where the loop is in its life.
#[derive(Debug)]
enum Stage {
    /// Accepting and serving.
    Serving,
    /// Not accepting; subscribers are closed one by one as the drain says.
    Draining(Drain),
    /// Everyone is closing; the loop ends when all are gone, or at
    /// `deadline` (`--shutdown-timeout`).
    ShuttingDown { deadline: Instant },
}

impl Stage {
    /// Draining or shutting down: new subscriptions are refused.
    fn is_stopping(&self) -> bool {
        !matches!(self, Stage::Serving)
    }
}

/// Unmaps the pages of code and read-only data that starting up touched
/// (parsing options, compiling schemas, the help text, each page fault
/// mapping up to 64 KiB around it): they stay in the page cache, shared and
/// reclaimable, and the loop maps back what it uses, so an idle server's
/// resident set is what it runs. Only the loaded objects' segments the
/// loader maps without write permission, whole pages inside them, and not
/// in an object with text relocations: such pages are never written (what
/// the loader relocates, RELRO included, lies in the writable segments),
/// so unmapping them loses nothing. The loader's lock, held while the
/// objects are listed, keeps a `dlopen` or `dlclose` by another thread from
/// changing them meanwhile. Once per process: a later server in the same
/// process (tests start many) finds the pages in use. In a program that
/// embeds the server this covers its code too, which it maps back as it
/// runs it; a breakpoint a debugger or a uprobe wrote into code before this
/// point is a private copy of the page and is dropped with it.
fn unmap_startup_code() {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(unmap_read_only_segments);
    }
}

/// `unmap_startup_code`'s work, on 64-bit Linux.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn unmap_read_only_segments() {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        page: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid entry for the length of this
        // call; `page` is the `usize` below.
        let (info, page) = unsafe { (&*info, *page.cast::<usize>()) };
        // SAFETY: as above.
        unsafe { unmap_object(info, page) };
        0
    }
    // SAFETY: sysconf reads a constant.
    let Ok(mut page) = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) else {
        return;
    };
    if page == 0 {
        return;
    }
    // SAFETY: `each` only reads the entries it is given and advises pages
    // as `unmap_object` says; `page` outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(each), (&mut page as *mut usize).cast());
    }
}

/// Unmaps the whole pages of `info`'s segments mapped without write
/// permission, unless it is the vDSO or has text relocations.
///
/// # Safety
///
/// `info` is an entry `dl_iterate_phdr` passed, during its callback.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
unsafe fn unmap_object(info: &libc::dl_phdr_info, page: usize) {
    let name = if info.dlpi_name.is_null() {
        &[][..]
    } else {
        // SAFETY: a non-null name is a NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    // The vDSO is the kernel's, not a file's.
    if name.starts_with(b"linux-vdso")
        || name.starts_with(b"linux-gate")
        || info.dlpi_phdr.is_null()
    {
        return;
    }
    // SAFETY: `dlpi_phnum` program headers are at `dlpi_phdr`.
    let headers =
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let base = info.dlpi_addr as usize;
    // SAFETY: the object is loaded, so its dynamic section is mapped.
    if unsafe { text_relocations(headers, base) } {
        return;
    }
    for header in headers {
        if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
            continue;
        }
        let start = base.wrapping_add(header.p_vaddr as usize);
        // The file's part only: past `p_filesz` pages are zero-filled.
        let len = header.p_filesz.min(header.p_memsz) as usize;
        let from = start.next_multiple_of(page);
        let to = start.saturating_add(len) / page * page;
        if to > from {
            // SAFETY: whole pages of a loaded object's segment mapped without
            // write permission, which no one has written: the next access
            // maps the page again from the page cache.
            unsafe {
                libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED);
            }
        }
    }
}

/// Whether the object whose program headers are `headers`, loaded at
/// `base`, has text relocations: the loader then wrote into segments mapped
/// without write permission, and unmapping them would undo that.
///
/// # Safety
///
/// The object is loaded (its dynamic section mapped at `base`).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
unsafe fn text_relocations(headers: &[libc::Elf64_Phdr], base: usize) -> bool {
    /// `Elf64_Dyn`.
    #[repr(C)]
    struct Dyn {
        tag: isize,
        value: usize,
    }
    const DT_NULL: isize = 0;
    const DT_TEXTREL: isize = 22;
    const DT_FLAGS: isize = 30;
    const DF_TEXTREL: usize = 0x4;
    let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
        return false;
    };
    let mut entry = base.wrapping_add(dynamic.p_vaddr as usize) as *const Dyn;
    loop {
        // SAFETY: the dynamic section is an array of entries ended by
        // DT_NULL.
        let Dyn { tag, value } = unsafe { entry.read() };
        match tag {
            DT_NULL => return false,
            DT_TEXTREL => return true,
            DT_FLAGS if value & DF_TEXTREL != 0 => return true,
            _ => {}
        }
        // SAFETY: not past DT_NULL, so within the array.
        entry = unsafe { entry.add(1) };
    }
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
                    LISTENER => {
                        let (acceptor, mut admission) = self.admission();
                        acceptor.accept(&mut admission, now);
                    }
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
                            self.conns.finish(key, cause, &mut self.topics);
                        }
                        // WRITABLE is registered for good (edge-triggered, it
                        // fires only once a full socket drains), so it is
                        // news only to a connection with output waiting.
                        if event.is_writable() && self.conns[key].has_output() {
                            self.conns.mark_dirty(key);
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
        let (publishing, mut reach) = self.publishing();
        match publishing.drain(&mut reach, now) {
            Drained::Done => {}
            Drained::Shutdown => self.begin_shutdown(now),
            Drained::Drain => self.begin_drain(now),
        }
        self.drain_due(now);
        // One pass per topic published this turn, however many publishes.
        let (_, mut reach) = self.publishing();
        reach.fan_out(now);
        self.flush_dirty(now);
        self.read_again(now);
        self.flush_dirty(now);
        self.conns.reap(&mut self.stats.closes);
        let (acceptor, mut admission) = self.admission();
        acceptor.retry(&mut admission, now);
        if now >= self.next_stats {
            self.next_stats = now + self.config.stats_interval;
            let (connections, topics) = (self.topics.subscriptions(), self.topics.len());
            self.interval
                .log(&self.stats, connections, topics, self.config.stats_interval);
        }
        if self.publishing.take_reload() {
            match self.tls.as_mut() {
                Some(certs) => certs.reload("SIGHUP"),
                None => info!("SIGHUP: nothing to reload (no --tls-cert)"),
            }
        }
        if now >= self.next_tick {
            self.next_tick = now + self.tick;
            if let Some(certs) = self.tls.as_mut() {
                certs.watch(now);
            }
            self.sweep(now);
            self.flush_dirty(now);
            self.conns.reap(&mut self.stats.closes);
        }
        let Stage::ShuttingDown { deadline } = self.stage else {
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
        if self.publishing.backlog() || self.conns.reads_waiting() || self.acceptor.more_waiting() {
            return Duration::ZERO;
        }
        let mut until = self.next_tick;
        if let Some(at) = self.acceptor.retry_at() {
            until = until.min(at);
        }
        match &self.stage {
            Stage::Serving => {}
            Stage::Draining(drain) => {
                if let Some(at) = drain.next_at() {
                    until = until.min(at);
                }
            }
            Stage::ShuttingDown { deadline } => until = until.min(*deadline),
        }
        until.saturating_duration_since(now)
    }

    /// The publish path, and the state a publish reaches.
    fn publishing(&mut self) -> (&mut Publishing, Reach<'_>) {
        let reach = Reach {
            topics: &mut self.topics,
            conns: &mut self.conns,
            stats: &mut self.stats,
            interval: &mut self.interval,
        };
        (&mut self.publishing, reach)
    }

    /// The acceptor, and what accepting changes.
    fn admission(&mut self) -> (&mut Acceptor, Admission<'_>) {
        let admission = Admission {
            tls: self.tls.as_ref(),
            registry: self.poll.registry(),
            conns: &mut self.conns,
            stats: &mut self.stats,
            interval: &mut self.interval,
        };
        (&mut self.acceptor, admission)
    }

    /// The write pass (see [`Conns::flush_dirty`]).
    fn flush_dirty(&mut self, now: Instant) {
        self.conns
            .flush_dirty(now, &mut self.topics, &mut self.stats);
    }

    // ----- timers -----

    /// Runs every connection's timers: pings, and the timeouts that close.
    fn sweep(&mut self, now: Instant) {
        let topics = &mut self.topics;
        // Acted on after the pass, which holds the connections.
        for (key, verdict) in self.conns.due(now, &self.timeouts) {
            match verdict {
                Due::Ping => {
                    self.conns.enqueue(key, Out::Bytes(self.ping_frame.clone()));
                }
                Due::KeepAlive => {
                    let comment = Shared::from(http::EVENT_STREAM_KEEPALIVE);
                    self.conns.enqueue(key, Out::Bytes(comment));
                }
                Due::RequestTimeout => {
                    let why = "request not completed within --handshake-timeout";
                    let response = http::error(http::REQUEST_TIMEOUT, why, "", true);
                    self.interval.note(&response);
                    self.conns.respond(key, response, Close::HandshakeTimeout);
                }
                Due::HandshakeTimeout => self.conns.finish(key, Close::HandshakeTimeout, topics),
                Due::WriteTimeout => self.conns.slow_consumer(key, Close::WriteTimeout, topics),
                Due::PingTimeout => {
                    debug!("{} silent for two ping intervals", self.conns[key].tag());
                    let reason = CloseReason::new(code::GOING_AWAY, "ping timeout");
                    self.conns
                        .close_ws(key, &reason, Close::PingTimeout, topics);
                }
                // The cause it was closing for is kept.
                Due::LingerOver => self.conns.finish(key, Close::PeerGone, topics),
                Due::TokenExpired => self.conns.token_expired(key, topics),
            }
        }
    }

    // ----- shutdown -----

    /// SIGINT/SIGTERM. Serving: stops accepting and spreads the
    /// subscribers' closes over `--drain` (or closes everyone at once when
    /// it is 0). Already draining (a second signal): closes the rest at
    /// once. The listener is closed, not kept to answer 503: the kernel
    /// refuses a reconnect for nothing, without a turn of this loop, and
    /// the port is free at once for the process that replaces this one.
    fn begin_drain(&mut self, now: Instant) {
        match self.stage {
            Stage::Serving if !self.config.drain.is_zero() => {}
            Stage::Serving | Stage::Draining(_) => return self.begin_shutdown(now),
            Stage::ShuttingDown { .. } => return,
        }
        self.acceptor.stop(self.poll.registry());
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        let mut subscribers = Vec::new();
        for key in keys {
            let conn = &self.conns[key];
            if conn.is_subscriber() {
                subscribers.push((key, conn.id()));
            } else {
                self.close_for_shutdown(key);
            }
        }
        info!(
            "draining: closing {} subscribers over {:?}, then shutting down",
            subscribers.len(),
            self.config.drain
        );
        self.stage = Stage::Draining(Drain::new(now, self.config.drain, &subscribers));
    }

    /// Closes the subscribers the drain says are due; once it is over,
    /// shutdown proper begins.
    fn drain_due(&mut self, now: Instant) {
        let Stage::Draining(drain) = &mut self.stage else {
            return;
        };
        let (due, over) = (drain.due(now), drain.is_over());
        for (key, id) in due {
            if self.conns.get(key).is_some_and(|c| c.id() == id) {
                self.close_for_shutdown(key);
            }
        }
        if over {
            self.begin_shutdown(now);
        }
    }

    /// Stops accepting and starts closing everyone still open at once.
    fn begin_shutdown(&mut self, now: Instant) {
        if matches!(self.stage, Stage::ShuttingDown { .. }) {
            return;
        }
        info!("shutting down: closing {} connections", self.conns.len());
        let deadline = now + self.config.shutdown_timeout;
        self.stage = Stage::ShuttingDown { deadline };
        self.acceptor.stop(self.poll.registry());
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close_for_shutdown(key);
        }
    }

    /// Closes one connection because the server is going: 1012 Service
    /// Restart to a WebSocket (it expects to come back, so the client
    /// should too, with jitter), the end of its stream to SSE (after a
    /// jittered `retry:` when there is a drain window), 503 to a request
    /// under way; an idle HTTP connection just goes.
    fn close_for_shutdown(&mut self, key: usize) {
        let topics = &mut self.topics;
        let conn = &self.conns[key];
        match conn.phase() {
            Phase::Open { .. } => {
                let reason = CloseReason::new(code::SERVICE_RESTART, "service restart");
                self.conns.close_ws(key, &reason, Close::Shutdown, topics);
            }
            Phase::Stream { .. } => {
                let retry = retry_ms(self.config.drain, conn.id());
                self.conns.end_stream(key, Close::Shutdown, topics);
                if let Some(ms) = retry {
                    let line = format!("retry: {ms}\n\n").into_bytes();
                    self.conns.enqueue(key, Out::Bytes(Shared::from(line)));
                }
            }
            Phase::Http { reader, .. }
                if conn.pending_bytes() == 0 && !conn.has_input() && !reader.is_reading_body() =>
            {
                self.conns.finish(key, Close::Shutdown, topics)
            }
            Phase::Http { .. } => {
                let response = http::error(http::UNAVAILABLE, "shutting down", "", true);
                self.interval.note(&response);
                self.conns.respond(key, response, Close::Shutdown);
            }
            Phase::Closing { .. } | Phase::Draining { .. } | Phase::Done { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::conn::would_block;
    use super::*;

    /// The file pages this process holds (`RssFile`), in KiB.
    fn rss_file_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// Unmapping start-up's pages gives back file pages, and the process
    /// runs on: what the loader wrote (relocated pointers, vtables, RELRO)
    /// was left alone, so formatting, dynamic dispatch, threads and libc
    /// calls still work.
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn unmapping_gives_back_pages_and_the_process_runs_on() {
        let before = rss_file_kib();
        unmap_read_only_segments();
        let after = rss_file_kib();
        assert!(
            after < before,
            "RssFile {before} KiB before, {after} KiB after"
        );
        let text = format!("{:?}", std::collections::BTreeMap::from([(1, "a")]));
        assert_eq!(text, r#"{1: "a"}"#);
        let shown: Box<dyn std::fmt::Display> = std::hint::black_box(Box::new(42));
        assert_eq!(shown.to_string(), "42");
        let read = std::thread::spawn(|| std::fs::read_to_string("/proc/self/status"));
        assert!(read.join().unwrap().unwrap().contains("VmRSS"));
    }

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

        let (addr, publisher, running) = serve_in_a_thread();
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
        still_served(&publisher, &mut subscriber);
        publisher.shutdown().unwrap();
        running.join().unwrap().unwrap();
    }
    /// A server on its defaults, running in a thread.
    fn serve_in_a_thread() -> (
        std::net::SocketAddr,
        Publisher,
        std::thread::JoinHandle<io::Result<()>>,
    ) {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        let server = Server::bind(config).unwrap();
        let addr = server.local_addr().unwrap();
        let publisher = server.publisher();
        (addr, publisher, std::thread::spawn(move || server.run()))
    }

    /// A publish still reaches `subscriber`, which the loop kept serving.
    fn still_served(publisher: &Publisher, subscriber: &mut std::net::TcpStream) {
        use std::io::Read;
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
    }

    /// A panic while decoding one client's frames (a bug) closes that
    /// connection alone with 1011, and one while reading a request answers
    /// that request 500: both are counted as `internal_error`, and the loop
    /// goes on serving a subscriber that was already there.
    #[test]
    fn a_panic_on_the_read_path_ends_only_its_connection() {
        use std::io::{Read, Write};

        let (addr, publisher, running) = serve_in_a_thread();
        let upgrade = b"GET /api/v1/ws/queue HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let connect = || {
            let stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
        };
        // Everything the server sends until it closes.
        let read_all = |mut stream: std::net::TcpStream| {
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all);
            all
        };
        let mut subscriber = connect();
        subscriber.write_all(upgrade).unwrap();
        let mut greeting = [0u8; 512];
        let n = subscriber.read(&mut greeting).unwrap();
        assert!(greeting[..n].starts_with(b"HTTP/1.1 101"));

        let mut buggy = connect();
        buggy.write_all(upgrade).unwrap();
        let text = conn::PANIC_TEXT.as_bytes();
        let frame = protocol::encode_masked(0x81, text, [1, 2, 3, 4]);
        buggy.write_all(&frame).unwrap();
        let all = read_all(buggy);
        let close = protocol::encode_close(&protocol::CloseReason::new(1011, "internal error"));
        assert!(all.ends_with(&close), "{:?}", String::from_utf8_lossy(&all));

        let mut reader = connect();
        reader.write_all(conn::PANIC_REQUEST).unwrap();
        reader
            .write_all(b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let answer = String::from_utf8(read_all(reader)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 500 "), "{answer}");

        let started = Instant::now();
        loop {
            let mut health = connect();
            health
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            let health = String::from_utf8(read_all(health)).unwrap();
            if health.contains(r#""internal_error":2"#) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{health}");
            std::thread::sleep(Duration::from_millis(5));
        }
        still_served(&publisher, &mut subscriber);
        publisher.shutdown().unwrap();
        running.join().unwrap().unwrap();
    }
}
