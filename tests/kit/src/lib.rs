//! Test helpers: a server on port 0 in a thread, raw HTTP and WebSocket over
//! `std::net::TcpStream`, and waiting on conditions with a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use statecast::{Config, Publisher, Server};

pub mod contract;

/// Long enough for a loaded CI machine, short enough to fail a hung test.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A server running in a thread; shut down and joined on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub publisher: Publisher,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::with(|_| {})
    }

    pub fn with(configure: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        configure(&mut config);
        let server = Server::bind(config).expect("bind");
        let addr = server.local_addr().unwrap();
        let publisher = server.publisher();
        let thread = std::thread::spawn(move || server.run());
        TestServer {
            addr,
            publisher,
            thread: Some(thread),
        }
    }

    /// Waits until `/healthz` satisfies `check`.
    #[track_caller]
    pub fn wait_health(&self, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
        wait_until(what, || check(&self.health()));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.publisher.shutdown();
        if let Some(thread) = self.thread.take() {
            let result = thread.join();
            if !std::thread::panicking() {
                result
                    .expect("server thread panicked")
                    .expect("server failed");
            }
        }
    }
}

/// Polls `condition` until it holds or `DEADLINE` passes.
#[track_caller]
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn upgrade_request(topic: &str) -> String {
    format!(
        "GET /api/v1/ws/{topic} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads one HTTP response: status, head text, body (by Content-Length).
/// Reads byte by byte through the head so nothing after it is consumed.
pub fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("reading response head");
        assert_eq!(
            n,
            1,
            "EOF inside response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("reading response body");
    (status, head, body)
}

/// A server frame: opcode and payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub fin: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).unwrap()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap()
    }

    /// A close frame's code.
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, 0x8, "expected a close frame, got {self:?}");
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }
}

/// Reads one server frame, checking it is unmasked as RFC 6455 §5.1 requires.
pub fn read_frame(stream: &mut TcpStream) -> Frame {
    let (first, payload) = read_raw_frame(stream);
    assert_eq!(first & 0x70, 0, "reserved bits set");
    Frame {
        opcode: first & 0x0f,
        fin: first & 0x80 != 0,
        payload,
    }
}

/// Reads one unmasked server frame: its first header byte (FIN, RSV bits,
/// opcode) as is, and its payload.
pub fn read_raw_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("reading frame header");
    assert_eq!(head[1] & 0x80, 0, "server frames must not be masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    stream
        .read_exact(&mut payload)
        .expect("reading frame payload");
    (head[0], payload)
}

/// A free port on the loopback interface, for a helper process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads frames until one that is not a ping.
pub fn read_data_frame(stream: &mut TcpStream) -> Frame {
    loop {
        let frame = read_frame(stream);
        if frame.opcode != 0x9 {
            return frame;
        }
    }
}

/// A masked client frame, first header byte as given.
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    statecast::wire::protocol::encode_masked(first, payload, [0x12, 0x34, 0x56, 0x78])
}

/// Asserts the server has closed its side: the next read is EOF (a reset
/// also counts as gone).
#[track_caller]
pub fn expect_eof(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {n} bytes: {:?}", &buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected EOF, got {e}"),
    }
}

/// Checks a whole message sent on `topic` against the project's copy of the
/// contract: the envelope schema, the message type, `adw_id` on adw-state
/// frames, and `data` against the topic's schema.
#[track_caller]
pub fn check_message(topic: &str, message: &serde_json::Value) {
    contract::Contract::get().check_message(topic, message);
}

