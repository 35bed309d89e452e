//! The HTTP endpoints, an arm each in [`handle`] (their paths and access
//! are in `wire::http`). Each looks at one request and at the topics,
//! checks everything, and returns what the loop should do. None touches a
//! connection, a socket or the topic table, so a refused request changes
//! nothing.

use log::debug;

use crate::publisher::Registry;
use crate::server::access::{self, Access};
use crate::server::assets;
use crate::server::jwt::Grant;
use crate::server::stats::Stats;
use crate::topic::delta::DeltaFormat;
use crate::topic::schema::SchemaError;
use crate::topic::{self, Published, Refused, TopicError, Topics, adw};
use crate::wire::http::{self, BodyKind, Head, INTERNAL_ERROR, Response, Route};
use crate::wire::{json, mux};

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
        /// The delta format it asked for (`?delta=`).
        delta: Option<DeltaFormat>,
    },
    /// Upgrade the connection with this `Sec-WebSocket-Accept` and
    /// subscribe it to each of `topics` (maybe none yet). `since` names
    /// the seq the client already has of some: those are not resent.
    SubscribeMany {
        topics: Vec<String>,
        accept: String,
        since: Vec<(String, u64)>,
        /// The delta format it asked for (`?delta=`), for every topic.
        delta: Option<DeltaFormat>,
    },
    /// Answer with an event stream carrying each of `topics`; `since`
    /// from `?since=` and the seq vector of `Last-Event-ID`.
    StreamMany {
        topics: Vec<String>,
        since: Vec<(String, u64)>,
        delta: Option<DeltaFormat>,
        origin: Option<String>,
    },
    /// Answer with an event stream and subscribe the connection to `topic`.
    /// `since` is the client's `Last-Event-ID` (or `?since=`): no resend
    /// when the topic is still there.
    Stream {
        topic: String,
        since: Option<u64>,
        /// The delta format it asked for (`?delta=`).
        delta: Option<DeltaFormat>,
        /// The allowed `Origin` the stream's head names, so a page there
        /// may read it.
        origin: Option<String>,
    },
    /// Store `data` (checked JSON) as `topic`'s snapshot, then answer with
    /// [`published`].
    Publish { topic: String, data: String },
    /// Send an event to every subscriber, WebSocket and SSE, then answer with
    /// [`broadcasted`].
    Broadcast { type_json: String, data: String },
    /// Answer with [`health`]; `details` when the request may see more
    /// than the status.
    Health { details: bool },
    /// Answer with the Prometheus metrics.
    Metrics,
}

/// What a multiplexed request is checked against beyond its head: the
/// signed token that let it in (`None`: a static token, or no credential
/// configured, and every topic may be read), and the limit on topics.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub grant: Option<&'a Grant>,
    /// `--max-topics-per-connection`.
    pub max_topics: usize,
}

/// How the answer ends: whether the connection closes after it, and whether
/// the request was a HEAD.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub close: bool,
    pub head_only: bool,
}

/// Routes a request's head and decides, before a byte of its body is read,
/// whether it is served: its `Host`, the server's capacity, its origin and
/// token, the method and path, and whether it may carry a body. A refusal
/// closes the connection, since the body it may have sent is never read.
/// With the route comes the grant of the signed token that let it in.
/// A refusal carries [`Access::cors`], so a page on an allowed origin can
/// read its status (a 401 is final; no answer at all is retried).
pub fn admit(
    head: &Head,
    topics: &Topics,
    access: &Access,
    reserve: bool,
) -> Result<(Route, Option<Grant>), Response> {
    checked(head, topics, access, reserve)
        .map_err(|refusal| refusal.with_headers(&access.cors(head)))
}

