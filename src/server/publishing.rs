//! Where a publish goes, top to bottom: the channel from producer threads
//! (snapshots coalesced per topic), an HTTP publish or broadcast, then
//! under `--redis` the writer thread, which orders it and sends it back
//! through the channel, else straight on: the snapshot stored in its topic
//! and, once per turn however many publishes came, fanned out to the
//! topic's subscribers through the registry (one shared frame); an event
//! to every subscriber.

use std::collections::HashMap;
use std::time::Instant;

use log::warn;

use crate::cluster::{Link, Outgoing};
use crate::publisher::{Command, Inbox, Registry};
use crate::server::cluster::Cluster;
use crate::server::conn::Close;
use crate::server::conns::Conns;
use crate::server::endpoints::{self, Answer};
use crate::server::stats::{Interval, Stats};
use crate::topic::{Message, Published, Topics};
use crate::wire::http::Response;

/// Most channel commands handled per turn, so sockets are not starved by a
/// flood of publishes.
const MAX_DRAIN: usize = 64 * 1024;

/// What a publish reaches: the loop's state it changes, lent for one call.
pub(super) struct Reach<'a> {
    /// Where snapshots are stored, and who subscribes to each.
    pub topics: &'a mut Topics,
    /// Where every byte for a subscriber is queued.
    pub conns: &'a mut Conns,
    /// The counters.
    pub stats: &'a mut Stats,
    /// What the next stats line reports (refused answers).
    pub interval: &'a mut Interval,
}

/// What a drain of the channel ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drained {
    /// Everything taken, or as much as one turn may take.
    Done,
    /// A producer asked for shutdown; what follows it waits for the next
    /// turn.
    Shutdown,
    /// A producer (the signal handler) asked for a drain, then shutdown;
    /// what follows it waits for the next turn.
    Drain,
}

/// The publish path's own state: the channel, what a drain coalesces, and
/// the link to the other nodes.
pub(super) struct Publishing {
    /// Commands from `Publisher`s.
    inbox: Inbox,
    /// Snapshots from the channel waiting to be stored: topic, data,
    /// count. Only the newest per topic survives a drain.
    pending: Vec<(String, String, u64)>,
    /// Where each topic's entry is in `pending`.
    pending_index: HashMap<String, usize>,
    /// The last drain stopped with commands left.
    backlog: bool,
    /// SIGHUP asked for the TLS certificate to be loaded again.
    reload: bool,
    /// `--redis`: the link to the other nodes.
    cluster: Option<Cluster>,
}

impl Publishing {
    pub(super) fn new(inbox: Inbox, link: Option<Link>) -> Publishing {
        Publishing {
            inbox,
            pending: Vec::new(),
            pending_index: HashMap::new(),
            backlog: false,
            reload: false,
            cluster: link.map(Cluster::new),
        }
    }

    /// Whether commands are left for the next turn: the loop must not
    /// sleep.
    pub(super) fn backlog(&self) -> bool {
        self.backlog
    }

    /// Whether a reload was asked for since the last call.
    pub(super) fn take_reload(&mut self) -> bool {
        std::mem::take(&mut self.reload)
    }

    /// The providers' reported status, for `/healthz` and `/metrics`.
    pub(super) fn providers(&self) -> &Registry {
        self.inbox.providers()
    }

    /// Handles what producer threads sent since the last turn. Snapshots for
    /// one topic are coalesced so only the newest is encoded, but never
    /// across an event, so a producer's events and snapshots keep their order.
    pub(super) fn drain(&mut self, reach: &mut Reach<'_>, now: Instant) -> Drained {
        self.inbox.rearm();
        // Set again below if this turn cannot take everything.
        self.backlog = true;
        let mut drained = Drained::Done;
        for _ in 0..MAX_DRAIN {
            let Some(command) = self.inbox.try_recv() else {
                self.backlog = false;
                break;
            };
            match command {
                Command::Snapshot { topic, data } => match self.pending_index.get(&topic) {
                    Some(&i) => {
                        if let Some(entry) = self.pending.get_mut(i) {
                            entry.1 = data;
                            entry.2 += 1;
                        }
                    }
                    None => {
                        self.pending_index.insert(topic.clone(), self.pending.len());
                        self.pending.push((topic, data, 1));
                    }
                },
                Command::Event { type_json, data } => {
                    self.apply_pending(reach);
                    self.send_event(type_json, data, reach, now);
                }
                #[cfg(feature = "redis")]
                Command::Cluster(incoming) => {
                    self.apply_pending(reach);
                    self.replicated(incoming, reach, now);
                }
                // The loop starts closing first; `backlog` stays set, so
                // the rest is drained next turn without sleeping.
                Command::Shutdown => {
                    drained = Drained::Shutdown;
                    break;
                }
                Command::Reload => self.reload = true,
                Command::Drain => {
                    drained = Drained::Drain;
                    break;
                }
            }
        }
        self.apply_pending(reach);
        drained
    }

