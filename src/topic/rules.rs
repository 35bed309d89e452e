//! [`Rules`]: which names are topics and what data each accepts, shared
//! with every producer; the size bound a value must keep to reach a
//! subscriber ([`QUEUE_RESERVE`], [`MIN_QUEUE`]); and [`Refused`], why a
//! value was not taken in.

use std::collections::HashSet;
use std::fmt;

use super::adw::{self, ADW_STATE_PREFIX, Preset};
use super::name::{TopicError, is_adw_id, is_plain_name};
use super::schema::{SchemaError, Validator};
use crate::wire::{json, mux};

/// Which names are topics, and what data each accepts. Shared with every
/// `Publisher` so a bad name or a value the schema refuses is refused in the
/// producer's thread, not logged later by the loop.
#[derive(Debug)]
pub struct Rules {
    preset: Preset,
    extra: HashSet<String>,
    any_topic: bool,
    validator: Validator,
    /// The longest value (compact JSON text) a subscriber's queue can take
    /// beside its envelope and a response head; see [`QUEUE_RESERVE`].
    max_data: usize,
}

/// What a subscriber's queue must hold besides a published value, at
/// most: a response head (a 101, an SSE or a `/api/v1/state` head, whose
/// echoed `Origin` is bounded by the request head's limit) and the
/// message's envelope (type, `adw_id`, seq, frame header, SSE field names).
pub const QUEUE_RESERVE: usize = crate::wire::http::MAX_HEAD + 1024;

/// The smallest `--max-queue-bytes`: room for the reserve and a value of
/// the same size again (the ADW defaults take well under 1 KiB).
pub const MIN_QUEUE: usize = 2 * QUEUE_RESERVE;

impl Rules {
    pub fn new(preset: Preset, extra: &[String], any_topic: bool, validator: Validator) -> Self {
        Rules {
            preset,
            extra: extra.iter().cloned().collect(),
            any_topic,
            validator,
            max_data: usize::MAX,
        }
    }

    /// Refuses values that would not fit a subscriber's queue of
    /// `max_queue` bytes: stored, they could never be delivered.
    pub fn with_max_queue(mut self, max_queue: usize) -> Self {
        self.max_data = max_queue.saturating_sub(QUEUE_RESERVE);
        self
    }

    /// Whether a message carrying `len` bytes of values can be delivered.
    pub fn check_size(&self, len: usize) -> Result<(), Refused> {
        if len <= self.max_data {
            return Ok(());
        }
        Err(Refused::TooLarge(format!(
            "a value of {len} bytes would not fit a subscriber's queue: at most {} \
             with --max-queue-bytes {} (it also holds a response head and the envelope)",
            self.max_data,
            self.max_data.saturating_add(QUEUE_RESERVE)
        )))
    }

    /// Whether values published to `topic` are checked against a schema.
    pub fn validates(&self, topic: &str) -> bool {
        self.validator.applies(topic)
    }

    /// Checks `data` against `topic`'s schema, if it has one.
    pub fn check_data(&self, topic: &str, data: &serde_json::Value) -> Result<(), SchemaError> {
        self.validator.check(topic, data)
    }

    /// Takes in an event, `{"type":..,"data":..}`, from HTTP or from
    /// another node: I-JSON, a non-empty string `type`, a `data` (a message
    /// of a known type without it breaks its panel, CONTRACT.md), and the
    /// schema of a preset type. Returns the type as a JSON string and the
    /// data, both compact text written here.
    pub fn take_event(&self, bytes: &[u8]) -> Result<(String, String), Refused> {
        let invalid = |why: &str| Refused::Invalid(why.to_owned());
        let event = match json::parse(bytes) {
            Ok(serde_json::Value::Object(event)) => event,
            Ok(_) => {
                return Err(invalid(
                    "an event is a JSON object with \"type\" and \"data\"",
                ));
            }
            Err(e) => return Err(Refused::Invalid(e.to_string())),
        };
        let kind = match event.get("type") {
            Some(serde_json::Value::String(kind)) if !kind.is_empty() => kind,
            _ => return Err(invalid("an event needs a non-empty string \"type\"")),
        };
        if kind.starts_with(mux::RESERVED) {
            return Err(Refused::Invalid(format!(
                "event types starting with {:?} are the server's own",
                mux::RESERVED
            )));
        }
        // A client takes an SSE event of this type as the server ending
        // the stream, and stops for good.
        if kind == mux::CLOSE_EVENT {
            return Err(Refused::Invalid(format!(
                "event type {:?} is the server's own",
                mux::CLOSE_EVENT
            )));
        }
        let Some(data) = event.get("data") else {
            return Err(invalid("an event needs a \"data\" field"));
        };
        self.check_event(kind, data)
            .map_err(|error| Refused::Schema {
                name: kind.clone(),
                error,
            })?;
        let type_json = json::compact(&serde_json::Value::from(kind.as_str()));
        let data = json::compact(data);
        self.check_size(type_json.len() + data.len())?;
        Ok((type_json, data))
    }

    /// Checks an event's data when its type is a preset topic's message type.
    pub fn check_event(
        &self,
        message_type: &str,
        data: &serde_json::Value,
    ) -> Result<(), SchemaError> {
        self.validator.check_event(message_type, data)
    }

    /// Checks that `name` is a topic this server serves: a malformed name
    /// is `Invalid`, a well-formed one the server does not serve `Unknown`.
    pub fn check(&self, name: &str) -> Result<(), TopicError> {
        let adw = self.preset == Preset::Adw;
        let (well_formed, served) = match name.strip_prefix(ADW_STATE_PREFIX) {
            Some(id) if adw => (is_adw_id(id), true),
            _ => {
                let plain = is_plain_name(name);
                let served = (adw && adw::topic(name).is_some())
                    || self.extra.contains(name)
                    || self.any_topic;
                (plain, served)
            }
        };
        match (well_formed, served) {
            (false, _) => Err(TopicError::Invalid(name.to_owned())),
            (true, false) => Err(TopicError::Unknown(name.to_owned())),
            (true, true) => Ok(()),
        }
    }

    /// Whether every name `pattern` stands for is served: a name, or a
    /// family of names as its prefix and `*` (`adw-state/*`, served with
    /// the ADW preset).
    pub fn check_pattern(&self, pattern: &str) -> Result<(), TopicError> {
        match pattern.strip_suffix('*') {
            Some(ADW_STATE_PREFIX) if self.preset == Preset::Adw => Ok(()),
            Some(_) => Err(TopicError::Unknown(pattern.to_owned())),
            None => self.check(pattern),
        }
    }
}

/// Why a value was not taken in.
#[derive(Debug)]
pub enum Refused {
    /// Not I-JSON, or not the shape it must have (HTTP answers 400).
    Invalid(String),
    /// The schema of `name` refuses it (HTTP answers 422).
    Schema { name: String, error: SchemaError },
    /// Too large for a subscriber's queue (HTTP answers 413).
    TooLarge(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Invalid(why) | Refused::TooLarge(why) => f.write_str(why),
            Refused::Schema { name, error } => write!(f, "{name:?} refused by its schema: {error}"),
        }
    }
}
