//! The realistic run (`--dashboards N`): N dashboards, each holding the real
//! client's eight app-wide sockets, fed by the demo's own story (its topics,
//! sizes and rates) over HTTP, schemas checked; CPU per delivery, latency
//! from publish to read per topic, and RSS.

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::Events;
use statecast::providers::demo::{Demo, Output, TICK};

use crate::client::Clients;
use crate::measure::{now_ns, percentile};
use crate::options::Options;
use crate::schedule::{compression, read_response};
use crate::target::{rss_kib, start_target};

/// The sockets the dashboard opens at load (CONTRACT.md, "What the client
/// does with the connection").
const SOCKETS: [&str; 8] = [
    "queue",
    "adw-monitor",
    "system-status",
    "workflows",
    "routes",
    "workflow-history",
    "planned-features",
    "webhook-status",
];

/// When each `(topic, seq)` was published, in `now_ns` time.
type Published = HashMap<(String, u64), u64>;

pub(crate) fn run(o: &Options) -> io::Result<()> {
    now_ns();
    let target = start_target(o)?;
    let mut demo = Demo::new(42);
    let mut producer = Producer::connect(target.addr)?;
    // Every panel starts full, as it would on a running system.
    for output in demo.initial() {
        producer.send(&output)?;
    }
    let sockets = o.dashboards * SOCKETS.len();
    let mut clients = Clients::of(&SOCKETS, target.addr, o.deflate)?;
    clients.tally.dashboards = true;
    let start = Instant::now();
    clients.open(target.addr, sockets, 0, Duration::from_secs(120))?;
    let connect = start.elapsed();
    let idle_rss = target.pid.map(rss_kib);

    let mark = target.cpu_mark();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = play(demo, producer, o.seconds, stop.clone());
    let mut events = Events::with_capacity(4096);
    while !publishing.is_finished() {
        clients.turn(&mut events, Some(Duration::from_millis(20)))?;
    }
    // What is still on its way.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(500) {
        clients.turn(&mut events, Some(Duration::from_millis(20)))?;
    }
    stop.store(true, Ordering::Relaxed);
    let (published, publishes) = publishing
        .join()
        .map_err(|_| io::Error::other("publisher panicked"))??;
    let (server_cpu, own_cpu) = target.cpu_since(&mark);
    let rss = target.pid.map(rss_kib);
    let compress = compression(target.addr);
    let figures = figures(&clients, &published);
    let tally = &clients.tally;
    let result = serde_json::json!({
        "dashboards": o.dashboards,
        "sockets": sockets,
        "deflate": o.deflate,
        "seconds": o.seconds,
        "connect_ms": connect.as_secs_f64() * 1e3,
        "publishes": publishes,
        "deliveries": tally.deliveries,
        "events": tally.events,
        "compressed_deliveries": tally.compressed,
        "wire_bytes_per_delivery": tally.wire_bytes as f64 / tally.deliveries.max(1) as f64,
        "server_cpu_ns_per_delivery": server_cpu.map(|c| c as f64 / tally.deliveries.max(1) as f64),
        "server_compressions": compress.map(|c| c.0),
        "server_compress_us_per_message": compress.map(|c| c.1),
        "generator_cpu_s": own_cpu as f64 / 1e9,
        "rss_kib_idle": idle_rss,
        "rss_kib_end": rss,
        "latency_us": figures,
    });
    if o.json {
        println!("{result}");
    } else {
        print(&result);
    }
    drop(target);
    Ok(())
}

