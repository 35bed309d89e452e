//! docs/protocol.md held to the binary: every `<!-- example: NAME -->`
//! block is run against the real `statecast` (on port 0) and the messages
//! it answers are compared, as parsed JSON, with the doc's; and the doc's
//! close-code and HTTP-status tables list every code in
//! `wire::protocol::code` and every status the server's code sends.
//!
//! An example block is a fenced `text` block, one step a line:
//!
//! - `$ statecast ARGS`: the server's command line (first; `--listen`
//!   is the test's, on port 0);
//! - `GET PATH` or `POST PATH BODY`, then `Name: value` header lines: a
//!   request. A `GET` of `/api/v1/ws...` is a WebSocket upgrade and of
//!   `/api/v1/sse...` an event stream; either becomes the stream the
//!   next `<` lines read, and stays open to the end of the example. Any
//!   other request is one exchange on a connection of its own;
//! - `< STATUS BODY` right after a request: its HTTP answer (the body
//!   compared as JSON when it is JSON, else as text without its newline).
//!   Left out, a stream must open (101 or 200) and a plain request get 200;
//! - `> TEXT`: a text message the client sends on the open WebSocket;
//! - `< JSON`: the next message on the stream (a WebSocket text frame, or
//!   an SSE event's data); on SSE, `< event: NAME` and `< id: ID` lines
//!   before it say the event's name and `id:`, and their absence says the
//!   event has none.
//!
//! A placeholder stands only where a value varies from run to run: the
//! JSON string `"<any>"` in an expected message matches any value at
//! that place (and the key must be there).

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;
use statecast_testkit::*;

const DOC: &str = include_str!("../docs/protocol.md");

/// The marker before each example's fenced block.
const MARKER: &str = "<!-- example: ";

/// Every example in the doc: its name and its block's lines.
fn examples() -> Vec<(&'static str, Vec<&'static str>)> {
    DOC.split(MARKER)
        .skip(1)
        .map(|part| {
            let (name, rest) = part.split_once(" -->\n").expect("a closed marker");
            let body = rest
                .strip_prefix("```text\n")
                .unwrap_or_else(|| panic!("example {name}: no ```text block right after"));
            let text = body.split("\n```").next().expect("a closed block");
            (name, text.lines().collect())
        })
        .collect()
}

/// The stream the `<` lines read.
enum Stream {
    None,
    Ws(TcpStream),
    Sse(TcpStream),
}

/// Whether `actual` is `expected`, `"<any>"` matching any value.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(s), _) if s == "<any>" => true,
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| matches(e, a))
        }
        _ => expected == actual,
    }
}

/// An HTTP body as the doc writes it: JSON when it parses, else its text.
fn same_body(expected: &str, actual: &str) -> bool {
    match (
        serde_json::from_str::<Value>(expected),
        serde_json::from_str::<Value>(actual),
    ) {
        (Ok(e), Ok(a)) => matches(&e, &a),
        _ => expected == actual.trim_end_matches('\n'),
    }
}

