//! Which delta format pays (`?delta=`), measured on the demo's streams:
//! ten simulated minutes of `--demo` (1,500 ticks of 400 ms, its clock
//! simulated so timestamps and durations move as they would, no sleeping),
//! each topic's snapshots in publish order. For each topic, bytes on the
//! wire as a share of plain full snapshots for: permessage-deflate alone
//! (as the server does it: each message on its own, no context takeover);
//! JSON Patch (the server's own differ, `topic::delta`) and fossil delta
//! (the `fossil-delta` crate; the delta sent as a JSON string), each alone
//! and with deflate; and deflate with the previous snapshot as its preset
//! dictionary (measured as a raw deflate stream primed with it, which is
//! what a dictionary does; a browser's `DecompressionStream` cannot take a
//! dictionary, so it is shown as a bound, not a candidate). A delta is
//! sent only when its message is smaller than the full one, as the server
//! does. Then the cost of computing one delta per topic (median µs: as the
//! server does it, the base's tape kept from the delta before, and cold,
//! both texts read), and
//! the server's CPU per delivery: a server in this process, `N` raw
//! WebSocket subscribers to one topic (plain, or `?delta=json-patch`, each
//! with and without permessage-deflate), the topic's recorded stream
//! published in lockstep (each publish read by every subscriber before the
//! next), and the loop thread's CPU time (`/proc/self/task/<tid>/schedstat`)
//! divided by the deliveries.
//!
//! `cargo bench --bench delta`. Under `cargo test` it plays one simulated
//! minute, to keep the bench building and running. After `--`:
//! `--subscribers N` (100), `--runs N` (5; 0 skips the CPU table),
//! `--cpu-only` (no byte or cost tables), `--topic NAME` and `--only
//! plain|delta` (one side, to profile it).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use flate2::{Compress, Compression, FlushCompress};
use serde_json::Value;
use statecast::providers::demo::{self, Demo, Output};
use statecast::topic::delta::{Kept, json_patch};
use statecast::wire::deflate::Deflater;
use statecast::wire::json;
use statecast::{Config, Server};

/// One topic's snapshots, compact JSON, in publish order.
type Stream = Vec<String>;

/// Plays the demo for `ticks` ticks of its simulated clock.
fn record(ticks: u32) -> BTreeMap<String, Stream> {
    let mut at = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
    demo::simulate_clock(Some(at));
    let mut demo = Demo::new(7);
    let mut streams: BTreeMap<String, Stream> = BTreeMap::new();
    let take = |outputs: Vec<Output>, streams: &mut BTreeMap<String, Stream>| {
        for output in outputs {
            if let Output::Snapshot(topic, value) = output {
                streams
                    .entry(topic)
                    .or_default()
                    .push(json::compact(&value));
            }
        }
    };
    take(demo.initial(), &mut streams);
    for _ in 0..ticks {
        at += demo::TICK;
        demo::simulate_clock(Some(at));
        take(demo.step(), &mut streams);
    }
    demo::simulate_clock(None);
    streams
}

fn message_type(topic: &str) -> String {
    format!("{}_update", topic.trim_end_matches("/*").replace('-', "_"))
}

fn full(topic: &str, seq: usize, data: &str) -> String {
    format!(
        r#"{{"type":"{}","seq":{seq},"data":{data}}}"#,
        message_type(topic)
    )
}

fn delta(topic: &str, seq: usize, delta: &str) -> String {
    format!(
        r#"{{"type":"{}","seq":{seq},"base":{},"delta":{delta}}}"#,
        message_type(topic),
        seq - 1
    )
}

/// A text frame's header length for a payload of `len` bytes.
fn header(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

fn frame_len(payload: &str) -> usize {
    payload.len() + header(payload.len())
}

/// Bytes of the frame the server sends a deflate subscriber.
fn deflated_len(deflater: &mut Deflater, payload: &str) -> usize {
    deflater
        .text_frame(payload.as_bytes())
        .map_or(frame_len(payload), |f| f.len())
}

/// The bytes `data` deflates to with `dictionary` already in the window.
fn dictionary_len(dictionary: &str, data: &str) -> usize {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = vec![0; dictionary.len() + data.len() + 1024];
    let _ = c.compress(dictionary.as_bytes(), &mut out, FlushCompress::Sync);
    let primed = c.total_out();
    let _ = c.compress(data.as_bytes(), &mut out, FlushCompress::Sync);
    let body = (c.total_out() - primed) as usize - 4;
    body + header(body)
}

/// Bytes on the wire per scheme, summed over a stream.
#[derive(Default)]
struct Tally {
    updates: usize,
    plain: usize,
    deflate: usize,
    patch: usize,
    patch_deflate: usize,
    fossil: usize,
    fossil_deflate: usize,
    dictionary: usize,
    /// Snapshots a delta was not smaller than.
    patch_full: usize,
    patch_us: Vec<f64>,
    cold_us: Vec<f64>,
    fossil_us: Vec<f64>,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.updates += other.updates;
        self.plain += other.plain;
        self.deflate += other.deflate;
        self.patch += other.patch;
        self.patch_deflate += other.patch_deflate;
        self.fossil += other.fossil;
        self.fossil_deflate += other.fossil_deflate;
        self.dictionary += other.dictionary;
        self.patch_full += other.patch_full;
    }
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(0.0)
}

