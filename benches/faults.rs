//! The fault and soak harness, against the real binary on
//! loopback: slowloris, churn, half-open peers, descriptors run out, output floods, a lossy
//! slow link through an in-repo proxy, and a soak of churn plus publishing.
//! Each run prints its figures and panics on a lost client, a leak or a
//! crash, so a failure fails the command.
//!
//! `cargo bench --bench faults` runs the long form (10k churn cycles, a
//! one-hour soak; `-- --soak-seconds N` to change it). Under `cargo test`
//! (and so in `.ci/run`) the short form runs, about a minute in all.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use statecast_testkit::*;

/// The run's size: the long form, or the short one CI runs.
struct Plan {
    slowloris_sockets: usize,
    slowloris_seconds: u64,
    churn_cycles: usize,
    link_clients: usize,
    link_publishes: usize,
    soak: Duration,
}

fn main() {
    // A child that holds subscriptions and is then stopped (half-open peers).
    if let Ok(spec) = std::env::var("STATECAST_FAULTS_HOLD") {
        return hold(&spec);
    }
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let soak_arg = args
        .iter()
        .position(|a| a == "--soak-seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    let plan = if full {
        Plan {
            slowloris_sockets: 500,
            slowloris_seconds: 15,
            churn_cycles: 10_000,
            link_clients: 50,
            link_publishes: 200,
            soak: Duration::from_secs(soak_arg.unwrap_or(3600)),
        }
    } else {
        Plan {
            slowloris_sockets: 300,
            slowloris_seconds: 5,
            churn_cycles: 3_000,
            link_clients: 20,
            link_publishes: 60,
            soak: Duration::from_secs(soak_arg.unwrap_or(20)),
        }
    };
    println!("| fault | figures | verdict |");
    println!("|---|---|---|");
    slowloris(&plan);
    churn(&plan);
    half_open();
    descriptors_out();
    floods();
    lossy_link(&plan);
    soak(&plan);
}

fn row(fault: &str, figures: String) {
    println!("| {fault} | {figures} | ok |");
}

// ----- slowloris -----

/// Hundreds of sockets dripping a header byte a second; honest clients
/// connecting meanwhile get their snapshot within 100 ms.
fn slowloris(plan: &Plan) {
    let server = Binary::start(&[]);
    let header = b"GET /api/v1/ws/queue HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n";
    let mut drips: Vec<TcpStream> = (0..plan.slowloris_sockets)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut honest = 0;
    let mut second = 0;
    while start.elapsed() < Duration::from_secs(plan.slowloris_seconds) {
        if start.elapsed() >= Duration::from_secs(second) {
            let byte = &header[second as usize % header.len()..][..1];
            for s in &mut drips {
                let _ = s.write_all(byte);
            }
            second += 1;
        }
        let t = Instant::now();
        let mut ws = server.subscribe("queue");
        read_data_frame(&mut ws);
        worst = worst.max(t.elapsed());
        honest += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        worst <= Duration::from_millis(100),
        "an honest client waited {worst:?} for its snapshot"
    );
    row(
        "slowloris",
        format!(
            "{} sockets dripping 1 byte/s for {} s; {honest} honest clients, slowest snapshot {:.1} ms",
            plan.slowloris_sockets,
            plan.slowloris_seconds,
            worst.as_secs_f64() * 1e3
        ),
    );
}

// ----- churn -----

/// Resets a socket on close (SO_LINGER 0): an RST instead of a FIN.
fn reset(stream: TcpStream) {
    let socket = socket2::Socket::from(stream);
    let _ = socket.set_linger(Some(Duration::ZERO));
}

