//! One connection, many topics: opening `/api/v1/ws` and `/api/v1/sse`
//! on the topics the endpoint checked (every snapshot queued behind the
//! 101 or the stream's head, so they leave in one write), and a
//! multiplexed WebSocket's subscribe and unsubscribe commands. What a
//! topic's publish becomes on such a connection is `Conns::deliver_mux`.

// Proof for the indexing below: a slab key is used only while its entry is
// there: keys come from poll tokens and the registry's own lists, each
// checked with `get` (and the connection's id) first, and an entry leaves
// the slab only in `Conns::reap`, after every event of the turn is handled.
#![allow(clippy::indexing_slicing)]

use std::time::Instant;

use log::debug;

use crate::server::access;
use crate::server::conns::{Conns, sse_tail};
use crate::server::endpoints;
use crate::server::queue::Out;
use crate::server::subs::Subs;
use crate::topic::delta::DeltaFormat;
use crate::topic::{Form, TopicError, Topics};
use crate::wire::Shared;
use crate::wire::http::{self, Response};
use crate::wire::mux::{self, Command};
use crate::wire::protocol;

/// Topics nobody has published yet (placeholders) a multiplexed
/// connection may hold and still open a new one. Every placeholder takes
/// one of the `--max-topics` slots kept for them, so a connection opening
/// one per topic it may hold would fill them as many times faster; four
/// leave a dashboard room to wait for a few agents not yet started.
pub(super) const MAX_PLACEHOLDERS: usize = 4;

/// The topics a connect opened, and what it answers.
struct Opened {
    subs: Subs,
    /// The snapshots to queue.
    snapshots: Vec<Out>,
    /// Each topic refused for want of room: its `statecast.error` and the
    /// reason alone.
    refused: Vec<(String, String)>,
}

/// What opening a multiplexed connection, or its command, changes: the
/// loop's state, lent for one call.
pub(super) struct Multiplex<'a> {
    pub conns: &'a mut Conns,
    pub topics: &'a mut Topics,
    /// `--max-topics-per-connection`.
    pub max_topics: usize,
}

