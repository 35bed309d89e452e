//! The trait every provider implements. It lives apart from the list of
//! providers in `mod.rs`, which names each provider's file, so that a
//! provider's file does not name the file that names it.

use std::io;
use std::thread::JoinHandle;

use crate::publisher::Publisher;

/// A thread that publishes into a server, and reports its health in
/// `/healthz` through the publisher's registry. What a server does with
/// one before it starts (checking its topics, warning of two writers to a
/// topic, naming it in the start line) goes through these methods alone,
/// so no server code names a provider: a new one is its file, its lines
/// in `mod.rs` ([`super::configured`]) and its options.
pub trait Provider: Send {
    /// What it is, for the start line: `poll queue <- http://...`.
    fn describe(&self) -> String;

    /// Where it was asked for, for errors and warnings at start: `--demo`,
    /// `--poll`, or a config file's line (`statecast.toml:7: [[poll]]`).
    fn origin(&self) -> String;

    /// Every topic it publishes to: names, and a family of names as its
    /// prefix and `*` (`adw-state/*`). The server checks each against its
    /// topic rules before any provider starts.
    fn topics(&self) -> Vec<String>;

    /// Starts its thread; it publishes through `publisher` until the
    /// server stops.
    fn start(self: Box<Self>, publisher: Publisher) -> io::Result<JoinHandle<()>>;
}
