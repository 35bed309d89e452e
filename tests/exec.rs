//! The command provider with a script whose output and exit status the
//! test controls: change detection, no publish when unchanged, a failing
//! command that recovers, a hung one that is killed, one whose output a
//! process outside its group holds open, oversized output, and the
//! environment a command gets.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use statecast::config::ExecSpec;
use statecast::providers::exec::{Limits, spawn};
use statecast_testkit::*;

/// A script reading its stdout and exit code from files beside it.
struct Script {
    dir: PathBuf,
}

impl Script {
    fn new(name: &str) -> Script {
        let dir =
            std::env::temp_dir().join(format!("statecast-exec-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("run.sh"),
            "#!/bin/sh\nd=$(dirname \"$0\")\necho >> \"$d/runs\"\n[ -f \"$d/hang\" ] && sleep 30\ncat \"$d/out\"\nexit $(cat \"$d/code\")\n",
        )
        .unwrap();
        let script = Script { dir };
        script.set("{}", 0);
        script
    }

    fn set(&self, out: &str, code: i32) {
        fs::write(self.dir.join("out"), out).unwrap();
        fs::write(self.dir.join("code"), code.to_string()).unwrap();
    }

    fn hang(&self, on: bool) {
        let path = self.dir.join("hang");
        if on {
            fs::write(path, "").unwrap();
        } else {
            let _ = fs::remove_file(path);
        }
    }

    /// How many times the script has started.
    fn runs(&self) -> usize {
        fs::read_to_string(self.dir.join("runs")).map_or(0, |r| r.lines().count())
    }

    fn command(&self) -> String {
        format!("sh {}", self.dir.join("run.sh").display())
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn start(script: &Script, timeout: Duration, max_bytes: usize) -> TestServer {
    // A topic without a schema: these tests are about the command, not
    // the data (tests/validation.rs covers a refused value).
    let server = TestServer::with(|c| c.topics.push("metrics".into()));
    let spec = ExecSpec {
        topic: "metrics".into(),
        command: script.command(),
        interval: Duration::from_millis(50),
        origin: "--exec".into(),
    };
    spawn(
        spec,
        Limits { timeout, max_bytes },
        server.publisher.clone(),
    )
    .unwrap();
    server
}

/// The topic's message; seq 0 before its first publish (a 404 then).
fn qc(server: &TestServer) -> Value {
    let (status, body) = server.request("GET", "/api/v1/state/metrics", "");
    if status == 404 {
        return serde_json::json!({"seq": 0});
    }
    serde_json::from_str(&body).unwrap()
}

/// Output that changes is published; the same output is not published again.
#[test]
fn publishes_changed_output_only() {
    let script = Script::new("change");
    script.set(r#"{"coverage":80}"#, 0);
    let server = start(&script, Duration::from_secs(5), 1 << 20);
    wait_until("the first publish", || qc(&server)["seq"] == 1);
    // Three more runs with the same output: counted, not timed.
    let runs = script.runs();
    wait_until("three more runs", || script.runs() >= runs + 3);
    assert_eq!(qc(&server)["seq"], 1, "unchanged output is not republished");
    script.set(r#"{"coverage":81}"#, 0);
    wait_until("the change", || qc(&server)["data"]["coverage"] == 81);
    assert_eq!(qc(&server)["seq"], 2);
}

/// A failing command keeps the last snapshot, is reported, and recovers.
#[test]
fn failing_command_recovers() {
    let script = Script::new("fail");
    script.set(r#"{"coverage":70}"#, 0);
    let server = start(&script, Duration::from_secs(5), 1 << 20);
    wait_until("the first publish", || qc(&server)["seq"] == 1);
    script.set("not json", 0);
    server.wait_health("degraded", |h| h["status"] == "degraded");
    let error = server.health()["providers"]["exec metrics"]["last_error"].clone();
    assert!(error.as_str().unwrap().contains("invalid JSON"), "{error}");
    script.set(r#"{"coverage":70}"#, 2);
    server.wait_health("the exit status reported", |h| {
        h["providers"]["exec metrics"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("exit status: 2"))
    });
    assert_eq!(
        qc(&server)["data"]["coverage"],
        70,
        "the last good snapshot stays"
    );
    script.set(r#"{"coverage":75}"#, 0);
    wait_until("recovery", || qc(&server)["data"]["coverage"] == 75);
    server.wait_health("ok again", |h| h["status"] == "ok");
}

/// A command that hangs is killed at its timeout and reported.
#[test]
fn hung_command_is_killed() {
    let script = Script::new("hang");
    script.hang(true);
    let server = start(&script, Duration::from_millis(200), 1 << 20);
    server.wait_health("the timeout", |h| {
        h["providers"]["exec metrics"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out"))
    });
    script.hang(false);
    script.set(r#"{"coverage":1}"#, 0);
    wait_until("recovery after the hang", || qc(&server)["seq"] == 1);
}

/// Processes a test started outside any group it controls, killed when
/// the test ends: their pids, one a line, in a file.
struct Strays(PathBuf);

impl Drop for Strays {
    fn drop(&mut self) {
        let pids = fs::read_to_string(&self.0).unwrap_or_default();
        for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: kill only sends a signal, to a sleep this test started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = fs::remove_file(&self.0);
    }
}

/// A command that exits while a process it started in a session of its
/// own (`setsid`, out of reach of the group kill) keeps its stdout open:
/// the run still ends at the timeout, and /healthz shows the provider
/// degraded with a timeout that says why.
#[test]
fn output_held_open_outside_the_group_times_out() {
    let strays =
        Strays(std::env::temp_dir().join(format!("statecast-exec-{}-setsid", std::process::id())));
    let server = TestServer::with(|c| c.topics.push("metrics".into()));
    let spec = ExecSpec {
        topic: "metrics".into(),
        command: format!(
            "setsid sleep 600 & echo $! >> {}; date +%s",
            strays.0.display()
        ),
        interval: Duration::from_millis(50),
        origin: "--exec".into(),
    };
    let limits = Limits {
        timeout: Duration::from_millis(500),
        max_bytes: 1 << 20,
    };
    spawn(spec, limits, server.publisher.clone()).unwrap();
    server.wait_health("the timeout in /healthz", |h| {
        h["providers"]["exec metrics"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out") && e.contains("setsid"))
    });
    let health = server.health();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["providers"]["exec metrics"]["ok"], false, "{health}");
}

/// Output over the limit is refused.
#[test]
fn oversized_output_is_refused() {
    let script = Script::new("big");
    script.set(&format!(r#"{{"pad":"{}"}}"#, "x".repeat(4096)), 0);
    let server = start(&script, Duration::from_secs(5), 1024);
    server.wait_health("degraded", |h| h["status"] == "degraded");
    let error = server.health()["providers"]["exec metrics"]["last_error"].clone();
    assert!(error.as_str().unwrap().contains("limit"), "{error}");
    assert_eq!(qc(&server)["seq"], 0);
}

/// A command run by the real binary gets none of statecast's `STATECAST_*`
/// variables (its tokens, and any secret added later under the prefix),
/// not even from `/proc/<statecast>/environ`, and keeps the rest of the
/// environment.
#[test]
fn commands_get_no_statecast_variables() {
    const SUBSCRIBE: &str = "subscribe-token-abcdefghijklmnop";
    // The names of every STATECAST_ variable the command sees, and one
    // ordinary variable that must still reach it.
    // Nor does the environment block statecast started with, which
    // /proc shows to its children (the same user).
    let command = r#"leak=printf '{"leaked":"%s","kept":"%s","parent":"%s"}' "$(env | grep ^STATECAST_ | cut -d= -f1 | tr '\n' ' ')" "$KEEP_ME" "$(tr '\0' '\n' < /proc/$PPID/environ | grep -c abcdefghijklmnop)"@50ms"#;
    let server = Binary::start_with(&["--topic", "leak", "--exec", command], |c| {
        c.env("STATECAST_PUBLISH_TOKEN", "publish-token-abcdefghijklmnop")
            .env("STATECAST_SUBSCRIBE_TOKEN", SUBSCRIBE)
            .env("STATECAST_ANYTHING_ELSE", "x")
            .env("KEEP_ME", "kept");
        // A build without signed tokens refuses this secret at start.
        if cfg!(feature = "jwt") {
            c.env(
                "STATECAST_JWT_SECRET",
                "jwt-secret-abcdefghijklmnopqrstuvwxyz",
            );
        }
    });
    let path = format!("/api/v1/state/leak?token={SUBSCRIBE}");
    let mut seen = Value::Null;
    wait_until("the command's first publish", || {
        let (status, body) = server.request("GET", &path, "");
        if status == 200 {
            seen = serde_json::from_str(&body).unwrap();
        }
        status == 200
    });
    assert_eq!(seen["data"]["leaked"], "", "{seen}");
    assert_eq!(seen["data"]["kept"], "kept", "{seen}");
    assert_eq!(seen["data"]["parent"], "0", "{seen}");
}
