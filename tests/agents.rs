//! The agents-directory provider against real temporary directories: new
//! files, partial writes, atomic renames, deletions and a burst of 200
//! workflows, each reaching a raw-socket subscriber, with `workflows` and
//! `adw-monitor` derived as the dashboard did.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use statecast::agents::{AgentsConfig, spawn};
use util::*;

const SCAN: Duration = Duration::from_millis(50);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "statecast-agents-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn start(dir: &Path) -> TestServer {
    let server = TestServer::start();
    spawn(
        AgentsConfig {
            dir: dir.to_owned(),
            scan_interval: SCAN,
            github_repo: Some("acme/app".into()),
        },
        server.publisher.clone(),
    )
    .unwrap();
    server
}

fn write_state(dir: &Path, id: &str, state: &Value) {
    fs::create_dir_all(dir.join(id)).unwrap();
    fs::write(dir.join(id).join("adw_state.json"), state.to_string()).unwrap();
}

fn state_of(server: &TestServer, topic: &str) -> Value {
    let (status, body) = server.request("GET", &format!("/api/v1/state/{topic}"), "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Reads the subscriber's next message and checks it arrived within one
/// scan interval plus a margin for a loaded machine.
#[track_caller]
fn next_within(ws: &mut std::net::TcpStream, since: Instant) -> Value {
    let message = read_data_frame(ws).json();
    let took = since.elapsed();
    assert!(took < SCAN + Duration::from_millis(500), "took {took:?}");
    message
}

/// A new state file reaches its subscriber, and `workflows` lists it with
/// the issue as a number, the newest phase and the GitHub URL.
#[test]
fn new_state_file_is_published_and_derived() {
    let dir = TempDir::new();
    let server = start(&dir.0);
    let mut ws = server.subscribe("adw-state/a1b2c3d4");
    assert_eq!(read_data_frame(&mut ws).json()["data"], json!({}));

    fs::create_dir_all(dir.0.join("a1b2c3d4/adw_plan_iso")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    fs::create_dir_all(dir.0.join("a1b2c3d4/adw_build_iso")).unwrap();
    let state = json!({"adw_id":"a1b2c3d4","issue_number":"142","branch_name":"feat-142"});
    let written = Instant::now();
    write_state(&dir.0, "a1b2c3d4", &state);
    let message = next_within(&mut ws, written);
    assert_eq!(message["adw_id"], "a1b2c3d4");
    assert_eq!(message["data"], state);

    wait_until("workflows to list it", || {
        state_of(&server, "workflows")["data"]
            == json!([{"adw_id":"a1b2c3d4","issue_number":142,"phase":"build",
                       "github_url":"https://github.com/acme/app/issues/142"}])
    });
}

/// An in-place write seen half-done keeps the last good state; the
/// completed file is published.
#[test]
fn partial_write_keeps_last_good_state() {
    let dir = TempDir::new();
    let server = start(&dir.0);
    write_state(&dir.0, "feed01", &json!({"adw_id":"feed01","step":1}));
    wait_until("first state", || {
        state_of(&server, "adw-state/feed01")["seq"] == 1
    });
    let mut ws = server.subscribe("adw-state/feed01");
    assert_eq!(read_data_frame(&mut ws).json()["data"]["step"], 1);

    let path = dir.0.join("feed01/adw_state.json");
    fs::write(&path, r#"{"adw_id":"feed01","st"#).unwrap();
    // Several scans pass over the broken file without publishing.
    std::thread::sleep(SCAN * 4);
    assert_eq!(state_of(&server, "adw-state/feed01")["seq"], 1);
    let completed = Instant::now();
    fs::write(&path, r#"{"adw_id":"feed01","step":2}"#).unwrap();
    let message = next_within(&mut ws, completed);
    assert_eq!(message["data"]["step"], 2);
    assert_eq!(message["seq"], 2);
}

/// A file replaced by atomic rename is picked up like any other change.
#[test]
fn atomic_rename_is_picked_up() {
    let dir = TempDir::new();
    let server = start(&dir.0);
    write_state(&dir.0, "cafe02", &json!({"v":1}));
    wait_until("first state", || {
        state_of(&server, "adw-state/cafe02")["seq"] == 1
    });
    let mut ws = server.subscribe("adw-state/cafe02");
    read_data_frame(&mut ws);
    let tmp = dir.0.join("cafe02/.adw_state.json.tmp");
    fs::write(&tmp, r#"{"v":2}"#).unwrap();
    let renamed = Instant::now();
    fs::rename(&tmp, dir.0.join("cafe02/adw_state.json")).unwrap();
    assert_eq!(next_within(&mut ws, renamed)["data"]["v"], 2);
}

/// A workflow directory that disappears sends its panel back to `{}` and
/// leaves `workflows`.
#[test]
fn deletion_publishes_empty_state() {
    let dir = TempDir::new();
    let server = start(&dir.0);
    write_state(&dir.0, "dead03", &json!({"issue_number":"7"}));
    wait_until("first state", || {
        state_of(&server, "adw-state/dead03")["seq"] == 1
    });
    let mut ws = server.subscribe("adw-state/dead03");
    read_data_frame(&mut ws);
    let removed = Instant::now();
    fs::remove_dir_all(dir.0.join("dead03")).unwrap();
    assert_eq!(next_within(&mut ws, removed)["data"], json!({}));
    wait_until("workflows to drop it", || {
        state_of(&server, "workflows")["data"] == json!([])
    });
}

/// 200 workflows written at once all reach their subscribers.
#[test]
fn burst_of_200_workflows() {
    let dir = TempDir::new();
    let server = start(&dir.0);
    let ids: Vec<String> = (0..200).map(|i| format!("b{i:07x}")).collect();
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
            &dir.0,
            id,
            &json!({"adw_id": id, "issue_number": i.to_string()}),
        );
    }
    for (ws, id) in sockets.iter_mut().zip(&ids) {
        let message = read_data_frame(ws).json();
        assert_eq!(message["data"]["adw_id"], *id);
    }
    let took = written.elapsed();
    assert!(took < SCAN * 2 + Duration::from_secs(1), "took {took:?}");
    wait_until("workflows to list all 200", || {
        state_of(&server, "workflows")["data"]
            .as_array()
            .unwrap()
            .len()
            == 200
    });
}

/// adw-monitor: completed and failed come from the file, running from a
/// live process naming the id, paused from an existing worktree, else queued.
#[test]
fn monitor_statuses_are_derived() {
    let dir = TempDir::new();
    let worktree = dir.0.join("worktree");
    fs::create_dir_all(&worktree).unwrap();
    let mut process = std::process::Command::new("sh")
        .args(["-c", "sleep 30; : run0001"])
        .spawn()
        .unwrap();
    write_state(
        &dir.0,
        "done0001",
        &json!({"status":"completed","issue_number":"1"}),
    );
    write_state(
        &dir.0,
        "fail0001",
        &json!({"status":"failed","issue_number":"2"}),
    );
    write_state(&dir.0, "run0001", &json!({"issue_number":"3"}));
    write_state(
        &dir.0,
        "park0001",
        &json!({"issue_number":"4","worktree_path":worktree}),
    );
    write_state(&dir.0, "wait0001", &json!({"issue_number":"5"}));
    let server = start(&dir.0);
    wait_until("the monitor to see all five", || {
        state_of(&server, "adw-monitor")["data"]["summary"]["total"] == 5
    });
    let monitor = state_of(&server, "adw-monitor")["data"].clone();
    process.kill().unwrap();
    let _ = process.wait();
    assert_eq!(
        monitor["summary"],
        json!({"total":5,"running":1,"completed":1,"failed":1,"paused":1})
    );
    let status = |id: &str| {
        monitor["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["adw_id"] == id)
            .map(|w| (w["status"].clone(), w["is_process_active"].clone()))
            .unwrap()
    };
    assert_eq!(status("run0001"), (json!("running"), json!(true)));
    assert_eq!(status("park0001"), (json!("paused"), json!(false)));
    assert_eq!(status("wait0001"), (json!("queued"), json!(false)));
    assert!(monitor["last_updated"].is_string());
}
