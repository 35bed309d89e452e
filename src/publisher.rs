//! The handle producer threads publish through: a bounded channel into the
//! event loop plus a `mio::Waker`, woken at most once per loop turn.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use mio::Waker;
use serde::Serialize;

use crate::topic::schema::SchemaError;
use crate::topic::{Rules, TopicError};
use crate::wire::json::{self, JsonError};

/// Commands a publisher can queue. Held at most `CHANNEL_BOUND` deep; a
/// producer that outruns the loop waits, which bounds memory and is the
/// right backpressure for a producer thread. The channel allocates and
/// touches every slot at start (88 bytes each), so the bound is paid in
/// idle memory: 64Ki slots were 5.6 MB. The loop drains the whole channel
/// each time it wakes, so a few hundred is plenty of slack.
const CHANNEL_BOUND: usize = 256;

#[derive(Debug)]
pub(crate) enum Command {
    /// `data` is valid JSON: the topic's new snapshot.
    Snapshot { topic: String, data: String },
    /// A one-off event; `type_json` is a JSON string literal.
    Event { type_json: String, data: String },
    /// Stop accepting, close every client with 1012, return from `run`.
    Shutdown,
    /// Stop accepting, close subscribers spread over `--drain`, then as
    /// `Shutdown`; during a drain, close the rest at once.
    Drain,
    /// Load the TLS certificate again (SIGHUP).
    Reload,
    /// From the link to Redis (`--redis`).
    #[cfg(feature = "redis")]
    Cluster(Replicated),
}

/// What the loop asks the link to Redis to send (see [`crate::cluster`]).
#[derive(Debug)]
pub enum Outgoing {
    /// A topic's new snapshot; `req` names an HTTP publish waiting for
    /// its seq; `floor` is the lowest seq it may get.
    Snapshot {
        req: Option<u64>,
        topic: String,
        data: String,
        floor: u64,
        /// Already served by this node (written back after an outage): if
        /// Redis cannot take it, it is only remembered again.
        served: bool,
    },
    /// A one-off event for every node's clients.
    Event { type_json: String, data: String },
}

/// What the link to Redis tells the loop (see [`crate::cluster`]).
#[derive(Debug)]
pub enum Replicated {
    /// A snapshot as Redis ordered it.
    Snapshot {
        topic: String,
        seq: u64,
        data: String,
    },
    /// An event from some node.
    Event { type_json: String, data: String },
    /// The writer stored a publish of this node under `seq`: it is
    /// served here at once, so a publish answered over HTTP is already
    /// this node's snapshot, and `req` names that HTTP publish.
    Stored {
        req: Option<u64>,
        topic: String,
        seq: u64,
        data: String,
    },
    /// Redis could not take this publish: serve it here.
    Failed(Outgoing),
    /// The writer would not write this publish: other nodes would skip it
    /// (over `--max-publish-bytes` once compact), or its topic's seq has
    /// reached the ceiling. A snapshot is not served anywhere; an event is
    /// broadcast here only.
    Refused { out: Outgoing, why: Skip },
    /// The subscriber skipped an entry or a message (logged there).
    Skipped(Skip),
    /// The link is back: topics served locally meanwhile are to be written
    /// back.
    Up,
}

/// Why an entry or a message from Redis was skipped (or a publish not
/// written to it): each is counted under its label in `/healthz`
/// (`redis_skipped`) and `/metrics` (`statecast_redis_skipped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A topic name or a value that is not UTF-8.
    Utf8,
    /// A seq that is not a decimal integer from 1 to 2^53 - 1, or a topic
    /// whose seq has reached that ceiling.
    Seq,
    /// A value over `--max-publish-bytes`.
    Size,
    /// Anything else a publish is refused for: not I-JSON, the topic's
    /// name or schema, a message of no known form.
    Invalid,
}

impl Skip {
    /// Every reason, in the order of its counter.
    pub const ALL: [Skip; 4] = [Skip::Utf8, Skip::Seq, Skip::Size, Skip::Invalid];

    /// The label it is counted under.
    pub fn label(self) -> &'static str {
        match self {
            Skip::Utf8 => "utf8",
            Skip::Seq => "seq",
            Skip::Size => "size",
            Skip::Invalid => "invalid",
        }
    }
}

