//! The polled-URL provider (`--poll TOPIC=URL[@INTERVAL]`): a thread per
//! entry GETs a URL with `ureq` and publishes the JSON when it differs from
//! what it last published, so an existing REST backend can feed topics
//! without changing. Failures keep the last snapshot, back off, are logged
//! when the state changes, and show in `/healthz`.
//!
//! ureq tries every address a name resolves to, so `localhost` reaches an
//! IPv4-only backend even where it resolves to `::1` first.

use std::time::Duration;

use crate::config::PollSpec;
use crate::providers::source::Source;
use crate::publisher::Publisher;
use crate::wire::json;

/// Limits for one fetch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From connect to the last byte of the body.
    pub timeout: Duration,
    pub max_bytes: usize,
}

/// An agent for one polled URL: its own connection pool, so a keep-alive
/// connection is reused from one poll to the next.
pub fn agent(limits: Limits) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(limits.timeout))
        // A redirect is a failed poll, not followed: the operator named
        // this URL, and a backend (or whoever answers in its place) must
        // not send the poll, its credentials included, somewhere else.
        .max_redirects(0)
        .user_agent(concat!("statecast/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// GETs the URL and returns its body, which must be a 200 with I-JSON, or
/// the part of it `pointer` names. A redirect is an error, not followed.
pub fn fetch(
    agent: &ureq::Agent,
    url: &str,
    pointer: Option<&str>,
    limits: Limits,
) -> Result<String, String> {
    let status_line = |code: u16| {
        let reason = ureq::http::StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or_default();
        format!("HTTP {code} {reason}").trim_end().to_owned()
    };
    let describe = |e: ureq::Error| match e {
        ureq::Error::StatusCode(code) => status_line(code),
        ureq::Error::Timeout(_) => format!("no complete response within {:?}", limits.timeout),
        ureq::Error::BodyExceedsLimit(_) => {
            format!("response body over the limit of {} bytes", limits.max_bytes)
        }
        // An error may quote the URL; it is shown redacted.
        other => other
            .to_string()
            .replace(url, &crate::config::redacted_url(url)),
    };
    let mut response = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(describe)?;
    if response.status().is_redirection() {
        let location = response
            .headers()
            .get("location")
            .map(|l| shown_location(&String::from_utf8_lossy(l.as_bytes())));
        let status = status_line(response.status().as_u16());
        return Err(match location {
            Some(location) => format!("{status}: redirects are not followed (to {location})"),
            None => format!("{status}: redirects are not followed"),
        });
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(limits.max_bytes as u64)
        .read_to_vec()
        .map_err(describe)?;
    let (value, text) = json::canonical(&body).map_err(|e| e.to_string())?;
    match pointer {
        None => Ok(text),
        Some(pointer) => value
            .pointer(pointer)
            .map(json::compact)
            .ok_or_else(|| format!("the answer has nothing at #{pointer}")),
    }
}

/// A `Location` as `/healthz` and the log may show it: redacted as any
/// URL, and a relative one without its query, where a secret may be too.
fn shown_location(location: &str) -> String {
    if location.contains("://") {
        return crate::config::redacted_url(location);
    }
    match location.split_once(['?', '#']) {
        Some((path, _)) => format!("{path}?***"),
        None => location.to_owned(),
    }
}

/// Starts one polling thread. It stops when the server does.
pub fn spawn(
    spec: PollSpec,
    limits: Limits,
    publisher: Publisher,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let source = Source {
        name: format!("poll {}", spec.topic),
        what: crate::config::redacted_url(&spec.url),
        topic: spec.topic.clone(),
        interval: spec.interval,
    };
    let agent = agent(limits);
    source.spawn(publisher, move || {
        fetch(&agent, &spec.url, spec.pointer.as_deref(), limits)
    })
}

/// One `--poll` entry as a provider.
pub struct Poller {
    spec: PollSpec,
    limits: Limits,
}

impl Poller {
    /// Every `--poll` (and `[[poll]]`), with `--poll-timeout`.
    pub fn configured(config: &crate::config::Config) -> Vec<Box<dyn super::Provider>> {
        let limits = Limits {
            timeout: config.poll_timeout,
            max_bytes: config.max_publish_bytes,
        };
        config
            .polls
            .iter()
            .map(|spec| {
                Box::new(Poller {
                    spec: spec.clone(),
                    limits,
                }) as Box<dyn super::Provider>
            })
            .collect()
    }
}

impl super::Provider for Poller {
    fn describe(&self) -> String {
        let url = crate::config::redacted_url(&self.spec.url);
        format!("poll {} <- {url}", self.spec.topic)
    }

    fn origin(&self) -> String {
        self.spec.origin.clone()
    }

    fn topics(&self) -> Vec<String> {
        vec![self.spec.topic.clone()]
    }

    fn start(
        self: Box<Self>,
        publisher: Publisher,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        spawn(self.spec, self.limits, publisher)
    }
}
