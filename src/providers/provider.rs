//! The trait every provider implements. It lives apart from the list of
//! providers in `mod.rs`, which names each provider's file, so that a
//! provider's file does not name the file that names it.

use std::io;
use std::thread::JoinHandle;

use crate::publisher::Publisher;

/// A thread that publishes into a server, and reports its health in
/// `/healthz` through the publisher's registry.
pub trait Provider: Send {
    /// What it is, for the start line: `poll queue <- http://...`.
    fn describe(&self) -> String;

    /// Starts its thread; it publishes through `publisher` until the
    /// server stops.
    fn start(self: Box<Self>, publisher: Publisher) -> io::Result<JoinHandle<()>>;
}
