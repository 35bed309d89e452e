//! Topics: which names exist, each topic's retained snapshot and subscribers,
//! and the JSON messages clients receive, encoded once as WebSocket frames.

pub mod adw;
pub mod schema;

pub use adw::Preset;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use slab::Slab;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::wire::Shared;
use crate::wire::deflate::{self, Deflater};
use crate::wire::json;
use crate::wire::protocol::write_header;
use adw::ADW_STATE_PREFIX;
use schema::{SchemaError, Validator};

/// Longest topic name (or `adw_id`) accepted.
pub const MAX_NAME_LEN: usize = 64;

/// `[a-z0-9-]{1,64}`: a topic name outside the `adw-state/` family.
pub fn is_plain_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `[A-Za-z0-9_-]{1,64}`: CONTRACT.md treats an `adw_id` as an opaque token.
pub fn is_adw_id(id: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why a topic name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// Not a well-formed name: no server could serve it.
    Invalid(String),
    /// Well formed, but not a topic this server serves.
    Unknown(String),
    /// A valid name, but `--max-topics` topics exist already.
    Full(usize),
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::Invalid(name) => match name.strip_prefix(ADW_STATE_PREFIX) {
                Some(id) => write!(
                    f,
                    "invalid adw_id {id:?}: 1 to {MAX_NAME_LEN} of A-Z, a-z, 0-9, _ and -"
                ),
                None => write!(
                    f,
                    "invalid topic name {name:?}: 1 to {MAX_NAME_LEN} of a-z, 0-9 and -"
                ),
            },
            TopicError::Unknown(name) => write!(f, "unknown topic {name:?}"),
            TopicError::Full(max) => write!(f, "topic limit reached ({max} topics)"),
        }
    }
}

impl std::error::Error for TopicError {}

/// Which names are topics, and what data each accepts. Shared with every
/// `Publisher` so a bad name or a value the schema refuses is refused in the
/// producer's thread, not logged later by the loop.
#[derive(Debug)]
pub struct Rules {
    preset: Preset,
    extra: HashSet<String>,
    any_topic: bool,
    validator: Validator,
    /// The longest value (compact JSON text) a subscriber's queue can take
    /// beside its envelope and a response head; see [`QUEUE_RESERVE`].
    max_data: usize,
}

/// What a subscriber's queue must hold besides a published value, at
/// most: a response head (a 101, an SSE or a `/api/v1/state` head, whose
/// echoed `Origin` is bounded by the request head's limit) and the
/// message's envelope (type, `adw_id`, seq, frame header, SSE field names).
pub const QUEUE_RESERVE: usize = crate::wire::http::MAX_HEAD + 1024;

/// The smallest `--max-queue-bytes`: room for the reserve and a value of
/// the same size again (the ADW defaults take well under 1 KiB).
pub const MIN_QUEUE: usize = 2 * QUEUE_RESERVE;

impl Rules {
    pub fn new(preset: Preset, extra: &[String], any_topic: bool, validator: Validator) -> Self {
        Rules {
            preset,
            extra: extra.iter().cloned().collect(),
            any_topic,
            validator,
            max_data: usize::MAX,
        }
    }

    /// Refuses values that would not fit a subscriber's queue of
    /// `max_queue` bytes: stored, they could never be delivered.
    pub fn with_max_queue(mut self, max_queue: usize) -> Self {
        self.max_data = max_queue.saturating_sub(QUEUE_RESERVE);
        self
    }

    /// Whether a message carrying `len` bytes of values can be delivered.
    pub fn check_size(&self, len: usize) -> Result<(), Refused> {
        if len <= self.max_data {
            return Ok(());
        }
        Err(Refused::TooLarge(format!(
            "a value of {len} bytes would not fit a subscriber's queue: at most {} \
             with --max-queue-bytes {} (it also holds a response head and the envelope)",
            self.max_data,
            self.max_data.saturating_add(QUEUE_RESERVE)
        )))
    }

    /// Whether values published to `topic` are checked against a schema.
    pub fn validates(&self, topic: &str) -> bool {
        self.validator.applies(topic)
    }

    /// Checks `data` against `topic`'s schema, if it has one.
    pub fn check_data(&self, topic: &str, data: &serde_json::Value) -> Result<(), SchemaError> {
        self.validator.check(topic, data)
    }

