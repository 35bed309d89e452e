//! The HTTP endpoints: subscribe, publish, broadcast, state and health. Each
//! looks at one request and at the topics, checks everything, and returns
//! what the loop should do. None touches a connection, a socket or the
//! topic table, so a refused request changes nothing.

use log::debug;
use serde_json::value::RawValue;

use crate::publisher::Registry;
use crate::server::access::Access;
use crate::server::stats::Stats;
use crate::topic::schema::SchemaError;
use crate::topic::{self, Published, TopicError, Topics, adw};
use crate::wire::http::{self, Head, Response, Route};

/// What a request asks the loop to do.
#[derive(Debug)]
pub enum Action {
    /// Answer with this response.
    Respond(Response),
    /// Upgrade the connection with this `Sec-WebSocket-Accept` and subscribe
    /// it to `topic`. `since` is the `seq` the client already has
    /// (`?since=`): if the topic is still there, the snapshot is not sent.
    Subscribe {
        topic: String,
        accept: String,
        since: Option<u64>,
    },
    /// Answer with an event stream and subscribe the connection to `topic`.
    /// `since` is the client's `Last-Event-ID` (or `?since=`): no resend
    /// when the topic is still there.
    Stream { topic: String, since: Option<u64> },
    /// Store `data` (checked JSON) as `topic`'s snapshot, then answer with
    /// [`published`].
    Publish { topic: String, data: String },
    /// Send an event to every open WebSocket, then answer with
    /// [`broadcasted`].
    Broadcast { type_json: String, data: String },
    /// Answer with [`health`].
    Health,
    /// Answer with the Prometheus metrics.
    Metrics,
}

/// How the answer ends: whether the connection closes after it, and whether
/// the request was a HEAD.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub close: bool,
    pub head_only: bool,
}

/// Routes one complete request, after the access checks its route needs.
pub fn handle(
    head: &Head,
    body: &[u8],
    topics: &Topics,
    access: &Access,
    shutting_down: bool,
    reserve: bool,
) -> Action {
    let answer = Answer {
        close: !head.keep_alive || shutting_down,
        head_only: head.method == "HEAD",
    };
    let close = answer.close;
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
    // code to any HTTP/1.1 request message that lacks a Host header field."
    if head.minor >= 1 && !head.host {
        return Action::Respond(http::error(
            http::BAD_REQUEST,
            "an HTTP/1.1 request needs a Host header",
            "",
            true,
        ));
    }
    let route = http::route(&head.method, &head.path);
    // Past --max-connections only /healthz is answered, so an operator can
    // still see why.
    if reserve && route != Route::Health {
        return Action::Respond(http::error(
            http::UNAVAILABLE,
            "at --max-connections; retry later",
            "Retry-After: 1\r\n",
            true,
        ));
    }
    let subscribing = matches!(route, Route::Subscribe(_) | Route::Stream(_));
    let publishing = matches!(route, Route::Publish(_) | Route::Broadcast);
    let checked =
        access
            .check_origin(head, subscribing)
            .and_then(|()| match (subscribing, publishing) {
                (true, _) => access.check_subscribe(head),
                (_, true) => access.check_publish(head),
                _ => Ok(()),
            });
    if let Err(refused) = checked {
        return Action::Respond(refused);
    }
    match route {
        Route::Subscribe(topic) => subscribe(head, topic, topics, shutting_down),
        Route::Stream(topic) => stream(head, topic, topics, shutting_down),
        Route::Publish(topic) => publish(topic, body, topics, close),
        Route::Broadcast => broadcast(body, topics, close),
        Route::State(topic) => Action::Respond(state(&topic, topics, answer)),
        Route::Health => Action::Health,
        Route::Metrics => Action::Metrics,
        Route::Page => Action::Respond(asset(PAGE, "text/html; charset=utf-8", answer)),
        Route::Script => Action::Respond(asset(SCRIPT, "text/javascript; charset=utf-8", answer)),
        Route::WrongMethod(allow) => Action::Respond(http::error(
            http::METHOD_NOT_ALLOWED,
            &format!("method {} not allowed here", head.method),
            &format!("Allow: {allow}\r\n"),
            close,
        )),
        Route::NotFound => Action::Respond(http::error(
            http::NOT_FOUND,
            &format!("no such endpoint {}", head.path),
            "",
            close,
        )),
    }
}

