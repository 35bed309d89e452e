//! The loop's side of `--redis`: publishes go to the writer thread instead
//! of straight to subscribers, and what Redis orders comes back through the
//! channel to be served. An HTTP publish is answered once Redis has given
//! it a seq; its connection reads nothing more until then.

// Proof for the indexing below: a slab key is used only while its entry is
// there: keys come from poll tokens and the loop's own lists, each checked
// with `get` (and the connection's id) first, and an entry leaves the slab
// only in `remove`, after every event of the turn is handled.
#![allow(clippy::indexing_slicing)]

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use log::warn;

use super::EventLoop;
use super::endpoints::{self, Answer};
use crate::cluster::{Link, Outgoing};
use crate::server::conn::Close;
use crate::topic::Published;

/// The link and what the loop remembers about it.
#[derive(Debug)]
pub(super) struct Cluster {
    link: Link,
    /// Topics served locally while Redis was unreachable: written back
    /// when it returns.
    unreplicated: HashSet<String>,
    /// HTTP publishes waiting for their seq: the connection (key and id)
    /// and how to answer.
    awaiting: HashMap<u64, (usize, u64, Answer)>,
    next_req: u64,
}

impl Cluster {
    pub(super) fn new(link: Link) -> Cluster {
        Cluster {
            link,
            unreplicated: HashSet::new(),
            awaiting: HashMap::new(),
            next_req: 1,
        }
    }
}

impl EventLoop {
    /// A snapshot a local producer published: to Redis when linked, else
    /// straight to subscribers.
    pub(super) fn publish_snapshot(&mut self, topic: &str, data: String, count: u64) {
        if self.cluster.is_none() {
            self.publish_here(topic, &data, count);
            return;
        }
        let out = self.outgoing(None, topic, data);
        self.send_out(out, Instant::now());
    }

    /// An event a local producer sent: through Redis when linked. Returns
    /// the subscribers here it reaches.
    pub(super) fn send_event(&mut self, type_json: String, data: String, now: Instant) -> usize {
        if self.cluster.is_none() {
            return self.broadcast(&type_json, &data, now);
        }
        let local = self.topics.subscriptions();
        let out = Outgoing::Event { type_json, data };
        self.send_out(out, now).unwrap_or(local)
    }

    /// An HTTP publish under `--redis`: handed to the writer, answered when
    /// Redis has ordered it. Returns false when there is no link (the
    /// caller publishes here).
    pub(super) fn publish_http(
        &mut self,
        key: usize,
        topic: &str,
        data: &str,
        answer: Answer,
    ) -> bool {
        let Some(cluster) = &mut self.cluster else {
            return false;
        };
        let req = cluster.next_req;
        cluster.next_req += 1;
        let id = self.conns[key].id();
        cluster.awaiting.insert(req, (key, id, answer));
        self.conns[key].set_awaiting(true);
        let out = self.outgoing(Some(req), topic, data.to_owned());
        self.send_out(out, Instant::now());
        true
    }

    /// A new publish to `topic` as the writer takes it. Its floor is one
    /// past the seq this node serves: Redis takes the higher of that and
    /// its own counter, so a Redis that restarted empty cannot hand out
    /// seqs that every node would ignore as old.
    fn outgoing(&self, req: Option<u64>, topic: &str, data: String) -> Outgoing {
        let floor = self
            .topics
            .find(topic)
            .map_or(1, |id| self.topics.get(id).seq() + 1);
        Outgoing::Snapshot {
            req,
            topic: topic.to_owned(),
            data,
            floor,
            served: false,
        }
    }

    /// Hands `out` to the writer; when the writer is too far behind to take
    /// it, serves it here and returns the subscribers an event reached.
    fn send_out(&mut self, out: Outgoing, now: Instant) -> Option<usize> {
        let cluster = self.cluster.as_ref()?;
        match cluster.link.send(out) {
            Ok(()) => None,
            Err(out) => Some(self.serve_failed(out, now)),
        }
    }

    /// Publishes to this node's subscribers only.
    fn publish_here(&mut self, topic: &str, data: &str, count: u64) -> Option<Published> {
        match self.topics.find_or_create(topic) {
            Ok(id) => Some(self.publish(id, data, count)),
            Err(e) => {
                warn!("publish to {topic:?} dropped: {e}");
                None
            }
        }
    }

    /// What the link reported.
    #[cfg(feature = "redis")]
    pub(super) fn replicated(&mut self, incoming: crate::cluster::Incoming, now: Instant) {
        use crate::cluster::Incoming;
        match incoming {
            Incoming::Snapshot { topic, seq, data } => self.apply_replicated(&topic, seq, &data),
            Incoming::Event { type_json, data } => {
                self.broadcast(&type_json, &data, now);
            }
            Incoming::Stored {
                req,
                topic,
                seq,
                data,
            } => {
                // Served before Redis echoes it back, so a client that
                // subscribes here after the answer sees this publish.
                self.apply_replicated(&topic, seq, &data);
                let Some(req) = req else { return };
                let subscribers = self
                    .topics
                    .find(&topic)
                    .map_or(0, |id| self.topics.get(id).subscribers().len());
                self.answer(req, &topic, Published { seq, subscribers });
            }
            Incoming::Failed(out) => {
                self.serve_failed(out, now);
            }
            Incoming::Refused { out, why } => self.refused(out, why, now),
            Incoming::Skipped(why) => self.stats.redis_skipped.count(why),
            Incoming::Up => self.write_back(now),
        }
    }

