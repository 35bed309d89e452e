//! What the loop remembers about `--redis`: the link to the writer thread,
//! the HTTP publishes waiting for Redis to order them, and the topics
//! served only here while Redis was unreachable. The publish path that
//! uses it is `publishing.rs`.

use std::collections::{HashMap, HashSet};

use super::endpoints::Answer;
use crate::cluster::{Link, Outgoing};

/// The link and what the loop remembers about it.
#[derive(Debug)]
pub(super) struct Cluster {
    /// The writer thread's end of the link.
    link: Link,
    /// Topics served locally while Redis was unreachable: written back
    /// when it returns.
    unreplicated: HashSet<String>,
    /// HTTP publishes waiting for their seq, by request number: the
    /// connection (key and id) and how to answer.
    awaiting: HashMap<u64, (usize, u64, Answer)>,
    /// The request number the next waiting publish gets.
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

    /// Hands `out` to the writer; gives it back when the writer is too far
    /// behind to take it.
    pub(super) fn send(&self, out: Outgoing) -> Result<(), Outgoing> {
        self.link.send(out)
    }

    /// Remembers an HTTP publish of connection `key` (with `id`) until
    /// Redis has ordered it; returns its request number.
    pub(super) fn wait(&mut self, key: usize, id: u64, answer: Answer) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        self.awaiting.insert(req, (key, id, answer));
        req
    }

    /// The connection (key and id) request `req` came from, and how to
    /// answer it, once.
    pub(super) fn answered(&mut self, req: u64) -> Option<(usize, u64, Answer)> {
        self.awaiting.remove(&req)
    }

    /// `topic` was served here without Redis: written back when it returns.
    pub(super) fn unreplicated(&mut self, topic: String) {
        self.unreplicated.insert(topic);
    }

    /// `topic` came back through Redis: nothing to write back.
    #[cfg(feature = "redis")]
    pub(super) fn replicated(&mut self, topic: &str) {
        self.unreplicated.remove(topic);
    }

    /// The topics to write back now that Redis is reachable again.
    #[cfg(feature = "redis")]
    pub(super) fn take_unreplicated(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.unreplicated)
    }
}