fn checked(
    head: &Head,
    topics: &Topics,
    access: &Access,
    reserve: bool,
) -> Result<(Route, Option<Grant>), Response> {
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
    // code to any HTTP/1.1 request message that lacks a Host header field."
    if head.minor >= 1 && head.host.is_none() {
        return Err(http::error(
            http::BAD_REQUEST,
            "an HTTP/1.1 request needs a Host header",
            "",
            true,
        ));
    }
    // A bug on purpose, for the test of the loop's panic boundary; test
    // builds only.
    #[cfg(test)]
    #[allow(clippy::panic)]
    if head.path == PANIC_PATH {
        panic!("a handler bug made for a test");
    }
    let route = http::route(&head.method, &head.path);
    // Past --max-connections only /healthz is answered, so an operator can
    // still see why.
    if reserve && route != Route::Health {
        return Err(http::error(
            http::UNAVAILABLE,
            "at --max-connections; retry later",
            "Retry-After: 1\r\n",
            true,
        ));
    }
    let grant = access.check(head, &route)?;
    match &route {
        Route::WrongMethod(allow) => {
            return Err(http::error(
                http::METHOD_NOT_ALLOWED,
                &format!("method {} not allowed here", head.method),
                &format!("Allow: {allow}\r\n"),
                true,
            ));
        }
        Route::NotFound => {
            return Err(http::error(
                http::NOT_FOUND,
                &format!("no such endpoint {}", head.path),
                "",
                true,
            ));
        }
        Route::Publish(topic) => topics.check(topic).map_err(|e| refused_topic(&e, true))?,
        _ => {}
    }
    let takes_body = matches!(route, Route::Publish(_) | Route::Broadcast);
    if !takes_body && head.body != BodyKind::Length(0) {
        return Err(http::error(
            http::PAYLOAD_TOO_LARGE,
            &format!("{} takes no request body", head.path),
            "",
            true,
        ));
    }
    Ok((route, grant))
}

/// The path at which a test build's handler panics.
#[cfg(test)]
pub const PANIC_PATH: &str = "/test/panic";

/// Serves one complete request that [`admit`] let in.
pub fn handle(
    head: &Head,
    route: Route,
    body: &[u8],
    topics: &Topics,
    access: &Access,
    reader: Reader<'_>,
    shutting_down: bool,
) -> Action {
    let answer = Answer {
        close: !head.keep_alive || shutting_down,
        head_only: head.method == "HEAD",
    };
    let close = answer.close;
    let action = match route {
        Route::Subscribe(topic) => subscribe(head, topic, topics, shutting_down),
        Route::Stream(topic) => stream(head, topic, topics, shutting_down),
        Route::MuxSocket => subscribe_many(head, topics, reader, shutting_down),
        Route::MuxStream => stream_many(head, topics, reader, shutting_down),
        Route::Publish(topic) => publish(topic, body, topics, close),
        Route::Broadcast => broadcast(body, topics, close),
        Route::State(topic) => Action::Respond(state(head, &topic, topics, answer)),
        Route::Health => Action::Health {
            details: access.may_read(head),
        },
        Route::Ready => Action::Respond(ready(answer, shutting_down)),
        Route::Metrics => Action::Metrics,
        Route::Page => Action::Respond(asset(assets::PAGE, "text/html; charset=utf-8", answer)),
        // A page on another allowed origin may `import` the module (module
        // scripts are fetched under CORS) and read the types.
        Route::Script => Action::Respond(
            asset(assets::SCRIPT, JAVASCRIPT, answer).with_headers(&access.cors(head)),
        ),
        Route::Module => Action::Respond(
            asset(assets::MODULE, JAVASCRIPT, answer).with_headers(&access.cors(head)),
        ),
        Route::Types => Action::Respond(
            asset(assets::TYPES, TYPESCRIPT, answer).with_headers(&access.cors(head)),
        ),
        // `admit` answers these; kept total so a change there cannot panic.
        Route::WrongMethod(_) | Route::NotFound => Action::Respond(http::error(
            http::NOT_FOUND,
            &format!("no such endpoint {}", head.path),
            "",
            true,
        )),
    };
    // A refusal is readable where the answer would have been: the client's
    // probe tells a final 404 from a network failure by its status.
    match action {
        Action::Respond(refusal) if refusal.status.0 >= 400 => {
            Action::Respond(refusal.with_headers(&access.cors(head)))
        }
        action => action,
    }
}

/// Every refusal comes before the 101: a client is never upgraded only to
/// be closed.
fn subscribe(head: &Head, topic: String, topics: &Topics, shutting_down: bool) -> Action {
    if let Err(e) = topics.check(&topic) {
        return Action::Respond(refused_topic(&e, true));
    }
    let delta = match delta_format(head) {
        Ok(delta) => delta,
        Err(response) => return Action::Respond(response),
    };
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
        delta,
    }
}

/// The delta format `?delta=` names: none without it, 400 for a name that
/// is not a format (not echoed: it is the client's text).
fn delta_format(head: &Head) -> Result<Option<DeltaFormat>, Response> {
    let Some(name) = head.query_param("delta") else {
        return Ok(None);
    };
    DeltaFormat::parse(name).map(Some).ok_or_else(|| {
        let known = DeltaFormat::NAMES.join(", ");
        http::error(
            http::BAD_REQUEST,
            &format!("unknown delta format (known: {known})"),
            "",
            true,
        )
    })
}

