//! permessage-deflate (RFC 7692) against a raw-socket client that inflates
//! with its own flate2 state: negotiation, one compressed frame per publish
//! for every subscriber that agreed, plain frames for the rest, compressed
//! client messages, and `--no-compression`.

use std::io::Write;
use std::net::TcpStream;

use flate2::{Decompress, FlushDecompress};
use statecast_testkit::*;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// A message as the client sees it: whether it came compressed, and its text.
struct Message {
    compressed: bool,
    /// Bytes of payload on the wire.
    wire: usize,
    text: String,
}

impl Message {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap()
    }
}

/// Opens a WebSocket on `topic`, offering permessage-deflate the way
/// Chromium does; returns the stream and the 101's extension header.
fn subscribe_offering(server: &impl Serving, topic: &str) -> (TcpStream, Option<String>) {
    let mut stream = server.connect();
    let request = upgrade_request(topic).replace("\r\n\r\n", &format!("\r\n{OFFER}\r\n"));
    stream.write_all(request.as_bytes()).unwrap();
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(status, 101, "{head}");
    let extension = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_owned())
    });
    (stream, extension)
}

/// Reads one data message, inflating it when RSV1 says it is compressed
/// (a fresh inflater each time: the server agreed to no context takeover).
fn read_message(stream: &mut TcpStream) -> Message {
    loop {
        let (first, payload) = read_raw_frame(stream);
        assert_eq!(first & 0x30, 0, "RSV2 and RSV3 stay clear");
        let len = payload.len();
        let opcode = first & 0x0f;
        if opcode == 0x9 {
            continue;
        }
        assert_eq!(first & 0x80, 0x80, "whole messages only");
        let compressed = first & 0x40 != 0;
        let text = if compressed {
            assert_eq!(opcode, 0x1, "only text frames are compressed");
            inflate(&payload)
        } else {
            payload.clone()
        };
        return Message {
            compressed,
            wire: len,
            text: String::from_utf8(text).unwrap(),
        };
    }
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut inflater = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    inflater
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(
        inflater.total_in() as usize,
        input.len(),
        "all of it inflated"
    );
    out
}

/// Raw deflate of `text`, sync-flushed, tail removed: a compressed client
/// message's payload.
fn deflate(text: &str) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(text.len() + 64);
    c.compress_vec(text.as_bytes(), &mut out, FlushCompress::Sync)
        .unwrap();
    out.truncate(out.len() - 4);
    out
}

/// The 16 KiB workflow-history snapshot of 50 items, `total_count` as given.
fn history(total: usize) -> String {
    let mut value = statecast::providers::demo::history_fixture(50, 7);
    value["total_count"] = total.into();
    value.to_string()
}

