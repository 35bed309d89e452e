//! WebSocket behaviour over raw sockets with hand-written frames: the
//! snapshot on connect, updates, closes, keep-alive pings, protocol errors
//! and slow consumers.

use std::io::Write;
use std::time::{Duration, Instant};

use statecast_testkit::*;

/// The snapshot arrives right after the 101, before the client sends a byte.
#[test]
fn snapshot_arrives_without_asking() {
    let server = TestServer::start();
    let mut ws = server.subscribe("queue");
    let frame = read_frame(&mut ws);
    assert_eq!(frame.opcode, 0x1);
    assert!(frame.fin);
    assert_eq!(
        frame.text(),
        r#"{"type":"queue_update","seq":0,"data":{"phases":[],"total":0,"paused":false}}"#
    );
}

/// A publish reaches the subscribers of its topic and no one else.
#[test]
fn updates_reach_only_their_topic() {
    let server = TestServer::start();
    let mut queue = server.subscribe("queue");
    let mut routes = server.subscribe("routes");
    read_frame(&mut queue);
    read_frame(&mut routes);
    let (status, body) = server.publish("queue", r#"{"phases":[],"total":7,"paused":false}"#);
    assert_eq!(status, 200);
    assert!(body.contains(r#""subscribers":1"#), "{body}");
    let update = read_frame(&mut queue).json();
    assert_eq!(update["type"], "queue_update");
    assert_eq!(update["seq"], 1);
    assert_eq!(update["data"]["total"], 7);
    // The routes socket got nothing: its next frame is the one we publish now.
    server.publish("routes", r#"[{"path":"/x","method":"GET","tags":[]}]"#);
    assert_eq!(read_frame(&mut routes).json()["type"], "routes_update");
}

/// Publishes from a `Publisher` thread arrive too.
#[test]
fn publisher_thread_publishes() {
    let server = TestServer::start();
    let mut ws = server.subscribe("adw-state/a1b2c3d4");
    assert_eq!(
        read_frame(&mut ws).json()["data"],
        serde_json::json!({"adw_id": "a1b2c3d4"})
    );
    let publisher = server.publisher.clone();
    std::thread::spawn(move || {
        publisher
            .publish(
                "adw-state/a1b2c3d4",
                &serde_json::json!({"adw_id": "a1b2c3d4"}),
            )
            .unwrap();
    })
    .join()
    .unwrap();
    let update = read_frame(&mut ws).json();
    assert_eq!(update["adw_id"], "a1b2c3d4");
    assert_eq!(update["data"]["adw_id"], "a1b2c3d4");
    assert!(server.publisher.publish("no-such-topic", &1).is_err());
}

/// A client close gets a close reply with the same code, then EOF.
#[test]
fn client_close_is_answered_then_socket_closed() {
    let server = TestServer::start();
    let mut ws = server.subscribe("queue");
    read_frame(&mut ws);
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"leaving");
    ws.write_all(&client_frame(0x88, &body)).unwrap();
    let reply = read_frame(&mut ws);
    assert_eq!(reply.close_code(), 1000);
    assert!(reply.payload.len() > 2, "close replies carry a reason");
    expect_eof(&mut ws);
    drop(ws);
    server.wait_health("the closed socket to be forgotten", |h| h["sockets"] == 1);
}

/// A client that vanishes without a close frame is forgotten at once.
#[test]
fn vanished_client_leaves_health() {
    let server = TestServer::start();
    let mut ws = server.subscribe("queue");
    read_frame(&mut ws);
    server.wait_health("one connection", |h| h["connections"] == 1);
    drop(ws);
    server.wait_health("no connections", |h| h["connections"] == 0);
}

/// Ping frames are answered with the same payload, a JSON ping with a JSON
/// pong; other text is ignored.
#[test]
fn pings_are_answered() {
    let server = TestServer::start();
    let mut ws = server.subscribe("queue");
    read_frame(&mut ws);
    ws.write_all(&client_frame(0x81, br#"{"type":"client_ready"}"#))
        .unwrap();
    ws.write_all(&client_frame(0x89, b"hello")).unwrap();
    let pong = read_frame(&mut ws);
    assert_eq!((pong.opcode, pong.payload.as_slice()), (0xA, &b"hello"[..]));
    ws.write_all(&client_frame(
        0x81,
        br#"{"type":"ping","timestamp":1732550000123}"#,
    ))
    .unwrap();
    assert_eq!(
        read_frame(&mut ws).text(),
        r#"{"type":"pong","timestamp":1732550000123}"#
    );
}

/// A peer that never answers pings is closed after two intervals; one that
/// answers stays.
#[test]
fn silent_peer_is_closed_after_two_ping_intervals() {
    let interval = Duration::from_millis(150);
    let server = TestServer::with(|c| c.ping_interval = interval);
    let mut silent = server.subscribe("queue");
    let mut alive = server.subscribe("queue");
    read_frame(&mut silent);
    read_frame(&mut alive);
    let start = Instant::now();
    // The other client answers every ping and outlives several intervals.
    let answering = std::thread::spawn(move || {
        let until = Instant::now() + interval * 5;
        while Instant::now() < until {
            let frame = read_frame(&mut alive);
            assert_eq!(frame.opcode, 0x9, "an answering client is never closed");
            alive
                .write_all(&client_frame(0x8A, &frame.payload))
                .unwrap();
        }
    });

    let mut pings = 0;
    let close = loop {
        let frame = read_frame(&mut silent);
        match frame.opcode {
            0x9 => pings += 1,
            0x8 => break frame,
            other => panic!("unexpected opcode {other}"),
        }
    };
    let elapsed = start.elapsed();
    assert!(pings >= 1, "the server pinged before giving up");
    assert_eq!(close.close_code(), 1001);
    assert_eq!(&close.payload[2..], b"ping timeout");
    assert!(elapsed >= interval * 2, "closed after {elapsed:?}");

    answering.join().unwrap();
    server.wait_health("the close counted by its cause", |h| {
        h["counters"]["closes"]["ping_timeout"] == 1
    });
}

/// Each kind of bad client frame gets its close code and a reason.
#[test]
fn bad_frames_get_their_close_codes() {
    let server = TestServer::start();
    let mut long_close = 1000u16.to_be_bytes().to_vec();
    long_close.push(0xff);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("reserved bits", client_frame(0xC1, b"hi"), 1002),
        ("reserved opcode", client_frame(0x83, b"hi"), 1002),
        ("long ping", client_frame(0x89, &[0; 126]), 1002),
        ("fragmented ping", client_frame(0x09, b"hi"), 1002),
        ("stray continuation", client_frame(0x80, b"hi"), 1002),
        ("invalid UTF-8", client_frame(0x81, &[0xff, 0xfe]), 1007),
        (
            "invalid UTF-8 close reason",
            client_frame(0x88, &long_close),
            1007,
        ),
        (
            "close code 1005",
            client_frame(0x88, &1005u16.to_be_bytes()),
            1002,
        ),
        ("oversized message", client_frame(0x82, &[0; 5000]), 1009),
    ];
    for (name, bytes, code) in cases {
        let mut ws = server.subscribe("queue");
        read_frame(&mut ws);
        ws.write_all(&bytes).unwrap();
        let close = read_data_frame(&mut ws);
        assert_eq!(close.close_code(), code, "{name}");
        assert!(close.payload.len() > 2, "{name}: close carries a reason");
        expect_eof(&mut ws);
    }
    server.wait_health("all bad clients gone, counted by cause", |h| {
        h["connections"] == 0 && h["counters"]["closes"]["protocol_error"] == 10
    });
}

/// Reads frames until a text frame whose `seq` is `last`; returns how many
/// text frames it took.
fn read_until_seq(ws: &mut std::net::TcpStream, last: u64) -> usize {
    let mut count = 0;
    loop {
        let frame = read_data_frame(ws);
        assert_eq!(frame.opcode, 0x1, "unexpected frame {:?}", frame.opcode);
        count += 1;
        if frame.json()["seq"] == last {
            return count;
        }
    }
}

/// A client that stops reading costs bounded memory, does not delay a
/// healthy client, and ends up with only the newest snapshot.
#[test]
fn stalled_reader_is_conflated_and_does_not_delay_others() {
    let server = TestServer::with(|c| c.max_queue_bytes = 8 << 20);
    let mut stalled = server.subscribe("webhook-status");
    let mut healthy = server.subscribe("webhook-status");
    read_frame(&mut stalled);
    read_frame(&mut healthy);

    // 60 snapshots of 256 KiB: far more than the kernel's socket buffers
    // hold. In lockstep: each reaches the healthy client (within the read
    // deadline) before the next is published, so the healthy client gets
    // every one of them, none superseded, while the stalled one's socket
    // stays full the whole time.
    let filler = "x".repeat(256 << 10);
    let publishes = 60;
    for seq in 1..=publishes {
        let (status, _) = server.publish("webhook-status", &format!(r#"{{"status":"{filler}"}}"#));
        assert_eq!(status, 200);
        let frame = read_data_frame(&mut healthy).json();
        assert_eq!(
            frame["seq"], seq,
            "the healthy client got every publish in turn"
        );
    }

    // The stalled client's queue holds at most the frame in flight and the
    // newest snapshot.
    let health = server.health();
    let queued = health["queued_bytes"].as_u64().unwrap();
    assert!(queued <= 2 * (256 << 10) + 1024, "queued {queued} bytes");
    assert!(health["counters"]["superseded"].as_u64().unwrap() > 0);
    assert_eq!(health["counters"]["closes"]["slow_consumer"], 0);

    // Once it reads again it catches up on the newest, having skipped most.
    let got = read_until_seq(&mut stalled, publishes);
    assert!(got < publishes as usize, "stalled reader got {got} frames");
}

/// Events are never dropped, so a stalled reader's queue grows past
/// `--max-queue-bytes`; it is then closed with 1013 Try Again Later (an
/// overload, not the 1008 of a broken rule) and the others carry on.
#[test]
fn queue_limit_closes_slow_consumer_with_1013() {
    let server = TestServer::with(|c| c.max_queue_bytes = 256 << 10);
    let mut stalled = server.subscribe("queue");
    let mut healthy = server.subscribe("routes");
    read_frame(&mut stalled);
    read_frame(&mut healthy);
    let data = "y".repeat(64 << 10);
    let event = format!(r#"{{"type":"big","data":"{data}"}}"#);
    let events = 200;
    let healthy_reader = std::thread::spawn(move || {
        for _ in 0..events {
            assert_eq!(read_data_frame(&mut healthy).json()["type"], "big");
        }
        healthy
    });
    for _ in 0..events {
        let (status, _) = server.request("POST", "/api/v1/broadcast", &event);
        assert_eq!(status, 200);
    }
    let _healthy = healthy_reader.join().unwrap();
    // The stalled client finds, after the events it had room for, a 1013.
    let close = loop {
        let frame = read_data_frame(&mut stalled);
        if frame.opcode == 0x8 {
            break frame;
        }
    };
    assert_eq!(close.close_code(), 1013);
    assert_eq!(&close.payload[2..], b"slow consumer");
    drop(stalled);
    server.wait_health("the slow consumer counted", |h| {
        h["counters"]["closes"]["slow_consumer"] == 1
    });
    assert_eq!(server.health()["counters"]["closes"]["write_timeout"], 0);
}

/// A client that accepts no bytes for `--write-timeout` is closed as slow,
/// and counted as a write timeout. The queue limit is set out of reach so
/// only the timeout can close it.
#[test]
fn write_timeout_closes_a_stuck_client() {
    let server = TestServer::with(|c| {
        c.write_timeout = Duration::from_millis(300);
        c.max_queue_bytes = 1 << 30;
    });
    let mut stuck = server.subscribe("queue");
    read_frame(&mut stuck);
    let data = "z".repeat(512 << 10);
    // Enough events to fill the kernel buffers so output stays pending.
    let event = format!(r#"{{"type":"fill","data":"{data}"}}"#);
    for _ in 0..40 {
        let (status, _) = server.request("POST", "/api/v1/broadcast", &event);
        assert_eq!(status, 200);
    }
    server.wait_health("the stuck client to be closed", |h| {
        h["counters"]["closes"]["write_timeout"] == 1
    });
    assert_eq!(server.health()["counters"]["closes"]["slow_consumer"], 0);
    assert_eq!(server.health()["connections"], 0);
}

/// `?since=<seq>`: a client that already has the topic's current `seq`
/// gets no resend; one behind gets the snapshot at once.
#[test]
fn since_skips_the_resend_only_when_the_seq_is_current() {
    let server = TestServer::start();
    server.publish("queue", r#"{"phases":[],"total":1}"#);
    server.publish("queue", r#"{"phases":[],"total":2}"#);
    let resume = |since: &str| {
        let mut ws = server.connect();
        let request = upgrade_request(&format!("queue?since={since}"));
        ws.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_response(&mut ws).0, 101);
        ws
    };
    let mut behind = resume("1");
    assert_eq!(read_data_frame(&mut behind).json()["seq"], 2);
    let mut current = resume("2");
    // Nothing was resent: the first frame it gets is the next publish.
    server.publish("queue", r#"{"phases":[],"total":3}"#);
    let next = read_data_frame(&mut current).json();
    assert_eq!(
        (next["seq"].as_u64(), next["data"]["total"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(read_data_frame(&mut behind).json()["seq"], 3);
}

/// A message may come in up to `--max-client-fragments` frames (a JSON
/// ping in 128 is answered); a client that sends a 4 KiB fragment and then
/// streams empty continuations is closed with `1009 too many fragments`
/// on the frame that passes the limit, and a subscriber beside it still
/// gets its publishes.
#[test]
fn a_message_in_too_many_fragments_is_closed_with_1009() {
    let server = TestServer::start();
    let mut healthy = server.subscribe("queue");
    read_data_frame(&mut healthy);

    let mut patient = server.subscribe("queue");
    read_data_frame(&mut patient);
    let ping = br#"{"type":"ping","timestamp":5}"#;
    let mut frames = client_frame(0x01, &ping[..1]);
    for byte in &ping[1..] {
        frames.extend(client_frame(0x00, std::slice::from_ref(byte)));
    }
    let last = 128 - ping.len();
    for i in 0..last {
        frames.extend(client_frame(if i + 1 == last { 0x80 } else { 0x00 }, b""));
    }
    patient.write_all(&frames).unwrap();
    let pong = read_data_frame(&mut patient).json();
    assert_eq!(pong["type"], "pong", "{pong}");

    let mut flooder = server.subscribe("queue");
    read_data_frame(&mut flooder);
    let mut frames = client_frame(0x01, &[b'a'; 4096]);
    for _ in 0..1000 {
        frames.extend(client_frame(0x00, b""));
    }
    // The server may close before it has taken every frame.
    let _ = flooder.write_all(&frames);
    let close = read_data_frame(&mut flooder);
    assert_eq!(close.close_code(), 1009);
    assert_eq!(&close.payload[2..], b"too many fragments");
    expect_eof(&mut flooder);
    // Removed (and counted) once its peer has closed too.
    drop(flooder);

    let (status, body) = server.publish("queue", r#"{"phases":[],"paused":true}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(read_data_frame(&mut healthy).json()["data"]["paused"], true);
    server.wait_health("the close counted as a protocol error", |h| {
        h["counters"]["closes"]["protocol_error"] == 1
    });
}
