//! statecast: a WebSocket push server for live dashboards.
//!
//! Clients open one WebSocket per topic and only listen; they get the
//! topic's retained snapshot at once and every change after it. Producers
//! publish over HTTP or, in-process, through a [`Publisher`].
//!
//! Layout:
//!
//! - [`server`]: the one-thread `mio` event loop: accepting, reading,
//!   routing, fan-out, timers, and the one place connections are removed.
//! - [`conn`]: a connection's state and lifecycle.
//! - [`queue`]: the per-connection output queue, with snapshot conflation.
//! - [`protocol`]: RFC 6455 framing, no I/O.
//! - [`http`]: HTTP/1.1 parsing, routing and responses, no I/O.
//! - [`topic`]: topic names, snapshots and message encoding.
//! - [`adw`]: the ADW dashboard preset: its topics, defaults and schemas.
//! - [`schema`]: the JSON Schema checks a publish passes before it is retained.
//! - [`publisher`]: the thread-safe handle producers publish through.
//! - [`config`]: options, defaults and the command line.
//! - [`config_file`]: the TOML file behind `--config` and `--print-config`.
//! - [`demo`]: the `--demo` provider thread.
//! - [`agents`]: the `--agents-dir` provider thread.
//! - [`poll`]: the `--poll` provider threads.
//! - [`exec`]: the `--exec` provider threads.
//! - [`source`]: the fetch / compare / publish / back-off loop providers share.
//!
//! ```no_run
//! use statecast::{Config, Server};
//!
//! let server = Server::bind(Config::default())?;
//! let publisher = server.publisher();
//! std::thread::spawn(move || {
//!     publisher.publish("queue", &serde_json::json!({"phases": [], "total": 0, "paused": false}))
//! });
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod adw;
pub mod agents;
pub mod config;
pub mod config_file;
pub mod conn;
pub mod demo;
pub mod exec;
pub mod http;
pub mod poll;
pub mod protocol;
pub mod publisher;
pub mod queue;
pub mod schema;
pub mod server;
pub mod source;
pub mod topic;

pub use config::Config;
pub use publisher::{PublishError, Publisher};
pub use server::Server;
pub use topic::Preset;
