//! The `--demo` provider: everything it sends passes the contract, and over
//! a few minutes of its story every state the panels can show appears.

use std::collections::{BTreeSet, HashMap};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use statecast::providers::demo::{Demo, Output};
use statecast_testkit::contract::Contract;
use statecast_testkit::*;

/// What a run of the story showed, for the coverage checks.
#[derive(Default)]
struct Seen {
    queue_statuses: BTreeSet<String>,
    queue_paused: bool,
    /// Services that were degraded or in error, by key.
    unhealthy_services: BTreeSet<String>,
    monitor_statuses: BTreeSet<String>,
    webhook_failures: bool,
    routes: BTreeSet<String>,
    history_failed: bool,
    history_completed: bool,
    adw_state_phases: BTreeSet<String>,
    events: usize,
}

impl Seen {
    fn note(&mut self, topic: &str, data: &Value) {
        match topic {
            "queue" => {
                for phase in data["phases"].as_array().unwrap() {
                    assert!(phase["phase_data"]["title"].is_string(), "{phase}");
                    let status = phase["status"].as_str().unwrap();
                    self.queue_statuses.insert(status.into());
                }
                self.queue_paused |= data["paused"] == true;
            }
            "system-status" => {
                let services = data["services"].as_object().unwrap();
                let mut keys: Vec<&str> = services.keys().map(String::as_str).collect();
                keys.sort_unstable();
                let drawn = [
                    "backend_api",
                    "database",
                    "webhook",
                    "frontend",
                    "cloudflare_tunnel",
                    "github_webhook",
                ];
                let mut sorted = drawn.to_vec();
                sorted.sort_unstable();
                assert_eq!(keys, sorted, "exactly the six drawn services");
                for (key, service) in services {
                    if service["status"] != "healthy" {
                        self.unhealthy_services.insert(key.clone());
                    }
                }
            }
            "adw-monitor" => {
                for w in data["workflows"].as_array().unwrap() {
                    self.monitor_statuses
                        .insert(w["status"].as_str().unwrap().into());
                }
            }
            "webhook-status" => {
                self.webhook_failures |= data["recent_failures"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
            }
            "routes" => {
                self.routes.insert(data.to_string());
            }
            "workflow-history" => {
                for item in data["workflows"].as_array().unwrap() {
                    self.history_failed |= item["status"] == "failed";
                    self.history_completed |= item["status"] == "completed";
                }
                assert!(data["analytics"].is_object(), "analytics in full");
            }
            t if t.starts_with("adw-state/") => {
                if let Some(phase) = data["current_phase"].as_str() {
                    self.adw_state_phases.insert(phase.into());
                }
            }
            _ => {}
        }
    }
}

/// Every value the demo makes in a long run passes the topic's schema, and
/// the run shows every state CONTRACT.md's panels can show.
#[test]
fn the_demo_story_validates_and_shows_every_state() {
    let contract = Contract::get();
    let mut demo = Demo::new(0x5eed);
    let mut seen = Seen::default();
    let mut outputs = demo.initial();
    // 1,500 steps: ten minutes of the story at its real pace.
    for _ in 0..1500 {
        outputs.extend(demo.step());
    }
    for output in &outputs {
        match output {
            Output::Snapshot(topic, data) => {
                if let Err(e) = contract.check_data(topic, data) {
                    panic!("{topic}: {e}\n{data}");
                }
                seen.note(topic, data);
            }
            Output::Event(kind, _) => {
                assert!(!kind.ends_with("_update"), "{kind}");
                seen.events += 1;
            }
        }
    }
    for status in ["queued", "ready", "running", "completed"] {
        assert!(seen.queue_statuses.contains(status), "queue never {status}");
    }
    assert!(
        seen.queue_statuses.contains("failed") || seen.queue_statuses.contains("blocked"),
        "no queue phase ever failed or blocked: {:?}",
        seen.queue_statuses
    );
    assert!(seen.queue_paused, "the queue never paused");
    assert!(
        seen.unhealthy_services.len() >= 2,
        "{:?}",
        seen.unhealthy_services
    );
    for status in ["running", "paused", "failed"] {
        assert!(
            seen.monitor_statuses.contains(status),
            "no {status} workflow"
        );
    }
    assert!(seen.webhook_failures, "no webhook failure");
    assert!(seen.routes.len() >= 2, "the routes list never changed");
    assert!(seen.history_completed && seen.history_failed);
    let steps = [
        "ingestion",
        "preflight",
        "plan",
        "validate",
        "build",
        "lint",
        "test",
        "review",
        "doc",
        "ship",
    ];
    assert!(
        seen.adw_state_phases
            .iter()
            .all(|p| steps.contains(&p.as_str())),
        "{:?}",
        seen.adw_state_phases
    );
    assert!(
        seen.adw_state_phases.len() >= 6,
        "{:?}",
        seen.adw_state_phases
    );
    assert!(seen.events > 0, "no workflow completed");
}

/// adw-state start times are recent: within the 10 minutes after which
/// the dashboard shows a step as "(Stuck)" (CONTRACT.md), and not in the
/// future. The times are RFC 3339 in one fixed form, so they compare as
/// strings in time order.
#[test]
fn demo_start_times_are_recent() {
    use statecast::topic::adw::rfc3339;
    use std::time::SystemTime;

    let mut demo = Demo::new(7);
    let mut seen = 0;
    for output in demo.initial().iter().chain(demo.step().iter()) {
        if let Output::Snapshot(topic, data) = output
            && topic.starts_with("adw-state/")
        {
            let start = data["start_time"].as_str().expect("a start_time");
            let now = SystemTime::now();
            let stuck = rfc3339(now - Duration::from_secs(10 * 60));
            let later = rfc3339(now + Duration::from_secs(1));
            assert!(
                stuck.as_str() < start && start <= later.as_str(),
                "{start} is not within ({stuck}, {later}]"
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "the demo published adw-state");
}

/// Reads every frame the sockets have within `window`, checking each one
/// against the contract; returns the last data per topic.
fn drain(
    sockets: &mut [(String, TcpStream)],
    window: Duration,
    last: &mut HashMap<String, Value>,
) -> usize {
    let start = Instant::now();
    let mut frames = 0;
    while start.elapsed() < window {
        for (topic, ws) in sockets.iter_mut() {
            ws.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            let mut peek = [0u8; 1];
            if ws.peek(&mut peek).is_err() {
                continue;
            }
            ws.set_read_timeout(Some(DEADLINE)).unwrap();
            let frame = read_data_frame(ws).json();
            if frame["type"] == "workflow_completed" {
                continue;
            }
            check_message(topic, &frame);
            last.insert(topic.clone(), frame["data"].clone());
            frames += 1;
        }
    }
    frames
}

/// Over the wire, with the demo's clock at 10 ms a tick (three seconds are
/// a minute of the story): every frame on every topic, adw-state included,
/// passes the envelope and the topic's schema, until more than 40 frames,
/// four workflows and every fixed topic have been seen.
#[test]
fn every_message_the_demo_sends_validates() {
    let server = TestServer::start();
    statecast::providers::demo::spawn_with(server.publisher.clone(), Duration::from_millis(10))
        .unwrap();
    let fixed: Vec<&str> = statecast::topic::adw::TOPICS
        .iter()
        .map(|t| t.name)
        .collect();
    let mut sockets: Vec<(String, TcpStream)> = fixed
        .iter()
        .map(|t| (t.to_string(), server.subscribe(t)))
        .collect();
    let mut last = HashMap::new();
    let mut frames = 0;
    let mut watched = BTreeSet::new();
    // Until enough of the story has gone by, however long the machine
    // takes to play it: the demo's clock is its ticks, not the wall's.
    let start = Instant::now();
    let enough = |frames: usize, watched: &BTreeSet<String>, last: &HashMap<String, Value>| {
        frames > 40 && watched.len() >= 4 && fixed.iter().all(|t| last.contains_key(*t))
    };
    while !enough(frames, &watched, &last) {
        assert!(
            start.elapsed() < DEADLINE,
            "after {DEADLINE:?}: {frames} frames, workflows {watched:?}, topics seen {:?}",
            last.keys().collect::<BTreeSet<_>>()
        );
        frames += drain(&mut sockets, Duration::from_millis(500), &mut last);
        // Follow the workflows as they come, as a dashboard expanding a
        // queue card would.
        if let Some(Value::Array(workflows)) = last.get("workflows") {
            for w in workflows {
                let topic = format!("adw-state/{}", w["adw_id"].as_str().unwrap());
                if watched.insert(topic.clone()) {
                    sockets.push((topic.clone(), server.subscribe(&topic)));
                }
            }
        }
    }
}
