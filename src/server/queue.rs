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
    Pong,
    /// Anything else (events, close frames, HTTP responses): never dropped.
    Other,
}

/// Something to queue for a connection, with the rule that applies to it.
#[derive(Debug, Clone)]
pub enum Out {
    /// Bytes that must all go out, in order.
    Bytes(Shared),
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
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether a snapshot (or delta) of `topic` (as in [`Out::Mux`];
    /// `None` on a per-topic route) waits that has not started going out,
    /// which a newer one would supersede.
    pub fn has_unstarted_snapshot(&self, topic: Option<usize>) -> bool {
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

    /// Queues `out` by its rule; returns whether something older was
    /// superseded.
    pub fn enqueue(&mut self, out: Out) -> bool {
        match out {
            Out::Bytes(bytes) => {
                self.push(bytes);
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
                    self.pending += tail.len();
                    self.items.push_back(Item {
                        bytes: tail,
                        kind: Kind::Tail,
                        published: None,
                    });
                }
                superseded
            }
        }
    }

    /// Queues a pong. Up to `keep` wait to go out, each answering its ping;
    /// past that a newer pong replaces the newest unsent one, so a ping
    /// flood queues a bounded few. Returns whether one was replaced.
    pub fn push_pong(&mut self, bytes: Shared, keep: usize) -> bool {
        let first_unstarted = usize::from(self.head_written > 0);
        let mut unsent = self
            .items
            .iter_mut()
            .skip(first_unstarted)
            .filter(|item| item.kind == Kind::Pong);
        if let Some(newest) = unsent.by_ref().nth(keep.saturating_sub(1)) {
            let newest = unsent.last().unwrap_or(newest);
            self.pending = self.pending - newest.bytes.len() + bytes.len();
            newest.bytes = bytes;
            return true;
        }
        self.pending += bytes.len();
        self.items.push_back(Item {
            bytes,
            kind: Kind::Pong,
            published: None,
        });
        false
    }

    /// Queues bytes that must all go out, in order.
    fn push(&mut self, bytes: Shared) {
        self.pending += bytes.len();
        self.items.push_back(Item {
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
        let superseded = self
            .items
            .iter()
            .skip(first_unstarted)
            .rposition(|item| item.kind == kind)
            .map(|i| i + first_unstarted);
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
        self.pending += bytes.len();
        self.items.push_back(Item {
            bytes,
            kind,
            published,
        });
        superseded.is_some()
    }

    /// Removes the unstarted snapshot at `i`, and the tail that follows it.
    fn remove_snapshot(&mut self, i: usize) {
        if let Some(old) = self.items.remove(i) {
            self.pending -= old.bytes.len();
        }
        if self
            .items
            .get(i)
            .is_some_and(|next| next.kind == Kind::Tail)
            && let Some(tail) = self.items.remove(i)
        {
            self.pending -= tail.bytes.len();
        }
    }

    /// Drops every unstarted snapshot of `topic`: the client unsubscribed
    /// from it, and nothing of it may follow the answer that says so.
    pub fn drop_topic(&mut self, topic: usize) {
        let kind = Kind::Snapshot(Some(topic));
        let first_unstarted = usize::from(self.head_written > 0);
        while let Some(i) = self
            .items
            .iter()
            .skip(first_unstarted)
            .position(|item| item.kind == kind)
        {
            self.remove_snapshot(i + first_unstarted);
        }
    }

    /// Drops everything that has not started going out, keeping a frame that
    /// is half written so the stream stays well-formed for a close frame.
    pub fn drop_unstarted(&mut self) {
        let keep = usize::from(self.head_written > 0);
        for item in self.items.drain(keep..) {
            self.pending -= item.bytes.len();
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
            Out::Bytes(bytes) => (bytes, None),
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
        self.pending -= written;
        while written > 0 {
            // The writer took no more than was offered, which is queued.
            let Some(front) = self.items.front() else {
                return;
            };
            let left = front.bytes.len() - self.head_written;
            if written >= left {
                written -= left;
                self.head_written = 0;
                if let Some(published) = self.items.pop_front().and_then(|i| i.published) {
                    done(published);
                }
            } else {
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
            assert!(!q.push_pong(shared(&format!("p{i:02}")), 16));
        }
        // A flood only replaces the newest unsent one.
        for i in 16..1000 {
            assert!(q.push_pong(shared(&format!("p{i:03}")), 16));
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
}
