//! Nodes joined through Redis (`--redis URL`): two threads beside the loop,
//! so the loop never waits on Redis.
//!
//! - The **writer** takes each publish the loop accepted and runs one Lua
//!   script: bump the topic's seq (`statecast:seq`), keep the snapshot
//!   (`statecast:snapshots`), `PUBLISH` it on `statecast:publish`. Redis
//!   runs scripts one at a time, so the order of seqs is the order of
//!   messages, on every node. The stored publish goes back to the loop
//!   with its seq and is served there at once: a publish answered over
//!   HTTP is already what a new subscriber of that node gets, without
//!   waiting for Redis to echo it. When Redis cannot be reached the
//!   publish goes back to the loop to be served locally, and the topic is
//!   written back once the link returns.
//! - The **subscriber** listens on `statecast:publish` and hands every
//!   message to the loop, its own node's included: a node applies a
//!   snapshot only when its seq is newer than the one it has, so nothing is
//!   delivered twice. After each (re)connect it re-reads every snapshot.
//!
//! Trouble with Redis shows as the provider `redis` in `/healthz`
//! (degraded, with the error) and `/metrics`; both threads retry with a
//! backoff from 100 ms to 5 s. Redis is trusted no more than a producer:
//! an entry or a message that a publish would be refused for is skipped,
//! logged and counted by [`Skip`], and the link goes on.

#[cfg(feature = "redis")]
mod link;

use std::sync::mpsc::{SyncSender, TrySendError};

use crate::publisher::Publisher;
pub use crate::publisher::{Outgoing, Replicated as Incoming, Skip};

/// Starts the link to Redis at `url`: the writer and the subscriber.
/// Values are held to `max_bytes` (`--max-publish-bytes`) both ways.
#[cfg(feature = "redis")]
pub fn start(url: &str, publisher: Publisher, max_bytes: usize) -> std::io::Result<Link> {
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--redis: rediss:// needs TLS, which this build leaves out; build with --features tls",
        ));
    }
    link::start(url, publisher, max_bytes).map(|tx| Link { tx })
}

/// This build has no Redis client.
#[cfg(not(feature = "redis"))]
pub fn start(_url: &str, _publisher: Publisher, _max_bytes: usize) -> std::io::Result<Link> {
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "--redis: this build has no Redis support; build with --features redis",
    ))
}

/// The loop's end of the link.
#[derive(Debug)]
pub struct Link {
    tx: SyncSender<Outgoing>,
}

impl Link {
    /// Hands `out` to the writer; gives it back when the writer is too far
    /// behind to take it.
    pub fn send(&self, out: Outgoing) -> Result<(), Outgoing> {
        self.tx.try_send(out).map_err(|e| match e {
            TrySendError::Full(out) | TrySendError::Disconnected(out) => out,
        })
    }
}
