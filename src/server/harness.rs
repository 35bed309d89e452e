//! The request path and the client-frame decoder without a socket, for the
//! fuzzer and its corpus replay: a connection's bytes, cut as reads would
//! cut them, go through the same request reader, admission, handler and
//! topic table the loop uses, and what is accepted is carried on to the
//! bytes a subscriber would get; a WebSocket client's bytes go through the
//! decoder frame after frame. Each input runs under the default limits and
//! again under small ones it picks, down to the smallest legal values, so
//! a library call that asserts on a limit (a `clamp` whose bounds cross)
//! is in reach.

// Proof: the harness runs only in the fuzzer and its replay test, where a
// panic is the finding being looked for.
#![allow(clippy::panic)]

use std::sync::Arc;

use crate::config::{Config, Secret};
use crate::server::access::Access;
use crate::server::endpoints::{self, Action};
use crate::topic::{Message, Rules, Topics};
use crate::wire::http::{Next, RequestReader, Response};
use crate::wire::json;
use crate::wire::protocol::{Decoder, Incoming, Limits};

/// The publish token a [`Harness`] with tokens expects.
pub const PUBLISH_TOKEN: &str = "publish-token-0123456789";
/// The subscribe token a [`Harness`] with tokens expects.
pub const SUBSCRIBE_TOKEN: &str = "subscribe-token-0123456789";

/// One server's request path, without its loop.
pub struct Harness {
    topics: Topics,
    access: Access,
    max_body: usize,
    config: Config,
    rules: Arc<Rules>,
}

impl Harness {
    /// The ADW preset with its schemas, or any topic with none; with or
    /// without both tokens.
    pub fn new(schemas: bool, tokens: bool) -> Result<Harness, String> {
        let mut config = Config {
            max_publish_bytes: SMALL_BODY,
            ..Config::default()
        };
        if !schemas {
            config.validate = false;
            config.any_topic = true;
        }
        if tokens {
            config.publish_token = Some(Secret::new(PUBLISH_TOKEN));
            config.subscribe_token = Some(Secret::new(SUBSCRIBE_TOKEN));
        }
        let rules = Arc::new(super::rules_for(&config)?);
        Ok(Harness {
            access: Access::from_config(&config)?,
            max_body: config.max_publish_bytes,
            topics: fresh_topics(&rules, &config),
            config,
            rules,
        })
    }

    /// Forgets every publish: the topics as at start, the compiled schemas
    /// kept.
    pub fn reset(&mut self) {
        self.topics = fresh_topics(&self.rules, &self.config);
    }

    /// Sets the body and topic limits the next [`reset`](Self::reset)
    /// starts with.
    fn limit(&mut self, max_body: usize, max_topics: usize) {
        self.max_body = max_body;
        self.config.max_publish_bytes = max_body;
        self.config.max_topics = max_topics;
    }

    /// Serves one connection's `bytes`, `step` bytes per read, until it
    /// would close or becomes a subscription. Returns the status of each
    /// answer in order (101 for an upgrade, 200 for a stream). Panics if
    /// anything accepted would not reach a subscriber as I-JSON on one
    /// line: that is the fuzzer's finding.
    pub fn connection(&mut self, bytes: &[u8], step: usize) -> Vec<u16> {
        let mut statuses = Vec::new();
        let mut reader = RequestReader::default();
        let mut input = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            input.extend_from_slice(piece);
            loop {
                let (used, next) = reader.next(&input);
                input.drain(..used.min(input.len()));
                let (head, route, body) = match next {
                    Next::Partial => break,
                    Next::Continue => continue,
                    Next::Refused(response) => return answered(statuses, &response),
                    Next::Head(head, len) => {
                        let admitted = endpoints::admit(&head, &self.topics, &self.access, false)
                            .and_then(|(route, _)| reader.admit(head, len, route, self.max_body));
                        if let Err(response) = admitted {
                            return answered(statuses, &response);
                        }
                        continue;
                    }
                    Next::Complete(head, route, body) => (head, route, body),
                };
                let reader = endpoints::Reader {
                    grant: None,
                    max_topics: self.config.max_topics_per_connection,
                };
                let action = endpoints::handle(
                    &head,
                    route,
                    &body,
                    &self.topics,
                    &self.access,
                    reader,
                    false,
                );
                let status = match self.carry_out(action) {
                    Ok(status) => status,
                    Err(response) => return answered(statuses, &response),
                };
                statuses.push(status);
                if status == 101 || !head.keep_alive {
                    return statuses;
                }
            }
        }
        statuses
    }

    /// Does what the loop would with an action, as far as bytes for a
    /// subscriber; returns the status answered.
    fn carry_out(&mut self, action: Action) -> Result<u16, Response> {
        match action {
            Action::Respond(response) => {
                if response.close {
                    return Err(response);
                }
                Ok(response.status.0)
            }
            Action::Subscribe { .. } | Action::SubscribeMany { .. } => Ok(101),
            Action::Stream { .. } | Action::StreamMany { .. } => Ok(200),
            Action::Publish { topic, data } => {
                let id = match self.topics.find_or_create(&topic) {
                    Ok(id) => id,
                    Err(_) => return Ok(503),
                };
                self.topics.publish(id, &data, 1);
                // A finished workflow's topic published back to its default
                // with nobody subscribed is forgotten: nothing to send.
                if let Some(id) = self.topics.find(&topic) {
                    let Some(snapshot) = self.topics.get(id).snapshot() else {
                        panic!("{topic}: published, but no snapshot");
                    };
                    must_reach_a_subscriber(snapshot);
                }
                Ok(200)
            }
            Action::Broadcast { type_json, data } => {
                must_reach_a_subscriber(&Message::event(&type_json, &data));
                Ok(200)
            }
            Action::Health { .. } | Action::Metrics => Ok(200),
        }
    }
}