/// One SSE event, its fields in order, skipping keep-alive comments.
fn next_event(s: &mut TcpStream) -> Vec<(String, String)> {
    loop {
        let mut text = Vec::new();
        let mut byte = [0u8];
        while !text.ends_with(b"\n\n") {
            s.read_exact(&mut byte).expect("reading an event");
            text.push(byte[0]);
        }
        let fields: Vec<(String, String)> = String::from_utf8(text)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(':'))
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap_or((l, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        if !fields.is_empty() {
            return fields;
        }
    }
}

/// A request `line` (`METHOD PATH [BODY]`) with `headers`, sent on a new
/// connection to `server`; the response's status and body, and the
/// connection, as a stream when it is one.
fn send_request(server: &Binary, line: &str, headers: &[&str]) -> (u16, String, Stream) {
    let mut parts = line.splitn(3, ' ');
    let method = parts.next().unwrap();
    let path = parts.next().expect("a path");
    let body = parts.next().unwrap_or("");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    let ws = method == "GET" && path.starts_with("/api/v1/ws");
    let sse = method == "GET" && path.starts_with("/api/v1/sse");
    if ws {
        head.push_str(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n"
        ));
    } else if sse {
        head.push_str("Accept: text/event-stream\r\n");
    } else {
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    if !ws && !sse {
        head.push_str(body);
    }
    let mut s = server.connect();
    s.write_all(head.as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut s);
    let body = String::from_utf8_lossy(&body).into_owned();
    let stream = match (status, ws, sse) {
        (101, true, _) => Stream::Ws(s),
        (200, _, true) => Stream::Sse(s),
        _ => Stream::None,
    };
    (status, body, stream)
}

/// A line's expected HTTP answer, `STATUS BODY`, if it is one.
fn http_answer(line: &str) -> Option<(u16, &str)> {
    let rest = line.strip_prefix("< ")?;
    let (code, body) = rest.split_once(' ').unwrap_or((rest, ""));
    (code.len() == 3)
        .then(|| code.parse().ok())
        .flatten()
        .map(|c| (c, body))
}

/// Runs one example; what differs from the doc, if anything.
fn run(name: &str, lines: &[&str]) -> Result<(), String> {
    let args = lines
        .first()
        .and_then(|l| l.strip_prefix("$ statecast"))
        .ok_or_else(|| format!("{name}: the first line is not `$ statecast ARGS`"))?;
    let args: Vec<&str> = args.split_whitespace().collect();
    let server = Binary::start(&args);
    let mut stream = Stream::None;
    let mut i = 1;
    while let Some(line) = lines.get(i) {
        let at = format!("{name}, line {:?}", line);
        i += 1;
        if line.starts_with("GET ") || line.starts_with("POST ") {
            let mut headers = Vec::new();
            while let Some(h) = lines.get(i).filter(|h| {
                h.split_once(": ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            }) {
                headers.push(*h);
                i += 1;
            }
            let (status, body, opened) = send_request(&server, line, &headers);
            match lines.get(i).and_then(|l| http_answer(l)) {
                Some((want, want_body)) => {
                    i += 1;
                    if status != want || !same_body(want_body, &body) {
                        return Err(format!(
                            "{at}: the doc says `{want} {want_body}`, the server answered `{status} {}`",
                            body.trim_end()
                        ));
                    }
                }
                None => {
                    let streaming =
                        line.starts_with("GET /api/v1/ws") || line.starts_with("GET /api/v1/sse");
                    if streaming && matches!(opened, Stream::None) || !streaming && status != 200 {
                        return Err(format!("{at}: answered {status} {}", body.trim_end()));
                    }
                }
            }
            if !matches!(opened, Stream::None) {
                stream = opened;
            }
        } else if let Some(text) = line.strip_prefix("> ") {
            let Stream::Ws(s) = &mut stream else {
                return Err(format!("{at}: no WebSocket open to send on"));
            };
            s.write_all(&client_frame(0x81, text.as_bytes())).unwrap();
        } else if let Some(expected) = line.strip_prefix("< ") {
            match &mut stream {
                Stream::None => return Err(format!("{at}: no stream open to read")),
                Stream::Ws(s) => {
                    let frame = read_data_frame(s);
                    let got = String::from_utf8_lossy(&frame.payload).into_owned();
                    if frame.opcode != 0x1 {
                        return Err(format!(
                            "{at}: got a frame of opcode {}: {got}",
                            frame.opcode
                        ));
                    }
                    compare(&at, expected, &got)?;
                }
                Stream::Sse(s) => {
                    // The event's lines in the doc: `event:`/`id:` lines,
                    // then its data.
                    let mut want = vec![expected];
                    while !want.last().is_some_and(|l| l.starts_with('{')) {
                        let next = lines
                            .get(i)
                            .and_then(|l| l.strip_prefix("< "))
                            .ok_or_else(|| format!("{at}: an SSE event without its data"))?;
                        want.push(next);
                        i += 1;
                    }
                    let got = next_event(s);
                    let data = want.pop().unwrap_or_default();
                    let fields: Vec<(String, String)> = want
                        .iter()
                        .map(|l| {
                            let (k, v) = l.split_once(": ").unwrap_or((l, ""));
                            (k.to_owned(), v.to_owned())
                        })
                        .collect();
                    let (got_data, got_fields): (Vec<_>, Vec<_>) =
                        got.iter().cloned().partition(|(k, _)| k == "data");
                    if fields != got_fields {
                        return Err(format!(
                            "{at}: the doc's event has {fields:?}, the server's {got_fields:?}"
                        ));
                    }
                    let got_data: Vec<String> = got_data.into_iter().map(|(_, v)| v).collect();
                    compare(&at, data, &got_data.join("\n"))?;
                }
            }
        } else if !line.trim().is_empty() {
            return Err(format!("{at}: not a step"));
        }
    }
    Ok(())
}

/// `got` is the doc's `expected` message, as JSON.
fn compare(at: &str, expected: &str, got: &str) -> Result<(), String> {
    let want: Value =
        serde_json::from_str(expected).map_err(|e| format!("{at}: the doc's JSON: {e}"))?;
    let actual: Value =
        serde_json::from_str(got).map_err(|e| format!("{at}: the server sent {got:?}: {e}"))?;
    if matches(&want, &actual) {
        Ok(())
    } else {
        Err(format!("{at}: the server sent {got}"))
    }
}

/// Every example in docs/protocol.md, run against the binary, gets the
/// messages and answers the doc shows; a mismatch names the example, its
/// line and what the server sent instead.
#[test]
fn every_example_in_the_protocol_doc_is_what_the_binary_does() {
    let examples = examples();
    assert!(
        examples.len() >= 10,
        "docs/protocol.md has {} examples",
        examples.len()
    );
    let mut names = std::collections::BTreeSet::new();
    let failures: Vec<String> = examples
        .iter()
        .inspect(|(name, _)| assert!(names.insert(*name), "two examples named {name}"))
        .filter_map(|(name, lines)| run(name, lines).err())
        .collect();
    assert!(
        failures.is_empty(),
        "docs/protocol.md differs from the binary:\n{}",
        failures.join("\n")
    );
}

/// The placeholder `"<any>"` matches any value where it stands, and only
/// there: the key must be present, and every other value must be equal.
#[test]
fn the_placeholder_matches_any_value_at_its_place_only() {
    let want = serde_json::json!({"type": "pong", "timestamp": "<any>"});
    assert!(matches(
        &want,
        &serde_json::json!({"type": "pong", "timestamp": 17})
    ));
    assert!(matches(
        &want,
        &serde_json::json!({"type": "pong", "timestamp": {"a": [1]}})
    ));
    assert!(!matches(&want, &serde_json::json!({"type": "pong"})));
    assert!(!matches(
        &want,
        &serde_json::json!({"type": "ping", "timestamp": 17})
    ));
    assert!(!matches(
        &want,
        &serde_json::json!({"type": "pong", "timestamp": 17, "extra": 1})
    ));
}

/// The cells of the first column of the table under `heading`.
fn first_column(heading: &str) -> Vec<&'static str> {
    let (_, section) = DOC
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/protocol.md has no `{heading}`"));
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| row.split(" | ").next())
        .map(|cell| cell.trim_start_matches("| "))
        .collect()
}

/// Every `.rs` file under `dir`, its text up to its unit tests.
fn sources(dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            out.push(code.to_owned());
        }
    }
}

