//! Shutdown of the real binary on SIGTERM, and of the library through a
//! `Publisher`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use statecast_testkit::*;

/// SIGTERM: every client gets a 1001 close and the process exits 0.
#[test]
fn sigterm_sends_1001_to_everyone_and_exits_0() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args(["--listen", "127.0.0.1:0", "--log-level", "info"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting statecast");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "statecast exited early"
        );
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep reading the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});

    let mut clients: Vec<TcpStream> = ["queue", "workflows", "adw-state/x1"]
        .iter()
        .map(|topic| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            s.write_all(upgrade_request(topic).as_bytes()).unwrap();
            assert_eq!(read_response(&mut s).0, 101);
            read_frame(&mut s);
            s
        })
        .collect();

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // Each client answers the close and hangs up, as a browser does.
    for mut client in clients.drain(..) {
        let client = &mut client;
        let close = read_data_frame(client);
        assert_eq!(close.close_code(), 1001);
        assert_eq!(&close.payload[2..], b"going away");
        client
            .write_all(&client_frame(0x88, &1001u16.to_be_bytes()))
            .unwrap();
        expect_eof(client);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < DEADLINE, "statecast did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "exit status {status:?}");
    // New connections are refused once shutdown began.
    assert!(TcpStream::connect(&addr).is_err());
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
