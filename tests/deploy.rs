//! The deployment notes, run: Debian's nginx, with the configuration
//! taken from `docs/deployment.md`, in front of two nodes joined through
//! `redis-server`. WebSocket and SSE clients through nginx get snapshots and
//! updates, and when one node stops they reconnect to the other and
//! converge. `scripts/test.sh` installs nginx and redis-server; without
//! them this test fails, saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use statecast::config::Secret;
use statecast_testkit::*;

/// A process stopped when the test ends, however it ends: SIGTERM first,
/// so nginx's master takes its workers down with it (SIGKILL would leave
/// them running, holding the port), then SIGKILL if it lingers.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, args: &[&str], why: &str) -> Running {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): {why}"));
    Running(child)
}

fn wait_listening(addr: SocketAddr, what: &str) {
    wait_until(what, || TcpStream::connect(addr).is_ok());
}

/// The deployment notes, whose nginx block and node commands this runs.
const NOTES: &str = include_str!("../docs/deployment.md");

/// The ```nginx block of `docs/deployment.md`, for two nodes and one listen port.
fn nginx_config(dir: &std::path::Path, listen: u16, nodes: [SocketAddr; 2]) -> String {
    let block = NOTES
        .split("```nginx\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/deployment.md has an nginx block");
    assert!(block.contains("127.0.0.1:8002") && block.contains("127.0.0.1:8003"));
    let d = dir.display();
    let paths = format!(
        "http {{\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n"
    );
    let body = block
        .replace("127.0.0.1:8002", &nodes[0].to_string())
        .replace("127.0.0.1:8003", &nodes[1].to_string())
        .replace("listen 8080;", &format!("listen 127.0.0.1:{listen};"))
        .replace("/var/log/nginx/", &format!("{d}/"))
        .replacen("http {\n", &paths, 1);
    format!("daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n{body}")
}

/// The public name nginx serves, as a browser that resolved it to nginx on
/// 127.0.0.1 would send it; the nodes know it from `--allow-host`.
const PUBLIC_NAME: &str = "dash.example.com";

/// The two tokens every node gets from the same file.
const PUBLISH: &str = "publish-token-0123456789";
const SUBSCRIBE: &str = "subscribe-token-0123456789";

fn node(redis_url: &str, port: u16) -> TestServer {
    assert!(
        NOTES.contains(&format!("--allow-host {PUBLIC_NAME}")),
        "the deployment notes' node commands name the public host"
    );
    for token in ["STATECAST_PUBLISH_TOKEN=", "STATECAST_SUBSCRIBE_TOKEN="] {
        assert!(NOTES.contains(token), "the deployment notes set {token}");
    }
    TestServer::with(|c| {
        c.allow_hosts = vec![PUBLIC_NAME.into()];
        c.publish_token = Some(Secret::new(PUBLISH));
        c.subscribe_token = Some(Secret::new(SUBSCRIBE));
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.redis = Some(Secret::new(redis_url));
        c.topics.push("counter".into());
    })
}

/// A read that timed out: the connection is fine, nothing came.
fn nothing_yet(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A client through nginx that reconnects when its connection ends, as the
/// dashboard does, and remembers the newest `n` it saw.
trait Client {
    /// Reads what is there within `wait`; false when the connection ended.
    fn read(&mut self, wait: Duration) -> bool;
    fn latest(&self) -> u64;
    fn reconnect(&mut self);
}

struct Ws {
    addr: SocketAddr,
    stream: TcpStream,
    latest: u64,
    seqs: Vec<u64>,
}

impl Ws {
    fn open(addr: SocketAddr) -> Ws {
        let stream = subscribe_public(addr);
        Ws {
            addr,
            stream,
            latest: 0,
            seqs: Vec::new(),
        }
    }
}

impl Client for Ws {
    fn read(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut head = [0u8; 2];
        match self.stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if nothing_yet(&e) => return true,
            Err(_) => return false,
        }
        self.stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0; len];
        if self.stream.read_exact(&mut payload).is_err() {
            return false;
        }
        match head[0] & 0x0f {
            0x1 => {
                let message: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                let seq = message["seq"].as_u64().unwrap();
                assert!(
                    self.seqs.last().is_none_or(|&last| seq >= last),
                    "seq {seq} after {:?}",
                    self.seqs.last()
                );
                self.seqs.push(seq);
                self.latest = message["data"]["n"].as_u64().unwrap();
                true
            }
            0x8 => false,
            _ => true,
        }
    }

    fn latest(&self) -> u64 {
        self.latest
    }

    fn reconnect(&mut self) {
        self.stream = subscribe_public(self.addr);
        // A new connection starts its own order.
        self.seqs.clear();
    }
}