    /// Takes in an event, `{"type":..,"data":..}`, from HTTP or from
    /// another node: I-JSON, a non-empty string `type`, a `data` (a message
    /// of a known type without it breaks its panel, CONTRACT.md), and the
    /// schema of a preset type. Returns the type as a JSON string and the
    /// data, both compact text written here.
    pub fn take_event(&self, bytes: &[u8]) -> Result<(String, String), Refused> {
        let invalid = |why: &str| Refused::Invalid(why.to_owned());
        let event = match json::parse(bytes) {
            Ok(serde_json::Value::Object(event)) => event,
            Ok(_) => {
                return Err(invalid(
                    "an event is a JSON object with \"type\" and \"data\"",
                ));
            }
            Err(e) => return Err(Refused::Invalid(e.to_string())),
        };
        let kind = match event.get("type") {
            Some(serde_json::Value::String(kind)) if !kind.is_empty() => kind,
            _ => return Err(invalid("an event needs a non-empty string \"type\"")),
        };
        let Some(data) = event.get("data") else {
            return Err(invalid("an event needs a \"data\" field"));
        };
        self.check_event(kind, data)
            .map_err(|error| Refused::Schema {
                name: kind.clone(),
                error,
            })?;
        let type_json = json::compact(&serde_json::Value::from(kind.as_str()));
        let data = json::compact(data);
        self.check_size(type_json.len() + data.len())?;
        Ok((type_json, data))
    }

    /// Checks an event's data when its type is a preset topic's message type.
    pub fn check_event(
        &self,
        message_type: &str,
        data: &serde_json::Value,
    ) -> Result<(), SchemaError> {
        self.validator.check_event(message_type, data)
    }

    /// Checks that `name` is a topic this server serves: a malformed name
    /// is `Invalid`, a well-formed one the server does not serve `Unknown`.
    pub fn check(&self, name: &str) -> Result<(), TopicError> {
        let adw = self.preset == Preset::Adw;
        let (well_formed, served) = match name.strip_prefix(ADW_STATE_PREFIX) {
            Some(id) if adw => (is_adw_id(id), true),
            _ => {
                let plain = is_plain_name(name);
                let served = (adw && adw::topic(name).is_some())
                    || self.extra.contains(name)
                    || self.any_topic;
                (plain, served)
            }
        };
        match (well_formed, served) {
            (false, _) => Err(TopicError::Invalid(name.to_owned())),
            (true, false) => Err(TopicError::Unknown(name.to_owned())),
            (true, true) => Ok(()),
        }
    }
}

/// One published message, encoded once as a complete WebSocket text frame.
/// Every subscriber's queue holds a clone of `frame`, never a copy.
#[derive(Debug, Clone)]
pub struct Message {
    pub frame: Shared,
    header_len: usize,
    /// Where `data` starts in the JSON; it runs to the closing brace.
    data_at: usize,
}

impl Message {
    /// The JSON text inside the frame.
    pub fn json(&self) -> &[u8] {
        self.frame.get(self.header_len..).unwrap_or_default()
    }

    /// The published value inside the message: `data` of the envelope.
    pub fn data(&self) -> &[u8] {
        let json = self.json();
        json.get(self.data_at..json.len().saturating_sub(1))
            .unwrap_or_default()
    }

    /// Frames the concatenation of `parts` as one text message, in one
    /// allocation; the last two parts are the value and the closing brace.
    fn from_parts(parts: &[&[u8]]) -> Message {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut frame = Vec::with_capacity(len + 10);
        write_header(OpCode::Data(Data::Text), len, &mut frame);
        let header_len = frame.len();
        for part in parts {
            frame.extend_from_slice(part);
        }
        let data_at = parts.iter().rev().skip(2).map(|p| p.len()).sum();
        Message {
            frame: Arc::from(frame),
            header_len,
            data_at,
        }
    }

