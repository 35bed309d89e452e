//! The soak: `statecast --demo` with 5,000 subscribers for an hour: 4,500
//! on a topic this bench publishes to ten times a second (45k deliveries a
//! second) and 500 spread over the demo's topics, whose data the demo keeps
//! changing. Every minute it prints the server's RSS, its open descriptors
//! and what the subscribers received. After a warm-up (the first ten
//! minutes, or the first third of a shorter run) RSS must not climb, the
//! descriptors must hold, and no subscriber may be dropped; otherwise the
//! run fails.
//!
//! `cargo bench --bench soak` runs the hour (`SOAK_MINUTES=N` for another
//! length). Under `cargo test` it runs a few seconds with fewer clients,
//! and prints only.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use statecast_testkit::pinned;

const STATECAST: &str = env!("CARGO_BIN_EXE_statecast");

/// One subscriber: its upgrade answer, then frames, counted.
struct Sub {
    stream: MioStream,
    upgraded: bool,
    head: Vec<u8>,
    /// Bytes of the current frame's header read so far.
    header: Vec<u8>,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    /// The current frame is a ping: its payload, for the pong a browser
    /// would send (the server closes a client silent for two intervals).
    ping: Option<Vec<u8>>,
    frames: u64,
    closed: bool,
}

impl Sub {
    fn open(addr: &str, topic: &str) -> io::Result<Sub> {
        let mut stream = TcpStream::connect(addr)?;
        write!(
            stream,
            "GET /api/v1/ws/{topic} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )?;
        stream.set_nonblocking(true)?;
        Ok(Sub {
            stream: MioStream::from_std(stream),
            upgraded: false,
            head: Vec::new(),
            header: Vec::new(),
            skip: 0,
            ping: None,
            frames: 0,
            closed: false,
        })
    }

    /// Reads what is there; counts each frame whole once its header is in.
    fn read(&mut self, buf: &mut [u8]) {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => self.take(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    fn take(&mut self, mut bytes: &[u8]) {
        if !self.upgraded {
            self.head.extend_from_slice(bytes);
            let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            assert!(self.head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
            self.upgraded = true;
            let rest = self.head.split_off(end + 4);
            self.head = Vec::new();
            return self.take(&rest);
        }
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                if let Some(ping) = &mut self.ping {
                    ping.extend_from_slice(&bytes[..n]);
                }
                self.skip -= n;
                bytes = &bytes[n..];
                if self.skip == 0 {
                    self.pong();
                }
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            let want = match self.header.get(1).map(|b| b & 0x7f) {
                None => continue,
                Some(126) => 4,
                Some(127) => 10,
                Some(_) => 2,
            };
            if self.header.len() < want {
                continue;
            }
            self.skip = match want {
                4 => u16::from_be_bytes([self.header[2], self.header[3]]) as usize,
                10 => u64::from_be_bytes(self.header[2..10].try_into().unwrap()) as usize,
                _ => (self.header[1] & 0x7f) as usize,
            };
            let opcode = self.header[0] & 0x0f;
            self.header.clear();
            if opcode == 0x9 {
                self.ping = Some(Vec::new());
                if self.skip == 0 {
                    self.pong();
                }
            } else {
                self.frames += 1;
            }
        }
    }

    /// Answers the ping just read, masked as a client must.
    fn pong(&mut self) {
        let Some(payload) = self.ping.take() else {
            return;
        };
        let frame = statecast::wire::protocol::encode_masked(0x8a, &payload, [1, 2, 3, 4]);
        // A few bytes on an idle socket: taken whole, or the run fails
        // when the server closes this client for silence.
        let _ = self.stream.write_all(&frame);
    }
}

fn start() -> (Child, String) {
    let mut child = pinned(0, STATECAST)
        .args(["--demo", "--listen", "127.0.0.1:0", "--topic", "load"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting statecast");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            Some(
                l.split("listening on ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .to_owned(),
            )
        })
        .expect("a listening line");
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("server: {line}");
            }
        }
    });
    (child, addr)
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Publishes to `load` over one keep-alive connection.
struct Publisher {
    stream: TcpStream,
    seq: u64,
}

impl Publisher {
    fn publish(&mut self) {
        self.seq += 1;
        let body = format!(r#"{{"seq":{},"pad":"{}"}}"#, self.seq, "x".repeat(224));
        write!(
            self.stream,
            "POST /api/v1/publish/load HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("publishing");
        // The answer is one small response: read until its body is in.
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = self.stream.read(&mut buf).expect("publish answer");
            assert!(n > 0, "the server closed the publisher");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                assert!(head.starts_with("HTTP/1.1 200"), "publish refused: {text}");
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if rest.len() >= len {
                    return;
                }
            }
        }
    }
}