/// Connect/close cycles, a third each with a close frame, with a FIN and no
/// close frame, and with a reset; then descriptors, RSS and `/healthz` are
/// back where they started.
fn churn(plan: &Plan) {
    let server = Binary::start(&[]);
    // The allocator keeps a little after the first connections: measure
    // the baseline after a warm-up round.
    run_churn(&server, 300);
    wait_until("the warm-up to close", || settled(&server));
    // The health request that checked is itself a descriptor for a moment:
    // the baseline is the fewest seen.
    let fds = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            server.fds()
        })
        .min()
        .unwrap();
    let rss = server.rss_kib();
    let start = Instant::now();
    run_churn(&server, plan.churn_cycles);
    let took = start.elapsed();
    wait_until("every churned connection to close", || settled(&server));
    wait_until("descriptors back at the baseline", || server.fds() <= fds);
    let (fds_after, rss_after) = (server.fds(), server.rss_kib());
    assert!(rss_after <= rss + 2048, "RSS {rss} KiB -> {rss_after} KiB");
    let health = server.health();
    row(
        "churn",
        format!(
            "{} cycles (⅓ close frame, ⅓ FIN, ⅓ reset) in {:.1} s; descriptors {fds} → {fds_after}, RSS {rss} → {rss_after} KiB, closes {}",
            plan.churn_cycles,
            took.as_secs_f64(),
            health["counters"]["closes"]
        ),
    );
}

fn run_churn(server: &Binary, cycles: usize) {
    let threads = 4;
    let addr = server.addr;
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for i in (t..cycles).step_by(threads) {
                    let mut ws = TcpStream::connect(addr).unwrap();
                    ws.set_read_timeout(Some(DEADLINE)).unwrap();
                    ws.write_all(upgrade_request("queue").as_bytes()).unwrap();
                    assert_eq!(read_response(&mut ws).0, 101);
                    read_data_frame(&mut ws);
                    match i % 3 {
                        0 => {
                            ws.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
                                .unwrap();
                            assert_eq!(read_data_frame(&mut ws).close_code(), 1000);
                        }
                        1 => ws.shutdown(Shutdown::Both).unwrap(),
                        _ => reset(ws),
                    }
                }
            });
        }
    });
}

/// No connection left but the health request asking.
fn settled(server: &Binary) -> bool {
    let health = server.health();
    health["connections"] == 0 && health["sockets"] == 1
}

// ----- half-open peers -----

/// In a child process: opens `n` subscriptions to `addr`, says so, and
/// sleeps until killed.
fn hold(spec: &str) {
    let (addr, n) = spec.split_once(',').expect("ADDR,N");
    let addr: SocketAddr = addr.parse().unwrap();
    let held: Vec<TcpStream> = (0..n.parse().unwrap())
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(upgrade_request("queue").as_bytes()).unwrap();
            assert_eq!(read_response(&mut s).0, 101);
            s
        })
        .collect();
    println!("holding {}", held.len());
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(3600));
}

/// Peers that vanish without a FIN (a stopped process: its kernel still
/// acknowledges, but nothing answers a ping) are closed within two ping
/// intervals.
fn half_open() {
    let interval = Duration::from_millis(500);
    let server = Binary::start(&["--ping-interval", "500ms"]);
    let n = 50;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("STATECAST_FAULTS_HOLD", format!("{},{n}", server.addr))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), format!("holding {n}"));
    assert_eq!(server.health()["connections"], n);
    // SAFETY: kill only sends a signal to our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGSTOP);
    }
    let stopped = Instant::now();
    wait_until("the vanished peers to be closed", || {
        server.health()["connections"] == 0
    });
    let took = stopped.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    // Two silent intervals, plus the timer's quarter-interval tick.
    let bound = interval * 2 + interval / 2 + Duration::from_millis(100);
    assert!(took <= bound, "closed after {took:?}, bound {bound:?}");
    row(
        "half-open peers",
        format!(
            "{n} subscribers of a SIGSTOPped process, ping interval 500 ms: all closed {:.2} s after the stop",
            took.as_secs_f64()
        ),
    );
}

// ----- descriptors run out -----

