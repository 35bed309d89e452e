//! A restart under load: 10,000 WebSocket subscribers on one topic, SIGTERM
//! to the server, a new process started on the same port as soon as the
//! old one lets it go, and every subscriber reconnecting as statecast.js
//! does (full-jitter backoff, base 500 ms, cap 30 s, retried on 1001,
//! 1006, 1011, 1012 and 1013; a refused connect or a 503 is a 1006). A
//! subscriber is back once it holds the new process's snapshot, a value
//! published to it the moment it listens. For each mode (`--drain 0`,
//! `--drain 5s`, and `--drain 5s --max-accept-rate 2000`) it prints the
//! time from SIGTERM until all are back, how many never came back, the
//! upgrades the new process took per second (peak over 100 ms buckets,
//! and the mean over the span they came in), and each server's peak CPU
//! (% of one core over 100 ms, from /proc/PID/stat). The goal is everyone
//! back within the drain window plus 5 s with a peak accept rate at most
//! twice the mean; the run fails only when a subscriber is lost.
//!
//! `cargo bench --bench restart` runs 10,000 subscribers, servers on CPU 0
//! and the clients (one thread, mio) on CPU 1. Under `cargo test` it runs
//! 200 subscribers with a 1 s drain, and still fails on a lost one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use statecast_testkit::{cpus, pinned};

const STATECAST: &str = env!("CARGO_BIN_EXE_statecast");

/// statecast.js's reconnect: `baseDelay` and `maxDelay`.
const BASE: Duration = Duration::from_millis(500);
const CAP: Duration = Duration::from_secs(30);

/// The close codes statecast.js retries; any other loses the subscriber.
const RETRIED: [u16; 5] = [1001, 1006, 1011, 1012, 1013];

/// Accepts are counted in buckets this long, and CPU sampled as often.
const BUCKET: Duration = Duration::from_millis(100);

/// Loopback source addresses the clients spread over, so 10k
/// connections, their reconnects and their TIME_WAITs never run short of
/// ephemeral ports.
const SOURCES: usize = 16;

/// How long past the drain window a subscriber may take before it counts
/// as lost: past the backoff cap, so only one that never gets in is lost.
const LOST_AFTER: Duration = Duration::from_secs(60);

/// Where a subscriber is in its cycle.
#[derive(Clone, Copy, PartialEq)]
enum State {
    /// Waiting out its backoff (or its first turn).
    Waiting,
    /// TCP connect under way.
    Connecting,
    /// Upgrade request sent, reading the answer's head.
    Handshake,
    /// Upgraded: reading frames.
    Open,
    /// Closed with a code statecast.js does not retry.
    Lost,
}

struct Client {
    stream: Option<MioStream>,
    state: State,
    /// Failed attempts since the last upgrade, as statecast.js counts.
    attempt: u32,
    /// Bytes read and not yet parsed.
    input: Vec<u8>,
    /// The last `data.gen` received.
    generation: u64,
}

/// The subscribers, one poll, and what they saw.
struct Fleet {
    poll: Poll,
    addr: SocketAddr,
    clients: Vec<Client>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    rng: u64,
    scratch: Vec<u8>,
    /// The generation a subscriber must hold to count as back.
    target: u64,
    back: usize,
    lost: usize,
    last_back: Option<Instant>,
    /// When each upgrade (101) was read.
    upgrades: Vec<Instant>,
    /// Upgrades answered 503 (`--max-accept-rate`).
    refused: u64,
    /// Connects that failed (nothing listening, reset).
    failed_connects: u64,
    /// Why the first lost subscriber was lost.
    lost_why: Option<String>,
}

impl Fleet {
    fn new(addr: SocketAddr, n: usize) -> Fleet {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Fleet {
            poll: Poll::new().expect("poll"),
            addr,
            clients: (0..n)
                .map(|_| Client {
                    stream: None,
                    state: State::Waiting,
                    attempt: 0,
                    input: Vec::new(),
                    generation: 0,
                })
                .collect(),
            timers: BinaryHeap::new(),
            rng: seed,
            scratch: vec![0; 64 << 10],
            target: 0,
            back: 0,
            lost: 0,
            last_back: None,
            upgrades: Vec::new(),
            refused: 0,
            failed_connects: 0,
            lost_why: None,
        }
    }