    /// A snapshot message: `{"type":..,"seq":..,"data":..}`, plus `adw_id`
    /// for the adw-state family as CONTRACT.md requires.
    fn snapshot(message_type: &str, adw_id: Option<&str>, seq: u64, data: &str) -> Message {
        // Topic names and adw_ids are restricted to characters that need no
        // JSON escaping, so they are written as they are.
        let mut head = format!(r#"{{"type":"{message_type}""#);
        if let Some(id) = adw_id {
            head.push_str(&format!(r#","adw_id":"{id}""#));
        }
        head.push_str(&format!(r#","seq":{seq},"data":"#));
        Message::from_parts(&[head.as_bytes(), data.as_bytes(), b"}"])
    }

    /// The same message as a Server-Sent Event: `id:` (for a snapshot, its
    /// seq, which `Last-Event-ID` brings back), then the JSON as `data:`
    /// lines. A published value keeps its own line breaks, so each line is
    /// its own `data:` line, which the client joins back with `\n`.
    pub fn sse(&self, id: Option<u64>) -> Shared {
        let json = self.json();
        let mut out = Vec::with_capacity(json.len() + 32);
        if let Some(id) = id {
            out.extend_from_slice(format!("id: {id}\n").as_bytes());
        }
        for line in json.split(|&b| b == b'\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            out.push(b'\n');
        }
        out.push(b'\n');
        Shared::from(out)
    }

    /// A one-off event: `{"type":..,"data":..}`; `type_json` is already a
    /// JSON string literal.
    pub fn event(type_json: &str, data: &str) -> Message {
        Message::from_parts(&[
            br#"{"type":"#,
            type_json.as_bytes(),
            br#","data":"#,
            data.as_bytes(),
            b"}",
        ])
    }
}

/// What a subscriber to `adw-state/{id}` gets before anything is published.
pub fn default_adw_state(name: &str) -> Message {
    let id = adw::state_id(name).unwrap_or_default();
    let data = adw::state_default(id).to_string();
    Message::snapshot("adw_state_update", Some(id), 0, &data)
}

/// Where an open connection sits in its topic's subscriber list. The
/// registry hands it out on subscribe and takes it back on unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub topic: usize,
    /// Index in the topic's subscriber list; a swap-remove may move it,
    /// and [`Topics::unsubscribe`] says whose.
    pub index: usize,
    /// What encoding of each message it takes.
    pub form: Form,
}

/// The encodings a subscriber may take a message in. Each is made at most
/// once per message, and only when a subscriber needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A WebSocket text frame.
    Frame,
    /// A WebSocket that negotiated permessage-deflate: the compressed frame
    /// when the message is worth compressing, else the plain one.
    Deflate,
    /// A Server-Sent Event.
    Sse,
}

/// One message in the encodings its subscribers need: the frame always,
/// the others when asked for (`deflated` is `None` also when compressing
/// did not pay).
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a> {
    pub frame: &'a Shared,
    pub deflated: Option<&'a Shared>,
    pub sse: Option<&'a Shared>,
}

impl<'a> Encoded<'a> {
    /// The bytes a subscriber of `form` gets.
    pub fn pick(&self, form: Form) -> &'a Shared {
        match form {
            Form::Frame => self.frame,
            Form::Deflate => self.deflated.unwrap_or(self.frame),
            Form::Sse => self.sse.unwrap_or(self.frame),
        }
    }
}

/// The one compressor for every message (see [`crate::wire::deflate`]),
/// and what it has cost, for `/metrics`.
#[derive(Debug, Default)]
pub struct Compressor {
    deflater: Deflater,
    /// Messages compressed, whether or not the result was used.
    pub messages: u64,
    /// Time spent compressing them.
    pub busy: std::time::Duration,
}

impl Compressor {
    /// `message` as a compressed frame, or `None` when it is not worth it.
    pub fn compress(&mut self, message: &Message) -> Option<Shared> {
        if message.json().len() < deflate::MIN_COMPRESSED {
            return None;
        }
        let started = std::time::Instant::now();
        let frame = self.deflater.text_frame(message.json()).map(Shared::from);
        self.messages += 1;
        self.busy += started.elapsed();
        frame
    }
}

/// One topic: its retained snapshot and who is subscribed.
#[derive(Debug)]
pub struct Topic {
    name: Box<str>,
    /// `<topic>_update`, with `-` turned into `_`.
    message_type: Box<str>,
    /// Publishes so far; a default snapshot has seq 0.
    seq: u64,
    /// What a new subscriber gets at once; `None` until the first publish
    /// for topics outside the preset.
    snapshot: Option<Message>,
    /// Slab keys of the connections subscribed. A connection keeps its
    /// index here so leaving is O(1).
    subscribers: Vec<usize>,
    /// How many of them are SSE streams.
    streams: usize,
    /// How many of them negotiated permessage-deflate.
    deflaters: usize,
    /// When the snapshot was last set (the server's start for a default).
    published_at: std::time::Instant,
    /// Snapshots queued for subscribers, across publishes.
    deliveries: u64,
    /// The snapshot as a Server-Sent Event, encoded once when a stream
    /// first needs it.
    sse: Option<Shared>,
    /// The snapshot compressed, once a subscriber that negotiated
    /// permessage-deflate needs it (the inner `None`: not worth it).
    deflated: Option<Option<Shared>>,
    /// Preset and `--topic` topics live for the server's life; others are
    /// dropped when nobody needs them.
    permanent: bool,
    /// Published this turn and listed in `Topics::fan_out`: the newest
    /// snapshot goes out once, however many publishes came.
    fan_out_pending: bool,
}

impl Topic {
    fn new(name: &str, permanent: bool) -> Topic {
        let message_type = if name.starts_with(ADW_STATE_PREFIX) {
            "adw_state_update".to_owned()
        } else {
            format!("{}_update", name.replace('-', "_"))
        };
        Topic {
            name: name.into(),
            message_type: message_type.into(),
            seq: 0,
            snapshot: None,
            subscribers: Vec::new(),
            streams: 0,
            deflaters: 0,
            published_at: std::time::Instant::now(),
            deliveries: 0,
            sse: None,
            deflated: None,
            permanent,
            fan_out_pending: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn snapshot(&self) -> Option<&Message> {
        self.snapshot.as_ref()
    }

    pub fn subscribers(&self) -> &[usize] {
        &self.subscribers
    }

    fn adw_id(&self) -> Option<&str> {
        self.name.strip_prefix(ADW_STATE_PREFIX)
    }

    /// Encodes `data` (valid JSON) as the new snapshot, counting `publishes`
    /// publishes of which this is the newest.
    fn set_snapshot(&mut self, data: &str, publishes: u64) {
        self.seq += publishes;
        let message = Message::snapshot(&self.message_type, self.adw_id(), self.seq, data);
        self.snapshot = Some(message);
        self.sse = None;
        self.deflated = None;
        self.published_at = std::time::Instant::now();
    }

    pub fn published_at(&self) -> std::time::Instant {
        self.published_at
    }

    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// How many subscribers are SSE streams.
    pub fn streams(&self) -> usize {
        self.streams
    }

    /// The snapshot as an SSE event, encoded at most once per publish.
    fn sse_snapshot(&mut self) -> Option<Shared> {
        if self.sse.is_none() {
            self.sse = self.snapshot.as_ref().map(|m| m.sse(Some(self.seq)));
        }
        self.sse.clone()
    }

    /// The snapshot compressed, at most once per publish.
    fn deflated_snapshot(&mut self, compressor: &mut Compressor) -> Option<Shared> {
        if self.deflated.is_none() {
            let snapshot = self.snapshot.as_ref()?;
            self.deflated = Some(compressor.compress(snapshot));
        }
        self.deflated.clone().flatten()
    }

    /// The snapshot in `form`.
    fn snapshot_as(&mut self, form: Form, compressor: &mut Compressor) -> Option<Shared> {
        let frame = self.snapshot.as_ref()?.frame.clone();
        match form {
            Form::Frame => Some(frame),
            Form::Deflate => self.deflated_snapshot(compressor).or(Some(frame)),
            Form::Sse => self.sse_snapshot(),
        }
    }

    /// A topic outside the preset that no publish has reached.
    fn is_placeholder(&self) -> bool {
        !self.permanent && self.seq == 0
    }

    /// Holds nothing a new subscriber would not get anyway.
    fn unused(&self) -> bool {
        !self.permanent && self.subscribers.is_empty() && !self.fan_out_pending
    }
}

/// Why a value was not taken in.
#[derive(Debug)]
pub enum Refused {
    /// Not I-JSON, or not the shape it must have (HTTP answers 400).
    Invalid(String),
    /// The schema of `name` refuses it (HTTP answers 422).
    Schema { name: String, error: SchemaError },
    /// Too large for a subscriber's queue (HTTP answers 413).
    TooLarge(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Invalid(why) | Refused::TooLarge(why) => f.write_str(why),
            Refused::Schema { name, error } => write!(f, "{name:?} refused by its schema: {error}"),
        }
    }
}

/// What a publish came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    /// Subscribers the snapshot will reach.
    pub subscribers: usize,
}

/// Every topic that exists, by name and by id, and who is subscribed to
/// what. The subscriber lists, the fan-out list and the subscription
/// indexes are written here and nowhere else.
#[derive(Debug)]
pub struct Topics {
    rules: Arc<Rules>,
    by_name: HashMap<Box<str>, usize>,
    topics: Slab<Topic>,
    max_topics: usize,
    /// Topics published since the last fan-out, each once.
    fan_out: Vec<usize>,
    /// Subscriptions across all topics: open WebSockets and SSE streams.
    subscriptions: usize,
    /// Topics outside the preset that nobody has published yet: opened by
    /// subscribers, or about to take their first publish. Counted apart,
    /// each kind up to `max_topics`, so that subscribers naming topics no
    /// producer publishes cannot fill the table the producers need.
    placeholders: usize,
    pub compressor: Compressor,
}

// Proof: a topic id is an index the table handed out, and a topic leaves
// the table only while unused (no subscription holds its id, no fan-out is
// pending for it), so every id held elsewhere names a live topic. An id
// must not be kept across a publish that may forget its topic.
#[allow(clippy::indexing_slicing)]
impl Topics {
    /// `started` (RFC 3339) fills the defaults' `last_updated` and `timestamp`.
    pub fn new(
        rules: Arc<Rules>,
        preset: Preset,
        extra: &[String],
        max_topics: usize,
        started: &str,
    ) -> Self {
        let mut topics = Topics {
            rules,
            by_name: HashMap::new(),
            topics: Slab::new(),
            max_topics,
            fan_out: Vec::new(),
            subscriptions: 0,
            placeholders: 0,
            compressor: Compressor::default(),
        };
        if preset == Preset::Adw {
            for topic in adw::TOPICS {
                let id = topics.insert(topic.name, true);
                topics.topics[id].set_snapshot(&topic.default_data(started), 0);
            }
        }
        for name in extra {
            if !topics.by_name.contains_key(name.as_str()) {
                topics.insert(name, true);
            }
        }
        topics
    }

    fn insert(&mut self, name: &str, permanent: bool) -> usize {
        let mut topic = Topic::new(name, permanent);
        if let Some(id) = topic.adw_id() {
            let data = adw::state_default(id).to_string();
            topic.set_snapshot(&data, 0);
        }
        self.placeholders += usize::from(topic.is_placeholder());
        let id = self.topics.insert(topic);
        self.by_name.insert(name.into(), id);
        id
    }

    fn remove(&mut self, id: usize) {
        let topic = self.topics.remove(id);
        self.placeholders -= usize::from(topic.is_placeholder());
        self.by_name.remove(&topic.name);
    }

    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Open subscriptions across every topic.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions
    }

    /// Finds a topic by name without creating it.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Checks that `name` exists or may be created, without creating it.
    pub fn check(&self, name: &str) -> Result<(), TopicError> {
        match self.find(name) {
            Some(_) => Ok(()),
            None => self.rules.check(name),
        }
    }

    /// Finds a topic to publish to by name, creating it if the rules allow
    /// the name and fewer than `max_topics` topics hold a publish.
    pub fn find_or_create(&mut self, name: &str) -> Result<usize, TopicError> {
        self.find_or_insert(name, self.topics.len() - self.placeholders)
    }

    /// Finds a topic to subscribe to by name, creating a placeholder for
    /// one nobody has published yet; at most `max_topics` placeholders.
    pub fn find_or_open(&mut self, name: &str) -> Result<usize, TopicError> {
        self.find_or_insert(name, self.placeholders)
    }

    fn find_or_insert(&mut self, name: &str, counted: usize) -> Result<usize, TopicError> {
        if let Some(id) = self.find(name) {
            return Ok(id);
        }
        self.rules.check(name)?;
        if counted >= self.max_topics {
            return Err(TopicError::Full(self.max_topics));
        }
        Ok(self.insert(name, false))
    }

    pub fn get(&self, id: usize) -> &Topic {
        &self.topics[id]
    }

    /// Adds connection `key` to topic `id`'s subscribers; returns where it
    /// sits, and the snapshot it gets at once, encoded in its `form`.
    pub fn subscribe(
        &mut self,
        id: usize,
        key: usize,
        form: Form,
    ) -> (Subscription, Option<Shared>) {
        let topic = &mut self.topics[id];
        topic.subscribers.push(key);
        self.subscriptions += 1;
        let sub = Subscription {
            topic: id,
            index: topic.subscribers.len() - 1,
            form,
        };
        match form {
            Form::Frame => {}
            Form::Deflate => topic.deflaters += 1,
            Form::Sse => topic.streams += 1,
        }
        (sub, topic.snapshot_as(form, &mut self.compressor))
    }

    /// Takes a subscription back. Returns the key of the connection that a
    /// swap-remove moved into `sub.index`, which must be told so. A dynamic
    /// topic nobody needs any more is dropped.
    pub fn unsubscribe(&mut self, sub: Subscription) -> Option<usize> {
        let topic = &mut self.topics[sub.topic];
        topic.subscribers.swap_remove(sub.index);
        match sub.form {
            Form::Frame => {}
            Form::Deflate => topic.deflaters -= 1,
            Form::Sse => topic.streams -= 1,
        }
        self.subscriptions -= 1;
        let moved = topic.subscribers.get(sub.index).copied();
        // Never published and nobody left: it keeps memory flat when
        // clients open `adw-state/{id}` for ids that come and go.
        if topic.seq == 0 && topic.unused() {
            self.remove(sub.topic);
        }
        moved
    }

    /// Stores `data` (valid JSON) as topic `id`'s snapshot, counting
    /// `publishes` publishes, and lists it for the next fan-out.
    ///
    /// An `adw-state/` topic published back to its default (`{"adw_id":
    /// id}`, or `{}`) with nobody subscribed is forgotten instead: its
    /// workflow is gone, and a new subscriber would get that default anyway.
    /// Without this, every workflow that ever ran would keep a topic until
    /// `--max-topics` is reached.
    pub fn publish(&mut self, id: usize, data: &str, publishes: u64) -> Published {
        let topic = &mut self.topics[id];
        let seq = topic.seq + publishes;
        let back_to_default = topic.adw_id().is_some_and(|adw_id| {
            serde_json::from_str::<serde_json::Value>(data).is_ok_and(|value| {
                value == adw::state_default(adw_id) || value == serde_json::json!({})
            })
        });
        if topic.unused() && back_to_default {
            self.remove(id);
            return Published {
                seq,
                subscribers: 0,
            };
        }
        let was_placeholder = topic.is_placeholder();
        topic.set_snapshot(data, publishes);
        self.placeholders -= usize::from(was_placeholder && !topic.is_placeholder());
        if !std::mem::replace(&mut topic.fan_out_pending, true) {
            self.fan_out.push(id);
        }
        Published {
            seq,
            subscribers: topic.subscribers.len(),
        }
    }

    /// Hands each topic published since the last call, once, with its
    /// newest snapshot in the encodings its subscribers need, and its
    /// subscribers.
    pub fn fan_out(&mut self, mut each: impl FnMut(Encoded<'_>, std::time::Instant, &[usize])) {
        for id in self.fan_out.drain(..) {
            let topic = &mut self.topics[id];
            topic.fan_out_pending = false;
            let sse = (topic.streams > 0).then(|| topic.sse_snapshot()).flatten();
            let deflated = (topic.deflaters > 0)
                .then(|| topic.deflated_snapshot(&mut self.compressor))
                .flatten();
            if let Some(snapshot) = &topic.snapshot {
                topic.deliveries += topic.subscribers.len() as u64;
                let encoded = Encoded {
                    frame: &snapshot.frame,
                    deflated: deflated.as_ref(),
                    sse: sse.as_ref(),
                };
                each(encoded, topic.published_at, &topic.subscribers);
            }
        }
    }

    /// Every topic, for `/healthz` and metrics.
    pub fn iter(&self) -> impl Iterator<Item = &Topic> {
        self.topics.iter().map(|(_, topic)| topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adw() -> Topics {
        let rules = Arc::new(Rules::new(Preset::Adw, &[], false, Validator::off()));
        Topics::new(rules, Preset::Adw, &[], 100, "2026-11-26T02:15:00Z")
    }

    #[test]
    fn names_follow_the_contract() {
        assert!(is_plain_name("workflow-history"));
        assert!(!is_plain_name("Workflow"));
        assert!(!is_plain_name(""));
        assert!(!is_plain_name(&"a".repeat(65)));
        assert!(is_adw_id("a1b2c3d4"));
        assert!(is_adw_id("A_b-9"));
        assert!(!is_adw_id("a/b"));
        assert!(!is_adw_id("a.b"));
    }

    #[test]
    fn preset_topics_start_with_their_defaults_at_seq_0() {
        let topics = adw();
        let queue = topics.get(topics.find("queue").unwrap());
        assert_eq!(
            std::str::from_utf8(queue.snapshot().unwrap().json()).unwrap(),
            r#"{"type":"queue_update","seq":0,"data":{"phases":[],"total":0,"paused":false}}"#
        );
        assert_eq!(topics.len(), adw::TOPICS.len());
    }

    #[test]
    fn adw_state_messages_carry_the_adw_id() {
        let mut topics = adw();
        let id = topics.find_or_create("adw-state/a1b2c3d4").unwrap();
        topics.publish(id, r#"{"adw_id":"a1b2c3d4","status":"running"}"#, 1);
        let msg = topics.get(id).snapshot().unwrap();
        assert_eq!(
            std::str::from_utf8(msg.json()).unwrap(),
            r#"{"type":"adw_state_update","adw_id":"a1b2c3d4","seq":1,"data":{"adw_id":"a1b2c3d4","status":"running"}}"#
        );
        // The frame is a complete unmasked text frame around that JSON.
        assert_eq!(msg.frame[0], 0x81);
        assert_eq!(msg.frame[1] as usize, msg.json().len());
    }

    #[test]
    fn unknown_and_excess_topics_are_refused() {
        let mut topics = adw();
        assert_eq!(
            topics.find_or_create("nope"),
            Err(TopicError::Unknown("nope".into()))
        );
        assert_eq!(
            topics.find_or_create("adw-state/bad.id"),
            Err(TopicError::Invalid("adw-state/bad.id".into()))
        );
        assert_eq!(
            topics.find_or_create("Bad_Name"),
            Err(TopicError::Invalid("Bad_Name".into()))
        );
        let rules = Arc::new(Rules::new(Preset::None, &[], true, Validator::off()));
        let mut any = Topics::new(rules, Preset::None, &[], 2, "2026-11-26T02:15:00Z");
        for name in ["a", "b"] {
            let id = any.find_or_create(name).unwrap();
            any.publish(id, "1", 1);
        }
        assert_eq!(any.find_or_create("c"), Err(TopicError::Full(2)));
        assert!(any.find_or_create("UPPER").is_err());
    }

    /// Subscribers that open topics nobody publishes fill only their own
    /// share of the table: a producer can still create its topic, and a
    /// placeholder that takes a publish moves to the producers' share.
    #[test]
    fn unpublished_topics_do_not_crowd_out_published_ones() {
        let rules = Arc::new(Rules::new(Preset::Adw, &[], true, Validator::off()));
        let mut t = Topics::new(rules, Preset::None, &[], 2, "2026-11-26T02:15:00Z");
        let opened: Vec<usize> = ["adw-state/x1", "adw-state/x2"]
            .into_iter()
            .map(|name| t.find_or_open(name).unwrap())
            .collect();
        assert_eq!(t.find_or_open("adw-state/x3"), Err(TopicError::Full(2)));
        let prices = t.find_or_create("prices").unwrap();
        t.publish(prices, "1", 1);
        // The first placeholder is published: one placeholder slot frees,
        // and the producers' share is now full.
        t.publish(opened[0], r#"{"adw_id":"x1","status":"running"}"#, 1);
        assert!(t.find_or_open("adw-state/x3").is_ok());
        assert_eq!(t.find_or_create("volume"), Err(TopicError::Full(2)));
        assert_eq!(t.find("prices"), Some(prices));
    }

    #[test]
    fn unused_dynamic_topics_are_released_but_published_ones_stay() {
        let mut topics = adw();
        let id = topics.find_or_create("adw-state/gone").unwrap();
        let (sub, snapshot) = topics.subscribe(id, 7, Form::Frame);
        assert!(
            snapshot.is_some(),
            "adw-state topics greet with their default"
        );
        assert_eq!(topics.subscriptions(), 1);
        assert_eq!(topics.unsubscribe(sub), None);
        assert_eq!(topics.subscriptions(), 0);
        assert_eq!(topics.find("adw-state/gone"), None);

        let id = topics.find_or_create("adw-state/kept").unwrap();
        let (sub, _) = topics.subscribe(id, 7, Form::Frame);
        topics.publish(id, r#"{"adw_id":"kept","status":"running"}"#, 1);
        topics.unsubscribe(sub);
        assert!(topics.find("adw-state/kept").is_some());
        let queue = topics.find("queue").unwrap();
        let (sub, _) = topics.subscribe(queue, 7, Form::Frame);
        topics.unsubscribe(sub);
        assert!(topics.find("queue").is_some());
    }

    #[test]
    fn unsubscribing_says_who_moved() {
        let mut topics = adw();
        let queue = topics.find("queue").unwrap();
        let (a, _) = topics.subscribe(queue, 10, Form::Frame);
        let (_, _) = topics.subscribe(queue, 11, Form::Frame);
        let (c, _) = topics.subscribe(queue, 12, Form::Frame);
        assert_eq!(c.index, 2);
        // 12 moves into 10's place.
        assert_eq!(topics.unsubscribe(a), Some(12));
        assert_eq!(topics.get(queue).subscribers(), &[12, 11]);
    }

    #[test]
    fn a_burst_of_publishes_is_fanned_out_once() {
        let mut topics = adw();
        let queue = topics.find("queue").unwrap();
        topics.subscribe(queue, 3, Form::Frame);
        for i in 0..5 {
            let p = topics.publish(queue, &format!(r#"{{"phases":[],"total":{i}}}"#), 1);
            assert_eq!(
                p,
                Published {
                    seq: i + 1,
                    subscribers: 1
                }
            );
        }
        let mut calls = Vec::new();
        topics.fan_out(|encoded, _, subs| calls.push((encoded.frame.clone(), subs.to_vec())));
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].1, [3]);
        assert!(String::from_utf8_lossy(&calls[0].0).contains(r#""total":4"#));
        topics.fan_out(|_, _, _| panic!("nothing was published since"));
    }

    /// One compression per publish, whatever the number of subscribers
    /// that negotiated it, and none while nobody did.
    #[test]
    fn a_snapshot_is_compressed_once_and_only_for_deflate_subscribers() {
        let mut topics = adw();
        let queue = topics.find("queue").unwrap();
        let big = format!(r#"{{"phases":[{}],"total":0}}"#, vec!["{}"; 300].join(","));
        topics.subscribe(queue, 1, Form::Frame);
        topics.publish(queue, &big, 1);
        topics.fan_out(|encoded, _, _| assert!(encoded.deflated.is_none()));
        assert_eq!(topics.compressor.messages, 0);

        let (_, first) = topics.subscribe(queue, 2, Form::Deflate);
        let (_, second) = topics.subscribe(queue, 3, Form::Deflate);
        assert_eq!(topics.compressor.messages, 1);
        let (first, second) = (first.unwrap(), second.unwrap());
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first[0], 0xc1, "FIN, RSV1, text");

        topics.publish(queue, &big.replace("0}", "1}"), 1);
        let mut forms = Vec::new();
        topics.fan_out(|encoded, _, subs| {
            forms = [Form::Frame, Form::Deflate]
                .map(|form| encoded.pick(form).len())
                .to_vec();
            assert_eq!(subs, [1, 2, 3]);
        });
        assert_eq!(topics.compressor.messages, 2);
        assert!(forms[1] * 4 < forms[0], "{forms:?}");
    }

    #[test]
    fn finished_workflows_are_forgotten_when_nobody_watches() {
        let mut topics = adw();
        let id = topics.find_or_create("adw-state/done").unwrap();
        topics.publish(id, r#"{"x":1}"#, 1);
        topics.fan_out(|_, _, _| {});
        let (sub, _) = topics.subscribe(id, 7, Form::Frame);
        topics.publish(id, "{}", 1);
        topics.fan_out(|_, _, _| {});
        assert!(
            topics.find("adw-state/done").is_some(),
            "a subscriber keeps it"
        );
        topics.unsubscribe(sub);
        let p = topics.publish(id, r#"{"adw_id": "done"}"#, 1);
        assert_eq!(
            p,
            Published {
                seq: 3,
                subscribers: 0
            }
        );
        assert_eq!(topics.find("adw-state/done"), None);
        let id = topics.find_or_create("adw-state/old").unwrap();
        topics.publish(id, r#"{"adw_id":"other"}"#, 1);
        topics.fan_out(|_, _, _| {});
        assert!(topics.find("adw-state/old").is_some());
        topics.publish(id, "{}", 1);
        assert_eq!(topics.find("adw-state/old"), None, "the version 1 default");
    }

    #[test]
    fn events_frame_type_and_data() {
        let msg = Message::event(r#""workflow_completed""#, r#"{"adw_id":"x"}"#);
        assert_eq!(
            msg.json(),
            br#"{"type":"workflow_completed","data":{"adw_id":"x"}}"#
        );
    }
}
