//! What a client's frames cost the server per byte: a 4 KiB text fragment
//! followed by a stream of empty continuation frames, against a stream of
//! ordinary small text frames. The server's own CPU time (from
//! `/proc/PID/schedstat`) from the first byte to its answer (each stream
//! ends in a JSON ping, so the pong says every frame before it was
//! decoded), divided by the bytes on the wire. UTF-8 is checked only on
//! what each fragment brings, so a continuation costs about what any small
//! frame costs; the bench fails if it costs more than 4 times as much per
//! byte. Re-checking the whole fragment on every continuation made it
//! tens of times more.
//!
//! `cargo bench --bench fragments` (16 MiB of each, median of three);
//! under `cargo test` it runs 1 MiB of each once, against the debug build.
//! The fragment is Greek text: multibyte UTF-8, which is what a validator
//! spends the most time on.
//!
//! The bench and the server share one CPU, the first the bench may use
//! (so `taskset -c N` chooses it): the server then reads the stream in
//! whole socket buffers, not one wake-up per write, the same for both.

use std::io::Write;
use std::time::Instant;

use statecast::wire::protocol::encode_masked;
use statecast_testkit::*;

const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x81];

/// A JSON ping padded with Greek text to just under 4 KiB.
fn big_ping() -> String {
    let mut ping = String::from(r#"{"type":"ping","timestamp":7,"pad":""#);
    while ping.len() < 4096 - 16 {
        ping.push_str("κόσμε ");
    }
    ping.push_str(r#""}"#);
    assert!(ping.len() <= 4096);
    ping
}

/// One 4 KiB text fragment, then empty continuations until about `len`
/// bytes, the last one final: one message, a JSON ping.
fn continuations(len: usize) -> Vec<u8> {
    let mut wire = encode_masked(0x01, big_ping().as_bytes(), MASK);
    let empty = encode_masked(0x00, b"", MASK);
    while wire.len() < len {
        wire.extend_from_slice(&empty);
    }
    wire.extend(encode_masked(0x80, b"", MASK));
    wire
}

/// Small whole text frames until about `len` bytes, then a JSON ping.
fn small_frames(len: usize) -> Vec<u8> {
    let frame = encode_masked(0x81, b"hi", MASK);
    let mut wire = Vec::with_capacity(len + 64);
    while wire.len() < len {
        wire.extend_from_slice(&frame);
    }
    let ping = br#"{"type":"ping","timestamp":7}"#;
    wire.extend(encode_masked(0x81, ping, MASK));
    wire
}

/// Sends `wire` on a fresh WebSocket and waits for its pong; returns the
/// server's CPU for it.
fn cost(server: &Binary, wire: &[u8]) -> u64 {
    let mut ws = server.subscribe("fragments");
    let before = server.cpu_ns();
    ws.write_all(wire).unwrap();
    let pong = read_data_frame(&mut ws);
    assert_eq!(pong.json()["type"], "pong", "{pong:?}");
    server.cpu_ns() - before
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (len, runs) = if full { (16 << 20, 3) } else { (1 << 20, 1) };
    pin_to_one_cpu();
    // The fragment bound is lifted: what is measured is the decoding of
    // each frame, not the close that ends such a client by default.
    let server = Binary::start(&["--any-topic", "--max-client-fragments", "1000000000"]);
    let started = Instant::now();
    println!("| stream | bytes on the wire | server CPU (median of {runs}) | per byte |");
    println!("|---|---|---|---|");
    let mut per_byte = Vec::new();
    for (name, wire) in [
        (
            "4 KiB text fragment, then empty continuations",
            continuations(len),
        ),
        ("small text frames (2-byte payload)", small_frames(len)),
    ] {
        let ns = median((0..runs).map(|_| cost(&server, &wire)).collect());
        let each = ns as f64 / wire.len() as f64;
        println!(
            "| {name} | {:.1} MiB | {:.1} ms | {each:.2} ns |",
            wire.len() as f64 / (1 << 20) as f64,
            ns as f64 / 1e6
        );
        per_byte.push(each);
    }
    let ratio = per_byte[0] / per_byte[1];
    println!(
        "\na byte of continuations cost {ratio:.2}x a byte of small frames (the bound: 4x); {:.0} ms in all",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        ratio <= 4.0,
        "continuation frames cost {ratio:.1}x small frames per byte"
    );
}