/// A multiplexed WebSocket: every topic it names is checked, in order,
/// and the first one refused is answered with the status its per-topic
/// route would get, before any upgrade.
fn subscribe_many(head: &Head, topics: &Topics, reader: Reader, shutting_down: bool) -> Action {
    let (names, since) = match mux_request(head, topics, reader, false) {
        Ok(asked) => asked,
        Err(response) => return Action::Respond(response),
    };
    let delta = match delta_format(head) {
        Ok(delta) => delta,
        Err(response) => return Action::Respond(response),
    };
    let accept = match http::check_upgrade(head) {
        Ok(accept) => accept,
        Err(response) => return Action::Respond(response),
    };
    if shutting_down {
        return Action::Respond(http::error(http::UNAVAILABLE, "shutting down", "", true));
    }
    Action::SubscribeMany {
        topics: names,
        accept,
        since,
        delta,
    }
}

/// A multiplexed SSE stream: the same checks, at least one topic, and
/// `Last-Event-ID` read as the seq vector the stream's events carry. One
/// that is not a vector (a per-topic stream's seq) asks nothing: every
/// snapshot is sent.
fn stream_many(head: &Head, topics: &Topics, reader: Reader, shutting_down: bool) -> Action {
    let (names, mut since) = match mux_request(head, topics, reader, true) {
        Ok(asked) => asked,
        Err(response) => return Action::Respond(response),
    };
    let delta = match delta_format(head) {
        Ok(delta) => delta,
        Err(response) => return Action::Respond(response),
    };
    if shutting_down {
        return Action::Respond(http::error(http::UNAVAILABLE, "shutting down", "", true));
    }
    let vector = head.last_event_id.as_deref().and_then(mux::parse_vector);
    for (topic, seq) in vector.unwrap_or_default() {
        since.push((topic.to_owned(), seq));
    }
    Action::StreamMany {
        topics: names,
        since,
        delta,
        origin: head.origin.clone(),
    }
}

/// The seqs a client says it has, by topic name.
pub type Since = Vec<(String, u64)>;

/// The topics a multiplexed request names (`topic=`, repeated names once)
/// and the seqs it says it has (`since=<topic>:<seq>`), each topic
/// checked as its per-topic route would check it: access (403), then the
/// name (400, 404). `need_one`: SSE has no way to add a topic later.
fn mux_request(
    head: &Head,
    topics: &Topics,
    reader: Reader,
    need_one: bool,
) -> Result<(Vec<String>, Since), Response> {
    let bad = |why: &str| http::error(http::BAD_REQUEST, why, "", true);
    let query = head.query.as_deref();
    let mut names: Vec<String> = mux::query_values(query, "topic").map_err(|e| bad(&e))?;
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(name.clone()));
    if need_one && names.is_empty() {
        return Err(bad("name at least one topic: ?topic=a&topic=b"));
    }
    if names.len() > reader.max_topics {
        return Err(bad(&format!(
            "{} topics named, over --max-topics-per-connection ({})",
            names.len(),
            reader.max_topics
        )));
    }
    for name in &names {
        access::readable(reader.grant, name)?;
        topics.check(name).map_err(|e| refused_topic(&e, true))?;
    }
    let since = mux::query_values(query, "since")
        .map_err(|e| bad(&e))?
        .iter()
        .map(|value| match mux::parse_since(value) {
            Some((topic, seq)) => Ok((topic.to_owned(), seq)),
            None => Err(bad(&format!("since={value:?} is not <topic>:<seq>"))),
        })
        .collect::<Result<_, _>>()?;
    Ok((names, since))
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const TYPESCRIPT: &str = "application/typescript; charset=utf-8";

