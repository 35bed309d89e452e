//! The two threads of the link to Redis, and what they do when it fails.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::publisher::{Outgoing, Publisher, Replicated as Incoming, Skip, set_status};
use crate::topic::{Rules, TopicError};
use crate::wire::json;

/// The name the link's health is shown under.
const NAME: &str = "redis";
const SEQ_KEY: &str = "statecast:seq";
const SNAPSHOTS_KEY: &str = "statecast:snapshots";
const CHANNEL: &str = "statecast:publish";

/// Seq, snapshot and message in one step. `ARGV[3]` is a floor for the
/// seq (one past the publishing node's, or its own for a topic written
/// back after an outage), so no node ever sees a seq go backwards, even
/// from a Redis that restarted empty. `ARGV[4]` is [`MAX_SEQ`]: past it
/// nothing is stored or published, and the reply is nil.
///
/// Lua numbers are doubles, exact up to 2^53, and Lua writes one from
/// 1e14 on as `1e+14`: the seq is written with `%d` and returned as that
/// text, the text every node reads. A counter that is not the decimal
/// text of a seq (written by someone else) counts as none, so the floor
/// decides rather than `HINCRBY` failing on it for good.
const SCRIPT: &str = r"
local max = tonumber(ARGV[4])
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local seq = 0
if stored and #stored <= #ARGV[4] and string.find(stored, '^%d+$') then
  seq = tonumber(stored)
  if seq > max then
    seq = 0
  end
end
seq = math.max(seq + 1, tonumber(ARGV[3]))
if seq > max then
  return false
end
local text = string.format('%d', seq)
redis.call('HSET', KEYS[1], ARGV[1], text)
local value = text .. ' ' .. ARGV[2]
redis.call('HSET', KEYS[2], ARGV[1], value)
redis.call('PUBLISH', KEYS[3], 'S ' .. ARGV[1] .. ' ' .. value)
return text
";

/// Publishes waiting for the writer; past this the loop serves them
/// locally rather than wait (the writer is stuck on a dying link).
const OUTGOING_BOUND: usize = 16 * 1024;

/// How long one Redis call may take before the link counts as down.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Checks `url` and starts both threads; they stop when the loop has gone.
/// Gives the writer's end of the queue; `mod.rs` makes it the [`super::Link`],
/// so this file does not name the one that names it.
pub(super) fn start(
    url: &str,
    publisher: Publisher,
    max_bytes: usize,
) -> std::io::Result<SyncSender<Outgoing>> {
    let shown = crate::config::redacted_url(url);
    let client = redis::Client::open(url).map_err(|e| {
        let e = format!("--redis {shown}: {e}");
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    })?;
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
        max_bytes,
    };
    std::thread::Builder::new()
        .name("redis-writer".into())
        .spawn(move || writer.run(rx))?;
    std::thread::Builder::new()
        .name("redis-subscriber".into())
        .spawn(move || subscriber(client, publisher, max_bytes))?;
    Ok(tx)
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
    /// `--max-publish-bytes`: what other nodes would skip is not written.
    max_bytes: usize,
}