/// Every refusal comes before the 101: a client is never upgraded only to
/// be closed.
fn subscribe(head: &Head, topic: String, topics: &Topics, shutting_down: bool) -> Action {
    if let Err(e) = topics.check(&topic) {
        return Action::Respond(refused_topic(&e, true));
    }
    let accept = match http::check_upgrade(head) {
        Ok(accept) => accept,
        Err(response) => return Action::Respond(response),
    };
    if shutting_down {
        return Action::Respond(http::error(http::UNAVAILABLE, "shutting down", "", true));
    }
    let since = head.query_param("since").and_then(|s| s.parse().ok());
    Action::Subscribe {
        topic,
        accept,
        since,
    }
}

/// The live page at `/`: the ADW panels over WebSockets, compiled into the
/// binary, nothing from a CDN.
const PAGE: &str = include_str!("web/index.html");

/// `/statecast.js`: the client the page uses, for anyone's dashboard.
const SCRIPT: &str = include_str!("web/statecast.js");

fn asset(body: &str, content_type: &str, answer: Answer) -> Response {
    http::response(
        http::OK,
        content_type,
        "Cache-Control: no-cache\r\n",
        body.as_bytes(),
        answer.close,
        answer.head_only,
    )
}

/// An SSE subscription: the same checks as a WebSocket's, without the
/// upgrade.
fn stream(head: &Head, topic: String, topics: &Topics, shutting_down: bool) -> Action {
    if let Err(e) = topics.check(&topic) {
        return Action::Respond(refused_topic(&e, true));
    }
    if shutting_down {
        return Action::Respond(http::error(http::UNAVAILABLE, "shutting down", "", true));
    }
    let since = head
        .last_event_id
        .as_deref()
        .or(head.query_param("since"))
        .and_then(|s| s.trim().parse().ok());
    Action::Stream { topic, since }
}

/// Checks everything before anything is touched: the name, the JSON, and
/// the topic's schema.
fn publish(topic: String, body: &[u8], topics: &Topics, close: bool) -> Action {
    if let Err(e) = topics.check(&topic) {
        return Action::Respond(refused_topic(&e, close));
    }
    let invalid = |e: serde_json::Error| {
        let why = format!("invalid JSON: {e}");
        Action::Respond(http::error(http::BAD_REQUEST, &why, "", close))
    };
    // Parsed whole, once, only for topics with a schema: the others keep
    // the cheaper `RawValue` check.
    let rules = topics.rules();
    let data = if rules.validates(&topic) {
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(e) => return invalid(e),
        };
        if let Err(e) = rules.check_data(&topic, &value) {
            return Action::Respond(refused_by_schema(&topic, &e, close));
        }
        // One JSON value with only JSON whitespace around it, which is
        // what `RawValue` would have kept.
        let text = std::str::from_utf8(body).expect("parsed as JSON");
        text.trim_matches([' ', '\t', '\n', '\r']).to_owned()
    } else {
        match serde_json::from_slice::<&RawValue>(body) {
            Ok(raw) => raw.get().to_owned(),
            Err(e) => return invalid(e),
        }
    };
    Action::Publish { data, topic }
}

