//! The two threads of the link to Redis, and what they do when it fails.

use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::{Incoming, Link, NAME, Outgoing};
use crate::publisher::{Publisher, set_status};
use crate::topic::Rules;
use crate::wire::json;

const SEQ_KEY: &str = "statecast:seq";
const SNAPSHOTS_KEY: &str = "statecast:snapshots";
const CHANNEL: &str = "statecast:publish";

/// Seq, snapshot and message in one step. `ARGV[3]` is a floor for the
/// seq (one past the publishing node's, or its own for a topic written
/// back after an outage), so no node ever sees a seq go backwards, even
/// from a Redis that restarted empty.
const SCRIPT: &str = r"
local seq = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local floor = tonumber(ARGV[3])
if seq < floor then
  seq = floor
  redis.call('HSET', KEYS[1], ARGV[1], seq)
end
local value = seq .. ' ' .. ARGV[2]
redis.call('HSET', KEYS[2], ARGV[1], value)
redis.call('PUBLISH', KEYS[3], 'S ' .. ARGV[1] .. ' ' .. value)
return seq
";

/// Publishes waiting for the writer; past this the loop serves them
/// locally rather than wait (the writer is stuck on a dying link).
const OUTGOING_BOUND: usize = 16 * 1024;

/// How long one Redis call may take before the link counts as down.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Checks `url` and starts both threads; they stop when the loop has gone.
pub(super) fn start(url: &str, publisher: Publisher) -> Result<Link, String> {
    let shown = crate::config::redacted_url(url);
    let client = redis::Client::open(url).map_err(|e| format!("--redis {shown}: {e}"))?;
    info!("redis: joining the nodes on {shown}");
    let (tx, rx) = sync_channel(OUTGOING_BOUND);
    set_status(publisher.providers(), NAME, None);
    let writer = Writer {
        client: client.clone(),
        publisher: publisher.clone(),
        conn: None,
        retry_at: None,
        backoff: BACKOFF_MIN,
        script: redis::Script::new(SCRIPT),
    };
    std::thread::Builder::new()
        .name("redis-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("redis-subscriber".into())
        .spawn(move || subscriber(client, publisher))
        .map_err(|e| e.to_string())?;
    Ok(Link { tx })
}

/// Reports the link's health, logging each change once.
fn report(publisher: &Publisher, problem: Option<String>) {
    let was_ok = publisher
        .providers()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(NAME)
        .is_none_or(|s| s.ok);
    match (&problem, was_ok) {
        (Some(e), true) => warn!("redis: {e}; serving local publishes locally until it is back"),
        (None, false) => info!("redis: connected again"),
        _ => {}
    }
    set_status(publisher.providers(), NAME, problem);
}

struct Writer {
    client: redis::Client,
    publisher: Publisher,
    conn: Option<redis::Connection>,
    /// While down: no attempt before this, so publishes fail fast.
    retry_at: Option<Instant>,
    backoff: Duration,
    script: redis::Script,
}

impl Writer {
    fn run(mut self, rx: Receiver<Outgoing>) {
        loop {
            let out = match rx.recv_timeout(BACKOFF_MAX) {
                Ok(out) => out,
                // Idle while down: try again, so topics served locally are
                // written back even when nothing new is published.
                Err(RecvTimeoutError::Timeout) => {
                    if self.conn.is_none() && self.connection().is_some() {
                        let _ = self.publisher.cluster(Incoming::Up);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let reply = self.write(out);
            if let Some(reply) = reply
                && self.publisher.cluster(reply).is_err()
            {
                return;
            }
        }
    }

    /// Sends one publish; what the loop must hear of it, if anything.
    fn write(&mut self, out: Outgoing) -> Option<Incoming> {
        let was_down = self.conn.is_none();
        let script = self.script.clone();
        let result = match self.connection() {
            Some(conn) => match &out {
                Outgoing::Snapshot {
                    topic, data, floor, ..
                } => script
                    .key(SEQ_KEY)
                    .key(SNAPSHOTS_KEY)
                    .key(CHANNEL)
                    .arg(topic)
                    .arg(data)
                    .arg(*floor)
                    .invoke::<u64>(conn)
                    .map(Some),
                Outgoing::Event { type_json, data } => redis::cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(format!(r#"E {{"type":{type_json},"data":{data}}}"#))
                    .query::<i64>(conn)
                    .map(|_| None),
            },
            None => return Some(Incoming::Failed(out)),
        };
        if was_down && result.is_ok() {
            let _ = self.publisher.cluster(Incoming::Up);
        }
        match (result, out) {
            // A write-back is served already; nothing waits on it.
            (
                Ok(Some(seq)),
                Outgoing::Snapshot {
                    req,
                    topic,
                    data,
                    served: false,
                    ..
                },
            ) => Some(Incoming::Stored {
                req,
                topic,
                seq,
                data,
            }),
            (Ok(_), _) => None,
            (Err(e), out) => {
                self.conn = None;
                report(&self.publisher, Some(format!("publishing failed: {e}")));
                self.retry_at = Some(Instant::now() + self.backoff);
                Some(Incoming::Failed(out))
            }
        }
    }

    /// The connection, made again when the backoff allows.
    fn connection(&mut self) -> Option<&mut redis::Connection> {
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
            match connect(&self.client) {
                Ok(conn) => {
                    self.conn = Some(conn);
                    if self.retry_at.take().is_some() {
                        report(&self.publisher, None);
                    }
                    self.backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    report(&self.publisher, Some(format!("cannot connect: {e}")));
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }
}

fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(conn)
}

/// Listens, re-reads the snapshots after each connect, and retries with a
/// backoff that starts over with each outage; returns when the loop has
/// gone.
fn subscriber(client: redis::Client, publisher: Publisher) {
    let mut backoff = BACKOFF_MIN;
    // Set by a failure, cleared by `listen` once subscribed again.
    let mut down = false;
    while !publisher.is_closed() {
        match listen(&client, &publisher, &mut down) {
            Ok(()) => return,
            Err(e) => report(&publisher, Some(format!("subscription failed: {e}"))),
        }
        if !down {
            backoff = BACKOFF_MIN;
        }
        down = true;
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One subscription, from connect to error. `Ok` only when the loop has
/// gone.
fn listen(
    client: &redis::Client,
    publisher: &Publisher,
    down: &mut bool,
) -> redis::RedisResult<()> {
    let mut listening = connect(client)?;
    // Wakes now and then to notice the loop has gone.
    listening.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut pubsub = listening.as_pubsub();
    pubsub.subscribe(CHANNEL)?;
    // Subscribed first, then read: nothing published in between is missed
    // (a snapshot read and also received is applied once, by its seq).
    let mut reader = connect(client)?;
    let snapshots: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(SNAPSHOTS_KEY)
        .query(&mut reader)?;
    drop(reader);
    for (topic, value) in snapshots {
        match snapshot(&topic, &value, publisher.rules()) {
            Ok(incoming) => {
                if publisher.cluster(incoming).is_err() {
                    return Ok(());
                }
            }
            Err(why) => warn!("redis: ignoring the stored snapshot: {why}"),
        }
    }
    if std::mem::take(down) && publisher.cluster(Incoming::Up).is_err() {
        return Ok(());
    }
    report(publisher, None);
    loop {
        let message = match pubsub.get_message() {
            Ok(message) => message,
            Err(e) if e.is_timeout() => {
                if publisher.is_closed() {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let payload: String = message.get_payload()?;
        let incoming = match parse(&payload, publisher.rules()) {
            Ok(incoming) => incoming,
            Err(why) => {
                warn!("redis: ignoring a message on {CHANNEL}: {why}");
                continue;
            }
        };
        if publisher.cluster(incoming).is_err() {
            return Ok(());
        }
    }
}

/// The highest seq taken from Redis: 2^53, the largest integer every JSON
/// client reads exactly (RFC 7493 §2.2), and far from overflowing when
/// counted on.
pub const MAX_SEQ: u64 = 1 << 53;

/// A message on the channel: `S topic seq data` or `E {"type":..,"data":..}`.
/// What another node (or anyone who can write to Redis) sent is checked
/// like a local publish: I-JSON, the topic's name and schema, a sane seq.
fn parse(payload: &str, rules: &Rules) -> Result<Incoming, String> {
    if let Some(rest) = payload.strip_prefix("S ") {
        let (topic, value) = rest.split_once(' ').ok_or("a snapshot without a value")?;
        return snapshot(topic, value, rules);
    }
    let event = payload.strip_prefix("E ").ok_or("neither S nor E")?;
    let (type_json, data) = rules
        .take_event(event.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(Incoming::Event { type_json, data })
}

/// A stored value, `seq data`, as a snapshot for `topic`.
fn snapshot(topic: &str, value: &str, rules: &Rules) -> Result<Incoming, String> {
    let (seq, data) = value.split_once(' ').ok_or("a value without a seq")?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| format!("seq {seq:?} is not a number"))?;
    if seq == 0 || seq > MAX_SEQ {
        return Err(format!("seq {seq} of {topic:?} is outside 1..=2^53"));
    }
    rules.check(topic).map_err(|e| e.to_string())?;
    let (value, data) = json::canonical(data.as_bytes()).map_err(|e| format!("{topic:?}: {e}"))?;
    rules
        .check_data(topic, &value)
        .map_err(|e| format!("{topic:?} refused by its schema: {e}"))?;
    Ok(Incoming::Snapshot {
        topic: topic.to_owned(),
        seq,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::Preset;
    use crate::topic::schema::Validator;

    fn rules() -> Rules {
        let validator = Validator::new(Preset::Adw, &[]).unwrap();
        Rules::new(Preset::Adw, &[], false, validator)
    }

    #[test]
    fn messages_parse_and_bad_ones_are_refused() {
        let rules = rules();
        match parse(
            "S queue 12 {\"phases\": [],\r\"total\":0,\"paused\":false}",
            &rules,
        ) {
            Ok(Incoming::Snapshot { topic, seq, data }) => {
                assert_eq!(
                    (topic.as_str(), seq, data.as_str()),
                    ("queue", 12, r#"{"phases":[],"total":0,"paused":false}"#)
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(r#"E {"type":"a b","data":{"x":1}}"#, &rules) {
            Ok(Incoming::Event { type_json, data }) => {
                assert_eq!(
                    (type_json.as_str(), data.as_str()),
                    (r#""a b""#, r#"{"x":1}"#)
                );
            }
            other => panic!("{other:?}"),
        }
        for bad in ["", "S queue", "S queue x {}", "E {", "X queue 1 {}"] {
            assert!(parse(bad, &rules).is_err(), "{bad}");
        }
    }

    /// Redis is not trusted more than an HTTP client: a seq past 2^53 (or
    /// one that would overflow when counted on), JSON that is not I-JSON,
    /// a schema's refusal and an unserved topic are each refused.
    #[test]
    fn values_from_redis_are_checked_like_local_publishes() {
        let rules = rules();
        let max = format!("S qc-metrics {} {{}}", u64::MAX);
        let past = format!("S qc-metrics {} {{}}", MAX_SEQ + 1);
        let at = format!("S routes {MAX_SEQ} []");
        for (bad, why) in [
            (max.as_str(), "outside"),
            (past.as_str(), "outside"),
            ("S qc-metrics 0 {}", "outside"),
            ("S qc-metrics 3 1e400", "out of range"),
            (r#"S qc-metrics 3 "\ud800""#, "escape"),
            (r#"S queue 3 {"phases":null}"#, "schema"),
            ("S no-such-topic 3 {}", "no-such-topic"),
            (
                r#"E {"type":"queue_update","data":{"phases":null}}"#,
                "schema",
            ),
            (r#"E {"type":"x","data":1e400}"#, "out of range"),
        ] {
            let e = parse(bad, &rules).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        let ok = parse(&at, &rules);
        assert!(ok.is_ok(), "{ok:?}");
    }
}
