//! `statecast-load`: a load generator for statecast, and the kernel floor it
//! is measured against.
//!
//! It opens N WebSockets to one topic with a hand-rolled mio client (one
//! prepared upgrade request, large reads, no per-message allocation), waits
//! for every snapshot, then publishes M messages over HTTP keep-alive, each
//! carrying its send time, and reports latency, throughput, losses and the
//! server's CPU per delivery beside the floor: the CPU one process spends
//! to `write()` the same frame to the same number of loopback sockets.
//!
//! Runs with `--floor-child` are that floor process; users never call it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const HELP: &str = "\
statecast-load: measure statecast's fan-out against the kernel floor

USAGE:
    statecast-load [OPTIONS]

OPTIONS:
    --server ADDR         use a running server (default: spawn one)
    --server-pid PID      its pid, for CPU and memory figures
    --spawn PATH          server binary to spawn [default: statecast next to this binary]
    --server-cpu N        pin the spawned server and floor to this CPU [default: 0]
    --connections N       WebSockets to open [default: 1000]
    --messages M          publishes to send [default: 100]
    --rate R              publishes per second; 0 = as fast as possible [default: 10]
    --payload BYTES       size of each message's data [default: 256]
    --kind KIND           snapshot (conflated) or event (never dropped) [default: snapshot]
    --publish HOW         http (POST over keep-alive, to a server process) or inproc
                          (a Publisher, to a server thread in this process, pinned
                          to --server-cpu; at most about 9,900 connections) [default: http]
    --stalled PERCENT     share of clients that stop reading after the snapshot [default: 0]
    --warmup N            publishes sent, one at a time, and delivered to every healthy
                          client before measuring; the floor gets as many rounds first.
                          New loopback connections cost more per write for their
                          first rounds [default: 20]
    --no-floor            skip the kernel floor measurement
    --memory N,N,...      instead of publishing: server RSS at each connection count
    --json                print one JSON object instead of the report
    -h, --help            print this help
";

/// Clock shared by publisher and clients: nanoseconds since start.
fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[derive(Debug, Clone)]
struct Options {
    server: Option<SocketAddr>,
    server_pid: Option<u32>,
    spawn: Option<String>,
    server_cpu: usize,
    connections: usize,
    messages: usize,
    rate: f64,
    payload: usize,
    event: bool,
    stalled: f64,
    warmup: usize,
    floor: bool,
    memory: Vec<usize>,
    json: bool,
    inproc: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        server: None,
        server_pid: None,
        spawn: None,
        server_cpu: 0,
        connections: 1000,
        messages: 100,
        rate: 10.0,
        payload: 256,
        event: false,
        stalled: 0.0,
        warmup: 20,
        floor: true,
        memory: Vec::new(),
        json: false,
        inproc: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg}: missing value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        }
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--server" => o.server = Some(num("--server", value()?)?),
            "--server-pid" => o.server_pid = Some(num("--server-pid", value()?)?),
            "--spawn" => o.spawn = Some(value()?),
            "--server-cpu" => o.server_cpu = num("--server-cpu", value()?)?,
            "--connections" => o.connections = num("--connections", value()?)?,
            "--messages" => o.messages = num("--messages", value()?)?,
            "--rate" => o.rate = num("--rate", value()?)?,
            "--payload" => o.payload = num("--payload", value()?)?,
            "--kind" => {
                o.event = match value()?.as_str() {
                    "snapshot" => false,
                    "event" => true,
                    other => return Err(format!("--kind: {other:?} (expected snapshot or event)")),
                }
            }
            "--stalled" => o.stalled = num("--stalled", value()?)?,
            "--warmup" => o.warmup = num("--warmup", value()?)?,
            "--no-floor" => o.floor = false,
            "--memory" => {
                o.memory = value()?
                    .split(',')
                    .map(|n| num("--memory", n.to_owned()))
                    .collect::<Result<_, _>>()?
            }
            "--json" => o.json = true,
            "--publish" => {
                o.inproc = match value()?.as_str() {
                    "http" => false,
                    "inproc" => true,
                    other => return Err(format!("--publish: {other:?} (expected http or inproc)")),
                }
            }
            "--floor-child" => {
                floor_child().map_err(|e| format!("floor child: {e}"))?;
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other}; see --help")),
        }
    }
    Ok(o)
}

fn main() {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("statecast-load: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(options) {
        eprintln!("statecast-load: {e}");
        std::process::exit(1);
    }
}

// ----- the server under test -----

