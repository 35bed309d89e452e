//! The `--demo` provider: every ADW topic gets moving data in the
//! contract's shapes within a few seconds.

mod util;

use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::{Message, connect};
use util::*;

const TOPICS: &[&str] = &[
    "workflows",
    "routes",
    "workflow-history",
    "adw-monitor",
    "queue",
    "system-status",
    "webhook-status",
    "planned-features",
    "qc-metrics",
];

/// Waits for the first message with `seq` of at least 1 on `topic`.
fn first_publish(server: &TestServer, topic: &str) -> Value {
    let url = format!("ws://{}/api/v1/ws/{topic}", server.addr);
    let (mut socket, _) = connect(url.as_str()).expect("connect");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
    }
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{topic}: no publish in 5 s"
        );
        if let Message::Text(text) = socket.read().expect("reading") {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["seq"].as_u64().unwrap_or(0) >= 1 {
                return message;
            }
        }
    }
}

/// Every ADW topic, adw-state included, gets a publish in the contract's shape.
#[test]
fn demo_feeds_every_adw_topic() {
    let server = TestServer::start();
    statecast::demo::spawn(server.publisher.clone()).unwrap();
    let mut workflows = Value::Null;
    for topic in TOPICS {
        let message = first_publish(&server, topic);
        assert_eq!(
            message["type"],
            format!("{}_update", topic.replace('-', "_"))
        );
        check_shape(topic, &message["data"]);
        if *topic == "workflows" {
            workflows = message["data"].clone();
        }
    }
    let first = &workflows[0];
    assert!(first["issue_number"].is_u64(), "{first}");
    let id = first["adw_id"].as_str().expect("a workflow has an adw_id");
    let state = first_publish(&server, &format!("adw-state/{id}"));
    assert_eq!(state["adw_id"], id);
    assert_eq!(state["data"]["adw_id"], id);
    assert!(
        state["data"]["issue_number"].is_string(),
        "state files store it as a string"
    );
}

/// The demo keeps moving: adw-monitor is republished within seconds.
#[test]
fn demo_keeps_moving() {
    let server = TestServer::start();
    statecast::demo::spawn(server.publisher.clone()).unwrap();
    let first = first_publish(&server, "adw-monitor")["seq"]
        .as_u64()
        .unwrap();
    wait_until("adw-monitor to move on", || {
        let (_, body) = server.request("GET", "/api/v1/state/adw-monitor", "");
        let now: Value = serde_json::from_str(&body).unwrap();
        now["seq"].as_u64().unwrap() > first + 2
    });
}
