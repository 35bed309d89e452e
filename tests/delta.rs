//! `?delta=json-patch` on the per-topic routes, over raw sockets: opt-in
//! only, the first message whole and the next ones RFC 6902 patches against
//! the previous seq that give the published value, a subscriber behind
//! gets the whole snapshot, a delta only when smaller, 400 for an unknown
//! format, with permessage-deflate (one compression per publish) and on SSE;
//! and the same on the multiplexed routes, each topic's deltas apart.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use flate2::{Decompress, FlushDecompress};
use serde_json::{Value, json};
use statecast_testkit::*;

const TOPIC: &str = "board";

fn server() -> TestServer {
    TestServer::with(|c| c.topics = vec![TOPIC.into()])
}

/// A board of `n` rows, row `changed` (if any) marked with `mark`.
fn board(n: usize, changed: Option<usize>, mark: u64) -> Value {
    let rows: Vec<Value> = (0..n)
        .map(|i| {
            let status = if Some(i) == changed { mark } else { 0 };
            json!({"id": i, "name": format!("row {i}"), "status": status, "pad": "p".repeat(20)})
        })
        .collect();
    json!({"rows": rows, "updated": mark})
}

#[track_caller]
fn publish(server: &TestServer, value: &Value) -> u64 {
    publish_to(server, TOPIC, value)
}

