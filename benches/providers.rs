//! How soon the agents-directory provider (`--agents-dir`, scanning every
//! 50 ms here) brings a change on disk to a subscriber: one state file
//! rewritten again and again, and 200 workflows written at once. These are
//! the figures `tests/agents.rs` once held to wall-clock bounds; the tests
//! now only require that each change comes.
//!
//! `cargo bench --bench providers`; under `cargo test` a shorter run.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use statecast::providers::agents::{AgentsConfig, spawn};
use statecast_testkit::*;

const SCAN: Duration = Duration::from_millis(50);

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let dir = std::env::temp_dir().join(format!("statecast-bench-agents-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let server = TestServer::start();
    spawn(
        AgentsConfig {
            dir: dir.clone(),
            scan_interval: SCAN,
            github_repo: None,
            agent_program: "aider".into(),
            max_bytes: 64 << 10,
        },
        server.publisher.clone(),
    )
    .unwrap();
    println!("| run | figures |");
    println!("|---|---|");
    changes(&server, &dir, if full { 200 } else { 20 });
    burst(&server, &dir, 200);
    let _ = fs::remove_dir_all(&dir);
}

fn write_state(dir: &Path, id: &str, state: &serde_json::Value) {
    fs::create_dir_all(dir.join(id)).unwrap();
    // Through a rename, so a scan never reads a half-written file.
    let tmp = dir.join(id).join(".adw_state.json.tmp");
    fs::write(&tmp, state.to_string()).unwrap();
    fs::rename(&tmp, dir.join(id).join("adw_state.json")).unwrap();
}

/// One workflow's state rewritten `n` times, each after the last arrived:
/// from the rename to the subscriber's frame.
fn changes(server: &TestServer, dir: &Path, n: usize) {
    let id = "a1b2c3d4";
    let mut ws = server.subscribe(&format!("adw-state/{id}"));
    read_data_frame(&mut ws);
    let mut took = Vec::with_capacity(n);
    for step in 0..n {
        let written = Instant::now();
        write_state(dir, id, &json!({"adw_id": id, "step": step}));
        let message = read_data_frame(&mut ws).json();
        took.push(written.elapsed());
        assert_eq!(message["data"]["step"], step);
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| one file rewritten {n} times | to the subscriber: median {:.1} ms, max {:.1} ms (scan interval {} ms) |",
        ms(took[n / 2]),
        ms(took[n - 1]),
        SCAN.as_millis()
    );
}

/// `n` new workflows written at once, each with its subscriber: from the
/// first write to the last subscriber's frame.
fn burst(server: &TestServer, dir: &Path, n: usize) {
    let ids: Vec<String> = (0..n).map(|i| format!("b{i:07x}")).collect();
    let mut sockets: Vec<_> = ids
        .iter()
        .map(|id| {
            let mut ws = server.subscribe(&format!("adw-state/{id}"));
            read_data_frame(&mut ws);
            ws
        })
        .collect();
    let written = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        write_state(
            dir,
            id,
            &json!({"adw_id": id, "issue_number": i.to_string()}),
        );
    }
    for (ws, id) in sockets.iter_mut().zip(&ids) {
        assert_eq!(read_data_frame(ws).json()["data"]["adw_id"], *id);
    }
    println!(
        "| {n} workflows written at once | all at their subscribers {:.0} ms after the first write |",
        written.elapsed().as_secs_f64() * 1e3
    );
}