/// The first snapshot goes whole; each later one as a delta against the
/// one before when that is smaller.
fn tally(topic: &str, stream: &Stream) -> Tally {
    let mut deflater = Deflater::default();
    let mut t = Tally::default();
    let mut previous: Option<&str> = None;
    let mut kept = Kept::default();
    for (seq, data) in stream.iter().enumerate() {
        let whole = full(topic, seq, data);
        t.updates += 1;
        t.plain += frame_len(&whole);
        let whole_deflated = deflated_len(&mut deflater, &whole);
        t.deflate += whole_deflated;
        let Some(old_text) = previous.take() else {
            for sum in [&mut t.patch, &mut t.fossil, &mut t.dictionary] {
                *sum += frame_len(&whole);
            }
            t.patch_deflate += whole_deflated;
            t.fossil_deflate += whole_deflated;
            previous = Some(data);
            continue;
        };
        // What the server does per publish: read the new snapshot's text,
        // diff it against the previous one's, whose tape the delta before
        // kept, and write the patch; and the same with both texts read.
        let started = Instant::now();
        let patch = kept
            .json_patch(
                (seq as u64 - 1, black_box(old_text.as_bytes())),
                (seq as u64, data.as_bytes()),
            )
            .expect("the demo's deltas stay within the differ's budget");
        t.patch_us.push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        let cold = json_patch(black_box(old_text.as_bytes()), data.as_bytes());
        t.cold_us.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(cold.as_ref(), Some(&patch));
        let started = Instant::now();
        let fossil = fossil_delta::delta(black_box(old_text), data);
        t.fossil_us.push(started.elapsed().as_secs_f64() * 1e6);
        let fossil = Value::String(String::from_utf8_lossy(&fossil).into_owned()).to_string();

        for (text, plain, deflated) in [
            (&patch, &mut t.patch, &mut t.patch_deflate),
            (&fossil, &mut t.fossil, &mut t.fossil_deflate),
        ] {
            let message = delta(topic, seq, text);
            if message.len() < whole.len() {
                *plain += frame_len(&message);
                *deflated += deflated_len(&mut deflater, &message);
            } else {
                *plain += frame_len(&whole);
                *deflated += whole_deflated;
            }
        }
        if delta(topic, seq, &patch).len() >= whole.len() {
            t.patch_full += 1;
        }
        t.dictionary += dictionary_len(&full(topic, seq - 1, old_text), &whole);
        previous = Some(data);
    }
    t
}

fn share(part: usize, whole: usize) -> String {
    format!("{:.2}%", part as f64 * 100.0 / whole.max(1) as f64)
}

fn row(name: &str, t: &Tally) {
    println!(
        "{name:<18} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
        t.updates,
        t.plain,
        share(t.deflate, t.plain),
        share(t.patch, t.plain),
        share(t.patch_deflate, t.plain),
        share(t.fossil, t.plain),
        share(t.fossil_deflate, t.plain),
        share(t.dictionary, t.plain),
        t.patch_full,
    );
}

/// The value after `--name` on the command line, if any.
fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.parse().ok()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let ticks = if quick { 150 } else { 1500 };
    let streams = record(ticks);
    // `-- --cpu-only` skips the byte tables and the costs, for profiling
    // the loop alone.
    if !std::env::args().any(|a| a == "--cpu-only") {
        bytes_and_costs(ticks, &streams);
    }
    let n = arg("--subscribers").unwrap_or(if quick { 4 } else { 100 });
    let runs = arg("--runs").unwrap_or(if quick { 1 } else { 5 });
    cpu_per_delivery(&streams, quick, n, runs);
}

