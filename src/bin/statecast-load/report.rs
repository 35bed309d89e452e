//! A run from start to figures: connect, warm up, publish, receive, measure
//! the floor, report; and `--memory`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::Events;

use crate::client::Clients;
use crate::floor::{Floor, measure_floor};
use crate::measure::{now_ns, percentile};
use crate::options::Options;
use crate::schedule::{PublishReport, compression, http_post, publish_inproc, publisher};
use crate::target::{Target, rss_kib, start_inproc, start_target};

/// The connect phase: how long, and how busy each side was during it.
struct Connect {
    elapsed: Duration,
    server_ns: Option<u64>,
    own_ns: u64,
    /// The times the server's loop slept during the phase.
    server_sleeps: Option<u64>,
    /// Connections the server closed before their snapshot.
    unanswered: usize,
}

impl Connect {
    /// The share of the phase a side spent on the CPU: a side busy nearly
    /// all of it set the connect time.
    fn busy(&self, cpu_ns: u64) -> f64 {
        cpu_ns as f64 / self.elapsed.as_nanos().max(1) as f64
    }
}

/// What the publishing phase came to.
struct Received {
    report: PublishReport,
    publish_start: u64,
    last_delivery_ns: u64,
    server_cpu: Option<u64>,
    own_cpu: u64,
    healthy_missing_last: usize,
    /// Sorted, in microseconds.
    latencies: Vec<u32>,
    deliveries: u64,
    out_of_order: u64,
    wire_bytes: u64,
    compressed: u64,
    /// The server's compression time per compressed message, when it has
    /// a `/metrics` to say.
    compress_us: Option<f64>,
}