/// Least-squares slope of `ys` per sample.
fn slope(ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in ys.iter().enumerate() {
        num += (x as f64 - mx) * (y - my);
        den += (x as f64 - mx).powi(2);
    }
    num / den
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let minutes: f64 = match std::env::var("SOAK_MINUTES") {
        Ok(m) => m.parse().expect("SOAK_MINUTES is a number of minutes"),
        Err(_) if full => 60.0,
        Err(_) => 0.1,
    };
    let (on_load, on_demo) = if full { (4500, 500) } else { (180, 20) };
    // Samples: one a minute, or one every two seconds in a short run.
    let every = if full {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(2)
    };

    // The demo's topics: the preset's fixed ones.
    let demo_topics: Vec<&str> = statecast::topic::adw::TOPICS
        .iter()
        .map(|t| t.name)
        .collect();
    let (server, addr) = start();
    let pid = server.id();
    let poll = Poll::new().expect("poll");
    let mut subs = Vec::new();
    for i in 0..on_load + on_demo {
        let topic = if i < on_load {
            "load"
        } else {
            demo_topics[i % demo_topics.len()]
        };
        let mut sub = Sub::open(&addr, topic).expect("subscribing");
        poll.registry()
            .register(&mut sub.stream, Token(i), Interest::READABLE)
            .expect("register");
        subs.push(sub);
    }
    let mut poll = poll;
    let mut publisher = Publisher {
        stream: TcpStream::connect(&addr).expect("publisher"),
        seq: 0,
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 << 10];
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(minutes * 60.0);
    let mut next_publish = started;
    let mut next_sample = started + every;
    let mut last_frames = 0u64;
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut per_topic: HashMap<bool, u64> = HashMap::new();
    println!("| minute | RSS | descriptors | deliveries/s | subscribers open |");
    println!("|---|---|---|---|---|");
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_publish {
            publisher.publish();
            next_publish += Duration::from_millis(100);
        }
        let wait = next_publish.saturating_duration_since(Instant::now());
        poll.poll(&mut events, Some(wait)).expect("poll");
        for event in events.iter() {
            if let Some(sub) = subs.get_mut(event.token().0) {
                sub.read(&mut buf);
            }
        }
        if Instant::now() >= next_sample {
            next_sample += every;
            let frames: u64 = subs.iter().map(|s| s.frames).sum();
            let rate = (frames - last_frames) as f64 / every.as_secs_f64();
            last_frames = frames;
            let rss = status_kib(pid, "VmRSS:");
            let open = subs.iter().filter(|s| !s.closed).count();
            let minute = started.elapsed().as_secs_f64() / 60.0;
            samples.push((minute, rss, fds(pid)));
            println!(
                "| {minute:.1} | {:.2} MiB | {} | {rate:.0} | {open} |",
                rss as f64 / 1024.0,
                fds(pid),
            );
        }
    }
    for (i, sub) in subs.iter().enumerate() {
        *per_topic.entry(i < on_load).or_default() += sub.frames;
    }
    let closed = subs.iter().filter(|s| s.closed).count();
    // The second SIGTERM ends statecast's drain at once.
    let mut server = server;
    for _ in 0..2 {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(_)) = server.try_wait() {
            break;
        }
    }
    let _ = server.wait();

    // The verdict, on the samples after the warm-up.
    let warm = if full {
        10.0_f64.min(minutes / 3.0)
    } else {
        minutes / 3.0
    };
    let after: Vec<&(f64, u64, usize)> = samples.iter().filter(|s| s.0 >= warm).collect();
    let rss: Vec<f64> = after.iter().map(|s| s.1 as f64).collect();
    let climb = slope(&rss);
    let first = after.first().map_or(0, |s| s.1);
    let last = after.last().map_or(0, |s| s.1);
    println!(
        "after {warm:.0} min of warm-up: RSS {:.2} -> {:.2} MiB, {climb:+.1} KiB per sample; \
         {closed} subscribers dropped; {} frames on load, {} on the demo's topics",
        first as f64 / 1024.0,
        last as f64 / 1024.0,
        per_topic.get(&true).unwrap_or(&0),
        per_topic.get(&false).unwrap_or(&0),
    );
    if !full {
        println!("(a short run: `cargo bench --bench soak` for the hour)");
        return;
    }
    let fds_moved = after.windows(2).any(|w| w[0].2 != w[1].2);
    assert!(closed == 0, "{closed} subscribers were dropped");
    assert!(!fds_moved, "the server's descriptors moved after warm-up");
    // Flat: under 8 KiB a minute on the fit, and under 256 KiB all told.
    assert!(
        climb < 8.0 && last <= first + 256,
        "RSS still climbs after warm-up: {climb:+.1} KiB per minute, {first} -> {last} KiB"
    );
}