/// The bytes on the wire per scheme and topic, and the cost of one delta.
fn bytes_and_costs(ticks: u32, streams: &BTreeMap<String, Stream>) {
    println!(
        "== {} simulated seconds of --demo: bytes on the wire, % of plain full snapshots",
        ticks as u64 * demo::TICK.as_millis() as u64 / 1000
    );
    println!(
        "{:<18} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "topic",
        "msgs",
        "plain B",
        "deflate",
        "patch",
        "patch+z",
        "fossil",
        "fossil+z",
        "dict-z",
        "full"
    );
    let mut all = Tally::default();
    let mut goal = Tally::default();
    let mut costs = Vec::new();
    // Every workflow's state is its own topic; they are shown as one row.
    let mut rows: BTreeMap<&str, (Tally, usize)> = BTreeMap::new();
    for (topic, stream) in streams {
        let name = if topic.starts_with("adw-state/") {
            "adw-state/*"
        } else {
            topic.as_str()
        };
        let mut t = tally(topic, stream);
        let (sum, bytes) = rows.entry(name).or_default();
        sum.add(&t);
        sum.patch_us.append(&mut t.patch_us);
        sum.cold_us.append(&mut t.cold_us);
        sum.fossil_us.append(&mut t.fossil_us);
        *bytes += stream.iter().map(String::len).sum::<usize>();
    }
    for (name, (t, bytes)) in &mut rows {
        row(name, t);
        all.add(t);
        if *name == "workflow-history" || *name == "adw-monitor" {
            goal.add(t);
        }
        let size = *bytes / t.updates.max(1);
        costs.push((
            name.to_string(),
            size,
            median(&mut t.patch_us),
            median(&mut t.cold_us),
            median(&mut t.fossil_us),
        ));
    }
    row("history+monitor", &goal);
    row("all", &all);
    println!(
        "\n== the cost of one delta, median µs (JSON Patch as the server makes it: the new \
         text read, the base's tape kept from the delta before, the diff, the patch written; \
         cold: both texts read)"
    );
    println!(
        "{:<18} {:>9} {:>11} {:>8} {:>10}",
        "topic", "avg bytes", "json-patch", "cold", "fossil"
    );
    for (topic, size, patch, cold, fossil) in costs {
        println!("{topic:<18} {size:>9} {patch:>11.1} {cold:>8.1} {fossil:>10.1}");
    }

    hostile_row();
}

/// The loop's CPU per delivery, plain against `?delta=json-patch`, `n`
/// subscribers, the median of `runs` alternating runs.
fn cpu_per_delivery(streams: &BTreeMap<String, Stream>, quick: bool, n: usize, runs: usize) {
    println!(
        "\n== the loop's CPU per delivery, {n} subscribers, each publish read before the next; \
         median of {runs} alternating runs (range); delta/plain: each delta run over the \
         plain run before it"
    );
    println!(
        "{:<17} {:<8} {:>20} {:>20} {:>18} {:>8} {:>8}",
        "topic", "form", "plain µs", "delta µs", "delta/plain", "plain B", "delta B"
    );
    let only: Option<String> = arg("--only");
    let topic: Option<String> = arg("--topic");
    for topic in ["adw-monitor", "workflow-history"]
        .into_iter()
        .filter(|t| topic.as_deref().is_none_or(|only| only == *t))
    {
        let stream = &streams[topic];
        let stream = &stream[..stream.len().min(if quick { 20 } else { 300 })];
        for deflate in [false, true] {
            let (mut plain, mut delta) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                // `-- --only plain` or `-- --only delta`, for profiling one.
                if only.as_deref() != Some("delta") {
                    plain.push(per_delivery(topic, stream, n, "", deflate));
                }
                if only.as_deref() != Some("plain") {
                    delta.push(per_delivery(topic, stream, n, "?delta=json-patch", deflate));
                }
            }
            let form = if deflate { "deflate" } else { "frame" };
            // Each delta run against the plain run beside it: a machine
            // whose load drifts moves both alike.
            let mut ratios: Vec<f64> = plain
                .iter()
                .zip(&delta)
                .map(|(plain, delta)| delta.0 / plain.0)
                .collect();
            ratios.sort_by(f64::total_cmp);
            let ratio = match (ratios.first(), ratios.get(ratios.len() / 2), ratios.last()) {
                (Some(lo), Some(mid), Some(hi)) => format!("{mid:.2} ({lo:.2}-{hi:.2})"),
                _ => "-".to_owned(),
            };
            let spread = |runs: &mut Vec<(f64, f64)>| {
                if runs.is_empty() {
                    return ("-".to_owned(), 0.0);
                }
                runs.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (lo, hi) = (runs[0].0, runs[runs.len() - 1].0);
                let (us, bytes) = runs[runs.len() / 2];
                (format!("{us:.2} ({lo:.2}-{hi:.2})"), bytes)
            };
            let ((plain_us, plain_b), (delta_us, delta_b)) =
                (spread(&mut plain), spread(&mut delta));
            println!(
                "{topic:<17} {form:<8} {plain_us:>20} {delta_us:>20} {ratio:>18} {plain_b:>8.0} \
                 {delta_b:>8.0}"
            );
        }
    }
}

