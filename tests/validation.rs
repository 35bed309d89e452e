//! Validated publishes (CONTRACT.md v2): every value that would become an
//! ADW topic's snapshot passes the topic's schema first. A refused value gets
//! 422 with a JSON pointer, changes nothing retained and reaches nobody.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use statecast::PublishError;
use statecast_testkit::contract::{self, Contract};
use statecast_testkit::*;

/// The topic each case file is published to.
fn topic_for(name: &str) -> String {
    if name == "adw-state" {
        "adw-state/a1b2c3d4".into()
    } else {
        name.into()
    }
}

fn state_of(server: &TestServer, topic: &str) -> Value {
    let (status, body) = server.request("GET", &format!("/api/v1/state/{topic}"), "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Every value the contract knows to crash the client is refused with 422
/// and a one-line body naming a JSON pointer; the retained snapshot stays
/// as it was and no frame reaches a subscriber. Every valid value gets 200.
#[test]
fn every_contract_case_is_refused_or_accepted_as_the_contract_says() {
    let server = TestServer::start();
    for name in contract::topics() {
        let topic = topic_for(name);
        let (valid, invalid) = Contract::cases(name);
        let mut ws = server.subscribe(&topic);
        let greeting = read_data_frame(&mut ws).json();
        check_message(&topic, &greeting);
        let before = state_of(&server, &topic);
        for (why, data) in &invalid {
            let (status, body) = server.publish(&topic, &data.to_string());
            assert_eq!(status, 422, "{topic}: accepted a value that {why}: {body}");
            let line = body.trim_end();
            assert!(
                !line.is_empty() && !line.contains('\n'),
                "{topic}: {body:?}"
            );
            assert!(
                line.starts_with('/') || line.starts_with("(root): "),
                "{topic}: no pointer in {line:?}"
            );
            assert_eq!(state_of(&server, &topic), before, "{topic}: {why}");
        }
        for (i, data) in valid.iter().enumerate() {
            let (status, body) = server.publish(&topic, &data.to_string());
            assert_eq!(status, 200, "{topic}: valid[{i}] refused: {body}");
            // The next frame is this publish: nothing refused went out before it.
            let frame = read_data_frame(&mut ws).json();
            assert_eq!(frame["data"], *data, "{topic}: valid[{i}]");
            assert_eq!(frame["seq"], before["seq"].as_u64().unwrap() + i as u64 + 1);
            check_message(&topic, &frame);
        }
    }
}

/// The pointer and the rule of the issue's own example.
#[test]
fn the_error_names_the_pointer_and_the_rule() {
    let server = TestServer::start();
    let (status, body) = server.publish(
        "workflow-history",
        r#"{"workflows":[],"total_count":0,"analytics":{"completed_workflows":0,"failed_workflows":0,"success_rate_percent":0,"workflows_by_model":{},"workflows_by_template":{}}}"#,
    );
    assert_eq!(status, 422);
    assert_eq!(
        body.trim_end(),
        r#"/analytics: required property "total_workflows" missing"#
    );
    let (status, body) = server.publish("queue", "null");
    assert_eq!(
        (status, body.trim_end()),
        (422, "(root): must be object, not null")
    );
}

/// Every preset default validates, carries the start time where the
/// contract wants a timestamp, and adw-state's default names its workflow.
#[test]
fn preset_defaults_validate() {
    let server = TestServer::start();
    for name in contract::topics() {
        let topic = topic_for(name);
        let message = state_of(&server, &topic);
        assert_eq!(message["seq"], 0, "{topic}");
        check_message(&topic, &message);
        for key in ["last_updated", "timestamp"] {
            if let Some(time) = message["data"].get(key) {
                let time = time.as_str().unwrap_or_else(|| panic!("{topic}.{key}"));
                assert!(
                    time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
                    "{topic}.{key}: {time}"
                );
            }
        }
    }
    assert_eq!(
        state_of(&server, "adw-state/a1b2c3d4")["data"],
        json!({"adw_id": "a1b2c3d4"})
    );
    let mut ws = server.subscribe("adw-state/feedbeef");
    assert_eq!(
        read_data_frame(&mut ws).json()["data"],
        json!({"adw_id": "feedbeef"})
    );
}

/// `Publisher` refuses in the producer's thread with a matching error, and
/// nothing is retained.
#[test]
fn publisher_returns_the_schema_error() {
    let server = TestServer::start();
    let err = server
        .publisher
        .publish("queue", &json!({"phases": {}}))
        .unwrap_err();
    match &err {
        PublishError::Invalid { topic, error } => {
            assert_eq!(topic, "queue");
            assert_eq!(error.pointer, "/phases");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(err.to_string().contains("/phases: must be array"), "{err}");
    let err = server
        .publisher
        .publish_json("adw-monitor", "null")
        .unwrap_err();
    assert!(matches!(err, PublishError::Invalid { .. }), "{err}");
    server
        .publisher
        .publish("queue", &json!({"phases": [], "paused": true}))
        .unwrap();
    wait_until("the valid publish", || {
        state_of(&server, "queue")["seq"] == 1
    });
    assert_eq!(state_of(&server, "adw-monitor")["seq"], 0);
}

/// An event typed like a preset update is rendered like one, so it is
/// checked too; any other event is not.
#[test]
fn events_posing_as_updates_are_checked() {
    let server = TestServer::start();
    let mut ws = server.subscribe("queue");
    read_data_frame(&mut ws);
    let (status, body) = server.request(
        "POST",
        "/api/v1/broadcast",
        r#"{"type":"queue_update","data":{"phases":null}}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.starts_with("/phases: "), "{body}");
    let err = server
        .publisher
        .event("adw_state_update", &json!([]))
        .unwrap_err();
    assert!(matches!(err, PublishError::Invalid { .. }), "{err}");
    let (status, _) = server.request(
        "POST",
        "/api/v1/broadcast",
        r#"{"type":"workflow_completed","data":{}}"#,
    );
    assert_eq!(status, 200);
    // The first frame after the refusal is the accepted event.
    assert_eq!(
        read_data_frame(&mut ws).json()["type"],
        "workflow_completed"
    );
}

/// `--no-validate` turns the checks off.
#[test]
fn no_validate_accepts_anything() {
    let server = TestServer::with(|c| c.validate = false);
    let mut ws = server.subscribe("queue");
    read_data_frame(&mut ws);
    let (status, body) = server.publish("queue", "null");
    assert_eq!(status, 200, "{body}");
    // Stored and sent as it is, though the queue's schema would refuse it.
    let (_, state) = server.request("GET", "/api/v1/state/queue", "");
    assert_eq!(state, r#"{"type":"queue_update","seq":1,"data":null}"#);
    assert_eq!(
        read_data_frame(&mut ws).json()["data"],
        serde_json::Value::Null
    );
}

/// `--schema TOPIC=FILE` attaches a schema to any topic.
#[test]
fn a_schema_file_guards_its_topic() {
    let path = std::env::temp_dir().join(format!("statecast-prices-{}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"{"type":"object","required":["bid"],"properties":{"bid":{"type":"number"}}}"#,
    )
    .unwrap();
    let schema_path = path.clone();
    let server = TestServer::with(move |c| {
        c.topics.push("prices".into());
        c.schemas.push(("prices".into(), schema_path));
    });
    let (status, body) = server.publish("prices", r#"{"bid":"high"}"#);
    assert_eq!(
        (status, body.trim_end()),
        (422, "/bid: must be number, not string")
    );
    let (status, _) = server.publish("prices", r#"{"bid":1.5}"#);
    assert_eq!(status, 200);
    std::fs::remove_file(&path).unwrap();
}

/// A schema for a topic the server does not serve, or a broken schema
/// file, stops the server at start with a message naming it.
#[test]
fn unusable_schemas_are_refused_at_start() {
    let config = statecast::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        topics: vec!["prices".into()],
        schemas: vec![("prices".into(), "/nonexistent/prices.json".into())],
        ..Default::default()
    };
    let err = statecast::Server::bind(config.clone())
        .err()
        .expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("prices.json"), "{err}");
    let mut config = config;
    config.schemas = vec![("nope".into(), "/dev/null".into())];
    let err = statecast::Server::bind(config).err().expect("refused");
    assert!(err.to_string().contains("--schema"), "{err}");
}

/// A provider whose source turns invalid keeps the last snapshot, reports
/// the refusal in /healthz, and clears it once the source is valid again.
#[test]
fn a_provider_refusal_shows_in_healthz() {
    let dir = std::env::temp_dir().join(format!("statecast-refusal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("queue.json");
    std::fs::write(&file, r#"{"phases":[],"paused":false}"#).unwrap();
    let server = TestServer::start();
    let spec =
        statecast::config::parse_exec(&format!("queue=cat {}@50ms", file.display())).unwrap();
    let limits = statecast::providers::exec::Limits {
        timeout: Duration::from_secs(5),
        max_bytes: 1 << 20,
    };
    statecast::providers::exec::spawn(spec, limits, server.publisher.clone()).unwrap();
    wait_until("the first snapshot", || {
        state_of(&server, "queue")["seq"] == 1
    });

    let mut out = std::fs::File::create(&file).unwrap();
    out.write_all(b"null").unwrap();
    drop(out);
    server.wait_health("the refusal to show", |h| {
        h["providers"]["exec queue"]["ok"] == false
            && h["providers"]["exec queue"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("(root): must be object"))
    });
    assert_eq!(
        state_of(&server, "queue")["seq"],
        1,
        "nothing retained changed"
    );

    std::fs::write(&file, r#"{"phases":[],"paused":true}"#).unwrap();
    server.wait_health("the provider to recover", |h| {
        h["providers"]["exec queue"]["ok"] == true
            && h["providers"]["exec queue"]["last_error"].is_null()
    });
    assert_eq!(state_of(&server, "queue")["data"]["paused"], true);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A schema file in the temp dir, removed on drop.
struct SchemaFile(std::path::PathBuf);

impl SchemaFile {
    fn new(name: &str, schema: &Value) -> SchemaFile {
        let path = std::env::temp_dir().join(format!(
            "statecast-validation-{}-{name}.json",
            std::process::id()
        ));
        std::fs::write(&path, schema.to_string()).unwrap();
        SchemaFile(path)
    }

    fn arg(&self, topic: &str) -> String {
        format!("{topic}={}", self.0.display())
    }
}

impl Drop for SchemaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A recursive discriminated union whose branches both recurse before
/// they check the discriminator: checking a value n levels deep applies
/// 2^n subschemas.
fn exponential_union() -> Value {
    json!({
        "$defs": {
            "node": {"oneOf": [{"$ref": "#/$defs/a"}, {"$ref": "#/$defs/b"}]},
            "a": {"type": "object",
                  "properties": {"next": {"$ref": "#/$defs/node"}, "kind": {"const": "a"}}},
            "b": {"type": "object",
                  "properties": {"next": {"$ref": "#/$defs/node"}, "kind": {"const": "b"}}}
        },
        "$ref": "#/$defs/node"
    })
}

/// With the real binary: a publish whose check would take 2^40 steps is
/// answered 422 naming the schema's work limit within the test's
/// deadline, the operator is warned, and the server goes on answering
/// (/healthz, a valid publish, a 150,000-item uniqueItems array that
/// pairwise comparison would take 10^10 steps over).
#[test]
fn a_runaway_check_is_refused_with_422_and_the_server_answers_on() {
    let union = SchemaFile::new("union", &exponential_union());
    let unique = SchemaFile::new("unique", &json!({"type": "array", "uniqueItems": true}));
    let args = [
        "--topic",
        "custom",
        "--topic",
        "unique",
        "--schema",
        &union.arg("custom"),
        "--schema",
        &unique.arg("unique"),
        "--max-publish-bytes",
        "4MiB",
    ];
    let server = Binary::start(&args);
    let mut deep = json!({"kind": "a"});
    for _ in 0..40 {
        deep = json!({"next": deep, "kind": "a"});
    }
    // The read timeout of each request is the deadline.
    let (status, body) = server.publish("custom", &deep.to_string());
    assert_eq!(status, 422, "{body}");
    assert!(
        body.starts_with("(root): the schema's work limit was reached"),
        "{body}"
    );
    assert_eq!(server.health()["status"], "ok");
    let (status, body) = server.publish("custom", r#"{"next":{"kind":"b"},"kind":"a"}"#);
    assert_eq!(status, 200, "{body}");
    wait_until("the warning in the log", || {
        server
            .log
            .lock()
            .unwrap()
            .contains("\"custom\" was refused unchecked: its schema's work limit")
    });

    let items: Vec<u32> = (0..150_000).collect();
    let (status, body) = server.publish("unique", &json!(items).to_string());
    assert_eq!(status, 200, "{body}");
    let mut items: Vec<f64> = items.into_iter().map(f64::from).collect();
    items.push(149_999.0);
    let (status, body) = server.publish("unique", &json!(items).to_string());
    assert_eq!(
        (status, body.trim_end()),
        (422, "(root): items 149999 and 150000 are equal")
    );
}

/// With the real binary: `--schema` with a `$ref` loop that never moves
/// into the value stops the server at start, naming the file, the topic
/// and the keyword, where it used to start and then hang on the first
/// publish.
#[test]
fn a_ref_cycle_stops_the_server_at_start() {
    let cycle = SchemaFile::new("cycle", &json!({"anyOf": [{"$ref": "#"}, {"$ref": "#"}]}));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args(["--listen", "127.0.0.1:0", "--topic", "custom"])
        .args(["--schema", &cycle.arg("custom")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed on drop, should it start after all.
    let mut child = KillOnDrop(child);
    let mut status = None;
    wait_until("statecast to exit", || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.unwrap().success(), "{stderr}");
    assert!(
        stderr.contains(&cycle.0.display().to_string())
            && stderr.contains("(for custom)")
            && stderr.contains("/anyOf/1/$ref: a $ref cycle that never moves into the value"),
        "{stderr}"
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
