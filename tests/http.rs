//! HTTP behaviour over raw sockets: the upgrade, every refusal status, the
//! publish / broadcast / state / health endpoints, keep-alive, pipelining
//! and partial requests; and the README's endpoint table held to the
//! router's.

use std::io::Write;
use std::time::Duration;

use statecast_testkit::*;

/// The 101 for RFC 6455's sample key is byte for byte what §1.3 shows.
#[test]
fn upgrade_answers_the_rfc_sample_key_exactly() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .write_all(upgrade_request("queue").as_bytes())
        .unwrap();
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(status, 101);
    assert_eq!(
        head,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

/// Each refusal has its status and a plain-text reason, and the connection
/// is closed after it.
#[test]
fn refusals_have_precise_statuses() {
    let server = TestServer::start();
    let upgrade = upgrade_request("queue");
    let cases: Vec<(String, u16, &str)> = vec![
        (upgrade_request("nope"), 404, "unknown topic"),
        (upgrade_request("adw-state/bad.id"), 400, "invalid adw_id"),
        (upgrade_request("Bad_Name"), 400, "invalid topic name"),
        (
            upgrade.replace("Upgrade: websocket\r\n", ""),
            400,
            "Upgrade",
        ),
        (
            upgrade.replace(RFC_KEY, "not-a-key"),
            400,
            "Sec-WebSocket-Key",
        ),
        (upgrade.replace("Version: 13", "Version: 8"), 426, "13"),
        (
            format!("GET /x HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000)),
            431,
            "request head",
        ),
        (
            "DELETE /api/v1/publish/queue HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
            405,
            "not allowed",
        ),
        (
            "POST /api/v1/publish/queue HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n\r\n"
                .into(),
            413,
            "limit",
        ),
        (
            "GET /elsewhere HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
            404,
            "no such endpoint",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".into(), 400, "malformed"),
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is refused, a
        // publish included.
        (
            "POST /api/v1/publish/queue HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"phases\":[]}"
                .into(),
            400,
            "Host",
        ),
        (
            "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".into(),
            400,
            "Host",
        ),
    ];
    for (request, status, reason) in cases {
        let mut stream = server.connect();
        stream.write_all(request.as_bytes()).unwrap();
        let (got, head, body) = read_response(&mut stream);
        let body = String::from_utf8(body).unwrap();
        assert_eq!(got, status, "{request:.80}\n{head}{body}");
        assert!(
            body.contains(reason),
            "{status}: body {body:?} lacks {reason:?}"
        );
        assert!(head.contains("text/plain"), "{head}");
        if status == 426 {
            assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
        }
        if status == 405 {
            assert!(head.contains("Allow: POST\r\n"), "{head}");
        }
        expect_eof(&mut stream);
    }
}

/// A publish returns topic, seq and subscriber count, and is visible in
/// the state endpoint exactly as a subscriber would get it.
#[test]
fn publish_then_state() {
    let server = TestServer::start();
    let (status, body) = server.publish("queue", r#"{"phases":[],"total":3,"paused":true}"#);
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"topic":"queue","seq":1,"subscribers":0}"#);
    let (status, body) = server.request("GET", "/api/v1/state/queue", "");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"type":"queue_update","seq":1,"data":{"phases":[],"total":3,"paused":true}}"#
    );
    // An adw-state topic nobody opened still answers with its default.
    let (status, body) = server.request("GET", "/api/v1/state/adw-state/abc", "");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"type":"adw_state_update","adw_id":"abc","seq":0,"data":{"adw_id":"abc"}}"#
    );
}

