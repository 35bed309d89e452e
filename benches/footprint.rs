//! What statecast costs a small host, beside uWebSockets when one is given:
//! RSS at start with the default preset and no client, RSS at 1k and 10k
//! idle connections (and the bytes each one holds), the time to connect
//! and snapshot 10k clients, CPU per delivery against the kernel floor (10k
//! connections, 256 B, 30 publishes at 10/s, no warm-up), and the stripped
//! binary's size. Each timed figure is the median of three runs, server on
//! CPU 0 and `statecast-load` on CPU 1.
//!
//! Beside the connect time it prints what other work on the machine does
//! not move: the server's and the generator's CPU per connection, and how
//! often the server's loop went to sleep while the 10k connected (each
//! sleep is a wake-up the generator's next connect pays for).
//!
//! Over TLS (a build with `--features tls`), the same server with a
//! throwaway P-256 certificate beside uWebSockets built with OpenSSL: RSS
//! at start and at 10k idle TLS connections and the bytes each holds
//! ((RSS at 10k minus at 1k) / 9k), the time to connect and snapshot
//! 10k over TLS (full handshakes, no resumption), the server's CPU per TLS
//! connect, and its CPU per delivery over TLS (10k connections, 256 B,
//! 30 publishes at 10/s over https://, no warm-up).
//!
//! `cargo bench --bench footprint` prints the table; with
//! `UWS_PEER=/path/to/uws_peer` (built by ../shared/bench/uws/build.sh,
//! never committed) it also runs uWebSockets in the same run.
//! `cargo bench --features tls --bench footprint` adds the TLS table, and
//! with `UWS_PEER_TLS=/path/to/uws_peer_tls` (the same script with
//! `WITH_OPENSSL=1`) uWebSockets over TLS beside it. Under `cargo test` it
//! measures RSS at start and one small run of each, and prints; without
//! the `tls` feature it says the TLS table was skipped.

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
    /// `load` topic for the generator when `with_topic`; serving TLS with
    /// `tls`.
    fn start(self, with_topic: bool, tls: Option<&Pair>) -> (Child, String) {
        let mut command = pinned(0, &self.binary());
        let port = match self {
            Peer::Statecast => {
                command.args(["--listen", "127.0.0.1:0"]);
                if with_topic {
                    command.args(["--topic", "load"]);
                }
                if let Some(pair) = tls {
                    command.arg("--tls-cert").arg(&pair.cert);
                    command.arg("--tls-key").arg(&pair.key);
                }
                command.stderr(Stdio::piped());
                None
            }
            Peer::Uws(_) => {
                let port = free_port();
                command.arg(port.to_string()).stdout(Stdio::null());
                if let Some(pair) = tls {
                    command.env("UWS_CERT", &pair.cert);
                    command.env("UWS_KEY", &pair.key);
                }
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

/// A throwaway certificate and its key, for both servers alike.
struct Pair {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl Pair {
    /// A self-signed P-256 certificate for localhost and 127.0.0.1 in a
    /// directory of its own, made by the `openssl` command.
    fn new() -> Pair {
        let dir = std::env::temp_dir().join(format!("statecast-footprint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        statecast_testkit::openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
        );
        Pair {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if let Some(dir) = self.cert.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
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

/// `statecast-load` against a running `peer` process, on CPU 1; over TLS
/// with `tls`.
fn load(addr: &str, pid: u32, tls: bool, args: &[&str]) -> Value {
    let mut command = pinned(1, LOAD);
    if tls {
        command.args(["--tls", "--no-floor"]);
    }
    let output = command
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
    /// Server and generator CPU per connection, in us.
    connect_server_us: Vec<f64>,
    connect_generator_us: Vec<f64>,
    /// The server's loop went to sleep this often while the clients connected.
    connect_sleeps: Vec<f64>,
    /// Clients the server closed before their snapshot, over all runs.
    unanswered: u64,
    ratio: Vec<f64>,
    ns_per_delivery: Vec<f64>,
    size: Option<u64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn measure(peer: Peer, full: bool, tls: Option<&Pair>) -> Row {
    // RSS at start: a fresh process, settled, no client ever.
    let (child, _) = peer.start(false, tls);
    std::thread::sleep(Duration::from_millis(500));
    let idle_kib = rss_kib(child.id());
    stop(child);

    let counts = if full { "1000,10000" } else { "100" };
    let (child, addr) = peer.start(true, tls);
    let memory = load(&addr, child.id(), tls.is_some(), &["--memory", counts]);
    stop(child);

    let (connections, runs) = if full { ("10000", 3) } else { ("200", 1) };
    let mut row = Row {
        idle_kib,
        memory,
        connect_ms: Vec::new(),
        connect_server_us: Vec::new(),
        connect_generator_us: Vec::new(),
        connect_sleeps: Vec::new(),
        unanswered: 0,
        ratio: Vec::new(),
        ns_per_delivery: Vec::new(),
        size: match peer {
            Peer::Statecast => std::fs::metadata(STATECAST).ok().map(|m| m.len()),
            Peer::Uws(path) => std::fs::metadata(path).ok().map(|m| m.len()),
        },
    };
    for _ in 0..runs {
        let (child, addr) = peer.start(true, tls);
        let r = load(
            &addr,
            child.id(),
            tls.is_some(),
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
        let figure = |name: &str| r[name].as_f64().unwrap_or(f64::NAN);
        row.connect_ms.push(figure("connect_ms"));
        row.connect_server_us
            .push(figure("connect_server_us_per_connection"));
        row.connect_generator_us
            .push(figure("connect_generator_us_per_connection"));
        row.connect_sleeps.push(figure("connect_server_sleeps"));
        row.unanswered += r["connect_unanswered"].as_u64().unwrap_or(0);
        row.ratio
            .push(r["ratio_to_paced_floor"].as_f64().unwrap_or(f64::NAN));
        row.ns_per_delivery
            .push(r["server_cpu_ns_per_delivery"].as_f64().unwrap_or(f64::NAN));
    }
    row
}

/// statecast, and uWebSockets when a peer binary is given.
fn peers(uws: Option<&str>) -> impl Iterator<Item = Peer<'_>> {
    [Some(Peer::Statecast), uws.map(Peer::Uws)]
        .into_iter()
        .flatten()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let uws = std::env::var("UWS_PEER").ok().filter(|p| !p.is_empty());
    let uws_tls = std::env::var("UWS_PEER_TLS").ok().filter(|p| !p.is_empty());
    println!(
        "| server | RSS at start | RSS at 1k | RSS at 10k | bytes per idle connection | 10k connect + snapshot (median of 3) | CPU per connect, server / generator | server sleeps during the connects | CPU per delivery, x paced floor | ns per delivery | binary |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for peer in peers(uws.as_deref()) {
        let row = measure(peer, full, None);
        let point = |n: u64| {
            row.memory["points"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["connections"] == n))
                .and_then(|p| p["rss_kib"].as_u64())
                .map_or("-".into(), |k| format!("{:.2} MiB", k as f64 / 1024.0))
        };
        println!(
            "| {} | {:.2} MiB | {} | {} | {:.0} B | {:.0} ms | {:.1} / {:.1} us | {:.0} | {:.2}x | {:.0} | {} |",
            peer.name(),
            row.idle_kib as f64 / 1024.0,
            point(1000),
            point(10_000),
            row.memory["bytes_per_idle_connection"]
                .as_f64()
                .unwrap_or(f64::NAN),
            median(row.connect_ms),
            median(row.connect_server_us),
            median(row.connect_generator_us),
            median(row.connect_sleeps),
            median(row.ratio),
            median(row.ns_per_delivery),
            row.size
                .map_or("-".into(), |b| format!("{:.2} MB", b as f64 / 1e6)),
        );
    }
    if !full {
        println!("(one small run: `cargo bench --bench footprint` for the figures)");
    }
    if !cfg!(feature = "tls") {
        println!("TLS: skipped (a build without the `tls` feature)");
        return;
    }
    let pair = Pair::new();
    println!();
    println!(
        "| over TLS | RSS at start | RSS at 10k idle | bytes per idle TLS connection | 10k TLS connect + snapshot (median of 3) | server CPU per TLS connect | ns per delivery over TLS | closed before their snapshot |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for peer in peers(uws_tls.as_deref()) {
        let row = measure(peer, full, Some(&pair));
        let points = row.memory["points"].as_array().cloned().unwrap_or_default();
        let kib = |p: &Value| p["rss_kib"].as_f64().unwrap_or(f64::NAN);
        // From the first count of connections, not from start: the code a
        // first connection maps back (start-up's pages were given back) is
        // not a connection's.
        let first = points
            .get(1)
            .filter(|_| points.len() > 2)
            .or(points.first());
        let last = points.last();
        let per_connection = match (first, last) {
            (Some(first), Some(last)) => {
                let n = last["connections"].as_f64().unwrap_or(f64::NAN)
                    - first["connections"].as_f64().unwrap_or(f64::NAN);
                (kib(last) - kib(first)) * 1024.0 / n
            }
            _ => f64::NAN,
        };
        println!(
            "| {} | {:.2} MiB | {} | {:.0} B | {:.0} ms | {:.1} us | {:.0} | {} |",
            peer.name(),
            row.idle_kib as f64 / 1024.0,
            last.map_or("-".into(), |p| format!("{:.2} MiB", kib(p) / 1024.0)),
            per_connection,
            median(row.connect_ms),
            median(row.connect_server_us),
            median(row.ns_per_delivery),
            row.unanswered,
        );
    }
}
