//! One connection's ordered output queue: every byte a connection is sent
//! (HTTP responses, snapshots, events, pings, pongs, closes) goes through it,
//! so no frame is ever split by another, and newer snapshots supersede older
//! ones of the same topic that have not started going out.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::time::Instant;

pub use crate::wire::Shared;

/// What a queued frame is, which decides whether it may be superseded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A topic's retained state: a newer one of the same topic replaces it
    /// if it has not started. The topic's id on a multiplexed connection;
    /// `None` for a per-topic route's one topic.
    Snapshot(Option<usize>),
    /// What follows a multiplexed SSE snapshot (its `id:` line), dropped
    /// with it when it is superseded.
    Tail,
    /// A pong: RFC 6455 §5.5.3 lets a pong answer only the latest ping, so a
    /// newer one replaces one not yet sent, and a ping flood queues one.
    /// `json` for the answer to a JSON ping, which replaces only another
    /// of its own kind: a client waits for the kind of pong it asked for.
    Pong { json: bool },
    /// A control reply to a multiplexed command: never dropped, but
    /// counted, so a client sending commands without reading their answers
    /// is seen (see [`OutQueue::unsent_replies`]).
    Reply,
    /// Anything else (events, close frames, HTTP responses): never dropped.
    Other,
}

/// Something to queue for a connection, with the rule that applies to it.
#[derive(Debug, Clone)]
pub enum Out {
    /// Bytes that must all go out, in order.
    Bytes(Shared),
    /// A multiplexed command's answer: goes out in order like `Bytes`,
    /// and is counted while unsent.
    Reply(Shared),
    /// A topic's snapshot: supersedes an older unstarted one. With the
    /// instant it was published, when it is a publish being fanned out, so
    /// its publish-to-written time can be measured.
    Snapshot(Shared, Option<Instant>),
    /// A snapshot of one of a multiplexed connection's topics: supersedes
    /// only an older unstarted one of the same `topic`, never another
    /// topic's, so a slow reader of one big topic still gets the newest
    /// of each. `tail` goes out right after it, and goes with it.
    Mux {
        topic: usize,
        bytes: Shared,
        published: Option<Instant>,
        tail: Option<Shared>,
    },
}

impl Out {
    /// Whether it is more than one buffer, so it is queued, never written
    /// through.
    pub fn has_tail(&self) -> bool {
        matches!(self, Out::Mux { tail: Some(_), .. })
    }
}

#[derive(Debug)]
struct Item {
    bytes: Shared,
    kind: Kind,
    /// When the publish it carries was made, for the latency histogram.
    published: Option<Instant>,
}

/// What one queued item costs beyond its bytes, counted toward the queue
/// limit: the `Item` in the ring (48 bytes), the `Arc`'s header (16) and
/// the allocator's rounding. Without it a flood of tiny frames (a 35-byte
/// pong) would pin three times the memory the limit allows.
pub const ITEM_OVERHEAD: usize = 96;

/// Most buffers handed to one `writev`; Linux accepts 1024, but past a few
/// dozen the kernel's per-iovec cost beats the saved syscalls.
const MAX_IOVECS: usize = 64;