struct Sse {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    latest: u64,
}

impl Sse {
    fn open(addr: SocketAddr) -> Sse {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(
                format!("GET /api/v1/sse/counter?token={SUBSCRIBE} HTTP/1.1\r\nHost: {PUBLIC_NAME}\r\nAccept: text/event-stream\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        Sse {
            addr,
            reader,
            latest: 0,
        }
    }
}

impl Client for Sse {
    /// nginx sends the stream chunked: chunk sizes are lines of hex
    /// digits, skipped; `data:` lines carry the messages.
    fn read(&mut self, wait: Duration) -> bool {
        self.reader.get_ref().set_read_timeout(Some(wait)).unwrap();
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if nothing_yet(&e) => return true,
            Err(_) => return false,
        }
        if let Some(json) = line.trim_end().strip_prefix("data: ") {
            let message: serde_json::Value = serde_json::from_str(json).unwrap();
            self.latest = message["data"]["n"].as_u64().unwrap_or(self.latest);
        }
        // The last chunk of a chunked body: the node went away.
        line != "0\r\n"
    }

    fn latest(&self) -> u64 {
        self.latest
    }

    fn reconnect(&mut self) {
        *self = Sse::open(self.addr);
    }
}

/// Reads every client until each has seen `n`, reconnecting those whose
/// connection ended.
fn converge(clients: &mut [Box<dyn Client>], n: u64) {
    let start = Instant::now();
    for client in clients.iter_mut() {
        while client.latest() != n {
            assert!(
                start.elapsed() < DEADLINE,
                "a client stuck at {} waiting for {n}",
                client.latest()
            );
            if !client.read(Duration::from_millis(50)) {
                // As the dashboard does, after a pause.
                std::thread::sleep(Duration::from_millis(100));
                client.reconnect();
            }
        }
    }
}