    /// Uniform in [0, 1): SplitMix64, enough for jitter.
    fn random(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// From now on a subscriber is back once it holds `target`.
    fn expect_generation(&mut self, target: u64) {
        self.target = target;
        self.back = self
            .clients
            .iter()
            .filter(|c| c.generation == target)
            .count();
        self.last_back = None;
    }

    fn schedule(&mut self, at: Instant, i: usize) {
        self.timers.push(Reverse((at, i)));
    }

    /// A new connection for subscriber `i`, from its source address.
    fn open(&mut self, i: usize) {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCES) as u8);
        match connect_from(IpAddr::V4(source), self.addr) {
            Ok(mut stream) => {
                self.poll
                    .registry()
                    .register(
                        &mut stream,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .expect("register");
                let client = &mut self.clients[i];
                client.stream = Some(stream);
                client.state = State::Connecting;
                client.input.clear();
            }
            Err(_) => {
                self.failed_connects += 1;
                self.closed(i, 1006, Instant::now());
            }
        }
    }

    /// The connection is gone with `code`: back off and retry as
    /// statecast.js does, or lose the subscriber.
    fn closed(&mut self, i: usize, code: u16, now: Instant) {
        let client = &mut self.clients[i];
        client.stream = None;
        client.input.clear();
        if !RETRIED.contains(&code) {
            client.state = State::Lost;
            self.lost += 1;
            self.lost_why.get_or_insert(format!("closed with {code}"));
            return;
        }
        client.state = State::Waiting;
        let ceiling = CAP.min(BASE * 2u32.saturating_pow(client.attempt.min(16)));
        client.attempt += 1;
        let delay = ceiling.mul_f64(self.random());
        self.schedule(now + delay, i);
    }