struct Target {
    addr: SocketAddr,
    pid: Option<u32>,
    child: Option<Child>,
    /// `schedstat` of the server's loop thread, for its CPU time.
    cpu_stat: Option<String>,
    /// Set when the server runs in this process (`--publish inproc`).
    inproc: Option<statecast::Publisher>,
}

/// Both sides' CPU clocks at one instant, the start of a measured phase.
struct CpuMark {
    server: Option<u64>,
    own: u64,
}

impl Target {
    fn server_cpu_ns(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.cpu_stat.as_ref()?).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    fn cpu_mark(&self) -> CpuMark {
        CpuMark {
            server: self.server_cpu_ns(),
            own: own_cpu_ns(),
        }
    }

    /// CPU ns spent since `mark` by the server's loop thread and by this
    /// process; an in-process server's thread is not the generator's work.
    fn cpu_since(&self, mark: &CpuMark) -> (Option<u64>, u64) {
        let server = match (self.server_cpu_ns(), mark.server) {
            (Some(after), Some(before)) => Some(after - before),
            _ => None,
        };
        let own =
            (own_cpu_ns() - mark.own).saturating_sub(self.inproc.as_ref().and(server).unwrap_or(0));
        (server, own)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(publisher) = &self.inproc {
            let _ = publisher.shutdown();
        }
        if let Some(child) = &mut self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// `taskset -c CPU` when available, so server and generator do not share a core.
fn pinned(cpu: usize, program: &str) -> Command {
    if std::path::Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("/usr/bin/taskset");
        c.args(["-c", &cpu.to_string(), program]);
        c
    } else {
        Command::new(program)
    }
}

fn start_target(o: &Options) -> io::Result<Target> {
    if let Some(addr) = o.server {
        return Ok(Target {
            addr,
            pid: o.server_pid,
            child: None,
            cpu_stat: o.server_pid.map(|p| format!("/proc/{p}/schedstat")),
            inproc: None,
        });
    }
    let binary = match &o.spawn {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .with_file_name("statecast")
            .to_string_lossy()
            .into_owned(),
    };
    let mut child = pinned(o.server_cpu, &binary)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--preset",
            "none",
            "--topic",
            "load",
            "--log-level",
            "info",
            "--max-publish-bytes",
            "4MiB",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::other(format!("spawning {binary}: {e}")))?;
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if stderr.read_line(&mut line)? == 0 {
            return Err(io::Error::other("server exited before listening"));
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            break addr
                .parse()
                .map_err(|_| io::Error::other(format!("bad address in {line:?}")))?;
        }
    };
    // Keep draining the server's log (warns about slow consumers).
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("WARN") && !line.contains("slow consumer") {
                eprintln!("server: {line}");
            }
        }
    });
    Ok(Target {
        addr,
        pid: Some(child.id()),
        cpu_stat: Some(format!("/proc/{}/schedstat", child.id())),
        child: Some(child),
        inproc: None,
    })
}

/// Runs the server in a thread of this process, pinned to the server's CPU,
/// and publishes through its `Publisher`. Both ends of every connection
/// are then in this process, so it holds at most half the file limit.
fn start_inproc(o: &Options) -> io::Result<Target> {
    let config = statecast::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        preset: statecast::Preset::None,
        topics: vec!["load".into()],
        max_publish_bytes: 4 << 20,
        ..statecast::Config::default()
    };
    let server = statecast::Server::bind(config)?;
    let addr = server.local_addr()?;
    let publisher = server.publisher();
    let (tx, rx) = std::sync::mpsc::channel();
    let cpu = o.server_cpu;
    std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name()?.to_str()?.parse::<u32>().ok());
            if let (Some(tid), true) = (tid, std::path::Path::new("/usr/bin/taskset").exists()) {
                let _ = Command::new("/usr/bin/taskset")
                    .args(["-pc", &cpu.to_string(), &tid.to_string()])
                    .stdout(Stdio::null())
                    .status();
            }
            let _ = tx.send(tid);
            if let Err(e) = server.run() {
                eprintln!("statecast-load: in-process server failed: {e}");
            }
        })?;
    let tid = rx
        .recv()
        .map_err(|_| io::Error::other("the in-process server did not start"))?;
    Ok(Target {
        addr,
        pid: None,
        child: None,
        cpu_stat: tid.map(|t| format!("/proc/self/task/{t}/schedstat")),
        inproc: Some(publisher),
    })
}

