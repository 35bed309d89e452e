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

/// A client that never answers the close does not hold shutdown past
/// `--shutdown-timeout`. The bound is below the 2 s linger a closing
/// connection waits for its peer, so only the shutdown timeout can meet it.
#[test]
fn shutdown_timeout_bounds_the_wait() {
    let server = TestServer::with(|c| c.shutdown_timeout = Duration::from_millis(200));
    let mut ws = server.subscribe("queue");
    read_frame(&mut ws);
    let start = Instant::now();
    drop(server);
    assert!(
        start.elapsed() < statecast::server::LINGER * 3 / 4,
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(read_data_frame(&mut ws).close_code(), 1001);
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