    fn on_event(&mut self, i: usize, now: Instant) {
        let Some(client) = self.clients.get_mut(i) else {
            return;
        };
        let Some(stream) = client.stream.as_mut() else {
            return;
        };
        if client.state == State::Connecting {
            let failed = !matches!(stream.take_error(), Ok(None));
            match stream.peer_addr() {
                _ if failed => {
                    self.failed_connects += 1;
                    return self.closed(i, 1006, now);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => {
                    self.failed_connects += 1;
                    return self.closed(i, 1006, now);
                }
                Ok(_) => {}
            }
            // A fresh socket's buffer takes the whole request.
            if stream.write_all(UPGRADE.as_bytes()).is_err() {
                return self.closed(i, 1006, now);
            }
            client.state = State::Handshake;
        }
        let mut eof = false;
        loop {
            match stream.read(&mut self.scratch) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => client.input.extend_from_slice(&self.scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if let Some(code) = self.parse(i, now) {
            return self.closed(i, code, now);
        }
        if eof {
            // Gone without a close frame: what a browser reports as 1006.
            self.closed(i, 1006, now);
        }
    }

    /// Takes what subscriber `i` has read: the upgrade's answer, then
    /// frames. Returns the close code when the connection is over.
    fn parse(&mut self, i: usize, now: Instant) -> Option<u16> {
        let client = &mut self.clients[i];
        if client.state == State::Handshake {
            let end = client.input.windows(4).position(|w| w == b"\r\n\r\n")?;
            if client.input.starts_with(b"HTTP/1.1 101") {
                client.state = State::Open;
                client.attempt = 0;
                client.input.drain(..end + 4);
                self.upgrades.push(now);
            } else if client.input.starts_with(b"HTTP/1.1 503") {
                self.refused += 1;
                return Some(1006);
            } else {
                let head = String::from_utf8_lossy(&client.input[..end]).into_owned();
                self.lost_why
                    .get_or_insert(format!("upgrade refused: {head}"));
                return Some(1002);
            }
        }
        let mut at = 0;
        let mut code = None;
        while let Some((opcode, start, len)) = frame_at(&client.input[at..]) {
            let payload = &client.input[at + start..at + start + len];
            at += start + len;
            match opcode {
                0x1 => {
                    let message: serde_json::Value =
                        serde_json::from_slice(payload).expect("a JSON message");
                    if let Some(generation) = message["data"]["gen"].as_u64()
                        && generation != client.generation
                    {
                        client.generation = generation;
                        if generation == self.target {
                            self.back += 1;
                            self.last_back = Some(now);
                        }
                    }
                }
                0x8 => {
                    code = Some(match payload {
                        [a, b, ..] => u16::from_be_bytes([*a, *b]),
                        _ => 1005,
                    });
                    break;
                }
                0x9 => {
                    // The server closes a client silent for two pings.
                    let pong =
                        statecast::wire::protocol::encode_masked(0x8a, payload, [1, 2, 3, 4]);
                    if let Some(stream) = client.stream.as_mut() {
                        let _ = stream.write_all(&pong);
                    }
                }
                _ => {}
            }
        }
        client.input.drain(..at);
        code
    }

    /// Runs the subscribers until `done` says so (true) or `deadline`
    /// passes (false), sampling `cpu` every bucket.
    fn run_until(
        &mut self,
        deadline: Instant,
        cpu: &mut Cpu,
        mut done: impl FnMut(&mut Fleet, &mut Cpu) -> bool,
    ) -> bool {
        let mut events = Events::with_capacity(4096);
        loop {
            if done(self, cpu) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let mut wake = deadline.min(now + BUCKET).min(cpu.next);
            if let Some(Reverse((at, _))) = self.timers.peek() {
                wake = wake.min(*at);
            }
            match self
                .poll
                .poll(&mut events, Some(wake.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("poll: {e}"),
            }
            let now = Instant::now();
            for event in events.iter() {
                self.on_event(event.token().0, now);
            }
            // Reconnects start here, after the batch, so no event in it
            // can belong to a socket already closed and replaced.
            while let Some(&Reverse((at, i))) = self.timers.peek() {
                if at > now {
                    break;
                }
                self.timers.pop();
                self.open(i);
            }
            cpu.sample(now);
        }
    }
}

const UPGRADE: &str = "GET /api/v1/ws/load HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
     Sec-WebSocket-Version: 13\r\n\r\n";

/// One whole unmasked server frame at the start of `bytes`: its opcode,
/// where its payload starts and how long it is; `None` until it is all in.
fn frame_at(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let first = *bytes.first()?;
    let second = *bytes.get(1)?;
    let (start, len) = match second & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    (bytes.len() >= start + len).then_some((first & 0x0f, start, len))
}

/// A non-blocking connect from `source`, its port picked at connect
/// rather than at bind, so each source address has the whole ephemeral
/// range for each destination.
fn connect_from(source: IpAddr, to: SocketAddr) -> io::Result<MioStream> {
    use socket2::{Domain, Socket, Type};
    use std::os::fd::AsRawFd;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket, and an option value of the size given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket.bind(&SocketAddr::new(source, 0).into())?;
    match socket.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(MioStream::from_std(std::net::TcpStream::from(socket)))
}

/// Each server's CPU, % of one core over each 100 ms, and its peak.
struct Cpu {
    next: Instant,
    /// Pid, its CPU ticks and when they were read, its peak so far.
    procs: Vec<(u32, u64, Instant, f64)>,
    ticks_per_second: f64,
}

impl Cpu {
    fn new() -> Cpu {
        // SAFETY: sysconf only reads a constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Cpu {
            next: Instant::now() + BUCKET,
            procs: Vec::new(),
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
        }
    }

    fn watch(&mut self, pid: u32) {
        self.procs
            .push((pid, ticks(pid).unwrap_or(0), Instant::now(), 0.0));
    }

    fn peak(&self, pid: u32) -> f64 {
        self.procs
            .iter()
            .find(|p| p.0 == pid)
            .map_or(f64::NAN, |p| p.3)
    }

    fn sample(&mut self, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + BUCKET;
        for (pid, last, when, peak) in &mut self.procs {
            // Gone (the old server, once drained): its peak stands.
            let Some(t) = ticks(*pid) else { continue };
            let seconds = now.duration_since(*when).as_secs_f64();
            if seconds > 0.0 {
                let share =
                    t.saturating_sub(*last) as f64 / self.ticks_per_second / seconds * 100.0;
                *peak = peak.max(share);
            }
            (*last, *when) = (t, now);
        }
    }
}

/// utime + stime of `pid`, all its threads, from /proc/PID/stat.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which may hold spaces: the state
    // first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A server process; SIGTERMed twice (the second ends a drain) and reaped
/// when dropped.
struct Server {
    child: Child,
}

impl Server {
    /// Starts statecast on CPU 0 with `args`; sends where it listens on
    /// `said` once it says so, and echoes its warnings.
    fn spawn(listen: &str, args: &[String], said: mpsc::Sender<SocketAddr>) -> Server {
        let mut child = pinned(0, STATECAST)
            .args(["--listen", listen, "--topic", "load"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting statecast");
        let stderr = BufReader::new(child.stderr.take().expect("piped"));
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(addr) = rest.split(' ').next().and_then(|a| a.parse().ok())
                {
                    let _ = said.send(addr);
                }
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("server: {line}");
                }
            }
        });
        Server { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn terminate(&self) {
        // SAFETY: kill only sends a signal, to our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for _ in 0..2 {
            if self.exited() {
                return;
            }
            self.terminate();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline && !self.exited() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps the clients on CPU 1, off the servers' core.
fn pin_self_to_cpu_1() {
    if cpus() < 2 {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only
    // reads it, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(1, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Publishes `{"gen":N}` to `load` and checks the 200.
fn publish(addr: SocketAddr, generation: u64) {
    let body = format!(r#"{{"gen":{generation}}}"#);
    let mut stream = TcpStream::connect(addr).expect("connecting to publish");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "POST /api/v1/publish/load HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("publishing");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "publish refused: {answer}"
    );
}

/// Whether the port is free to bind: the old server's listener is closed.
fn port_free(addr: SocketAddr) -> bool {
    use socket2::{Domain, Socket, Type};
    let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, None) else {
        return false;
    };
    // As the server binds: TIME_WAIT does not hold the port, a listener does.
    socket.set_reuse_address(true).is_ok() && socket.bind(&addr.into()).is_ok()
}

struct Mode {
    name: String,
    drain: Duration,
    args: Vec<String>,
    /// Initial connects are this far apart, under any accept limit.
    spacing: Duration,
}

struct Row {
    all_back: Option<Duration>,
    lost: usize,
    peak_rate: f64,
    mean_rate: f64,
    refused: u64,
    failed_connects: u64,
    old_cpu: f64,
    new_cpu: f64,
    lost_why: Option<String>,
}

fn run(mode: &Mode, n: usize) -> Row {
    let (tx, rx) = mpsc::channel();
    let old = Server::spawn("127.0.0.1:0", &mode.args, tx.clone());
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the first server listens");
    publish(addr, 1);

    // Everyone subscribed and holding generation 1, connecting at a
    // steady pace so that setup is not a stampede of its own.
    let mut fleet = Fleet::new(addr, n);
    let mut cpu = Cpu::new();
    let now = Instant::now();
    for i in 0..n {
        fleet.schedule(now + mode.spacing * i as u32, i);
    }
    fleet.expect_generation(1);
    let subscribed = fleet.run_until(now + Duration::from_secs(120), &mut cpu, |f, _| {
        f.back == n || f.lost > 0
    });
    assert!(
        subscribed && fleet.lost == 0,
        "{}: only {} of {n} subscribed ({:?})",
        mode.name,
        fleet.back,
        fleet.lost_why
    );

    // The restart: SIGTERM, then the new process once the port is free,
    // and the new snapshot published to it as soon as it listens.
    fleet.expect_generation(2);
    fleet.upgrades.clear();
    (fleet.refused, fleet.failed_connects) = (0, 0);
    let t0 = Instant::now();
    old.terminate();
    cpu.watch(old.pid());
    let listen = addr.to_string();
    let mut new: Option<Server> = None;
    let mut published = false;
    fleet.run_until(t0 + mode.drain + LOST_AFTER, &mut cpu, |f, cpu| {
        if new.is_none() && port_free(addr) {
            let server = Server::spawn(&listen, &mode.args, tx.clone());
            cpu.watch(server.pid());
            new = Some(server);
        }
        if new.is_some() && !published && rx.try_recv().is_ok() {
            publish(addr, 2);
            published = true;
        }
        f.back + f.lost == n
    });
    let new_pid = new.as_ref().map_or(0, Server::pid);

    // Upgrades the new process took, in 100 ms buckets from SIGTERM; the
    // mean is over the span from its first bucket to its last.
    let mut buckets: Vec<u64> = Vec::new();
    for at in &fleet.upgrades {
        let b = (at.duration_since(t0).as_nanos() / BUCKET.as_nanos()) as usize;
        if buckets.len() <= b {
            buckets.resize(b + 1, 0);
        }
        buckets[b] += 1;
    }
    let first = buckets.iter().position(|&c| c > 0).unwrap_or(0);
    let span = (buckets.len() - first).max(1) as f64 * BUCKET.as_secs_f64();
    let row = Row {
        all_back: (fleet.back == n)
            .then_some(fleet.last_back)
            .flatten()
            .map(|at| at.duration_since(t0)),
        lost: n - fleet.back,
        peak_rate: buckets.iter().copied().max().unwrap_or(0) as f64 / BUCKET.as_secs_f64(),
        mean_rate: fleet.upgrades.len() as f64 / span,
        refused: fleet.refused,
        failed_connects: fleet.failed_connects,
        old_cpu: cpu.peak(old.pid()),
        new_cpu: cpu.peak(new_pid),
        lost_why: fleet.lost_why.clone(),
    };
    // The clients go first, so the servers' own shutdown has no one to
    // close.
    drop(fleet);
    drop(new);
    drop(old);
    row
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, drain) = if full {
        (10_000, Duration::from_secs(5))
    } else {
        (200, Duration::from_secs(1))
    };
    // The accept limit that lets everyone in over the window: 2000/s for
    // 10k in 5 s.
    let rate = (n as f64 / drain.as_secs_f64()).round() as u32;
    let drain_arg = format!("{}s", drain.as_secs());
    let unlimited = Duration::from_micros(100);
    let modes = [
        Mode {
            name: "no drain (`--drain 0`)".into(),
            drain: Duration::ZERO,
            args: vec!["--drain".into(), "0".into()],
            spacing: unlimited,
        },
        Mode {
            name: format!("`--drain {drain_arg}`"),
            drain,
            args: vec!["--drain".into(), drain_arg.clone()],
            spacing: unlimited,
        },
        Mode {
            name: format!("`--drain {drain_arg} --max-accept-rate {rate}`"),
            drain,
            args: vec![
                "--drain".into(),
                drain_arg.clone(),
                "--max-accept-rate".into(),
                rate.to_string(),
            ],
            spacing: Duration::from_secs(1) / (rate * 9 / 10).max(1),
        },
    ];
    pin_self_to_cpu_1();
    println!("{n} subscribers; back = holding the new process's snapshot");
    println!();
    println!(
        "| mode | all back after SIGTERM | within drain + 5 s | lost | peak accepts/s | mean accepts/s | peak/mean (goal: at most 2) | 503s | failed connects | old server peak CPU | new server peak CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut lost = 0;
    for mode in &modes {
        let row = run(mode, n);
        let goal = mode.drain + Duration::from_secs(5);
        let ratio = row.peak_rate / row.mean_rate;
        let yes = |met: bool| if met { "yes" } else { "no" };
        println!(
            "| {} | {} | {:.0} s: {} | {} | {:.0} | {:.0} | {:.2}: {} | {} | {} | {:.0}% | {:.0}% |",
            mode.name,
            row.all_back
                .map_or("never".into(), |t| format!("{:.2} s", t.as_secs_f64())),
            goal.as_secs_f64(),
            yes(row.all_back.is_some_and(|t| t <= goal)),
            row.lost,
            row.peak_rate,
            row.mean_rate,
            ratio,
            yes(ratio <= 2.0),
            row.refused,
            row.failed_connects,
            row.old_cpu,
            row.new_cpu,
        );
        if let Some(why) = row.lost_why {
            println!("  (lost: {why})");
        }
        lost += row.lost;
    }
    if !full {
        println!("(a small run: `cargo bench --bench restart` for the figures)");
    }
    if lost > 0 {
        eprintln!("{lost} subscribers never came back");
        std::process::exit(1);
    }
}
