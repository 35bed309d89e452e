//! The in-process publish path: how many publishes per second one
//! `Publisher` thread pushes into one topic with a live subscriber, and
//! proof that conflation leaves the subscriber on the newest snapshot with a
//! `seq` that counts every publish. Three ways in, each its own run: a
//! `Serialize` struct (`publish`), a `serde_json::Value` built per publish
//! (`publish` of `json!`, which costs the caller a map), and JSON text
//! (`publish_json`, parsed as I-JSON and written back compact).
//!
//! `cargo bench --bench publisher`; under `cargo test` it runs a short
//! version of the same check.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde::Serialize;
use statecast::{Config, Preset, Publisher, Server};

#[derive(Serialize)]
struct Tick {
    i: u64,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let publishes: u64 = if full { 4_000_000 } else { 50_000 };
    run("publish(&struct)", publishes, |p, i| {
        p.publish("ticks", &Tick { i })
    });
    run("publish(&json!)", publishes, |p, i| {
        p.publish("ticks", &serde_json::json!({ "i": i }))
    });
    let mut text = String::new();
    run("publish_json(&str)", publishes, move |p, i| {
        use std::fmt::Write as _;
        text.clear();
        let _ = write!(text, r#"{{"i":{i}}}"#);
        p.publish_json("ticks", &text)
    });
}

/// Publishes `{"i":0}` to `{"i":publishes-1}` with `publish` from this
/// thread, checks the subscriber ends on the last with every publish
/// counted, and prints the rate.
fn run(
    way: &str,
    publishes: u64,
    mut publish: impl FnMut(&Publisher, u64) -> Result<(), statecast::PublishError>,
) {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        preset: Preset::None,
        topics: vec!["ticks".into()],
        ..Config::default()
    };
    let server = Server::bind(config).unwrap();
    let addr = server.local_addr().unwrap();
    let publisher = server.publisher();
    let loop_thread = std::thread::spawn(move || server.run());

    publisher.publish_json("ticks", r#"{"i":-1}"#).unwrap();
    let mut ws = TcpStream::connect(addr).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    ws.write_all(
        b"GET /api/v1/ws/ticks HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    // The subscriber reads in its own thread until it sees the last publish.
    let last = format!(r#""data":{{"i":{}}}"#, publishes - 1);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut frames = 0u64;
        loop {
            let n = ws.read(&mut buf).expect("subscriber read");
            assert!(n > 0, "server closed the subscriber");
            seen.extend_from_slice(&buf[..n]);
            frames += buf[..n].iter().filter(|&&b| b == 0x81).count() as u64;
            if let Some(at) = seen.windows(last.len()).position(|w| w == last.as_bytes()) {
                let text = String::from_utf8_lossy(&seen[at.saturating_sub(60)..at + last.len()])
                    .into_owned();
                return (text, frames);
            }
            // Keep only a tail long enough to hold a split match.
            if seen.len() > 4096 {
                seen.drain(..seen.len() - 256);
            }
        }
    });

    let start = Instant::now();
    for i in 0..publishes {
        publish(&publisher, i).unwrap();
    }
    let elapsed = start.elapsed();
    let (last_message, frames) = reader.join().unwrap();
    let delivered_after = start.elapsed();
    publisher.shutdown().unwrap();
    loop_thread.join().unwrap().unwrap();

    let rate = publishes as f64 / elapsed.as_secs_f64();
    println!(
        "{way}: {publishes} publishes from one Publisher thread in {:.3} s: {:.0} publishes/s",
        elapsed.as_secs_f64(),
        rate
    );
    println!(
        "{way}: subscriber received about {frames} frames and the newest after {:.3} s",
        delivered_after.as_secs_f64()
    );
    // seq counts every publish, the initial one included.
    let seq = format!(r#""seq":{}"#, publishes + 1);
    assert!(
        last_message.contains(&seq),
        "the newest snapshot carries {seq}: {last_message}"
    );
    assert!(
        frames < publishes,
        "conflation: fewer frames than publishes"
    );
}