    fn apply_pending(&mut self, reach: &mut Reach<'_>) {
        self.pending_index.clear();
        let mut pending = std::mem::take(&mut self.pending);
        for (name, data, count) in pending.drain(..) {
            self.publish_snapshot(&name, data, count, reach);
        }
        // Keep the allocation for the next drain.
        self.pending = pending;
    }

    /// A snapshot a local producer published: to Redis when linked, else
    /// stored here.
    fn publish_snapshot(&mut self, topic: &str, data: String, count: u64, reach: &mut Reach<'_>) {
        if self.cluster.is_none() {
            self.publish_here(topic, &data, count, reach);
            return;
        }
        let out = reach.outgoing(None, topic, data);
        self.send_out(out, reach, Instant::now());
    }

    /// An HTTP publish to connection `key`'s request: stored here and
    /// answered, or under `--redis` handed to the writer and answered once
    /// Redis has ordered it (`None`: the answer comes then, and the
    /// connection reads nothing more until it has).
    pub(super) fn publish_request(
        &mut self,
        key: usize,
        topic: &str,
        data: &str,
        answer: Answer,
        reach: &mut Reach<'_>,
    ) -> Option<Response> {
        let id = match reach.topics.find_or_create(topic) {
            Ok(id) => id,
            Err(e) => return Some(endpoints::no_room(&e, answer.close)),
        };
        let Some(cluster) = &mut self.cluster else {
            let published = reach.store(id, data, 1);
            return Some(endpoints::published(topic, published, answer.close));
        };
        let conn = reach.conns.get(key)?;
        let req = cluster.wait(key, conn.id(), answer);
        reach.conns[key].set_awaiting(true);
        let out = reach.outgoing(Some(req), topic, data.to_owned());
        self.send_out(out, reach, Instant::now());
        None
    }

    /// An event a local producer or an HTTP broadcast sent: through Redis
    /// when linked. Returns the subscribers here it reaches.
    pub(super) fn send_event(
        &mut self,
        type_json: String,
        data: String,
        reach: &mut Reach<'_>,
        now: Instant,
    ) -> usize {
        if self.cluster.is_none() {
            return reach.broadcast(&type_json, &data, now);
        }
        let local = reach.topics.subscriptions();
        let out = Outgoing::Event { type_json, data };
        self.send_out(out, reach, now).unwrap_or(local)
    }

    /// Publishes to this node's subscribers only.
    fn publish_here(
        &mut self,
        topic: &str,
        data: &str,
        count: u64,
        reach: &mut Reach<'_>,
    ) -> Option<Published> {
        match reach.topics.find_or_create(topic) {
            Ok(id) => Some(reach.store(id, data, count)),
            Err(e) => {
                warn!("publish to {topic:?} dropped: {e}");
                None
            }
        }
    }

    /// Hands `out` to the writer; when the writer is too far behind to take
    /// it, serves it here and returns the subscribers an event reached.
    fn send_out(&mut self, out: Outgoing, reach: &mut Reach<'_>, now: Instant) -> Option<usize> {
        let cluster = self.cluster.as_ref()?;
        match cluster.send(out) {
            Ok(()) => None,
            Err(out) => Some(self.serve_failed(out, reach, now)),
        }
    }

    /// What the link reported.
    #[cfg(feature = "redis")]
    fn replicated(
        &mut self,
        incoming: crate::cluster::Incoming,
        reach: &mut Reach<'_>,
        now: Instant,
    ) {
        use crate::cluster::Incoming;
        match incoming {
            Incoming::Snapshot { topic, seq, data } => {
                self.apply_replicated(&topic, seq, &data, reach)
            }
            Incoming::Event { type_json, data } => {
                reach.broadcast(&type_json, &data, now);
            }
            Incoming::Stored {
                req,
                topic,
                seq,
                data,
            } => {
                // Served before Redis echoes it back, so a client that
                // subscribes here after the answer sees this publish.
                self.apply_replicated(&topic, seq, &data, reach);
                let Some(req) = req else { return };
                let subscribers = reach
                    .topics
                    .find(&topic)
                    .map_or(0, |id| reach.topics.get(id).reach());
                self.answer(req, &topic, Published { seq, subscribers }, reach);
            }
            Incoming::Failed(out) => {
                self.serve_failed(out, reach, now);
            }
            Incoming::Refused { out, why } => self.refused(out, why, reach, now),
            Incoming::Skipped(why) => reach.stats.redis_skipped.count(why),
            Incoming::Up => self.write_back(reach, now),
        }
    }

    /// A publish the writer would not write (it logged why): a snapshot
    /// is served nowhere, so every node keeps the same one, and an HTTP
    /// publish is answered with the reason; an event, which nothing
    /// retains, still reaches this node's clients.
    #[cfg(feature = "redis")]
    fn refused(
        &mut self,
        out: Outgoing,
        why: crate::cluster::Skip,
        reach: &mut Reach<'_>,
        now: Instant,
    ) {
        reach.stats.redis_skipped.count(why);
        match out {
            Outgoing::Event { type_json, data } => {
                reach.broadcast(&type_json, &data, now);
            }
            Outgoing::Snapshot {
                req: Some(req),
                topic,
                ..
            } => {
                let response = |close| endpoints::not_replicated(&topic, why, close);
                if let Some(status) = self.answer_with(req, response, reach) {
                    reach.stats.refused_publishes.count(status);
                }
            }
            Outgoing::Snapshot { req: None, .. } => {}
        }
    }

