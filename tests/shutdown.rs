//! Shutdown of the real binary on SIGTERM (at once, or drained over
//! `--drain`), and of the library through a `Publisher`.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use statecast_testkit::*;

/// Sends `signal` (`TERM`, `INT`) to the server's process.
fn signal(server: &Binary, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the server's process to exit; its status.
fn exit_status(server: &mut Binary) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < DEADLINE, "statecast did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads until the server's close frame, checks it is 1012 "service
/// restart", answers it as a browser does and sees the server hang up.
#[track_caller]
fn expect_restart_close(client: &mut TcpStream) {
    let close = read_data_frame(client);
    assert_eq!(close.close_code(), 1012);
    assert_eq!(&close.payload[2..], b"service restart");
    client
        .write_all(&client_frame(0x88, &1012u16.to_be_bytes()))
        .unwrap();
    expect_eof(client);
}

/// SIGTERM with `--drain 0`: every client gets a 1012 Service Restart
/// close at once and the process exits 0; new connections are refused.
#[test]
fn sigterm_without_a_drain_sends_1012_to_everyone_and_exits_0() {
    let mut server = Binary::start(&["--drain", "0"]);
    let mut clients: Vec<TcpStream> = ["queue", "workflows", "adw-state/x1"]
        .iter()
        .map(|topic| {
            let mut s = server.subscribe(topic);
            read_frame(&mut s);
            s
        })
        .collect();
    signal(&server, "TERM");
    for client in &mut clients {
        expect_restart_close(client);
    }
    let status = exit_status(&mut server);
    assert!(status.success(), "exit status {status:?}");
    // New connections are refused once shutdown began.
    assert!(TcpStream::connect(server.addr).is_err());
}

/// Opens `n` WebSockets on `queue`, each past its snapshot, and a thread
/// per client that waits for its close, answers it and sends back how
/// long after `from` the close came.
fn clients_timing_their_close(
    server: &Binary,
    n: usize,
) -> (Instant, std::sync::mpsc::Receiver<Duration>, Vec<TcpStream>) {
    let clients: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = server.subscribe("queue");
            read_frame(&mut s);
            s
        })
        .collect();
    let from = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let kept = clients.iter().map(|c| c.try_clone().unwrap()).collect();
    for mut client in clients {
        let tx = tx.clone();
        std::thread::spawn(move || {
            expect_restart_close(&mut client);
            let _ = tx.send(from.elapsed());
        });
    }
    (from, rx, kept)
}

/// SIGTERM with `--drain 3s` over 20 WebSockets: each gets 1012, the
/// closes are spread over the window (not all in its first tenth) and all
/// come within the window and a generous slack, new connections are
/// refused from the start, and the process exits 0.
#[test]
fn sigterm_drains_closes_over_the_window_then_exits_0() {
    const WINDOW: Duration = Duration::from_secs(3);
    const CLIENTS: usize = 20;
    let mut server = Binary::start(&["--drain", "3s"]);
    let (_, closes, _clients) = clients_timing_their_close(&server, CLIENTS);
    let signalled = Instant::now();
    signal(&server, "TERM");
    let first = closes.recv_timeout(DEADLINE).expect("a first close");
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "accepting during the drain"
    );
    let mut at = vec![first];
    for _ in 1..CLIENTS {
        at.push(closes.recv_timeout(WINDOW + DEADLINE).expect("every close"));
    }
    let latest = *at.iter().max().unwrap();
    assert!(
        latest > WINDOW / 10,
        "every close came within the first tenth of the window: {at:?}"
    );
    assert!(
        signalled.elapsed() < WINDOW + DEADLINE,
        "the drain outlasted its window by far: {at:?}"
    );
    let status = exit_status(&mut server);
    assert!(status.success(), "exit status {status:?}");
}

/// A second SIGTERM during a drain (of ten minutes here: a close a
/// minute) closes everyone left at once, with 1012, and the process
/// still exits 0.
#[test]
fn a_second_sigterm_ends_the_drain_early() {
    let mut server = Binary::start(&["--drain", "10m"]);
    let (_, closes, _clients) = clients_timing_their_close(&server, 10);
    signal(&server, "TERM");
    // The first is closed at once: the drain has begun.
    closes.recv_timeout(DEADLINE).expect("a first close");
    signal(&server, "TERM");
    for _ in 1..10 {
        let after = closes.recv_timeout(DEADLINE).expect("every close, early");
        assert!(after < DEADLINE * 2, "{after:?}");
    }
    let status = exit_status(&mut server);
    assert!(status.success(), "exit status {status:?}");
}

/// A client that takes none of its output does not hold shutdown past
/// `--shutdown-timeout`. Its close frame waits behind a snapshot far larger
/// than the kernel's socket buffers, so only the shutdown timeout (200 ms)
/// or the write timeout (an hour here) can end it: shutdown finishing
/// within the kit's `DEADLINE` is the shutdown timeout's doing, however
/// slow the machine.
#[test]
fn shutdown_timeout_bounds_the_wait() {
    const BIG: usize = 32 << 20;
    let server = TestServer::with(|c| {
        c.shutdown_timeout = Duration::from_millis(200);
        c.write_timeout = Duration::from_secs(3600);
        c.max_publish_bytes = 2 * BIG;
        c.max_queue_bytes = 4 * BIG;
        c.preset = statecast::Preset::None;
        c.any_topic = true;
    });
    let ws = server.subscribe("big");
    let value = serde_json::json!({ "s": "x".repeat(BIG) });
    server.publisher.publish("big", &value).unwrap();
    server.wait_health("the snapshot to be queued for the subscriber", |h| {
        h["counters"]["deliveries"].as_u64() >= Some(1)
    });
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(server);
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(DEADLINE).is_ok(),
        "shutdown still waiting on a client that reads nothing"
    );
    drop(ws);
}

/// A `Publisher` that outlives its server gets an error, not a panic.
#[test]
fn publisher_outliving_the_server_gets_closed() {
    let server = TestServer::start();
    let publisher = server.publisher.clone();
    drop(server);
    match publisher.publish("queue", &serde_json::json!({"phases": []})) {
        Err(statecast::PublishError::Closed) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// The Debian unit's `TimeoutStopSec` outlasts the default drain and the
/// shutdown timeout after it, so systemd's SIGKILL does not cut short a
/// drain run with the defaults.
#[test]
fn the_units_stop_timeout_outlasts_the_default_drain() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/debian/statecast.service"
    ))
    .expect("debian/statecast.service");
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim().parse().ok())
        .expect("TimeoutStopSec= in seconds");
    let defaults = statecast::Config::default();
    let needed = defaults.drain + defaults.shutdown_timeout;
    assert!(
        Duration::from_secs(stop) > needed,
        "TimeoutStopSec={stop} is not longer than --drain + --shutdown-timeout ({needed:?})"
    );
}
