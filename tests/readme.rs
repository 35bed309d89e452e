//! The README's quickstart, run as it is written: its `statecast` command
//! starts the real binary (on port 0 rather than 8002), its curl command,
//! its Python publisher and its JavaScript one (in Node) run with that
//! port put in, and subscribers on the exact URLs of its page snippet, a
//! WebSocket and an SSE stream, and its `curl -N` watching from a
//! terminal, get what they published. The page snippet itself runs in Chromium
//! (`tests/browser/readme.test.mjs`, from `scripts/test.sh`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};

use serde_json::{Value, json};
use statecast_testkit::*;

const README: &str = include_str!("../README.md");

/// Where the README's snippets say the server is.
const README_ADDR: &str = "127.0.0.1:8002";

/// The text of the fenced block after `<!-- readme: NAME -->`, and the
/// line (1-based) its closing fence is on.
fn block(name: &str) -> (&'static str, usize) {
    let marker = format!("<!-- readme: {name} -->\n```");
    let (before, rest) = README
        .split_once(&marker)
        .unwrap_or_else(|| panic!("the README has no `{name}` block"));
    let (_, body) = rest.split_once('\n').expect("a fenced block");
    let text = body.split("\n```").next().expect("a closed block");
    let end = before.lines().count() + 3 + text.lines().count();
    (text, end)
}

/// The one URL in `text` that starts with `scheme` and names the README's
/// address, as the path after it.
fn path_after(text: &str, scheme: &str) -> String {
    let start = format!("{scheme}{README_ADDR}");
    let rest = text
        .split_once(&start)
        .unwrap_or_else(|| panic!("no {start} URL in {text}"))
        .1;
    rest.split('"').next().expect("a quoted URL").to_owned()
}

/// Runs `program` with `args`; its stdout, which it must exit 0 with.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Opens a WebSocket at `path` and reads the 101.
fn websocket(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = connect_to(addr);
    let request = upgrade_request("prices").replacen("/api/v1/ws/prices", path, 1);
    stream.write_all(request.as_bytes()).unwrap();
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(status, 101, "{path}: {head}");
    stream
}

/// Opens an SSE stream at `path` and reads its head.
fn event_stream(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = connect_to(addr);
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {head}");
    stream
}

/// The next SSE event's data as JSON, skipping comments.
fn next_event(stream: &mut TcpStream) -> Value {
    loop {
        let mut text = Vec::new();
        let mut byte = [0u8];
        while !text.ends_with(b"\n\n") {
            stream.read_exact(&mut byte).expect("reading an event");
            text.push(byte[0]);
        }
        let text = String::from_utf8(text).unwrap();
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        if !data.is_empty() {
            return serde_json::from_str(&data.join("\n")).unwrap();
        }
    }
}

/// A command left running (the README's `curl -N`), killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` (one line, no quoting) and hands each SSE `data:` it
/// prints, as JSON, to the receiver.
fn watch(command: &str) -> (Running, Receiver<Value>) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let (program, args) = words.split_first().expect("a command");
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data: ") {
                let _ = tx.send(serde_json::from_str(data).expect("JSON data"));
            }
        }
    });
    (Running(child), rx)
}

