//! The fan-out benchmark matrix: {1k, 10k} connections x {64 B, 1 KiB,
//! 16 KiB} payloads x {paced at 10 publishes/s, burst}, plus a burst of
//! events (batching), a run with 10% of clients stalled, and server memory
//! per idle connection. Each cell is five `statecast-load` runs with the
//! server pinned to CPU 0 and the generator to CPU 1, folded to medians; the
//! table prints each figure beside the kernel floor measured in the same run.
//!
//! `cargo bench --bench fanout` runs the full matrix (about 17 minutes).
//! Under `cargo test` it runs one small cell, so the generator is checked
//! on every test run.

use std::process::Command;

use serde_json::Value;
use statecast_testkit::cpus;

struct Cell {
    connections: usize,
    payload: usize,
    rate: u32,
    messages: usize,
    kind: &'static str,
    stalled: u32,
}

fn cell(
    connections: usize,
    payload: usize,
    rate: u32,
    messages: usize,
    kind: &'static str,
    stalled: u32,
) -> Cell {
    Cell {
        connections,
        payload,
        rate,
        messages,
        kind,
        stalled,
    }
}

fn load() -> Command {
    let generator = env!("CARGO_BIN_EXE_statecast-load");
    if std::path::Path::new("/usr/bin/taskset").exists() && cpus() >= 2 {
        let mut c = Command::new("/usr/bin/taskset");
        c.args(["-c", "1", generator, "--server-cpu", "0"]);
        c
    } else {
        Command::new(generator)
    }
}

fn run(cell: &Cell) -> Value {
    let output = load()
        .args(["--spawn", env!("CARGO_BIN_EXE_statecast"), "--json"])
        .args(["--connections", &cell.connections.to_string()])
        .args(["--payload", &cell.payload.to_string()])
        .args(["--rate", &cell.rate.to_string()])
        .args(["--messages", &cell.messages.to_string()])
        .args(["--kind", cell.kind])
        .args(["--stalled", &cell.stalled.to_string()])
        .output()
        .expect("running statecast-load");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "statecast-load failed: {stderr}");
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        eprintln!(
            "{} conns, {} B, {}, rate {}: {line}",
            cell.connections, cell.payload, cell.kind, cell.rate
        );
    }
    serde_json::from_slice(&output.stdout).expect("statecast-load printed JSON")
}

/// Runs a cell `times` times and folds the results: each figure is the
/// median of its runs (this VM moves one cell by 20-50% from run to run),
/// except failure counts, which keep their worst.
fn run_repeated(cell: &Cell, times: usize) -> Value {
    let runs: Vec<Value> = (0..times).map(|_| run(cell)).collect();
    fold(&runs.iter().collect::<Vec<_>>(), "")
}

fn fold(values: &[&Value], key: &str) -> Value {
    match values[0] {
        Value::Object(first) => {
            let mut out = serde_json::Map::new();
            for (k, _) in first {
                let column: Vec<&Value> = values.iter().map(|v| &v[k.as_str()]).collect();
                out.insert(k.clone(), fold(&column, k));
            }
            Value::Object(out)
        }
        Value::Number(_) => {
            let worst = matches!(key, "healthy_missing_last" | "out_of_order");
            let pick = |n: usize| if worst { n - 1 } else { n / 2 };
            if values.iter().all(|v| v.is_u64()) {
                let mut numbers: Vec<u64> = values.iter().filter_map(|v| v.as_u64()).collect();
                numbers.sort_unstable();
                serde_json::json!(numbers[pick(numbers.len())])
            } else {
                let mut numbers: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
                numbers.sort_by(f64::total_cmp);
                serde_json::json!(numbers[pick(numbers.len())])
            }
        }
        other => other.clone(),
    }
}