/// A producer on the private side: straight to a node, with the token.
fn publish(node: SocketAddr, n: u64) {
    let (status, body) = post(
        node,
        "/api/v1/publish/counter",
        &format!(r#"{{"n":{n}}}"#),
        &format!("Authorization: Bearer {PUBLISH}\r\n"),
    );
    assert_eq!(status, 200, "{body}");
}

fn post(addr: SocketAddr, path: &str, body: &str, extra: &str) -> (u16, String) {
    let mut stream = connect_to(addr);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {PUBLIC_NAME}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut stream);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A WebSocket on `counter` through nginx, under the public name.
fn subscribe_public(addr: SocketAddr) -> TcpStream {
    let (status, stream) = upgrade_public(addr, &format!("counter?token={SUBSCRIBE}"));
    assert_eq!(status, 101);
    stream
}

fn upgrade_public(addr: SocketAddr, target: &str) -> (u16, TcpStream) {
    let mut stream = connect_to(addr);
    let request =
        upgrade_request(target).replace("Host: localhost", &format!("Host: {PUBLIC_NAME}"));
    stream.write_all(request.as_bytes()).unwrap();
    let (status, _, _) = read_response(&mut stream);
    (status, stream)
}

/// A node's `/healthz` with its details, which need the subscribe token.
fn node_health(node: SocketAddr) -> serde_json::Value {
    let auth = format!("Authorization: Bearer {SUBSCRIBE}\r\n");
    let (status, body) = request_at(node, "GET", "/healthz", "", &auth);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// What a stranger on the internet can do through nginx: nothing that
/// writes, nothing without the subscribe token, and the token a browser
/// puts in its URL never reaches the access log.
fn strangers_are_refused(front: SocketAddr, node: SocketAddr, dir: &std::path::Path) {
    let body = r#"{"n":999}"#;
    for path in ["/api/v1/publish/counter", "/api/v1/broadcast"] {
        for extra in [
            String::new(),
            format!("Authorization: Bearer {PUBLISH}\r\n"),
        ] {
            let (status, text) = post(front, path, body, &extra);
            assert_eq!(status, 404, "{path} through nginx: {text}");
        }
    }
    let mut stream = connect_to(front);
    let get = format!("GET /metrics HTTP/1.1\r\nHost: {PUBLIC_NAME}\r\nConnection: close\r\n\r\n");
    stream.write_all(get.as_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).0, 404, "/metrics through nginx");
    assert_eq!(
        upgrade_public(front, "counter").0,
        401,
        "no subscribe token"
    );
    assert_eq!(
        upgrade_public(front, "counter?token=guess-guess-guess-guess").0,
        401
    );
    // A stranger who reached a node past nginx, as a misconfigured proxy
    // would let them: still refused without the publish token.
    let forwarded = "X-Forwarded-For: 203.0.113.9\r\n";
    assert_eq!(
        post(node, "/api/v1/publish/counter", body, forwarded).0,
        401
    );
    let log = dir.join("statecast.log");
    wait_until("nginx's access log names the subscribe path", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("/api/v1/ws/counter"))
    });
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains(SUBSCRIBE) && !log.contains("token="), "{log}");
}

#[test]
fn clients_through_nginx_survive_a_node_stopping() {
    let dir = std::env::temp_dir().join(format!("statecast-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let redis_port = free_port();
    let _redis = spawn(
        "redis-server",
        &[
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        "scripts/test.sh installs it (apt-get install redis-server)",
    );
    wait_listening(
        format!("127.0.0.1:{redis_port}").parse().unwrap(),
        "redis-server",
    );
    let url = format!("redis://127.0.0.1:{redis_port}");
    let ports = [free_port(), free_port()];
    let a = node(&url, ports[0]);
    let b = node(&url, ports[1]);
    let listen = free_port();
    let config = nginx_config(&dir, listen, [a.addr, b.addr]);
    std::fs::write(dir.join("nginx.conf"), config).unwrap();
    let conf = dir.join("nginx.conf");
    // Debian puts it in /usr/sbin, outside a user's PATH.
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nginx");
    let _nginx = spawn(
        nginx,
        &[
            "-p",
            dir.to_str().unwrap(),
            "-e",
            dir.join("error.log").to_str().unwrap(),
            "-c",
            conf.to_str().unwrap(),
        ],
        "scripts/test.sh installs it (apt-get install nginx)",
    );
    let front: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    wait_listening(front, "nginx");

    strangers_are_refused(front, a.addr, &dir);
    publish(a.addr, 1);
    // Round robin spreads them over both nodes.
    let mut clients: Vec<Box<dyn Client>> = Vec::new();
    for _ in 0..4 {
        clients.push(Box::new(Ws::open(front)));
        clients.push(Box::new(Sse::open(front)));
    }
    converge(&mut clients, 1);
    publish(b.addr, 2);
    converge(&mut clients, 2);
    for node in [&a, &b] {
        let health = node_health(node.addr);
        assert!(
            health["connections"].as_u64() >= Some(2),
            "both nodes serve clients: {health}"
        );
    }

    // Node A stops: its clients reconnect through nginx to B.
    drop(a);
    publish(b.addr, 3);
    converge(&mut clients, 3);
    publish(b.addr, 4);
    converge(&mut clients, 4);
    assert_eq!(
        node_health(b.addr)["connections"].as_u64(),
        Some(8),
        "all on B now"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