fn metric(server: &TestServer, name: &str) -> f64 {
    let (status, body) = server.request("GET", "/metrics", "");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[test]
fn one_compressed_frame_per_publish_serves_every_deflate_subscriber() {
    let server = TestServer::start();
    let (mut a, extension) = subscribe_offering(&server, "workflow-history");
    assert_eq!(
        extension.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let (mut b, _) = subscribe_offering(&server, "workflow-history");
    let mut plain = server.subscribe("workflow-history");
    for stream in [&mut a, &mut b] {
        check_message("workflow-history", &read_message(stream).json());
    }
    read_data_frame(&mut plain);
    // A short message goes out plain even to a client that agreed.
    let (mut short, _) = subscribe_offering(&server, "queue");
    let first = read_message(&mut short);
    assert!(!first.compressed, "{} bytes compressed", first.text.len());

    let before = metric(&server, "statecast_compressed_messages_total");
    for round in 0..3 {
        let data = history(50 + round);
        assert_eq!(server.publish("workflow-history", &data).0, 200);
        let (from_a, from_b) = (read_message(&mut a), read_message(&mut b));
        let from_plain = read_data_frame(&mut plain);
        assert!(from_a.compressed && from_b.compressed);
        assert_eq!(from_a.text, from_b.text);
        assert_eq!(
            from_a.text,
            from_plain.text(),
            "the same message either way"
        );
        check_message("workflow-history", &from_a.json());
        assert!(
            from_a.wire * 4 <= from_plain.payload.len(),
            "{} compressed bytes for {} plain",
            from_a.wire,
            from_plain.payload.len()
        );
    }
    // Once per publish, not once per subscriber.
    let after = metric(&server, "statecast_compressed_messages_total");
    assert_eq!(after - before, 3.0);

    // A late subscriber gets the compressed snapshot already made.
    let (mut late, _) = subscribe_offering(&server, "workflow-history");
    let snapshot = read_message(&mut late);
    assert!(snapshot.compressed);
    assert_eq!(snapshot.json()["seq"], 3);
    assert_eq!(
        metric(&server, "statecast_compressed_messages_total"),
        after
    );
}

#[test]
fn compressed_client_messages_are_inflated_and_garbage_is_refused() {
    let server = TestServer::start();
    let (mut ws, _) = subscribe_offering(&server, "queue");
    read_message(&mut ws);
    // A compressed JSON ping is answered like a plain one.
    let ping = r#"{"type":"ping","timestamp":1764123456}"#;
    ws.write_all(&client_frame(0xc1, &deflate(ping))).unwrap();
    let pong = read_message(&mut ws).json();
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["timestamp"], 1764123456);
    // Bytes that do not inflate fail the connection with 1007.
    ws.write_all(&client_frame(0xc1, &[0xff; 8])).unwrap();
    assert_eq!(read_frame(&mut ws).close_code(), 1007);

    // Without the extension agreed, RSV1 is a protocol error.
    let mut plain = server.subscribe("queue");
    read_data_frame(&mut plain);
    plain
        .write_all(&client_frame(0xc1, &deflate(ping)))
        .unwrap();
    assert_eq!(read_frame(&mut plain).close_code(), 1002);
}

#[test]
fn no_compression_refuses_the_offer_and_sends_plain_frames() {
    let server = TestServer::with(|c| {
        c.compression = false;
        c.validate = false;
    });
    let (mut ws, extension) = subscribe_offering(&server, "workflow-history");
    assert_eq!(extension, None);
    read_message(&mut ws);
    server.publish("workflow-history", &history(50));
    let message = read_message(&mut ws);
    assert!(!message.compressed);
    assert_eq!(metric(&server, "statecast_compressed_messages_total"), 0.0);
}

#[test]
fn an_offer_the_compressor_cannot_keep_to_is_declined() {
    let server = TestServer::start();
    let mut stream = server.connect();
    let request = upgrade_request("queue").replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n\r\n",
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(status, 101);
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{head}"
    );
}

/// With `--max-client-message` at its smallest legal value (1 byte), a
/// compressed message that fits (an empty one) is inflated and the
/// connection carries on, one that does not is closed with 1009, and the
/// server and another client are untouched. One such frame used to end the
/// process (a `clamp` whose bounds crossed below 64 bytes).
#[test]
fn compressed_frames_under_the_smallest_message_limit_end_nothing() {
    let server = Binary::start(&["--max-client-message", "1"]);
    let mut other = server.subscribe("queue");
    read_data_frame(&mut other);
    let (mut ws, extension) = subscribe_offering(&server, "queue");
    assert!(extension.is_some(), "deflate agreed");
    read_message(&mut ws);
    // An empty compressed text message, then a ping to see it was taken.
    ws.write_all(&client_frame(0xc1, &[])).unwrap();
    ws.write_all(&client_frame(0x89, b"p")).unwrap();
    let pong = read_data_frame(&mut ws);
    assert_eq!((pong.opcode, pong.payload), (0xa, b"p".to_vec()));
    ws.write_all(&client_frame(0xc1, &deflate("hello")))
        .unwrap();
    assert_eq!(read_data_frame(&mut ws).close_code(), 1009);

    let (status, body) = server.publish("queue", r#"{"phases":[],"paused":true}"#);
    assert_eq!(status, 200, "{body}");
    let update = read_data_frame(&mut other).json();
    assert_eq!(update["data"]["paused"], true, "{update}");
}