fn asset(body: &str, content_type: &str, answer: Answer) -> Response {
    http::response(
        http::OK,
        content_type,
        // The page holds no data, but no other site may frame it either.
        "Cache-Control: no-cache\r\nContent-Security-Policy: frame-ancestors 'none'\r\nX-Frame-Options: DENY\r\n",
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
    let delta = match delta_format(head) {
        Ok(delta) => delta,
        Err(response) => return Action::Respond(response),
    };
    if shutting_down {
        return Action::Respond(http::error(http::UNAVAILABLE, "shutting down", "", true));
    }
    let since = head
        .last_event_id
        .as_deref()
        .or(head.query_param("since"))
        .and_then(|s| s.trim().parse().ok());
    Action::Stream {
        topic,
        since,
        delta,
        origin: head.origin.clone(),
    }
}

/// Checks everything before anything is touched: the name, the JSON, and
/// the topic's schema. What is stored is our own compact text of the value
/// that passed, never the sender's bytes.
fn publish(topic: String, body: &[u8], topics: &Topics, close: bool) -> Action {
    if let Err(e) = topics.check(&topic) {
        return Action::Respond(refused_topic(&e, close));
    }
    let (value, data) = match json::canonical(body) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Action::Respond(http::error(http::BAD_REQUEST, &e.to_string(), "", close));
        }
    };
    if let Err(e) = topics.rules().check_data(&topic, &value) {
        return Action::Respond(refused_by_schema(&topic, &e, close));
    }
    if let Err(e) = topics.rules().check_size(data.len()) {
        let why = e.to_string();
        return Action::Respond(http::error(http::PAYLOAD_TOO_LARGE, &why, "", close));
    }
    Action::Publish { data, topic }
}

