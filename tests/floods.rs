//! Output floods against the real binary: a client that
//! pipelines requests, floods pings, or floods JSON pings, and never reads.
//! Each is bounded in memory and closed, and a healthy client beside it
//! still gets its publishes.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use statecast_testkit::*;

/// RSS the server may add while one client floods it. The issue saw
/// 1.5 GiB in 2 s before the fix.
const RSS_BOUND_KIB: u64 = 48 << 10;

/// Runs a flood beside a healthy subscriber: checks the server's RSS stays
/// bounded while it lasts, that the healthy client gets a publish made in
/// the middle of it, and returns the server's /healthz after the flood.
fn survive(server: &Binary, flooder: TcpStream, unit: &[u8]) -> serde_json::Value {
    let mut healthy = server.subscribe("queue");
    read_data_frame(&mut healthy);
    let base = server.rss_kib();
    let unit = unit.to_vec();
    let flooding = std::thread::spawn(move || flood(flooder, &unit));
    let mut peak = base;
    let start = Instant::now();
    let mut published = false;
    let publish = || {
        let body = r#"{"phases":[],"paused":true}"#;
        let (status, reply) = server.request("POST", "/api/v1/publish/queue", body);
        assert_eq!(status, 200, "{reply}");
    };
    while !flooding.is_finished() {
        peak = peak.max(server.rss_kib());
        if !published && start.elapsed() > Duration::from_millis(500) {
            publish();
            published = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The server may have closed the flooder before then.
    if !published {
        publish();
    }
    let sent = flooding
        .join()
        .expect("the flood ended with the server's close");
    assert!(sent > 1 << 20, "the flood sent only {sent} bytes");
    assert!(
        peak - base < RSS_BOUND_KIB,
        "RSS grew from {base} KiB to {peak} KiB while {sent} bytes flooded in"
    );
    // The healthy client got the publish made during the flood.
    let frame = read_data_frame(&mut healthy).json();
    assert_eq!(frame["data"]["paused"], true, "{frame}");
    server.health()
}

/// Pipelined `GET /healthz` never read: the server stops reading the
/// connection once its answers pile up, instead of queueing without end,
/// and closes it when it takes nothing for `--write-timeout`.
#[test]
fn pipelined_requests_never_read_are_held_back() {
    let server = Binary::start(&["--write-timeout", "1s"]);
    let flooder = server.connect();
    let health = survive(
        &server,
        flooder,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(
        health["queued_bytes"].as_u64().unwrap() < 1 << 20,
        "{health}"
    );
    wait_until("the flooder to be closed", || {
        server.health()["counters"]["closes"]["write_timeout"] == 1
    });
}

/// Pings never read: one pong waits at a time (a newer replaces it), and
/// a client whose pings outrun its reading is closed with 1008 and counted.
#[test]
fn a_ping_flood_is_bounded_and_closed() {
    let server = Binary::start(&[]);
    let flooder = server.subscribe("routes");
    let probe = flooder.try_clone().unwrap();
    let health = survive(&server, flooder, &client_frame(0x89, b"are you there"));
    assert!(
        health["queued_bytes"].as_u64().unwrap() < 1 << 20,
        "{health}"
    );
    wait_until("the flooder to be closed", || {
        server.health()["counters"]["closes"]["ping_flood"] == 1
    });
    // What it finds when it finally reads: pongs, then a 1008.
    let mut probe = probe;
    let close = loop {
        let frame = read_frame(&mut probe);
        if frame.opcode == 0x8 {
            break frame;
        }
        assert!(matches!(frame.opcode, 0x1 | 0xA), "{frame:?}");
    };
    assert_eq!(close.close_code(), 1008);
}

/// JSON pings never read: their pongs are conflated like control pongs
/// (a bounded few wait, a newer one replaces the newest unsent), so the
/// queue stays small and the client is closed with 1008 as a ping flood,
/// not left to pile pongs up to `--max-queue-bytes`.
#[test]
fn a_json_ping_flood_is_bounded_and_closed() {
    let server = Binary::start(&["--max-queue-bytes", "256KiB", "--write-timeout", "10s"]);
    let flooder = server.subscribe("routes");
    let probe = flooder.try_clone().unwrap();
    let ping = client_frame(0x81, br#"{"type":"ping","timestamp":1}"#);
    let health = survive(&server, flooder, &ping);
    assert!(
        health["queued_bytes"].as_u64().unwrap() < 1 << 20,
        "{health}"
    );
    wait_until("the flooder to be closed as a ping flood", || {
        server.health()["counters"]["closes"]["ping_flood"] == 1
    });
    assert_eq!(server.health()["counters"]["closes"]["slow_consumer"], 0);
    let mut probe = probe;
    let close = loop {
        let frame = read_frame(&mut probe);
        if frame.opcode == 0x8 {
            break frame;
        }
        assert_eq!(frame.opcode, 0x1, "{frame:?}");
    };
    assert_eq!(close.close_code(), 1008);
}

/// What a client sends after the server has stopped listening to it (an
/// SSE client, here) is read and dropped, and costs its read budget all
/// the same: with several megabytes already waiting in its socket, one
/// turn reads 256 KiB of it and leaves the rest for later, rather than
/// reading until the socket is empty while every other client waits.
#[test]
fn dropped_input_spends_the_read_budget() {
    let server = Binary::start(&[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /api/v1/sse/queue HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_response(&mut stream);
    assert_eq!(status, 200);
    let before = server.health()["counters"]["reads_deferred"]
        .as_u64()
        .unwrap();
    // Stopped, the server reads nothing while the socket fills.
    let pid = server.child.id().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let mut queued = 0usize;
    while queued < 16 << 20 {
        match stream.write(&chunk) {
            Ok(n) => queued += n,
            Err(_) => break,
        }
    }
    signal("-CONT");
    assert!(queued > 1 << 20, "only {queued} bytes waited");
    wait_until("the budget to be spent", || {
        server.health()["counters"]["reads_deferred"]
            .as_u64()
            .unwrap()
            > before
    });
}
