//! One connection, many topics: `/api/v1/ws?topic=..` and
//! `/api/v1/sse?topic=..` against a server on port 0, over raw sockets.
//! Snapshots of every topic on connect, each message naming its topic,
//! access and existence checked per topic, `--max-topics-per-connection`,
//! subscribe and unsubscribe commands, resuming with `since=` and with
//! `Last-Event-ID`'s seq vector, and the reserved `statecast.` types.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use statecast::Config;
use statecast::topic::Preset;
use statecast_testkit::*;

/// Any plain topic name is served, none preset.
fn any_topic(config: &mut Config) {
    config.preset = Preset::None;
    config.any_topic = true;
}

/// A multiplexed WebSocket upgrade to `/api/v1/ws?{query}`: its status
/// and body, and the stream after the response head.
fn ws(server: &TestServer, query: &str, extra: &str) -> (u16, String, TcpStream) {
    let mut s = server.connect();
    let request = format!(
        "GET /api/v1/ws?{query} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut s);
    (status, String::from_utf8_lossy(&body).into_owned(), s)
}

/// A multiplexed SSE request to `/api/v1/sse?{query}` with extra header
/// lines: its status, its body when refused, and the stream after the head.
fn sse(server: &TestServer, query: &str, extra: &str) -> (u16, String, TcpStream) {
    let mut s = server.connect();
    let request = format!(
        "GET /api/v1/sse?{query} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{extra}\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut s);
    (status, String::from_utf8_lossy(&body).into_owned(), s)
}

/// One SSE event: its name, its `id:`, its data as JSON.
#[derive(Debug)]
struct Event {
    name: String,
    id: String,
    data: Value,
}

/// Reads the next event, skipping keep-alive comments.
fn next_event(s: &mut TcpStream) -> Event {
    loop {
        let mut text = Vec::new();
        let mut byte = [0u8];
        while !text.ends_with(b"\n\n") {
            s.read_exact(&mut byte).expect("reading an event");
            text.push(byte[0]);
        }
        let text = String::from_utf8(text).unwrap();
        let (mut name, mut id, mut data) = (String::new(), String::new(), Vec::new());
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(':'))
        {
            match line.split_once(": ") {
                Some(("event", v)) => name = v.to_owned(),
                Some(("id", v)) => id = v.to_owned(),
                Some(("data", v)) => data.push(v),
                _ => panic!("unexpected line {line:?}"),
            }
        }
        if data.is_empty() {
            continue;
        }
        let data = serde_json::from_str(&data.join("\n")).unwrap();
        return Event { name, id, data };
    }
}

/// A seq vector as a map, to compare without caring for order.
fn vector(id: &str) -> BTreeMap<String, u64> {
    id.split(',')
        .map(|part| {
            let (topic, seq) = part.rsplit_once(':').unwrap();
            (topic.to_owned(), seq.parse().unwrap())
        })
        .collect()
}

/// Sends a text message (a command) from the client.
fn send(s: &mut TcpStream, text: &str) {
    s.write_all(&client_frame(0x81, text.as_bytes())).unwrap();
}

/// The next text message, as JSON.
fn next_json(s: &mut TcpStream) -> Value {
    let frame = read_data_frame(s);
    assert_eq!(frame.opcode, 0x1, "{frame:?}");
    frame.json()
}

/// Asserts nothing arrives within a short while: used only after the
/// message that would have come first has been ruled out otherwise.
#[track_caller]
fn expect_silence(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(n) => panic!(
            "expected nothing, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    s.set_read_timeout(Some(DEADLINE)).unwrap();
}

/// Eight topics on one SSE connection (past the browser's six per
/// origin) are all live: each snapshot at once as an event named by its
/// topic, with `"topic"` in its data, then every publish to each, each
/// event's `id:` the seq vector of every topic sent so far.
#[test]
fn eight_topics_on_one_sse_connection_are_all_live() {
    let server = TestServer::with(any_topic);
    let names: Vec<String> = (0..8).map(|i| format!("panel-{i}")).collect();
    for name in &names {
        assert_eq!(server.publish(name, r#"{"v":1}"#).0, 200);
    }
    let query: Vec<String> = names.iter().map(|n| format!("topic={n}")).collect();
    let (status, body, mut s) = sse(&server, &query.join("&"), "");
    assert_eq!(status, 200, "{body}");
    for name in &names {
        let event = next_event(&mut s);
        assert_eq!(&event.name, name);
        assert_eq!(event.data["topic"], name.as_str());
        assert_eq!(event.data["seq"], 1);
        assert_eq!(vector(&event.id).get(name), Some(&1));
    }
    for name in names.iter().rev() {
        assert_eq!(server.publish(name, r#"{"v":2}"#).0, 200);
        let event = next_event(&mut s);
        assert_eq!(&event.name, name);
        assert_eq!(
            event.data["type"],
            format!("{}_update", name.replace('-', "_"))
        );
        assert_eq!(event.data["data"]["v"], 2);
        assert_eq!(event.data["seq"], 2);
    }
    let last = next_event_after_publish(&server, &mut s, "panel-0");
    let expected: BTreeMap<String, u64> = names
        .iter()
        .map(|n| (n.clone(), if n == "panel-0" { 3 } else { 2 }))
        .collect();
    assert_eq!(vector(&last.id), expected);
}

/// Publishes to `topic` and reads the event it brings.
fn next_event_after_publish(server: &TestServer, s: &mut TcpStream, topic: &str) -> Event {
    assert_eq!(server.publish(topic, r#"{"v":3}"#).0, 200);
    next_event(s)
}

/// The snapshots of every topic asked for arrive right after the 101,
/// before the client sends a byte, each with its `"topic"` after `"type"`
/// (and `adw_id` for `adw-state/*`, whose name may come percent-encoded
/// as a browser's `URLSearchParams` writes it); a name asked twice counts
/// once.
#[test]
fn every_snapshot_comes_with_the_upgrade() {
    let server = TestServer::start();
    let query = "topic=queue&topic=routes&topic=adw-state%2Fabc&topic=queue";
    let (status, body, mut s) = ws(&server, query, "");
    assert_eq!(status, 101, "{body}");
    let mut got = Vec::new();
    for _ in 0..3 {
        let frame = read_data_frame(&mut s);
        let text = frame.text().to_owned();
        let message = frame.json();
        let topic = message["topic"].as_str().unwrap().to_owned();
        assert!(
            text.starts_with(&format!(
                r#"{{"type":"{}","topic":"{topic}","#,
                message["type"].as_str().unwrap()
            )),
            "{text}"
        );
        got.push((topic, message));
    }
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topics, ["queue", "routes", "adw-state/abc"]);
    assert_eq!(got[2].1["adw_id"], "abc");
    assert_eq!(got[0].1["type"], "queue_update");
    expect_silence(&mut s);
}

/// A multiplexed connection holding 4 topics nobody has published opens
/// no fifth, and is refused that topic alone: at connect, a 503
/// `statecast.error` naming it right after the 101 (a `data:` message on
/// SSE), the other four served; by command, the same, while a published
/// topic in the same command opens. A placeholder another connection
/// opened is no new one and opens; unsubscribing one makes room.
#[test]
fn a_connection_opens_at_most_four_placeholders() {
    let server = TestServer::start();
    let names: Vec<String> = (1..=5).map(|i| format!("topic=adw-state%2Fa{i}")).collect();
    let five = names.join("&");
    let (status, body, mut s) = ws(&server, &five, "");
    assert_eq!(status, 101, "{body}");
    let refused = next_json(&mut s);
    assert_eq!(refused["type"], "statecast.error", "{refused}");
    assert_eq!(refused["topic"], "adw-state/a5");
    assert_eq!(refused["status"], 503);
    for i in 1..=4 {
        assert_eq!(next_json(&mut s)["topic"], format!("adw-state/a{i}"));
    }
    let (status, body, mut stream) = sse(&server, &five, "");
    assert_eq!(status, 200, "{body}");
    let refused = next_event(&mut stream);
    assert_eq!(refused.name, "");
    assert_eq!(refused.data["type"], "statecast.error");
    assert_eq!(refused.data["topic"], "adw-state/a5");
    assert_eq!(refused.data["status"], 503);
    assert_eq!(next_event(&mut stream).name, "adw-state/a1");

    send(
        &mut s,
        r#"{"op":"subscribe","topics":["adw-state/a6","queue"]}"#,
    );
    let refused = next_json(&mut s);
    assert_eq!(refused["type"], "statecast.error", "{refused}");
    assert_eq!(refused["topic"], "adw-state/a6");
    assert_eq!(refused["status"], 503);
    assert_eq!(next_json(&mut s)["topic"], "queue");

    let (status, _, mut other) = ws(&server, "topic=adw-state%2Fb1", "");
    assert_eq!(status, 101);
    next_json(&mut other);
    send(&mut s, r#"{"op":"subscribe","topics":["adw-state/b1"]}"#);
    assert_eq!(next_json(&mut s)["topic"], "adw-state/b1");

    send(
        &mut s,
        r#"{"op":"unsubscribe","topics":["adw-state/a1","adw-state/b1"]}"#,
    );
    next_json(&mut s);
    next_json(&mut s);
    send(&mut s, r#"{"op":"subscribe","topics":["adw-state/a6"]}"#);
    let opened = next_json(&mut s);
    assert_eq!(opened["topic"], "adw-state/a6", "{opened}");
    assert_ne!(opened["type"], "statecast.error", "{opened}");
}

/// With `--max-topics 1`, the smallest, the one placeholder slot still
/// caps every connection together: a second connection's placeholder is
/// refused 503, alone beside a topic it may open (at connect and by
/// command), or as the whole of an SSE stream that names nothing else.
#[test]
fn the_placeholder_cap_across_connections_still_holds() {
    let server = TestServer::with(|c| c.max_topics = 1);
    let (status, body, mut first) = ws(&server, "topic=adw-state%2Fa1", "");
    assert_eq!(status, 101, "{body}");
    next_json(&mut first);
    let (status, body, mut second) = ws(&server, "topic=adw-state%2Fa2&topic=queue", "");
    assert_eq!(status, 101, "{body}");
    let refused = next_json(&mut second);
    assert_eq!(refused["topic"], "adw-state/a2", "{refused}");
    assert_eq!(refused["status"], 503, "{refused}");
    assert_eq!(next_json(&mut second)["topic"], "queue");
    send(
        &mut second,
        r#"{"op":"subscribe","topics":["adw-state/a3"]}"#,
    );
    let refused = next_json(&mut second);
    assert_eq!(refused["status"], 503, "{refused}");
    let (status, body, _) = sse(&server, "topic=adw-state%2Fa2", "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("topic limit"), "{body}");
}

/// A publish reaches the multiplexed connections subscribed to its topic,
/// with `"topic"`, and a per-topic subscriber as before, without it; a
/// multiplexed connection on other topics gets nothing of it.
#[test]
fn a_publish_reaches_only_its_topics_subscribers() {
    let server = TestServer::start();
    let (_, _, mut both) = ws(&server, "topic=queue&topic=routes", "");
    let (_, _, mut routes) = ws(&server, "topic=routes", "");
    let mut plain = server.subscribe("queue");
    for _ in 0..2 {
        next_json(&mut both);
    }
    next_json(&mut routes);
    next_json(&mut plain);

    let body = r#"{"phases":[],"total":7,"paused":false}"#;
    assert_eq!(server.publish("queue", body).0, 200);
    let muxed = next_json(&mut both);
    assert_eq!(
        (&muxed["topic"], &muxed["seq"]),
        (&"queue".into(), &1.into())
    );
    assert_eq!(muxed["data"]["total"], 7);
    let alone = read_data_frame(&mut plain);
    assert!(
        alone
            .text()
            .starts_with(r#"{"type":"queue_update","seq":1,"#),
        "{}",
        alone.text()
    );

    // The next thing the routes-only connection gets is routes' publish.
    assert_eq!(server.publish("routes", "[]").0, 200);
    let next = next_json(&mut routes);
    assert_eq!(next["topic"], "routes");
    assert_eq!(next_json(&mut both)["topic"], "routes");
}

/// With `--subscribe-token`, a multiplexed connection needs it (401
/// without); with it, every topic is checked as its per-topic route
/// checks it, the first refused one answered with that route's status
/// and named; a subscribe command's refused topic gets that status in a
/// `statecast.error`.
#[test]
fn topics_are_checked_one_by_one_with_the_static_token() {
    let server = TestServer::with(|c| {
        c.subscribe_token = Some(statecast::config::Secret::new("sub-token-0123456789"));
    });
    let (status, _, _) = ws(&server, "topic=queue", "");
    assert_eq!(status, 401);
    let (status, _, _) = sse(&server, "topic=queue", "");
    assert_eq!(status, 401);
    let token = "token=sub-token-0123456789";
    let (status, body, _) = ws(&server, &format!("{token}&topic=queue&topic=nope"), "");
    assert_eq!((status, body.as_str()), (404, "unknown topic \"nope\"\n"));
    let (status, body, _) = sse(&server, &format!("topic=Bad_Name&topic=nope&{token}"), "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Bad_Name"), "{body}");

    let (status, _, mut s) = ws(&server, &format!("{token}&topic=queue"), "");
    assert_eq!(status, 101);
    next_json(&mut s);
    send(&mut s, r#"{"op":"subscribe","topics":["nope","routes"]}"#);
    let refused = next_json(&mut s);
    assert_eq!(refused["type"], "statecast.error");
    assert_eq!(refused["topic"], "nope");
    assert_eq!(refused["status"], 404);
    assert_eq!(refused["reason"], "unknown topic \"nope\"");
    assert_eq!(next_json(&mut s)["topic"], "routes");
}

/// `--max-topics-per-connection` at its smallest, 1: two topics are
/// refused 400 at connect on either route, one is served, and a
/// subscribe past it is answered with a `statecast.error` naming the
/// topic, the connection left open.
#[test]
fn one_topic_per_connection_at_the_smallest_limit() {
    let server = TestServer::with(|c| c.max_topics_per_connection = 1);
    let (status, body, _) = ws(&server, "topic=queue&topic=routes", "");
    assert_eq!(status, 400);
    assert!(body.contains("--max-topics-per-connection (1)"), "{body}");
    let (status, _, _) = sse(&server, "topic=queue&topic=routes", "");
    assert_eq!(status, 400);
    let (status, _, mut s) = ws(&server, "topic=queue", "");
    assert_eq!(status, 101);
    next_json(&mut s);
    send(&mut s, r#"{"op":"subscribe","topics":["routes"]}"#);
    let refused = next_json(&mut s);
    assert_eq!(refused["type"], "statecast.error");
    assert_eq!(refused["topic"], "routes");
    assert_eq!(refused["status"], 400);
    send(&mut s, r#"{"op":"subscribe","topics":["routes","queue"]}"#);
    let refused = next_json(&mut s);
    assert_eq!(refused["status"], 400);
    assert!(refused.get("topic").is_none(), "{refused}");
    // Still served.
    assert_eq!(
        server
            .publish("queue", r#"{"phases":[],"total":1,"paused":false}"#)
            .0,
        200
    );
    assert_eq!(next_json(&mut s)["seq"], 1);
}

/// A WebSocket may open on no topic and subscribe later: the snapshot
/// answers the subscribe; an unsubscribe is answered, and after it no
/// message of that topic comes (the next one is another topic's); a
/// topic subscribed twice is sent once, and an unknown one unsubscribed
/// is ignored.
#[test]
fn subscribe_and_unsubscribe_on_an_open_connection() {
    let server = TestServer::start();
    let (status, _, mut s) = ws(&server, "", "");
    assert_eq!(status, 101);
    send(&mut s, r#"{"op":"subscribe","topics":["queue","queue"]}"#);
    let snapshot = next_json(&mut s);
    assert_eq!(
        (&snapshot["topic"], &snapshot["seq"]),
        (&"queue".into(), &0.into())
    );
    send(&mut s, r#"{"op":"subscribe","topics":["queue","routes"]}"#);
    assert_eq!(next_json(&mut s)["topic"], "routes");
    send(&mut s, r#"{"op":"unsubscribe","topics":["nope","queue"]}"#);
    assert_eq!(
        next_json(&mut s),
        serde_json::json!({"type":"statecast.unsubscribed","topic":"queue"})
    );
    let queue = r#"{"phases":[],"total":1,"paused":false}"#;
    assert_eq!(server.publish("queue", queue).0, 200);
    assert_eq!(server.publish("routes", "[]").0, 200);
    let next = next_json(&mut s);
    assert_eq!(
        (&next["topic"], &next["seq"]),
        (&"routes".into(), &1.into())
    );
}

/// A malformed command gets a 400 `statecast.error` saying why, and the
/// connection stays open; text that is no command (not JSON, no `op`) is
/// ignored as before, and a JSON ping is still answered.
#[test]
fn a_malformed_command_gets_an_error_and_the_connection_stays() {
    let server = TestServer::start();
    let (_, _, mut s) = ws(&server, "topic=queue", "");
    next_json(&mut s);
    for (bad, why) in [
        (r#"{"op":"dance"}"#, "unknown op \"dance\""),
        (
            r#"{"op":"subscribe","topics":"queue"}"#,
            "\"topics\" must be an array of topic names",
        ),
        (
            r#"{"op":"unsubscribe","topics":[1]}"#,
            "\"topics\" must be an array of strings",
        ),
    ] {
        send(&mut s, bad);
        let error = next_json(&mut s);
        assert_eq!(
            error,
            serde_json::json!({"type":"statecast.error","status":400,"reason":why}),
            "{bad}"
        );
    }
    send(&mut s, "not json");
    send(&mut s, r#"{"hello":1}"#);
    send(&mut s, r#"{"type":"ping","timestamp":5}"#);
    assert_eq!(
        next_json(&mut s),
        serde_json::json!({"type":"pong","timestamp":5})
    );
    assert_eq!(
        server
            .publish("queue", r#"{"phases":[],"total":1,"paused":false}"#)
            .0,
        200
    );
    assert_eq!(next_json(&mut s)["seq"], 1);
}

/// `since=<topic>:<seq>` on the WebSocket: a topic still at the given seq
/// is not resent, one that moved on is; a malformed since is a 400.
#[test]
fn since_resumes_each_topic_on_the_websocket() {
    let server = TestServer::start();
    let queue = r#"{"phases":[],"total":1,"paused":false}"#;
    assert_eq!(server.publish("queue", queue).0, 200);
    assert_eq!(server.publish("routes", "[]").0, 200);
    let query = "topic=queue&topic=routes&since=queue%3A1&since=routes:0";
    let (status, _, mut s) = ws(&server, query, "");
    assert_eq!(status, 101);
    let first = next_json(&mut s);
    assert_eq!(
        (&first["topic"], &first["seq"]),
        (&"routes".into(), &1.into())
    );
    // What comes next is queue's next publish, not its resend.
    assert_eq!(server.publish("queue", queue).0, 200);
    let next = next_json(&mut s);
    assert_eq!((&next["topic"], &next["seq"]), (&"queue".into(), &2.into()));

    let (status, body, _) = ws(&server, "topic=queue&since=queue", "");
    assert_eq!(status, 400, "{body}");
}

/// An SSE stream's reconnect with `Last-Event-ID` (the seq vector of its
/// last event) resends only the topics published since; later publishes
/// of the others still come.
#[test]
fn last_event_id_resumes_every_topic_on_sse() {
    let server = TestServer::with(any_topic);
    for name in ["a", "b", "c"] {
        assert_eq!(server.publish(name, "1").0, 200);
    }
    let (status, _, mut s) = sse(&server, "topic=a&topic=b&topic=c", "");
    assert_eq!(status, 200);
    let last = (0..3).map(|_| next_event(&mut s)).last().unwrap();
    assert_eq!(vector(&last.id), vector("a:1,b:1,c:1"));
    drop(s);

    assert_eq!(server.publish("b", "2").0, 200);
    let header = format!("Last-Event-ID: {}\r\n", last.id);
    let (status, _, mut s) = sse(&server, "topic=a&topic=b&topic=c", &header);
    assert_eq!(status, 200);
    let resent = next_event(&mut s);
    assert_eq!(
        (resent.name.as_str(), &resent.data["seq"]),
        ("b", &2.into())
    );
    assert_eq!(vector(&resent.id), vector("a:1,b:2,c:1"));
    assert_eq!(server.publish("c", "3").0, 200);
    let next = next_event(&mut s);
    assert_eq!((next.name.as_str(), &next.data["seq"]), ("c", &2.into()));
    assert_eq!(vector(&next.id), vector("a:1,b:2,c:2"));
}

/// At the default `--max-topics-per-connection`, the longest resume a
/// browser sends (every topic name 64 characters in the URL, and a seq
/// vector of them all with 20-digit seqs in `Last-Event-ID`, beside a
/// browser's usual headers) fits the request-head limit and is served.
#[test]
fn a_full_seq_vector_fits_the_request_head() {
    let max = Config::default().max_topics_per_connection;
    let server = TestServer::with(any_topic);
    let names: Vec<String> = (0..max).map(|i| format!("{i:0>64}")).collect();
    let query: Vec<String> = names.iter().map(|n| format!("topic={n}")).collect();
    let ids: Vec<String> = names.iter().map(|n| format!("{n}:{}", u64::MAX)).collect();
    let browser = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
                   Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
                   Cache-Control: no-cache\r\nOrigin: http://localhost:8002\r\nReferer: http://localhost:8002/\r\n\
                   Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\n\
                   Connection: keep-alive\r\n";
    let extra = format!("{browser}Last-Event-ID: {}\r\n", ids.join(","));
    let (status, body, _) = sse(&server, &query.join("&"), &extra);
    assert_eq!(status, 200, "{body}");
}

/// `POST /api/v1/broadcast` refuses a type in the server's reserved
/// `statecast.` namespace with 400, and still sends others.
#[test]
fn broadcast_refuses_reserved_types() {
    let server = TestServer::start();
    let (status, body) = server.request(
        "POST",
        "/api/v1/broadcast",
        r#"{"type":"statecast.error","data":1}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("statecast."), "{body}");
    let (status, _) = server.request(
        "POST",
        "/api/v1/broadcast",
        r#"{"type":"statecastx","data":1}"#,
    );
    assert_eq!(status, 200);
}

/// `POST /api/v1/broadcast` refuses type `close` with 400: an SSE client
/// takes an event of that type as the server ending its stream, and
/// stops for good. A type that only starts with it is still sent.
#[test]
fn broadcast_refuses_the_close_type() {
    let server = TestServer::start();
    let (status, body) = server.request(
        "POST",
        "/api/v1/broadcast",
        r#"{"type":"close","data":{"code":1008,"reason":"x"}}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"close\""), "{body}");
    let (status, body) =
        server.request("POST", "/api/v1/broadcast", r#"{"type":"closed","data":1}"#);
    assert_eq!(status, 200, "{body}");
}

/// A multiplexed SSE stream needs at least one topic.
#[test]
fn an_sse_stream_names_at_least_one_topic() {
    let server = TestServer::start();
    let (status, body, _) = sse(&server, "", "");
    assert_eq!(status, 400, "{body}");
}

/// Signed tokens: each topic is checked against the token's `topics`, at
/// connect (403 naming the first refused) and on subscribe (a 403
/// `statecast.error`), and a token covering the topics is served.
#[cfg(feature = "jwt")]
mod signed {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    const SECRET: &str = "jwt-test-secret-0123456789";

    fn token(topics: &[&str]) -> String {
        signed(serde_json::json!({"topics": topics}))
    }

    /// A token with `claims` and an `exp` an hour away.
    fn signed(mut claims: Value) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        claims["exp"] = exp.into();
        let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    /// A token for `queue` and `routes` opens both, is refused `status`
    /// 403 naming `workflows`, and cannot subscribe to it later.
    #[test]
    fn a_signed_token_reads_only_its_topics() {
        let server = TestServer::with(|c| {
            c.jwt_secret = Some(statecast::config::Secret::new(SECRET));
        });
        let bearer = format!("Authorization: Bearer {}\r\n", token(&["queue", "routes"]));
        let (status, body, _) = ws(&server, "topic=queue&topic=workflows", &bearer);
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("\"workflows\""), "{body}");
        let (status, body, _) = sse(&server, "topic=workflows&topic=queue", &bearer);
        assert_eq!(status, 403, "{body}");
        let (status, _, _) = ws(&server, "topic=queue", "");
        assert_eq!(status, 401);

        let (status, _, mut s) = ws(&server, "topic=queue", &bearer);
        assert_eq!(status, 101);
        next_json(&mut s);
        send(
            &mut s,
            r#"{"op":"subscribe","topics":["workflows","routes"]}"#,
        );
        let refused = next_json(&mut s);
        assert_eq!(refused["type"], "statecast.error");
        assert_eq!(refused["topic"], "workflows");
        assert_eq!(refused["status"], 403);
        assert_eq!(next_json(&mut s)["topic"], "routes");
    }

    /// A token that may read no topic (one for publishing only) opens no
    /// multiplexed connection, not even on zero topics, where it would
    /// get every broadcast: 403 on the WebSocket and on SSE. A token that
    /// may read one topic still opens one on zero topics.
    #[test]
    fn a_token_that_reads_nothing_opens_no_multiplexed_connection() {
        let server = TestServer::with(|c| {
            c.jwt_secret = Some(statecast::config::Secret::new(SECRET));
        });
        for claims in [
            serde_json::json!({"publish": ["queue"]}),
            serde_json::json!({"topics": [], "publish": ["*"]}),
        ] {
            let bearer = format!("Authorization: Bearer {}\r\n", signed(claims));
            let (status, body, _) = ws(&server, "", &bearer);
            assert_eq!(status, 403, "{body}");
            assert!(body.contains("read any topic"), "{body}");
            let (status, body, _) = sse(&server, "", &bearer);
            assert_eq!(status, 403, "{body}");
            let (status, body, _) = ws(&server, "topic=queue", &bearer);
            assert_eq!(status, 403, "{body}");
        }
        let bearer = format!("Authorization: Bearer {}\r\n", token(&["queue"]));
        let (status, body, _) = ws(&server, "", &bearer);
        assert_eq!(status, 101, "{body}");
    }
}
