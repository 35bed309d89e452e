//! Host, origin and token checks over the wire: 421 for a foreign `Host`,
//! 403 for an origin not allowed, 401 without the right token, each from
//! the head before a body byte is read; a public address refused at start
//! without a policy; tokens never logged.

use std::io::Write;

use statecast::config::Secret;
use statecast_testkit::*;

const PUBLISH: &str = "publish-token-0123456789";
const SUBSCRIBE: &str = "subscribe-token-0123456789";

fn upgrade_with(server: &TestServer, target: &str, extra: &str) -> u16 {
    let mut stream = server.connect();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream).0
}

/// A browser page from an origin not on the list is refused before the
/// upgrade; a listed one and a non-browser client are let in.
#[test]
fn origins_not_allowed_get_403() {
    let server = TestServer::with(|c| {
        c.allow_origins = vec!["https://dash.example".into()];
        c.publish_token = Some(Secret::new(PUBLISH));
    });
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
    assert_eq!(
        upgrade_with(&server, ws, "Origin: http://localhost:5173\r\n"),
        101,
        "loopback origins stay allowed beside the listed ones"
    );
    let strict = TestServer::with(|c| c.require_origin = true);
    assert_eq!(upgrade_with(&strict, ws, ""), 403);
    assert_eq!(
        upgrade_with(&strict, ws, "Origin: https://any.example\r\n"),
        403
    );
    assert_eq!(
        upgrade_with(&strict, ws, "Origin: http://localhost:5173\r\n"),
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
        let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        s.write_all(request.as_bytes()).unwrap();
        let mut head = [0u8; 12];
        std::io::Read::read_exact(&mut s, &mut head).unwrap();
        String::from_utf8_lossy(&head[9..12]).into_owned()
    };
    assert_eq!(sse("/api/v1/sse/queue"), "401");
    assert_eq!(sse(&format!("/api/v1/sse/queue?token={SUBSCRIBE}")), "200");
}

/// The header lines of the answer to `request`, lowercased, and its status.
fn head_of(server: &TestServer, request: &str) -> (u16, String) {
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    let (status, head, _) = read_response(&mut stream);
    (status, head.to_ascii_lowercase())
}

/// A page on another allowed origin may read the client module (a module
/// `import` is a CORS request) and every refusal's status, so the
/// client's probe can tell a 401 from no answer; a page on an origin not
/// allowed, or a request without one, gets no such header.
#[test]
fn an_allowed_origin_may_read_the_client_and_its_refusals() {
    let server = TestServer::with(|c| {
        c.allow_origins = vec!["http://dash.example:8000".into()];
        c.publish_token = Some(Secret::new(PUBLISH));
        c.subscribe_token = Some(Secret::new(SUBSCRIBE));
    });
    let get = |path: &str, origin: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{origin}Connection: close\r\n\r\n")
    };
    let allowed = "Origin: http://dash.example:8000\r\n";
    let granted = "access-control-allow-origin: http://dash.example:8000\r\n";
    for path in ["/statecast.mjs", "/statecast.js", "/statecast.d.ts"] {
        let (status, head) = head_of(&server, &get(path, allowed));
        assert_eq!(status, 200, "{path}");
        assert!(head.contains(granted), "{path}: {head}");
    }
    let refusals = [
        get("/api/v1/sse/queue", allowed),
        get("/api/v1/sse?topic=queue", allowed),
        get(&format!("/api/v1/state/nosuch?token={SUBSCRIBE}"), allowed),
        get("/nowhere", allowed),
        format!(
            "GET /api/v1/ws?topic=queue HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{allowed}\r\n"
        ),
    ];
    for (request, status) in refusals.iter().zip([401, 401, 404, 404, 401]) {
        let (got, head) = head_of(&server, request);
        assert_eq!(got, status, "{request}");
        assert!(head.contains(granted), "{request}: {head}");
    }
    let (status, head) = head_of(
        &server,
        &get("/statecast.mjs", "Origin: https://evil.example\r\n"),
    );
    assert_eq!(status, 403);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    let (status, head) = head_of(
        &server,
        &get("/api/v1/sse/queue", "Origin: https://evil.example\r\n"),
    );
    assert_eq!(status, 403);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    let (status, head) = head_of(&server, &get("/statecast.mjs", ""));
    assert_eq!(status, 200);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
}

