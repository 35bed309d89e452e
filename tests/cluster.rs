//! Nodes joined through a real `redis-server` (started here on a free
//! port): cross-node delivery, late nodes, Redis stopped and restarted,
//! no duplicates. `scripts/test.sh` installs `redis-server` from Debian;
//! without it these tests fail, saying so.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use statecast::config::Secret;
use statecast_testkit::*;

/// A `redis-server` of our own, no persistence, on a port of our own.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let mut redis = Redis { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): scripts/test.sh installs it \
                     (apt-get install redis-server)"
                )
            });
        self.child = Some(child);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        wait_until("redis-server to listen", || {
            TcpStream::connect(addr).is_ok()
        });
    }

    /// Runs one command (inline form) and returns the first line of its reply.
    fn command(&self, line: &str) -> String {
        use std::io::{BufRead, BufReader, Write};
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).unwrap();
        reply
    }

    /// Runs one command, its arguments as raw bytes (RESP, so any byte
    /// goes), and returns the first line of its reply.
    fn call(&self, args: &[&[u8]]) -> String {
        use std::io::{BufRead, BufReader, Write};
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(&request).unwrap();
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).unwrap();
        reply
    }

    /// Plants `value` under `field` of the hash `key`, as anyone who can
    /// write to this Redis could.
    fn plant(&self, key: &str, field: &[u8], value: &[u8]) {
        let reply = self.call(&[b"HSET", key.as_bytes(), field, value]);
        assert!(reply.starts_with(':'), "{reply}");
    }

    /// A hash's field as text (lossy), empty when it is not there.
    fn hget(&self, key: &str, field: &str) -> String {
        use std::io::{BufRead, BufReader, Write};
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .write_all(format!("HGET {key} {field}\r\n").as_bytes())
            .unwrap();
        let mut lines = BufReader::new(stream).split(b'\n');
        let head = lines.next().unwrap().unwrap();
        if head.starts_with(b"$-1") {
            return String::new();
        }
        let body = lines.next().unwrap().unwrap();
        String::from_utf8_lossy(body.strip_suffix(b"\r").unwrap()).into_owned()
    }

    /// Waits until `n` nodes listen on the channel: a node's link shows
    /// ok before its subscription is made.
    fn wait_subscribers(&self, n: u64) {
        use std::io::{BufRead, BufReader, Write};
        wait_until(&format!("{n} nodes to subscribe"), || {
            let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
            stream
                .write_all(b"PUBSUB NUMSUB statecast:publish\r\n")
                .unwrap();
            // *2, $17, the channel, then :N.
            let mut lines = BufReader::new(stream).lines();
            let count = lines.nth(3).unwrap().unwrap();
            count == format!(":{n}")
        });
    }

    /// Publishes `payload` on the nodes' channel; returns how many
    /// subscribers Redis handed it to.
    fn send(&self, payload: &[u8]) -> u64 {
        let reply = self.call(&[b"PUBLISH", b"statecast:publish", payload]);
        reply.trim_start_matches(':').trim().parse().unwrap()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn node(redis: &Redis) -> TestServer {
    let url = redis.url();
    let node = TestServer::with(|c| c.redis = Some(Secret::new(&url)));
    node.wait_health("the node to reach redis", |h| {
        h["providers"]["redis"]["ok"] == true
    });
    node
}

/// The seq of a published `{"n":N}` snapshot, and N.
fn next_update(ws: &mut TcpStream) -> (u64, u64) {
    let message = read_data_frame(ws).json();
    (
        message["seq"].as_u64().unwrap(),
        message["data"]["n"].as_u64().unwrap_or(0),
    )
}

fn publish_n(node: &TestServer, n: u64) -> u64 {
    let (status, body) = node.publish("counter", &format!(r#"{{"n":{n}}}"#));
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    reply["seq"].as_u64().unwrap()
}

/// Reads until `n` arrives. Every message on the way must be newer than
/// the one before, by seq and by value: the same value twice is a
/// duplicate delivery even under a new seq.
#[track_caller]
fn read_until(ws: &mut TcpStream, n: u64, last: &mut (u64, u64)) {
    loop {
        let (seq, got) = next_update(ws);
        assert!(
            seq > last.0 && got > last.1,
            "seq {seq} n {got} after seq {} n {}: a duplicate or a step back",
            last.0,
            last.1
        );
        *last = (seq, got);
        if got == n {
            return;
        }
        assert!(got < n, "got {got} past {n}");
    }
}

/// A subscriber to `counter` and the seq and value of its snapshot: zeros
/// when nothing was published yet (then no snapshot comes).
fn open(node: &TestServer, published: bool) -> (TcpStream, (u64, u64)) {
    let mut ws = node.subscribe("counter");
    if !published {
        return (ws, (0, 0));
    }
    let first = next_update(&mut ws);
    (ws, first)
}

fn with_counter(redis: &Redis) -> TestServer {
    let url = redis.url();
    let node = TestServer::with(|c| {
        c.redis = Some(Secret::new(&url));
        c.topics.push("counter".into());
    });
    node.wait_health("the node to reach redis", |h| {
        h["providers"]["redis"]["ok"] == true
    });
    node
}

#[test]
fn a_publish_on_one_node_reaches_the_others_once_in_order() {
    let redis = Redis::start();
    let nodes = [
        with_counter(&redis),
        with_counter(&redis),
        with_counter(&redis),
    ];
    let mut b = open(&nodes[1], false);
    let mut c = open(&nodes[2], false);

    let started = Instant::now();
    assert_eq!(publish_n(&nodes[0], 1), 1);
    read_until(&mut b.0, 1, &mut b.1);
    // Not a speed figure (benches/cluster.rs measures that): a bound far
    // above it and far below the link's 5 s retry, so a delivery that
    // waited on a reconnect or a re-read fails here.
    let first = started.elapsed();
    assert!(
        first < Duration::from_secs(1),
        "node A to node B took {first:?}"
    );

    // Publishes from every node share one seq per topic.
    let mut seqs = Vec::new();
    for n in 2..=60 {
        seqs.push(publish_n(&nodes[n as usize % 3], n));
    }
    assert_eq!(seqs, (2..=60).collect::<Vec<_>>(), "one counter in Redis");
    read_until(&mut b.0, 60, &mut b.1);
    read_until(&mut c.0, 60, &mut c.1);
    // A node's own publishes come back through Redis, and are served once.
    let mut a = open(&nodes[0], true);
    assert_eq!(a.1, (60, 60));

    // Events cross too.
    let (status, _) = nodes[2].request(
        "POST",
        "/api/v1/broadcast",
        r#"{"type":"deploy","data":{"v":2}}"#,
    );
    assert_eq!(status, 200);
    for ws in [&mut a.0, &mut b.0] {
        let event = read_data_frame(ws).json();
        assert_eq!(event, serde_json::json!({"type":"deploy","data":{"v":2}}));
    }
}

/// An answered publish is the node's snapshot at once: a client that
/// subscribes to the same node right after the 200 gets it, though Redis
/// has not echoed it back yet.
#[test]
fn a_subscriber_after_an_answered_publish_gets_it() {
    let redis = Redis::start();
    let node = with_counter(&redis);
    for n in 1..=40 {
        assert_eq!(publish_n(&node, n), n);
        let (_ws, first) = open(&node, true);
        assert_eq!(first, (n, n), "the snapshot right after publish {n}");
    }
}

#[test]
fn a_node_started_after_the_publish_serves_the_snapshot() {
    let redis = Redis::start();
    let first = with_counter(&redis);
    publish_n(&first, 7);
    let late = with_counter(&redis);
    let mut ws = late.subscribe("counter");
    let snapshot = read_data_frame(&mut ws).json();
    assert_eq!(
        (snapshot["seq"].as_u64(), snapshot["data"]["n"].as_u64()),
        (Some(1), Some(7))
    );
}

#[test]
fn clients_converge_after_redis_restarts_and_nothing_is_doubled() {
    let mut redis = Redis::start();
    let (a_node, b_node) = (with_counter(&redis), with_counter(&redis));
    let mut a = open(&a_node, false);
    let mut b = open(&b_node, false);
    publish_n(&a_node, 1);
    read_until(&mut a.0, 1, &mut a.1);
    read_until(&mut b.0, 1, &mut b.1);

    redis.stop();
    // Still served locally, and the node says it is degraded.
    publish_n(&a_node, 2);
    read_until(&mut a.0, 2, &mut a.1);
    a_node.wait_health("A to report redis down", |h| {
        h["status"] == "degraded" && h["providers"]["redis"]["ok"] == false
    });
    let (status, metrics) = a_node.request("GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"statecast_provider_up{provider="redis"} 0"#),
        "{metrics}"
    );

    // Back, empty (no persistence): A writes back what only it served.
    redis.restart();
    read_until(&mut b.0, 2, &mut b.1);
    a_node.wait_health("A to reach redis again", |h| h["status"] == "ok");
    publish_n(&b_node, 3);
    read_until(&mut a.0, 3, &mut a.1);
    read_until(&mut b.0, 3, &mut b.1);
    // A node started now sees the newest too.
    let c_node = with_counter(&redis);
    let (_, latest) = open(&c_node, true);
    assert_eq!(latest, b.1);
}

#[test]
fn the_demo_topics_pass_through_redis_unchanged() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut ws = b.subscribe("queue");
    read_data_frame(&mut ws);
    // The publishing node serves its own publish as the writer hands it
    // back, not as Redis echoes it: that path too must send the contract.
    let mut own = a.subscribe("queue");
    read_data_frame(&mut own);
    let queue = r#"{"phases":[],"total":3,"paused":true}"#;
    assert_eq!(a.publish("queue", queue).0, 200);
    for ws in [&mut ws, &mut own] {
        let message = read_data_frame(ws).json();
        check_message("queue", &message);
        assert_eq!(
            message["data"],
            serde_json::from_str::<serde_json::Value>(queue).unwrap()
        );
    }
}

#[test]
fn a_lost_subscription_or_an_emptied_redis_loses_and_doubles_nothing() {
    let redis = Redis::start();
    let (a_node, b_node) = (with_counter(&redis), with_counter(&redis));
    let mut b = open(&b_node, false);
    for n in 1..=3 {
        publish_n(&a_node, n);
    }
    read_until(&mut b.0, 3, &mut b.1);

    // Every node's subscription is cut: each reconnects and re-reads the
    // snapshots, which it already has; nothing may be delivered again.
    let killed = redis.command("CLIENT KILL TYPE pubsub");
    assert!(killed.starts_with(':'), "{killed}");
    b_node.wait_health("B to see the subscription lost", |h| {
        h["providers"]["redis"]["errors"].as_u64() >= Some(1)
    });
    b_node.wait_health("B to subscribe again", |h| h["status"] == "ok");
    publish_n(&a_node, 4);
    read_until(&mut b.0, 4, &mut b.1);

    // Redis forgets everything while the nodes stay up and nobody
    // publishes: the next publish must still reach everyone.
    assert_eq!(redis.command("FLUSHALL"), "+OK\r\n");
    publish_n(&b_node, 5);
    read_until(&mut b.0, 5, &mut b.1);
    // A hears of 5 through Redis too, on its own time.
    wait_until("A to serve 5", || {
        a_node
            .request("GET", "/api/v1/state/counter", "")
            .1
            .contains(r#""seq":5"#)
    });
    let mut a = open(&a_node, true);
    assert_eq!(a.1, b.1);
    publish_n(&a_node, 6);
    read_until(&mut a.0, 6, &mut a.1);
}

/// Pipelined requests on one connection are answered in order: a publish
/// waits for Redis, and the request behind it waits for that answer.
#[test]
fn pipelined_requests_are_answered_in_order() {
    use std::io::{Read, Write};
    let redis = Redis::start();
    let node = with_counter(&redis);
    let mut stream = node.connect();
    let publish = |n: u64| {
        let body = format!(r#"{{"n":{n}}}"#);
        format!(
            "POST /api/v1/publish/counter HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let health = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let requests = [
        publish(1),
        health.into(),
        publish(2),
        health.into(),
        publish(3),
    ];
    stream.write_all(requests.concat().as_bytes()).unwrap();
    let mut answers = Vec::new();
    for _ in &requests {
        let (status, _, body) = read_response(&mut stream);
        assert_eq!(status, 200);
        let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
        answers.push(match reply["seq"].as_u64() {
            Some(seq) => format!("seq {seq}"),
            None => "health".to_owned(),
        });
    }
    assert_eq!(answers, ["seq 1", "health", "seq 2", "health", "seq 3"]);
    let mut rest = [0u8; 1];
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert!(stream.read(&mut rest).is_err(), "nothing more was answered");
}

/// A node on `redis` serving `counter` and `other`, configured further by
/// `configure`, once its link is up.
fn linked(redis: &Redis, configure: impl FnOnce(&mut statecast::Config)) -> TestServer {
    let url = redis.url();
    let node = TestServer::with(|c| {
        c.redis = Some(Secret::new(&url));
        c.topics.extend(["counter".into(), "other".into()]);
        configure(c);
    });
    node.wait_health("the node to reach redis", |h| {
        h["providers"]["redis"]["ok"] == true
    });
    node
}

/// `statecast_redis_skipped_total` for `reason`, from `/metrics`.
fn skipped(node: &TestServer, reason: &str) -> u64 {
    let (status, metrics) = node.request("GET", "/metrics", "");
    assert_eq!(status, 200);
    let line = format!("statecast_redis_skipped_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .unwrap_or_else(|| panic!("no {line} in {metrics}"))
        .parse()
        .unwrap()
}

/// Waits until `node` has skipped `n` things from Redis for `reason`.
#[track_caller]
fn wait_skipped(node: &TestServer, reason: &str, n: u64) {
    wait_until(&format!("{n} skipped for {reason}"), || {
        skipped(node, reason) >= n
    });
    assert_eq!(skipped(node, reason), n, "{reason}");
}

/// The link is whole: ok, and never reported a failure (a subscription
/// lost and made again counts one).
#[track_caller]
fn assert_link_never_failed(node: &TestServer) {
    let (status, body) = node.request("GET", "/healthz", "");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{body}");
    assert_eq!(health["providers"]["redis"]["errors"], 0, "{body}");
}

/// The seq and data a new subscriber of `topic` gets from `node`.
fn served(node: &TestServer, topic: &str) -> (u64, serde_json::Value) {
    let mut ws = node.subscribe(topic);
    let message = read_data_frame(&mut ws).json();
    (message["seq"].as_u64().unwrap(), message["data"].clone())
}

/// Whether `node` holds a snapshot of `topic` at all.
fn has_snapshot(node: &TestServer, topic: &str) -> bool {
    node.request("GET", &format!("/api/v1/state/{topic}"), "").0 == 200
}

/// A stored snapshot that is not UTF-8 (in its value or its name) is
/// skipped and counted alone: the node loads the others, its link stays
/// ok, and the topic takes later publishes.
#[test]
fn a_stored_snapshot_that_is_not_utf8_is_skipped_alone() {
    let redis = Redis::start();
    redis.plant("statecast:snapshots", b"counter", b"3 {\"n\":\"\xff\"}");
    redis.plant("statecast:snapshots", b"\xff\xfe", b"1 {}");
    redis.plant("statecast:snapshots", b"other", b"5 {\"n\":5}");
    let a = linked(&redis, |_| {});
    wait_skipped(&a, "utf8", 2);
    assert_eq!(served(&a, "other"), (5, serde_json::json!({"n": 5})));
    assert!(!has_snapshot(&a, "counter"), "the bad entry was served");
    assert_link_never_failed(&a);

    let b = linked(&redis, |_| {});
    let mut ws = b.subscribe("counter");
    assert_eq!(publish_n(&a, 1), 1);
    assert_eq!(next_update(&mut ws), (1, 1));
    assert_link_never_failed(&a);
    assert_link_never_failed(&b);
}

/// A message on the channel that is not UTF-8, a snapshot's value or an
/// event, is skipped and counted; the subscription is not lost, and the
/// next good message is served.
#[test]
fn a_message_that_is_not_utf8_keeps_the_subscription() {
    let redis = Redis::start();
    let (a, b) = (linked(&redis, |_| {}), linked(&redis, |_| {}));
    redis.wait_subscribers(2);
    let mut ws = b.subscribe("counter");
    assert_eq!(redis.send(b"S counter 9 {\"n\":\"\xc3\"}"), 2);
    assert_eq!(redis.send(b"E {\"type\":\"x\",\"data\":\"\xff\"}"), 2);
    assert_eq!(redis.send(b"S \xff 9 {}"), 2);
    wait_skipped(&b, "utf8", 3);
    assert_eq!(redis.send(b"S other 4 {\"n\":4}"), 2);
    wait_until("B to serve other", || has_snapshot(&b, "other"));
    assert_eq!(served(&b, "other"), (4, serde_json::json!({"n": 4})));
    assert_eq!(publish_n(&a, 1), 1);
    assert_eq!(next_update(&mut ws), (1, 1));
    assert_link_never_failed(&a);
    assert_link_never_failed(&b);
}

/// From 1e14 on, Redis's Lua wrote a number as `1e+14`: the seq must
/// still reach every node as digits, exactly, and stay in Redis so.
#[test]
fn a_seq_from_1e14_on_reaches_the_other_nodes_exactly() {
    let redis = Redis::start();
    redis.plant("statecast:seq", b"counter", b"99999999999999");
    let (a, b) = (linked(&redis, |_| {}), linked(&redis, |_| {}));
    let mut ws = b.subscribe("counter");
    assert_eq!(publish_n(&a, 1), 100_000_000_000_000);
    assert_eq!(next_update(&mut ws), (100_000_000_000_000, 1));
    let stored = redis.hget("statecast:snapshots", "counter");
    assert_eq!(stored, r#"100000000000000 {"n":1}"#);
    assert_eq!(redis.hget("statecast:seq", "counter"), "100000000000000");
    assert_eq!(publish_n(&a, 2), 100_000_000_000_001);
    assert_eq!(next_update(&mut ws), (100_000_000_000_001, 2));
    assert_eq!(skipped(&b, "seq"), 0);
    assert_link_never_failed(&b);
}

/// Seqs stop at 2^53 - 1, the largest a JSON client reads exactly: up to
/// it every node serves each publish; past it a publish is refused (503),
/// counted, and served nowhere, while other topics go on. A seq past it
/// on the channel, or one that is not digits, is skipped and counted.
#[test]
fn a_topic_replicates_up_to_the_seq_ceiling_and_no_further() {
    const MAX_SEQ: u64 = (1 << 53) - 1;
    let redis = Redis::start();
    redis.plant(
        "statecast:seq",
        b"counter",
        (MAX_SEQ - 2).to_string().as_bytes(),
    );
    let (a, b) = (linked(&redis, |_| {}), linked(&redis, |_| {}));
    redis.wait_subscribers(2);
    let mut ws = b.subscribe("counter");
    assert_eq!(publish_n(&a, 1), MAX_SEQ - 1);
    assert_eq!(next_update(&mut ws), (MAX_SEQ - 1, 1));
    assert_eq!(publish_n(&a, 2), MAX_SEQ);
    assert_eq!(next_update(&mut ws), (MAX_SEQ, 2));

    let (status, body) = a.publish("counter", r#"{"n":3}"#);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no seq from 1 to 2^53 - 1"), "{body}");
    assert_eq!(skipped(&a, "seq"), 1);
    assert_eq!(
        served(&a, "counter"),
        (MAX_SEQ, serde_json::json!({"n": 2}))
    );

    // Past the ceiling, and not digits: skipped on the channel too.
    let past = format!("S other {} {{}}", MAX_SEQ + 1);
    for bad in [past.as_bytes(), b"S other 1e+14 {}", b"S other 0 {}"] {
        assert_eq!(redis.send(bad), 2);
    }
    wait_skipped(&b, "seq", 3);
    assert!(!has_snapshot(&b, "other"));
    let (status, body) = a.publish("other", r#"{"n":1}"#);
    assert_eq!(status, 200, "{body}");
    wait_until("B to serve other", || has_snapshot(&b, "other"));
    assert_eq!(served(&b, "other"), (1, serde_json::json!({"n": 1})));
    assert_eq!(
        served(&b, "counter"),
        (MAX_SEQ, serde_json::json!({"n": 2}))
    );
    assert_link_never_failed(&a);
    assert_link_never_failed(&b);
}

/// A seq counter in Redis that is not a seq's text (written by someone
/// else) counts as none: publishes go on from the node's own seq rather
/// than fail on it for good.
#[test]
fn a_counter_that_is_not_a_seq_does_not_stop_publishes() {
    let redis = Redis::start();
    let (a, b) = (linked(&redis, |_| {}), linked(&redis, |_| {}));
    let mut ws = b.subscribe("counter");
    assert_eq!(publish_n(&a, 1), 1);
    assert_eq!(next_update(&mut ws), (1, 1));
    let bad = [
        &b"abc"[..],
        b"1e+14",
        b"99999999999999999999",
        b"-5",
        b"\xff",
    ];
    for (n, bad) in (2..).zip(bad) {
        redis.plant("statecast:seq", b"counter", bad);
        assert_eq!(publish_n(&a, n), n, "after {bad:?}");
        assert_eq!(next_update(&mut ws), (n, n));
        assert_eq!(redis.hget("statecast:seq", "counter"), n.to_string());
    }
    assert_link_never_failed(&a);
    assert_link_never_failed(&b);
}

/// At the smallest `--max-publish-bytes` (1 byte), a stored snapshot or a
/// message over it is skipped and counted; one at it is served; a publish
/// whose compact text grows past it is refused (413) rather than written
/// where other nodes would skip it.
#[test]
fn values_over_max_publish_bytes_from_redis_are_skipped() {
    let redis = Redis::start();
    redis.plant("statecast:snapshots", b"counter", b"3 12");
    redis.plant("statecast:snapshots", b"other", b"4 7");
    let small = |c: &mut statecast::Config| c.max_publish_bytes = 1;
    let (a, b) = (linked(&redis, small), linked(&redis, small));
    redis.wait_subscribers(2);
    wait_skipped(&a, "size", 1);
    assert_eq!(served(&a, "other"), (4, serde_json::json!(7)));
    assert!(!has_snapshot(&a, "counter"));

    let mut ws = b.subscribe("other");
    assert_eq!(read_data_frame(&mut ws).json()["seq"], 4);
    assert_eq!(redis.send(b"S other 5 10"), 2);
    assert_eq!(redis.send(br#"E {"type":"x","data":1}"#), 2);
    wait_skipped(&b, "size", 3);
    assert_eq!(redis.send(b"S other 6 8"), 2);
    let message = read_data_frame(&mut ws).json();
    assert_eq!(
        (message["seq"].as_u64(), message["data"].as_u64()),
        (Some(6), Some(8))
    );

    // Room for the stored `12`, which it serves.
    let roomy = linked(&redis, |c| c.max_publish_bytes = 10);
    wait_until("the third node to load counter", || {
        has_snapshot(&roomy, "counter")
    });
    // 4 bytes as sent, 18 once compact: 1000000000000000.0.
    let (status, body) = roomy.publish("counter", "1e15");
    assert_eq!(status, 413, "{body}");
    assert_eq!(skipped(&roomy, "size"), 1);
    assert_eq!(served(&roomy, "counter"), (3, serde_json::json!(12)));
    assert_eq!(roomy.publish("counter", "9").0, 200);
    wait_until("B to serve counter", || has_snapshot(&b, "counter"));
    assert_eq!(served(&b, "counter"), (4, serde_json::json!(9)));
    for node in [&a, &b, &roomy] {
        assert_link_never_failed(node);
    }
}
