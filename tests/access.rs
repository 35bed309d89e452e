//! Origin and token checks over the wire: 403 for an origin not allowed,
//! 401 without the right token, both before anything else happens; a
//! public address refused at start without a policy; tokens never logged.

mod util;

use std::io::Write;

use statecast::config::Secret;
use util::*;

const PUBLISH: &str = "publish-token-0123456789";
const SUBSCRIBE: &str = "subscribe-token-0123456789";

fn upgrade_with(server: &TestServer, target: &str, extra: &str) -> u16 {
    let mut stream = server.connect();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream).0
}

/// A browser page from an origin not on the list is refused before the
/// upgrade; a listed one and a non-browser client are let in.
#[test]
fn origins_not_allowed_get_403() {
    let server = TestServer::with(|c| c.allow_origins = vec!["https://dash.example".into()]);
    let ws = "/api/v1/ws/queue";
    assert_eq!(
        upgrade_with(&server, ws, "Origin: https://evil.example\r\n"),
        403
    );
    assert_eq!(
        upgrade_with(&server, ws, "Origin: https://dash.example\r\n"),
        101
    );
    assert_eq!(
        upgrade_with(&server, ws, ""),
        101,
        "no Origin: not a browser"
    );
    let strict = TestServer::with(|c| c.require_origin = true);
    assert_eq!(upgrade_with(&strict, ws, ""), 403);
    assert_eq!(
        upgrade_with(&strict, ws, "Origin: https://any.example\r\n"),
        101
    );
}

/// Publishing and broadcasting need the publish token; nothing changes
/// without it.
#[test]
fn publishes_need_the_token() {
    let server = TestServer::with(|c| c.publish_token = Some(Secret::new(PUBLISH)));
    let body = r#"{"phases":[],"paused":true}"#;
    let publish = "/api/v1/publish/queue";
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(request_at(server.addr, "POST", publish, body, "").0, 401);
    assert_eq!(
        request_at(
            server.addr,
            "POST",
            publish,
            body,
            &bearer("wrong-token-0123456789")
        )
        .0,
        401
    );
    let (status, _) = server.request("GET", "/api/v1/state/queue", "");
    assert_eq!(status, 200);
    assert_eq!(
        server.health()["counters"]["publishes"],
        0,
        "a refused publish changes nothing"
    );
    assert_eq!(
        request_at(server.addr, "POST", publish, body, &bearer(PUBLISH)).0,
        200
    );
    let event = r#"{"type":"x","data":{}}"#;
    assert_eq!(
        request_at(server.addr, "POST", "/api/v1/broadcast", event, "").0,
        401
    );
    assert_eq!(
        request_at(
            server.addr,
            "POST",
            "/api/v1/broadcast",
            event,
            &bearer(PUBLISH)
        )
        .0,
        200
    );
}

/// With a subscribe token, a WebSocket needs it as `?token=` or as a
/// bearer header.
#[test]
fn subscribing_needs_the_subscribe_token() {
    let server = TestServer::with(|c| c.subscribe_token = Some(Secret::new(SUBSCRIBE)));
    assert_eq!(upgrade_with(&server, "/api/v1/ws/queue", ""), 401);
    assert_eq!(
        upgrade_with(&server, "/api/v1/ws/queue?token=nope", ""),
        401
    );
    let ok = format!("/api/v1/ws/queue?token={SUBSCRIBE}");
    assert_eq!(upgrade_with(&server, &ok, ""), 101);
    let header = format!("Authorization: Bearer {SUBSCRIBE}\r\n");
    assert_eq!(upgrade_with(&server, "/api/v1/ws/queue", &header), 101);
    // EventSource cannot set headers: SSE takes the token in the query.
    let sse = |target: &str| {
        let mut s = server.connect();
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
        s.write_all(request.as_bytes()).unwrap();
        let mut head = [0u8; 12];
        std::io::Read::read_exact(&mut s, &mut head).unwrap();
        String::from_utf8_lossy(&head[9..12]).into_owned()
    };
    assert_eq!(sse("/api/v1/sse/queue"), "401");
    assert_eq!(sse(&format!("/api/v1/sse/queue?token={SUBSCRIBE}")), "200");
}

/// On an address other hosts can reach, the server will not start without
/// an origin policy and a publish policy, and says which flag to add.
#[test]
fn a_public_address_needs_a_policy() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-origin"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args(["--listen", "0.0.0.0:0", "--allow-any-origin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--publish-token") && err.contains("--insecure-publish"),
        "{err}"
    );
}

/// The token from the environment guards publishes, and no token, right
/// or wrong, ever reaches the log, even at debug level.
#[test]
fn tokens_come_from_the_environment_and_never_reach_the_log() {
    let server = Binary::start_with(&["--log-level", "trace"], |c| {
        c.env("STATECAST_PUBLISH_TOKEN", PUBLISH);
    });
    let body = r#"{"phases":[]}"#;
    let wrong = "wrong-token-abcdefghijklmnop";
    let (status, reply) = request_at(
        server.addr,
        "POST",
        "/api/v1/publish/queue",
        body,
        &format!("Authorization: Bearer {wrong}\r\n"),
    );
    assert_eq!(status, 401);
    assert!(!reply.contains(wrong));
    let (status, _) = request_at(
        server.addr,
        "POST",
        "/api/v1/publish/queue",
        body,
        &format!("Authorization: Bearer {PUBLISH}\r\n"),
    );
    assert_eq!(status, 200);
    let mut ws = server.connect();
    let request = format!(
        "GET /api/v1/ws/queue?token={wrong} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    ws.write_all(request.as_bytes()).unwrap();
    read_response(&mut ws);
    server.health();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args(["--print-config"])
        .env("STATECAST_PUBLISH_TOKEN", PUBLISH)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("# publish_token is set; not printed"),
        "{printed}"
    );
    // Every connection above was logged as it came: the log is complete
    // up to here once it shows all four.
    wait_until("the log to catch up", || {
        server.log.lock().unwrap().matches("accepted").count() >= 4
    });
    let log = server.log.lock().unwrap().clone();
    for token in [PUBLISH, wrong] {
        assert!(!log.contains(token), "a token reached the log:\n{log}");
        assert!(!printed.contains(token), "a token was printed");
    }
}
