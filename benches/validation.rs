//! What checking a publish against its topic's schema costs, per ADW topic,
//! at the contract's example sizes (the richest valid value of each topic's
//! case file) and for a 50-item workflow-history: the parse into a
//! `serde_json::Value` that only validated topics pay, and the check itself.
//!
//! `cargo bench --bench validation`; under `cargo test` it runs each
//! measurement briefly and checks that every sample passes.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use statecast::Preset;
use statecast::topic::adw;
use statecast::topic::schema::Validator;

/// The richest valid value of a topic's case file.
fn sample(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("contract/cases/{name}.json"));
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cases["valid"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|v| v.to_string().len())
        .unwrap()
        .clone()
}

/// A workflow-history of `n` items like the contract's example item.
fn history(n: usize) -> Value {
    let one = sample("workflow-history");
    let item = one["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|v| v.to_string().len())
        .unwrap()
        .clone();
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let mut item = item.clone();
            item["id"] = i.into();
            item
        })
        .collect();
    let mut data = one;
    data["workflows"] = Value::Array(items);
    data["total_count"] = n.into();
    data
}

/// Mean time of `f` over enough runs to fill `budget`.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < budget || runs < 10 {
        f();
        runs += 1;
    }
    start.elapsed() / runs
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let budget = Duration::from_millis(if full { 500 } else { 5 });
    let validator = Validator::new(Preset::Adw, &[]).unwrap();
    let mut samples: Vec<(String, String, Value)> = adw::schema_names()
        .map(|name| {
            let topic = if name == "adw-state" {
                "adw-state/a1b2c3d4".to_owned()
            } else {
                name.to_owned()
            };
            (name.to_string(), topic, sample(name))
        })
        .collect();
    samples.push((
        "workflow-history, 50 items".into(),
        "workflow-history".into(),
        history(50),
    ));

    println!("| topic | bytes | parse to Value | schema check | total |");
    println!("|---|---|---|---|---|");
    for (label, topic, data) in &samples {
        let text = data.to_string();
        validator
            .check(topic, data)
            .unwrap_or_else(|e| panic!("{label}: sample refused: {e}"));
        let parse = time(budget, || {
            black_box(serde_json::from_str::<Value>(black_box(&text)).unwrap());
        });
        let check = time(budget, || {
            black_box(validator.check(topic, black_box(data))).unwrap();
        });
        println!(
            "| {label} | {} | {} | {} | {} |",
            text.len(),
            micros(parse),
            micros(check),
            micros(parse + check)
        );
    }
}