/// Plays the demo's story through `producer` for `seconds` (or until
/// `stop`), a step every tick, in a thread of its own.
fn play(
    mut demo: Demo,
    mut producer: Producer,
    seconds: f64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<io::Result<(Published, usize)>> {
    std::thread::spawn(move || {
        let began = Instant::now();
        let mut ticks = 0u32;
        while began.elapsed().as_secs_f64() < seconds && !stop.load(Ordering::Relaxed) {
            ticks += 1;
            if let Some(wait) = (began + TICK * ticks).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            for output in demo.step() {
                producer.send(&output)?;
            }
        }
        Ok((producer.published, producer.sent))
    })
}

/// Latency from publish to read, overall and per topic; a snapshot that
/// was superseded before it went out has no reader and no sample.
fn figures(clients: &Clients, published: &Published) -> serde_json::Value {
    let mut all = Vec::new();
    let mut by_topic: HashMap<&str, Vec<u32>> = HashMap::new();
    for &(index, seq, at) in &clients.tally.samples {
        let topic = SOCKETS[index as usize % SOCKETS.len()];
        let Some(&sent) = published.get(&(topic.to_owned(), seq)) else {
            continue;
        };
        let us = (at.saturating_sub(sent) / 1000) as u32;
        all.push(us);
        by_topic.entry(topic).or_default().push(us);
    }
    all.sort_unstable();
    let mut topics = serde_json::Map::new();
    for (topic, mut samples) in by_topic {
        samples.sort_unstable();
        topics.insert(
            topic.to_owned(),
            serde_json::json!({
                "samples": samples.len(),
                "p50": percentile(&samples, 50.0),
                "p99": percentile(&samples, 99.0),
            }),
        );
    }
    serde_json::json!({
        "samples": all.len(),
        "p50": percentile(&all, 50.0),
        "p99": percentile(&all, 99.0),
        "max": all.last().copied().unwrap_or(0),
        "by_topic": topics,
    })
}

fn print(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.1}"));
    println!(
        "{} dashboards x 8 sockets = {} WebSockets{}, connected in {} ms",
        r["dashboards"],
        r["sockets"],
        if r["deflate"] == true {
            " offering permessage-deflate"
        } else {
            ""
        },
        f(&r["connect_ms"])
    );
    println!(
        "demo for {} s: {} publishes, {} deliveries ({} events), {} compressed",
        r["seconds"], r["publishes"], r["deliveries"], r["events"], r["compressed_deliveries"]
    );
    println!(
        "server CPU per delivery: {} ns; bytes on the wire per delivery: {}; compression {} us per message ({} messages)",
        f(&r["server_cpu_ns_per_delivery"]),
        f(&r["wire_bytes_per_delivery"]),
        f(&r["server_compress_us_per_message"]),
        r["server_compressions"],
    );
    let l = &r["latency_us"];
    println!(
        "publish to read, us: p50 {} p99 {} max {} ({} samples)",
        l["p50"], l["p99"], l["max"], l["samples"]
    );
    if let Some(topics) = l["by_topic"].as_object() {
        for (topic, t) in topics {
            println!(
                "  {topic:18} p50 {:>7} p99 {:>7} ({} samples)",
                t["p50"], t["p99"], t["samples"]
            );
        }
    }
    println!(
        "server RSS: {} KiB with every socket idle, {} KiB at the end",
        r["rss_kib_idle"], r["rss_kib_end"]
    );
}

/// Publishes the demo's outputs over one keep-alive connection, noting
/// when each snapshot's seq was sent.
struct Producer {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    published: Published,
    sent: usize,
}

impl Producer {
    fn connect(addr: SocketAddr) -> io::Result<Producer> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Producer {
            stream,
            reader,
            published: HashMap::new(),
            sent: 0,
        })
    }

    fn send(&mut self, output: &Output) -> io::Result<()> {
        let (path, body, topic) = match output {
            Output::Snapshot(topic, data) => (
                format!("/api/v1/publish/{topic}"),
                data.to_string(),
                Some(topic),
            ),
            Output::Event(kind, data) => (
                "/api/v1/broadcast".to_owned(),
                serde_json::json!({"type": kind, "data": data}).to_string(),
                None,
            ),
        };
        let at = now_ns();
        write!(
            self.stream,
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let reply = read_response(&mut self.reader)?;
        self.sent += 1;
        if let Some(topic) = topic {
            let seq = crate::client::number_after(&reply, b"\"seq\":").ok_or_else(|| {
                io::Error::other(format!("no seq in {}", String::from_utf8_lossy(&reply)))
            })?;
            self.published.insert((topic.clone(), seq), at);
        }
        Ok(())
    }
}