/// From /proc: the loop thread's (the binary's main thread) CPU time in
/// ticks of 10 ms and the times it blocked (voluntary context switches).
fn loop_thread(pid: u32) -> (u64, u64) {
    let path = format!("/proc/{pid}/task/{pid}");
    let stat = std::fs::read_to_string(format!("{path}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("{path}/status")).unwrap();
    let switches = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (ticks, switches)
}

/// A server at its descriptor limit (40) with connections still coming:
/// what the loop costs while it waits for descriptors to free up (the
/// figures `tests/limits.rs` once held to a wall-clock bound).
fn descriptors_out() {
    let server = Binary::start_with_fd_limit(&[], 40);
    let held: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    wait_until("the server to run out", || {
        server
            .log
            .lock()
            .unwrap()
            .contains("out of file descriptors")
    });
    let pid = server.child.id();
    let (ticks, switches) = loop_thread(pid);
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let (ticks_after, switches_after) = loop_thread(pid);
    let seconds = window.elapsed().as_secs_f64();
    drop(held);
    row(
        "descriptors out",
        format!(
            "at a limit of 40 with 60 peers: the loop used {:.1}% of a core and woke {:.0} times a second",
            (ticks_after - ticks) as f64 / 100.0 / seconds * 100.0,
            (switches_after - switches) as f64 / seconds
        ),
    );
}

// ----- output floods -----

/// The three output floods: memory bounded, the flooder closed, a healthy
/// client's publish delivered meanwhile.
fn floods() {
    let cases: [(&str, &[&str], Vec<u8>, &str); 3] = [
        (
            "pipelined GET /healthz",
            &["--write-timeout", "1s"],
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            "write_timeout",
        ),
        ("ping flood", &[], client_frame(0x89, b"x"), "ping_flood"),
        (
            "JSON ping flood",
            // JSON pongs are conflated like control pongs, so a flood of
            // JSON pings is a ping flood too; the close frame waits on a
            // full socket for --write-timeout.
            &["--max-queue-bytes", "256KiB", "--write-timeout", "10s"],
            client_frame(0x81, br#"{"type":"ping","timestamp":1}"#),
            "ping_flood",
        ),
    ];
    for (name, args, unit, cause) in cases {
        let server = Binary::start(args);
        let mut healthy = server.subscribe("queue");
        read_data_frame(&mut healthy);
        let flooder = if name.starts_with("pipelined") {
            server.connect()
        } else {
            server.subscribe("routes")
        };
        let base = server.rss_kib();
        let flooding = std::thread::spawn(move || flood(flooder, &unit));
        std::thread::sleep(Duration::from_millis(300));
        let published = Instant::now();
        let body = r#"{"phases":[],"paused":true}"#;
        assert_eq!(server.request("POST", "/api/v1/publish/queue", body).0, 200);
        assert_eq!(read_data_frame(&mut healthy).json()["data"]["paused"], true);
        let delivered = published.elapsed();
        let mut peak = base;
        while !flooding.is_finished() {
            peak = peak.max(server.rss_kib());
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_until("the flooder to be closed", || {
            server.health()["counters"]["closes"][cause] == 1
        });
        assert!(peak - base < 48 << 10, "{name}: RSS {base} -> {peak} KiB");
        row(
            name,
            format!(
                "RSS +{} KiB at most, closed as {cause}; a publish during it reached a healthy client in {:.1} ms",
                peak - base,
                delivered.as_secs_f64() * 1e3
            ),
        );
    }
}

// ----- a lossy, slow link -----

/// What the proxy does to one connection.
#[derive(Clone, Copy)]
struct Damage {
    delay: Duration,
    /// Bytes per second, server to client.
    rate: usize,
    /// Chance in 1000, per chunk, of a one-second stall.
    stall: u32,
    /// Chance in 1000, per chunk, of cutting the connection.
    cut: u32,
}

/// A TCP proxy that forwards server-to-client bytes late, slowly, with
/// stalls, and sometimes cuts the connection; client-to-server bytes pass.
fn proxy(upstream: SocketAddr, damage: Damage, stop: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        while !stop.load(Ordering::Relaxed) {
            let Ok((client, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            client.set_nonblocking(false).unwrap();
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pipe(c2, s2, None, seed));
            std::thread::spawn(move || pipe(server, client, Some(damage), seed));
        }
    });
    addr
}

fn pipe(mut from: TcpStream, mut to: TcpStream, damage: Option<Damage>, mut seed: u64) {
    let mut buf = vec![0u8; 4096];
    let mut roll = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1000) as u32
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(d) = damage {
            std::thread::sleep(d.delay + Duration::from_secs_f64(n as f64 / d.rate as f64));
            if roll() < d.stall {
                std::thread::sleep(Duration::from_secs(1));
            }
            if roll() < d.cut {
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// A client that reconnects until it has seen `last` on the topic.
fn converge(addr: SocketAddr, last: u64, reconnects: &AtomicU64, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        let Ok(mut ws) = TcpStream::connect(addr) else {
            continue;
        };
        ws.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        if ws.write_all(upgrade_request("link").as_bytes()).is_err() {
            continue;
        }
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            match ws.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        if head.starts_with(b"HTTP/1.1 101") {
            while let Some(frame) = try_frame(&mut ws) {
                if frame.opcode == 0x1 && frame.json()["data"]["n"] == last {
                    return true;
                }
            }
        }
        reconnects.fetch_add(1, Ordering::Relaxed);
    }
    false
}

/// `read_frame` that gives up on a broken or silent connection.
fn try_frame(ws: &mut TcpStream) -> Option<Frame> {
    let mut head = [0u8; 2];
    ws.read_exact(&mut head).ok()?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            ws.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            ws.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    ws.read_exact(&mut payload).ok()?;
    Some(Frame {
        opcode: head[0] & 0x0f,
        fin: head[0] & 0x80 != 0,
        payload,
    })
}

/// Clients behind a proxy that delays, throttles, stalls and cuts: each
/// converges to the newest snapshot, or reconnects and does.
fn lossy_link(plan: &Plan) {
    let server = Binary::start(&["--topic", "link", "--ping-interval", "2s"]);
    let stop = Arc::new(AtomicBool::new(false));
    let damage = Damage {
        delay: Duration::from_millis(20),
        rate: 64 << 10,
        stall: 20,
        cut: 10,
    };
    let addr = proxy(server.addr, damage, stop.clone());
    let last = plan.link_publishes as u64;
    let reconnects = Arc::new(AtomicU64::new(0));
    let pad = "p".repeat(2000);
    server.request(
        "POST",
        "/api/v1/publish/link",
        &format!(r#"{{"n":0,"pad":"{pad}"}}"#),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let clients: Vec<_> = (0..plan.link_clients)
        .map(|_| {
            let reconnects = reconnects.clone();
            std::thread::spawn(move || converge(addr, last, &reconnects, deadline))
        })
        .collect();
    for n in 1..=last {
        let body = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
        assert_eq!(server.request("POST", "/api/v1/publish/link", &body).0, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    let published = Instant::now();
    let converged = clients
        .into_iter()
        .filter_map(|c| c.join().ok())
        .filter(|ok| *ok)
        .count();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        converged, plan.link_clients,
        "clients lost on the lossy link"
    );
    row(
        "lossy, slow link",
        format!(
            "{} clients through a proxy adding 20 ms, 64 KiB/s, 2% one-second stalls, 1% cuts per chunk; {last} publishes of 2 KB at 20/s: all converged to the newest {:.1} s after the last publish, {} reconnects",
            plan.link_clients,
            published.elapsed().as_secs_f64(),
            reconnects.load(Ordering::Relaxed)
        ),
    );
}

// ----- soak -----

/// Churn plus publishing for `plan.soak`: RSS, descriptors and the steady
/// subscribers' p99 latency printed every window, and all three flat.
fn soak(plan: &Plan) {
    let server = Binary::start(&["--topic", "soak"]);
    let steady = 100;
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..steady {
        let mut ws = server.subscribe("soak");
        let (latencies, stop) = (latencies.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            ws.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let Some(frame) = try_frame(&mut ws) else {
                    continue;
                };
                // A live dashboard's browser answers pings; so do these,
                // or the server rightly closes them after two intervals.
                if frame.opcode == 0x9 {
                    let _ = ws.write_all(&client_frame(0x8A, &frame.payload));
                    continue;
                }
                if frame.opcode != 0x1 {
                    continue;
                }
                if let Some(sent) = frame.json()["data"]["t"].as_u64() {
                    let now = epoch.elapsed().as_micros() as u64;
                    latencies
                        .lock()
                        .unwrap()
                        .push(now.saturating_sub(sent) as u32);
                }
            }
        }));
    }
    let churner = {
        let (addr, stop) = (server.addr, stop.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let mut ws = TcpStream::connect(addr).unwrap();
                ws.set_read_timeout(Some(DEADLINE)).unwrap();
                ws.write_all(upgrade_request("queue").as_bytes()).unwrap();
                read_response(&mut ws);
                if i.is_multiple_of(2) {
                    reset(ws);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            i
        })
    };
    let window = Duration::from_secs(if plan.soak > Duration::from_secs(60) {
        60
    } else {
        5
    });
    let mut windows: Vec<(u64, usize, u32)> = Vec::new();
    let mut next = epoch + window;
    println!();
    println!("| soak s | RSS KiB | fds | p99 ms |");
    println!("|---:|---:|---:|---:|");
    while epoch.elapsed() < plan.soak {
        let t = epoch.elapsed().as_micros() as u64;
        let body = format!(r#"{{"t":{t}}}"#);
        assert_eq!(server.request("POST", "/api/v1/publish/soak", &body).0, 200);
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() >= next {
            next += window;
            let mut l = std::mem::take(&mut *latencies.lock().unwrap());
            // Conflation may merge publishes, but every steady subscriber
            // must keep receiving: a window with fewer deliveries than
            // subscribers has lost some.
            let connected = server.health()["connections"].as_u64().unwrap_or(0);
            assert!(
                connected >= steady as u64,
                "steady subscribers lost: {connected} left"
            );
            assert!(l.len() >= steady, "only {} deliveries in a window", l.len());
            l.sort_unstable();
            let p99 = l.get(l.len() * 99 / 100).copied().unwrap_or(0);
            let sample = (server.rss_kib(), server.fds(), p99);
            println!(
                "| {} | {} | {} | {:.1} |",
                epoch.elapsed().as_secs(),
                sample.0,
                sample.1,
                sample.2 as f64 / 1e3
            );
            windows.push(sample);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let churned = churner.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    println!();
    check_flat(&windows);
    let (first, last) = (windows[0], windows[windows.len() - 1]);
    row(
        "soak",
        format!(
            "{} s of {churned} connect/close cycles beside {steady} subscribers and 10 publishes/s: RSS {} → {} KiB, fds {} → {}, p99 {:.1} → {:.1} ms",
            plan.soak.as_secs(),
            first.0,
            last.0,
            first.1,
            last.1,
            first.2 as f64 / 1e3,
            last.2 as f64 / 1e3
        ),
    );
}

/// Flat: after the first window, RSS grows by at most a quarter (and 4 MiB),
/// descriptors by at most a few churn connections in flight, and p99 stays
/// within three times the first window's or 50 ms.
fn check_flat(windows: &[(u64, usize, u32)]) {
    assert!(windows.len() >= 2, "the soak was too short to judge");
    let (rss0, fds0, p0) = windows[0];
    for &(rss, fds, p99) in &windows[1..] {
        assert!(rss <= rss0 + (rss0 / 4).max(4096), "RSS grew: {windows:?}");
        assert!(fds <= fds0 + 8, "descriptors grew: {windows:?}");
        assert!(p99 <= (3 * p0).max(50_000), "p99 grew: {windows:?}");
    }
}
