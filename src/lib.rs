//! statecast: a WebSocket push server for live dashboards.
//!
//! Clients open one WebSocket per topic and only listen; they get the
//! topic's retained snapshot at once and every change after it. Producers
//! publish over HTTP or, in-process, through a [`Publisher`].
//!
//! Layout:
//!
//! - [`server`]: the one-thread `mio` event loop and what it owns, in
//!   private files: `fanout`, `closing` and `accept` (where a publish goes,
//!   where a connection ends, the connection limits), `conn` (a
//!   connection's state, its lifecycle enum and close cause), `conns` (the
//!   connection registry and its output policy, through which every byte is
//!   queued), `queue` (the per-connection output queue, with snapshot
//!   conflation), `sock` (`send`/`sendmsg` on a socket), `cluster` (the
//!   loop's side of `--redis`), `endpoints`
//!   (what each HTTP request asks the loop to do), `access` (hosts,
//!   origins and tokens), `stats` and `metrics` (counters, the stats log
//!   line, `/metrics`).
//! - [`wire`]: the wire formats, without I/O.
//!   - [`wire::http`]: HTTP/1.1 requests read incrementally, routing and responses.
//!   - [`wire::json`]: published JSON, taken in as I-JSON and written back compact.
//!   - [`wire::protocol`]: RFC 6455 framing.
//!   - [`wire::deflate`]: permessage-deflate (RFC 7692).
//! - [`topic`]: the topic registry: names, retained snapshots, subscribers,
//!   and messages encoded once.
//!   - [`topic::adw`]: the ADW dashboard preset: its topics, defaults and schemas.
//!   - [`topic::schema`]: the JSON Schema checks a value passes before it is retained.
//! - [`publisher`]: the thread-safe handle producers publish through.
//! - [`cluster`]: nodes joined through Redis (`--redis`): the writer and
//!   subscriber threads beside the loop.
//! - [`providers`]: the threads that publish, each a type implementing
//!   [`providers::Provider`]: `--demo`, `--agents-dir`, `--poll`, `--exec`,
//!   and the loop the last two share.
//! - [`config`]: options, defaults and the command line; [`config::file`]
//!   is the TOML file behind `--config` and `--print-config`, and
//!   [`config::help`] the `--help` text written from the option table.
//!
//! ```no_run
//! use statecast::{Config, Server};
//!
//! let config = Config::default();
//! // The providers the configuration asks for (`--poll`, `--exec`, ...).
//! let providers = statecast::providers::configured(&config);
//! let server = Server::bind(config)?;
//! server.start_providers(providers)?;
//! let publisher = server.publisher();
//! std::thread::spawn(move || {
//!     publisher.publish("queue", &serde_json::json!({"phases": [], "total": 0, "paused": false}))
//! });
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing
    )
)]

pub mod cluster;
pub mod config;
pub mod providers;
pub mod publisher;
pub mod server;
pub mod topic;
pub mod wire;

pub use config::Config;
pub use publisher::{PublishError, Publisher};
pub use server::Server;
pub use topic::Preset;
