//! Topics: which names exist, each topic's retained snapshot and subscribers,
//! and the JSON messages clients receive, encoded once as WebSocket frames.
//! One idea per file; everything is used through the re-exports below
//! (`crate::topic::Topics`, `crate::topic::Rules`, ...):
//!
//! - `name.rs`: what a well-formed topic name or `adw_id` is, and
//!   [`TopicError`], why a name is refused.
//! - `rules.rs`: [`Rules`], which names are topics and what data each
//!   accepts; the size bound ([`QUEUE_RESERVE`], [`MIN_QUEUE`]); and
//!   [`Refused`], why a value was not taken in.
//! - `message.rs`: a [`Message`]'s bytes (the frame, the SSE event), the
//!   [`Form`]s a subscriber takes them in, and the one [`Compressor`].
//! - `registry.rs`: one [`Topic`] and [`Topics`], the registry that
//!   subscribes, publishes and fans out.
//! - [`delta`]: the delta formats a subscriber may ask for (`?delta=`)
//!   and the JSON Patch differ.
//! - [`adw`]: the ADW dashboard preset: its topics, defaults and schemas.
//! - [`schema`]: the JSON Schema checks a value passes before it is retained.

pub mod adw;
pub mod delta;
mod message;
mod name;
mod registry;
mod rules;
pub mod schema;

pub use adw::Preset;
pub use message::{Compressor, Deltas, Encoded, Form, Message, default_adw_state};
pub use name::{MAX_NAME_LEN, TopicError, is_adw_id, is_plain_name};
pub use registry::{MuxFan, Published, Subscription, Topic, Topics};
pub use rules::{MIN_QUEUE, QUEUE_RESERVE, Refused, Rules};
