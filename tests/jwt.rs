//! Signed tokens (JWT) against the real binary: a token for one topic
//! reads that topic and no other on every route, publishes only where its
//! `publish` says, broadcasts only with `*`; the key's type fixes the
//! algorithm; a WebSocket and an SSE stream are closed at `exp`; tokens
//! never reach the log; `statecast token` mints what the server takes.
//! Keys are the test-only ones under tests/data/jwt.
//!
//! Built only with `--features jwt` (scripts/test.sh runs it so); the
//! default build refuses a key, which src/server/jwt.rs tests.
#![cfg(feature = "jwt")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use statecast_testkit::*;

const SECRET: &str = "jwt-test-secret-0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn data(name: &str) -> String {
    format!("{}/tests/data/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// An HS256 token with the test secret.
fn hs256(topics: &[&str], publish: &[&str], exp: u64) -> String {
    let claims = json!({"exp": exp, "sub": "alice", "topics": topics, "publish": publish});
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

/// The binary with the test secret, topics `a` and `b`, logging at debug.
fn server(args: &[&str]) -> Binary {
    let mut all = vec![
        "--preset",
        "none",
        "--topic",
        "a",
        "--topic",
        "b",
        "--log-level",
        "debug",
    ];
    all.extend_from_slice(args);
    Binary::start_with(&all, |c| {
        c.env("STATECAST_JWT_SECRET", SECRET);
    })
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// The status of a WebSocket upgrade to `target`.
fn upgrade(server: &Binary, target: &str, extra: &str) -> (u16, TcpStream) {
    let mut stream = server.connect();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (status, _, _) = read_response(&mut stream);
    (status, stream)
}

/// Opens an SSE stream; returns its status and, on 200, the stream after
/// its head.
fn stream(server: &Binary, target: &str) -> (u16, TcpStream) {
    let mut s = server.connect();
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head[9..12]).parse().unwrap();
    (status, s)
}

/// A token for `a` reads `a` on the WebSocket, SSE and `/api/v1/state`,
/// and is refused (403) on `b` on each; without a token each is 401.
#[test]
fn a_token_for_one_topic_reads_only_that_topic() {
    let server = server(&[]);
    let admin = hs256(&["*"], &["*"], now() + 600);
    let (status, _) = request_at(
        server.addr,
        "POST",
        "/api/v1/publish/a",
        r#"{"n":1}"#,
        &bearer(&admin),
    );
    assert_eq!(status, 200);
    request_at(
        server.addr,
        "POST",
        "/api/v1/publish/b",
        r#"{"n":2}"#,
        &bearer(&admin),
    );
    let token = hs256(&["a"], &[], now() + 600);
    for (topic, expect) in [("a", 101), ("b", 403)] {
        let query = format!("/api/v1/ws/{topic}?token={token}");
        assert_eq!(upgrade(&server, &query, "").0, expect, "ws {topic}");
        let path = format!("/api/v1/ws/{topic}");
        assert_eq!(
            upgrade(&server, &path, &bearer(&token)).0,
            expect,
            "ws {topic}"
        );
        assert_eq!(upgrade(&server, &path, "").0, 401, "ws {topic} bare");
    }
    for (topic, expect) in [("a", 200), ("b", 403)] {
        let sse = format!("/api/v1/sse/{topic}?token={token}");
        assert_eq!(stream(&server, &sse).0, expect, "sse {topic}");
        let bare = format!("/api/v1/sse/{topic}");
        assert_eq!(stream(&server, &bare).0, 401, "sse {topic} bare");
        let state = format!("/api/v1/state/{topic}");
        let (status, body) = request_at(server.addr, "GET", &state, "", &bearer(&token));
        assert_eq!(status, expect, "state {topic}: {body}");
        if expect == 200 {
            assert!(body.contains(r#""n":1"#), "{body}");
        } else {
            assert!(!body.contains(&token), "{body}");
        }
        assert_eq!(
            server.request("GET", &state, "").0,
            401,
            "state {topic} bare"
        );
    }
    let (_, mut ws) = upgrade(&server, &format!("/api/v1/ws/a?token={token}"), "");
    let snapshot = read_data_frame(&mut ws);
    assert_eq!(snapshot.json()["data"], json!({"n": 1}));
}

/// `topics` gives no publish right; `publish` for `a` publishes to `a`
/// only; a broadcast needs `publish` to have `*`.
#[test]
fn publish_rights_come_from_the_publish_claim() {
    let server = server(&[]);
    let publish = |token: &str, topic: &str| {
        let path = format!("/api/v1/publish/{topic}");
        request_at(server.addr, "POST", &path, r#"{"n":3}"#, &bearer(token)).0
    };
    let broadcast = |token: &str| {
        let event = r#"{"type":"note","data":{}}"#;
        request_at(
            server.addr,
            "POST",
            "/api/v1/broadcast",
            event,
            &bearer(token),
        )
        .0
    };
    let reader = hs256(&["a"], &[], now() + 600);
    let writer = hs256(&[], &["a"], now() + 600);
    let everything = hs256(&[], &["*"], now() + 600);
    assert_eq!(publish(&reader, "a"), 403);
    assert_eq!(publish(&writer, "a"), 200);
    assert_eq!(publish(&writer, "b"), 403);
    assert_eq!(server.publish("a", r#"{"n":4}"#).0, 401, "no token");
    assert_eq!(broadcast(&writer), 403);
    assert_eq!(broadcast(&everything), 200);
    assert_eq!(publish(&everything, "b"), 200);
}

/// With an Ed25519 public key, an EdDSA token signed by its private half
/// is taken; an HS256 token whose HMAC key is the public key's PEM (the
/// key confusion attack) is refused, and so is one from another key.
#[test]
fn the_public_key_fixes_the_algorithm() {
    let key_file = data("ed25519.pub");
    let server = Binary::start(&["--jwt-public-key", &key_file]);
    let claims = json!({"exp": now() + 600, "topics": ["queue"]});
    let private = std::fs::read(data("ed25519.key")).unwrap();
    let good = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims,
        &EncodingKey::from_ed_pem(&private).unwrap(),
    )
    .unwrap();
    assert_eq!(
        upgrade(&server, &format!("/api/v1/ws/queue?token={good}"), "").0,
        101
    );
    let public = std::fs::read(&key_file).unwrap();
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&public).unwrap(),
    )
    .unwrap();
    assert_eq!(
        upgrade(&server, &format!("/api/v1/ws/queue?token={confused}"), "").0,
        401
    );
    let path = "/api/v1/state/queue";
    let (status, body) = request_at(server.addr, "GET", path, "", &bearer(&confused));
    assert_eq!(status, 401);
    assert!(body.contains("algorithm"), "{body}");
}

/// A live WebSocket and a live SSE stream opened with a token expiring
/// in about two seconds are closed at `exp`: 4001 "token expired" on the
/// WebSocket, a last `close` event saying the same on SSE, then EOF. A
/// subscriber with a longer token stays.
#[test]
fn subscriptions_close_when_their_token_expires() {
    let server = server(&[]);
    let short = hs256(&["a"], &[], now() + 2);
    let long = hs256(&["*"], &[], now() + 600);
    let (status, mut ws) = upgrade(&server, &format!("/api/v1/ws/a?token={short}"), "");
    assert_eq!(status, 101);
    let (status, mut sse) = stream(&server, &format!("/api/v1/sse/a?token={short}"));
    assert_eq!(status, 200);
    let (_, mut stays) = upgrade(&server, &format!("/api/v1/ws/b?token={long}"), "");

    // The read timeout (DEADLINE) is the generous deadline: the close is
    // due within about two seconds.
    let close = read_data_frame(&mut ws);
    assert_eq!(close.close_code(), 4001);
    assert_eq!(&close.payload[2..], b"token expired");

    let mut rest = Vec::new();
    sse.read_to_end(&mut rest).expect("the stream ends");
    let rest = String::from_utf8(rest).unwrap();
    let last = rest
        .split("\n\n")
        .filter(|e| e.starts_with("data: "))
        .last()
        .unwrap_or_else(|| panic!("no last event in {rest:?}"));
    let last: serde_json::Value = serde_json::from_str(&last["data: ".len()..]).unwrap();
    assert_eq!(
        last,
        json!({"type": "close", "data": {"code": 4001, "reason": "token expired"}})
    );

    let health = format!("/healthz?token={long}");
    wait_until("the closes are counted", || {
        let (_, body) = server.request("GET", &health, "");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        health["counters"]["closes"]["token_expired"] == 2
    });
    let writer = hs256(&[], &["b"], now() + 600);
    let (status, _) = request_at(
        server.addr,
        "POST",
        "/api/v1/publish/b",
        r#"{"n":9}"#,
        &bearer(&writer),
    );
    assert_eq!(status, 200);
    let update = read_data_frame(&mut stays);
    assert_eq!(
        update.json()["data"],
        json!({"n": 9}),
        "the long token's socket stays"
    );
}

/// At debug, the log names each connection's `sub` and never shows a
/// token, accepted or refused.
#[test]
fn tokens_never_reach_the_log() {
    let server = server(&[]);
    let token = hs256(&["a"], &[], now() + 600);
    let refused = hs256(&["a"], &[], now() - 10);
    assert_eq!(
        upgrade(&server, &format!("/api/v1/ws/a?token={token}"), "").0,
        101
    );
    assert_eq!(
        upgrade(&server, &format!("/api/v1/ws/a?token={refused}"), "").0,
        401
    );
    wait_until("the subscription is logged", || {
        server.log.lock().unwrap().contains("sub=\"alice\"")
    });
    let log = server.log.lock().unwrap().clone();
    for t in [&token, &refused] {
        for part in t.split('.') {
            assert!(!log.contains(part), "the log shows a token: {log}");
        }
    }
    assert!(!log.contains(SECRET));
}

fn statecast(args: &[&str], secret: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_statecast"));
    command.args(args).env_remove("STATECAST_JWT_SECRET");
    if let Some(secret) = secret {
        command.env("STATECAST_JWT_SECRET", secret);
    }
    command.output().expect("running statecast")
}

/// `statecast token` prints a token the server takes, with the rights it
/// was given; without a secret, or with a short one, it says so (exit 2).
#[test]
fn the_token_subcommand_mints_what_the_server_takes() {
    let out = statecast(
        &[
            "token",
            "--topics",
            "a,adw-state/*",
            "--publish",
            "a",
            "--exp",
            "1h",
            "--sub",
            "alice",
        ],
        Some(SECRET),
    );
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let server = server(&[]);
    assert_eq!(
        upgrade(&server, &format!("/api/v1/ws/a?token={token}"), "").0,
        101
    );
    assert_eq!(
        upgrade(&server, &format!("/api/v1/ws/b?token={token}"), "").0,
        403
    );
    let path = "/api/v1/publish/a";
    assert_eq!(
        request_at(server.addr, "POST", path, "{}", &bearer(&token)).0,
        200
    );
    let missing = statecast(&["token", "--topics", "a"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("STATECAST_JWT_SECRET"));
    let short = statecast(&["token", "--topics", "a"], Some("short"));
    assert_eq!(short.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&short.stderr).contains("short\n"));
    let nothing = statecast(&["token"], Some(SECRET));
    assert_eq!(nothing.status.code(), Some(2));
    let bad = statecast(&["token", "--topics", "a*b"], Some(SECRET));
    assert_eq!(bad.status.code(), Some(2));
}

/// An HS256 key needs 32 bytes (RFC 7518 3.2): 31 stops the server (its
/// configuration read) and
/// `statecast token` (exit 2), naming the variable and the minimum but not
/// the key; 32 is taken by both.
#[test]
fn an_hs256_key_needs_32_bytes() {
    let (short, enough) = ("k".repeat(31), "k".repeat(32));
    for args in [&["token", "--topics", "a"][..], &["--print-config"]] {
        let out = statecast(args, Some(&short));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("STATECAST_JWT_SECRET") && err.contains("32 bytes"),
            "{args:?}: {err}"
        );
        assert!(!err.contains(&short), "{args:?}: {err}");
    }
    let out = statecast(&["token", "--topics", "a"], Some(&enough));
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let server = Binary::start_with(&["--preset", "none", "--topic", "a"], |c| {
        c.env("STATECAST_JWT_SECRET", &enough);
    });
    let path = format!("/api/v1/ws/a?token={}", token.trim());
    assert_eq!(upgrade(&server, &path, "").0, 101);
}

/// A key that cannot be used stops the start with exit 2, naming the
/// file and never showing the key; so do a short secret and two keys.
#[test]
fn unusable_keys_stop_the_start() {
    let listen = ["--listen", "127.0.0.1:0"];
    let with = |args: &[&str], secret: Option<&str>| {
        let all: Vec<&str> = listen.iter().chain(args).copied().collect();
        let out = statecast(&all, secret);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let private = data("ed25519.key");
    let (code, err) = with(&["--jwt-public-key", &private], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&private) && err.contains("private key"),
        "{err}"
    );
    let key_text = std::fs::read_to_string(&private).unwrap();
    assert!(!err.contains(key_text.lines().nth(1).unwrap()), "{err}");
    let rsa = data("rsa.pub");
    let (code, err) = with(&["--jwt-public-key", &rsa], None);
    assert_eq!(code, Some(2));
    assert!(err.contains(&rsa) && err.contains("RSA"), "{err}");
    let (code, err) = with(&[], Some("too-short"));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("STATECAST_JWT_SECRET") && !err.contains("too-short"),
        "{err}"
    );
    let ed = data("ed25519.pub");
    let (code, err) = with(&["--jwt-public-key", &ed], Some(SECRET));
    assert_eq!(code, Some(2));
    assert!(err.contains("both") && !err.contains(SECRET), "{err}");
}
