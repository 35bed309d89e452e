//! Cross-node delivery through Redis: latency from a publish on node A to
//! the read on node B's clients, and throughput, beside the same run on one
//! node with no Redis. Needs `redis-server` (scripts/test.sh installs it).
//!
//! `cargo bench --bench cluster`: 1,000 clients, paced and burst. Under
//! `cargo test` it runs once, small.

use statecast_testkit::pinned;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node on CPU 0; its address and pid.
fn node(redis: Option<&str>) -> (Running, String, u32) {
    let mut command = pinned(0, env!("CARGO_BIN_EXE_statecast"));
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--preset",
        "none",
        "--topic",
        "load",
    ]);
    command.args(["--log-level", "info", "--max-publish-bytes", "4MiB"]);
    if let Some(url) = redis {
        command.args(["--redis", url]);
    }
    let mut child = command.stderr(Stdio::piped()).spawn().expect("statecast");
    let pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "node exited");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in stderr.lines() {});
    (Running(child), addr, pid)
}

fn load(clients_on: &str, pid: u32, publish_to: &str, args: &[&str]) -> serde_json::Value {
    let output = pinned(1, env!("CARGO_BIN_EXE_statecast-load"))
        .args(["--server", clients_on, "--server-pid", &pid.to_string()])
        .args(["--publish-to", publish_to, "--no-floor", "--json"])
        .args(args)
        .output()
        .expect("statecast-load");
    assert!(
        output.status.success(),
        "statecast-load: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("its JSON")
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _redis = Running(
        pinned(0, "redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server: scripts/test.sh installs it (apt-get install redis-server)"),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = format!("redis://127.0.0.1:{port}");
    let (_alone, alone, alone_pid) = node(None);
    let (_a, a, _) = node(Some(&url));
    let (_b, b, b_pid) = node(Some(&url));

    let connections = if full { "1000" } else { "50" };
    let (paced, burst) = if full {
        ("300", "20000")
    } else {
        ("10", "200")
    };
    let cases: [(&str, &str, u32, &str); 3] = [
        ("one node, no Redis", &alone, alone_pid, &alone),
        ("same node through Redis", &b, b_pid, &b),
        ("node A to node B", &b, b_pid, &a),
    ];
    println!("{connections} clients on one node; publishes over HTTP keep-alive");
    println!(
        "| path | paced: p50 ms | p99 ms | burst: publishes/s | deliveries/s | lost to conflation |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, clients, pid, publish_to) in cases {
        let common = ["--connections", connections, "--warmup", "5"];
        let p = load(
            clients,
            pid,
            publish_to,
            &[&common[..], &["--messages", paced, "--rate", "100"]].concat(),
        );
        let q = load(
            clients,
            pid,
            publish_to,
            &[&common[..], &["--messages", burst, "--rate", "0"]].concat(),
        );
        let ms = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) / 1000.0;
        assert_eq!(
            p["healthy_missing_last"], 0,
            "{name}: a client missed the last publish"
        );
        assert_eq!(
            q["healthy_missing_last"], 0,
            "{name}: a client missed the last publish"
        );
        println!(
            "| {name} | {:.2} | {:.2} | {:.0} | {:.0} | {} |",
            ms(&p["latency_us"]["p50"]),
            ms(&p["latency_us"]["p99"]),
            q["publishes_per_second"].as_f64().unwrap_or(0.0),
            q["deliveries_per_second"].as_f64().unwrap_or(0.0),
            q["expected_deliveries"].as_u64().unwrap_or(0) - q["deliveries"].as_u64().unwrap_or(0),
        );
    }
}