/// Invalid JSON is refused with the parser's message and position, and a
/// failed publish changes nothing.
#[test]
fn invalid_publish_changes_nothing() {
    let server = TestServer::start();
    let (status, body) = server.publish("queue", r#"{"phases": [1, }"#);
    assert_eq!(status, 400);
    assert!(body.contains("line 1 column"), "{body}");
    let (_, state) = server.request("GET", "/api/v1/state/queue", "");
    assert!(state.contains(r#""seq":0"#), "{state}");
    let (status, _) = server.publish("nope", "{}");
    assert_eq!(status, 404);
    assert_eq!(server.health()["topics"], 9);
}

/// Topics outside the preset have no snapshot until their first publish.
#[test]
fn any_topic_has_no_snapshot_until_published() {
    let server = TestServer::with(|c| c.any_topic = true);
    let (status, body) = server.request("GET", "/api/v1/state/prices", "");
    assert_eq!(status, 404, "{body}");
    assert_eq!(server.publish("prices", "[1,2]").0, 200);
    let (status, body) = server.request("GET", "/api/v1/state/prices", "");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"type":"prices_update","seq":1,"data":[1,2]}"#)
    );
    // A malformed name is called malformed, not unknown.
    let (status, body) = server.publish("Prices", "[]");
    assert_eq!(status, 400);
    assert!(body.starts_with("invalid topic name \"Prices\""), "{body}");
    let (status, body) = server.request("GET", "/api/v1/state/Prices", "");
    assert_eq!(status, 400, "{body}");
}

/// `--max-topics` caps dynamic topics with 503.
#[test]
fn topic_cap_is_enforced() {
    let server = TestServer::with(|c| {
        c.any_topic = true;
        c.max_topics = 11;
    });
    assert_eq!(server.publish("one", "1").0, 200);
    assert_eq!(server.publish("two", "2").0, 200);
    let (status, body) = server.publish("three", "3");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("topic limit"), "{body}");
}

/// Subscribers holding open topics that no one publishes fill only their
/// own share of `--max-topics`: a producer's new topic is still served,
/// and one more placeholder gets 503.
#[test]
fn unpublished_topics_do_not_crowd_out_a_publish() {
    let server = TestServer::with(|c| {
        c.preset = statecast::Preset::None;
        c.any_topic = true;
        c.max_topics = 2;
    });
    let held: Vec<_> = ["ghost1", "ghost2"]
        .into_iter()
        .map(|topic| {
            let mut stream = server.connect();
            stream.write_all(upgrade_request(topic).as_bytes()).unwrap();
            assert_eq!(read_response(&mut stream).0, 101, "{topic}");
            stream
        })
        .collect();
    let mut third = server.connect();
    third
        .write_all(upgrade_request("ghost3").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut third).0, 503, "placeholders are capped");
    let (status, body) = server.publish("prices", "1");
    assert_eq!(status, 200, "{body}");
    drop(held);
}