/// What the script or `PUBLISH` answered.
enum Reply {
    /// The seq's text, or nil at the ceiling.
    Seq(Option<Vec<u8>>),
    /// An event went out.
    Sent,
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
        let event = match self.checked(&out) {
            Ok(event) => event,
            Err(refusal) => {
                refusal.log("not written to redis");
                let why = refusal.why;
                return Some(Incoming::Refused { out, why });
            }
        };
        let was_down = self.conn.is_none();
        let Some(result) = self.send(&out, event) else {
            return Some(Incoming::Failed(out));
        };
        if was_down && result.is_ok() {
            let _ = self.publisher.cluster(Incoming::Up);
        }
        match result {
            Ok(Reply::Sent) => None,
            Ok(Reply::Seq(text)) => stored(out, text),
            Err(e) => {
                self.conn = None;
                report(&self.publisher, Some(format!("publishing failed: {e}")));
                self.retry_at = Some(Instant::now() + self.backoff);
                Some(Incoming::Failed(out))
            }
        }
    }

    /// Holds `out` to the test every node puts a value from Redis to, so
    /// nothing is written that the others would skip; an event's message
    /// text, once made.
    fn checked(&self, out: &Outgoing) -> Result<Option<String>, Refusal> {
        match out {
            Outgoing::Snapshot { topic, data, .. } => fits(data.as_bytes(), self.max_bytes)
                .map_err(|e| e.topic(topic.as_bytes()))
                .map(|()| None),
            Outgoing::Event { type_json, data } => {
                let message = format!(r#"{{"type":{type_json},"data":{data}}}"#);
                fits(message.as_bytes(), self.max_bytes).map(|()| Some(message))
            }
        }
    }

    /// Runs the script for a snapshot, `PUBLISH` for an event; `None`
    /// while there is no connection.
    fn send(&mut self, out: &Outgoing, event: Option<String>) -> Option<redis::RedisResult<Reply>> {
        let script = self.script.clone();
        let conn = self.connection()?;
        Some(match out {
            Outgoing::Snapshot {
                topic, data, floor, ..
            } => script
                .key(SEQ_KEY)
                .key(SNAPSHOTS_KEY)
                .key(CHANNEL)
                .arg(topic)
                .arg(data)
                .arg(*floor)
                .arg(MAX_SEQ)
                .invoke::<Option<Vec<u8>>>(conn)
                .map(Reply::Seq),
            Outgoing::Event { .. } => redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(format!("E {}", event.unwrap_or_default()))
                .query::<i64>(conn)
                .map(|_| Reply::Sent),
        })
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
fn subscriber(client: redis::Client, publisher: Publisher, max_bytes: usize) {
    let mut backoff = BACKOFF_MIN;
    // Set by a failure, cleared by `listen` once subscribed again.
    let mut down = false;
    while !publisher.is_closed() {
        match listen(&client, &publisher, &mut down, max_bytes) {
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
/// gone. Names and values are read as bytes: one that is not UTF-8 is
/// skipped like any other bad entry, and never ends the subscription.
fn listen(
    client: &redis::Client,
    publisher: &Publisher,
    down: &mut bool,
    max_bytes: usize,
) -> redis::RedisResult<()> {
    let mut listening = connect(client)?;
    // Wakes now and then to notice the loop has gone.
    listening.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut pubsub = listening.as_pubsub();
    pubsub.subscribe(CHANNEL)?;
    // Subscribed first, then read: nothing published in between is missed
    // (a snapshot read and also received is applied once, by its seq).
    let mut reader = connect(client)?;
    let snapshots: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(SNAPSHOTS_KEY)
        .query(&mut reader)?;
    drop(reader);
    for (topic, value) in snapshots {
        let taken =
            snapshot(&topic, &value, publisher.rules(), max_bytes).map_err(|e| e.topic(&topic));
        if hand_over(publisher, taken, "a stored snapshot").is_err() {
            return Ok(());
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
        let taken = parse(message.get_payload_bytes(), publisher.rules(), max_bytes);
        if hand_over(publisher, taken, "a message").is_err() {
            return Ok(());
        }
    }
}

/// Hands the loop what was taken, or logs and counts what was skipped.
/// `Err` when the loop has gone.
fn hand_over(
    publisher: &Publisher,
    taken: Result<Incoming, Refusal>,
    what: &str,
) -> Result<(), crate::PublishError> {
    let incoming = taken.unwrap_or_else(|refusal| {
        refusal.log(&format!("skipped {what}"));
        Incoming::Skipped(refusal.why)
    });
    publisher.cluster(incoming)
}

/// The highest seq taken from Redis: 2^53 - 1, the largest integer every
/// JSON client reads exactly (RFC 7493 section 2.2), and far from
/// overflowing when counted on. At a million publishes a second a topic
/// takes 285 years to reach it; only a value written into Redis by hand
/// gets there sooner.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// The one test of a seq from Redis, on the writer's path (the script's
/// reply) and the subscriber's (a stored value, a message): decimal digits
/// only, so no sign and no float text such as Lua's `1e+14`, from 1 to
/// [`MAX_SEQ`]. The text itself is never echoed: it is Redis's.
fn seq(text: &[u8]) -> Result<u64, Refusal> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(Refusal::new(Skip::Seq, "the seq is not a decimal integer"));
    }
    let seq = std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<u64>().ok());
    match seq {
        Some(seq @ 1..=MAX_SEQ) => Ok(seq),
        _ => Err(Refusal::new(
            Skip::Seq,
            format!("the seq is outside 1..={MAX_SEQ}"),
        )),
    }
}

/// What the loop hears of a snapshot the script answered with `text`:
/// stored with the seq every other node reads from the same text, or
/// refused at the seq's ceiling.
fn stored(out: Outgoing, text: Option<Vec<u8>>) -> Option<Incoming> {
    let Outgoing::Snapshot {
        req,
        topic,
        data,
        served,
        ..
    } = out
    else {
        return None;
    };
    let seq = text
        .ok_or_else(|| Refusal::new(Skip::Seq, format!("its seq has reached {MAX_SEQ}")))
        .and_then(|text| seq(&text))
        .map_err(|e| e.topic(topic.as_bytes()));
    match seq {
        // A write-back is served already; nothing waits on it.
        Ok(_) if served => None,
        Ok(seq) => Some(Incoming::Stored {
            req,
            topic,
            seq,
            data,
        }),
        Err(refusal) => {
            refusal.log("not served");
            let out = Outgoing::Snapshot {
                req,
                topic,
                data,
                floor: 0,
                served,
            };
            Some(Incoming::Refused {
                out,
                why: refusal.why,
            })
        }
    }
}

/// The one size test of a value to or from Redis: a snapshot's data, or
/// an event's `{"type":..,"data":..}`, as for an HTTP body.
fn fits(value: &[u8], max_bytes: usize) -> Result<(), Refusal> {
    if value.len() > max_bytes {
        return Err(Refusal::new(
            Skip::Size,
            format!(
                "{} bytes, over --max-publish-bytes ({max_bytes})",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// Why something from (or for) Redis is skipped, and the topic to name in
/// the log line: never the value, which may be anything.
#[derive(Debug)]
struct Refusal {
    why: Skip,
    topic: Option<String>,
    detail: String,
}

impl Refusal {
    fn new(why: Skip, detail: impl Into<String>) -> Refusal {
        Refusal {
            why,
            topic: None,
            detail: detail.into(),
        }
    }

    /// Names `topic` (as Redis had it, maybe not UTF-8, maybe long).
    fn topic(mut self, topic: &[u8]) -> Refusal {
        const SHOWN: usize = 64;
        let name = String::from_utf8_lossy(topic);
        let mut shown: String = name.chars().take(SHOWN).collect();
        if name.chars().nth(SHOWN).is_some() {
            shown.push_str("...");
        }
        self.topic = Some(shown);
        self
    }

    fn log(&self, what: &str) {
        let Refusal { why, detail, .. } = self;
        match &self.topic {
            Some(topic) => warn!("redis: {what} of {topic:?} ({}): {detail}", why.label()),
            None => warn!("redis: {what} ({}): {detail}", why.label()),
        }
    }
}

/// A message on the channel: `S topic seq data` or `E {"type":..,"data":..}`.
/// What another node (or anyone who can write to Redis) sent is checked
/// like a local publish: I-JSON, the topic's name and schema, a sane seq,
/// `--max-publish-bytes`.
fn parse(payload: &[u8], rules: &Rules, max_bytes: usize) -> Result<Incoming, Refusal> {
    if let Some(rest) = payload.strip_prefix(b"S ") {
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            return Err(Refusal::new(Skip::Invalid, "a snapshot without a value"));
        };
        let (topic, value) = rest.split_at_checked(space).unwrap_or_default();
        let value = value.get(1..).unwrap_or_default();
        return snapshot(topic, value, rules, max_bytes).map_err(|e| e.topic(topic));
    }
    let Some(event) = payload.strip_prefix(b"E ") else {
        return Err(Refusal::new(Skip::Invalid, "a message neither S nor E"));
    };
    fits(event, max_bytes)?;
    let event = std::str::from_utf8(event)
        .map_err(|_| Refusal::new(Skip::Utf8, "an event that is not UTF-8"))?;
    let (type_json, data) = rules
        .take_event(event.as_bytes())
        .map_err(|e| Refusal::new(Skip::Invalid, format!("an event: {e}")))?;
    Ok(Incoming::Event { type_json, data })
}

/// A stored value, `seq data`, as a snapshot for `topic`.
fn snapshot(
    topic: &[u8],
    value: &[u8],
    rules: &Rules,
    max_bytes: usize,
) -> Result<Incoming, Refusal> {
    let topic = std::str::from_utf8(topic)
        .map_err(|_| Refusal::new(Skip::Utf8, "a topic name that is not UTF-8"))?;
    // Not the error's text: it would quote a name of any length.
    rules.check(topic).map_err(|e| match e {
        TopicError::Invalid(_) => Refusal::new(Skip::Invalid, "not a well-formed topic name"),
        _ => Refusal::new(Skip::Invalid, "not a topic this node serves"),
    })?;
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return Err(Refusal::new(Skip::Invalid, "a value without a seq"));
    };
    let (seq_text, data) = value.split_at_checked(space).unwrap_or_default();
    let data = data.get(1..).unwrap_or_default();
    let seq = seq(seq_text)?;
    fits(data, max_bytes)?;
    std::str::from_utf8(data).map_err(|_| Refusal::new(Skip::Utf8, "a value that is not UTF-8"))?;
    let (value, data) =
        json::canonical(data).map_err(|e| Refusal::new(Skip::Invalid, e.to_string()))?;
    rules
        .check_size(data.len())
        .map_err(|e| Refusal::new(Skip::Size, e.to_string()))?;
    rules
        .check_data(topic, &value)
        .map_err(|e| Refusal::new(Skip::Invalid, format!("refused by its schema: {e}")))?;
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

    const MAX: usize = 1 << 20;

    fn rules() -> Rules {
        let validator = Validator::new(Preset::Adw, &[]).unwrap();
        Rules::new(Preset::Adw, &[], false, validator)
    }

    fn refused(payload: &[u8], rules: &Rules, max_bytes: usize) -> Refusal {
        match parse(payload, rules, max_bytes) {
            Ok(taken) => panic!("{payload:?} taken: {taken:?}"),
            Err(refusal) => refusal,
        }
    }

    /// A value from Redis that a subscriber's queue could not hold is
    /// skipped as too large, like an HTTP publish of it.
    #[test]
    fn values_too_large_for_a_queue_are_skipped() {
        let rules = Rules::new(Preset::None, &["big".into()], false, Validator::off())
            .with_max_queue(crate::topic::MIN_QUEUE);
        let fits = crate::topic::MIN_QUEUE - crate::topic::QUEUE_RESERVE;
        let value = |len: usize| format!("S big 3 \"{}\"", "x".repeat(len - 2));
        assert!(parse(value(fits).as_bytes(), &rules, MAX).is_ok());
        let refusal = refused(value(fits + 1).as_bytes(), &rules, MAX);
        assert!(matches!(refusal.why, Skip::Size), "{refusal:?}");
    }

    #[test]
    fn messages_parse_and_bad_ones_are_refused() {
        let rules = rules();
        match parse(
            b"S queue 12 {\"phases\": [],\r\"total\":0,\"paused\":false}",
            &rules,
            MAX,
        ) {
            Ok(Incoming::Snapshot { topic, seq, data }) => {
                assert_eq!(
                    (topic.as_str(), seq, data.as_str()),
                    ("queue", 12, r#"{"phases":[],"total":0,"paused":false}"#)
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(br#"E {"type":"a b","data":{"x":1}}"#, &rules, MAX) {
            Ok(Incoming::Event { type_json, data }) => {
                assert_eq!(
                    (type_json.as_str(), data.as_str()),
                    (r#""a b""#, r#"{"x":1}"#)
                );
            }
            other => panic!("{other:?}"),
        }
        for bad in ["", "S queue", "S queue x {}", "E {", "X queue 1 {}"] {
            assert!(parse(bad.as_bytes(), &rules, MAX).is_err(), "{bad}");
        }
    }

    /// Redis is not trusted more than an HTTP client: a seq past 2^53 - 1
    /// (or one that would overflow when counted on), JSON that is not
    /// I-JSON, a schema's refusal and an unserved topic are each refused,
    /// each under its own reason.
    #[test]
    fn values_from_redis_are_checked_like_local_publishes() {
        let rules = rules();
        let max = format!("S qc-metrics {} {{}}", u64::MAX);
        let past = format!("S qc-metrics {} {{}}", MAX_SEQ + 1);
        let at = format!("S routes {MAX_SEQ} []");
        for (bad, why, detail) in [
            (max.as_str(), Skip::Seq, "outside"),
            (past.as_str(), Skip::Seq, "outside"),
            ("S qc-metrics 0 {}", Skip::Seq, "outside"),
            ("S qc-metrics 1e+14 {}", Skip::Seq, "decimal"),
            ("S qc-metrics +3 {}", Skip::Seq, "decimal"),
            ("S qc-metrics 3 1e400", Skip::Invalid, "out of range"),
            (r#"S qc-metrics 3 "\ud800""#, Skip::Invalid, "escape"),
            (r#"S queue 3 {"phases":null}"#, Skip::Invalid, "schema"),
            ("S no-such-topic 3 {}", Skip::Invalid, "serves"),
            (
                r#"E {"type":"queue_update","data":{"phases":null}}"#,
                Skip::Invalid,
                "schema",
            ),
            (
                r#"E {"type":"x","data":1e400}"#,
                Skip::Invalid,
                "out of range",
            ),
        ] {
            let e = refused(bad.as_bytes(), &rules, MAX);
            assert_eq!(e.why, why, "{bad}: {e:?}");
            assert!(e.detail.contains(detail), "{bad}: {e:?}");
        }
        let ok = parse(at.as_bytes(), &rules, MAX);
        assert!(ok.is_ok(), "{ok:?}");
    }

    /// The writer's reply and the subscriber's entries go through the
    /// same test: digits only, 1 to 2^53 - 1, whatever Lua would print.
    #[test]
    fn a_seq_is_decimal_digits_from_1_to_the_ceiling() {
        assert_eq!(seq(b"1").ok(), Some(1));
        assert_eq!(seq(b"100000000000000").ok(), Some(100_000_000_000_000));
        assert_eq!(seq(b"9007199254740991").ok(), Some(MAX_SEQ));
        for bad in [
            &b""[..],
            b"0",
            b"9007199254740992",
            b"99999999999999999999999",
            b"1e+14",
            b"1e14",
            b"+1",
            b"-1",
            b" 1",
            b"1.0",
            b"\xff",
        ] {
            let e = seq(bad).expect_err(&String::from_utf8_lossy(bad));
            assert_eq!(e.why, Skip::Seq);
        }
    }

    /// Bytes that are not UTF-8, in the name or the value, and a value
    /// one byte over the limit are each skipped under their own reason;
    /// a value at the limit passes.
    #[test]
    fn names_and_values_are_bytes_held_to_utf8_and_the_size_limit() {
        let rules = rules();
        let utf8 = [
            &b"S queue 3 {\"x\":\"\xff\"}"[..],
            b"S qc-\xffmetrics 3 {}",
            b"E {\"type\":\"x\",\"data\":\"\xc3\"}",
        ];
        for bad in utf8 {
            assert_eq!(refused(bad, &rules, MAX).why, Skip::Utf8, "{bad:?}");
        }
        let data = r#"{"phases":[],"total":0,"paused":false}"#;
        let message = format!("S queue 3 {data}");
        assert!(parse(message.as_bytes(), &rules, data.len()).is_ok());
        let e = refused(message.as_bytes(), &rules, data.len() - 1);
        assert_eq!(e.why, Skip::Size, "{e:?}");
        let event = r#"{"type":"x","data":1}"#;
        let message = format!("E {event}");
        assert!(parse(message.as_bytes(), &rules, event.len()).is_ok());
        let e = refused(message.as_bytes(), &rules, event.len() - 1);
        assert_eq!(e.why, Skip::Size, "{e:?}");
        // The smallest limit there is: nothing fits, nothing breaks.
        assert_eq!(refused(b"S routes 1 []", &rules, 0).why, Skip::Size);
    }
}
