//! The request path without a socket, for the fuzzer and its corpus
//! replay: a connection's bytes, cut as reads would cut them, go through
//! the same request reader, admission, handler and topic table the loop
//! uses, and what is accepted is carried on to the bytes a subscriber
//! would get.

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
            // Small, so the fuzzer reaches the limit and past it quickly.
            max_publish_bytes: 64 << 10,
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
                let action =
                    endpoints::handle(&head, route, &body, &self.topics, &self.access, false);
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
            Action::Subscribe { .. } => Ok(101),
            Action::Stream { .. } => Ok(200),
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

    /// One fuzz input: the first byte's low two bits pick the setup, the
    /// rest of it the size of each read (1 to 64 bytes); the other bytes
    /// are one connection's. Returns the statuses answered.
    pub fn run(&mut self, data: &[u8]) -> Vec<u16> {
        let Some((&setup, bytes)) = data.split_first() else {
            return Vec::new();
        };
        let step = usize::from(setup >> 2) + 1;
        let Some(harness) = self.0.get_mut(usize::from(setup & 3)) else {
            return Vec::new();
        };
        harness.reset();
        harness.connection(bytes, step)
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