impl Multiplex<'_> {
    /// Completes a multiplexed upgrade: the 101, a `statecast.error` for
    /// each topic refused for want of room, then the snapshot of each
    /// topic whose seq the client does not already have (`since`).
    pub(super) fn subscribe_many(
        &mut self,
        key: usize,
        names: &[String],
        since: &[(String, u64)],
        accept: &str,
        (deflate, delta): (bool, Option<DeltaFormat>),
        now: Instant,
    ) -> Result<(), Response> {
        let form = if deflate { Form::Deflate } else { Form::Frame };
        let Opened {
            subs,
            snapshots,
            refused,
        } = self.open_topics(key, names, since, Subs::mux(form, delta))?;
        self.conns[key].open(subs, now);
        let switching = Shared::from(http::switching_protocols(accept, deflate));
        self.conns.enqueue(key, Out::Bytes(switching));
        for (json, _) in refused {
            self.control(key, &json);
        }
        for out in snapshots {
            self.conns.enqueue(key, out);
        }
        debug!(
            "{} subscribed to {} topics",
            self.conns[key].tag(),
            names.len()
        );
        Ok(())
    }

    /// Starts a multiplexed SSE stream: the head, a `statecast.error`
    /// message for each topic refused for want of room, then each topic's
    /// snapshot as a named event ending in the seq vector so far. A stream
    /// left with no topic is refused instead, as one naming none is.
    pub(super) fn stream_many(
        &mut self,
        key: usize,
        names: &[String],
        since: &[(String, u64)],
        (origin, delta): (Option<&str>, Option<DeltaFormat>),
        now: Instant,
    ) -> Result<(), Response> {
        let subs = Subs::mux(Form::Sse, delta);
        let Opened {
            subs,
            snapshots,
            refused,
        } = self.open_topics(key, names, since, subs)?;
        if subs.len() == 0
            && let Some((_, why)) = refused.first()
        {
            return Err(http::error(http::UNAVAILABLE, why, "", true));
        }
        self.conns[key].open_stream(subs, now);
        let head = Shared::from(http::event_stream_head(&http::cors(origin)));
        self.conns.enqueue(key, Out::Bytes(head));
        for (json, _) in refused {
            let message = Shared::from(format!("data: {json}\n\n").into_bytes());
            self.conns.enqueue(key, Out::Reply(message));
        }
        for out in snapshots {
            self.conns.enqueue(key, out);
        }
        debug!("{} streaming {} topics", self.conns[key].tag(), names.len());
        Ok(())
    }

    /// Subscribes connection `key` to each of `names` (checked already),
    /// and returns its subscriptions, the snapshots to queue and the
    /// `statecast.error` of each topic refused. A topic with no room (the
    /// table full, or the connection's placeholders at their cap) is
    /// refused alone, as a subscribe command's would be: refusing the
    /// whole connection would let one such topic cost a dashboard all its
    /// others.
    fn open_topics(
        &mut self,
        key: usize,
        names: &[String],
        since: &[(String, u64)],
        mut subs: Subs,
    ) -> Result<Opened, Response> {
        let mut snapshots = Vec::new();
        let mut refused = Vec::new();
        for name in names {
            let id = match self.open(name, placeholders_held(self.topics, &subs)) {
                Ok(id) => id,
                Err((status, why)) if status == http::UNAVAILABLE => {
                    refused.push((mux::error(Some(name), status.0, &why), why));
                    continue;
                }
                Err((status, why)) => {
                    for sub in subs.subscriptions() {
                        self.conns.unsubscribe(sub, self.topics);
                    }
                    return Err(http::error(status, &why, "", true));
                }
            };
            if let Some(snapshot) = self.add_topic(key, &mut subs, id, name, since) {
                snapshots.push((id, snapshot));
            }
        }
        // Only now, with the topics the client has already in the vector,
        // each seq is noted as its snapshot is queued: an event's `id:`
        // never claims a snapshot queued after it.
        let outs = snapshots
            .into_iter()
            .map(|(id, snapshot)| self.queued(&mut subs, id, snapshot))
            .collect();
        Ok(Opened {
            subs,
            snapshots: outs,
            refused,
        })
    }

    /// Finds topic `name`, opening a placeholder for it unless the
    /// connection holds (`held`) `MAX_PLACEHOLDERS` already; or the status
    /// and the reason it is refused. A name no server could serve is
    /// refused as such first.
    fn open(&mut self, name: &str, held: usize) -> Result<usize, (http::Status, String)> {
        let refused = |e: TopicError| (endpoints::topic_status(&e), e.to_string());
        if self.topics.find(name).is_none() {
            self.topics.check(name).map_err(refused)?;
            if held >= MAX_PLACEHOLDERS {
                let why = format!(
                    "{name:?} has not been published yet, and this connection holds \
                     {MAX_PLACEHOLDERS} such topics already"
                );
                return Err((http::UNAVAILABLE, why));
            }
        }
        self.topics.find_or_open(name).map_err(refused)
    }

    /// Adds topic `id` to `subs`; returns its snapshot to queue, unless
    /// the client has its current seq already (`since`), or it has none.
    fn add_topic(
        &mut self,
        key: usize,
        subs: &mut Subs,
        id: usize,
        name: &str,
        since: &[(String, u64)],
    ) -> Option<Shared> {
        let (sub, snapshot) = self
            .topics
            .subscribe_mux(id, key, subs.form(), subs.delta());
        let current = self.topics.get(id).seq();
        let has = since.iter().rev().find(|(t, _)| t == name).map(|(_, s)| *s);
        // A delta subscriber starts from a whole snapshot (`resumable`).
        let held = subs.delta().is_none() && has == Some(current);
        subs.push(sub, held.then_some(current));
        snapshot.filter(|_| !held)
    }

    /// Notes topic `id`'s current seq as queued on `subs`, and makes its
    /// snapshot the output to queue: on SSE, ended by the seq vector.
    fn queued(&self, subs: &mut Subs, id: usize, snapshot: Shared) -> Out {
        if let Some(entry) = subs.get_mut(id) {
            entry.queued = Some(self.topics.get(id).seq());
        }
        let topics = &*self.topics;
        let tail = (subs.form() == Form::Sse).then(|| sse_tail(subs, |id| topics.get(id).name()));
        Out::Mux {
            topic: id,
            bytes: snapshot,
            published: None,
            tail,
        }
    }

    /// Carries out a multiplexed WebSocket's command, or answers why not.
    pub(super) fn command(&mut self, key: usize, command: Result<Command, String>) {
        match command {
            Ok(Command::Subscribe { topics, since }) => self.subscribe_command(key, topics, &since),
            Ok(Command::Unsubscribe { topics }) => self.unsubscribe_command(key, &topics),
            Err(reason) => self.control(key, &mux::error(None, 400, &reason)),
        }
    }

    /// Adds each topic as a connect would, in order; each refused one is
    /// answered with the status its connect would have got. A topic
    /// subscribed already is left as it is.
    fn subscribe_command(&mut self, key: usize, mut names: Vec<String>, since: &[(String, u64)]) {
        let max = self.max_topics;
        if names.len() > max {
            let why = format!(
                "{} topics in one command, over --max-topics-per-connection ({max})",
                names.len()
            );
            return self.control(key, &mux::error(None, 400, &why));
        }
        let mut seen = std::collections::HashSet::new();
        names.retain(|name| seen.insert(name.clone()));
        for name in &names {
            let conn = &self.conns[key];
            let Some(subs) = conn.subs() else {
                return;
            };
            let found = self.topics.find(name);
            if found.is_some_and(|id| subs.get(id).is_some()) {
                continue;
            }
            if subs.len() >= max {
                let why = format!("over --max-topics-per-connection ({max})");
                self.control(key, &mux::error(Some(name), 400, &why));
                continue;
            }
            if let Some(why) = access::unreadable(conn.grant(), name) {
                self.control(key, &mux::error(Some(name), 403, &why));
                continue;
            }
            let held = placeholders_held(self.topics, subs);
            let id = match self.open(name, held) {
                Ok(id) => id,
                Err((status, why)) => {
                    self.control(key, &mux::error(Some(name), status.0, &why));
                    continue;
                }
            };
            // Taken out and put back: the registry and the queue are both
            // changed on the way.
            let placeholder = Subs::mux(Form::Frame, None);
            let Some(mut subs) = self.conns[key]
                .subs_mut()
                .map(|subs| std::mem::replace(subs, placeholder))
            else {
                return;
            };
            let snapshot = self.add_topic(key, &mut subs, id, name, since);
            let out = snapshot.map(|snapshot| self.queued(&mut subs, id, snapshot));
            if let Some(slot) = self.conns[key].subs_mut() {
                *slot = subs;
            }
            if let Some(out) = out {
                self.conns.enqueue(key, out);
            }
            debug!("{} subscribed to {name}", self.conns[key].tag());
        }
    }

    /// Drops each topic the connection has, answering for each that its
    /// messages stop here; a topic it does not have is ignored.
    fn unsubscribe_command(&mut self, key: usize, names: &[String]) {
        for name in names {
            let Some(id) = self.topics.find(name) else {
                continue;
            };
            let Some(sub) = self.conns[key].subs_mut().and_then(|subs| subs.remove(id)) else {
                continue;
            };
            self.conns[key].drop_topic(id);
            self.conns.unsubscribe(sub, self.topics);
            self.control(key, &mux::unsubscribed(name));
            debug!("{} unsubscribed from {name}", self.conns[key].tag());
        }
    }

    /// Queues a control message: a text frame, never compressed (RFC 7692
    /// lets each message say whether it is, by its RSV1 bit).
    fn control(&mut self, key: usize, json: &str) {
        let frame = Shared::from(protocol::encode_text(json));
        self.conns.enqueue(key, Out::Reply(frame));
    }
}

/// The topics of `subs` nobody has published yet.
fn placeholders_held(topics: &Topics, subs: &Subs) -> usize {
    subs.subscriptions()
        .filter(|sub| topics.get(sub.topic).is_placeholder())
        .count()
}
