//! What permessage-deflate costs and saves per publish, in process: the
//! 16 KiB workflow-history fixture at three levels, each topic of the demo
//! as it runs, and small messages, to place the size below which frames
//! stay plain (`wire::deflate::MIN_COMPRESSED`).
//!
//! `cargo bench --bench compression`. The cost is paid once per publish
//! (one compressed frame serves every subscriber); what it saves is paid
//! back per subscriber in bytes.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use flate2::Compression;
use statecast::providers::demo::{Demo, Output, history_fixture};
use statecast::wire::deflate::{Deflater, MIN_COMPRESSED};

/// Median time of `runs` compressions of `json`, and the frame's size.
fn measure(deflater: &mut Deflater, json: &str, runs: usize) -> (f64, Option<usize>) {
    let mut times = Vec::with_capacity(runs);
    let mut size = None;
    for _ in 0..runs {
        let start = Instant::now();
        let frame = deflater.text_frame(black_box(json.as_bytes()));
        times.push(start.elapsed().as_secs_f64() * 1e6);
        size = frame.map(|f| f.len());
    }
    times.sort_by(f64::total_cmp);
    (times[runs / 2], size)
}

fn envelope(topic: &str, data: &str) -> String {
    format!(
        r#"{{"type":"{}_update","seq":1234,"data":{data}}}"#,
        topic.replace('-', "_")
    )
}

fn main() {
    // Benches run with `cargo bench`; `cargo test --all-targets` runs them
    // once too, without `--bench`: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick { 3 } else { 201 };

    println!("== the 16 KiB workflow-history fixture (50 items)");
    let fixture = envelope("workflow-history", &history_fixture(50, 7).to_string());
    println!("level  us/publish  bytes (of {})  share", fixture.len());
    for level in [1, 6, 9] {
        let mut deflater = Deflater::new(Compression::new(level));
        let (us, size) = measure(&mut deflater, &fixture, runs);
        let size = size.expect("the fixture compresses");
        println!(
            "{level:>5}  {us:>10.1}  {size:>13}  {:>4.1}%",
            size as f64 * 100.0 / fixture.len() as f64
        );
    }

    println!("\n== each demo topic at the default level, newest value after 600 steps");
    let mut demo = Demo::new(7);
    let mut newest = BTreeMap::new();
    for output in demo.initial() {
        if let Output::Snapshot(topic, value) = output {
            newest.insert(topic, value);
        }
    }
    for _ in 0..600 {
        for output in demo.step() {
            if let Output::Snapshot(topic, value) = output {
                newest.insert(topic, value);
            }
        }
    }
    let mut deflater = Deflater::default();
    println!(
        "{:<18} {:>7} {:>11} {:>6} {:>11}",
        "topic", "bytes", "compressed", "share", "us/publish"
    );
    // One adw-state topic stands for them all.
    let mut states = 0;
    for (topic, value) in &newest {
        if topic.starts_with("adw-state/") {
            states += 1;
            if states > 1 {
                continue;
            }
        }
        let json = envelope(topic, &value.to_string());
        let (us, size) = measure(&mut deflater, &json, runs);
        let shown = size.map_or("plain".to_owned(), |s| s.to_string());
        let share = size.map_or("-".to_owned(), |s| {
            format!("{:.0}%", s as f64 * 100.0 / json.len() as f64)
        });
        println!(
            "{topic:<18} {:>7} {shown:>11} {share:>6} {us:>11.1}",
            json.len()
        );
    }

    println!("\n== small messages (cut from the demo's queue), threshold {MIN_COMPRESSED} B");
    println!(
        "{:>6} {:>11} {:>7} {:>11}",
        "bytes", "compressed", "saved", "us/publish"
    );
    // Prefixes of a real message: compressibility, not validity, counts.
    let queue = envelope("queue", &newest["queue"].to_string());
    for size in [64, 128, 192, 256, 384, 512, 1024] {
        let json = &queue[..size];
        let (us, compressed) = measure_raw(&mut deflater, json, runs);
        println!(
            "{size:>6} {compressed:>11} {:>6.0}% {us:>11.1}",
            (size as f64 - compressed as f64) * 100.0 / size as f64
        );
    }
}

/// Like [`measure`], below the threshold too: the payload padded past it
/// is not what is wanted, so the deflate stream's own size is reported.
fn measure_raw(deflater: &mut Deflater, json: &str, runs: usize) -> (f64, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let start = Instant::now();
        size = deflater.deflated_len(black_box(json.as_bytes()));
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    (times[runs / 2], size)
}