/// CPU time of this process in ns, exact to the moment of the call.
/// `/proc/self/schedstat` would do for long spans, but it is only brought up
/// to date at scheduler ticks, which for a floor round of a few
/// milliseconds is an error of tens of percent.
fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of this whole process (all threads) in ns.
fn own_cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

// ----- WebSocket clients -----

const UPGRADE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum ClientState {
    Connecting,
    Handshaking,
    Open,
    Closed,
}

struct Client {
    stream: TcpStream,
    state: ClientState,
    /// A partial frame carried over between reads; empty almost always.
    partial: Vec<u8>,
    /// The snapshot sent on connect has arrived.
    snapshot: bool,
    /// Index of the last message received, for loss and order checks.
    last: Option<u64>,
    received: u64,
    /// Warm-up messages received (they carry `"w"` instead of `"i"`).
    warmed: u64,
    stalled: bool,
    close_code: Option<u16>,
}

/// Everything the clients observed.
#[derive(Default)]
struct Tally {
    snapshots: usize,
    latencies_us: Vec<u32>,
    deliveries: u64,
    out_of_order: u64,
    last_delivery_ns: u64,
    closed: usize,
}

struct Clients {
    poll: Poll,
    clients: Vec<Client>,
    scratch: Vec<u8>,
    request: Vec<u8>,
    tally: Tally,
}

/// Parses the decimal number after `key` in `text`.
fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

