//! What an operator sees in the log: a start line with the URLs and the
//! providers, and refusals aggregated per reason per `--stats-interval`
//! rather than a line per client.

use statecast_testkit::*;

/// Five unknown paths and two refused publishes make two lines, with
/// their counts, in the next summary; the start line names the provider.
#[test]
fn refusals_are_logged_once_per_reason_per_interval() {
    let server = Binary::start(&[
        "--stats-interval",
        "1s",
        "--exec",
        "webhook-status=echo {}@1h",
    ]);
    for _ in 0..5 {
        assert_eq!(server.request("GET", "/nope", "").0, 404);
    }
    for _ in 0..2 {
        assert_eq!(
            server.request("POST", "/api/v1/publish/queue", "null").0,
            422
        );
    }
    wait_until("a stats line", || {
        server
            .log
            .lock()
            .unwrap()
            .contains("refused in the last 1s: 2 x 422")
    });
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.matches("404 Not Found").count(), 1, "{log}");
    assert!(
        log.contains("refused in the last 1s: 5 x 404 Not Found"),
        "{log}"
    );
    assert!(log.contains("stats: "), "{log}");
    let start = log
        .lines()
        .find(|l| l.contains("WebSockets at ws://"))
        .expect("a start line");
    assert!(
        start.contains(&format!("http://{}/healthz", server.addr)),
        "{start}"
    );
    assert!(
        start.contains("exec webhook-status <- `echo {}`"),
        "{start}"
    );
}

/// Whether a GET of `path` on a new connection answers 200: no, when the
/// connection is refused or reset, or the status is another.
fn answers_200(addr: std::net::SocketAddr, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_end(&mut answer).is_ok()
        && answer.starts_with(b"HTTP/1.1 200")
}

/// A load balancer's probe: `/readyz` answers 200 `{"status":"ready"}`
/// while `/healthz` is 503 for a polled URL that is down and a Redis that
/// cannot be reached, so one failing source does not take every node out
/// of the pool; once SIGTERM starts the drain it no longer answers 200.
#[test]
fn readyz_follows_the_server_not_its_providers() {
    let dead = free_port();
    let poll = format!("system-status=http://127.0.0.1:{dead}/status@100ms");
    let redis = format!("redis://127.0.0.1:{dead}/0");
    let server = Binary::start(&["--poll", &poll, "--redis", &redis, "--drain", "10m"]);
    wait_until("/healthz degraded by the poll and Redis", || {
        server.request("GET", "/healthz", "").0 == 503
    });
    let health = server.health();
    assert_eq!(health["status"], "degraded", "{health}");
    let (code, body) = server.request("GET", "/readyz", "");
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ready"}"#));

    // A subscriber keeps the drain going for its ten minutes.
    let mut subscriber = server.subscribe("queue");
    read_frame(&mut subscriber);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("/readyz no longer 200 while draining", || {
        !answers_200(server.addr, "/readyz")
    });
}