#[track_caller]
fn publish_to(server: &TestServer, topic: &str, value: &Value) -> u64 {
    let (status, body) = server.publish(topic, &value.to_string());
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

/// Applies an RFC 6902 patch of add/remove/replace ops; the test's own
/// applier, independent of the server's differ and of web/delta.js.
fn apply(mut doc: Value, patch: &Value) -> Value {
    for op in patch.as_array().expect("a patch is an array") {
        let path = op["path"].as_str().unwrap();
        if path.is_empty() {
            doc = op["value"].clone();
            continue;
        }
        let (parent, last) = path.rsplit_once('/').unwrap();
        let last = last.replace("~1", "/").replace("~0", "~");
        let target = doc.pointer_mut(parent).expect("the parent exists");
        match (op["op"].as_str().unwrap(), target) {
            ("add", Value::Array(items)) => {
                items.insert(last.parse().unwrap(), op["value"].clone())
            }
            ("remove", Value::Array(items)) => {
                items.remove(last.parse().unwrap());
            }
            ("replace", Value::Array(items)) => {
                items[last.parse::<usize>().unwrap()] = op["value"].clone()
            }
            ("add" | "replace", Value::Object(map)) => {
                map.insert(last, op["value"].clone());
            }
            ("remove", Value::Object(map)) => {
                map.remove(&last);
            }
            other => panic!("unexpected op {other:?}"),
        }
    }
    doc
}

/// A client's view of a topic: the state it holds and its seq.
struct View {
    seq: u64,
    data: Value,
}

impl View {
    /// Takes in one message: whole or a delta against the seq it holds.
    #[track_caller]
    fn take(view: &mut Option<View>, message: &Value) -> bool {
        let seq = message["seq"].as_u64().unwrap();
        if let Some(data) = message.get("data") {
            assert!(message.get("delta").is_none() && message.get("base").is_none());
            *view = Some(View {
                seq,
                data: data.clone(),
            });
            return false;
        }
        let held = view.as_mut().expect("a delta only after a snapshot");
        assert_eq!(message["base"], held.seq, "a delta against the seq held");
        held.data = apply(held.data.clone(), &message["delta"]);
        held.seq = seq;
        true
    }
}

/// Without `?delta=` nothing changes: whole snapshots only, while a delta
/// subscriber on the same topic gets patches.
#[test]
fn deltas_are_opt_in() {
    let server = server();
    let mut plain = server.subscribe(TOPIC);
    let mut patched = server.subscribe(&format!("{TOPIC}?delta=json-patch"));
    publish(&server, &board(20, None, 0));
    // The placeholder topic has no snapshot before its first publish.
    for round in 1..=5 {
        let value = board(20, Some(round), round as u64);
        let seq = publish(&server, &value);
        let mut message = read_data_frame(&mut plain).json();
        while message["seq"] != seq {
            message = read_data_frame(&mut plain).json();
        }
        assert_eq!(message["data"], value);
        assert!(message.get("delta").is_none(), "{message}");
        let mut message = read_data_frame(&mut patched).json();
        while message["seq"] != seq {
            message = read_data_frame(&mut patched).json();
        }
        if round > 1 {
            assert!(message.get("delta").is_some(), "{message}");
        }
    }
}

/// The first message is the whole snapshot; each publish after it comes
/// as a patch against the previous seq, and applying them gives exactly
/// what was published, rows added, removed and moved included.
#[test]
fn deltas_after_the_first_snapshot_give_the_published_values() {
    let server = server();
    publish(&server, &board(30, None, 0));
    let mut ws = server.subscribe(&format!("{TOPIC}?delta=json-patch"));
    let mut view = None;
    assert!(!View::take(&mut view, &read_data_frame(&mut ws).json()));
    let mut deltas = 0;
    for round in 1..=40u64 {
        let mut value = board(30, Some(round as usize % 30), round);
        let rows = value["rows"].as_array_mut().unwrap();
        // A new row first and the last dropped, now and then.
        if round % 5 == 0 {
            rows.insert(0, json!({"id": 100 + round, "name": "new"}));
            rows.pop();
        }
        if round % 7 == 0 {
            rows.remove(3);
        }
        let seq = publish(&server, &value);
        let message = read_data_frame(&mut ws).json();
        assert_eq!(message["seq"], seq, "one message per publish, in turn");
        deltas += usize::from(View::take(&mut view, &message));
        assert_eq!(view.as_ref().unwrap().data, value, "round {round}");
    }
    assert_eq!(deltas, 40, "every update after the first is a delta");
}

/// A subscriber whose queued snapshot was superseded (it stopped reading)
/// gets the newer one whole, never a delta against a seq it never got,
/// while an up-to-date one gets the delta.
#[test]
fn a_subscriber_behind_gets_the_whole_snapshot() {
    let server = TestServer::with(|c| {
        c.topics = vec![TOPIC.into()];
        c.max_queue_bytes = 8 << 20;
    });
    // Under the 256 KiB a snapshot may be and still get deltas.
    let big = |i: u64| json!({"fill": format!("{i}").repeat(200 << 10), "n": i});
    publish(&server, &big(0));
    let mut stalled = server.subscribe(&format!("{TOPIC}?delta=json-patch"));
    let mut healthy = server.subscribe(&format!("{TOPIC}?delta=json-patch"));
    read_data_frame(&mut stalled);
    read_data_frame(&mut healthy);
    // Wholly different values, far more than the socket buffers hold: the
    // stalled one's queue conflates them.
    // 80 x 200 KiB: more than the kernel's buffers on both ends hold.
    let rounds = 80;
    let mut last = 0;
    for i in 1..=rounds {
        last = publish(&server, &big(i % 10));
        let message = read_data_frame(&mut healthy).json();
        assert_eq!(message["seq"], last);
    }
    assert!(server.health()["counters"]["superseded"].as_u64().unwrap() > 0);
    // A small change: a delta for whoever holds `last`.
    let mut value = big(rounds % 10);
    value["n"] = json!(1000);
    let seq = publish(&server, &value);
    let message = read_data_frame(&mut healthy).json();
    assert_eq!(
        (&message["seq"], &message["base"]),
        (&json!(seq), &json!(last))
    );
    // The stalled one held `last` only queued, unstarted: superseded by
    // the newer publish, which it gets whole.
    let mut view = None;
    loop {
        let message = read_data_frame(&mut stalled).json();
        View::take(&mut view, &message);
        if message["seq"] == seq {
            assert!(message.get("data").is_some(), "whole, not a delta");
            break;
        }
    }
    assert_eq!(view.unwrap().data, value);
}

/// A value unlike the one before makes a patch no smaller than the
/// snapshot: the whole snapshot goes instead, and deltas resume after.
#[test]
fn a_delta_goes_only_when_smaller() {
    let server = server();
    publish(&server, &board(10, None, 0));
    let mut ws = server.subscribe(&format!("{TOPIC}?delta=json-patch"));
    let mut view = None;
    View::take(&mut view, &read_data_frame(&mut ws).json());
    let other = json!({"something": ["else", "entirely"], "pad": "q".repeat(400)});
    publish(&server, &other);
    let message = read_data_frame(&mut ws).json();
    assert!(!View::take(&mut view, &message), "whole: {message}");
    let mut again = other.clone();
    again["something"][1] = json!("again");
    publish(&server, &again);
    let message = read_data_frame(&mut ws).json();
    assert!(View::take(&mut view, &message), "a delta again: {message}");
    assert_eq!(view.unwrap().data, again);
}

/// A format the server does not know is refused before the upgrade (and
/// before an SSE stream starts) with 400 and a body naming the known ones,
/// on the per-topic and the multiplexed routes.
#[test]
fn an_unknown_format_is_400() {
    let server = server();
    for route in ["ws", "sse"] {
        for format in ["fossil", "", "JSON-PATCH"] {
            // The per-topic route, then the multiplexed one.
            let per_topic = upgrade_request(&format!("{TOPIC}?delta={format}"))
                .replace("/api/v1/ws/", &format!("/api/v1/{route}/"));
            let mux = per_topic.replace(
                &format!("/{route}/{TOPIC}?"),
                &format!("/{route}?topic={TOPIC}&"),
            );
            assert_ne!(per_topic, mux);
            for request in [per_topic, mux] {
                let mut stream = server.connect();
                stream.write_all(request.as_bytes()).unwrap();
                let (status, _, body) = read_response(&mut stream);
                assert_eq!(status, 400, "{request}");
                let body = String::from_utf8(body).unwrap();
                assert!(
                    body.contains("unknown delta format (known: json-patch)"),
                    "{body}"
                );
            }
        }
    }
    // The server is fine.
    let mut ws = server.subscribe(&format!("{TOPIC}?delta=json-patch"));
    publish(&server, &json!(1));
    assert_eq!(read_data_frame(&mut ws).json()["data"], 1);
}

/// Inflates a permessage-deflate payload (no context takeover).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

fn compressed_messages(server: &TestServer) -> u64 {
    let (_, body) = server.request("GET", "/metrics", "");
    body.lines()
        .find_map(|l| {
            l.strip_prefix("statecast_compressed_messages_total ")?
                .parse()
                .ok()
        })
        .unwrap()
}

/// With permessage-deflate the delta frame is compressed, once per
/// publish for every deflate subscriber, who get the same bytes; the
/// snapshot, which none of them needs, is not compressed at all.
#[test]
fn deltas_are_compressed_once_per_publish() {
    let server = server();
    publish(&server, &board(200, None, 0));
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut clients: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = server.connect();
            let request = upgrade_request(&format!("{TOPIC}?delta=json-patch"))
                .replace("\r\n\r\n", &format!("\r\n{offer}\r\n"));
            stream.write_all(request.as_bytes()).unwrap();
            let (status, head, _) = read_response(&mut stream);
            assert_eq!(status, 101);
            assert!(head.contains("permessage-deflate"), "{head}");
            read_raw_frame(&mut stream);
            stream
        })
        .collect();
    let before = compressed_messages(&server);
    // Every fifth row changed: a delta of some kilobytes, worth compressing.
    let mut value = board(200, None, 1);
    for row in value["rows"].as_array_mut().unwrap().iter_mut().step_by(5) {
        row["status"] = json!(7);
    }
    let seq = publish(&server, &value);
    let frames: Vec<(u8, Vec<u8>)> = clients.iter_mut().map(read_raw_frame).collect();
    assert_eq!(frames[0], frames[1], "the same bytes for both");
    let (first, payload) = &frames[0];
    assert_eq!(first & 0x40, 0x40, "compressed (RSV1)");
    let message: Value = serde_json::from_slice(&inflate(payload)).unwrap();
    assert_eq!(
        (&message["seq"], &message["base"]),
        (&json!(seq), &json!(seq - 1))
    );
    assert_eq!(apply(board(200, None, 0), &message["delta"]), value);
    // One compression for the two of them, the delta's: nobody needed the
    // whole snapshot, so it was not compressed.
    assert_eq!(compressed_messages(&server) - before, 1);
}