/// The quickstart works as written: the command starts a server, curl's
/// answer is the one the README shows, Python's publish is the second and
/// the JavaScript one the third, and a WebSocket and an SSE subscriber on
/// the page snippet's URLs, and the `curl -N` that watches from a
/// terminal, get the snapshot at once and then each update; then the
/// Publishing section's curl lines, against that same server, are
/// answered as they show.
#[test]
fn the_readme_quickstart_runs_as_written() {
    let (serve, _) = block("serve");
    let args: Vec<&str> = serve
        .lines()
        .find_map(|l| l.strip_prefix("statecast "))
        .expect("a statecast command")
        .split_whitespace()
        .collect();
    let server = Binary::start(&args);
    let here = server.addr.to_string();

    let (curl, _) = block("curl");
    let command: String = curl
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let shown = curl
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .expect("curl's answer, shown");
    let answer = run("sh", &["-c", &command.replace(README_ADDR, &here)]);
    assert_eq!(answer.trim(), shown, "curl's answer is not the README's");
    let first: Value = serde_json::from_str(
        command
            .split_once("-d '")
            .and_then(|(_, rest)| rest.split('\'').next())
            .expect("curl's -d body"),
    )
    .unwrap();

    let (page, _) = block("page");
    let ws_path = path_after(page, "ws://");
    let sse_path = path_after(page, "http://");
    let mut ws = websocket(server.addr, &ws_path);
    let mut sse = event_stream(server.addr, &sse_path);
    let snapshot = json!({"type": "prices_update", "seq": 1, "data": first});
    assert_eq!(
        read_data_frame(&mut ws).json(),
        snapshot,
        "the WebSocket's snapshot"
    );
    assert_eq!(next_event(&mut sse), snapshot, "the SSE stream's snapshot");
    let (watched, _) = block("watch");
    let (_curl, from_curl) = watch(watched.trim().replace(README_ADDR, &here).as_str());
    assert_eq!(
        from_curl
            .recv_timeout(DEADLINE)
            .expect("curl -N printed nothing"),
        snapshot,
        "curl -N's snapshot"
    );

    let (python, _) = block("python");
    let script = std::env::temp_dir().join(format!("statecast-readme-{}.py", std::process::id()));
    std::fs::write(&script, python.replace(README_ADDR, &here)).unwrap();
    let printed = run("python3", &[script.to_str().unwrap()]);
    let _ = std::fs::remove_file(&script);
    assert!(printed.contains("'seq': 2"), "Python's publish: {printed}");
    let second: Value = serde_json::from_str(
        python
            .split_once("json.dumps(")
            .and_then(|(_, rest)| rest.split(')').next())
            .expect("the value Python publishes"),
    )
    .unwrap();
    let update = json!({"type": "prices_update", "seq": 2, "data": second});
    assert_eq!(
        read_data_frame(&mut ws).json(),
        update,
        "the WebSocket's update"
    );
    assert_eq!(next_event(&mut sse), update, "the SSE stream's update");
    assert_eq!(
        from_curl.recv_timeout(DEADLINE).expect("curl -N's update"),
        update,
        "curl -N's update"
    );

    let (node, _) = block("node");
    let module = node.replace(README_ADDR, &here);
    let printed = run("node", &["--input-type=module", "-e", &module]);
    assert!(
        printed.contains("seq: 3"),
        "the JavaScript publish: {printed}"
    );
    let update = read_data_frame(&mut ws).json();
    assert_eq!(update["seq"], 3, "the WebSocket's third update: {update}");
    assert_eq!(
        next_event(&mut sse),
        update,
        "the SSE stream's third update"
    );

    let (publishing, _) = block("publishing");
    let printed = run("sh", &["-c", &publishing.replace("localhost:8002", &here)]);
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&printed)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("the Publishing block's answers: {e}: {printed}"));
    let shown: Vec<Value> = publishing
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), shown.len(), "{printed}");
    for (answer, shown) in answers.iter().zip(&shown) {
        let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
        assert_eq!(
            keys(answer),
            keys(shown),
            "{answer} is not shaped as {shown}"
        );
        assert_eq!(answer.get("type"), shown.get("type"), "{answer}");
    }
    assert_eq!(
        answers[0]["seq"], 4,
        "the Publishing block's publish: {printed}"
    );
    assert_eq!(
        answers[2]["data"], shown[2]["data"],
        "the state it reads back"
    );
}

/// A newcomer reads the quickstart on the first screen: every snippet of
/// it ends within the README's first 60 lines, and none of it names ADW's
/// topics.
#[test]
fn the_quickstart_is_in_the_first_60_lines() {
    for name in ["serve", "curl", "python", "watch", "page"] {
        let (text, end) = block(name);
        assert!(end <= 60, "the `{name}` block ends on line {end}");
        assert!(!text.contains("queue") && !text.contains("adw"), "{name}");
    }
    let first: Vec<&str> = README.lines().take(60).collect();
    assert!(
        first
            .iter()
            .any(|l| l.contains("cargo run --release -- --demo"))
    );
    assert!(first.iter().any(|l| l.contains("scripts/test.sh")));
}

/// The README's Configuration section names every config-file key that is
/// not simply its flag with `_` for `-` (the plural keys of repeatable
/// options), as the binary's own `--print-config` and `--help` give them.
#[test]
fn the_readme_names_every_key_that_is_not_its_flag() {
    let binary = env!("CARGO_BIN_EXE_statecast");
    let help = run(binary, &["--help"]);
    let printed = run(binary, &["--preset", "none", "--print-config"]);
    let section = README
        .split_once("## Configuration\n")
        .and_then(|(_, rest)| rest.split("\n## ").next())
        .expect("a Configuration section");
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("--"))
        .collect();
    let mut unnamed = Vec::new();
    for line in printed.lines() {
        let line = line.strip_prefix("# ").unwrap_or(line);
        if line.starts_with('[') {
            break; // the tables' examples: their keys are the tables'
        }
        let Some(key) = line
            .split(' ')
            .next()
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        else {
            continue;
        };
        let flag = format!("--{}", key.replace('_', "-"));
        if !flags.contains(&flag.as_str()) && !section.contains(&format!("`{key}`")) {
            unnamed.push(key.to_owned());
        }
    }
    assert!(
        unnamed.is_empty(),
        "config keys that are not their flag, not named in the README's Configuration: {unnamed:?}"
    );
}