/// The WebSocket close-code table lists every code in
/// `wire::protocol::code`, and no code that is not there.
#[test]
fn the_close_code_table_lists_every_code() {
    let source = include_str!("../src/wire/protocol.rs");
    let module = source
        .split_once("pub mod code {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .expect("`pub mod code` in src/wire/protocol.rs")
        .0;
    let codes: Vec<&str> = module
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": u16 = "))
        .map(|(_, v)| v.trim_end_matches(';'))
        .collect();
    assert!(codes.len() >= 10, "codes read: {codes:?}");
    let cells = first_column("### WebSocket close codes");
    let listed: Vec<&str> = cells
        .iter()
        .flat_map(|c| c.split('`').skip(1).step_by(2))
        .collect();
    let missing: Vec<_> = codes.iter().filter(|c| !listed.contains(c)).collect();
    let extra: Vec<_> = listed.iter().filter(|c| !codes.contains(c)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/protocol.md's close-code table lacks {missing:?} and lists {extra:?}, \
         which src/wire/protocol.rs's `code` does not declare"
    );
}

/// The HTTP-status table lists every status the server's code sends, by
/// code and reason phrase (`404 Not Found`): each `Status(...)` in src/,
/// a named one only if the name is used beyond its declaration.
#[test]
fn the_http_table_lists_every_status_the_server_sends() {
    let mut files = Vec::new();
    sources(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let all = files.join("\n");
    let mut sent = Vec::new();
    for line in all.lines() {
        let Some((before, after)) = line.split_once("Status(") else {
            continue;
        };
        let Some((code, rest)) = after.split_once(", \"") else {
            continue;
        };
        let Some((phrase, _)) = rest.split_once('"') else {
            continue;
        };
        if code.len() != 3 || !code.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        // `const NAME: Status = Status(..)`: sent only where NAME is used.
        if let Some(name) = before
            .split("const ")
            .nth(1)
            .and_then(|d| d.split(':').next())
        {
            let uses = all
                .match_indices(name)
                .filter(|(at, _)| {
                    let next = all[at + name.len()..].chars().next();
                    let prev = all[..*at].chars().next_back();
                    !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !prev.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
                .count();
            if uses < 2 {
                continue;
            }
        }
        sent.push(format!("`{code} {phrase}`"));
    }
    assert!(sent.len() >= 15, "statuses read: {sent:?}");
    let cells = first_column("### HTTP statuses");
    let missing: Vec<_> = sent
        .iter()
        .filter(|s| !cells.contains(&s.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/protocol.md's HTTP-status table lacks {missing:?}"
    );
}