/// The reply to a publish the loop stored.
pub fn published(topic: &str, published: Published, close: bool) -> Response {
    let Published { seq, subscribers } = published;
    let reply = format!(r#"{{"topic":"{topic}","seq":{seq},"subscribers":{subscribers}}}"#);
    http::json(reply.as_bytes(), close, false)
}

/// The reply to a publish the link to Redis would not write: `413` when
/// its compact JSON is over `--max-publish-bytes` (every other node would
/// skip it), `503` when Redis gave it no seq every node takes (its topic's
/// seq is at the ceiling).
#[cfg(feature = "redis")]
pub fn not_replicated(topic: &str, why: crate::cluster::Skip, close: bool) -> Response {
    use crate::cluster::Skip;
    match why {
        Skip::Size => http::error(
            http::PAYLOAD_TOO_LARGE,
            "compact JSON over --max-publish-bytes, which other nodes would refuse",
            "",
            close,
        ),
        Skip::Seq => http::error(
            http::UNAVAILABLE,
            &format!("Redis gave topic {topic:?} no seq from 1 to 2^53 - 1"),
            "",
            close,
        ),
        Skip::Utf8 | Skip::Invalid => {
            http::error(http::UNAVAILABLE, "not written to Redis", "", close)
        }
    }
}

/// The reply to a publish the topic table had no room for.
pub fn no_room(e: &TopicError, close: bool) -> Response {
    refused_topic(e, close)
}

fn broadcast(body: &[u8], topics: &Topics, close: bool) -> Action {
    match topics.rules().take_event(body) {
        Ok((type_json, data)) => Action::Broadcast { type_json, data },
        Err(Refused::Invalid(why)) => {
            Action::Respond(http::error(http::BAD_REQUEST, &why, "", close))
        }
        Err(Refused::Schema { name, error }) => {
            Action::Respond(refused_by_schema(&name, &error, close))
        }
        Err(Refused::TooLarge(why)) => {
            Action::Respond(http::error(http::PAYLOAD_TOO_LARGE, &why, "", close))
        }
    }
}

/// The reply to a broadcast the loop sent.
pub fn broadcasted(type_json: &str, delivered: usize, close: bool) -> Response {
    let reply = format!(r#"{{"type":{type_json},"delivered":{delivered}}}"#);
    http::json(reply.as_bytes(), close, false)
}

/// The message a new subscriber would get now.
fn state(head: &Head, name: &str, topics: &Topics, answer: Answer) -> Response {
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
        Some(json) => http::response(
            http::OK,
            "application/json",
            &http::cors(head.origin.as_deref()),
            &json,
            answer.close,
            answer.head_only,
        ),
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
    /// Subscriptions: open WebSockets and SSE streams.
    pub connections: usize,
    pub topics: usize,
    pub sockets: usize,
    pub queued_bytes: usize,
    pub stats: &'a Stats,
    pub providers: &'a Registry,
}

/// `/healthz`: `degraded` while a provider is failing, and then 503 so a
/// load balancer or a monitor sees it without reading the body. The status
/// is public; the rest (provider errors, which can name files and hold a
/// command's stderr, and the counters) only with `details`.
pub fn health(view: &HealthView, answer: Answer, details: bool) -> Response {
    /// Field order is the order an operator reads them in.
    #[derive(serde::Serialize)]
    struct Health<'a> {
        status: &'a str,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        details: Option<Details<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Details<'a> {
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
        details: details.then(|| Details {
            uptime_seconds: view.uptime_seconds,
            connections: view.connections,
            topics: view.topics,
            version: env!("CARGO_PKG_VERSION"),
            sockets: view.sockets,
            queued_bytes: view.queued_bytes,
            counters: view.stats,
            providers: &providers,
        }),
    };
    let body = match serde_json::to_vec(&health) {
        Ok(body) => body,
        Err(e) => return http::error(INTERNAL_ERROR, &format!("health: {e}"), "", true),
    };
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

/// `/readyz`: whether this server takes new clients, which is what a load
/// balancer must know. Unlike `/healthz` it ignores the providers and the
/// link to Redis: they feed every node alike, so one polled URL going down
/// would otherwise take every node out of the pool at once, while each
/// node still serves its clients the last good snapshots.
fn ready(answer: Answer, shutting_down: bool) -> Response {
    let (code, body): (_, &[u8]) = if shutting_down {
        (http::UNAVAILABLE, br#"{"status":"shutting_down"}"#)
    } else {
        (http::OK, br#"{"status":"ready"}"#)
    };
    http::response(
        code,
        "application/json",
        "",
        body,
        answer.close,
        answer.head_only,
    )
}

/// A malformed name is the request's fault (400); a well-formed one the
/// server does not serve is not found (404); a full table is 503.
fn refused_topic(e: &TopicError, close: bool) -> Response {
    http::error(topic_status(e), &e.to_string(), "", close)
}

/// The status a refused topic name gets, at connect or in a command.
pub fn topic_status(e: &TopicError) -> http::Status {
    match e {
        TopicError::Invalid(_) => http::BAD_REQUEST,
        TopicError::Unknown(_) => http::NOT_FOUND,
        TopicError::Full(_) => http::UNAVAILABLE,
    }
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
        let raw =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
        match http::parse_head(raw.as_bytes()) {
            Ok(http::ParsedHead::Complete { head, .. }) => *head,
            _ => panic!("a complete head"),
        }
    }

    /// What the loop does with a request: admit its head, then handle it.
    fn serve(head: &Head, body: &[u8], topics: &Topics) -> Action {
        match admit(head, topics, &access(), false) {
            Ok((route, _)) => {
                let reader = Reader {
                    grant: None,
                    max_topics: 32,
                };
                handle(head, route, body, topics, &access(), reader, false)
            }
            Err(response) => Action::Respond(response),
        }
    }

    fn status(action: &Action) -> u16 {
        match action {
            Action::Respond(r) => r.status.0,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Without a loop: a publish that passes every check becomes an action,
    /// and one that fails answers and leaves the topics as they were.
    #[test]
    fn publishes_are_checked_before_the_loop_acts() {
        let topics = topics();
        let head = request("POST", "/api/v1/publish/queue");
        let ok = serve(&head, br#"{"phases":[]}"#, &topics);
        assert!(
            matches!(&ok, Action::Publish { topic, data } if topic == "queue" && data == r#"{"phases":[]}"#)
        );
        assert_eq!(status(&serve(&head, b"null", &topics)), 422);
        assert_eq!(status(&serve(&head, b"{", &topics)), 400);
        let bad_name = request("POST", "/api/v1/publish/Queue");
        assert_eq!(status(&serve(&bad_name, b"{}", &topics)), 400);
        let unknown = request("POST", "/api/v1/publish/nope");
        assert_eq!(status(&serve(&unknown, b"{}", &topics)), 404);
        assert_eq!(topics.get(topics.find("queue").unwrap()).seq(), 0);
    }

    #[test]
    fn events_posing_as_updates_are_checked() {
        let topics = topics();
        let head = request("POST", "/api/v1/broadcast");
        let bad = br#"{"type":"queue_update","data":{"phases":null}}"#;
        assert_eq!(status(&serve(&head, bad, &topics)), 422);
        let ok = br#"{"type":"workflow_completed","data":{}}"#;
        assert!(matches!(
            serve(&head, ok, &topics),
            Action::Broadcast { .. }
        ));
    }

    /// The inputs that once ended the process get 400 with a position, on
    /// a topic with a schema, one without, and as a broadcast; what is
    /// accepted is stored as our own compact text.
    #[test]
    fn bodies_that_are_not_i_json_get_400() {
        let topics = topics();
        let broadcast = request("POST", "/api/v1/broadcast");
        for body in [
            r#"{"type":"x","data":1e400}"#,
            r#"{"type":"x","data":"\ud800"}"#,
            &format!(r#"{{"type":"x","data":{}}}"#, "[".repeat(200)),
            r#"{"type":"x","type":"y","data":1}"#,
        ] {
            let answer = serve(&broadcast, body.as_bytes(), &topics);
            assert_eq!(status(&answer), 400, "{body}");
            let Action::Respond(r) = answer else {
                unreachable!()
            };
            assert!(
                String::from_utf8_lossy(&r.bytes).contains("column"),
                "{body}"
            );
        }
        let plain = request("POST", "/api/v1/publish/adw-state/abc12345");
        for body in ["1e400", r#""\ud800""#, &"[".repeat(500_000)] {
            assert_eq!(status(&serve(&plain, body.as_bytes(), &topics)), 400);
        }
        let event = serve(
            &broadcast,
            b"{\"type\" : \"x\",\r\"data\":[1,\r2]}",
            &topics,
        );
        assert!(
            matches!(&event, Action::Broadcast { type_json, data } if type_json == "\"x\"" && data == "[1,2]"),
            "{event:?}"
        );
    }

    /// Refusals by route, method, topic and body come from the head alone,
    /// and each closes the connection, its body unread.
    #[test]
    fn heads_are_refused_before_their_bodies() {
        let topics = topics();
        let admitted = |raw: &str| {
            let head = match http::parse_head(raw.as_bytes()) {
                Ok(http::ParsedHead::Complete { head, .. }) => head,
                other => panic!("{other:?}"),
            };
            admit(&head, &topics, &access(), false).map_err(|r| {
                assert!(r.close);
                r.status.0
            })
        };
        let cases = [
            (
                "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n",
                413,
            ),
            (
                "GET / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
                413,
            ),
            (
                "POST /nope HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n",
                404,
            ),
            (
                "PUT /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n",
                405,
            ),
            (
                "POST /api/v1/publish/nope HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n",
                404,
            ),
            (
                "POST /api/v1/publish/queue HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 5\r\n\r\n",
                421,
            ),
            (
                "POST /api/v1/publish/queue HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.example\r\nContent-Length: 5\r\n\r\n",
                403,
            ),
            ("GET / HTTP/1.1\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            assert_eq!(admitted(raw).err(), Some(status), "{raw}");
        }
        assert!(admitted("POST /api/v1/publish/queue HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n").is_ok());
    }

    /// /readyz is 200 while the server serves, even with a provider
    /// failing, and 503 once it is shutting down or full.
    #[test]
    fn ready_is_the_servers_own_state() {
        let topics = topics();
        let head = request("GET", "/readyz");
        let answer = |shutting_down| match handle(
            &head,
            Route::Ready,
            b"",
            &topics,
            &access(),
            Reader {
                grant: None,
                max_topics: 32,
            },
            shutting_down,
        ) {
            Action::Respond(response) => (
                response.status.0,
                String::from_utf8_lossy(&response.bytes).into_owned(),
            ),
            other => panic!("{other:?}"),
        };
        let (code, text) = answer(false);
        assert_eq!(code, 200, "{text}");
        assert!(text.ends_with(r#"{"status":"ready"}"#), "{text}");
        let (code, text) = answer(true);
        assert_eq!(code, 503, "{text}");
        assert!(text.ends_with(r#"{"status":"shutting_down"}"#), "{text}");
        // Past --max-connections a node is full: not ready for more.
        let full = admit(&head, &topics, &access(), true).map_err(|r| r.status.0);
        assert_eq!(full.err(), Some(503));
    }

    /// Without the token, /healthz says only its status.
    #[test]
    fn health_details_need_the_token() {
        let stats = Stats::default();
        let registry = crate::publisher::Registry::default();
        crate::publisher::set_status(&registry, "exec x", Some("/secret/path: boom".into()));
        let view = HealthView {
            shutting_down: false,
            uptime_seconds: 1,
            connections: 2,
            topics: 3,
            sockets: 4,
            queued_bytes: 5,
            stats: &stats,
            providers: &registry,
        };
        let answer = Answer {
            close: false,
            head_only: false,
        };
        let brief = health(&view, answer, false);
        let text = String::from_utf8_lossy(&brief.bytes);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.ends_with(r#"{"status":"degraded"}"#), "{text}");
        let full = String::from_utf8_lossy(&health(&view, answer, true).bytes).into_owned();
        assert!(
            full.contains("/secret/path") && full.contains("\"counters\""),
            "{full}"
        );
    }
}
