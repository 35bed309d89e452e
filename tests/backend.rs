//! docs/adw.md's recipe beside the ADW backend, run as it is written: the
//! `adw-backend.toml` block is read from docs/adw.md (only its ports
//! changed to free ones), and the real binary runs it against a stand-in
//! that answers the backend's routes in the backend's shapes, with values
//! from the contract's valid cases. Every topic must validate, and move
//! when the backend's answers change.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use statecast_testkit::*;

/// The topics the recipe feeds.
const TOPICS: [&str; 9] = [
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

/// Two different valid values of a topic's `data`, from its case file.
fn two_values(topic: &str) -> [Value; 2] {
    let path = format!("{}/contract/cases/{topic}.json", env!("CARGO_MANIFEST_DIR"));
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut valid: Vec<Value> = cases["valid"].as_array().unwrap().clone();
    // The shapes the backend can produce: an object for these, a list for
    // the lists.
    let object = !matches!(topic, "workflows" | "routes");
    valid.retain(|v| v.is_object() == object && !v.is_null());
    valid.sort_by_key(|v| std::cmp::Reverse(v.to_string().len()));
    let (a, b) = (valid[0].clone(), valid[1].clone());
    assert_ne!(a, b, "{topic}");
    [a, b]
}

/// The backend's answers, by path, for version `v` of every topic.
fn answers(values: &HashMap<&str, [Value; 2]>, v: usize) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for (&topic, pair) in values {
        let value = pair[v].clone();
        match topic {
            "routes" => {
                let total = value.as_array().unwrap().len();
                out.insert(
                    "/api/v1/routes".into(),
                    json!({"routes": value, "total": total}),
                );
            }
            "queue" => {
                let mut queue = value.clone();
                let queue = queue.as_object_mut().unwrap();
                queue.remove("paused");
                out.insert("/api/v1/queue".into(), Value::Object(queue.clone()));
                // `paused` lives in the queue's config, and flips.
                out.insert(
                    "/api/v1/queue/config".into(),
                    json!({"paused": v == 1, "max_concurrent": 3}),
                );
            }
            "planned-features" => {
                out.insert(
                    "/api/v1/planned-features/".into(),
                    value["features"].clone(),
                );
                out.insert(
                    "/api/v1/planned-features/stats".into(),
                    value["stats"].clone(),
                );
            }
            "webhook-status" => {
                out.insert("/webhook-status".into(), value);
            }
            other => {
                out.insert(format!("/api/v1/{other}"), value);
            }
        }
    }
    out
}

/// A stand-in HTTP server answering GETs from `answers[version]`.
fn stand_in(answers: Arc<[HashMap<String, Value>; 2]>, version: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (answers, version) = (answers.clone(), version.clone());
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let reply = match answers[version.load(Ordering::SeqCst)].get(&path) {
                    Some(value) => {
                        let body = value.to_string();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_owned()
                    }
                };
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    port
}

/// docs/adw.md's `adw-backend.toml`, its backend's ports moved to the
/// stand-in's.
fn recipe(backend: u16, webhook: u16) -> String {
    let page = include_str!("../docs/adw.md");
    let block = page
        .split("<!-- recipe: adw-backend.toml -->\n```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/adw.md has the adw-backend.toml recipe");
    assert!(block.contains("127.0.0.1:8000") && block.contains("127.0.0.1:8001"));
    block
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{backend}"))
        .replace("127.0.0.1:8001", &format!("127.0.0.1:{webhook}"))
}

fn state(addr: std::net::SocketAddr, topic: &str) -> Value {
    let (status, body) = request_at(addr, "GET", &format!("/api/v1/state/{topic}"), "", "");
    assert_eq!(status, 200, "{topic}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_adw_recipe_feeds_every_topic_from_the_backend() {
    let values: HashMap<&str, [Value; 2]> = TOPICS.iter().map(|&t| (t, two_values(t))).collect();
    let answers = Arc::new([answers(&values, 0), answers(&values, 1)]);
    let version = Arc::new(AtomicUsize::new(0));
    let backend = stand_in(answers.clone(), version.clone());
    let webhook = stand_in(answers, version.clone());
    let file =
        std::env::temp_dir().join(format!("statecast-adw-backend-{}.toml", std::process::id()));
    std::fs::write(&file, recipe(backend, webhook)).unwrap();
    // The test's own `--listen 127.0.0.1:0` overrides the file's, as the
    // command line always does.
    let server = Binary::start(&["--config", file.to_str().unwrap()]);

    for (v, seq) in [(0, 1), (1, 2)] {
        version.store(v, Ordering::SeqCst);
        for topic in TOPICS {
            let expected = match topic {
                "queue" => {
                    let mut queue = values[topic][v].clone();
                    queue["paused"] = json!(v == 1);
                    queue
                }
                _ => values[topic][v].clone(),
            };
            wait_until(&format!("{topic} from the backend, version {v}"), || {
                let message = state(server.addr, topic);
                message["seq"].as_u64() >= Some(seq) && message["data"] == expected
            });
            check_message(topic, &state(server.addr, topic));
        }
    }
    let _ = std::fs::remove_file(&file);
}
