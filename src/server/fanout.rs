//! Where a publish goes: the channel from producer threads, a topic's new
//! snapshot to its subscribers (one shared frame, once per turn however
//! many publishes came), and one-off events to every subscriber (WebSocket
//! or SSE).

use std::time::Instant;

use super::{EventLoop, MAX_DRAIN};
use crate::publisher::Command;
use crate::server::conn::Delivered;
use crate::server::queue::Out;
use crate::topic::{Form, Message, Published};

impl EventLoop {
    /// Stores a topic's new snapshot and counts the publishes; nothing is
    /// sent here: [`fan_out`](Self::fan_out) queues it for the subscribers
    /// later in the turn.
    pub(super) fn publish(&mut self, id: usize, data: &str, publishes: u64) -> Published {
        self.stats.publishes += publishes;
        self.topics.publish(id, data, publishes)
    }

    /// Queues each published topic's newest snapshot for every subscriber:
    /// a clone of the same `Arc`, never a copy. Runs once per turn (and
    /// before any event, to keep order), so a burst of publishes to one
    /// topic costs one pass over its subscribers, not one per publish.
    pub(super) fn fan_out(&mut self, now: Instant) {
        let conns = &mut self.conns;
        let stats = &mut self.stats;
        // Closing would change the subscriber lists being walked: a
        // connection over its limit is closed after the pass.
        self.topics.fan_out(|encoded, published, subscribers| {
            for &key in subscribers {
                let form = conns[key].form().unwrap_or(Form::Frame);
                let out = Out::Snapshot(encoded.pick(form).clone(), Some(published));
                stats.deliveries += 1;
                let latency = &mut stats.latency;
                let (delivered, bytes) = conns[key].deliver(out, now, &mut latency.ages_at(now));
                stats.bytes_out += bytes as u64;
                if let Delivered::Queued { superseded } = delivered {
                    stats.superseded += u64::from(superseded);
                    conns.schedule(key);
                }
            }
        });
    }

    /// Sends a one-off event to every open connection, whatever its topic.
    pub(super) fn broadcast(&mut self, type_json: &str, data: &str, now: Instant) -> usize {
        // Snapshots published before this event go out before it.
        self.fan_out(now);
        let message = Message::event(type_json, data);
        // Encoded for SSE and compressed once each, if a subscriber needs it.
        let (mut sse, mut deflated) = (None, None);
        let mut count = 0;
        // Scheduled after the pass over connections, which holds them.
        let mut queued = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            if !conn.is_subscriber() {
                continue;
            }
            count += 1;
            let bytes = match conn.form() {
                Some(Form::Sse) => sse.get_or_insert_with(|| message.sse(None)).clone(),
                Some(Form::Deflate) => deflated
                    .get_or_insert_with(|| self.topics.compressor.compress(&message))
                    .as_ref()
                    .unwrap_or(&message.frame)
                    .clone(),
                _ => message.frame.clone(),
            };
            let latency = &mut self.stats.latency;
            let (delivered, written) =
                conn.deliver(Out::Bytes(bytes), now, &mut latency.ages_at(now));
            self.stats.bytes_out += written as u64;
            if let Delivered::Queued { .. } = delivered {
                queued.push(key);
            }
        }
        for key in queued {
            self.conns.schedule(key);
        }
        self.stats.events += 1;
        self.stats.deliveries += count as u64;
        count
    }

    /// Handles what producer threads sent since the last turn. Snapshots for
    /// one topic are coalesced so only the newest is encoded, but never
    /// across an event, so a producer's events and snapshots keep their order.
    pub(super) fn drain_commands(&mut self, now: Instant) {
        self.inbox.rearm();
        // Set again below if this turn cannot take everything.
        self.backlog = true;
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
                    self.apply_pending();
                    self.send_event(type_json, data, now);
                }
                #[cfg(feature = "redis")]
                Command::Cluster(incoming) => {
                    self.apply_pending();
                    self.replicated(incoming, now);
                }
                Command::Shutdown => {
                    self.apply_pending();
                    self.begin_shutdown(now);
                }
            }
        }
        self.apply_pending();
    }

    fn apply_pending(&mut self) {
        self.pending_index.clear();
        let mut pending = std::mem::take(&mut self.pending);
        for (name, data, count) in pending.drain(..) {
            self.publish_snapshot(&name, data, count);
        }
        // Keep the allocation for the next drain.
        self.pending = pending;
    }
}
