//! What statecast costs a small host, beside uWebSockets when one is given:
//! RSS at start with the default preset and no client, RSS at 1k and 10k
//! idle connections (and the bytes each one holds), the time to connect
//! and snapshot 10k clients, CPU per delivery against the kernel floor (10k
//! connections, 256 B, 30 publishes at 10/s, no warm-up), and the stripped
//! binary's size. Each timed figure is the median of three runs, server on
//! CPU 0 and `statecast-load` on CPU 1.
//!
//! `cargo bench --bench footprint` prints the table; with
//! `UWS_PEER=/path/to/uws_peer` (built by ../shared/bench/uws/build.sh,
//! never committed) it also runs uWebSockets in the same run. Under
//! `cargo test` it measures RSS at start and one small run, and prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use statecast_testkit::pinned;

const STATECAST: &str = env!("CARGO_BIN_EXE_statecast");
const LOAD: &str = env!("CARGO_BIN_EXE_statecast-load");

/// A server under test: statecast, or the uWS peer.
#[derive(Clone, Copy, PartialEq)]
enum Peer<'a> {
    Statecast,
    Uws(&'a str),
}

impl Peer<'_> {
    fn name(self) -> &'static str {
        match self {
            Peer::Statecast => "statecast",
            Peer::Uws(_) => "uWebSockets",
        }
    }

    fn binary(self) -> String {
        match self {
            Peer::Statecast => STATECAST.to_owned(),
            Peer::Uws(path) => path.to_owned(),
        }
    }

    /// Starts it on CPU 0 and returns it with its address once it listens:
    /// statecast with its default preset, as a user would run it, and a
    /// `load` topic for the generator when `with_topic`.
    fn start(self, with_topic: bool) -> (Child, String) {
        let mut command = pinned(0, &self.binary());
        let port = match self {
            Peer::Statecast => {
                command.args(["--listen", "127.0.0.1:0"]);
                if with_topic {
                    command.args(["--topic", "load"]);
                }
                command.stderr(Stdio::piped());
                None
            }
            Peer::Uws(_) => {
                let port = free_port();
                command.arg(port.to_string()).stdout(Stdio::null());
                Some(port)
            }
        };
        let mut child = command.spawn().expect("starting the server");
        let addr = match port {
            None => {
                let stderr = child.stderr.take().expect("piped");
                let mut lines = BufReader::new(stderr).lines();
                let addr = lines
                    .by_ref()
                    .map_while(Result::ok)
                    .find_map(|l| {
                        let rest = l.split("listening on ").nth(1)?;
                        Some(rest.split(' ').next()?.to_owned())
                    })
                    .expect("a listening line");
                std::thread::spawn(move || lines.for_each(drop));
                addr
            }
            Some(port) => wait_for(&format!("127.0.0.1:{port}")),
        };
        (child, addr)
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

/// The uWS peer says nothing when it listens: wait until it accepts.
fn wait_for(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the peer never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    addr.to_owned()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// SIGTERM, and again if it is still there: statecast's second one ends
/// its drain at once.
fn stop(mut child: Child) {
    for _ in 0..2 {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
    }
    let _ = child.wait();
}

/// `statecast-load` against a running `peer` process, on CPU 1.
fn load(addr: &str, pid: u32, args: &[&str]) -> Value {
    let output = pinned(1, LOAD)
        .args([
            "--server",
            addr,
            "--server-pid",
            &pid.to_string(),
            "--server-cpu",
            "0",
            "--json",
        ])
        .args(args)
        .output()
        .expect("running statecast-load");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "statecast-load failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("statecast-load printed JSON")
}

struct Row {
    idle_kib: u64,
    memory: Value,
    connect_ms: Vec<f64>,
    ratio: Vec<f64>,
    ns_per_delivery: Vec<f64>,
    size: Option<u64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn measure(peer: Peer, full: bool) -> Row {
    // RSS at start: a fresh process, settled, no client ever.
    let (child, _) = peer.start(false);
    std::thread::sleep(Duration::from_millis(500));
    let idle_kib = rss_kib(child.id());
    stop(child);

    let counts = if full { "1000,10000" } else { "100" };
    let (child, addr) = peer.start(true);
    let memory = load(&addr, child.id(), &["--memory", counts]);
    stop(child);

    let (connections, runs) = if full { ("10000", 3) } else { ("200", 1) };
    let mut row = Row {
        idle_kib,
        memory,
        connect_ms: Vec::new(),
        ratio: Vec::new(),
        ns_per_delivery: Vec::new(),
        size: match peer {
            Peer::Statecast => std::fs::metadata(STATECAST).ok().map(|m| m.len()),
            Peer::Uws(path) => std::fs::metadata(path).ok().map(|m| m.len()),
        },
    };
    for _ in 0..runs {
        let (child, addr) = peer.start(true);
        let r = load(
            &addr,
            child.id(),
            &[
                "--connections",
                connections,
                "--payload",
                "256",
                "--messages",
                "30",
                "--rate",
                "10",
                "--warmup",
                "0",
            ],
        );
        stop(child);
        row.connect_ms
            .push(r["connect_ms"].as_f64().unwrap_or(f64::NAN));
        row.ratio
            .push(r["ratio_to_paced_floor"].as_f64().unwrap_or(f64::NAN));
        row.ns_per_delivery
            .push(r["server_cpu_ns_per_delivery"].as_f64().unwrap_or(f64::NAN));
    }
    row
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let uws = std::env::var("UWS_PEER").ok().filter(|p| !p.is_empty());
    let mut peers = vec![Peer::Statecast];
    if let Some(path) = uws.as_deref() {
        peers.push(Peer::Uws(path));
    }
    println!(
        "| server | RSS at start | RSS at 1k | RSS at 10k | bytes per idle connection | 10k connect + snapshot (median of 3) | CPU per delivery, x paced floor | ns per delivery | binary |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for peer in peers {
        let row = measure(peer, full);
        let point = |n: u64| {
            row.memory["points"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["connections"] == n))
                .and_then(|p| p["rss_kib"].as_u64())
                .map_or("-".into(), |k| format!("{:.2} MiB", k as f64 / 1024.0))
        };
        println!(
            "| {} | {:.2} MiB | {} | {} | {:.0} B | {:.0} ms | {:.2}x | {:.0} | {} |",
            peer.name(),
            row.idle_kib as f64 / 1024.0,
            point(1000),
            point(10_000),
            row.memory["bytes_per_idle_connection"]
                .as_f64()
                .unwrap_or(f64::NAN),
            median(row.connect_ms),
            median(row.ratio),
            median(row.ns_per_delivery),
            row.size
                .map_or("-".into(), |b| format!("{:.2} MB", b as f64 / 1e6)),
        );
    }
    if !full {
        println!("(one small run: `cargo bench --bench footprint` for the figures)");
    }
}
