//! The topic registry: each [`Topic`] (its retained snapshot, its
//! subscribers, the encodings made of its snapshot) and [`Topics`], every
//! topic by name and by id, where subscribing, publishing and fan-out
//! happen.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use slab::Slab;

use super::adw::{self, ADW_STATE_PREFIX, Preset};
use super::delta::{self, DeltaFormat};
use super::message::{Compressor, Deltas, Encoded, Form, Message};
use super::name::TopicError;
use super::rules::Rules;
use crate::wire::Shared;

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
    /// The delta format it asked for (`?delta=`), if any.
    pub delta: Option<DeltaFormat>,
    /// In the topic's list of multiplexed connections, which take its
    /// messages with their `"topic"`.
    pub mux: bool,
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
    /// Slab keys of the multiplexed connections subscribed, apart from
    /// the others: their messages carry `"topic"`, and keeping them apart
    /// leaves the per-topic fan-out as it was.
    mux: Vec<usize>,
    /// How many of those are SSE streams, and how many negotiated
    /// permessage-deflate.
    mux_streams: usize,
    mux_deflaters: usize,
    /// The snapshot with its `"topic"`, encoded once per publish when a
    /// multiplexed subscriber first needs it, and that compressed and as
    /// the start of a named SSE event.
    mux_message: Option<Message>,
    mux_deflated: Option<Option<Shared>>,
    mux_sse: Option<Shared>,
    /// When the snapshot was last set (the server's start for a default).
    published_at: std::time::Instant,
    /// Snapshots queued for subscribers, across publishes.
    deliveries: u64,
    /// The snapshot as a Server-Sent Event, encoded once when a stream
    /// first needs it.
    sse: Option<Shared>,
    /// The snapshot compressed, once a subscriber that negotiated
    /// permessage-deflate needs it (`None` inside: not worth it).
    deflated: OnceCell<Option<Shared>>,
    /// What its `?delta=` subscribers need kept; `None` while it has none,
    /// so a topic without them pays a pointer.
    deltas: Option<Box<DeltaState>>,
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
            mux: Vec::new(),
            mux_streams: 0,
            mux_deflaters: 0,
            mux_message: None,
            mux_deflated: None,
            mux_sse: None,
            published_at: std::time::Instant::now(),
            deliveries: 0,
            sse: None,
            deflated: OnceCell::new(),
            deltas: None,
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

    /// Subscribers of every kind: per-topic and multiplexed.
    pub fn reach(&self) -> usize {
        self.subscribers.len() + self.mux.len()
    }

    fn adw_id(&self) -> Option<&str> {
        self.name.strip_prefix(ADW_STATE_PREFIX)
    }

    /// Encodes `data` (valid JSON) as the new snapshot, counting `publishes`
    /// publishes of which this is the newest.
    fn set_snapshot(&mut self, data: &str, publishes: u64) {
        let previous = self.snapshot.take();
        if let Some(state) = self.deltas.as_deref_mut() {
            if !self.fan_out_pending {
                // A base too big to be diffed is not kept either.
                state.base = previous
                    .filter(|message| message.data().len() <= delta::MAX_DELTA_SNAPSHOT)
                    .map(|message| (self.seq, message));
            }
            state.delta = OnceCell::new();
            state.mux_delta = OnceCell::new();
        }
        self.seq += publishes;
        let message = Message::snapshot(&self.message_type, self.adw_id(), self.seq, data);
        self.snapshot = Some(message);
        self.sse = None;
        self.deflated = OnceCell::new();
        self.mux_message = None;
        self.mux_deflated = None;
        self.mux_sse = None;
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
        self.streams + self.mux_streams
    }

    /// The snapshot with its `"topic"`, encoded at most once per publish.
    fn mux_message(&mut self) -> Option<&Message> {
        if self.mux_message.is_none() {
            let snapshot = self.snapshot.as_ref()?;
            let message = Message::snapshot_of(
                &self.message_type,
                Some(&self.name),
                self.name.strip_prefix(ADW_STATE_PREFIX),
                self.seq,
                snapshot.data(),
            );
            self.mux_message = Some(message);
        }
        self.mux_message.as_ref()
    }

    /// That message in `form`, each encoding made at most once per
    /// publish; on SSE, the event without its `id:` line and end.
    fn mux_as(&mut self, form: Form, compressor: &mut Compressor) -> Option<Shared> {
        match form {
            Form::Frame => Some(self.mux_message()?.frame.clone()),
            Form::Deflate => {
                if self.mux_deflated.is_none() {
                    let compressed = compressor.compress(self.mux_message()?);
                    self.mux_deflated = Some(compressed);
                }
                match self.mux_deflated.clone().flatten() {
                    Some(deflated) => Some(deflated),
                    None => Some(self.mux_message()?.frame.clone()),
                }
            }
            Form::Sse => {
                if self.mux_sse.is_none() {
                    let name = self.name.clone();
                    self.mux_sse = Some(self.mux_message()?.sse_named(&name));
                }
                self.mux_sse.clone()
            }
        }
    }

    /// The snapshot as an SSE event, encoded at most once per publish.
    fn sse_snapshot(&mut self) -> Option<Shared> {
        if self.sse.is_none() {
            self.sse = self.snapshot.as_ref().map(|m| m.sse(Some(self.seq)));
        }
        self.sse.clone()
    }

    /// The snapshot compressed, at most once per publish.
    fn deflated_snapshot(&self, compressor: &mut Compressor) -> Option<Shared> {
        let snapshot = self.snapshot.as_ref()?;
        self.deflated
            .get_or_init(|| compressor.compress(snapshot))
            .clone()
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
    pub fn is_placeholder(&self) -> bool {
        !self.permanent && self.seq == 0
    }

    /// Holds nothing a new subscriber would not get anyway.
    fn unused(&self) -> bool {
        !self.permanent
            && self.subscribers.is_empty()
            && self.mux.is_empty()
            && !self.fan_out_pending
    }
}