/// The reply to a publish the loop stored.
pub fn published(topic: &str, published: Published, close: bool) -> Response {
    let Published { seq, subscribers } = published;
    let reply = format!(r#"{{"topic":"{topic}","seq":{seq},"subscribers":{subscribers}}}"#);
    http::json(reply.as_bytes(), close, false)
}

/// The reply to a publish the topic table had no room for.
pub fn no_room(e: &TopicError, close: bool) -> Response {
    refused_topic(e, close)
}

fn broadcast(body: &[u8], topics: &Topics, close: bool) -> Action {
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(rename = "type")]
        kind: String,
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    }
    let bad = |why: String| Action::Respond(http::error(http::BAD_REQUEST, &why, "", close));
    let event: Event = match serde_json::from_slice(body) {
        Ok(event) => event,
        Err(e) => return bad(format!("invalid event: {e}")),
    };
    // CONTRACT.md: a message of a known type without `data` breaks its panel.
    let Some(data) = event.data else {
        return bad("an event needs a \"data\" field".into());
    };
    if event.kind.is_empty() {
        return bad("an event needs a non-empty \"type\"".into());
    }
    let value: serde_json::Value =
        serde_json::from_str(data.get()).expect("RawValue holds valid JSON");
    if let Err(e) = topics.rules().check_event(&event.kind, &value) {
        return Action::Respond(refused_by_schema(&event.kind, &e, close));
    }
    Action::Broadcast {
        type_json: serde_json::to_string(&event.kind).expect("a string serialises"),
        data: data.get().to_owned(),
    }
}

/// The reply to a broadcast the loop sent.
pub fn broadcasted(type_json: &str, delivered: usize, close: bool) -> Response {
    let reply = format!(r#"{{"type":{type_json},"delivered":{delivered}}}"#);
    http::json(reply.as_bytes(), close, false)
}

/// The message a new subscriber would get now.
fn state(name: &str, topics: &Topics, answer: Answer) -> Response {
    let found = match topics.find(name) {
        Some(id) => topics.get(id).snapshot().map(|m| m.json().to_vec()),
        // An adw-state topic nobody has opened yet would still greet a
        // subscriber with its default.
        None if topics.check(name).is_ok() && name.starts_with(adw::ADW_STATE_PREFIX) => {
            Some(topic::default_adw_state(name).json().to_vec())
        }
        None => {
            let e = topics
                .check(name)
                .err()
                .unwrap_or_else(|| TopicError::Unknown(name.into()));
            return refused_topic(&e, answer.close);
        }
    };
    match found {
        Some(json) => http::json(&json, answer.close, answer.head_only),
        None => http::error(
            http::NOT_FOUND,
            &format!("topic {name:?} has no snapshot yet"),
            "",
            answer.close,
        ),
    }
}

/// What `/healthz` reports, gathered by the loop.
pub struct HealthView<'a> {
    pub shutting_down: bool,
    pub uptime_seconds: u64,
    pub connections: usize,
    pub topics: usize,
    pub sockets: usize,
    pub queued_bytes: usize,
    pub stats: &'a Stats,
    pub providers: &'a Registry,
}

/// `/healthz`: `degraded` while a provider is failing, and then 503 so a
/// load balancer or a monitor sees it without reading the body.
pub fn health(view: &HealthView, answer: Answer) -> Response {
    /// Field order is the order an operator reads them in.
    #[derive(serde::Serialize)]
    struct Health<'a> {
        status: &'a str,
        uptime_seconds: u64,
        connections: usize,
        topics: usize,
        version: &'a str,
        sockets: usize,
        queued_bytes: usize,
        counters: &'a Stats,
        providers: &'a std::collections::BTreeMap<String, crate::publisher::ProviderStatus>,
    }
    let providers = view.providers.lock().unwrap_or_else(|e| e.into_inner());
    let status = if view.shutting_down {
        "shutting_down"
    } else if providers.values().any(|p| !p.ok) {
        "degraded"
    } else {
        "ok"
    };
    let health = Health {
        status,
        uptime_seconds: view.uptime_seconds,
        connections: view.connections,
        topics: view.topics,
        version: env!("CARGO_PKG_VERSION"),
        sockets: view.sockets,
        queued_bytes: view.queued_bytes,
        counters: view.stats,
        providers: &providers,
    };
    let body = serde_json::to_vec(&health).expect("plain data serialises");
    let code = if status == "ok" {
        http::OK
    } else {
        http::UNAVAILABLE
    };
    http::response(
        code,
        "application/json",
        "",
        &body,
        answer.close,
        answer.head_only,
    )
}

