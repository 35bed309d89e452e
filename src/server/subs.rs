//! What an open connection is subscribed to: one topic on a per-topic
//! route, up to `--max-topics-per-connection` on a multiplexed one, each
//! with where it sits in its topic's subscriber list and the seq of the
//! last snapshot of it queued (what a seq vector and a resume report).

use crate::topic::{Form, Subscription};
use crate::wire::mux;

/// One topic a connection is subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the topic's subscriber list.
    pub sub: Subscription,
    /// The seq of the newest snapshot of this topic queued for the
    /// connection, or that the client said it has (`since`); `None`
    /// before any.
    pub queued: Option<u64>,
}

/// Every topic an open connection is subscribed to. Few (a dashboard's
/// panels), so a topic is found by a walk, not a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subs {
    /// The encoding its messages take, the same for every topic.
    form: Form,
    /// On a multiplexed route: its messages say their topic, and the set
    /// of topics may change.
    mux: bool,
    entries: Vec<Entry>,
}

impl From<Subscription> for Subs {
    /// A per-topic route's one subscription.
    fn from(sub: Subscription) -> Subs {
        Subs {
            form: sub.form,
            mux: false,
            entries: vec![Entry { sub, queued: None }],
        }
    }
}

impl Subs {
    /// A multiplexed connection's topics, none yet.
    pub fn mux(form: Form) -> Subs {
        Subs {
            form,
            mux: true,
            entries: Vec::new(),
        }
    }

    pub fn form(&self) -> Form {
        self.form
    }

    pub fn is_mux(&self) -> bool {
        self.mux
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry for topic `id`, if subscribed.
    pub fn get(&self, topic: usize) -> Option<&Entry> {
        self.entries.iter().find(|e| e.sub.topic == topic)
    }

    pub fn get_mut(&mut self, topic: usize) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.sub.topic == topic)
    }

    /// Adds a subscription, with the seq already queued or held.
    pub fn push(&mut self, sub: Subscription, queued: Option<u64>) {
        self.entries.push(Entry { sub, queued });
    }

    /// Drops topic `id`; returns its subscription, to give back.
    pub fn remove(&mut self, topic: usize) -> Option<Subscription> {
        let at = self.entries.iter().position(|e| e.sub.topic == topic)?;
        Some(self.entries.swap_remove(at).sub)
    }

    /// Every subscription, to give back when the connection goes.
    pub fn subscriptions(&self) -> impl Iterator<Item = Subscription> + '_ {
        self.entries.iter().map(|e| e.sub)
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
        for entry in &self.entries {
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
            mux: true,
        }
    }

    /// Topics are found, moved and removed by id; the vector lists those
    /// with a seq, in subscription order.
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
    }
}