/// One topic's publish, as its multiplexed subscribers take it.
#[derive(Debug)]
pub struct MuxFan<'a> {
    /// The topic's id, which its subscribers' queues conflate by.
    pub topic: usize,
    /// The seq of the snapshot.
    pub seq: u64,
    pub frame: &'a Shared,
    pub deflated: Option<&'a Shared>,
    /// The start of the named SSE event, without its `id:` line.
    pub sse: Option<&'a Shared>,
    pub published: std::time::Instant,
    pub subscribers: &'a [usize],
    /// What its `?delta=` subscribers may need, with its `"topic"`, made
    /// on first use; `None` while the topic has none.
    pub deltas: Option<&'a dyn Deltas>,
}

impl<'a> MuxFan<'a> {
    /// The encodings, as a per-topic fan-out hands them.
    pub fn encoded(&self) -> Encoded<'a> {
        Encoded {
            frame: self.frame,
            deflated: self.deflated,
            sse: self.sse,
            seq: self.seq,
            deltas: self.deltas,
        }
    }
}

/// Topic names by id, lent to a multiplexed fan-out (an SSE event's seq
/// vector names its topics) while the registry's compressor is busy.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a>(&'a Slab<Topic>);

impl<'a> Names<'a> {
    /// Topic `id`'s name; empty for an id no topic has.
    pub fn name(&self, id: usize) -> &'a str {
        self.0.get(id).map_or("", |topic| topic.name())
    }
}

/// What a topic keeps for its `?delta=` subscribers, only while it has one.
#[derive(Debug, Default)]
struct DeltaState {
    /// How many subscribers asked for deltas, multiplexed ones included.
    subscribers: usize,
    /// How many per-topic ones negotiated permessage-deflate: while they are all
    /// the topic's deflate subscribers, the snapshot is compressed only
    /// when one of them is behind and needs it.
    deflaters: usize,
    /// The snapshot last fanned out, and its seq: what an up-to-date delta
    /// subscriber has, so the next delta is made against it. Publishes
    /// between two fan-outs keep it: nobody got the ones in between. Its
    /// text is kept (the message holds it), never a parsed value, which
    /// takes tens of times its text's size; `kept` holds its tape.
    base: Option<(u64, Message)>,
    /// The delta from `base` to the snapshot, made at most once per
    /// publish, when the first subscriber that has `base` is served
    /// (`None` inside: not smaller than the snapshot).
    delta: OnceCell<Option<DeltaCache>>,
    /// The same delta with its `"topic"`, for multiplexed subscribers:
    /// made from `delta`'s patch, never diffed again.
    mux_delta: OnceCell<Option<DeltaCache>>,
    /// The last diff's new text read, for the next diff, whose base it
    /// will be (bounded: see [`delta::Kept`]).
    kept: RefCell<delta::Kept>,
}