/// An ordered queue of byte buffers with a byte count and snapshot
/// conflation. Empty, it owns no heap memory.
#[derive(Debug, Default)]
pub struct OutQueue {
    items: VecDeque<Item>,
    /// Bytes of the front item already written: that item has started going
    /// out and can no longer be superseded or dropped.
    head_written: usize,
    /// Bytes not yet written, across all items.
    pending: usize,
    /// Of `pending`, the bytes of snapshots and their tails: a
    /// multiplexed connection may hold one of each topic, so only these
    /// are allowed a limit that grows with its topics.
    snapshot_bytes: usize,
    /// Items that are snapshots or their tails.
    snapshot_items: usize,
    /// Snapshot items queued per topic (as in [`Kind::Snapshot`]), so a
    /// topic with none skips the scan for one: with many small items
    /// queued, each scan would cost the whole queue.
    per_topic: Vec<(Option<usize>, usize)>,
    /// Control replies queued (see [`Kind::Reply`]).
    replies: usize,
    /// Items looked at by the scans for a topic's snapshots, for the tests
    /// that hold those scans to one pass.
    #[cfg(test)]
    visited: usize,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether a snapshot (or delta) of `topic` (as in [`Out::Mux`];
    /// `None` on a per-topic route) waits that has not started going out,
    /// which a newer one would supersede.
    pub fn has_unstarted_snapshot(&self, topic: Option<usize>) -> bool {
        if self.snapshots_of(topic) == 0 {
            return false;
        }
        let first_unstarted = usize::from(self.head_written > 0);
        let kind = Kind::Snapshot(topic);
        self.items
            .iter()
            .skip(first_unstarted)
            .any(|item| item.kind == kind)
    }

    /// Bytes still to be written.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// What the queue costs toward the limit: its bytes and a fixed
    /// overhead per item.
    pub fn charge(&self) -> usize {
        self.pending
            .saturating_add(self.items.len().saturating_mul(ITEM_OVERHEAD))
    }

    /// Of [`charge`](Self::charge), what snapshots and their tails cost.
    pub fn snapshot_charge(&self) -> usize {
        self.snapshot_bytes
            .saturating_add(self.snapshot_items.saturating_mul(ITEM_OVERHEAD))
    }

    /// Control replies queued and not yet written whole.
    pub fn unsent_replies(&self) -> usize {
        self.replies
    }

    /// Snapshot items of `topic` queued, started or not.
    fn snapshots_of(&self, topic: Option<usize>) -> usize {
        self.per_topic
            .iter()
            .find(|(t, _)| *t == topic)
            .map_or(0, |(_, n)| *n)
    }

    /// Appends `item`, counting it.
    fn push_item(&mut self, item: Item) {
        self.pending += item.bytes.len();
        match item.kind {
            Kind::Snapshot(topic) => {
                self.snapshot_bytes += item.bytes.len();
                self.snapshot_items += 1;
                match self.per_topic.iter_mut().find(|(t, _)| *t == topic) {
                    Some((_, n)) => *n += 1,
                    None => self.per_topic.push((topic, 1)),
                }
            }
            Kind::Tail => {
                self.snapshot_bytes += item.bytes.len();
                self.snapshot_items += 1;
            }
            Kind::Reply => self.replies += 1,
            Kind::Pong { .. } | Kind::Other => {}
        }
        self.items.push_back(item);
    }

    /// Queues `out` by its rule; returns whether something older was
    /// superseded.
    pub fn enqueue(&mut self, out: Out) -> bool {
        match out {
            Out::Bytes(bytes) => {
                self.push(bytes);
                false
            }
            Out::Reply(bytes) => {
                self.push_item(Item {
                    bytes,
                    kind: Kind::Reply,
                    published: None,
                });
                false
            }
            Out::Snapshot(bytes, published) => self.push_snapshot(bytes, published, None),
            Out::Mux {
                topic,
                bytes,
                published,
                tail,
            } => {
                let superseded = self.push_snapshot(bytes, published, Some(topic));
                if let Some(tail) = tail {
                    self.push_item(Item {
                        bytes: tail,
                        kind: Kind::Tail,
                        published: None,
                    });
                }
                superseded
            }
        }
    }

    /// Queues a pong (`json`: the answer to a JSON ping). Up to `keep` of
    /// its kind wait to go out, each answering its ping; past that a newer
    /// pong replaces the newest unsent one of its kind, so a ping flood
    /// queues a bounded few. Returns whether one was replaced.
    pub fn push_pong(&mut self, bytes: Shared, keep: usize, json: bool) -> bool {
        let kind = Kind::Pong { json };
        let first_unstarted = usize::from(self.head_written > 0);
        let mut unsent = self
            .items
            .iter_mut()
            .skip(first_unstarted)
            .filter(|item| item.kind == kind);
        if let Some(newest) = unsent.by_ref().nth(keep.saturating_sub(1)) {
            let newest = unsent.last().unwrap_or(newest);
            self.pending = self.pending - newest.bytes.len() + bytes.len();
            newest.bytes = bytes;
            return true;
        }
        self.push_item(Item {
            bytes,
            kind,
            published: None,
        });
        false
    }

    /// Queues bytes that must all go out, in order.
    fn push(&mut self, bytes: Shared) {
        self.push_item(Item {
            bytes,
            kind: Kind::Other,
            published: None,
        });
    }

    /// Queues a snapshot of `topic`, dropping any older snapshot of it
    /// that has not started going out: a connection only ever needs each
    /// topic's newest state. The newest goes to the back so it still
    /// follows every event queued before it. Returns whether an older one
    /// was superseded. The same snapshot already waiting (a client that
    /// subscribed in the turn it was published) is not queued twice.
    fn push_snapshot(
        &mut self,
        bytes: Shared,
        published: Option<Instant>,
        topic: Option<usize>,
    ) -> bool {
        let kind = Kind::Snapshot(topic);
        let first_unstarted = usize::from(self.head_written > 0);
        let superseded = if self.snapshots_of(topic) == 0 {
            None
        } else {
            #[cfg(test)]
            let visited = &mut self.visited;
            self.items
                .iter()
                .skip(first_unstarted)
                .rposition(|item| {
                    #[cfg(test)]
                    {
                        *visited += 1;
                    }
                    item.kind == kind
                })
                .map(|i| i + first_unstarted)
        };
        if let Some(i) = superseded {
            if self
                .items
                .get(i)
                .is_some_and(|old| Arc::ptr_eq(&old.bytes, &bytes))
            {
                return false;
            }
            self.remove_snapshot(i);
        }
        self.push_item(Item {
            bytes,
            kind,
            published,
        });
        superseded.is_some()
    }

    /// Removes the unstarted snapshot at `i`, and the tail that follows it.
    fn remove_snapshot(&mut self, i: usize) {
        if let Some(old) = self.items.remove(i) {
            self.forget(old.kind, old.bytes.len());
        }
        if self
            .items
            .get(i)
            .is_some_and(|next| next.kind == Kind::Tail)
            && let Some(tail) = self.items.remove(i)
        {
            self.forget(tail.kind, tail.bytes.len());
        }
    }

    /// Uncounts an item of `kind` that left the queue with `unwritten` of
    /// its bytes not written.
    fn forget(&mut self, kind: Kind, unwritten: usize) {
        self.pending -= unwritten;
        match kind {
            Kind::Snapshot(topic) => {
                self.snapshot_bytes -= unwritten;
                self.snapshot_items -= 1;
                if let Some(at) = self.per_topic.iter().position(|(t, _)| *t == topic)
                    && let Some((_, n)) = self.per_topic.get_mut(at)
                {
                    *n -= 1;
                    if *n == 0 {
                        self.per_topic.swap_remove(at);
                    }
                }
            }
            Kind::Tail => {
                self.snapshot_bytes -= unwritten;
                self.snapshot_items -= 1;
            }
            Kind::Reply => self.replies -= 1,
            Kind::Pong { .. } | Kind::Other => {}
        }
    }

    /// Drops every unstarted snapshot of `topic`, and the tail of each: the
    /// client unsubscribed from it, and nothing of it may follow the answer
    /// that says so. One pass over the queue, and none when it holds no
    /// snapshot of the topic: commands may come while thousands of small
    /// items wait.
    pub fn drop_topic(&mut self, topic: usize) {
        let kind = Kind::Snapshot(Some(topic));
        if self.snapshots_of(Some(topic)) == 0 {
            return;
        }
        let first_unstarted = usize::from(self.head_written > 0);
        let mut dropped = Vec::new();
        let mut index = 0;
        let mut after_dropped = false;
        #[cfg(test)]
        let visited = &mut self.visited;
        self.items.retain(|item| {
            #[cfg(test)]
            {
                *visited += 1;
            }
            let started = index < first_unstarted;
            index += 1;
            let drop =
                !started && (item.kind == kind || (after_dropped && item.kind == Kind::Tail));
            after_dropped = drop && item.kind == kind;
            if drop {
                dropped.push((item.kind, item.bytes.len()));
            }
            !drop
        });
        for (kind, len) in dropped {
            self.forget(kind, len);
        }
    }

    /// Drops everything that has not started going out, keeping a frame that
    /// is half written so the stream stays well-formed for a close frame.
    pub fn drop_unstarted(&mut self) {
        let keep = usize::from(self.head_written > 0);
        let dropped: Vec<_> = self
            .items
            .drain(keep..)
            .map(|item| (item.kind, item.bytes.len()))
            .collect();
        for (kind, len) in dropped {
            self.forget(kind, len);
        }
    }

    /// Writes as much as the writer takes, several buffers per call. Returns
    /// the bytes written; stops at `WouldBlock` (returned as `Ok`) or when
    /// the queue is empty.
    pub fn write_to(
        &mut self,
        writer: &mut impl Write,
        done: &mut impl FnMut(Instant),
    ) -> io::Result<usize> {
        let mut total = 0;
        while !self.items.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slice, (i, item)) in slices.iter_mut().zip(self.items.iter().enumerate()) {
                let start = if i == 0 { self.head_written } else { 0 };
                *slice = IoSlice::new(item.bytes.get(start..).unwrap_or_default());
                count += 1;
            }
            let written = match writer.write_vectored(slices.get(..count).unwrap_or_default()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += written;
            self.advance(written, done);
        }
        if self.items.is_empty() {
            // Release the ring buffer: idle connections are the common case
            // and should own nothing.
            self.items = VecDeque::new();
            self.per_topic = Vec::new();
        }
        Ok(total)
    }