impl Clients {
    fn new(topic: &str, host: SocketAddr) -> io::Result<Clients> {
        let request = format!(
            "GET /api/v1/ws/{topic} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        Ok(Clients {
            poll: Poll::new()?,
            clients: Vec::new(),
            scratch: vec![0; 256 << 10],
            request,
            tally: Tally::default(),
        })
    }

    /// Opens `n` more connections, a bounded number in flight at a time,
    /// and waits until every open one holds its snapshot.
    fn open(
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
        while self.tally.snapshots < target {
            // Connecting and handshaking clients; bounded so the listen
            // backlog never overflows.
            while self.clients.len() < target && self.clients.len() - self.tally.snapshots < 2048 {
                let mut stream = TcpStream::connect(addr)?;
                let token = Token(self.clients.len());
                // On loopback the connection is usually up by now: send the
                // upgrade at once and skip a round of readiness events.
                let state = match stream.write(&self.request) {
                    Ok(n) if n == self.request.len() => ClientState::Handshaking,
                    Ok(_) => return Err(io::Error::other("short write of the upgrade request")),
                    Err(_) => ClientState::Connecting,
                };
                let interest = if state == ClientState::Connecting {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                self.poll
                    .registry()
                    .register(&mut stream, token, interest)?;
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
    fn warm_up(&mut self, addr: SocketAddr, o: &Options) -> io::Result<()> {
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

    fn turn(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        self.poll.poll(events, timeout)?;
        for event in events.iter() {
            let index = event.token().0;
            self.ready(index, event.is_writable())?;
        }
        Ok(())
    }

    fn ready(&mut self, index: usize, writable: bool) -> io::Result<()> {
        let client = &mut self.clients[index];
        if client.state == ClientState::Connecting && writable {
            match client.stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    return Err(io::Error::other(format!("connect failed: {e}")));
                }
                Ok(None) => {}
            }
            match client.stream.write(&self.request) {
                Ok(n) if n == self.request.len() => {}
                Ok(_) => return Err(io::Error::other("short write of the upgrade request")),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e),
            }
            client.state = ClientState::Handshaking;
            self.poll.registry().reregister(
                &mut client.stream,
                Token(index),
                Interest::READABLE,
            )?;
        }
        if client.state == ClientState::Connecting || client.state == ClientState::Closed {
            return Ok(());
        }
        loop {
            let client = &mut self.clients[index];
            if client.stalled && client.snapshot {
                return Ok(());
            }
            let n = match client.stream.read(&mut self.scratch) {
                Ok(0) => {
                    client.state = ClientState::Closed;
                    self.tally.closed += 1;
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    client.state = ClientState::Closed;
                    self.tally.closed += 1;
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
            let used = process(client, buf, received_at, &mut self.tally)?;
            let rest = buf[used..].to_vec();
            let client = &mut self.clients[index];
            client.partial = rest;
        }
    }
}

/// Consumes complete frames (and the 101) from `buf`; returns bytes used.
fn process(client: &mut Client, buf: &[u8], at: u64, tally: &mut Tally) -> io::Result<usize> {
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
        let payload = &rest[header..header + len];
        match rest[0] & 0x0f {
            0x1 => {
                if !client.snapshot {
                    client.snapshot = true;
                    tally.snapshots += 1;
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
                    tally
                        .latencies_us
                        .push((at.saturating_sub(t) / 1000) as u32);
                    tally.last_delivery_ns = at;
                } else if number_after(payload, b"\"w\":").is_some() {
                    client.warmed += 1;
                }
            }
            0x9 => {
                // The mask is fixed: nothing here is secret.
                let pong = statecast::wire::protocol::encode_masked(0x8A, payload, [1, 2, 3, 4]);
                let _ = client.stream.write(&pong);
            }
            0x8 => {
                client.close_code = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            }
            _ => {}
        }
        used += header + len;
    }
}

// ----- publishing over HTTP -----

struct PublishReport {
    sent: usize,
    elapsed: Duration,
}

/// Publishes over one keep-alive connection. Paced: one request at a time,
/// each sent at its scheduled instant. Burst: requests are pipelined, a
/// reader thread counting the responses, so the server sees many publishes
/// per turn, as it would from many producers.
fn publisher(addr: SocketAddr, o: &Options, stop: Arc<AtomicBool>) -> io::Result<PublishReport> {
    let mut stream = StdStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut reader = Some(BufReader::new(stream.try_clone()?));
    let path = if o.event {
        "/api/v1/broadcast"
    } else {
        "/api/v1/publish/load"
    };
    let responses = if o.rate <= 0.0 {
        let messages = o.messages;
        let mut reader = reader.take().expect("reader");
        Some(std::thread::spawn(move || -> io::Result<()> {
            for _ in 0..messages {
                read_response(&mut reader)?;
            }
            Ok(())
        }))
    } else {
        None
    };
    let mut request = Vec::with_capacity(o.payload + 200);
    let start = Instant::now();
    let report = schedule(o, &stop, |data| {
        let body = if o.event {
            format!(r#"{{"type":"load","data":{data}}}"#)
        } else {
            data
        };
        request.clear();
        write!(
            request,
            "POST {path} HTTP/1.1\r\nHost: load\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        stream.write_all(&request)?;
        match reader.as_mut() {
            Some(reader) => read_response(reader),
            None => Ok(()),
        }
    })?;
    if let Some(responses) = responses {
        responses
            .join()
            .map_err(|_| io::Error::other("response reader panicked"))??;
    }
    // A pipelined publish counts once the server has answered it.
    Ok(PublishReport {
        elapsed: start.elapsed(),
        ..report
    })
}

/// Publishes through an in-process `Publisher`, paced or as fast as it goes.
fn publish_inproc(
    p: &statecast::Publisher,
    o: &Options,
    stop: Arc<AtomicBool>,
) -> io::Result<PublishReport> {
    schedule(o, &stop, |data| {
        let result = if o.event {
            let raw = serde_json::value::RawValue::from_string(data).map_err(io::Error::other)?;
            p.event("load", &raw)
        } else {
            p.publish_json("load", &data)
        };
        result.map_err(io::Error::other)
    })
}

/// The publishing schedule both paths share: `--messages` payloads, each
/// stamped with its send time, one every `1/--rate` seconds or back to
/// back, handed to `send`.
fn schedule(
    o: &Options,
    stop: &AtomicBool,
    mut send: impl FnMut(String) -> io::Result<()>,
) -> io::Result<PublishReport> {
    let pad = "x".repeat(o.payload.saturating_sub(40));
    let interval = (o.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / o.rate));
    let start = Instant::now();
    let mut sent = 0;
    for i in 0..o.messages {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(interval) = interval {
            let due = start + interval * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        send(format!(r#"{{"i":{i},"t":{},"p":"{pad}"}}"#, now_ns()))?;
        sent += 1;
    }
    Ok(PublishReport {
        sent,
        elapsed: start.elapsed(),
    })
}

/// Reads one HTTP response, failing unless it is a 200.
fn read_response(reader: &mut impl BufRead) -> io::Result<()> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(format!("publish refused: {line:?}")));
    }
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)
}

/// One POST on its own connection, for set-up.
fn http_post(addr: SocketAddr, path: &str, body: &str) -> io::Result<()> {
    let mut stream = StdStream::connect(addr)?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: load\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(format!(
            "set-up publish refused: {response}"
        )));
    }
    Ok(())
}

// ----- the kernel floor -----