/// Several requests on one keep-alive connection, sent in one write
/// (pipelined), are answered in order.
#[test]
fn keep_alive_and_pipelining() {
    let server = TestServer::start();
    let mut stream = server.connect();
    let body = r#"{"status":"ok"}"#;
    let pipelined = format!(
        "POST /api/v1/publish/webhook-status HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}\
         GET /api/v1/state/webhook-status HTTP/1.1\r\nHost: localhost\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(pipelined.as_bytes()).unwrap();
    let (s1, _, b1) = read_response(&mut stream);
    let (s2, _, b2) = read_response(&mut stream);
    let (s3, h3, b3) = read_response(&mut stream);
    assert_eq!((s1, s2, s3), (200, 200, 200));
    assert!(String::from_utf8(b1).unwrap().contains(r#""seq":1"#));
    assert!(
        String::from_utf8(b2)
            .unwrap()
            .contains(r#""data":{"status":"ok"}"#)
    );
    assert!(String::from_utf8(b3).unwrap().contains(r#""status":"ok""#));
    assert!(h3.contains("Connection: close"));
    expect_eof(&mut stream);
}

/// A request that arrives a few bytes at a time is handled once complete.
#[test]
fn partial_requests_are_assembled() {
    let server = TestServer::start();
    let mut stream = server.connect();
    let body = "[{}]";
    let request = format!(
        "POST /api/v1/publish/workflows HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\n{body}"
    );
    for chunk in request.as_bytes().chunks(7) {
        stream.write_all(chunk).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (status, _, body) = read_response(&mut stream);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

/// `Expect: 100-continue` gets its interim response; a chunked body is
/// decoded.
#[test]
fn expect_continue_and_chunked_bodies() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .write_all(b"POST /api/v1/publish/routes HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_response(&mut stream);
    assert_eq!(status, 100);
    stream.write_all(b"[]").unwrap();
    let (status, _, _) = read_response(&mut stream);
    assert_eq!(status, 200);

    stream
        .write_all(b"POST /api/v1/publish/workflows HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\n1\r\n]\r\n0\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_response(&mut stream);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (_, state) = server.request("GET", "/api/v1/state/workflows", "");
    assert!(state.contains(r#""seq":1,"data":[{}]"#), "{state}");
}

/// A broadcast needs `type` and `data`, and reports how many got it.
#[test]
fn broadcast_validates_and_counts() {
    let server = TestServer::start();
    let mut a = server.subscribe("queue");
    let mut b = server.subscribe("workflows");
    read_data_frame(&mut a);
    read_data_frame(&mut b);
    let (status, body) = server.request(
        "POST",
        "/api/v1/broadcast",
        r#"{"type":"workflow_completed"}"#,
    );
    assert_eq!(status, 400);
    assert!(body.contains("data"), "{body}");
    let (status, _) = server.request("POST", "/api/v1/broadcast", "nope");
    assert_eq!(status, 400);
    let event =
        r#"{"type":"workflow_completed","data":{"adw_id":"a1b2c3d4","status":"completed"}}"#;
    let (status, body) = server.request("POST", "/api/v1/broadcast", event);
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"type":"workflow_completed","delivered":2}"#);
    assert_eq!(read_data_frame(&mut a).text(), event);
    assert_eq!(read_data_frame(&mut b).text(), event);
    // Events are never retained.
    let (_, state) = server.request("GET", "/api/v1/state/queue", "");
    assert!(!state.contains("workflow_completed"));
}

/// /healthz reports what the issue asks for.
#[test]
fn health_fields() {
    let server = TestServer::start();
    let health = server.health();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["connections"], 0);
    assert_eq!(health["topics"], 9);
    assert!(health["uptime_seconds"].is_u64());
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
}

/// A client that opens a connection and sends half a request is dropped
/// after the handshake timeout with 408.
#[test]
fn slow_request_times_out() {
    let server = TestServer::with(|c| c.handshake_timeout = Duration::from_millis(200));
    let mut stream = server.connect();
    stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let (status, _, _) = read_response(&mut stream);
    assert_eq!(status, 408);
    expect_eof(&mut stream);
    // A connection that sends nothing at all is simply closed.
    let mut idle = server.connect();
    expect_eof(&mut idle);
}

/// Publishing `{}` to an adw-state topic nobody watches forgets the topic
/// (its workflow is gone) and still answers like any publish.
#[test]
fn finished_workflow_topics_are_forgotten() {
    let server = TestServer::start();
    assert_eq!(server.publish("adw-state/gone1", r#"{"a":1}"#).0, 200);
    assert_eq!(server.health()["topics"], 10);
    let (status, body) = server.publish("adw-state/gone1", "{}");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"topic":"adw-state/gone1","seq":2,"subscribers":0}"#
    );
    assert_eq!(server.health()["topics"], 9);
}

/// The bodies that once ended the process (a broadcast whose data the
/// syntax check passed and the full parse refused) or were stored and
/// served raw (on a topic without a schema): each is 400 with the parser's
/// line and column, the server goes on serving, and a subscriber on the
/// same topic never sees them.
#[test]
fn bodies_that_once_ended_the_process_get_400() {
    let server = TestServer::with(|c| c.any_topic = true);
    let mut ws = server.subscribe("queue");
    read_data_frame(&mut ws);
    let deep = "[".repeat(500_000);
    let broadcasts = [
        r#"{"type":"x","data":1e400}"#.to_owned(),
        r#"{"type":"x","data":"\ud800"}"#.to_owned(),
        format!(r#"{{"type":"x","data":{}}}"#, "[".repeat(200)),
    ];
    for body in &broadcasts {
        let (status, reply) = server.request("POST", "/api/v1/broadcast", body);
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply.contains("line 1 column"), "{reply}");
    }
    for body in ["1e400", r#""\ud800""#, deep.as_str(), "{\"a\":1,\"a\":2}"] {
        let (status, reply) = server.request("POST", "/api/v1/publish/no-schema", body);
        assert_eq!(status, 400, "{reply}");
        assert!(reply.contains("column"), "{reply}");
    }
    assert_eq!(server.request("GET", "/api/v1/state/no-schema", "").0, 404);
    // A bare CR between tokens is gone from what is stored and sent.
    let (status, _) = server.request("POST", "/api/v1/publish/no-schema", "{\"a\":\r[1,\r2]}");
    assert_eq!(status, 200);
    assert_eq!(
        server.request("GET", "/api/v1/state/no-schema", "").1,
        r#"{"type":"no_schema_update","seq":1,"data":{"a":[1,2]}}"#
    );
    // Still serving, and the subscriber saw nothing of the refused ones.
    let body = r#"{"phases":[],"paused":true}"#;
    assert_eq!(server.request("POST", "/api/v1/publish/queue", body).0, 200);
    let next = read_data_frame(&mut ws).json();
    assert_eq!(next["seq"], 1, "{next}");
    assert_eq!(server.health()["status"], "ok");
}

/// The README's endpoint table, row by row: the methods, paths and access
/// written in its cells.
fn readme_endpoints() -> Vec<(String, Vec<String>, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    readme
        .lines()
        .skip_while(|line| !line.starts_with("| method | path | access |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let cell = |n: usize| cells.get(n).copied().unwrap_or_default();
            let methods = ticked(cell(0)).join(", ");
            (methods, ticked(cell(1)), cell(2).to_owned())
        })
        .collect()
}

/// The README's endpoint table is the router's: every endpoint in
/// `ENDPOINTS` has its row, with its methods, every path and the access its
/// route requires, and the table has no row for an endpoint the router
/// lacks. A miss names the route.
#[test]
fn the_readme_lists_every_endpoint_with_its_access() {
    use statecast::wire::http::ENDPOINTS;
    let rows = readme_endpoints();
    assert!(
        !rows.is_empty(),
        "no `| method | path | access |` table in README.md"
    );
    let mut wrong = Vec::new();
    for endpoint in ENDPOINTS {
        let route = (endpoint.route)("<topic>".into());
        let paths: Vec<String> = endpoint.paths.iter().map(|p| p.to_string()).collect();
        match rows.iter().find(|(_, row_paths, _)| *row_paths == paths) {
            None => wrong.push(format!(
                "{route:?}: no row for {} {}",
                endpoint.allow,
                paths.join(", ")
            )),
            Some((methods, _, access)) => {
                if methods != endpoint.allow {
                    wrong.push(format!(
                        "{route:?}: the README says methods \"{methods}\", the router \"{}\"",
                        endpoint.allow
                    ));
                }
                if access != endpoint.access() {
                    wrong.push(format!(
                        "{route:?}: the README says access \"{access}\", its route requires \"{}\"",
                        endpoint.access()
                    ));
                }
            }
        }
    }
    for (methods, paths, _) in &rows {
        if !ENDPOINTS.iter().any(|e| e.paths.iter().eq(paths.iter())) {
            wrong.push(format!(
                "README lists {methods} {}, which the router does not serve",
                paths.join(", ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "README.md's endpoint table differs from ENDPOINTS in src/wire/http.rs:\n{}",
        wrong.join("\n")
    );
}