/// A delta message kept for the publish it was made for.
#[derive(Debug)]
struct DeltaCache {
    message: Message,
    /// Compressed, once a permessage-deflate subscriber needs it (`None`
    /// inside: not worth it).
    deflated: OnceCell<Option<Shared>>,
    /// As a Server-Sent Event, once a stream needs it.
    sse: OnceCell<Shared>,
}

/// One topic's publish as its `?delta=` subscribers see it, during one
/// fan-out: every encoding made on first use, through the topic's caches.
#[derive(Debug)]
struct Lazy<'t, 'c> {
    topic: &'t Topic,
    state: &'t DeltaState,
    compressor: RefCell<&'c mut Compressor>,
    /// For multiplexed subscribers: the snapshot with its `"topic"`, in
    /// the encodings made at their fan-out; their delta says its topic too.
    mux: Option<MuxSnapshot<'t>>,
}

/// A snapshot with its `"topic"`, as a multiplexed fan-out made it.
#[derive(Debug, Clone, Copy)]
struct MuxSnapshot<'a> {
    frame: &'a Shared,
    deflated: Option<&'a Shared>,
    /// The start of the named SSE event, without its `id:` line.
    sse: Option<&'a Shared>,
}

impl Lazy<'_, '_> {
    /// The delta from `base` to the snapshot, made at most once per publish;
    /// with its `"topic"` for multiplexed subscribers.
    fn cache(&self) -> Option<&DeltaCache> {
        let plain = || self.state.delta.get_or_init(|| self.make()).as_ref();
        if self.mux.is_none() {
            return plain();
        }
        self.state
            .mux_delta
            .get_or_init(|| plain().and_then(|cache| self.with_topic(cache)))
            .as_ref()
    }

    /// The per-topic delta message with its `"topic"`: the same patch, and
    /// as much smaller than its snapshot, which gains the same field.
    fn with_topic(&self, cache: &DeltaCache) -> Option<DeltaCache> {
        let topic = self.topic;
        let (base_seq, _) = self.state.base.as_ref()?;
        let message = Message::delta_of(
            &topic.message_type,
            Some(&topic.name),
            topic.adw_id(),
            topic.seq,
            *base_seq,
            cache.message.data(),
        );
        Some(DeltaCache {
            message,
            deflated: OnceCell::new(),
            sse: OnceCell::new(),
        })
    }

    /// Diffs the snapshot against `base`; `None` when there is no base,
    /// the snapshot is too big to diff, or the delta message would not be
    /// smaller than the snapshot's.
    fn make(&self) -> Option<DeltaCache> {
        let (topic, state) = (self.topic, self.state);
        let (base_seq, base) = state.base.as_ref()?;
        let snapshot = topic.snapshot.as_ref()?;
        if snapshot.data().len() > delta::MAX_DELTA_SNAPSHOT {
            return None;
        }
        // Diffed as text, never parsed, the base's tape kept from the diff
        // before when it was that one's new text; over the differ's work
        // budget, or for a text it cannot read, the snapshot goes whole.
        let mut kept = state.kept.try_borrow_mut().ok()?;
        let patch = kept.json_patch((*base_seq, base.data()), (topic.seq, snapshot.data()))?;
        let message = Message::delta(
            &topic.message_type,
            topic.adw_id(),
            topic.seq,
            *base_seq,
            &patch,
        );
        let smaller = message.json().len() < snapshot.json().len();
        smaller.then_some(DeltaCache {
            message,
            deflated: OnceCell::new(),
            sse: OnceCell::new(),
        })
    }
}

impl Deltas for Lazy<'_, '_> {
    fn base(&self) -> Option<u64> {
        self.state.base.as_ref().map(|(seq, _)| *seq)
    }

    fn delta(&self, form: Form) -> Option<Shared> {
        let cache = self.cache()?;
        let frame = &cache.message.frame;
        Some(match form {
            Form::Frame => frame.clone(),
            Form::Deflate => {
                let mut compressor = self.compressor.borrow_mut();
                let deflated = cache
                    .deflated
                    .get_or_init(|| compressor.compress(&cache.message));
                deflated.as_ref().unwrap_or(frame).clone()
            }
            Form::Sse => cache
                .sse
                .get_or_init(|| match self.mux {
                    // Each stream ends the event with its own seq vector.
                    Some(_) => cache.message.sse_named(&self.topic.name),
                    None => cache.message.sse(Some(self.topic.seq)),
                })
                .clone(),
        })
    }