/// The four setups the fuzz target picks from with its first byte: schemas
/// or none, tokens or none.
pub struct Setups(Vec<Harness>);

impl Setups {
    pub fn new() -> Result<Setups, String> {
        let setups = [(true, false), (true, true), (false, false), (false, true)]
            .into_iter()
            .map(|(schemas, tokens)| Harness::new(schemas, tokens))
            .collect::<Result<_, _>>()?;
        Ok(Setups(setups))
    }

    /// One fuzz input under the default limits: the first byte's low two
    /// bits pick the setup, the rest of it the size of each read (1 to 64
    /// bytes); the other bytes are one connection's. Returns the statuses
    /// answered.
    pub fn run(&mut self, data: &[u8]) -> Vec<u16> {
        self.run_limited(data, SMALL_BODY, Config::default().max_topics)
    }

    /// The same input under small limits that its last byte picks: a body
    /// of 1 to 64 bytes (its low six bits), 1 to 4 topics (its top two;
    /// the ADW preset alone has ten). 1 and 1 are the smallest legal
    /// values. Returns the statuses answered.
    pub fn run_small(&mut self, data: &[u8]) -> Vec<u16> {
        let pick = data.last().copied().unwrap_or(0);
        let max_body = usize::from(pick & 63) + 1;
        let max_topics = usize::from(pick >> 6) + 1;
        self.run_limited(data, max_body, max_topics)
    }

    fn run_limited(&mut self, data: &[u8], max_body: usize, max_topics: usize) -> Vec<u16> {
        let Some((&setup, bytes)) = data.split_first() else {
            return Vec::new();
        };
        let step = usize::from(setup >> 2) + 1;
        let Some(harness) = self.0.get_mut(usize::from(setup & 3)) else {
            return Vec::new();
        };
        harness.limit(max_body, max_topics);
        harness.reset();
        harness.connection(bytes, step)
    }
}

/// The publish limit of the default setups: small, so the fuzzer reaches
/// the limit and past it quickly.
const SMALL_BODY: usize = 64 << 10;

/// One client-frames fuzz input: the first byte says whether
/// permessage-deflate was agreed (bit 0) and picks small limits (bits 1
/// and 2: 1 to 4 frames a message; bits 3 to 7: a message of 1 to 63
/// bytes); the other bytes are a client's, decoded frame after frame
/// under the default limits, then again under the small ones. Panics if
/// the decoder takes more bytes than it was given, or hands on a text
/// message past its limit.
pub fn client_frames(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let deflate = mode & 1 == 1;
    let config = Config::default();
    let default = Limits {
        max_message: config.max_client_message,
        max_fragments: config.max_client_fragments,
    };
    let small = Limits {
        max_message: usize::from(mode >> 3) * 2 + 1,
        max_fragments: usize::from((mode >> 1) & 3) + 1,
    };
    for limits in [default, small] {
        decode_frames(bytes, deflate, limits);
    }
}

fn decode_frames(bytes: &[u8], deflate: bool, limits: Limits) {
    let mut buf = bytes.to_vec();
    let mut decoder = Decoder::new(deflate);
    let mut at = 0;
    while let Some(rest) = buf.get_mut(at..).filter(|rest| !rest.is_empty()) {
        let given = rest.len();
        match decoder.decode(rest, limits) {
            Ok((0, _)) | Err(_) => break,
            Ok((n, incoming)) => {
                assert!(n <= given, "took {n} of {given} bytes");
                if let Some(Incoming::Text(text)) = incoming {
                    assert!(
                        text.len() <= limits.max_message,
                        "a text of {} bytes under {limits:?}",
                        text.len()
                    );
                }
                at += n;
            }
        }
    }
}

fn fresh_topics(rules: &Arc<Rules>, config: &Config) -> Topics {
    Topics::new(
        rules.clone(),
        config.preset,
        &config.topics,
        config.max_topics,
        "2026-12-02T00:00:00Z",
    )
}

fn answered(mut statuses: Vec<u16>, response: &Response) -> Vec<u16> {
    statuses.push(response.status.0);
    statuses
}

/// A message as a subscriber gets it parses as I-JSON, and its SSE form is
/// one `data:` line.
fn must_reach_a_subscriber(message: &Message) {
    if let Err(e) = json::parse(message.json()) {
        panic!("a stored message is not I-JSON: {e}");
    }
    let sse = message.sse(Some(1));
    let data_lines = sse
        .split(|&b| b == b'\n' || b == b'\r')
        .filter(|line| line.starts_with(b"data:"))
        .count();
    assert_eq!(data_lines, 1, "{}", String::from_utf8_lossy(&sse));
}