/// Runs one measurement as the options say, and prints its figures.
pub(crate) fn run(mut o: Options) -> io::Result<()> {
    now_ns();
    if o.history {
        // The fixture, the index and the time stamp.
        o.payload = statecast::providers::demo::history_fixture(50, 7)
            .to_string()
            .len()
            + 30;
    }
    let target = if o.inproc {
        if !o.memory.is_empty() {
            return Err(io::Error::other(
                "--memory measures a server process of its own; drop --publish inproc",
            ));
        }
        start_inproc(&o)?
    } else {
        start_target(&o)?
    };
    // Every client's first message is this snapshot; publishes come after.
    http_post(target.addr, "/api/v1/publish/load", r#"{"init":true}"#)?;
    if !o.memory.is_empty() {
        return memory(&o, &target);
    }
    let stalled = ((o.connections as f64) * o.stalled / 100.0).round() as usize;
    let mut clients = Clients::new("load", target.addr, o.deflate)?;
    let connect = connect(&o, &target, &mut clients, stalled)?;
    clients.warm_up(target.addr, &o)?;
    let received = publish_and_receive(&o, &target, &mut clients, stalled)?;
    // The floor needs as many sockets again: free the clients' first.
    drop(clients);
    let floor = if o.floor {
        Some(measure_floor(&o, o.payload + 60)?)
    } else {
        None
    };
    let result = figures(&o, stalled, &connect, &received, floor.as_ref());
    if o.json {
        println!("{result}");
    } else {
        print_report(&result);
    }
    warn_if_generator_bound(&result, &connect);
    Ok(())
}

fn connect(
    o: &Options,
    target: &Target,
    clients: &mut Clients,
    stalled: usize,
) -> io::Result<Connect> {
    clients.prepare(o.connections)?;
    let start = Instant::now();
    let mark = target.cpu_mark();
    let sleeps = target.server_sleeps();
    clients.open(target.addr, o.connections, stalled, Duration::from_secs(60))?;
    let elapsed = start.elapsed();
    let (server_ns, own_ns) = target.cpu_since(&mark);
    let server_sleeps = match (target.server_sleeps(), sleeps) {
        (Some(after), Some(before)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    Ok(Connect {
        elapsed,
        server_ns,
        own_ns,
        server_sleeps,
        unanswered: clients.tally.unanswered,
    })
}

/// Publishes in a thread of its own and receives until every healthy client
/// has the last message, or things go quiet for a second after the
/// publisher is done.
fn publish_and_receive(
    o: &Options,
    target: &Target,
    clients: &mut Clients,
    stalled: usize,
) -> io::Result<Received> {
    let mark = target.cpu_mark();
    let stop = Arc::new(AtomicBool::new(false));
    let publish_start = now_ns();
    let publishing = {
        let addr = o.publish_to.unwrap_or(target.addr);
        let (o, stop) = (o.clone(), stop.clone());
        let inproc = target.inproc.clone();
        std::thread::spawn(move || match inproc {
            Some(p) => publish_inproc(&p, &o, stop),
            None => publisher(addr, &o, stop),
        })
    };
    let healthy = o.connections - stalled;
    let last_index = o.messages as u64 - 1;
    let has_last = |c: &&crate::client::Client| !c.stalled && c.last == Some(last_index);
    let mut events = Events::with_capacity(4096);
    let mut quiet_since: Option<Instant> = None;
    loop {
        clients.turn(&mut events, Some(Duration::from_millis(20)))?;
        if clients.clients.iter().filter(has_last).count() == healthy {
            break;
        }
        if publishing.is_finished() {
            if !events.is_empty() {
                quiet_since = None;
            } else if quiet_since.get_or_insert_with(Instant::now).elapsed()
                > Duration::from_secs(1)
            {
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let report = publishing
        .join()
        .map_err(|_| io::Error::other("publisher panicked"))??;
    let (server_cpu, own_cpu) = target.cpu_since(&mark);
    let compress_us = compression(target.addr).map(|(_, us)| us);
    let healthy_missing_last = healthy - clients.clients.iter().filter(has_last).count();
    let tally = &mut clients.tally;
    tally.latencies_us.sort_unstable();
    Ok(Received {
        report,
        publish_start,
        last_delivery_ns: tally.last_delivery_ns,
        server_cpu,
        own_cpu,
        healthy_missing_last,
        latencies: std::mem::take(&mut tally.latencies_us),
        deliveries: tally.deliveries,
        out_of_order: tally.out_of_order,
        wire_bytes: tally.wire_bytes,
        compressed: tally.compressed,
        compress_us,
    })
}

/// Every figure of a run, as the JSON `--json` prints.
fn figures(
    o: &Options,
    stalled: usize,
    connect: &Connect,
    r: &Received,
    floor: Option<&Floor>,
) -> serde_json::Value {
    let run_ns = r.last_delivery_ns.saturating_sub(r.publish_start).max(1);
    let per_delivery = r.server_cpu.map(|c| c as f64 / r.deliveries.max(1) as f64);
    let window = r.report.elapsed.as_nanos().max(run_ns as u128).max(1);
    let paced = floor.and_then(|f| f.paced_us);
    let latencies = &r.latencies;
    serde_json::json!({
        "connections": o.connections,
        "stalled": stalled,
        "payload": o.payload,
        "kind": if o.event { "event" } else { "snapshot" },
        "rate": o.rate,
        "publishes": r.report.sent,
        "publish_seconds": r.report.elapsed.as_secs_f64(),
        "publishes_per_second": r.report.sent as f64 / r.report.elapsed.as_secs_f64(),
        "connect_ms": connect.elapsed.as_secs_f64() * 1e3,
        "connect_server_busy": connect.server_ns.map(|ns| connect.busy(ns)),
        "connect_generator_busy": connect.busy(connect.own_ns),
        // CPU per connection, which other work on the machine does not
        // move the way it moves the time.
        "connect_server_us_per_connection": connect.server_ns.map(|ns| ns as f64 / 1e3 / o.connections.max(1) as f64),
        "connect_generator_us_per_connection": connect.own_ns as f64 / 1e3 / o.connections.max(1) as f64,
        "connect_server_sleeps": connect.server_sleeps,
        "connect_unanswered": connect.unanswered,
        "warmup": o.warmup,
        "deliveries": r.deliveries,
        "expected_deliveries": (o.connections - stalled) as u64 * r.report.sent as u64,
        "healthy_missing_last": r.healthy_missing_last,
        "out_of_order": r.out_of_order,
        "deliveries_per_second": r.deliveries as f64 / (run_ns as f64 / 1e9),
        "latency_us": {
            "p50": percentile(latencies, 50.0),
            "p99": percentile(latencies, 99.0),
            "p999": percentile(latencies, 99.9),
            "max": latencies.last().copied().unwrap_or(0),
        },
        "server_cpu_ns_per_delivery": per_delivery,
        "floor_ns_per_write": floor.map(|f| f.per_write_ns),
        "floor_ns_per_batched_frame": floor.map(|f| f.batched_ns),
        "floor_round_ms": floor.map(|f| f.round_wall_ns / 1e6),
        "floor_delivered_ms": floor.map(|f| f.round_delivered_ns / 1e6),
        "floor_paced_p50_us": paced.map(|p| p.0),
        "floor_paced_p99_us": paced.map(|p| p.1),
        "floor_paced_ns_per_write": paced.map(|p| p.2),
        "ratio_to_paced_floor": per_delivery.zip(paced).map(|(p, f)| p / f.2),
        "ratio_to_floor": per_delivery.zip(floor).map(|(p, f)| p / f.per_write_ns),
        "generator_busy": r.own_cpu as f64 / window as f64,
        "data": if o.history { "history" } else { "filler" },
        "deflate": o.deflate,
        "compressed_deliveries": r.compressed,
        "wire_bytes_per_delivery": r.wire_bytes as f64 / r.deliveries.max(1) as f64,
        "server_compress_us_per_message": r.compress_us,
    })
}

/// Says so when the generator, not the server, may have been the limit.
fn warn_if_generator_bound(result: &serde_json::Value, connect: &Connect) {
    let own_busy = result["generator_busy"].as_f64().unwrap_or(0.0);
    if own_busy > 0.9 {
        eprintln!(
            "warning: the generator was busy {:.0}% of the run: it, not the server, may be the limit",
            own_busy * 100.0
        );
    }
    // schedstat can lag a running thread by a scheduler tick: too coarse
    // for a phase of a few milliseconds.
    let connect_busy = connect.busy(connect.own_ns);
    if connect_busy > 0.9 && connect.elapsed > Duration::from_millis(100) {
        eprintln!(
            "warning: the generator was busy {:.0}% of the connect phase: it, not the server, may have set the connect time",
            connect_busy * 100.0
        );
    }
}

/// The `--json` figures for a reader, a paragraph per question: what ran,
/// what arrived, and what it cost against the floor.
pub(crate) fn print_report(r: &serde_json::Value) {
    print_run(r);
    print_deliveries(r);
    print_cost(r);
}

/// A figure to two places, or `-` where the run could not measure it.
fn fixed(v: &serde_json::Value) -> String {
    v.as_f64().map_or("-".to_owned(), |x| format!("{x:.2}"))
}

/// A share as a whole percentage, or `-` where the run could not measure it.
fn percent(v: &serde_json::Value) -> String {
    v.as_f64()
        .map_or("-".to_owned(), |x| format!("{:.0}", x * 100.0))
}

/// What was run: the load's shape, the connect phase and the publishing.
fn print_run(r: &serde_json::Value) {
    println!(
        "{} connections ({} stalled), {} B {} payload, rate {}/s",
        r["connections"],
        r["stalled"],
        r["payload"],
        r["kind"].as_str().unwrap_or(""),
        r["rate"]
    );
    println!(
        "connect+handshake+snapshot: {} ms (server busy {}%, generator busy {}%)",
        fixed(&r["connect_ms"]),
        percent(&r["connect_server_busy"]),
        percent(&r["connect_generator_busy"]),
    );
    println!("warm-up publishes before measuring: {}", r["warmup"]);
    println!(
        "publishes: {} in {} s ({} /s)",
        r["publishes"],
        fixed(&r["publish_seconds"]),
        fixed(&r["publishes_per_second"])
    );
}

/// What the clients received: how much, how fast, in how many bytes.
fn print_deliveries(r: &serde_json::Value) {
    println!(
        "deliveries: {} of {} sent to healthy clients ({} lost to conflation or loss), {} out of order, {} healthy clients without the last",
        r["deliveries"],
        r["expected_deliveries"],
        r["expected_deliveries"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(r["deliveries"].as_u64().unwrap_or(0)),
        r["out_of_order"],
        r["healthy_missing_last"]
    );
    println!("deliveries/s: {}", fixed(&r["deliveries_per_second"]));
    println!(
        "bytes on the wire per delivery: {} ({} of {} deliveries compressed; server compression {} us per message)",
        fixed(&r["wire_bytes_per_delivery"]),
        r["compressed_deliveries"],
        r["deliveries"],
        fixed(&r["server_compress_us_per_message"]),
    );
    let l = &r["latency_us"];
    println!(
        "latency us: p50 {} p99 {} p99.9 {} max {}",
        l["p50"], l["p99"], l["p999"], l["max"]
    );
}

/// The server's CPU per delivery, set beside the floor (the bare cost of a
/// write) when one was measured, since a figure alone says little.
fn print_cost(r: &serde_json::Value) {
    if r["floor_ns_per_write"].is_null() {
        println!(
            "server CPU per delivery: {} ns (no floor measured)",
            fixed(&r["server_cpu_ns_per_delivery"])
        );
        return;
    }
    println!(
        "server CPU per delivery: {} ns; floor {} ns per write ({} ns batched x10); ratio {}",
        fixed(&r["server_cpu_ns_per_delivery"]),
        fixed(&r["floor_ns_per_write"]),
        fixed(&r["floor_ns_per_batched_frame"]),
        fixed(&r["ratio_to_floor"])
    );
    println!(
        "floor: {} ms to write one frame to every socket, {} ms until all were read",
        fixed(&r["floor_round_ms"]),
        fixed(&r["floor_delivered_ms"])
    );
    if !r["floor_paced_p99_us"].is_null() {
        println!(
            "floor at the same pacing: latency us p50 {} p99 {}, {} ns per write (ratio {})",
            r["floor_paced_p50_us"],
            r["floor_paced_p99_us"],
            fixed(&r["floor_paced_ns_per_write"]),
            fixed(&r["ratio_to_paced_floor"])
        );
    }
}

/// Server RSS at increasing connection counts; the slope is the cost of
/// one idle connection.
pub(crate) fn memory(o: &Options, target: &Target) -> io::Result<()> {
    let pid = target
        .pid
        .ok_or_else(|| io::Error::other("--memory needs a spawned server or --server-pid"))?;
    let mut clients = Clients::new("load", target.addr, o.deflate)?;
    let base = rss_kib(pid);
    let mut points = vec![(0usize, base)];
    for &n in &o.memory {
        let more = n.saturating_sub(clients.clients.len());
        clients.open(target.addr, more, 0, Duration::from_secs(120))?;
        // Let the server settle, then read its RSS.
        let mut events = Events::with_capacity(1024);
        clients.turn(&mut events, Some(Duration::from_millis(300)))?;
        // Connections the server closed are not held: counted out.
        points.push((n - clients.tally.unanswered.min(n), rss_kib(pid)));
    }
    let (n0, r0) = points[1.min(points.len() - 1)];
    let (n1, r1) = *points.last().expect("points");
    let slope = if n1 > n0 {
        (r1 as f64 - r0 as f64) * 1024.0 / (n1 - n0) as f64
    } else {
        0.0
    };
    let result = serde_json::json!({
        "points": points.iter().map(|(n, r)| serde_json::json!({"connections": n, "rss_kib": r})).collect::<Vec<_>>(),
        "bytes_per_idle_connection": slope,
    });
    if o.json {
        println!("{result}");
    } else {
        for (n, r) in &points {
            println!("{n:>6} connections: {r} KiB RSS");
        }
        println!("slope: {slope:.0} bytes per idle connection");
    }
    Ok(())
}