    fn snapshot(&self, form: Form) -> Option<Shared> {
        if let Some(mux) = self.mux {
            return match form {
                Form::Frame => Some(mux.frame.clone()),
                Form::Deflate => Some(mux.deflated.unwrap_or(mux.frame).clone()),
                Form::Sse => mux.sse.cloned(),
            };
        }
        let snapshot = self.topic.snapshot.as_ref()?;
        match form {
            Form::Frame => Some(snapshot.frame.clone()),
            Form::Deflate => {
                let mut compressor = self.compressor.borrow_mut();
                self.topic
                    .deflated_snapshot(&mut compressor)
                    .or_else(|| Some(snapshot.frame.clone()))
            }
            // Made eagerly at fan-out: every stream needs it.
            Form::Sse => self.topic.sse.clone(),
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
    /// Of those, the ones with multiplexed subscribers, whose own pass
    /// follows: listed by `fan_out`, drained by `fan_out_mux`.
    mux_fan_out: Vec<usize>,
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
            mux_fan_out: Vec::new(),
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
        delta: Option<DeltaFormat>,
    ) -> (Subscription, Option<Shared>) {
        let topic = &mut self.topics[id];
        topic.subscribers.push(key);
        self.subscriptions += 1;
        if delta.is_some() {
            let state = topic.deltas.get_or_insert_with(Box::default);
            state.subscribers += 1;
            state.deflaters += usize::from(form == Form::Deflate);
        }
        let sub = Subscription {
            topic: id,
            index: topic.subscribers.len() - 1,
            form,
            delta,
            mux: false,
        };
        match form {
            Form::Frame => {}
            Form::Deflate => topic.deflaters += 1,
            Form::Sse => topic.streams += 1,
        }
        (sub, topic.snapshot_as(form, &mut self.compressor))
    }

    /// Adds multiplexed connection `key` to topic `id`'s subscribers;
    /// returns where it sits, and the snapshot it gets at once, with its
    /// `"topic"`, in its `form` (on SSE, without the `id:` line that ends
    /// the event).
    pub fn subscribe_mux(
        &mut self,
        id: usize,
        key: usize,
        form: Form,
        delta: Option<DeltaFormat>,
    ) -> (Subscription, Option<Shared>) {
        let topic = &mut self.topics[id];
        topic.mux.push(key);
        self.subscriptions += 1;
        if delta.is_some() {
            // Its snapshot with `"topic"` is compressed at every fan-out
            // anyway, so it is not counted with the per-topic deflaters.
            topic.deltas.get_or_insert_with(Box::default).subscribers += 1;
        }
        let sub = Subscription {
            topic: id,
            index: topic.mux.len() - 1,
            form,
            delta,
            mux: true,
        };
        match form {
            Form::Frame => {}
            Form::Deflate => topic.mux_deflaters += 1,
            Form::Sse => topic.mux_streams += 1,
        }
        (sub, topic.mux_as(form, &mut self.compressor))
    }

    /// Takes a subscription back. Returns the key of the connection that a
    /// swap-remove moved into `sub.index`, which must be told so. A dynamic
    /// topic nobody needs any more is dropped.
    pub fn unsubscribe(&mut self, sub: Subscription) -> Option<usize> {
        let topic = &mut self.topics[sub.topic];
        let (list, deflaters, streams) = if sub.mux {
            (
                &mut topic.mux,
                &mut topic.mux_deflaters,
                &mut topic.mux_streams,
            )
        } else {
            (
                &mut topic.subscribers,
                &mut topic.deflaters,
                &mut topic.streams,
            )
        };
        list.swap_remove(sub.index);
        match sub.form {
            Form::Frame => {}
            Form::Deflate => *deflaters -= 1,
            Form::Sse => *streams -= 1,
        }
        if sub.delta.is_some()
            && let Some(state) = topic.deltas.as_deref_mut()
        {
            state.subscribers -= 1;
            state.deflaters -= usize::from(sub.form == Form::Deflate && !sub.mux);
            if state.subscribers == 0 {
                // Nobody needs deltas: free the base and the delta.
                topic.deltas = None;
            }
        }
        self.subscriptions -= 1;
        let moved = list.get(sub.index).copied();
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
            subscribers: topic.reach(),
        }
    }