    /// Writes `out` straight to `writer`, the queue being empty, and queues
    /// what was not taken (all of it on an error, which is returned: the
    /// next write meets it again). Returns the bytes written.
    pub fn write_through(
        &mut self,
        writer: &mut impl Write,
        out: Out,
        done: &mut impl FnMut(Instant),
    ) -> io::Result<usize> {
        debug_assert!(self.items.is_empty(), "write-through past queued bytes");
        let (bytes, published) = match &out {
            Out::Bytes(bytes) | Out::Reply(bytes) => (bytes, None),
            Out::Snapshot(bytes, published)
            | Out::Mux {
                bytes, published, ..
            } => (bytes, *published),
        };
        let written = loop {
            match writer.write(bytes) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) => {
                    self.enqueue(out);
                    return Err(e);
                }
            }
        };
        if written == bytes.len() {
            if let Some(published) = published {
                done(published);
            }
            return Ok(written);
        }
        self.enqueue(out);
        self.advance(written, done);
        Ok(written)
    }

    /// Moves past `written` bytes; `done` hears the publish instant of each
    /// snapshot now written whole.
    fn advance(&mut self, mut written: usize, done: &mut impl FnMut(Instant)) {
        while written > 0 {
            // The writer took no more than was offered, which is queued.
            let Some(front) = self.items.front() else {
                return;
            };
            let left = front.bytes.len() - self.head_written;
            if written >= left {
                written -= left;
                self.head_written = 0;
                if let Some(item) = self.items.pop_front() {
                    self.forget(item.kind, left);
                    if let Some(published) = item.published {
                        done(published);
                    }
                }
            } else {
                self.pending -= written;
                if matches!(front.kind, Kind::Snapshot(_) | Kind::Tail) {
                    self.snapshot_bytes -= written;
                }
                self.head_written += written;
                written = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(s: &str) -> Shared {
        Arc::from(s.as_bytes())
    }

    impl OutQueue {
        fn push_snapshot_t(&mut self, bytes: Shared) -> bool {
            self.push_snapshot(bytes, None, None)
        }

        fn push_of(&mut self, topic: usize, bytes: &str, tail: Option<&str>) -> bool {
            self.enqueue(Out::Mux {
                topic,
                bytes: shared(bytes),
                published: None,
                tail: tail.map(shared),
            })
        }
    }

    /// A writer that takes at most `limit` bytes, then would block.
    struct Trickle {
        out: Vec<u8>,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.limit == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.limit);
            self.limit -= n;
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn newer_snapshot_supersedes_unstarted_one_and_moves_behind_events() {
        let mut q = OutQueue::default();
        q.push_snapshot_t(shared("s1"));
        q.push(shared("e1"));
        assert!(q.push_snapshot_t(shared("s2")));
        let mut w = Trickle {
            out: vec![],
            limit: 100,
        };
        q.write_to(&mut w, &mut |_| {}).unwrap();
        assert_eq!(w.out, b"e1s2");
        assert_eq!(q.pending_bytes(), 0);
    }

    #[test]
    fn the_same_snapshot_is_not_queued_twice() {
        let mut q = OutQueue::default();
        let snap = shared("s1");
        q.push_snapshot_t(snap.clone());
        assert!(!q.push_snapshot_t(snap));
        assert_eq!(q.pending_bytes(), 2);
    }

    #[test]
    fn half_written_snapshot_is_kept_whole() {
        let mut q = OutQueue::default();
        q.push_snapshot_t(shared("snap-1"));
        let mut w = Trickle {
            out: vec![],
            limit: 3,
        };
        assert_eq!(q.write_to(&mut w, &mut |_| {}).unwrap(), 3);
        assert!(!q.push_snapshot_t(shared("snap-2")));
        assert!(q.push_snapshot_t(shared("snap-3")));
        w.limit = 100;
        q.write_to(&mut w, &mut |_| {}).unwrap();
        assert_eq!(w.out, b"snap-1snap-3");
    }

    /// A ping flood queues one pong: each newer one replaces the unsent one,
    /// in its place, and a pong already going out is left whole.
    #[test]
    fn pongs_are_conflated() {
        let mut q = OutQueue::default();
        q.enqueue(Out::Bytes(shared("e1")));
        // Each of the first sixteen gets its own pong.
        for i in 0..16 {
            assert!(!q.push_pong(shared(&format!("p{i:02}")), 16, false));
        }
        // A flood only replaces the newest unsent one.
        for i in 16..1000 {
            assert!(q.push_pong(shared(&format!("p{i:03}")), 16, false));
        }
        assert_eq!(q.pending_bytes(), 2 + 15 * 3 + 4);
        let mut w = Trickle {
            out: vec![],
            limit: 1000,
        };
        q.write_to(&mut w, &mut |_| {}).unwrap();
        let out = String::from_utf8(w.out).unwrap();
        assert!(out.starts_with("e1p00p01"), "{out}");
        assert!(out.ends_with("p14p999"), "{out}");
    }

    #[test]
    fn drop_unstarted_keeps_the_frame_in_flight() {
        let mut q = OutQueue::default();
        q.push(shared("abcd"));
        q.push(shared("efgh"));
        let mut w = Trickle {
            out: vec![],
            limit: 2,
        };
        q.write_to(&mut w, &mut |_| {}).unwrap();
        q.drop_unstarted();
        q.push(shared("CLOSE"));
        assert_eq!(q.pending_bytes(), 2 + 5);
        w.limit = 100;
        q.write_to(&mut w, &mut |_| {}).unwrap();
        assert_eq!(w.out, b"abcdCLOSE");
        assert!(q.is_empty());
    }

    #[test]
    fn write_through_queues_only_what_the_socket_left() {
        let mut q = OutQueue::default();
        let mut heard = 0;
        let mut w = Trickle {
            out: vec![],
            limit: 100,
        };
        let at = Instant::now();
        let out = Out::Snapshot(shared("whole"), Some(at));
        assert_eq!(
            q.write_through(&mut w, out, &mut |_| heard += 1).unwrap(),
            5
        );
        assert!(q.is_empty());
        assert_eq!(heard, 1);

        // Half taken: the rest is queued as started, so a newer snapshot
        // cannot replace it and follows it instead.
        w.limit = 3;
        let out = Out::Snapshot(shared("snap-1"), Some(at));
        assert_eq!(
            q.write_through(&mut w, out, &mut |_| heard += 1).unwrap(),
            3
        );
        assert_eq!(q.pending_bytes(), 3);
        assert!(!q.push_snapshot_t(shared("snap-2")));
        // Nothing taken: all of it is queued.
        let mut full = OutQueue::default();
        let out = Out::Bytes(shared("event"));
        assert_eq!(full.write_through(&mut w, out, &mut |_| {}).unwrap(), 0);
        assert_eq!(full.pending_bytes(), 5);

        w.limit = 100;
        q.write_to(&mut w, &mut |_| heard += 1).unwrap();
        assert_eq!(w.out, b"wholesnap-1snap-2");
        assert_eq!(heard, 2, "a snapshot is heard of once, when written whole");
    }

    /// Conflation is per topic on a multiplexed connection: a newer
    /// snapshot of A replaces only A's unstarted one (and its tail), so a
    /// slow reader of a big A still gets B's newest, and B's older one is
    /// never lost to A.
    #[test]
    fn conflation_is_per_topic() {
        let mut q = OutQueue::default();
        let big = "A".repeat(1000);
        assert!(!q.push_of(1, &big, Some("|a1")));
        assert!(!q.push_of(2, "b1", Some("|b1")));
        assert!(q.push_of(1, &format!("{big}2"), Some("|a2")));
        assert!(q.push_of(2, "b2", Some("|b2")));
        assert!(q.push_of(2, "b3", None));
        let mut w = Trickle {
            out: vec![],
            limit: 10_000,
        };
        q.write_to(&mut w, &mut |_| {}).unwrap();
        let out = String::from_utf8(w.out).unwrap();
        assert_eq!(out, format!("{big}2|a2b3"));
        assert_eq!(q.pending_bytes(), 0);
    }

    /// Unsubscribing drops a topic's unstarted snapshots and their tails,
    /// and nothing else.
    #[test]
    fn dropping_a_topic_leaves_the_others() {
        let mut q = OutQueue::default();
        q.push(shared("e1"));
        q.push_of(1, "a1", Some("|a"));
        q.push_of(2, "b1", Some("|b"));
        q.drop_topic(1);
        q.drop_topic(3);
        assert_eq!(q.pending_bytes(), 2 + 4);
        let mut w = Trickle {
            out: vec![],
            limit: 100,
        };
        q.write_to(&mut w, &mut |_| {}).unwrap();
        assert_eq!(w.out, b"e1b1|b");
    }

    /// A JSON ping flood queues a bounded few JSON pongs, and a JSON pong
    /// never replaces a control pong, nor the other way round: each client
    /// gets the kind of answer it asked for.
    #[test]
    fn json_pongs_are_conflated_apart_from_control_pongs() {
        let mut q = OutQueue::default();
        assert!(!q.push_pong(shared("c0"), 1, false));
        assert!(!q.push_pong(shared("j0"), 1, true));
        for i in 1..1000 {
            assert!(q.push_pong(shared(&format!("j{i}")), 1, true));
        }
        assert!(q.push_pong(shared("c1"), 1, false));
        assert_eq!(q.items.len(), 2);
        let mut w = Trickle {
            out: vec![],
            limit: 1000,
        };
        q.write_to(&mut w, &mut |_| {}).unwrap();
        assert_eq!(w.out, b"c1j999");
    }

    /// Dropping a topic looks at each queued item once, however many
    /// snapshots of it wait among thousands of other items, and not at
    /// all when none of its snapshots waits; what it leaves is counted
    /// right.
    #[test]
    fn dropping_a_topic_is_one_pass_or_none() {
        let mut q = OutQueue::default();
        for round in 0..100 {
            for _ in 0..100 {
                q.enqueue(Out::Reply(shared("r")));
            }
            // A snapshot of topic 1 each round, with a tail; 2 and 3 once.
            q.push_of(1, &format!("a{round}"), Some("|a"));
            if round == 50 {
                q.push_of(2, "b", Some("|b"));
            }
        }
        // Conflation kept one snapshot of 1; the other rounds' were
        // superseded, so 1 and 2 each have one, with its tail.
        assert_eq!(q.items.len(), 10_000 + 4);
        let len = q.items.len();
        q.visited = 0;
        q.drop_topic(3);
        assert_eq!(q.visited, 0, "no snapshot of 3: no scan");
        q.drop_topic(1);
        assert!(q.visited <= len, "{} items visited of {len}", q.visited);
        assert_eq!(q.items.len(), 10_000 + 2);
        assert_eq!(q.pending_bytes(), 10_000 + 3);
        assert_eq!(q.snapshot_charge(), 3 + 2 * ITEM_OVERHEAD);
        assert_eq!(q.unsent_replies(), 10_000);
        assert!(!q.has_unstarted_snapshot(Some(1)));
        assert!(q.has_unstarted_snapshot(Some(2)));
        // A started snapshot of the topic stays whole, with its tail; the
        // newer one behind thousands of items goes, in the same one pass.
        let mut q = OutQueue::default();
        q.push_of(4, "d1", Some("|d1"));
        let mut w = Trickle {
            out: vec![],
            limit: 1,
        };
        q.write_to(&mut w, &mut |_| {}).unwrap();
        for _ in 0..5000 {
            q.enqueue(Out::Reply(shared("r")));
        }
        assert!(!q.push_of(4, "d2", Some("|d2")), "a started one stays");
        q.push_of(5, "e", None);
        let len = q.items.len();
        q.visited = 0;
        q.drop_topic(4);
        assert!(q.visited <= len, "{} items visited of {len}", q.visited);
        assert_eq!(q.items.len(), len - 2);
        w.limit = usize::MAX;
        q.write_to(&mut w, &mut |_| {}).unwrap();
        assert_eq!(q.charge(), 0);
        assert_eq!(q.snapshot_charge(), 0);
        assert_eq!(q.unsent_replies(), 0);
        assert!(w.out.starts_with(b"d1|d1r"), "{:?}", &w.out[..8]);
        assert!(w.out.ends_with(b"re"));
    }

    /// A snapshot of a topic with none queued does not scan the queue for
    /// one to supersede.
    #[test]
    fn a_first_snapshot_of_a_topic_does_not_scan() {
        let mut q = OutQueue::default();
        for _ in 0..10_000 {
            q.enqueue(Out::Reply(shared("r")));
        }
        q.push_of(1, "a", None);
        q.push_of(2, "b", None);
        assert_eq!(q.visited, 0);
        assert!(q.push_of(1, "a2", None));
        assert!(q.visited > 0);
    }

    /// Each item is charged its overhead toward the limit, at least what
    /// it holds in memory beside its bytes; the bytes count is left alone.
    #[test]
    fn each_item_is_charged_its_overhead() {
        assert!(std::mem::size_of::<Item>() + 16 <= ITEM_OVERHEAD);
        let mut q = OutQueue::default();
        q.enqueue(Out::Reply(shared("r")));
        q.push_of(1, "ab", Some("|"));
        assert_eq!(q.pending_bytes(), 4);
        assert_eq!(q.charge(), 4 + 3 * ITEM_OVERHEAD);
        assert_eq!(q.snapshot_charge(), 3 + 2 * ITEM_OVERHEAD);
        // Half of the snapshot written: its bytes left, its items still there.
        let mut w = Trickle {
            out: vec![],
            limit: 2,
        };
        q.write_to(&mut w, &mut |_| {}).unwrap();
        assert_eq!(q.charge(), 2 + 2 * ITEM_OVERHEAD);
        assert_eq!(q.snapshot_charge(), 2 + 2 * ITEM_OVERHEAD);
        assert_eq!(q.unsent_replies(), 0);
    }
}