/// Reads one SSE event's `id:` and JSON data.
fn next_event(stream: &mut TcpStream) -> (Option<u64>, Value) {
    let mut text = Vec::new();
    let mut byte = [0u8];
    while !text.ends_with(b"\n\n") {
        stream.read_exact(&mut byte).unwrap();
        text.push(byte[0]);
    }
    let text = String::from_utf8(text).unwrap();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .map(|id| id.parse().unwrap());
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    (id, serde_json::from_str(&data.join("\n")).unwrap())
}

/// SSE takes deltas too: the first event whole, the next ones patches,
/// each event's `id:` its seq.
#[test]
fn sse_streams_take_deltas() {
    let server = server();
    publish(&server, &board(20, None, 0));
    let mut stream = server.connect();
    let request = format!(
        "GET /api/v1/sse/{TOPIC}?delta=json-patch HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let mut view = None;
    let (id, message) = next_event(&mut stream);
    assert_eq!(id, Some(1));
    assert!(!View::take(&mut view, &message));
    for round in 1..=5 {
        let value = board(20, Some(round), round as u64);
        let seq = publish(&server, &value);
        let (id, message) = next_event(&mut stream);
        assert_eq!(id, Some(seq));
        assert!(View::take(&mut view, &message), "{message}");
        assert_eq!(view.as_ref().unwrap().data, value);
    }
}

/// The second topic of the multiplexed tests.
const OTHER: &str = "tally";

fn two_topics() -> TestServer {
    TestServer::with(|c| c.topics = vec![TOPIC.into(), OTHER.into(), "third".into()])
}

/// A multiplexed WebSocket on `/api/v1/ws?{query}`, upgraded.
fn mux_ws(server: &TestServer, query: &str) -> TcpStream {
    let mut stream = server.connect();
    let request = format!(
        "GET /api/v1/ws?{query} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut stream);
    assert_eq!(status, 101, "{}", String::from_utf8_lossy(&body));
    stream
}

/// Every topic's view on a multiplexed connection. Takes one message,
/// checks it says its topic right after its type, and returns its topic
/// and whether it was a delta.
#[track_caller]
fn take_mux(views: &mut HashMap<String, Option<View>>, text: &str) -> (String, bool) {
    let message: Value = serde_json::from_str(text).unwrap();
    let topic = message["topic"].as_str().expect("a topic").to_owned();
    let head = format!(r#"{{"type":"{topic}_update","topic":"{topic}","seq":"#);
    assert!(text.starts_with(&head), "{text}");
    let delta = View::take(views.entry(topic.clone()).or_default(), &message);
    (topic, delta)
}

/// `?delta=json-patch` on a multiplexed WebSocket holds for every topic,
/// one named at connect or subscribed later by command: after each
/// topic's whole snapshot, its updates come as patches against that
/// topic's previous seq, carrying `"topic"`, and applying them gives each
/// topic's published value.
#[test]
fn a_multiplexed_websocket_takes_deltas_per_topic() {
    let server = two_topics();
    publish_to(&server, TOPIC, &board(20, None, 0));
    publish_to(&server, OTHER, &board(12, None, 0));
    publish_to(&server, "third", &board(8, None, 0));
    let mut ws = mux_ws(
        &server,
        &format!("topic={TOPIC}&topic={OTHER}&delta=json-patch"),
    );
    let mut views = HashMap::new();
    for _ in 0..2 {
        let (_, delta) = take_mux(&mut views, read_data_frame(&mut ws).text());
        assert!(!delta, "each topic's first message is whole");
    }
    ws.write_all(&client_frame(
        0x81,
        br#"{"op":"subscribe","topics":["third"]}"#,
    ))
    .unwrap();
    let (topic, delta) = take_mux(&mut views, read_data_frame(&mut ws).text());
    assert_eq!((topic.as_str(), delta), ("third", false));
    for round in 1..=6u64 {
        for (topic, rows) in [(TOPIC, 20), (OTHER, 12), ("third", 8)] {
            let value = board(rows, Some(round as usize % rows), round);
            let seq = publish_to(&server, topic, &value);
            let frame = read_data_frame(&mut ws);
            let (got, delta) = take_mux(&mut views, frame.text());
            assert_eq!(got, topic);
            assert!(delta, "round {round}: {}", frame.text());
            let view = views[topic].as_ref().unwrap();
            assert_eq!(
                (view.seq, &view.data),
                (seq, &value),
                "{topic} round {round}"
            );
        }
    }
}

/// With permessage-deflate on a multiplexed WebSocket, a topic's delta
/// (with its `"topic"`) is compressed once per publish and the same bytes
/// go to every multiplexed delta subscriber; the only other compression
/// is the snapshot with its `"topic"`, made at each publish while the
/// topic has a multiplexed deflate subscriber.
#[test]
fn multiplexed_deltas_are_compressed_once_per_publish() {
    let server = two_topics();
    publish_to(&server, TOPIC, &board(200, None, 0));
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut clients: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = server.connect();
            let request = format!(
                "GET /api/v1/ws?topic={TOPIC}&delta=json-patch HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
            );
            stream.write_all(request.as_bytes()).unwrap();
            let (status, head, _) = read_response(&mut stream);
            assert_eq!(status, 101);
            assert!(head.contains("permessage-deflate"), "{head}");
            read_raw_frame(&mut stream);
            stream
        })
        .collect();
    let before = compressed_messages(&server);
    let mut value = board(200, None, 1);
    for row in value["rows"].as_array_mut().unwrap().iter_mut().step_by(5) {
        row["status"] = json!(7);
    }
    let seq = publish_to(&server, TOPIC, &value);
    let frames: Vec<(u8, Vec<u8>)> = clients.iter_mut().map(read_raw_frame).collect();
    assert_eq!(frames[0], frames[1], "the same bytes for both");
    let (first, payload) = &frames[0];
    assert_eq!(first & 0x40, 0x40, "compressed (RSV1)");
    let message: Value = serde_json::from_slice(&inflate(payload)).unwrap();
    assert_eq!(
        (&message["topic"], &message["seq"], &message["base"]),
        (&json!(TOPIC), &json!(seq), &json!(seq - 1))
    );
    assert_eq!(apply(board(200, None, 0), &message["delta"]), value);
    assert_eq!(compressed_messages(&server) - before, 2);
}

/// One multiplexed SSE event: its name, its `id:` and its data as text.
fn next_named_event(stream: &mut TcpStream) -> (String, String, String) {
    loop {
        let mut text = Vec::new();
        let mut byte = [0u8];
        while !text.ends_with(b"\n\n") {
            stream.read_exact(&mut byte).unwrap();
            text.push(byte[0]);
        }
        let text = String::from_utf8(text).unwrap();
        let field = |name: &str| {
            let lines: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix(name)).collect();
            lines.join("\n")
        };
        let data = field("data: ");
        if !data.is_empty() {
            return (field("event: "), field("id: "), data);
        }
    }
}

