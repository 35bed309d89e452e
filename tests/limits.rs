//! Connection limits answer instead of dropping: 503 with `Retry-After`
//! past `--max-accept-rate` and past `--max-connections` (with `/healthz`
//! still answered), 429 past
//! `--max-connections-per-ip`, and a server out of file descriptors that
//! neither spins nor dies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use statecast_testkit::*;

/// Reads whatever the server sends until it closes: the refusal it wrote
/// at once, without waiting for a request.
fn refusal(mut stream: TcpStream) -> String {
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// Past `--max-connections` an upgrade gets 503 with `Retry-After`, and
/// `/healthz` is still answered from the reserve.
#[test]
fn a_full_server_answers_503_and_still_reports_health() {
    let server = TestServer::with(|c| c.max_connections = 3);
    let _held: Vec<TcpStream> = (0..3).map(|_| server.subscribe("queue")).collect();
    let mut extra = server.connect();
    extra
        .write_all(upgrade_request("queue").as_bytes())
        .unwrap();
    let (status, head, _) = read_response(&mut extra);
    assert_eq!(status, 503);
    assert!(head.contains("Retry-After: 1"), "{head}");
    let health = server.health();
    assert_eq!(health["connections"], 3);
    assert!(
        health["counters"]["refused"].as_u64().unwrap() >= 1,
        "{health}"
    );
}

/// With the reserve full too, the refusal is written at once.
#[test]
fn past_the_reserve_the_refusal_comes_at_once() {
    let server = TestServer::with(|c| c.max_connections = 2);
    let _held: Vec<TcpStream> = (0..2).map(|_| server.subscribe("queue")).collect();
    // Idle connections fill the /healthz reserve.
    let idle: Vec<TcpStream> = (0..16).map(|_| server.connect()).collect();
    wait_until("the reserve to fill", || {
        let text = refusal(server.connect());
        text.starts_with("HTTP/1.1 503")
    });
    let text = refusal(server.connect());
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");
    drop(idle);
}

/// Past `--max-connections-per-ip` a peer gets 429 with `Retry-After`;
/// once it closes one, it may connect again.
#[test]
fn the_per_ip_cap_answers_429() {
    let server = TestServer::with(|c| c.max_connections_per_ip = 2);
    let first = server.subscribe("queue");
    let _second = server.subscribe("queue");
    let text = refusal(server.connect());
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");
    drop(first);
    wait_until("a slot to free up", || {
        let mut s = server.connect();
        s.write_all(upgrade_request("queue").as_bytes()).unwrap();
        read_response(&mut s).0 == 101
    });
}

/// At `--max-accept-rate 1`, its smallest limit (the bucket holds one
/// token), a burst is let in one a second: the first connection gets in,
/// the rest get 503 with `Retry-After` without their request being
/// served, and once the bucket has refilled a connection gets in again.
#[test]
fn the_accept_rate_refuses_a_burst_with_503_until_it_refills() {
    let server = TestServer::with(|c| c.max_accept_rate = 1);
    let started = Instant::now();
    let mut burst: Vec<TcpStream> = (0..10).map(|_| server.connect()).collect();
    for stream in &mut burst {
        stream
            .write_all(upgrade_request("queue").as_bytes())
            .unwrap();
    }
    let answers: Vec<(u16, String)> = burst
        .iter_mut()
        .map(|stream| {
            let (status, head, body) = read_response(stream);
            (status, format!("{head}{}", String::from_utf8_lossy(&body)))
        })
        .collect();
    // A token comes back each second: a slow machine may let in one more
    // per second the burst took, never more.
    let earned = started.elapsed().as_secs() as usize;
    assert_eq!(answers[0].0, 101, "{}", answers[0].1);
    let admitted = answers.iter().filter(|(status, _)| *status == 101).count();
    assert!(admitted <= 1 + earned, "{admitted} let in: {answers:?}");
    for (status, text) in answers.iter().filter(|(status, _)| *status != 101) {
        assert_eq!(*status, 503, "{text}");
        assert!(text.contains("Retry-After: 1\r\n"), "{text}");
        assert!(text.contains("over --max-accept-rate 1/s"), "{text}");
    }
    wait_until("the bucket to refill and let one in", || {
        let mut stream = server.connect();
        stream
            .write_all(upgrade_request("queue").as_bytes())
            .unwrap();
        read_response(&mut stream).0 == 101
    });
}

/// The loop thread's scheduler state (`S` while it sleeps in `epoll_wait`,
/// `R` while it runs or waits for a CPU) and how many times it has blocked
/// (its voluntary context switches), from /proc. The loop is the binary's
/// main thread, whose id is the process's.
fn loop_thread(pid: u32) -> (char, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let state = field("State:").chars().next().unwrap();
    (state, field("voluntary_ctxt_switches:").parse().unwrap())
}

/// With its descriptors exhausted the server answers new connections 503
/// (through a spare descriptor), does not spin, says so once, and serves
/// again as soon as connections close.
#[test]
fn running_out_of_descriptors_is_survived() {
    let server = Binary::start_with_fd_limit(&[], 40);
    let held: Vec<TcpStream> = (0..60)
        .map(|_| {
            let s = TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            s
        })
        .collect();
    wait_until("the server to run out", || {
        server
            .log
            .lock()
            .unwrap()
            .contains("out of file descriptors")
    });
    // The last ones, past what the descriptors allow, were answered 503.
    let answered = held.iter().rev().any(|s| {
        let mut buf = [0u8; 12];
        let mut s = s;
        s.read(&mut buf)
            .is_ok_and(|n| n >= 12 && buf.starts_with(b"HTTP/1.1 503"))
    });
    assert!(answered, "no connection was told 503");
    // Not a busy loop: while full, the loop sleeps in `epoll_wait` between
    // its accept retries (every 50 ms) and its tick. A spinning loop is never
    // seen asleep, on any machine: it is always running or waiting for a
    // CPU. A slow or loaded machine only makes a sleeping loop's wake-ups
    // later, never more frequent.
    let pid = server.child.id();
    wait_until(
        "the loop to be seen asleep while out of descriptors",
        || loop_thread(pid).0 == 'S',
    );
    // Nor does it wake at a spinning rate. Wake-ups come from timers and
    // events, so their count over a window can only fall on a slower
    // machine; the bound, ten times what the retry timer asks for, fails
    // only a loop that sleeps but hardly (a near-zero timeout).
    let (_, before) = loop_thread(pid);
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let (_, after) = loop_thread(pid);
    let per_second = (after - before) as f64 / window.elapsed().as_secs_f64();
    assert!(
        per_second < 200.0,
        "the loop woke {per_second:.0} times a second while out of descriptors"
    );
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.matches("out of file descriptors").count(), 1, "{log}");
    drop(held);
    wait_until("the server to serve again", || {
        let Ok(mut s) = TcpStream::connect(server.addr) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        s.write_all(request.as_bytes()).is_ok() && {
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text.starts_with("HTTP/1.1 200")
        }
    });
}

