//! Server-Sent Events on the same loop: the same messages as the
//! WebSocket, `id:` the seq, `Last-Event-ID` honoured, events included,
//! a comment as keep-alive.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use statecast_testkit::*;

/// One SSE event: its id, its data lines joined, or a comment.
#[derive(Debug, PartialEq)]
struct Event {
    id: Option<u64>,
    data: String,
    comment: bool,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }
}

/// Opens a stream on `topic` with extra header lines; checks the head.
fn open(server: &TestServer, topic: &str, extra: &str) -> TcpStream {
    let mut s = server.connect();
    let request = format!(
        "GET /api/v1/sse/{topic} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{extra}\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/event-stream"), "{head}");
    s
}

/// Reads the next event (up to its blank line).
fn next(s: &mut TcpStream) -> Event {
    let mut text = Vec::new();
    let mut byte = [0u8];
    while !text.ends_with(b"\n\n") {
        s.read_exact(&mut byte).expect("reading an event");
        text.push(byte[0]);
    }
    let text = String::from_utf8(text).unwrap();
    let mut event = Event {
        id: None,
        data: String::new(),
        comment: false,
    };
    let mut lines = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(id) = line.strip_prefix("id: ") {
            event.id = Some(id.parse().unwrap());
        } else if let Some(data) = line.strip_prefix("data: ") {
            lines.push(data.to_owned());
        } else if line.starts_with(':') {
            event.comment = true;
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    event.data = lines.join("\n");
    event
}

/// The snapshot at once, then each publish, with the WebSocket's messages
/// and the seq as `id:`. A value is stored as our compact text, so its own
/// line breaks, and a bare CR between tokens that would end an SSE line
/// early, never reach the stream.
#[test]
fn a_stream_carries_the_same_messages() {
    let server = TestServer::start();
    let mut s = open(&server, "queue", "");
    let first = next(&mut s);
    assert_eq!(first.id, Some(0));
    check_message("queue", &first.json());
    let pretty = "{\n  \"phases\": [],\r  \"paused\":\rtrue\n}";
    server.publish("queue", pretty);
    let update = next(&mut s);
    assert_eq!(update.id, Some(1));
    assert_eq!(update.data.lines().count(), 1, "{:?}", update.data);
    assert!(!update.data.contains('\r'), "{:?}", update.data);
    let message = update.json();
    check_message("queue", &message);
    assert_eq!(message["data"]["paused"], true);
    // Events reach streams too, without an id.
    let event = r#"{"type":"workflow_completed","data":{"adw_id":"a1b2c3d4"}}"#;
    assert_eq!(server.request("POST", "/api/v1/broadcast", event).0, 200);
    let got = next(&mut s);
    assert_eq!(got.id, None);
    assert_eq!(got.json()["type"], "workflow_completed");
}

/// `Last-Event-ID` equal to the topic's seq: no resend. Behind: the
/// snapshot at once.
#[test]
fn last_event_id_resumes_without_a_resend() {
    let server = TestServer::start();
    server.publish("queue", r#"{"phases":[],"total":1}"#);
    let mut current = open(&server, "queue", "Last-Event-ID: 1\r\n");
    let mut behind = open(&server, "queue", "Last-Event-ID: 0\r\n");
    assert_eq!(next(&mut behind).id, Some(1));
    server.publish("queue", r#"{"phases":[],"total":2}"#);
    let first = next(&mut current);
    assert_eq!(
        first.id,
        Some(2),
        "the first event after resuming is the next publish"
    );
    assert_eq!(first.json()["data"]["total"], 2);
    assert_eq!(next(&mut behind).id, Some(2));
}

/// A quiet stream gets a comment every ping interval; the stream counts
/// as a connection and leaves when the client goes.
#[test]
fn keep_alive_comments_and_leaving() {
    let server = TestServer::with(|c| c.ping_interval = Duration::from_millis(200));
    let mut s = open(&server, "routes", "");
    next(&mut s);
    assert!(next(&mut s).comment, "a keep-alive comment");
    assert_eq!(server.health()["connections"], 1);
    drop(s);
    server.wait_health("the stream to leave", |h| h["connections"] == 0);
}

/// Shutdown ends a stream at once and cleanly: the client reads to EOF
/// while the server still runs, held open for 30 s by a WebSocket client
/// that never answers its close. (When the process exits every socket
/// ends anyway; this shows the stream was ended, not dropped.)
#[test]
fn shutdown_ends_streams() {
    let server = Binary::start(&["--shutdown-timeout", "30s", "--drain", "0"]);
    let _silent = server.subscribe("routes");
    let mut s = server.connect();
    s.write_all(b"GET /api/v1/sse/queue HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_response(&mut s);
    assert_eq!(status, 200);
    next(&mut s);
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("a clean end");
    // A process that has exited stays a zombie until the test reaps it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = stat
        .rsplit(") ")
        .next()
        .is_some_and(|rest| !rest.starts_with('Z'));
    assert!(
        running,
        "the stream ended only because the process did: {stat}"
    );
}

/// A drain (`--drain 3s`) ends each stream with a `retry:` as its last
/// line, so EventSource comes back after it: a value within the window,
/// different for each connection, so streams closed together still come
/// back spread out.
#[test]
fn a_drain_ends_each_stream_with_a_jittered_retry() {
    let server = TestServer::with(|c| c.drain = Duration::from_secs(3));
    let mut streams: Vec<TcpStream> = (0..4).map(|_| open(&server, "queue", "")).collect();
    for s in &mut streams {
        next(s);
    }
    server.publisher.drain().unwrap();
    let retries: Vec<u64> = streams
        .into_iter()
        .map(|mut s| {
            let mut rest = String::new();
            s.read_to_string(&mut rest).expect("a clean end");
            let last = rest.trim_end_matches('\n').rsplit('\n').next().unwrap();
            let ms = last
                .strip_prefix("retry: ")
                .unwrap_or_else(|| panic!("no retry: before the end: {rest:?}"));
            ms.parse().unwrap()
        })
        .collect();
    assert!(
        retries.iter().all(|ms| (1..=3000).contains(ms)),
        "{retries:?}"
    );
    let mut distinct = retries.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), retries.len(), "{retries:?}");
}

/// `/healthz` counts a stream as a subscription, beside a WebSocket, under
/// `subscribed`, and `/metrics` gives the same count as its `subscribed`
/// outcome.
#[test]
fn streams_and_sockets_are_both_counted_as_subscribed() {
    let server = TestServer::start();
    let mut stream = open(&server, "queue", "");
    next(&mut stream);
    let mut ws = server.subscribe("queue");
    read_data_frame(&mut ws);
    server.wait_health("both subscriptions counted", |h| {
        h["counters"]["subscribed"] == 2
    });
    let (status, metrics) = server.request("GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("outcome=\"subscribed\"") && l.ends_with(" 2")),
        "{metrics}"
    );
}
