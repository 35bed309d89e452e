//! What an open connection is subscribed to: one topic on a per-topic
//! route, up to `--max-topics-per-connection` on a multiplexed one, each
//! with where it sits in its topic's subscriber list and the seq of the
//! last snapshot of it queued (what a seq vector and a resume report).

use crate::topic::{Encoded, Form, Subscription};
use crate::wire::{Shared, mux};

/// One topic a connection is subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the topic's subscriber list.
    pub sub: Subscription,
    /// The seq of the newest snapshot (or delta) of this topic queued for
    /// the connection, or that the client said it has (`since`); `None`
    /// before any. Kept on a multiplexed connection (its seq vector) and
    /// for a `?delta=` subscription (a delta goes only to one whose last
    /// seq is its base); a plain per-topic subscription leaves it `None`,
    /// so its delivery costs what it did.
    pub queued: Option<u64>,
}

impl Entry {
    /// What a fanned-out snapshot of its topic is for this subscription:
    /// for a `?delta=` one, the delta when its last seq is the delta's
    /// base and nothing of its topic waits unstarted (`unstarted`, asked
    /// only then: a delta never supersedes a queued one, the newer whole
    /// snapshot does), else the snapshot, and `None` when it has this seq
    /// already; for the others, the snapshot.
    pub fn pick(
        &mut self,
        encoded: &Encoded<'_>,
        unstarted: impl FnOnce() -> bool,
    ) -> Option<Shared> {
        let form = self.sub.form;
        let (Some(_), Some(deltas)) = (self.sub.delta, encoded.deltas) else {
            return Some(encoded.pick(form).clone());
        };
        if self.queued == Some(encoded.seq) {
            return None;
        }
        let last = self.queued.replace(encoded.seq);
        let has_base = last.is_some() && last == deltas.base();
        if has_base
            && !unstarted()
            && let Some(delta) = deltas.delta(form)
        {
            return Some(delta);
        }
        deltas.snapshot(form)
    }
}

/// Every topic an open connection is subscribed to. Few (a dashboard's
/// panels), so a topic is found by a walk, not a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subs {
    /// A per-topic route's one topic, held inline: the common connection
    /// allocates nothing for it.
    One(Entry),
    /// A multiplexed connection's topics: its messages say their topic,
    /// and the set may change.
    Many {
        /// The encoding its messages take, the same for every topic.
        form: Form,
        entries: Vec<Entry>,
    },
}

impl From<Subscription> for Subs {
    /// A per-topic route's one subscription.
    fn from(sub: Subscription) -> Subs {
        Subs::One(Entry { sub, queued: None })
    }
}

impl From<Entry> for Subs {
    /// A per-topic route's one subscription, with the seq it has.
    fn from(entry: Entry) -> Subs {
        Subs::One(entry)
    }
}

impl Subs {
    /// A multiplexed connection's topics, none yet.
    pub fn mux(form: Form) -> Subs {
        Subs::Many {
            form,
            entries: Vec::new(),
        }
    }

    pub fn form(&self) -> Form {
        match self {
            Subs::One(entry) => entry.sub.form,
            Subs::Many { form, .. } => *form,
        }
    }

    pub fn is_mux(&self) -> bool {
        matches!(self, Subs::Many { .. })
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    fn entries(&self) -> &[Entry] {
        match self {
            Subs::One(entry) => std::slice::from_ref(entry),
            Subs::Many { entries, .. } => entries,
        }
    }

    /// The entry for topic `id`, if subscribed.
    pub fn get(&self, topic: usize) -> Option<&Entry> {
        self.entries().iter().find(|e| e.sub.topic == topic)
    }

    pub fn get_mut(&mut self, topic: usize) -> Option<&mut Entry> {
        let entries = match self {
            Subs::One(entry) => std::slice::from_mut(entry),
            Subs::Many { entries, .. } => entries,
        };
        entries.iter_mut().find(|e| e.sub.topic == topic)
    }

    /// Adds a subscription to a multiplexed connection, with the seq
    /// already queued or held; a per-topic one keeps its one topic.
    pub fn push(&mut self, sub: Subscription, queued: Option<u64>) {
        if let Subs::Many { entries, .. } = self {
            entries.push(Entry { sub, queued });
        }
    }

    /// Drops topic `id` from a multiplexed connection; returns its
    /// subscription, to give back.
    pub fn remove(&mut self, topic: usize) -> Option<Subscription> {
        let Subs::Many { entries, .. } = self else {
            return None;
        };
        let at = entries.iter().position(|e| e.sub.topic == topic)?;
        Some(entries.swap_remove(at).sub)
    }

    /// Every subscription, to give back when the connection goes.
    pub fn subscriptions(&self) -> impl Iterator<Item = Subscription> + '_ {
        self.entries().iter().map(|e| e.sub)
    }

    /// Told by the topic registry when a swap-remove moved this
    /// connection's place in topic `id`'s list.
    pub fn moved(&mut self, topic: usize, index: usize) {
        if let Some(entry) = self.get_mut(topic) {
            entry.sub.index = index;
        }
    }

    /// `a:12,b:4`: every topic with a snapshot queued or held, by name,
    /// the `id:` of a multiplexed SSE event.
    pub fn vector<'n>(&self, name: impl Fn(usize) -> &'n str) -> String {
        let mut vector = String::new();
        for entry in self.entries() {
            if let Some(seq) = entry.queued {
                mux::push_vector(&mut vector, name(entry.sub.topic), seq);
            }
        }
        vector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(topic: usize, index: usize) -> Subscription {
        Subscription {
            topic,
            index,
            form: Form::Sse,
            delta: None,
            mux: true,
        }
    }

    /// Topics are found, moved and removed by id; the vector lists those
    /// with a seq, in subscription order; a per-topic connection keeps
    /// its one topic.
    #[test]
    fn entries_by_topic_and_the_vector() {
        let mut subs = Subs::mux(Form::Sse);
        subs.push(sub(3, 0), Some(12));
        subs.push(sub(5, 7), None);
        subs.push(sub(9, 1), Some(4));
        let names = |id: usize| match id {
            3 => "a",
            5 => "b",
            _ => "c",
        };
        assert_eq!(subs.vector(names), "a:12,c:4");
        subs.moved(5, 2);
        assert_eq!(subs.get(5).map(|e| e.sub.index), Some(2));
        assert_eq!(subs.remove(3), Some(sub(3, 0)));
        assert_eq!(subs.remove(3), None);
        assert_eq!(subs.vector(names), "c:4");
        assert_eq!(subs.len(), 2);
        let mut one = Subs::from(sub(4, 0));
        one.push(sub(5, 0), None);
        assert_eq!(one.remove(4), None);
        assert_eq!((one.len(), one.is_mux()), (1, false));
    }
}