/// The real binary on port 0 in a process of its own, for what a test
/// must see from outside: its RSS, its descriptors, its exit. Killed on
/// drop.
pub struct Binary {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Everything it logged, collected in a thread.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The `statecast` binary Cargo built beside the running test or bench
/// (`target/<profile>/statecast`; tests run from `target/<profile>/deps/`).
/// Cargo builds it for every integration test and bench, but names it at
/// compile time only to the package's own targets, not to this crate.
fn statecast_binary() -> String {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a test binary under target/<profile>/deps");
    let binary = profile_dir.join("statecast");
    assert!(
        binary.is_file(),
        "{} is missing: run the tests through cargo, which builds it",
        binary.display()
    );
    binary.to_string_lossy().into_owned()
}

/// The number in field `name` of `/proc/<pid>/status` (`VmRSS`, `FDSize`).
pub fn proc_status(pid: u32, name: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is running");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

impl Binary {
    pub fn start(args: &[&str]) -> Binary {
        Self::start_with(args, |_| {})
    }

    /// Starts it after `prepare` has set up the command (environment,
    /// limits).
    pub fn start_with(args: &[&str], prepare: impl FnOnce(&mut std::process::Command)) -> Binary {
        Self::start_program(&statecast_binary(), args, prepare)
    }

    /// Starts `program`, another build of statecast (a bench's A/B run).
    pub fn start_program(
        program: &str,
        args: &[&str],
        prepare: impl FnOnce(&mut std::process::Command),
    ) -> Binary {
        use std::io::BufRead;
        let mut command = std::process::Command::new(program);
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(std::process::Stdio::piped());
        prepare(&mut command);
        let mut child = command.spawn().expect("starting statecast");
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(DEADLINE)
            .expect("statecast did not say where it listens")
            .parse()
            .unwrap();
        Binary { child, addr, log }
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        proc_status(self.child.id(), "VmRSS")
    }

    /// Starts it allowed `limit` open files (`RLIMIT_NOFILE`).
    pub fn start_with_fd_limit(args: &[&str], limit: u64) -> Binary {
        Self::start_with(args, |c| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec here.
            unsafe {
                c.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    /// Its CPU time so far, in nanoseconds (`/proc/PID/schedstat`).
    pub fn cpu_ns(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/schedstat", self.child.id()))
            .expect("the server is running");
        stat.split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .expect("schedstat")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request with extra header lines on a fresh connection to `addr`.
pub fn request_at(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut stream);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A connection with a read timeout, Nagle off.
pub fn connect_to(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Opens a WebSocket on `topic` and reads the 101.
fn subscribe_at(addr: SocketAddr, topic: &str) -> TcpStream {
    let mut stream = connect_to(addr);
    stream.write_all(upgrade_request(topic).as_bytes()).unwrap();
    let (status, _, _) = read_response(&mut stream);
    assert_eq!(status, 101, "upgrade to {topic}");
    stream
}

/// `/healthz`'s body: 200 when ok, 503 when degraded or shutting down.
fn health_at(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = request_at(addr, "GET", "/healthz", "", "");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let expected = if health["status"] == "ok" { 200 } else { 503 };
    assert_eq!(status, expected, "{body}");
    health
}

/// What a test does to a server, in a thread or a process alike.
pub trait Serving {
    fn addr(&self) -> SocketAddr;

    fn connect(&self) -> TcpStream {
        connect_to(self.addr())
    }

    /// Opens a WebSocket on `topic` and reads the 101.
    fn subscribe(&self, topic: &str) -> TcpStream {
        subscribe_at(self.addr(), topic)
    }

    /// One HTTP request on a fresh connection; returns status and body.
    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        request_at(self.addr(), method, path, body, "")
    }

    fn publish(&self, topic: &str, json: &str) -> (u16, String) {
        self.request("POST", &format!("/api/v1/publish/{topic}"), json)
    }

    /// `/healthz`'s body: 200 when ok, 503 when degraded or shutting
    /// down, the same JSON either way.
    fn health(&self) -> serde_json::Value {
        health_at(self.addr())
    }
}

impl Serving for TestServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Serving for Binary {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Writes `unit` over and over, never reading, until the server closes the
/// connection (a write fails). Returns the bytes the kernel took; panics
/// if the server has not closed it within 30 s. After the server's close
/// the connection drains: what the flooder still writes is read and
/// dropped, and must not keep the loop from its timers, which end it.
pub fn flood(mut stream: TcpStream, unit: &[u8]) -> u64 {
    const FLOOD_CAP: Duration = Duration::from_secs(30);
    stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let batch: Vec<u8> = unit.repeat((64 << 10) / unit.len() + 1);
    let start = Instant::now();
    let mut sent = 0u64;
    // Where the next write starts in the batch: a partial write must be
    // continued, or the frames on the wire would be cut.
    let mut at = 0;
    loop {
        assert!(
            start.elapsed() < FLOOD_CAP,
            "the server never closed the flooder"
        );
        match stream.write(&batch[at..]) {
            Ok(n) => {
                sent += n as u64;
                at = (at + n) % batch.len();
            }
            // Blocked: the server has stopped reading us. Keep trying.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return sent,
        }
    }
}

/// Keeps this process, and a server it starts afterwards (which inherits
/// it), on the first CPU it may use: a bench that counts the server's CPU
/// per byte wants both on one core, so the server does not wake for each
/// small write.
pub fn pin_to_one_cpu() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; both calls only
    // read and write the set given, for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(libc::sched_getaffinity(0, size, &mut set), 0);
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| libc::CPU_ISSET(cpu, &set))
            .expect("some CPU to run on");
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, size, &set), 0);
        println!("bench and server on CPU {cpu}");
    }
}

/// Runs the `openssl` command with `args` in `dir` (making a CA and
/// certificates at test time); it must succeed.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): scripts/test.sh installs it"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `program` under `taskset -c CPU` when there is a taskset and two CPUs,
/// so a server and its load generator do not share a core.
pub fn pinned(cpu: usize, program: &str) -> std::process::Command {
    if std::path::Path::new("/usr/bin/taskset").exists() && cpus() >= 2 {
        let mut c = std::process::Command::new("/usr/bin/taskset");
        c.args(["-c", &cpu.to_string(), program]);
        c
    } else {
        std::process::Command::new(program)
    }
}
