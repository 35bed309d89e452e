//! The ADW dashboard's contract (CONTRACT.md), checked with a real client
//! library: every endpoint, its message type and data shape, before and
//! after a publish.

use serde_json::{Value, json};
use statecast_testkit::*;
use tungstenite::{Message, connect};

/// The ten endpoints of CONTRACT.md: path, message type, and a check of the
/// top-level shape of `data`.
const ENDPOINTS: &[(&str, &str)] = &[
    ("workflows", "workflows_update"),
    ("routes", "routes_update"),
    ("workflow-history", "workflow_history_update"),
    ("adw-state/a1b2c3d4", "adw_state_update"),
    ("adw-monitor", "adw_monitor_update"),
    ("queue", "queue_update"),
    ("system-status", "system_status_update"),
    ("webhook-status", "webhook_status_update"),
    ("planned-features", "planned_features_update"),
    ("qc-metrics", "qc_metrics_update"),
];

/// Data a producer would publish: the richest valid case of the topic in
/// the contract's case files.
fn sample(topic: &str) -> Value {
    let (valid, _) = contract::Contract::cases(contract::schema_name(topic));
    valid
        .into_iter()
        .max_by_key(|v| v.to_string().len())
        .expect("a valid case")
}

fn next_json(socket: &mut tungstenite::WebSocket<impl std::io::Read + std::io::Write>) -> Value {
    loop {
        match socket.read().expect("reading a message") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Every ADW endpoint greets with a well-formed default, then delivers each
/// publish with the contract's type and shape.
#[test]
fn every_adw_endpoint_follows_the_contract() {
    let server = TestServer::start();
    let mut sockets = Vec::new();
    for (topic, message_type) in ENDPOINTS {
        let url = format!("ws://{}/api/v1/ws/{topic}", server.addr);
        let (mut socket, response) = connect(url.as_str()).expect("connect");
        assert_eq!(response.status(), 101);
        let first = next_json(&mut socket);
        assert_eq!(first["type"], *message_type, "{topic}");
        assert_eq!(first["seq"], 0, "{topic}");
        check_message(topic, &first);
        if topic.starts_with("adw-state/") {
            assert_eq!(first["adw_id"], "a1b2c3d4");
        }
        sockets.push((topic, message_type, socket));
    }
    for (topic, message_type, socket) in &mut sockets {
        let data = sample(topic);
        let (status, body) = server.publish(topic, &data.to_string());
        assert_eq!(status, 200, "{topic}: {body}");
        let update = next_json(socket);
        assert_eq!(update["type"], **message_type, "{topic}");
        assert_eq!(update["seq"], 1, "{topic}");
        assert_eq!(update["data"], data, "{topic}");
        check_message(topic, &update);
        if topic.starts_with("adw-state/") {
            assert_eq!(update["adw_id"], "a1b2c3d4");
        }
    }
    // A one-off event reaches every panel, each of which ignores it.
    let event = json!({"type":"workflow_completed","data":{"queue_id":"q-9f1","feature_id":12,"phase_number":1,"status":"completed","adw_id":"a1b2c3d4","timestamp":"2026-11-20T10:15:02Z"}});
    let (status, _) = server.request("POST", "/api/v1/broadcast", &event.to_string());
    assert_eq!(status, 200);
    for (topic, _, socket) in &mut sockets {
        assert_eq!(next_json(socket), event, "{topic}");
    }
    // A dashboard build that sends JSON pings gets JSON pongs.
    let (_, _, socket) = &mut sockets[0];
    socket
        .send(Message::text(r#"{"type":"ping","timestamp":42}"#))
        .unwrap();
    assert_eq!(next_json(socket), json!({"type":"pong","timestamp":42}));
    // Leaving with a close frame is answered cleanly.
    for (_, _, mut socket) in sockets {
        socket.close(None).unwrap();
        loop {
            match socket.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("unclean close: {e}"),
            }
        }
    }
    server.wait_health("every panel gone", |h| h["connections"] == 0);
}

/// The rows of the markdown table whose first cell is a `/ws/` path:
/// (path, type, default), backticks stripped.
fn topic_rows(markdown: &str) -> Vec<(String, String, String)> {
    markdown
        .lines()
        .filter(|line| line.starts_with("| `/ws/"))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect();
            assert_eq!(cells.len(), 3, "{line}");
            (cells[0].clone(), cells[1].clone(), cells[2].clone())
        })
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// docs/adw.md's topic table is CONTRACT.md's, row for row.
#[test]
fn adw_page_topic_table_matches_the_contract() {
    let contract = topic_rows(&read("contract/CONTRACT.md"));
    assert_eq!(contract.len(), 10, "CONTRACT.md lists ten endpoints");
    assert_eq!(topic_rows(&read("docs/adw.md")), contract);
}

/// What the server holds before any publish is the contract table's safe
/// empty value, with the start time and the adw_id filled in.
#[test]
fn server_defaults_are_the_contract_tables() {
    let server = TestServer::start();
    for (path, message_type, default) in topic_rows(&read("contract/CONTRACT.md")) {
        let topic = path
            .strip_prefix("/ws/")
            .unwrap()
            .replace("{adw_id}", "a1b2c3d4");
        let (status, body) = server.request("GET", &format!("/api/v1/state/{topic}"), "");
        assert_eq!(status, 200, "{topic}: {body}");
        let message: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(message["type"], message_type.as_str(), "{topic}");
        let mut data = message["data"].clone();
        // The placeholders stand for the start time: check its form, then
        // put the placeholder back to compare the rest exactly.
        for (key, placeholder) in [
            ("last_updated", "<server start, ISO 8601>"),
            ("timestamp", "<ISO 8601>"),
        ] {
            if default.contains(placeholder) {
                let time = data[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{topic}.{key}"));
                assert!(
                    time.ends_with('Z') && time.len() == 20,
                    "{topic}.{key}: {time}"
                );
                data[key] = json!(placeholder);
            }
        }
        let expected: Value =
            serde_json::from_str(&default.replace("<adw_id>", "a1b2c3d4")).unwrap();
        assert_eq!(data, expected, "{topic}");
    }
}