    /// A publish the writer would not write (it logged why): a snapshot
    /// is served nowhere, so every node keeps the same one, and an HTTP
    /// publish is answered with the reason; an event, which nothing
    /// retains, still reaches this node's clients.
    #[cfg(feature = "redis")]
    fn refused(&mut self, out: Outgoing, why: crate::cluster::Skip, now: Instant) {
        self.stats.redis_skipped.count(why);
        match out {
            Outgoing::Event { type_json, data } => {
                self.broadcast(&type_json, &data, now);
            }
            Outgoing::Snapshot {
                req: Some(req),
                topic,
                ..
            } => {
                let response = |close| endpoints::not_replicated(&topic, why, close);
                if let Some(status) = self.answer_with(req, response) {
                    self.stats.refused_publishes.count(status);
                }
            }
            Outgoing::Snapshot { req: None, .. } => {}
        }
    }

    /// A snapshot in Redis's order: served when newer than what this node
    /// has, so a node's own publishes, and snapshots re-read after a
    /// reconnect, are never delivered twice.
    #[cfg(feature = "redis")]
    fn apply_replicated(&mut self, topic: &str, seq: u64, data: &str) {
        let id = match self.topics.find_or_create(topic) {
            Ok(id) => id,
            Err(e) => return warn!("redis: a publish to {topic:?} cannot be served here: {e}"),
        };
        let current = self.topics.get(id).seq();
        if seq <= current {
            // This node's own publishes come back this way; so does a
            // snapshot re-read after a reconnect.
            return log::debug!(
                "redis: {topic:?} seq {seq} is not newer than {current}; not served"
            );
        }
        if let Some(cluster) = &mut self.cluster {
            cluster.unreplicated.remove(topic);
        }
        self.publish(id, data, seq - current);
    }

    /// Serves here what Redis could not take; returns the subscribers an
    /// event reached.
    fn serve_failed(&mut self, out: Outgoing, now: Instant) -> usize {
        match out {
            Outgoing::Event { type_json, data } => self.broadcast(&type_json, &data, now),
            Outgoing::Snapshot {
                req,
                topic,
                data,
                served,
                ..
            } => {
                if let Some(cluster) = &mut self.cluster {
                    cluster.unreplicated.insert(topic.clone());
                }
                let published = if served {
                    None
                } else {
                    self.publish_here(&topic, &data, 1)
                };
                if let Some(req) = req {
                    let published = published.unwrap_or(Published {
                        seq: 0,
                        subscribers: 0,
                    });
                    self.answer(req, &topic, published);
                }
                0
            }
        }
    }

    /// Answers a waiting HTTP publish, then lets its connection go on.
    fn answer(&mut self, req: u64, topic: &str, published: Published) {
        self.answer_with(req, |close| endpoints::published(topic, published, close));
    }

    /// Answers a waiting HTTP publish with what `response` makes, then
    /// lets its connection go on; the status, if it was still there.
    fn answer_with(
        &mut self,
        req: u64,
        response: impl FnOnce(bool) -> crate::wire::http::Response,
    ) -> Option<u16> {
        let cluster = self.cluster.as_mut()?;
        let (key, id, answer) = cluster.awaiting.remove(&req)?;
        // The connection may have gone, and its slab key been reused.
        if self.conns.get(key).is_none_or(|c| c.id() != id) {
            return None;
        }
        self.conns[key].set_awaiting(false);
        let response = response(answer.close);
        let status = response.status.0;
        self.respond(key, response, Close::HttpDone);
        // Pipelined requests behind it are read at the end of the turn,
        // not from here: this may run inside the handling of a request of
        // the same connection, and must not recurse into the next.
        self.conns.read_later.push((key, id));
        Some(status)
    }

    /// The link is back: each topic served only here meanwhile goes to
    /// Redis with its current value, its seq as the floor.
    #[cfg(feature = "redis")]
    fn write_back(&mut self, now: Instant) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let topics = std::mem::take(&mut cluster.unreplicated);
        for topic in topics {
            let Some(id) = self.topics.find(&topic) else {
                continue;
            };
            let current = self.topics.get(id);
            let Some(snapshot) = current.snapshot() else {
                continue;
            };
            let out = Outgoing::Snapshot {
                req: None,
                data: String::from_utf8_lossy(snapshot.data()).into_owned(),
                floor: current.seq(),
                served: true,
                topic,
            };
            // Not taken: remembered again (see `serve_failed`).
            self.send_out(out, now);
        }
    }
}