/// Why a publish did not go through.
#[derive(Debug)]
pub enum PublishError {
    /// The server has stopped; nothing will ever read this publish.
    Closed,
    /// The topic is not one the server serves.
    Topic(TopicError),
    /// The data did not serialise, or is not I-JSON.
    Json(JsonError),
    /// The topic's schema refuses the data (HTTP answers 422); nothing
    /// retained changed.
    Invalid { topic: String, error: SchemaError },
    /// Too large for a subscriber's queue (`--max-queue-bytes`; HTTP
    /// answers 413); nothing retained changed.
    TooLarge(String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Closed => f.write_str("the server has stopped"),
            PublishError::Topic(e) => e.fmt(f),
            PublishError::Json(e) => e.fmt(f),
            PublishError::Invalid { topic, error } => {
                write!(f, "refused by the schema of {topic}: {error}")
            }
            PublishError::TooLarge(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for PublishError {}

/// Publishes snapshots and events into a running server from any thread.
///
/// Cheap to clone. Publishes to one topic that arrive between two turns of
/// the loop are encoded once: only the newest is sent, and `seq` counts
/// them all.
#[derive(Clone)]
pub struct Publisher {
    tx: SyncSender<Command>,
    waker: Arc<Waker>,
    /// Set while a wake-up is on its way, so a burst of publishes costs one
    /// `eventfd` write rather than one per publish.
    wake_pending: Arc<AtomicBool>,
    rules: Arc<Rules>,
    /// Set when the loop has gone, so idle producers can stop too.
    closed: Arc<AtomicBool>,
    /// Providers' health, shown in `/healthz`.
    providers: Registry,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

/// The loop's end of the channel.
pub(crate) struct Inbox {
    rx: Receiver<Command>,
    /// Shared with every `Publisher`: a wake-up is on its way.
    wake_pending: Arc<AtomicBool>,
    /// Set when the loop has gone (on drop), so producers stop.
    closed: Arc<AtomicBool>,
    providers: Registry,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
    }
}

impl Inbox {
    /// Called before draining: a publish after this point wakes the loop
    /// again. `swap` rather than `store` so this synchronises with the
    /// publisher's `swap` and everything it sent before it is visible.
    pub fn rearm(&self) {
        self.wake_pending.swap(false, Ordering::AcqRel);
    }

    /// The next command, if one is waiting.
    pub fn try_recv(&self) -> Option<Command> {
        self.rx.try_recv().ok()
    }

    /// Where providers report their health.
    pub fn providers(&self) -> &Registry {
        &self.providers
    }
}

pub(crate) fn channel(waker: Arc<Waker>, rules: Arc<Rules>) -> (Publisher, Inbox) {
    let (tx, rx) = sync_channel(CHANNEL_BOUND);
    let wake_pending = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    let providers = Registry::default();
    let publisher = Publisher {
        tx,
        waker,
        wake_pending: wake_pending.clone(),
        rules,
        closed: closed.clone(),
        providers: providers.clone(),
    };
    let inbox = Inbox {
        rx,
        wake_pending,
        closed,
        providers,
    };
    (publisher, inbox)
}

impl Publisher {
    /// Serialises `data` in the caller's thread, checks it against the
    /// topic's schema there, and makes it `topic`'s snapshot.
    pub fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        data: &T,
    ) -> Result<(), PublishError> {
        self.rules.check(topic).map_err(PublishError::Topic)?;
        if self.rules.validates(topic) {
            let value = serde_json::to_value(data).map_err(|e| PublishError::Json(e.into()))?;
            self.check(topic, &value)?;
        }
        let data = serde_json::to_string(data).map_err(|e| PublishError::Json(e.into()))?;
        self.check_size(data.len())?;
        self.send(Command::Snapshot {
            topic: topic.to_owned(),
            data,
        })
    }

    /// Makes `json` `topic`'s snapshot once it has passed as I-JSON and
    /// against the topic's schema. What is sent is the value's compact
    /// text, never `json` itself.
    pub fn publish_json(&self, topic: &str, json: &str) -> Result<(), PublishError> {
        self.rules.check(topic).map_err(PublishError::Topic)?;
        let (value, data) = json::canonical(json.as_bytes()).map_err(PublishError::Json)?;
        self.check(topic, &value)?;
        self.check_size(data.len())?;
        self.send(Command::Snapshot {
            topic: topic.to_owned(),
            data,
        })
    }

    /// Checks `data` as [`publish`](Self::publish) would, without publishing.
    pub fn check(&self, topic: &str, data: &serde_json::Value) -> Result<(), PublishError> {
        self.rules
            .check_data(topic, data)
            .map_err(|error| PublishError::Invalid {
                topic: topic.to_owned(),
                error,
            })
    }

    /// Sends `{"type":event_type,"data":data}` to every subscriber
    /// (WebSocket or SSE), once. An event typed like a preset topic's update (`queue_update`)
    /// is rendered like one, so it must pass that topic's schema.
    pub fn event<T: Serialize + ?Sized>(
        &self,
        event_type: &str,
        data: &T,
    ) -> Result<(), PublishError> {
        let type_json =
            serde_json::to_string(event_type).map_err(|e| PublishError::Json(e.into()))?;
        let value = serde_json::to_value(data).map_err(|e| PublishError::Json(e.into()))?;
        self.rules
            .check_event(event_type, &value)
            .map_err(|error| PublishError::Invalid {
                topic: event_type.to_owned(),
                error,
            })?;
        let data = serde_json::to_string(&value).map_err(|e| PublishError::Json(e.into()))?;
        self.check_size(type_json.len() + data.len())?;
        self.send(Command::Event { type_json, data })
    }

    fn check_size(&self, len: usize) -> Result<(), PublishError> {
        self.rules
            .check_size(len)
            .map_err(|e| PublishError::TooLarge(e.to_string()))
    }

    /// The topic rules publishes are checked against.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Whether the server has stopped; every publish would fail with `Closed`.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Where providers report their health for `/healthz`.
    pub fn providers(&self) -> &Registry {
        &self.providers
    }

    /// Asks the server to shut down: 1012 to every client at once, then
    /// `run` returns.
    pub fn shutdown(&self) -> Result<(), PublishError> {
        self.send(Command::Shutdown)
    }

    /// Asks the server to drain, as SIGTERM does: stop accepting, close
    /// the subscribers spread over `--drain` (WebSocket 1012, SSE a
    /// jittered `retry:`), then shut down. Asked again during the drain,
    /// it closes the rest at once.
    pub fn drain(&self) -> Result<(), PublishError> {
        self.send(Command::Drain)
    }

    /// Asks the server to load its TLS certificate pair again, as SIGHUP
    /// does: new connections get the new one, open ones keep theirs, and
    /// a pair that fails to load leaves the old one serving.
    pub fn reload(&self) -> Result<(), PublishError> {
        self.send(Command::Reload)
    }

    /// Hands the loop what the link to Redis received.
    #[cfg(feature = "redis")]
    pub(crate) fn cluster(&self, replicated: Replicated) -> Result<(), PublishError> {
        self.send(Command::Cluster(replicated))
    }

    fn send(&self, command: Command) -> Result<(), PublishError> {
        match self.tx.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(command)) => {
                // The loop is behind: make sure it is awake, then wait.
                self.wake();
                self.tx.send(command).map_err(|_| PublishError::Closed)?;
            }
            Err(TrySendError::Disconnected(_)) => return Err(PublishError::Closed),
        }
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.wake();
        }
        Ok(())
    }

    fn wake(&self) {
        // A wake after the loop has gone fails harmlessly; the next send
        // reports `Closed`.
        let _ = self.waker.wake();
    }
}

/// How a provider is doing, for `/healthz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderStatus {
    pub ok: bool,
    pub last_error: Option<String>,
    /// Times it went into error, or its error changed.
    pub errors: u64,
}

/// Every provider's status by name, shared between provider threads and
/// the loop's `/healthz`.
pub type Registry = Arc<Mutex<BTreeMap<String, ProviderStatus>>>;

/// Records a provider's health: `None` is healthy, and clears the last
/// error so a recovered provider no longer shows one.
pub fn set_status(registry: &Registry, name: &str, problem: Option<String>) {
    let mut map = registry.lock().unwrap_or_else(|e| e.into_inner());
    let status = map.entry(name.to_owned()).or_insert(ProviderStatus {
        ok: true,
        last_error: None,
        errors: 0,
    });
    if problem.is_some() && problem != status.last_error {
        status.errors += 1;
    }
    status.ok = problem.is_none();
    status.last_error = problem;
}