/// A base64 token (`openssl rand -base64 16`) holds `+`, `/` and `=`,
/// which statecast.js and `URLSearchParams` send escaped: the server
/// decodes `?token=` before comparing, on every read path. Sent raw (as
/// curl sends a pasted token), its `+` still counts as a `+`.
#[test]
fn a_base64_token_sent_escaped_is_accepted() {
    const BASE64: &str = "q1+Zx/8kP0aT3vLm9cWn4g==";
    let server = TestServer::with(|c| c.subscribe_token = Some(Secret::new(BASE64)));
    let published = server.request(
        "POST",
        "/api/v1/publish/queue",
        r#"{"phases":[],"paused":true}"#,
    );
    assert_eq!(published.0, 200, "{}", published.1);
    let escaped = "q1%2BZx%2F8kP0aT3vLm9cWn4g%3D%3D";
    let lower = "q1%2bZx%2f8kP0aT3vLm9cWn4g%3d%3d";
    for token in [escaped, lower, BASE64] {
        assert_eq!(
            upgrade_with(&server, &format!("/api/v1/ws/queue?token={token}"), ""),
            101,
            "{token}"
        );
        assert_eq!(
            upgrade_with(
                &server,
                &format!("/api/v1/ws?topic=queue&token={token}"),
                ""
            ),
            101,
            "{token}"
        );
        for path in [
            "/api/v1/sse/queue",
            "/api/v1/sse?topic=queue",
            "/api/v1/state/queue",
        ] {
            let request = format!(
                "GET {path}{}token={token} HTTP/1.1\r\nHost: localhost\r\n\r\n",
                if path.contains('?') { '&' } else { '?' }
            );
            assert_eq!(head_of(&server, &request).0, 200, "{request}");
        }
    }
    // Decoded as a form would (`+` as a space) it is another token.
    let spaced = "q1%20Zx%2F8kP0aT3vLm9cWn4g%3D%3D";
    assert_eq!(
        upgrade_with(&server, &format!("/api/v1/ws/queue?token={spaced}"), ""),
        401
    );
    assert_eq!(
        upgrade_with(&server, "/api/v1/ws/queue?token=q1%2BZx", ""),
        401
    );
    assert_eq!(upgrade_with(&server, "/api/v1/ws/queue?token=%zz", ""), 401);
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

/// A server others can reach (a public `--allow-host` name here, as behind
/// a proxy) with no read credential warns at start that every topic is
/// readable by anyone, naming `--subscribe-token`; with a subscribe token,
/// or on loopback alone, it does not.
#[test]
fn open_reads_in_a_public_deployment_are_warned_of() {
    let warning = "every topic is readable by anyone";
    let start = |args: &[&str], subscribe: Option<&str>| {
        let server = Binary::start_with(args, |c| {
            c.env("STATECAST_PUBLISH_TOKEN", PUBLISH);
            c.env_remove("STATECAST_SUBSCRIBE_TOKEN");
            if let Some(token) = subscribe {
                c.env("STATECAST_SUBSCRIBE_TOKEN", token);
            }
        });
        // The warning comes before the line that says where it listens,
        // which start waited for; the health check shows the log is live.
        assert_eq!(request_at(server.addr, "GET", "/healthz", "", "").0, 200);
        server.log.lock().unwrap().clone()
    };
    let public = ["--allow-host", "dash.example.com"];
    let log = start(&public, None);
    let line = log.lines().find(|l| l.contains(warning));
    let line = line.unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(
        line.contains("WARN")
            && line.contains("dash.example.com")
            && line.contains("--subscribe-token"),
        "{line}"
    );
    let log = start(&public, Some(SUBSCRIBE));
    assert!(!log.contains(warning), "{log}");
    let log = start(&[], None);
    assert!(!log.contains(warning), "{log}");
}

/// Secrets in URLs: a polled URL's user info and query, and a Redis
/// password holding `@` (URL parsers split at the last one).
const POLL_URL: &str = "http://pollu:pollpass@127.0.0.1:9/api?apikey=pollkey";
const REDIS_URL: &str = "redis://:redis@pass@127.0.0.1:9/0";
const URL_SECRETS: [&str; 4] = ["pollpass", "pollkey", "redis@pass", "pass@127"];

/// The token from the environment guards publishes, and no secret ever
/// reaches the log, even at trace level: no token, right or wrong, and no
/// password or query of a polled URL or of the Redis URL, failing as both
/// do here. Nor do /healthz or --print-config show them.
#[test]
fn tokens_come_from_the_environment_and_never_reach_the_log() {
    let poll = format!("queue={POLL_URL}@100ms");
    let args = [
        "--log-level",
        "trace",
        "--poll",
        &poll,
        "--redis",
        REDIS_URL,
    ];
    let server = Binary::start_with(&args, |c| {
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
        "GET /api/v1/ws/queue?token={wrong} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    ws.write_all(request.as_bytes()).unwrap();
    read_response(&mut ws);
    // Both providers have failed, and said so, by the time health shows it.
    wait_until("the poll and Redis errors", || {
        let h = server.health();
        h["providers"]["poll queue"]["ok"] == false && h["providers"]["redis"]["ok"] == false
    });
    let health = server.request("GET", "/healthz", "").1;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args(["--print-config", "--poll", &poll, "--redis", REDIS_URL])
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
    for secret in [PUBLISH, wrong].into_iter().chain(URL_SECRETS) {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
        assert!(
            !printed.contains(secret),
            "{secret} was printed:\n{printed}"
        );
        assert!(!health.contains(secret), "{secret} in /healthz:\n{health}");
    }
    assert!(
        log.contains("127.0.0.1:9/api?***"),
        "the poll URL is named, redacted:\n{log}"
    );
    assert!(printed.contains("[[poll]] for queue is set"), "{printed}");
}

/// Sends `request` as it is and reads the answer.
fn exchange(server: &TestServer, request: &str) -> (u16, String) {
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut stream);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// One request on each route, with `extra` header lines: the status it got.
fn every_route(server: &TestServer, extra: &str) -> Vec<(&'static str, u16)> {
    let ws = format!(
        "GET /api/v1/ws/queue HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
    };
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let requests = [
        ("websocket", ws),
        ("sse", get("/api/v1/sse/queue")),
        (
            "publish",
            post("/api/v1/publish/queue", r#"{"phases":[],"paused":true}"#),
        ),
        (
            "broadcast",
            post("/api/v1/broadcast", r#"{"type":"x","data":1}"#),
        ),
        ("state", get("/api/v1/state/queue")),
        ("healthz", get("/healthz")),
        ("metrics", get("/metrics")),
        ("page", get("/")),
        ("script", get("/statecast.js")),
        ("module", get("/statecast.mjs")),
        ("types", get("/statecast.d.ts")),
    ];
    requests
        .into_iter()
        .map(|(name, request)| (name, exchange(server, &request).0))
        .collect()
}

/// On loopback, by default, a page from another site is refused on every
/// route, WebSocket and page included; the dashboard's dev server on
/// localhost:5173 and a client that sends no Origin are served. Nothing
/// the refused requests sent changed a topic.
#[test]
fn a_page_from_another_site_is_refused_on_every_route() {
    let server = TestServer::start();
    for (route, status) in every_route(&server, "Origin: http://evil.example\r\n") {
        assert_eq!(status, 403, "{route}");
    }
    // A no-cors fetch: no Origin would be a browser bug, but the browser
    // also says the request is cross-site.
    for (route, status) in every_route(&server, "Sec-Fetch-Site: cross-site\r\n") {
        assert_eq!(status, 403, "{route}");
    }
    let state = server.request("GET", "/api/v1/state/queue", "").1;
    assert!(state.contains(r#""paused":false"#), "unchanged: {state}");
    for extra in [
        "Origin: http://localhost:5173\r\n",
        "Origin: http://127.0.0.1:8002\r\n",
        "",
    ] {
        for (route, status) in every_route(&server, extra) {
            let ok = if route == "websocket" { 101 } else { 200 };
            assert_eq!(status, ok, "{route} with {extra:?}");
        }
    }
    let state = server.request("GET", "/api/v1/state/queue", "").1;
    assert!(state.contains(r#""paused":true"#), "published: {state}");
}

/// DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its
/// own name as `Host`, and is not served; a name given with --allow-host
/// is.
#[test]
fn a_foreign_host_gets_421() {
    let server = TestServer::with(|c| {
        c.allow_hosts = vec!["dash.example.com".into()];
        c.publish_token = Some(Secret::new(PUBLISH));
    });
    let get = |host: &str, path: &str| {
        exchange(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    for path in ["/", "/healthz", "/api/v1/state/queue", "/api/v1/sse/queue"] {
        let (status, body) = get("attacker.example", path);
        assert_eq!(status, 421, "{path}");
        assert!(body.contains("--allow-host"), "{body}");
        assert_eq!(get("attacker.example:8002", path).0, 421, "{path}");
    }
    let ws = format!(
        "GET /api/v1/ws/queue HTTP/1.1\r\nHost: attacker.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(exchange(&server, &ws).0, 421);
    for host in [
        "localhost",
        &server.addr.to_string(),
        "[::1]:8002",
        "dash.example.com",
    ] {
        assert_eq!(get(host, "/healthz").0, 200, "{host}");
    }
}

/// With a subscribe token, every read path needs it: the WebSocket, SSE,
/// `/api/v1/state` and `/metrics`; `/healthz` says only its status
/// without it. `--public-metrics` opens `/metrics` alone.
#[test]
fn every_read_path_needs_the_subscribe_token() {
    let server = TestServer::with(|c| {
        c.subscribe_token = Some(Secret::new(SUBSCRIBE));
        c.publish_token = Some(Secret::new(PUBLISH));
    });
    let read = |path: &str, extra: &str| {
        exchange(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"),
        )
    };
    let bearer = format!("Authorization: Bearer {SUBSCRIBE}\r\n");
    for path in ["/api/v1/state/queue", "/metrics"] {
        assert_eq!(read(path, "").0, 401, "{path}");
        assert_eq!(read(path, &bearer).0, 200, "{path}");
        assert_eq!(
            read(&format!("{path}?token={SUBSCRIBE}"), "").0,
            200,
            "{path}"
        );
    }
    let (status, brief) = read("/healthz", "");
    assert_eq!(status, 200);
    let brief: serde_json::Value = serde_json::from_str(&brief).unwrap();
    assert_eq!(brief, serde_json::json!({"status": "ok"}));
    let (_, full) = read("/healthz", &bearer);
    let full: serde_json::Value = serde_json::from_str(&full).unwrap();
    assert!(
        full["counters"].is_object() && full["providers"].is_object(),
        "{full}"
    );
    let open = TestServer::with(|c| {
        c.subscribe_token = Some(Secret::new(SUBSCRIBE));
        c.public_metrics = true;
    });
    assert_eq!(open.request("GET", "/metrics", "").0, 200);
    assert_eq!(open.request("GET", "/api/v1/state/queue", "").0, 401);
}

/// 401, 403, 404, 405 and 413 come from the head alone: the client has
/// sent none of the body it announced, gets its answer, and the connection
/// is closed.
#[test]
fn refusals_come_before_the_body_and_close() {
    let server = TestServer::with(|c| c.publish_token = Some(Secret::new(PUBLISH)));
    let bearer = format!("Authorization: Bearer {PUBLISH}\r\n");
    let cases = [
        ("POST /api/v1/publish/queue", "", 401),
        (
            "POST /api/v1/publish/queue",
            "Origin: http://evil.example\r\n",
            403,
        ),
        ("POST /api/v1/publish/nope", bearer.as_str(), 404),
        ("POST /nope", "", 404),
        ("POST /healthz", "", 405),
        ("GET /", "", 413),
        ("GET /healthz", "", 413),
    ];
    for (line, extra, status) in cases {
        let mut stream = server.connect();
        let head =
            format!("{line} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: 1000000\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        assert_eq!(read_response(&mut stream).0, status, "{line} {extra}");
        expect_eof(&mut stream);
    }
    // Over the size limit, announced: refused before a byte of it.
    let mut stream = server.connect();
    let head = format!(
        "POST /api/v1/publish/queue HTTP/1.1\r\nHost: localhost\r\n{bearer}Content-Length: 2000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).0, 413);
    expect_eof(&mut stream);
}

/// Trailers past 8 KiB get 431, however they are cut into lines.
#[test]
fn trailers_are_capped() {
    let server = TestServer::start();
    let line = format!("X-Pad: {}\r\n", "a".repeat(200));
    let request = format!(
        "POST /api/v1/publish/qc-metrics HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n{}\r\n",
        line.repeat(50)
    );
    assert_eq!(exchange(&server, &request).0, 431);
}

/// The deployment notes' node behind a proxy, started without a publish
/// token: `--allow-host` with a public name and a loopback bind. It does
/// not start, and says how to guard publishing.
#[test]
fn a_public_name_without_a_publish_credential_does_not_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--allow-host",
            "dash.example.com",
        ])
        .env_remove("STATECAST_PUBLISH_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dash.example.com")
            && err.contains("--publish-token")
            && err.contains("--insecure-publish"),
        "{err}"
    );
}

/// A publish that a proxy passed on (`X-Forwarded-For`, `Forwarded`) to a
/// server with no publish token is refused with 403 naming the way out,
/// and nothing is published; the same publish sent locally is served.
/// This is the request that once rewrote every dashboard through nginx.
#[test]
fn a_proxied_publish_without_a_token_is_refused() {
    let server = TestServer::start();
    let body = r#"{"phases":[],"total":5,"paused":true}"#;
    for proxy in [
        "X-Forwarded-For: 203.0.113.9\r\n",
        "Forwarded: for=203.0.113.9;proto=https\r\n",
    ] {
        let (status, text) = request_at(server.addr, "POST", "/api/v1/publish/queue", body, proxy);
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("--publish-token"), "{text}");
        let (status, _) = request_at(
            server.addr,
            "POST",
            "/api/v1/broadcast",
            r#"{"type":"x","data":1}"#,
            proxy,
        );
        assert_eq!(status, 403);
    }
    let state = server.request("GET", "/api/v1/state/queue", "").1;
    assert!(
        !state.contains(r#""paused":true"#),
        "not published: {state}"
    );
    let (status, _) = request_at(server.addr, "POST", "/api/v1/publish/queue", body, "");
    assert_eq!(status, 200, "a local producer still publishes");
}

/// Off loopback, a DNS-rebinding page is refused as on loopback: a name
/// not given with --allow-host gets 421 on every read path (state,
/// /healthz's details, /metrics), without any token set; the server's own
/// IP literal is served.
#[test]
fn off_loopback_a_foreign_host_gets_421() {
    let server = Binary::start(&[
        "--listen",
        "0.0.0.0:0",
        "--allow-any-origin",
        "--publish-token",
        PUBLISH,
    ]);
    let port = server.addr.port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let get = |host: &str, path: &str| {
        let mut stream = connect_to(addr);
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let (status, _, body) = read_response(&mut stream);
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    for path in ["/api/v1/state/queue", "/healthz", "/metrics", "/"] {
        let (status, body) = get(&format!("rebind.example:{port}"), path);
        assert_eq!(status, 421, "{path}: {body}");
        assert!(body.contains("--allow-host"), "{body}");
    }
    for host in [format!("192.168.7.7:{port}"), format!("127.0.0.1:{port}")] {
        assert_eq!(get(&host, "/api/v1/state/queue").0, 200, "{host}");
    }
}
