//! statecast: a WebSocket push server for live dashboards.
//!
//! Clients open a WebSocket (or an SSE stream) per topic, or one for many
//! topics, and listen; they get each topic's retained snapshot at once and
//! every change after it. Producers
//! publish over HTTP or, in-process, through a [`Publisher`].
//!
//! Layout:
//!
//! - [`server`]: the one-thread `mio` event loop and what it owns, in
//!   private files, each concern its own type: `mod.rs` (the loop's turn,
//!   timers, shutdown) and `requests` (reading, and what a request leads
//!   to), `conns` (the connection registry: every byte queued, a
//!   snapshot fanned out to subscribers, the output policy, where a
//!   connection is closed and removed), `publishing` (where a publish
//!   goes: the channel, Redis under `--redis`, the store, the fan-out),
//!   `cluster` (what the loop remembers of the link to Redis), `accept`
//!   (the connection limits and the accept rate), `drain` (when each
//!   subscriber is closed on SIGTERM), `conn` (a connection's state, its lifecycle
//!   enum and close cause), `subs` (the topics an open connection is
//!   subscribed to), `multiplex` (one connection, many topics: opening
//!   `/api/v1/ws` and `/api/v1/sse`, and the subscribe commands), `queue`
//!   (the per-connection output queue, with snapshot conflation per
//!   topic), `sock` (`send`/`sendmsg` on a socket),
//!   `tls` (`--tls-cert`: the certificate pair and its reloads, and each
//!   connection's rustls session, which its reads and writes go through),
//!   `endpoints` (what each HTTP request asks the loop to do), `assets`
//!   (the page and the JavaScript client, whose classic script is made
//!   from its module source at compile time), `access`
//!   (hosts, origins and tokens), `stats` and
//!   `metrics` (counters, the stats log line, `/metrics`); and, public,
//!   [`server::jwt`] (signed tokens: the verifier, what a token grants,
//!   and `statecast token`'s minting).
//! - [`wire`]: the wire formats, without I/O.
//!   - [`wire::http`]: HTTP/1.1 requests read incrementally, the endpoint
//!     table the router reads, and responses.
//!   - [`wire::json`]: published JSON, taken in as I-JSON and written back compact.
//!   - [`wire::protocol`]: RFC 6455 framing.
//!   - [`wire::deflate`]: permessage-deflate (RFC 7692).
//!   - [`wire::mux`]: the multiplexed protocol's parameters, seq vector,
//!     commands and control messages.
//! - [`topic`]: the topics, one idea per private file: `name` (what a
//!   topic name is), `rules` (which names are topics, what data each
//!   accepts, the size bound), `message` (a message's bytes, encoded once,
//!   and the compressor), `registry` (each topic's snapshot and
//!   subscribers, what it keeps for `?delta=` subscribers, and the
//!   registry of them all).
//!   - [`topic::delta`]: the `?delta=` formats and the JSON Patch differ.
//!   - [`topic::adw`]: the ADW dashboard preset: its topics, defaults and schemas.
//!   - [`topic::schema`]: the JSON Schema checks a value passes before it is retained.
//! - [`publisher`]: the thread-safe handle producers publish through.
//! - [`cluster`]: nodes joined through Redis (`--redis`): the writer and
//!   subscriber threads beside the loop.
//! - [`providers`]: the threads that publish, each a type implementing
//!   [`providers::Provider`] (which states the topics it publishes to,
//!   checked by [`Server::start_providers`] for every provider):
//!   `--demo`, `--agents-dir`, `--poll`, `--exec`, and the loop the last
//!   two share; [`providers::configured`] lists them, a line each.
//! - [`config`]: every option declared once, in the `options!` list of
//!   [`config::options`], which writes [`Config`], its defaults and the
//!   option table; [`config::kinds`], how each kind of value is read and
//!   shown; the command line; [`config::file`], the TOML file behind
//!   `--config` and `--print-config`.
//!
//! Where a common change goes, by file (docs/design.md's "Where a change
//! goes" says what goes in each): an option, `config/options.rs`, the code that uses
//! it and `docs/options.md` (plus `config/kinds.rs` and `config/args.rs`'s
//! test sample for a new value syntax); an endpoint, `wire/http.rs`,
//! `server/endpoints.rs`, the README's table and `docs/options.md` (plus
//! `server/access.rs` for a new kind of access, `server/requests.rs` and
//! `server/harness.rs` for a new `Action`); a provider, its file in
//! `providers/`, `providers/mod.rs`, its options and `tests/providers.rs`;
//! a close cause, `server/conn.rs`, where it is raised (`conn.rs`,
//! `conns.rs` or `server/mod.rs`), `wire/protocol.rs` for a new code,
//! `server/stats.rs`'s test, `docs/behaviour.md` and `docs/protocol.md`;
//! the slow-consumer policy, `server/conns.rs` (`server/queue.rs` for what
//! a queued snapshot gives way to), and for a new close code the files
//! docs/design.md names.
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