fn f(v: &Value, scale: f64, digits: usize) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.*}", digits, x * scale))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // (connections, payload, publishes/s or 0 for burst, publishes, kind, % stalled)
    let cells: Vec<Cell> = if full {
        let mut cells = Vec::new();
        for connections in [1000, 10_000] {
            for payload in [64, 1024, 16 << 10] {
                let burst = if payload > 1024 { 100 } else { 300 };
                cells.push(cell(connections, payload, 10, 30, "snapshot", 0));
                cells.push(cell(connections, payload, 0, burst, "snapshot", 0));
            }
        }
        cells.push(cell(10_000, 64, 0, 300, "event", 0));
        cells.push(cell(10_000, 256, 10, 30, "snapshot", 0));
        cells.push(cell(10_000, 256, 10, 30, "snapshot", 10));
        cells
    } else {
        vec![cell(200, 256, 50, 10, "snapshot", 10)]
    };

    // Five runs: with three, the median CPU ratio of one cell still moved
    // by 0.15 from one bench run to the next on this VM.
    let repeats = if full { 5 } else { 1 };
    println!("Each figure is the median of {repeats} run(s); failure counts are the worst.\n");
    println!(
        "| conns | stalled | payload | mode | kind | publishes/s | deliveries/s | lost | missing last | p50 ms | p99 ms | p99.9 ms | floor p99 ms | server ns/delivery | floor ns/write | ratio | paced floor ns/write | paced ratio | floor write ms | floor delivered ms | connect ms | connect server busy % |"
    );
    println!(
        "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for cell in &cells {
        let r = run_repeated(cell, repeats);
        let lost = r["expected_deliveries"].as_u64().unwrap_or(0) as i64
            - r["deliveries"].as_u64().unwrap_or(0) as i64;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell.connections,
            r["stalled"],
            cell.payload,
            if cell.rate == 0 {
                "burst".to_owned()
            } else {
                format!("{}/s", cell.rate)
            },
            cell.kind,
            f(&r["publishes_per_second"], 1.0, 0),
            f(&r["deliveries_per_second"], 1.0, 0),
            lost,
            r["healthy_missing_last"],
            f(&r["latency_us"]["p50"], 1e-3, 1),
            f(&r["latency_us"]["p99"], 1e-3, 1),
            f(&r["latency_us"]["p999"], 1e-3, 1),
            f(&r["floor_paced_p99_us"], 1e-3, 1),
            f(&r["server_cpu_ns_per_delivery"], 1.0, 0),
            f(&r["floor_ns_per_write"], 1.0, 0),
            f(&r["ratio_to_floor"], 1.0, 2),
            f(&r["floor_paced_ns_per_write"], 1.0, 0),
            f(&r["ratio_to_paced_floor"], 1.0, 2),
            f(&r["floor_round_ms"], 1.0, 1),
            f(&r["floor_delivered_ms"], 1.0, 1),
            f(&r["connect_ms"], 1.0, 0),
            f(&r["connect_server_busy"], 100.0, 0),
        );
        // Under cargo test, the one small cell must show a working pipeline.
        if !full {
            assert_eq!(
                r["healthy_missing_last"], 0,
                "every healthy client got the last publish"
            );
            assert_eq!(r["out_of_order"], 0);
            assert!(r["deliveries"].as_u64().unwrap() > 0);
        }
    }
    if full {
        let output = load()
            .args([
                "--spawn",
                env!("CARGO_BIN_EXE_statecast"),
                "--json",
                "--memory",
                "1000,5000,10000,19000",
            ])
            .output()
            .expect("running statecast-load --memory");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let r: Value = serde_json::from_slice(&output.stdout).unwrap();
        println!();
        println!("| connections | server RSS KiB |");
        println!("|---:|---:|");
        for p in r["points"].as_array().unwrap() {
            println!("| {} | {} |", p["connections"], p["rss_kib"]);
        }
        println!(
            "\nserver RSS per idle connection (slope 1k to 19k): {} bytes",
            f(&r["bytes_per_idle_connection"], 1.0, 0)
        );
    }
}
