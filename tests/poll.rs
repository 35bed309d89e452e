//! The polled-URL provider against a small HTTP server started inside the
//! test: change detection, no publish when unchanged, a failing source
//! that recovers, a hung source that times out, an oversized response, a
//! redirect that is not followed.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use statecast::config::PollSpec;
use statecast::providers::poll::{Limits, spawn};
use statecast_testkit::*;

/// What the fake backend answers.
#[derive(Clone)]
enum Reply {
    Json(String),
    Status(u16),
    /// A 302 to this `Location`.
    Redirect(String),
    Hang,
}

struct Backend {
    port: u16,
    reply: Arc<Mutex<Reply>>,
    requests: Arc<AtomicUsize>,
}

impl Backend {
    fn start(reply: Reply) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reply = Arc::new(Mutex::new(reply));
        let requests = Arc::new(AtomicUsize::new(0));
        let (r, n) = (reply.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                // Read the whole request head before answering.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                n.fetch_add(1, Ordering::SeqCst);
                let reply = r.lock().unwrap().clone();
                match reply {
                    Reply::Json(body) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Reply::Status(code) => {
                        let _ = write!(stream, "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\n\r\n");
                    }
                    Reply::Redirect(location) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
                        );
                    }
                    // Keep the connection open and say nothing.
                    Reply::Hang => {
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_secs(5));
                            drop(stream);
                        });
                    }
                }
            }
        });
        Backend {
            port,
            reply,
            requests,
        }
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn poll(server: &TestServer, backend: &Backend, timeout: Duration, max_bytes: usize) {
    let spec = PollSpec {
        topic: "queue".into(),
        url: format!("http://localhost:{}/api/queue", backend.port),
        pointer: None,
        interval: Duration::from_millis(50),
        origin: "--poll".into(),
    };
    spawn(
        spec,
        Limits { timeout, max_bytes },
        server.publisher.clone(),
    )
    .unwrap();
}

fn queue_state(server: &TestServer) -> Value {
    let (_, body) = server.request("GET", "/api/v1/state/queue", "");
    serde_json::from_str(&body).unwrap()
}

/// A changed response is published; an unchanged one is not.
#[test]
fn publishes_on_change_only() {
    let backend = Backend::start(Reply::Json(
        r#"{"phases":[],"total":1,"paused":false}"#.into(),
    ));
    let server = TestServer::start();
    poll(&server, &backend, Duration::from_secs(2), 1 << 20);
    wait_until("the first publish", || queue_state(&server)["seq"] == 1);
    let seen = backend.requests();
    wait_until("three more polls", || backend.requests() >= seen + 3);
    assert_eq!(
        queue_state(&server)["seq"],
        1,
        "unchanged JSON is not republished"
    );
    backend.set(Reply::Json(
        r#"{"phases":[],"total":2,"paused":false}"#.into(),
    ));
    wait_until("the change", || queue_state(&server)["seq"] == 2);
    assert_eq!(queue_state(&server)["data"]["total"], 2);
    assert_eq!(server.health()["status"], "ok");
}

/// A failing source keeps the last snapshot, shows as degraded with its
/// error, and recovers.
#[test]
fn failing_source_recovers() {
    let backend = Backend::start(Reply::Status(500));
    let server = TestServer::start();
    poll(&server, &backend, Duration::from_secs(2), 1 << 20);
    server.wait_health("degraded", |h| h["status"] == "degraded");
    // A failing provider makes /healthz answer 503, the body unchanged.
    let (status, body) = server.request("GET", "/healthz", "");
    assert_eq!(status, 503, "{body}");
    let health = server.health();
    let provider = &health["providers"]["poll queue"];
    assert_eq!(provider["ok"], false);
    assert!(
        provider["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{provider}"
    );
    assert_eq!(queue_state(&server)["seq"], 0, "the default snapshot stays");
    backend.set(Reply::Json(
        r#"{"phases":[],"total":0,"paused":true}"#.into(),
    ));
    wait_until("recovery", || queue_state(&server)["seq"] == 1);
    server.wait_health("ok again", |h| h["status"] == "ok");
}

/// A source that accepts but never answers times out.
#[test]
fn hung_source_times_out() {
    let backend = Backend::start(Reply::Hang);
    let server = TestServer::start();
    poll(&server, &backend, Duration::from_millis(200), 1 << 20);
    server.wait_health("degraded", |h| h["status"] == "degraded");
    let health = server.health();
    let error = health["providers"]["poll queue"]["last_error"]
        .as_str()
        .unwrap();
    assert!(error.contains("within"), "{error}");
}

/// A response over the size limit is refused, not published.
#[test]
fn oversized_response_is_refused() {
    let big = format!(
        r#"{{"phases":[],"total":0,"paused":false,"pad":"{}"}}"#,
        "x".repeat(2048)
    );
    let backend = Backend::start(Reply::Json(big));
    let server = TestServer::start();
    poll(&server, &backend, Duration::from_secs(2), 1024);
    server.wait_health("degraded", |h| h["status"] == "degraded");
    let health = server.health();
    let error = health["providers"]["poll queue"]["last_error"]
        .as_str()
        .unwrap();
    assert!(error.contains("limit"), "{error}");
    assert_eq!(queue_state(&server)["seq"], 0);
}

/// Invalid JSON from the source is an error too.
#[test]
fn invalid_json_is_refused() {
    let backend = Backend::start(Reply::Json("{nope".into()));
    let server = TestServer::start();
    poll(&server, &backend, Duration::from_secs(2), 1 << 20);
    server.wait_health("degraded", |h| h["status"] == "degraded");
    let health = server.health();
    let error = health["providers"]["poll queue"]["last_error"]
        .as_str()
        .unwrap();
    assert!(error.contains("invalid JSON"), "{error}");
}

/// A redirect to another origin is not followed: the poll fails, /healthz
/// says degraded with the status and where it would have gone (its
/// password and query hidden), and the other origin is never asked.
#[test]
fn redirects_are_not_followed() {
    let elsewhere = Backend::start(Reply::Json(
        r#"{"phases":[],"total":9,"paused":false}"#.into(),
    ));
    let backend = Backend::start(Reply::Redirect(format!(
        "http://u:hunter2@127.0.0.1:{}/steal?key=k3y",
        elsewhere.port
    )));
    let server = TestServer::start();
    poll(&server, &backend, Duration::from_secs(2), 1 << 20);
    server.wait_health("degraded", |h| h["status"] == "degraded");
    let health = server.health();
    let error = health["providers"]["poll queue"]["last_error"]
        .as_str()
        .unwrap();
    assert!(
        error.contains("HTTP 302 Found") && error.contains("not followed"),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "http://***@127.0.0.1:{}/steal?***",
            elsewhere.port
        )),
        "{error}"
    );
    assert!(
        !error.contains("hunter2") && !error.contains("k3y"),
        "{error}"
    );
    // A second poll has been answered with the redirect too.
    let seen = backend.requests();
    wait_until("another poll", || backend.requests() > seen);
    assert_eq!(elsewhere.requests(), 0, "the redirect was followed");
    assert_eq!(queue_state(&server)["seq"], 0);

    // A relative Location is shown without its query.
    backend.set(Reply::Redirect("/moved?token=t0k".into()));
    server.wait_health("the relative redirect", |h| {
        h["providers"]["poll queue"]["last_error"]
            .as_str()
            .is_some_and(|e| e.ends_with("(to /moved?***)"))
    });
    assert_eq!(elsewhere.requests(), 0, "the redirect was followed");
}
