//! What taking in a publish costs, per ADW topic, at the contract's example
//! sizes (the richest valid value of each topic's case file), for a 50-item
//! workflow-history and for one just under 1 MiB: the I-JSON parse into a
//! `serde_json::Value` and the compact text written back out, which every
//! publish pays, and the schema check, which validated topics add, with
//! the steps it takes of the checker's budget.
//!
//! `cargo bench --bench validation`; under `cargo test` it runs each
//! measurement briefly and checks that every sample passes.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use statecast::Preset;
use statecast::topic::adw;
use statecast::topic::schema::{STEP_BUDGET, Validator};
use statecast::wire::json;

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
    // The largest that fits the default --max-publish-bytes of 1 MiB.
    let per_item = history(2).to_string().len() - history(1).to_string().len();
    let mut items = ((1 << 20) - history(0).to_string().len()) / per_item;
    while history(items).to_string().len() > 1 << 20 {
        items -= 1;
    }
    samples.push((
        format!("workflow-history, {items} items"),
        "workflow-history".into(),
        history(items),
    ));

    println!(
        "| topic | bytes | I-JSON parse | compact text | schema check | total | steps of {STEP_BUDGET} |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, topic, data) in &samples {
        let text = data.to_string();
        validator
            .check(topic, data)
            .unwrap_or_else(|e| panic!("{label}: sample refused: {e}"));
        assert!(text.len() <= 1 << 20, "{label}: {} bytes", text.len());
        let parse = time(budget, || {
            black_box(json::parse(black_box(text.as_bytes())).unwrap());
        });
        let compact = time(budget, || {
            black_box(json::compact(black_box(data)));
        });
        let check = time(budget, || {
            black_box(validator.check(topic, black_box(data))).unwrap();
        });
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} |",
            text.len(),
            micros(parse),
            micros(compact),
            micros(check),
            micros(parse + compact + check),
            validator.steps(topic, data)
        );
    }
}