/// The floor process: accepts N plain TCP connections, then for each round
/// read from stdin writes the frame to every socket, one `write()` per
/// delivery (or `batch` frames per write), and reports its CPU time.
fn floor_child() -> io::Result<()> {
    let listener = StdListener::bind("127.0.0.1:0")?;
    let mut out = io::stdout();
    writeln!(out, "{}", listener.local_addr()?)?;
    out.flush()?;
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    let header = lines.next().ok_or_else(|| io::Error::other("no setup"))??;
    let mut parts = header
        .split_whitespace()
        .map(|p| p.parse::<usize>().unwrap_or(0));
    let (n, frame_len) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        sockets.push(s);
    }
    let frame = vec![b'f'; frame_len];
    writeln!(out, "ready")?;
    out.flush()?;
    for line in lines {
        let line = line?;
        let batch: usize = line.trim().parse().unwrap_or(1);
        let burst = frame.repeat(batch);
        let cpu = process_cpu_ns();
        let start = Instant::now();
        for s in &mut sockets {
            s.write_all(&burst)?;
        }
        let wall = start.elapsed().as_nanos();
        writeln!(out, "{} {}", process_cpu_ns() - cpu, wall)?;
        out.flush()?;
    }
    Ok(())
}

struct Floor {
    /// CPU ns per write of one frame, one write per delivery.
    per_write_ns: f64,
    /// CPU ns per delivered frame when 10 frames go in one write.
    batched_ns: f64,
    /// Wall time to write the frame once to every socket.
    round_wall_ns: f64,
    /// Wall time until this process has read that frame from every socket:
    /// the floor's publish-to-last-client latency, with the same reader.
    round_delivered_ns: f64,
    /// p50 and p99 latency in us when rounds come at the run's rate, and
    /// the CPU ns per write at that pacing (caches cool between rounds,
    /// as they do for the server).
    paced_us: Option<(u32, u32, f64)>,
}