/// A malformed name is the request's fault (400); a well-formed one the
/// server does not serve is not found (404); a full table is 503.
fn refused_topic(e: &TopicError, close: bool) -> Response {
    let status = match e {
        TopicError::Invalid(_) => http::BAD_REQUEST,
        TopicError::Unknown(_) => http::NOT_FOUND,
        TopicError::Full(_) => http::UNAVAILABLE,
    };
    http::error(status, &e.to_string(), "", close)
}

/// 422 with the pointer and the rule on one line. Counted in the stats
/// interval's refusals; each one is logged at debug.
fn refused_by_schema(topic: &str, error: &SchemaError, close: bool) -> Response {
    debug!("publish to {topic:?} refused by its schema: {error}");
    http::error(http::UNPROCESSABLE, &error.to_string(), "", close)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::topic::schema::Validator;
    use crate::topic::{Preset, Rules};

    fn access() -> Access {
        Access::from_config(&crate::Config::default()).unwrap()
    }

    fn topics() -> Topics {
        let validator = Validator::new(Preset::Adw, &[]).unwrap();
        let rules = Arc::new(Rules::new(Preset::Adw, &[], false, validator));
        Topics::new(rules, Preset::Adw, &[], 100, "2026-11-26T00:00:00Z")
    }

    fn request(method: &str, path: &str) -> Head {
        let raw = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        match http::parse_head(raw.as_bytes()) {
            Ok(http::ParsedHead::Complete { head, .. }) => *head,
            _ => panic!("a complete head"),
        }
    }

    fn status(action: &Action) -> u16 {
        match action {
            Action::Respond(r) => {
                let text = String::from_utf8_lossy(&r.bytes);
                text[9..12].parse().unwrap()
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Without a loop: a publish that passes every check becomes an action,
    /// and one that fails answers and leaves the topics as they were.
    #[test]
    fn publishes_are_checked_before_the_loop_acts() {
        let topics = topics();
        let head = request("POST", "/api/v1/publish/queue");
        let ok = handle(&head, br#"{"phases":[]}"#, &topics, &access(), false, false);
        assert!(
            matches!(&ok, Action::Publish { topic, data } if topic == "queue" && data == r#"{"phases":[]}"#)
        );
        assert_eq!(
            status(&handle(&head, b"null", &topics, &access(), false, false)),
            422
        );
        assert_eq!(
            status(&handle(&head, b"{", &topics, &access(), false, false)),
            400
        );
        let bad_name = request("POST", "/api/v1/publish/Queue");
        assert_eq!(
            status(&handle(&bad_name, b"{}", &topics, &access(), false, false)),
            400
        );
        let unknown = request("POST", "/api/v1/publish/nope");
        assert_eq!(
            status(&handle(&unknown, b"{}", &topics, &access(), false, false)),
            404
        );
        assert_eq!(topics.get(topics.find("queue").unwrap()).seq(), 0);
    }

    #[test]
    fn events_posing_as_updates_are_checked() {
        let topics = topics();
        let head = request("POST", "/api/v1/broadcast");
        let bad = br#"{"type":"queue_update","data":{"phases":null}}"#;
        assert_eq!(
            status(&handle(&head, bad, &topics, &access(), false, false)),
            422
        );
        let ok = br#"{"type":"workflow_completed","data":{}}"#;
        assert!(matches!(
            handle(&head, ok, &topics, &access(), false, false),
            Action::Broadcast { .. }
        ));
    }
}