    /// A snapshot in Redis's order: served when newer than what this node
    /// has, so a node's own publishes, and snapshots re-read after a
    /// reconnect, are never delivered twice.
    #[cfg(feature = "redis")]
    fn apply_replicated(&mut self, topic: &str, seq: u64, data: &str, reach: &mut Reach<'_>) {
        let id = match reach.topics.find_or_create(topic) {
            Ok(id) => id,
            Err(e) => return warn!("redis: a publish to {topic:?} cannot be served here: {e}"),
        };
        let current = reach.topics.get(id).seq();
        if seq <= current {
            // This node's own publishes come back this way; so does a
            // snapshot re-read after a reconnect.
            return log::debug!(
                "redis: {topic:?} seq {seq} is not newer than {current}; not served"
            );
        }
        if let Some(cluster) = &mut self.cluster {
            cluster.replicated(topic);
        }
        reach.store(id, data, seq - current);
    }

    /// Serves here what Redis could not take; returns the subscribers an
    /// event reached.
    fn serve_failed(&mut self, out: Outgoing, reach: &mut Reach<'_>, now: Instant) -> usize {
        match out {
            Outgoing::Event { type_json, data } => reach.broadcast(&type_json, &data, now),
            Outgoing::Snapshot {
                req,
                topic,
                data,
                served,
                ..
            } => {
                if let Some(cluster) = &mut self.cluster {
                    cluster.unreplicated(topic.clone());
                }
                let published = if served {
                    None
                } else {
                    self.publish_here(&topic, &data, 1, reach)
                };
                if let Some(req) = req {
                    let published = published.unwrap_or(Published {
                        seq: 0,
                        subscribers: 0,
                    });
                    self.answer(req, &topic, published, reach);
                }
                0
            }
        }
    }

    /// Answers a waiting HTTP publish, then lets its connection go on.
    fn answer(&mut self, req: u64, topic: &str, published: Published, reach: &mut Reach<'_>) {
        let response = |close| endpoints::published(topic, published, close);
        self.answer_with(req, response, reach);
    }

    /// Answers a waiting HTTP publish with what `response` makes, then
    /// lets its connection go on; the status, if it was still there.
    fn answer_with(
        &mut self,
        req: u64,
        response: impl FnOnce(bool) -> Response,
        reach: &mut Reach<'_>,
    ) -> Option<u16> {
        let (key, id, answer) = self.cluster.as_mut()?.answered(req)?;
        // The connection may have gone, and its slab key been reused.
        if reach.conns.get(key).is_none_or(|c| c.id() != id) {
            return None;
        }
        reach.conns[key].set_awaiting(false);
        let response = response(answer.close);
        let status = response.status.0;
        reach.interval.note(&response);
        reach.conns.respond(key, response, Close::HttpDone);
        // Pipelined requests behind it are read at the end of the turn,
        // not from here: this may run inside the handling of a request of
        // the same connection, and must not recurse into the next.
        reach.conns.read_later(key);
        Some(status)
    }

    /// The link is back: each topic served only here meanwhile goes to
    /// Redis with its current value, its seq as the floor.
    #[cfg(feature = "redis")]
    fn write_back(&mut self, reach: &mut Reach<'_>, now: Instant) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        for topic in cluster.take_unreplicated() {
            let Some(id) = reach.topics.find(&topic) else {
                continue;
            };
            let current = reach.topics.get(id);
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
            self.send_out(out, reach, now);
        }
    }
}

impl Reach<'_> {
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

    /// Stores a topic's new snapshot; it goes out at the next fan-out.
    fn store(&mut self, id: usize, data: &str, publishes: u64) -> Published {
        self.stats.publishes += publishes;
        self.topics.publish(id, data, publishes)
    }

    /// Queues each published topic's newest snapshot for every subscriber,
    /// through the registry. Runs once per turn (and before any event, to
    /// keep order), so a burst of publishes to one topic costs one pass
    /// over its subscribers, not one per publish.
    pub(super) fn fan_out(&mut self, now: Instant) {
        let (conns, stats) = (&mut *self.conns, &mut *self.stats);
        self.topics.fan_out(|encoded, published, subscribers| {
            conns.deliver(subscribers, encoded, published, now, stats);
        });
        self.topics.fan_out_mux(|fan, topics| {
            conns.deliver_mux(fan, topics, now, stats);
        });
    }

    /// Sends a one-off event to every subscriber here, whatever its topic.
    fn broadcast(&mut self, type_json: &str, data: &str, now: Instant) -> usize {
        // Snapshots published before this event go out before it.
        self.fan_out(now);
        let message = Message::event(type_json, data);
        let compressor = &mut self.topics.compressor;
        let count = self.conns.broadcast(&message, compressor, now, self.stats);
        self.stats.events += 1;
        count
    }
}