fn measure_floor(o: &Options, frame_len: usize) -> io::Result<Floor> {
    let exe = std::env::current_exe()?;
    let child = pinned(o.server_cpu, &exe.to_string_lossy())
        .arg("--floor-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    // Killed on every way out, so an error here never leaves it behind.
    let mut child = Target {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        pid: None,
        child: Some(child),
        cpu_stat: None,
        inproc: None,
    };
    let process = child.child.as_mut().expect("spawned");
    let mut stdin: ChildStdin = process.stdin.take().expect("piped");
    let mut stdout = BufReader::new(process.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let addr: SocketAddr = line
        .trim()
        .parse()
        .map_err(|_| io::Error::other("floor child gave no address"))?;
    writeln!(stdin, "{} {frame_len}", o.connections)?;
    stdin.flush()?;
    // The same kind of reader as the server's clients: mio, large reads.
    let mut poll = Poll::new()?;
    let mut sockets = Vec::with_capacity(o.connections);
    for i in 0..o.connections {
        let std = StdStream::connect(addr)?;
        std.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(std);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)?;
        sockets.push(s);
    }
    line.clear();
    stdout.read_line(&mut line)?;
    let mut floor_round = |batch: usize, rounds: usize| -> io::Result<(f64, f64, f64)> {
        let (mut cpu, mut wall, mut delivered) = (0u64, 0u64, 0u64);
        for _ in 0..rounds {
            let expect = (o.connections * frame_len * batch) as u64;
            let start = Instant::now();
            writeln!(stdin, "{batch}")?;
            stdin.flush()?;
            drain(&mut poll, &mut sockets, expect)?;
            delivered += start.elapsed().as_nanos() as u64;
            line.clear();
            stdout.read_line(&mut line)?;
            let mut p = line
                .split_whitespace()
                .map(|v| v.parse::<u64>().unwrap_or(0));
            cpu += p.next().unwrap_or(0);
            wall += p.next().unwrap_or(0);
        }
        let writes = (o.connections * rounds * batch) as f64;
        let per_round = |total: u64| total as f64 / (rounds * batch) as f64;
        Ok((cpu as f64 / writes, per_round(wall), per_round(delivered)))
    };
    if o.warmup > 0 {
        floor_round(1, o.warmup)?;
    }
    let rounds = 20;
    let (per_write_ns, round_wall_ns, round_delivered_ns) = floor_round(1, rounds)?;
    let (batched_ns, _, _) = floor_round(10, rounds)?;
    let paced_us = if o.rate > 0.0 {
        let interval = Duration::from_secs_f64(1.0 / o.rate);
        let rounds = o.messages.clamp(1, 30);
        let mut latencies = paced_floor(
            &mut poll,
            &mut sockets,
            &mut stdin,
            interval,
            rounds,
            frame_len,
        )?;
        let mut cpu = 0u64;
        for _ in 0..rounds {
            line.clear();
            stdout.read_line(&mut line)?;
            cpu += line
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        latencies.sort_unstable();
        let per_write = cpu as f64 / (rounds * o.connections) as f64;
        Some((
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            per_write,
        ))
    } else {
        None
    };
    drop(stdin);
    if let Some(mut process) = child.child.take() {
        let _ = process.wait();
    }
    Ok(Floor {
        per_write_ns,
        batched_ns,
        round_wall_ns,
        round_delivered_ns,
        paced_us,
    })
}

/// The floor's latency under the run's own pacing: a round (one frame to
/// every socket) is started every `interval`, whether or not the reader
/// has caught up, exactly as publishes arrive at the server, and every
/// frame's latency is taken from its round's start to its arrival here.
fn paced_floor(
    poll: &mut Poll,
    sockets: &mut [TcpStream],
    stdin: &mut ChildStdin,
    interval: Duration,
    rounds: usize,
    frame_len: usize,
) -> io::Result<Vec<u32>> {
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 << 10];
    let mut received = vec![0usize; sockets.len()];
    let mut starts: Vec<Instant> = Vec::with_capacity(rounds);
    let mut latencies = Vec::with_capacity(sockets.len() * rounds);
    let total = sockets.len() * rounds;
    let begin = Instant::now();
    while latencies.len() < total {
        let now = Instant::now();
        if starts.len() < rounds && now >= begin + interval * starts.len() as u32 {
            writeln!(stdin, "1")?;
            stdin.flush()?;
            starts.push(Instant::now());
        }
        let timeout = if starts.len() < rounds {
            (begin + interval * starts.len() as u32).saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(10)
        };
        poll.poll(&mut events, Some(timeout))?;
        if events.is_empty() && starts.len() == rounds {
            return Err(io::Error::other("floor: no data for 10 s"));
        }
        for event in events.iter() {
            let i = event.token().0;
            loop {
                match sockets[i].read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let at = Instant::now();
                        let before = received[i] / frame_len;
                        received[i] += n;
                        let after = received[i] / frame_len;
                        for start in &starts[before..after] {
                            latencies.push(at.duration_since(*start).as_micros() as u32);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(latencies)
}

fn drain(poll: &mut Poll, sockets: &mut [TcpStream], expect: u64) -> io::Result<()> {
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < expect {
        poll.poll(&mut events, Some(Duration::from_secs(10)))?;
        if events.is_empty() {
            return Err(io::Error::other("floor: no data for 10 s"));
        }
        for event in events.iter() {
            let s = &mut sockets[event.token().0];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

// ----- the run -----

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn run(o: Options) -> io::Result<()> {
    now_ns();
    let target = if o.inproc {
        if !o.memory.is_empty() {
            return Err(io::Error::other(
                "--memory measures a server process of its own; drop --publish inproc",
            ));
        }
        start_inproc(&o)?
    } else {
        start_target(&o)?
    };
    // Every client's first message is this snapshot; publishes come after.
    http_post(target.addr, "/api/v1/publish/load", r#"{"init":true}"#)?;
    if !o.memory.is_empty() {
        return memory(&o, &target);
    }
    let stalled = ((o.connections as f64) * o.stalled / 100.0).round() as usize;
    let mut clients = Clients::new("load", target.addr)?;
    let connect_start = Instant::now();
    let connect_mark = target.cpu_mark();
    clients.open(target.addr, o.connections, stalled, Duration::from_secs(60))?;
    let connect = connect_start.elapsed();
    // Which side set the connect time: a side busy nearly all of it did.
    let (connect_server_ns, connect_own_ns) = target.cpu_since(&connect_mark);
    let busy = |cpu_ns: u64| cpu_ns as f64 / connect.as_nanos().max(1) as f64;
    clients.warm_up(target.addr, &o)?;

    let publish_mark = target.cpu_mark();
    let stop = Arc::new(AtomicBool::new(false));
    let publish_start = now_ns();
    let publishing = {
        let o = o.clone();
        let addr = target.addr;
        let stop = stop.clone();
        let inproc = target.inproc.clone();
        std::thread::spawn(move || match inproc {
            Some(p) => publish_inproc(&p, &o, stop),
            None => publisher(addr, &o, stop),
        })
    };
    // Receive until every healthy client has the last message, or things
    // go quiet for a second after the publisher is done.
    let healthy = (o.connections - stalled) as u64;
    let last_index = o.messages as u64 - 1;
    let mut events = Events::with_capacity(4096);
    let mut quiet_since: Option<Instant> = None;
    loop {
        clients.turn(&mut events, Some(Duration::from_millis(20)))?;
        let done = clients
            .clients
            .iter()
            .filter(|c| !c.stalled && c.last == Some(last_index))
            .count() as u64
            == healthy;
        if done {
            break;
        }
        if publishing.is_finished() {
            if events.is_empty() {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            } else {
                quiet_since = None;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let report = publishing
        .join()
        .map_err(|_| io::Error::other("publisher panicked"))??;
    let run_ns = clients
        .tally
        .last_delivery_ns
        .saturating_sub(publish_start)
        .max(1);
    let (server_cpu, own_cpu) = target.cpu_since(&publish_mark);
    let healthy_missing_last = clients
        .clients
        .iter()
        .filter(|c| !c.stalled && c.last != Some(last_index))
        .count();
    let tally = &mut clients.tally;
    tally.latencies_us.sort_unstable();
    let deliveries = tally.deliveries;
    let expected = healthy * report.sent as u64;
    let frame_len = o.payload + 60;
    let (latencies, out_of_order) = (std::mem::take(&mut tally.latencies_us), tally.out_of_order);
    // The floor needs as many sockets again: free the clients' first.
    drop(clients);
    let floor = if o.floor {
        Some(measure_floor(&o, frame_len)?)
    } else {
        None
    };
    let per_delivery = server_cpu.map(|c| c as f64 / deliveries.max(1) as f64);
    let window = report.elapsed.as_nanos().max(run_ns as u128).max(1);
    let own_busy = own_cpu as f64 / window as f64;
    let result = serde_json::json!({
        "connections": o.connections,
        "stalled": stalled,
        "payload": o.payload,
        "kind": if o.event { "event" } else { "snapshot" },
        "rate": o.rate,
        "publishes": report.sent,
        "publish_seconds": report.elapsed.as_secs_f64(),
        "publishes_per_second": report.sent as f64 / report.elapsed.as_secs_f64(),
        "connect_ms": connect.as_secs_f64() * 1e3,
        "connect_server_busy": connect_server_ns.map(busy),
        "connect_generator_busy": busy(connect_own_ns),
        "warmup": o.warmup,
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "healthy_missing_last": healthy_missing_last,
        "out_of_order": out_of_order,
        "deliveries_per_second": deliveries as f64 / (run_ns as f64 / 1e9),
        "latency_us": {
            "p50": percentile(&latencies, 50.0),
            "p99": percentile(&latencies, 99.0),
            "p999": percentile(&latencies, 99.9),
            "max": latencies.last().copied().unwrap_or(0),
        },
        "server_cpu_ns_per_delivery": per_delivery,
        "floor_ns_per_write": floor.as_ref().map(|f| f.per_write_ns),
        "floor_ns_per_batched_frame": floor.as_ref().map(|f| f.batched_ns),
        "floor_round_ms": floor.as_ref().map(|f| f.round_wall_ns / 1e6),
        "floor_delivered_ms": floor.as_ref().map(|f| f.round_delivered_ns / 1e6),
        "floor_paced_p50_us": floor.as_ref().and_then(|f| f.paced_us).map(|p| p.0),
        "floor_paced_p99_us": floor.as_ref().and_then(|f| f.paced_us).map(|p| p.1),
        "floor_paced_ns_per_write": floor.as_ref().and_then(|f| f.paced_us).map(|p| p.2),
        "ratio_to_paced_floor": match (per_delivery, floor.as_ref().and_then(|f| f.paced_us)) {
            (Some(p), Some((_, _, f))) => Some(p / f),
            _ => None,
        },
        "ratio_to_floor": match (per_delivery, &floor) {
            (Some(p), Some(f)) => Some(p / f.per_write_ns),
            _ => None,
        },
        "generator_busy": own_busy,
    });
    if o.json {
        println!("{result}");
    } else {
        print_report(&result);
    }
    if own_busy > 0.9 {
        eprintln!(
            "warning: the generator was busy {:.0}% of the run: it, not the server, may be the limit",
            own_busy * 100.0
        );
    }
    // schedstat can lag a running thread by a scheduler tick: too coarse
    // for a phase of a few milliseconds.
    if busy(connect_own_ns) > 0.9 && connect > Duration::from_millis(100) {
        eprintln!(
            "warning: the generator was busy {:.0}% of the connect phase: it, not the server, may have set the connect time",
            busy(connect_own_ns) * 100.0
        );
    }
    Ok(())
}

fn print_report(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.2}"));
    let percent = |v: &serde_json::Value| {
        v.as_f64()
            .map_or("-".to_owned(), |x| format!("{:.0}", x * 100.0))
    };
    println!(
        "{} connections ({} stalled), {} B {} payload, rate {}/s",
        r["connections"],
        r["stalled"],
        r["payload"],
        r["kind"].as_str().unwrap_or(""),
        r["rate"]
    );
    println!(
        "connect+handshake+snapshot: {} ms (server busy {}%, generator busy {}%)",
        f(&r["connect_ms"]),
        percent(&r["connect_server_busy"]),
        percent(&r["connect_generator_busy"]),
    );
    println!("warm-up publishes before measuring: {}", r["warmup"]);
    println!(
        "publishes: {} in {} s ({} /s)",
        r["publishes"],
        f(&r["publish_seconds"]),
        f(&r["publishes_per_second"])
    );
    println!(
        "deliveries: {} of {} sent to healthy clients ({} lost to conflation or loss), {} out of order, {} healthy clients without the last",
        r["deliveries"],
        r["expected_deliveries"],
        r["expected_deliveries"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(r["deliveries"].as_u64().unwrap_or(0)),
        r["out_of_order"],
        r["healthy_missing_last"]
    );
    println!("deliveries/s: {}", f(&r["deliveries_per_second"]));
    let l = &r["latency_us"];
    println!(
        "latency us: p50 {} p99 {} p99.9 {} max {}",
        l["p50"], l["p99"], l["p999"], l["max"]
    );
    if r["floor_ns_per_write"].is_null() {
        println!(
            "server CPU per delivery: {} ns (no floor measured)",
            f(&r["server_cpu_ns_per_delivery"])
        );
        return;
    }
    println!(
        "server CPU per delivery: {} ns; floor {} ns per write ({} ns batched x10); ratio {}",
        f(&r["server_cpu_ns_per_delivery"]),
        f(&r["floor_ns_per_write"]),
        f(&r["floor_ns_per_batched_frame"]),
        f(&r["ratio_to_floor"])
    );
    println!(
        "floor: {} ms to write one frame to every socket, {} ms until all were read",
        f(&r["floor_round_ms"]),
        f(&r["floor_delivered_ms"])
    );
    if !r["floor_paced_p99_us"].is_null() {
        println!(
            "floor at the same pacing: latency us p50 {} p99 {}, {} ns per write (ratio {})",
            r["floor_paced_p50_us"],
            r["floor_paced_p99_us"],
            f(&r["floor_paced_ns_per_write"]),
            f(&r["ratio_to_paced_floor"])
        );
    }
}

/// Server RSS at increasing connection counts; the slope is the cost of
/// one idle connection.
fn memory(o: &Options, target: &Target) -> io::Result<()> {
    let pid = target
        .pid
        .ok_or_else(|| io::Error::other("--memory needs a spawned server or --server-pid"))?;
    let mut clients = Clients::new("load", target.addr)?;
    let base = rss_kib(pid);
    let mut points = vec![(0usize, base)];
    for &n in &o.memory {
        let more = n.saturating_sub(clients.clients.len());
        clients.open(target.addr, more, 0, Duration::from_secs(120))?;
        // Let the server settle, then read its RSS.
        let mut events = Events::with_capacity(1024);
        clients.turn(&mut events, Some(Duration::from_millis(300)))?;
        points.push((n, rss_kib(pid)));
    }
    let (n0, r0) = points[1.min(points.len() - 1)];
    let (n1, r1) = *points.last().expect("points");
    let slope = if n1 > n0 {
        (r1 as f64 - r0 as f64) * 1024.0 / (n1 - n0) as f64
    } else {
        0.0
    };
    let result = serde_json::json!({
        "points": points.iter().map(|(n, r)| serde_json::json!({"connections": n, "rss_kib": r})).collect::<Vec<_>>(),
        "bytes_per_idle_connection": slope,
    });
    if o.json {
        println!("{result}");
    } else {
        for (n, r) in &points {
            println!("{n:>6} connections: {r} KiB RSS");
        }
        println!("slope: {slope:.0} bytes per idle connection");
    }
    Ok(())
}