    /// Hands each topic published since the last call, once, with its
    /// newest snapshot in the encodings its subscribers need, and its
    /// subscribers.
    pub fn fan_out(&mut self, mut each: impl FnMut(Encoded<'_>, std::time::Instant, &[usize])) {
        for id in self.fan_out.drain(..) {
            let topic = &mut self.topics[id];
            // Still pending, so it stays, until its multiplexed pass.
            topic.fan_out_pending = !topic.mux.is_empty();
            if topic.fan_out_pending {
                self.mux_fan_out.push(id);
            }
            let sse = (topic.streams > 0).then(|| topic.sse_snapshot()).flatten();
            // While every deflate subscriber takes deltas, the snapshot is
            // compressed only for one that is behind (see `Lazy`).
            let delta_deflaters = topic.deltas.as_ref().map_or(0, |state| state.deflaters);
            let deflated = (topic.deflaters > delta_deflaters)
                .then(|| topic.deflated_snapshot(&mut self.compressor))
                .flatten();
            if topic.snapshot.is_some() {
                topic.deliveries += topic.subscribers.len() as u64;
            }
            let topic = &self.topics[id];
            let Some(snapshot) = &topic.snapshot else {
                continue;
            };
            let lazy = topic.deltas.as_deref().map(|state| Lazy {
                topic,
                state,
                compressor: RefCell::new(&mut self.compressor),
                mux: None,
            });
            let encoded = Encoded {
                frame: &snapshot.frame,
                deflated: deflated.as_ref(),
                sse: sse.as_ref(),
                seq: topic.seq,
                deltas: lazy.as_ref().map(|lazy| lazy as &dyn Deltas),
            };
            each(encoded, topic.published_at, &topic.subscribers);
        }
    }

    /// The second pass of a fan-out, after [`fan_out`](Self::fan_out):
    /// each topic published since with multiplexed subscribers, once, its
    /// newest snapshot with its `"topic"` in the encodings they need.
    /// `each` also gets the topics' names, to name a connection's others.
    pub fn fan_out_mux(&mut self, mut each: impl FnMut(&MuxFan<'_>, Names<'_>)) {
        let Topics {
            topics,
            compressor,
            mux_fan_out,
            ..
        } = self;
        for id in mux_fan_out.drain(..) {
            let topic = &mut topics[id];
            topic.fan_out_pending = false;
            let sse = (topic.mux_streams > 0)
                .then(|| topic.mux_as(Form::Sse, compressor))
                .flatten();
            let deflated = (topic.mux_deflaters > 0)
                .then(|| topic.mux_as(Form::Deflate, compressor))
                .flatten();
            let Some(frame) = topic.mux_as(Form::Frame, compressor) else {
                continue;
            };
            topic.deliveries += topic.mux.len() as u64;
            let topic = &topics[id];
            let snapshot = MuxSnapshot {
                frame: &frame,
                deflated: deflated.as_ref(),
                sse: sse.as_ref(),
            };
            let lazy = topic.deltas.as_deref().map(|state| Lazy {
                topic,
                state,
                compressor: RefCell::new(&mut *compressor),
                mux: Some(snapshot),
            });
            let fan = MuxFan {
                topic: id,
                seq: topic.seq,
                frame: &frame,
                deflated: deflated.as_ref(),
                sse: sse.as_ref(),
                published: topic.published_at,
                subscribers: &topic.mux,
                deltas: lazy.as_ref().map(|lazy| lazy as &dyn Deltas),
            };
            each(&fan, Names(&*topics));
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
    use crate::topic::schema::Validator;

    fn adw() -> Topics {
        let rules = Arc::new(Rules::new(Preset::Adw, &[], false, Validator::off()));
        Topics::new(rules, Preset::Adw, &[], 100, "2026-11-26T02:15:00Z")
    }

    /// Every ADW topic exists from the start, holding its default at seq 0.
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

    /// An `adw-state/{id}` snapshot carries its `adw_id`, inside a complete
    /// text frame.
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

    /// Malformed and unknown names are told apart, and a full table refuses a
    /// new topic.
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

    /// A dynamic topic nobody published is dropped with its last subscriber;
    /// published and preset ones stay.
    #[test]
    fn unused_dynamic_topics_are_released_but_published_ones_stay() {
        let mut topics = adw();
        let id = topics.find_or_create("adw-state/gone").unwrap();
        let (sub, snapshot) = topics.subscribe(id, 7, Form::Frame, None);
        assert!(
            snapshot.is_some(),
            "adw-state topics greet with their default"
        );
        assert_eq!(topics.subscriptions(), 1);
        assert_eq!(topics.unsubscribe(sub), None);
        assert_eq!(topics.subscriptions(), 0);
        assert_eq!(topics.find("adw-state/gone"), None);

        let id = topics.find_or_create("adw-state/kept").unwrap();
        let (sub, _) = topics.subscribe(id, 7, Form::Frame, None);
        topics.publish(id, r#"{"adw_id":"kept","status":"running"}"#, 1);
        topics.unsubscribe(sub);
        assert!(topics.find("adw-state/kept").is_some());
        let queue = topics.find("queue").unwrap();
        let (sub, _) = topics.subscribe(queue, 7, Form::Frame, None);
        topics.unsubscribe(sub);
        assert!(topics.find("queue").is_some());
    }

    /// Unsubscribing names the connection a swap-remove moved into the freed
    /// index.
    #[test]
    fn unsubscribing_says_who_moved() {
        let mut topics = adw();
        let queue = topics.find("queue").unwrap();
        let (a, _) = topics.subscribe(queue, 10, Form::Frame, None);
        let (_, _) = topics.subscribe(queue, 11, Form::Frame, None);
        let (c, _) = topics.subscribe(queue, 12, Form::Frame, None);
        assert_eq!(c.index, 2);
        // 12 moves into 10's place.
        assert_eq!(topics.unsubscribe(a), Some(12));
        assert_eq!(topics.get(queue).subscribers(), &[12, 11]);
    }

    /// Publishes between two fan-outs reach subscribers once, as the newest
    /// snapshot.
    #[test]
    fn a_burst_of_publishes_is_fanned_out_once() {
        let mut topics = adw();
        let queue = topics.find("queue").unwrap();
        topics.subscribe(queue, 3, Form::Frame, None);
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
        topics.subscribe(queue, 1, Form::Frame, None);
        topics.publish(queue, &big, 1);
        topics.fan_out(|encoded, _, _| assert!(encoded.deflated.is_none()));
        assert_eq!(topics.compressor.messages, 0);

        let (_, first) = topics.subscribe(queue, 2, Form::Deflate, None);
        let (_, second) = topics.subscribe(queue, 3, Form::Deflate, None);
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

    /// A delta is made at most once per publish, only when a subscriber
    /// asks for it, shared by all, against the snapshot fanned out before
    /// (a burst between two fan-outs keeps that base), each keeping its
    /// new text's tape for the next; with no delta subscriber left,
    /// nothing of it is kept.
    #[test]
    fn a_delta_is_made_once_lazily_against_the_last_fanned_out_snapshot() {
        use crate::topic::delta::DeltaFormat::JsonPatch;
        let mut topics = adw();
        let queue = topics.find("queue").unwrap();
        let (a, _) = topics.subscribe(queue, 1, Form::Frame, Some(JsonPatch));
        let (b, _) = topics.subscribe(queue, 2, Form::Deflate, Some(JsonPatch));
        let pad = "p".repeat(100);
        let value =
            |total: u64| format!(r#"{{"phases":[],"total":{total},"paused":false,"pad":"{pad}"}}"#);
        topics.publish(queue, &value(0), 1);
        topics.fan_out(|encoded, _, _| {
            let deltas = encoded.deltas.unwrap();
            assert_eq!(deltas.base(), Some(0));
            assert!(deltas.delta(Form::Frame).is_none(), "not smaller");
        });
        topics.publish(queue, &value(1), 1);
        topics.fan_out(|encoded, _, _| {
            let deltas = encoded.deltas.unwrap();
            assert_eq!(deltas.base(), Some(1));
            let first = deltas.delta(Form::Frame).unwrap();
            assert!(Arc::ptr_eq(&first, &deltas.delta(Form::Frame).unwrap()));
            let text = String::from_utf8_lossy(&first[2..]).into_owned();
            assert_eq!(
                text,
                r#"{"type":"queue_update","seq":2,"base":1,"delta":[{"op":"replace","path":"/total","value":1}]}"#
            );
        });
        // The new text's tape is kept for the next delta, whose base it is.
        let kept = |topics: &Topics| {
            let state = topics.get(queue).deltas.as_ref().unwrap();
            state.kept.borrow().holds()
        };
        assert_eq!(kept(&topics), Some(2));
        // Two publishes in one turn: the delta is from seq 2, fanned out.
        topics.publish(queue, &value(2), 1);
        topics.publish(queue, &value(3), 1);
        topics.fan_out(|encoded, _, _| {
            let deltas = encoded.deltas.unwrap();
            assert_eq!(deltas.base(), Some(2));
            let delta = deltas.delta(Form::Frame).unwrap();
            assert!(String::from_utf8_lossy(&delta).contains(r#""seq":4,"base":2,"#));
        });
        assert_eq!(kept(&topics), Some(4));
        assert_eq!(topics.compressor.messages, 0, "nobody needed compression");
        // A fan-out where no subscriber asks for it makes none.
        topics.publish(queue, &value(4), 1);
        topics.fan_out(|_, _, _| {});
        let state = topics.get(queue).deltas.as_ref().unwrap();
        assert!(state.delta.get().is_none(), "made unasked");
        // A deflate subscriber behind gets the snapshot, compressed once.
        let big = format!(
            r#"{{"phases":[],"total":5,"paused":false,"pad":"{}"}}"#,
            "q".repeat(400)
        );
        topics.publish(queue, &big, 1);
        topics.fan_out(|encoded, _, _| {
            let deltas = encoded.deltas.unwrap();
            let first = deltas.snapshot(Form::Deflate).unwrap();
            assert!(Arc::ptr_eq(
                &first,
                &deltas.snapshot(Form::Deflate).unwrap()
            ));
            assert!(encoded.deflated.is_none(), "not made before it was needed");
        });
        assert_eq!(topics.compressor.messages, 1);
        topics.unsubscribe(b);
        topics.unsubscribe(a);
        assert!(topics.get(queue).deltas.is_none());
        topics.publish(queue, &value(6), 1);
        topics.fan_out(|encoded, _, _| assert!(encoded.deltas.is_none()));
    }

    /// A multiplexed delta subscriber's delta carries `"topic"`, is made
    /// from the per-topic delta's patch once per publish and shared (SSE:
    /// the named event, no `id:`); its snapshot is the one with
    /// `"topic"`; the per-topic subscriber's delta is unchanged; the
    /// topic's delta state goes with the last delta subscriber of either
    /// kind, and only a per-topic one counts as a delta deflater.
    #[test]
    fn a_multiplexed_delta_says_its_topic_and_is_made_once() {
        use crate::topic::delta::DeltaFormat::JsonPatch;
        let mut topics = adw();
        let queue = topics.find("queue").unwrap();
        let (plain, _) = topics.subscribe(queue, 1, Form::Frame, Some(JsonPatch));
        let (mux, _) = topics.subscribe_mux(queue, 2, Form::Sse, Some(JsonPatch));
        let (mux_deflate, _) = topics.subscribe_mux(queue, 3, Form::Deflate, Some(JsonPatch));
        assert_eq!(topics.get(queue).deltas.as_ref().unwrap().deflaters, 0);
        let pad = "p".repeat(100);
        let value =
            |total: u64| format!(r#"{{"phases":[],"total":{total},"paused":false,"pad":"{pad}"}}"#);
        topics.publish(queue, &value(0), 1);
        topics.fan_out(|_, _, _| {});
        topics.fan_out_mux(|_, _| {});
        topics.publish(queue, &value(1), 1);
        topics.fan_out(|encoded, _, _| {
            let delta = encoded.deltas.unwrap().delta(Form::Frame).unwrap();
            let text = String::from_utf8_lossy(&delta[2..]).into_owned();
            assert!(
                text.starts_with(r#"{"type":"queue_update","seq":2,"base":1,"#),
                "{text}"
            );
        });
        topics.fan_out_mux(|fan, _| {
            let deltas = fan.deltas.unwrap();
            assert_eq!(deltas.base(), Some(1));
            let frame = deltas.delta(Form::Frame).unwrap();
            assert!(Arc::ptr_eq(&frame, &deltas.delta(Form::Frame).unwrap()));
            assert_eq!(
                String::from_utf8_lossy(&frame[2..]),
                r#"{"type":"queue_update","topic":"queue","seq":2,"base":1,"delta":[{"op":"replace","path":"/total","value":1}]}"#
            );
            let sse = deltas.delta(Form::Sse).unwrap();
            assert!(Arc::ptr_eq(&sse, &deltas.delta(Form::Sse).unwrap()));
            let sse = String::from_utf8_lossy(&sse).into_owned();
            assert!(sse.starts_with("event: queue\ndata: {\"type\":\"queue_update\",\"topic\""), "{sse}");
            assert!(!sse.contains("id:"), "{sse}");
            assert!(Arc::ptr_eq(&deltas.snapshot(Form::Frame).unwrap(), fan.frame));
        });
        topics.unsubscribe(plain);
        topics.unsubscribe(mux_deflate);
        assert!(
            topics.get(queue).deltas.is_some(),
            "one delta subscriber left"
        );
        topics.unsubscribe(mux);
        assert!(topics.get(queue).deltas.is_none());
    }

    /// A snapshot over the delta size goes whole to delta subscribers, and
    /// the topic keeps no base for it: what a topic holds for its delta
    /// subscribers is its base's text (no parsed value) and the delta,
    /// each at most the size bound, and the tapes kept, at most eight times it.
    #[test]
    fn a_snapshot_over_the_delta_size_goes_whole_and_is_not_kept() {
        use crate::topic::delta::{DeltaFormat::JsonPatch, MAX_DELTA_SNAPSHOT};
        let mut topics = adw();
        let id = topics.find_or_create("adw-state/big").unwrap();
        topics.subscribe(id, 1, Form::Frame, Some(JsonPatch));
        // `{"pad":"..","n":N}`, `MAX_DELTA_SNAPSHOT` bytes with a one-digit
        // N, one more with two: each a small change from the one before.
        let value = |n: u8| {
            format!(
                r#"{{"pad":"{}","n":{n}}}"#,
                "x".repeat(MAX_DELTA_SNAPSHOT - 16)
            )
        };
        let held = |topics: &Topics| {
            let state = topics.get(id).deltas.as_ref().unwrap();
            let base = state.base.as_ref().map_or(0, |(_, m)| m.data().len());
            let delta = state.delta.get().and_then(Option::as_ref);
            (base, delta.map_or(0, |d| d.message.json().len()))
        };
        let mut sent = Vec::new();
        for (n, len) in [1, 2, 10, 11, 3, 4].map(|n| (n, MAX_DELTA_SNAPSHOT + usize::from(n > 9))) {
            let data = value(n);
            assert_eq!(data.len(), len);
            topics.publish(id, &data, 1);
            topics.fan_out(|encoded, _, _| {
                let deltas = encoded.deltas.unwrap();
                sent.push((deltas.base(), deltas.delta(Form::Frame).is_some()));
            });
            let (base, delta) = held(&topics);
            assert!(
                base <= MAX_DELTA_SNAPSHOT && delta <= MAX_DELTA_SNAPSHOT,
                "{len}"
            );
            let kept = topics.get(id).deltas.as_ref().unwrap().kept.borrow().held();
            assert!(kept <= 8 * MAX_DELTA_SNAPSHOT, "{kept}");
        }
        // The first replaces the default whole; the third and fourth are
        // too big to diff, and the fourth and fifth have no base: the third
        // and the fourth were not kept.
        assert_eq!(
            sent,
            [
                (Some(0), false),
                (Some(1), true),
                (Some(2), false),
                (None, false),
                (None, false),
                (Some(5), true)
            ]
        );
    }

    /// An `adw-state/` topic published back to its default is forgotten once
    /// nobody is subscribed.
    #[test]
    fn finished_workflows_are_forgotten_when_nobody_watches() {
        let mut topics = adw();
        let id = topics.find_or_create("adw-state/done").unwrap();
        topics.publish(id, r#"{"x":1}"#, 1);
        topics.fan_out(|_, _, _| {});
        let (sub, _) = topics.subscribe(id, 7, Form::Frame, None);
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
}