/// A multiplexed SSE stream takes deltas too: each event named for its
/// topic, its data a patch with `"topic"`, its `id:` the seq vector of
/// every topic so far.
#[test]
fn a_multiplexed_sse_stream_takes_deltas() {
    let server = two_topics();
    publish_to(&server, TOPIC, &board(20, None, 0));
    publish_to(&server, OTHER, &board(12, None, 0));
    let mut stream = server.connect();
    let request = format!(
        "GET /api/v1/sse?topic={TOPIC}&topic={OTHER}&delta=json-patch HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (status, _, _) = read_response(&mut stream);
    assert_eq!(status, 200);
    let mut views = HashMap::new();
    for _ in 0..2 {
        let (name, _, data) = next_named_event(&mut stream);
        let (topic, delta) = take_mux(&mut views, &data);
        assert_eq!(name, topic);
        assert!(!delta);
    }
    for round in 1..=4u64 {
        for (topic, rows) in [(TOPIC, 20), (OTHER, 12)] {
            let value = board(rows, Some(round as usize), round);
            let seq = publish_to(&server, topic, &value);
            let (name, id, data) = next_named_event(&mut stream);
            let (got, delta) = take_mux(&mut views, &data);
            assert_eq!((name.as_str(), got.as_str()), (topic, topic));
            assert!(delta, "{data}");
            assert_eq!(views[topic].as_ref().unwrap().data, value);
            let mut vector: Vec<&str> = id.split(',').collect();
            vector.sort_unstable();
            let seqs = |t: &str| views[t].as_ref().unwrap().seq;
            let mut expected = vec![
                format!("{TOPIC}:{}", seqs(TOPIC)),
                format!("{OTHER}:{}", seqs(OTHER)),
            ];
            expected.sort_unstable();
            assert_eq!(vector, expected, "round {round}, seq {seq}");
        }
    }
}

/// Conflation on a multiplexed delta connection is per topic: a reader
/// stalled behind a big topic gets that topic's newest snapshot whole
/// (never a delta against a seq it never got), while the other topic's
/// delta, queued meanwhile, is left as it was and still applies.
#[test]
fn a_multiplexed_reader_behind_on_one_topic_gets_its_whole_snapshot() {
    let server = TestServer::with(|c| {
        c.topics = vec![TOPIC.into(), OTHER.into()];
        c.max_queue_bytes = 8 << 20;
    });
    // 200 KiB, under the size that still gets deltas, and all of it
    // changed each time, so no delta is smaller than the snapshot.
    let big = |i: u64| json!({"fill": format!("{:02}", i % 100).repeat(100 << 10), "n": i});
    publish_to(&server, TOPIC, &big(0));
    publish_to(&server, OTHER, &board(12, None, 0));
    let query = format!("topic={TOPIC}&topic={OTHER}&delta=json-patch");
    let mut stalled = mux_ws(&server, &query);
    let mut healthy = mux_ws(&server, &query);
    let (mut stalled_views, mut healthy_views) = (HashMap::new(), HashMap::new());
    for _ in 0..2 {
        take_mux(&mut stalled_views, read_data_frame(&mut stalled).text());
        take_mux(&mut healthy_views, read_data_frame(&mut healthy).text());
    }
    // 60 x 200 KiB: more than the kernel's buffers on both ends hold, so
    // the stalled one's queue conflates the big topic.
    let rounds = 60;
    let mut last = 0;
    for i in 1..=rounds {
        last = publish_to(&server, TOPIC, &big(i % 10));
        take_mux(&mut healthy_views, read_data_frame(&mut healthy).text());
    }
    // Superseded: the stalled one has a frame stuck half written and the
    // big topic's newest queued unstarted behind it.
    assert!(server.health()["counters"]["superseded"].as_u64().unwrap() > 0);
    // The other topic's small change, queued behind the big one: a delta.
    let tally = board(12, Some(3), 3);
    publish_to(&server, OTHER, &tally);
    let (topic, delta) = take_mux(&mut healthy_views, read_data_frame(&mut healthy).text());
    assert_eq!((topic.as_str(), delta), (OTHER, true));
    let mut value = big(rounds % 10);
    value["n"] = json!(1000);
    let seq = publish_to(&server, TOPIC, &value);
    let message = read_data_frame(&mut healthy).json();
    assert_eq!(
        (&message["seq"], &message["base"]),
        (&json!(seq), &json!(last)),
        "an up-to-date reader gets the delta"
    );
    let mut other_deltas = 0;
    loop {
        let frame = read_data_frame(&mut stalled);
        let (topic, delta) = take_mux(&mut stalled_views, frame.text());
        if topic == OTHER {
            other_deltas += usize::from(delta);
            continue;
        }
        if stalled_views[TOPIC].as_ref().unwrap().seq == seq {
            assert!(!delta, "whole, not a delta");
            break;
        }
    }
    assert_eq!(stalled_views[TOPIC].as_ref().unwrap().data, value);
    assert_eq!(other_deltas, 1, "the other topic's delta, untouched");
    assert_eq!(stalled_views[OTHER].as_ref().unwrap().data, tally);
}

/// A snapshot over 256 KiB goes whole to a delta subscriber, however small
/// the change (the topic keeps no base that big); under it, deltas resume.
#[test]
fn a_snapshot_over_256_kib_goes_whole() {
    let server = server();
    let value = |len: usize, n: u64| json!({"fill": "x".repeat(len), "n": n});
    let over = 256 << 10;
    publish(&server, &value(over, 0));
    let mut ws = server.subscribe(&format!("{TOPIC}?delta=json-patch"));
    read_data_frame(&mut ws);
    for n in 1..=2 {
        let seq = publish(&server, &value(over, n));
        let message = read_data_frame(&mut ws).json();
        assert_eq!(message["seq"], seq);
        assert_eq!(message["data"]["n"], n, "whole, not a delta");
    }
    let under = 200 << 10;
    publish(&server, &value(under, 3));
    assert_eq!(read_data_frame(&mut ws).json()["data"]["n"], 3);
    let seq = publish(&server, &value(under, 4));
    let message = read_data_frame(&mut ws).json();
    assert_eq!(
        message["delta"],
        json!([{"op": "replace", "path": "/n", "value": 4}]),
        "{seq}"
    );
}

/// A delta subscriber that says it has the current seq (`?since=` on
/// either kind of route) still gets the whole snapshot first: a seq only
/// names a value within one run of the server, and patches applied to
/// another run's value could leave the client wrong without a sign. A
/// plain subscriber with the same `since` gets nothing, as before.
#[test]
fn a_delta_subscriber_always_starts_from_the_whole_snapshot() {
    let server = two_topics();
    let value = board(20, None, 0);
    let seq = publish_to(&server, TOPIC, &value);
    let mut patched = server.subscribe(&format!("{TOPIC}?delta=json-patch&since={seq}"));
    let first = read_data_frame(&mut patched).json();
    assert_eq!((&first["seq"], &first["data"]), (&json!(seq), &value));
    let mut mux = mux_ws(
        &server,
        &format!("topic={TOPIC}&since={TOPIC}:{seq}&delta=json-patch"),
    );
    let first = read_data_frame(&mut mux).json();
    assert_eq!((&first["seq"], &first["data"]), (&json!(seq), &value));
    // Without deltas, the same `since` means nothing is resent: the first
    // message is the next publish.
    let mut plain = server.subscribe(&format!("{TOPIC}?since={seq}"));
    let next = board(20, Some(3), 1);
    let seq = publish_to(&server, TOPIC, &next);
    let message = read_data_frame(&mut plain).json();
    assert_eq!((&message["seq"], &message["data"]), (&json!(seq), &next));
}