/// A value `len` bytes long as compact JSON: `{"s":"xx…"}`.
fn value_of(len: usize) -> String {
    format!(r#"{{"s":"{}"}}"#, "x".repeat(len - 8))
}

/// A publish whose snapshot a subscriber's queue could never hold is
/// refused (413, saying why), not stored undeliverable; the largest value
/// that is taken reaches a subscriber on every route, at the smallest
/// legal `--max-queue-bytes`, even beside the longest response head (an
/// allowed origin that fills the request head, echoed back).
#[test]
fn every_stored_snapshot_is_deliverable() {
    use statecast::topic::{MIN_QUEUE, QUEUE_RESERVE};
    let origin = format!("https://{}.example", "o".repeat(7800));
    let server = TestServer::with(|c| {
        c.max_queue_bytes = MIN_QUEUE;
        c.topics.push("big".into());
        c.allow_origins = vec![origin.clone()];
        c.insecure_publish = true;
    });
    let largest = MIN_QUEUE - QUEUE_RESERVE;
    let (status, body) = server.publish("big", &value_of(largest + 1));
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("--max-queue-bytes"), "{body}");
    let (status, body) = server.publish("big", &value_of(largest));
    assert_eq!(status, 200, "{body}");
    // In-process producers and broadcasts are held to the same bound.
    let refused = server.publisher.publish_json("big", &value_of(largest + 1));
    assert!(
        matches!(refused, Err(statecast::PublishError::TooLarge(_))),
        "{refused:?}"
    );
    let event = format!(r#"{{"type":"x","data":{}}}"#, value_of(largest));
    assert_eq!(server.request("POST", "/api/v1/broadcast", &event).0, 413);

    let with_origin = format!("Origin: {origin}\r\n");
    let get = |path: &str, extra: &str| {
        let mut stream = server.connect();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{with_origin}{extra}\r\n");
        assert!(request.len() <= 8 << 10, "the request head fits its limit");
        stream.write_all(request.as_bytes()).unwrap();
        stream
    };
    let mut state = get("/api/v1/state/big", "Connection: close\r\n");
    let (status, head, body) = read_response(&mut state);
    assert_eq!(status, 200, "{head}");
    assert!(
        body.len() > largest,
        "the whole snapshot: {} bytes",
        body.len()
    );

    let mut sse = get("/api/v1/sse/big", "Accept: text/event-stream\r\n");
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 << 10];
    while !seen.windows(2).any(|w| w == b"\n\n") {
        let n = sse.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the stream ended: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..80]);
    assert!(
        text.contains(&"x".repeat(largest - 8)),
        "the event carries the value"
    );

    let mut ws = server.connect();
    let upgrade = upgrade_request("big").replace("\r\n\r\n", &format!("\r\n{with_origin}\r\n"));
    ws.write_all(upgrade.as_bytes()).unwrap();
    assert_eq!(read_response(&mut ws).0, 101);
    let frame = read_frame(&mut ws);
    assert_eq!(
        frame.json()["data"]["s"].as_str().map(str::len),
        Some(largest - 8)
    );
}

/// Below the smallest queue that can hold a head and an envelope, the
/// server does not start, and says what the least is.
#[test]
fn a_queue_too_small_for_any_snapshot_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args(["--listen", "127.0.0.1:0", "--max-queue-bytes", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-queue-bytes") && err.contains(&statecast::topic::MIN_QUEUE.to_string()),
        "{err}"
    );
}

/// A burst larger than one accept pass is let in whole: connections that
/// queued while the server was stopped, with none after them to raise the
/// listener's readiness again, each get their upgrade and snapshot.
#[test]
fn a_burst_beyond_one_accept_pass_is_all_answered() {
    let server = Binary::start(&[]);
    let pid = server.child.id() as libc::pid_t;
    // SAFETY: kill only sends a signal, to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let mut clients: Vec<TcpStream> = (0..100)
        .map(|_| {
            // The kernel completes the handshake into the backlog.
            let mut stream = TcpStream::connect(server.addr).unwrap();
            stream
                .write_all(upgrade_request("queue").as_bytes())
                .unwrap();
            stream
        })
        .collect();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    for stream in &mut clients {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let (status, _, _) = read_response(stream);
        assert_eq!(status, 101);
        assert_eq!(read_frame(stream).opcode, 0x1);
    }
}