/// A publisher's worst case for the differ, under the 1 MiB default:
/// 256 equal arrays of 2,040 numbers, then the same with each one's last
/// number changed (1,044,993 bytes). Every pair of elements is alike up
/// to its last member, which is what makes a deep comparison costly.
fn hostile_row() {
    let text = |last: u8| {
        let inner = format!("[{}{last}]", "0,".repeat(2039));
        format!("[{}]", vec![inner; 256].join(","))
    };
    let (old, new) = (text(1), text(2));
    let started = Instant::now();
    let patch = json_patch(black_box(old.as_bytes()), black_box(new.as_bytes()));
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let patch = patch.map_or("over budget: the snapshot goes whole".to_owned(), |patch| {
        format!("patch {} B", patch.len())
    });
    println!("\n== a hostile publish: [[0]*2039+[1]]*256, then the same ending in 2 (1,044,993 B)");
    println!("json-patch diff {ms:>10.1} ms, {patch}");
}

/// The loop thread's time on a CPU so far, in nanoseconds.
fn thread_cpu_ns(tid: i64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

/// Reads frames off `stream` until it ends, counting each data frame.
fn count_frames(mut stream: TcpStream, count: Arc<AtomicU64>) {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read_exact(&mut byte).is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let mut payload = Vec::new();
    loop {
        let mut h = [0u8; 2];
        if stream.read_exact(&mut h).is_err() {
            return;
        }
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                stream.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                stream.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        payload.resize(len, 0);
        if stream.read_exact(&mut payload).is_err() {
            return;
        }
        if h[0] & 0x0f == 0x1 {
            count.fetch_add(1, Ordering::Release);
        }
    }
}

/// The loop's CPU per delivery (µs) and bytes written per delivery, for
/// `n` subscribers of `topic` asking `query`, with permessage-deflate or
/// not, over `stream`.
fn per_delivery(
    topic: &str,
    stream: &[String],
    n: usize,
    query: &str,
    deflate: bool,
) -> (f64, f64) {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let server = Server::bind(config).unwrap();
    let addr = server.local_addr().unwrap();
    let publisher = server.publisher();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(i64::from(unsafe { libc::gettid() })).unwrap();
        server.run()
    });
    let tid = tid_rx.recv().unwrap();
    let values: Vec<Value> = stream
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    publisher.publish(topic, &values[0]).unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    let readers: Vec<_> = (0..n)
        .map(|_| {
            let mut ws = TcpStream::connect(addr).unwrap();
            write!(
                ws,
                "GET /api/v1/ws/{topic}{query} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n{offer}\r\n"
            )
            .unwrap();
            let count = count.clone();
            std::thread::spawn(move || count_frames(ws, count))
        })
        .collect();
    let wait = |target: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while count.load(Ordering::Acquire) < target {
            assert!(Instant::now() < deadline, "subscribers stalled");
            std::thread::yield_now();
        }
    };
    wait(n as u64);
    let bytes_before = bytes_out(addr);
    let cpu_before = thread_cpu_ns(tid);
    for (i, value) in values.iter().enumerate().skip(1) {
        publisher.publish(topic, value).unwrap();
        wait((n * (i + 1)) as u64);
    }
    let cpu = thread_cpu_ns(tid) - cpu_before;
    let bytes = bytes_out(addr) - bytes_before;
    publisher.shutdown().unwrap();
    thread.join().unwrap().unwrap();
    for reader in readers {
        reader.join().unwrap();
    }
    let deliveries = (n * (values.len() - 1)) as f64;
    (cpu as f64 / 1e3 / deliveries, bytes as f64 / deliveries)
}

/// The server's count of bytes written, from `/metrics`.
fn bytes_out(addr: std::net::SocketAddr) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("statecast_bytes_out_total ")?.parse().ok())
        .unwrap_or(0)
}
