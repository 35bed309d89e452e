//! The agents-directory provider against real temporary directories: new
//! files, partial writes, atomic renames, deletions and a burst of 200
//! workflows, each reaching a raw-socket subscriber, with `workflows` and
//! `adw-monitor` derived as the dashboard did.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use statecast::providers::agents::{AgentsConfig, spawn};
use statecast_testkit::*;

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
            agent_program: "aider".into(),
            max_bytes: 64 << 10,
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

/// The subscriber's next message: it must come within the socket's read
/// timeout, the kit's `DEADLINE`, many scan intervals even on a loaded
/// machine. How soon it comes is measured in `benches/providers.rs`.
#[track_caller]
fn next_message(ws: &mut std::net::TcpStream) -> Value {
    read_data_frame(ws).json()
}

/// A new state file reaches its subscriber, and `workflows` lists it with
/// the issue as a number, the GitHub URL and the phase of the original
/// server: the last of plan, build, test, review, document, ship that has a
/// directory, not the newest directory.
#[test]
fn new_state_file_is_published_and_derived() {
    let dir = TempDir::new();
    let server = start(&dir.0);
    let mut ws = server.subscribe("adw-state/a1b2c3d4");
    assert_eq!(
        read_data_frame(&mut ws).json()["data"],
        json!({"adw_id": "a1b2c3d4"})
    );

    fs::create_dir_all(dir.0.join("a1b2c3d4/adw_build_iso")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // Created last, so the newest: the phase is still build.
    fs::create_dir_all(dir.0.join("a1b2c3d4/adw_plan_iso")).unwrap();
    let state = json!({"adw_id":"a1b2c3d4","issue_number":"142","branch_name":"feat-142"});
    write_state(&dir.0, "a1b2c3d4", &state);
    let message = next_message(&mut ws);
    assert_eq!(message["adw_id"], "a1b2c3d4");
    assert_eq!(message["data"], state);
    check_message("adw-state/a1b2c3d4", &message);

    wait_until("workflows to list it", || {
        state_of(&server, "workflows")["data"]
            == json!([{"adw_id":"a1b2c3d4","issue_number":142,"phase":"build",
                       "github_url":"https://github.com/acme/app/issues/142"}])
    });
    check_message("workflows", &state_of(&server, "workflows"));
}

/// A workflow without directories is in plan; one whose issue number is
/// not an integer is left out of `workflows` instead of sent with null.
#[test]
fn phase_defaults_to_plan_and_bad_issue_numbers_are_skipped() {
    let dir = TempDir::new();
    write_state(&dir.0, "fresh001", &json!({"issue_number": 7}));
    write_state(&dir.0, "bad00001", &json!({"issue_number": "abc"}));
    write_state(&dir.0, "float001", &json!({"issue_number": 9.5}));
    for phase in ["plan", "build", "test", "review", "document", "ship"] {
        fs::create_dir_all(dir.0.join(format!("shipped1/adw_{phase}_iso"))).unwrap();
    }
    write_state(&dir.0, "shipped1", &json!({"issue_number": "8"}));
    let server = start(&dir.0);
    wait_until("the monitor to see all four", || {
        state_of(&server, "adw-monitor")["data"]["summary"]["total"] == 4
    });
    wait_until("workflows", || {
        state_of(&server, "workflows")["data"]
            == json!([{"adw_id":"fresh001","issue_number":7,"phase":"plan",
                       "github_url":"https://github.com/acme/app/issues/7"},
                      {"adw_id":"shipped1","issue_number":8,"phase":"ship",
                       "github_url":"https://github.com/acme/app/issues/8"}])
    });
}

/// A state file the adw-state schema refuses (`all_adws` a string crashes
/// the client's `.join`) is not forwarded: the last good state stays, and
/// /healthz reports the refusal until the file is fixed.
#[test]
fn a_state_file_the_schema_refuses_keeps_the_last_good_state() {
    let dir = TempDir::new();
    let server = start(&dir.0);
    write_state(
        &dir.0,
        "good0001",
        &json!({"adw_id":"good0001","all_adws":["adw_plan_iso"]}),
    );
    wait_until("first state", || {
        state_of(&server, "adw-state/good0001")["seq"] == 1
    });
    server.wait_health("the provider to be healthy", |h| {
        h["providers"]["agents"]["ok"] == true
    });
    write_state(
        &dir.0,
        "good0001",
        &json!({"adw_id":"good0001","all_adws":"adw_plan_iso"}),
    );
    server.wait_health("the refusal to show", |h| {
        h["providers"]["agents"]["ok"] == false
            && h["providers"]["agents"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("good0001") && e.contains("/all_adws"))
    });
    let kept = state_of(&server, "adw-state/good0001");
    assert_eq!(kept["seq"], 1);
    assert_eq!(kept["data"]["all_adws"], json!(["adw_plan_iso"]));

    write_state(
        &dir.0,
        "good0001",
        &json!({"adw_id":"good0001","all_adws":["a","b"]}),
    );
    server.wait_health("the provider to recover", |h| {
        h["providers"]["agents"]["ok"] == true && h["providers"]["agents"]["last_error"].is_null()
    });
    assert_eq!(
        state_of(&server, "adw-state/good0001")["data"]["all_adws"],
        json!(["a", "b"])
    );
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
    // A scan has read the broken file once the provider reports it; it
    // published nothing.
    server.wait_health("the broken file to be reported", |h| {
        h["providers"]["agents"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("feed01"))
    });
    assert_eq!(state_of(&server, "adw-state/feed01")["seq"], 1);
    fs::write(&path, r#"{"adw_id":"feed01","step":2}"#).unwrap();
    let message = next_message(&mut ws);
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
    fs::rename(&tmp, dir.0.join("cafe02/adw_state.json")).unwrap();
    assert_eq!(next_message(&mut ws)["data"]["v"], 2);
}

/// A workflow directory that disappears sends its panel back to its
/// default, `{"adw_id": id}`, and leaves `workflows`.
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
    fs::remove_dir_all(dir.0.join("dead03")).unwrap();
    assert_eq!(next_message(&mut ws)["data"], json!({"adw_id": "dead03"}));
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
    wait_until("workflows to list all 200", || {
        state_of(&server, "workflows")["data"]
            .as_array()
            .unwrap()
            .len()
            == 200
    });
}

/// A stand-in for the agent program: a script named `aider` that sleeps,
/// started with the workflow's id among its arguments.
fn start_agent(dir: &Path, adw_id: &str) -> std::process::Child {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let agent = bin.join("aider");
    fs::write(&agent, "#!/bin/sh\nsleep 30\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o755)).unwrap();
    std::process::Command::new(&agent)
        .args(["--message-file", &format!("agents/{adw_id}/prompt.md")])
        .spawn()
        .unwrap()
}

/// adw-monitor: completed and failed come from the file; running needs a
/// live agent process naming the id (a shell that merely names it does not
/// count); paused needs the worktree; else queued. Every workflow carries
/// `phases_completed` as an array, nine total phases and a number of errors,
/// and the whole panel passes the contract.
#[test]
fn monitor_statuses_are_derived() {
    let dir = TempDir::new();
    let worktree = dir.0.join("worktree");
    fs::create_dir_all(&worktree).unwrap();
    let mut agent = start_agent(&dir.0, "run0001");
    // Only names the id, like an editor or a WebSocket client would.
    let mut bystander = std::process::Command::new("sh")
        .args(["-c", "sleep 30; : wait0001 aider"])
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
        &json!({"status":"failed","issue_number":"2","error_count":3,"last_error":"boom"}),
    );
    for phase in ["plan", "build", "test"] {
        fs::create_dir_all(dir.0.join(format!("run0001/adw_{phase}_iso"))).unwrap();
    }
    write_state(&dir.0, "run0001", &json!({"issue_number":"3"}));
    write_state(
        &dir.0,
        "park0001",
        &json!({"issue_number":"4","worktree_path":worktree,
                "phases_completed":["plan","validate"],"current_phase":"build"}),
    );
    write_state(&dir.0, "wait0001", &json!({"issue_number":"5"}));
    let server = start(&dir.0);
    wait_until("the monitor to see all five", || {
        state_of(&server, "adw-monitor")["data"]["summary"]["total"] == 5
    });
    let message = state_of(&server, "adw-monitor");
    for child in [&mut agent, &mut bystander] {
        child.kill().unwrap();
        let _ = child.wait();
    }
    check_message("adw-monitor", &message);
    let monitor = &message["data"];
    assert_eq!(
        monitor["summary"],
        json!({"total":5,"running":1,"completed":1,"failed":1,"paused":1})
    );
    let workflow = |id: &str| {
        monitor["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["adw_id"] == id)
            .unwrap()
            .clone()
    };
    let status = |id: &str| {
        let w = workflow(id);
        (w["status"].clone(), w["is_process_active"].clone())
    };
    assert_eq!(status("run0001"), (json!("running"), json!(true)));
    assert_eq!(status("park0001"), (json!("paused"), json!(false)));
    assert_eq!(status("wait0001"), (json!("queued"), json!(false)));
    assert_eq!(status("done0001").0, "completed");
    assert_eq!(status("fail0001").0, "failed");
    for w in monitor["workflows"].as_array().unwrap() {
        assert!(w["phases_completed"].is_array(), "{w}");
        assert_eq!(w["total_phases"], 9, "{w}");
        assert!(w["error_count"].is_number(), "{w}");
    }
    // Inferred from the directories: plan and build done, test under way.
    let running = workflow("run0001");
    assert_eq!(running["phases_completed"], json!(["plan", "build"]));
    assert_eq!(running["current_phase"], "test");
    assert_eq!(running["phase_progress"], 27.8);
    // Taken from the state file when it has them.
    let parked = workflow("park0001");
    assert_eq!(parked["phases_completed"], json!(["plan", "validate"]));
    assert_eq!(parked["current_phase"], "build");
    assert_eq!(parked["phase_progress"], 27.8);
    assert_eq!(workflow("fail0001")["error_count"], 3);
    assert_eq!(workflow("fail0001")["last_error"], "boom");
    assert!(monitor["last_updated"].is_string());
    check_message("workflows", &state_of(&server, "workflows"));
}

/// A state file that is a symlink (to any JSON file the server may read,
/// or to /dev/zero), a FIFO (which would hang the scan) or too large is
/// not read: the provider says why in /healthz, keeps the last good
/// state, and goes on scanning the rest.
#[test]
fn only_regular_files_are_read() {
    let dir = TempDir::new();
    let server = start(&dir.0);
    let elsewhere = dir.0.join("secret.json");
    fs::write(
        &elsewhere,
        r#"{"adw_id":"link0001","issue_class":"from elsewhere"}"#,
    )
    .unwrap();
    type Make<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Make, &str); 4] = [
        (
            "link0001",
            &|p| std::os::unix::fs::symlink(&elsewhere, p).unwrap(),
            "symlink",
        ),
        (
            "zero0001",
            &|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
            "symlink",
        ),
        (
            "fifo0001",
            &|p| {
                let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
            },
            "not a regular file",
        ),
        (
            "huge0001",
            &|p| {
                fs::write(
                    p,
                    format!(r#"{{"adw_id":"huge0001","x":"{}"}}"#, "a".repeat(70_000)),
                )
                .unwrap()
            },
            "over --max-publish-bytes",
        ),
    ];
    for (id, make, why) in cases {
        fs::create_dir_all(dir.0.join(id)).unwrap();
        make(&dir.0.join(id).join("adw_state.json"));
        server.wait_health(&format!("{id} to be reported"), |h| {
            h["providers"]["agents"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(id) && e.contains(why))
        });
        assert_eq!(
            state_of(&server, &format!("adw-state/{id}"))["seq"],
            0,
            "{id}"
        );
        fs::remove_dir_all(dir.0.join(id)).unwrap();
    }
    // The scan goes on: a regular file beside them is published.
    write_state(
        &dir.0,
        "good0001",
        &json!({"adw_id":"good0001","all_adws":["adw_plan_iso"]}),
    );
    wait_until("the good state", || {
        state_of(&server, "adw-state/good0001")["seq"] == 1
    });
}
