//! Who may do what: which `Host` names and browser origins are served
//! (against DNS rebinding and cross-site requests from other pages), the
//! publish and subscribe tokens, and signed tokens (JWT) with the topics
//! they grant. Each check answers a refused request itself (421, 403 or
//! 401) before its body is read.

use std::net::{IpAddr, Ipv6Addr};

use log::warn;
use subtle::ConstantTimeEq;

use crate::config::{Config, Secret};
use crate::server::jwt::{self, Grant, Verifier};
use crate::wire::http::{self, Head, Requires, Response, Route, Status};
use crate::wire::mux;

const FORBIDDEN: Status = Status(403, "Forbidden");
const UNAUTHORIZED: Status = Status(401, "Unauthorized");
const MISDIRECTED: Status = Status(421, "Misdirected Request");

/// The access rules of one server.
#[derive(Debug)]
pub struct Access {
    /// Any origin may connect (`--allow-any-origin`, or `*`).
    any_origin: bool,
    /// The loopback origins are allowed: the default on a loopback address.
    loopback_origins: bool,
    /// Origins given with `--allow-origin`, normalized.
    origins: Vec<String>,
    /// Names `Host` may carry besides the loopback ones; `None` when any
    /// host is served (`--allow-host '*'`).
    hosts: Option<Vec<String>>,
    /// Off loopback, a `Host` that is an IP literal is served too: no
    /// rebinding DNS answer stands behind one.
    ip_hosts: bool,
    require_origin: bool,
    public_metrics: bool,
    /// Publishes without a credential were asked for by name, so one
    /// that came through a proxy is served too.
    insecure_publish: bool,
    publish_token: Option<Secret>,
    subscribe_token: Option<Secret>,
    /// Signed tokens, when a key is configured: then every read and
    /// publish needs a credential, as with the static tokens.
    jwt: Option<Verifier>,
}

/// What a credential must cover.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    /// One topic.
    Topic(&'a str),
    /// The topics a multiplexed request names: a credential that may read
    /// some topic lets it in, and [`readable`] checks each topic against
    /// its grant. One that may read none would be let in on no topic,
    /// where it would still get every broadcast.
    Each,
    /// Every topic: a broadcast, `/metrics`, the details of `/healthz`.
    All,
}

impl Scope<'_> {
    fn readable_by(self, grant: &Grant) -> bool {
        match self {
            Scope::Topic(topic) => grant.may_read(topic),
            Scope::Each => grant.may_read_some(),
            Scope::All => grant.may_read_all(),
        }
    }

    fn writable_by(self, grant: &Grant) -> bool {
        match self {
            Scope::Topic(topic) => grant.may_publish(topic),
            Scope::Each => false,
            Scope::All => grant.may_publish_all(),
        }
    }
}

impl std::fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Topic(topic) => write!(f, "topic {topic:?}"),
            Scope::Each => f.write_str("any topic"),
            Scope::All => f.write_str("every topic (*)"),
        }
    }
}

/// Why requests may come from anyone, if they may: off loopback, or, as
/// behind a proxy, a public `--allow-host` name or a page origin elsewhere.
fn exposure(config: &Config) -> Option<String> {
    let listen = config.listen;
    // A proxy need not say it is one (nginx passes neither the public
    // name nor X-Forwarded-For unless told to): a public name, or a
    // page served from another host, is what gives a deployment away.
    let public_name = config
        .allow_hosts
        .iter()
        .find(|h| !is_loopback_name(&host_name(h)));
    let public_origin = config
        .allow_origins
        .iter()
        .find(|o| !is_loopback_origin(&normalize(o)))
        .map(String::as_str)
        .or(config.allow_any_origin.then_some("*"));
    match (public_name, public_origin) {
        _ if !listen.ip().is_loopback() => Some(format!("{listen} is reachable from other hosts")),
        (Some(name), _) => Some(format!(
            "--allow-host {name} is a public name: requests under it may come \
             from anyone, through a proxy"
        )),
        (None, Some(origin)) => Some(format!(
            "--allow-origin {origin} serves pages from elsewhere: requests may \
             come from anyone, through a proxy"
        )),
        (None, None) => None,
    }
}

impl Access {
    /// The rules a configuration asks for. A server that answers to other
    /// hosts (off loopback, or under a public name a proxy passes on) must
    /// say which origins may connect and how publishes are guarded: it
    /// refuses to start otherwise.
    pub fn from_config(config: &Config) -> Result<Access, String> {
        let loopback = config.listen.ip().is_loopback();
        let listen = config.listen;
        if !loopback && config.allow_origins.is_empty() && !config.allow_any_origin {
            return Err(format!(
                "{listen} is reachable from other hosts: say which origins may connect \
                 with --allow-origin ORIGIN (repeatable), or --allow-any-origin"
            ));
        }
        let jwt = Verifier::from_config(config)?;
        let exposed = exposure(config);
        if let Some(exposed) = &exposed
            && config.publish_token.is_none()
            && jwt.is_none()
            && !config.insecure_publish
        {
            return Err(format!(
                "{exposed}: guard publishing with --publish-token (or \
                 STATECAST_PUBLISH_TOKEN) or signed tokens (--jwt-public-key, or \
                 STATECAST_JWT_SECRET), or accept anyone's publishes with \
                 --insecure-publish"
            ));
        }
        // Reads are not refused open, as publishes are: a public dashboard
        // is a fair thing to run. But it must be a choice, not a default
        // nobody saw.
        if let Some(exposed) = &exposed
            && config.subscribe_token.is_none()
            && jwt.is_none()
        {
            warn!(
                "{exposed}: every topic is readable by anyone; guard reading with \
                 --subscribe-token (or STATECAST_SUBSCRIBE_TOKEN) or signed tokens \
                 (--jwt-public-key, or STATECAST_JWT_SECRET), unless the dashboard is \
                 meant to be public"
            );
        }
        let any_host = config.allow_hosts.iter().any(|h| h == "*");
        let hosts = (!any_host).then(|| {
            config
                .allow_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect()
        });
        Ok(Access {
            any_origin: config.allow_any_origin || config.allow_origins.iter().any(|o| o == "*"),
            loopback_origins: loopback,
            origins: config.allow_origins.iter().map(|o| normalize(o)).collect(),
            hosts,
            ip_hosts: !loopback,
            require_origin: config.require_origin,
            public_metrics: config.public_metrics,
            insecure_publish: config.insecure_publish,
            publish_token: config.publish_token.clone(),
            subscribe_token: config.subscribe_token.clone(),
            jwt,
        })
    }

    /// Everything a request's head must pass before its route is served:
    /// its `Host`, its origin, and the credential its route requires.
    /// Returns the grant of the signed token that let it in, if one did:
    /// its `exp` and `sub` follow the connection.
    pub fn check(&self, head: &Head, route: &Route) -> Result<Option<Grant>, Response> {
        self.check_host(head)?;
        self.check_origin(head, route)?;
        match route.requires() {
            Requires::Nothing => Ok(None),
            Requires::Read(topic) => self.check_read(head, Scope::Topic(topic), "reading a topic"),
            Requires::ReadEach => self.check_read(head, Scope::Each, "reading topics"),
            Requires::Write(topic) => self.check_write(head, Scope::Topic(topic)),
            Requires::WriteAll => self.check_write(head, Scope::All),
            Requires::Metrics if self.public_metrics => Ok(None),
            Requires::Metrics => self.check_read(head, Scope::All, "/metrics"),
        }
    }

    /// A DNS-rebinding page reaches us under its own name: only loopback
    /// names, the names given with `--allow-host` and, off loopback, IP
    /// literals are served. A request without `Host` (HTTP/1.0) is not a
    /// browser's.
    fn check_host(&self, head: &Head) -> Result<(), Response> {
        let (Some(allowed), Some(host)) = (&self.hosts, head.host.as_deref()) else {
            return Ok(());
        };
        let name = host_name(host);
        if is_loopback_name(&name)
            || (self.ip_hosts && is_ip_literal(&name))
            || allowed.iter().any(|a| *a == name || *a == host)
        {
            return Ok(());
        }
        Err(http::error(
            MISDIRECTED,
            &format!("host {host:?} is not served here (see --allow-host)"),
            "",
            true,
        ))
    }

    /// A browser's `Origin` must be allowed. A request without one is not
    /// a browser's script, unless the browser says it is cross-site
    /// (`Sec-Fetch-Site`): then only a top-level navigation to the page
    /// (a link followed) is served, since the page holds no data.
    fn check_origin(&self, head: &Head, route: &Route) -> Result<(), Response> {
        if self.any_origin {
            return Ok(());
        }
        let refuse = |why: String| Err(http::error(FORBIDDEN, &why, "", true));
        match head.origin.as_deref() {
            Some(origin) if self.allows(origin) => Ok(()),
            Some(origin) => refuse(format!(
                "origin {origin:?} is not allowed (see --allow-origin)"
            )),
            None if head.fetch_site.as_deref() == Some("cross-site") => {
                let navigation = *route == Route::Page
                    && head.fetch_mode.as_deref() == Some("navigate")
                    && head.fetch_dest.as_deref() == Some("document");
                if navigation {
                    Ok(())
                } else {
                    refuse("a cross-site request from an origin that is not allowed".into())
                }
            }
            None if self.require_origin
                && matches!(
                    route,
                    Route::Subscribe(_) | Route::Stream(_) | Route::MuxSocket | Route::MuxStream
                ) =>
            {
                refuse("an Origin header is required".into())
            }
            None => Ok(()),
        }
    }

    /// The header lines that let the page that sent `head` read the
    /// answer, whatever it is (a script, a 401): empty unless its `Host`
    /// is served and its `Origin` is one [`Access::check`] lets in. A
    /// refused origin never gets them, so its page cannot even read why.
    pub fn cors(&self, head: &Head) -> String {
        let origin = head
            .origin
            .as_deref()
            .filter(|origin| self.any_origin || self.allows(origin));
        match origin {
            Some(origin) if self.check_host(head).is_ok() => http::cors(Some(origin)),
            _ => String::new(),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        let origin = normalize(origin);
        self.origins.contains(&origin) || (self.loopback_origins && is_loopback_origin(&origin))
    }

    /// Publish and broadcast need `Authorization: Bearer` with the
    /// `--publish-token`, or with a signed token whose `publish` covers
    /// `scope`, when either is configured. Without either, a request a
    /// proxy passed on may come from anyone the proxy serves: it is
    /// refused unless `--insecure-publish` asked for exactly that.
    fn check_write(&self, head: &Head, scope: Scope) -> Result<Option<Grant>, Response> {
        let bearer = head.bearer();
        if self
            .publish_token
            .as_ref()
            .is_some_and(|t| t.matches(bearer))
        {
            return Ok(None);
        }
        if let Some(verifier) = &self.jwt {
            return match bearer.map(|token| verifier.verify(token, jwt::unix_now())) {
                Some(Ok(grant)) if scope.writable_by(&grant) => Ok(Some(grant)),
                Some(Ok(_)) => Err(not_granted("publish to", scope)),
                Some(Err(why)) => Err(unauthorized("publishing", Some(&why))),
                None => Err(unauthorized("publishing", None)),
            };
        }
        match &self.publish_token {
            Some(_) => Err(unauthorized("publishing", None)),
            None if head.forwarded && !self.insecure_publish => Err(http::error(
                FORBIDDEN,
                "publishing through a proxy needs a credential: start statecast with \
                 --publish-token (or STATECAST_PUBLISH_TOKEN), or --insecure-publish",
                "",
                true,
            )),
            None => Ok(None),
        }
    }

    /// Reading a topic (WebSocket, SSE, `/api/v1/state`), or every topic
    /// (`/metrics`), needs a credential as `?token=` or as
    /// `Authorization: Bearer` when a subscribe token or a JWT key is
    /// configured: the subscribe or the publish token, or a signed token
    /// whose `topics` covers `scope`.
    fn check_read(&self, head: &Head, scope: Scope, what: &str) -> Result<Option<Grant>, Response> {
        if self.subscribe_token.is_none() && self.jwt.is_none() {
            return Ok(None);
        }
        let query = head.query_param("token").map(mux::query_token);
        let offered = [query.as_deref(), head.bearer()];
        let fixed = [&self.subscribe_token, &self.publish_token];
        let static_match = offered.iter().any(|o| {
            fixed
                .iter()
                .any(|t| t.as_ref().is_some_and(|t| t.matches(*o)))
        });
        if static_match {
            return Ok(None);
        }
        let Some(verifier) = &self.jwt else {
            return Err(unauthorized(what, None));
        };
        // One signature check per request, however many tokens it offers:
        // a check costs the loop tens of microseconds, before anything is
        // known of the sender.
        let [query, bearer] = offered;
        match bearer
            .or(query)
            .map(|token| verifier.verify(token, jwt::unix_now()))
        {
            Some(Ok(grant)) if scope.readable_by(&grant) => Ok(Some(grant)),
            Some(Ok(_)) => Err(not_granted("read", scope)),
            Some(Err(why)) => Err(unauthorized(what, Some(&why))),
            None => Err(unauthorized(what, None)),
        }
    }

    /// Whether this request may read everything a credential guards (the
    /// details of `/healthz`): none is configured, or it carries the
    /// subscribe or the publish token, or a signed token for every topic.
    pub fn may_read(&self, head: &Head) -> bool {
        self.check_read(head, Scope::All, "reading").is_ok()
    }
}

/// Whether a multiplexed connection let in with `grant` may read `topic`:
/// a connection a static token (or no credential at all) let in reads
/// every topic; one a signed token let in, the topics its `topics` claim
/// covers. The refusal is the 403 the per-topic route would get.
pub fn readable(grant: Option<&Grant>, topic: &str) -> Result<(), Response> {
    match unreadable(grant, topic) {
        Some(why) => Err(http::error(FORBIDDEN, &why, "", true)),
        None => Ok(()),
    }
}

/// Why `grant` may not read `topic` (the reason of a 403), if it may not.
pub fn unreadable(grant: Option<&Grant>, topic: &str) -> Option<String> {
    grant
        .filter(|grant| !grant.may_read(topic))
        .map(|_| not_granted_why("read", Scope::Topic(topic)))
}

/// Origins compare without case and without a trailing slash.
fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// A `Host` value's name, without its port, lowercased; an IPv6 literal
/// keeps its brackets.
fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => host.get(..=end).unwrap_or_default().to_owned(),
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_owned(),
        _ => host,
    }
    .trim_end_matches('.')
    .to_owned()
}

/// `localhost`, a name under `.localhost` (browsers resolve both to
/// loopback themselves, RFC 6761 §6.3), or a loopback IP literal: names
/// no rebinding DNS answer can stand behind.
fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let ip = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().map(IpAddr::V6),
        None => name.parse::<IpAddr>(),
    };
    ip.is_ok_and(|ip| ip.is_loopback())
}

/// An IPv4 literal, or an IPv6 one in brackets.
fn is_ip_literal(name: &str) -> bool {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => name.parse::<std::net::Ipv4Addr>().is_ok(),
    }
}

/// `http(s)://` and a loopback name, on any port.
fn is_loopback_origin(origin: &str) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    !authority.contains(['/', '@', '?', '#']) && is_loopback_name(&host_name(authority))
}

/// The 401: says what is needed, and why a signed token was refused,
/// never what was sent.
fn unauthorized(what: &str, why: Option<&jwt::Refusal>) -> Response {
    let because = why.map_or_else(String::new, |why| format!(": {why}"));
    http::error(
        UNAUTHORIZED,
        &format!("{what} needs a valid token (?token= or Authorization: Bearer){because}"),
        "WWW-Authenticate: Bearer realm=\"statecast\"\r\n",
        true,
    )
}

/// The 403 for a valid signed token that does not cover the request.
fn not_granted(action: &str, scope: Scope) -> Response {
    http::error(FORBIDDEN, &not_granted_why(action, scope), "", true)
}

fn not_granted_why(action: &str, scope: Scope) -> String {
    format!("this token does not grant the right to {action} {scope}")
}

impl Secret {
    /// Compares in constant time, so the time a refusal takes tells
    /// nothing about how much of the token was right.
    pub fn matches(&self, offered: Option<&str>) -> bool {
        offered
            .is_some_and(|offered| bool::from(self.expose().as_bytes().ct_eq(offered.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(extra: &str, target: &str) -> Head {
        let raw = format!("GET {target} HTTP/1.1\r\n{extra}\r\n");
        match http::parse_head(raw.as_bytes()) {
            Ok(http::ParsedHead::Complete { head, .. }) => *head,
            _ => panic!("a head"),
        }
    }

    fn config(f: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        f(&mut c);
        c
    }

    fn status<T>(r: Result<T, Response>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(r) => r.status.0,
        }
    }

    impl Access {
        fn check_publish(&self, head: &Head) -> Result<Option<Grant>, Response> {
            self.check_write(head, Scope::Topic("queue"))
        }

        fn check_subscribe(&self, head: &Head) -> Result<Option<Grant>, Response> {
            self.check_read(head, Scope::Topic("queue"), "subscribing")
        }
    }

    fn routes() -> Vec<Route> {
        vec![
            Route::Subscribe("queue".into()),
            Route::Stream("queue".into()),
            Route::Publish("queue".into()),
            Route::Broadcast,
            Route::State("queue".into()),
            Route::Health,
            Route::Ready,
            Route::Metrics,
            Route::Page,
            Route::Script,
            Route::Module,
            Route::Types,
        ]
    }

    #[test]
    fn a_public_address_needs_origins_and_a_publish_policy() {
        let public = |c: &mut Config| c.listen = "0.0.0.0:8002".parse().unwrap();
        let e = Access::from_config(&config(public)).unwrap_err();
        assert!(e.contains("--allow-origin"), "{e}");
        let e = Access::from_config(&config(|c| {
            public(c);
            c.allow_origins = vec!["https://dash.example".into()];
        }))
        .unwrap_err();
        assert!(e.contains("--publish-token"), "{e}");
        assert!(
            Access::from_config(&config(|c| {
                public(c);
                c.allow_any_origin = true;
                c.insecure_publish = true;
            }))
            .is_ok()
        );
        assert!(
            Access::from_config(&Config::default()).is_ok(),
            "loopback needs neither"
        );
    }

    /// On loopback, by default: the loopback origins on any port pass on
    /// every route; any other origin gets 403 on every route; a request
    /// with no Origin (curl) passes unless the browser says cross-site.
    #[test]
    fn loopback_serves_loopback_origins_only() {
        let access = Access::from_config(&Config::default()).unwrap();
        for route in routes() {
            for origin in [
                "http://localhost:5173",
                "http://localhost",
                "https://LOCALHOST:8443/",
                "http://127.0.0.1:8002",
                "http://127.1.2.3",
                "http://[::1]:3000",
                "http://app.localhost:5173",
            ] {
                let h = head(&format!("Host: 127.0.0.1\r\nOrigin: {origin}\r\n"), "/");
                assert_eq!(status(access.check(&h, &route)), 200, "{origin} {route:?}");
            }
            for origin in [
                "http://evil.example",
                "http://localhost.evil.example",
                "http://127.0.0.1.evil.example",
                "http://[::2]",
                "null",
                "file://",
                "http://user@localhost",
                "ftp://localhost",
            ] {
                let h = head(&format!("Host: 127.0.0.1\r\nOrigin: {origin}\r\n"), "/");
                assert_eq!(status(access.check(&h, &route)), 403, "{origin} {route:?}");
            }
            let curl = head("Host: 127.0.0.1\r\n", "/");
            assert_eq!(status(access.check(&curl, &route)), 200, "{route:?}");
            let cross = head("Host: 127.0.0.1\r\nSec-Fetch-Site: cross-site\r\n", "/");
            assert_eq!(status(access.check(&cross, &route)), 403, "{route:?}");
        }
        // A link followed from another site opens the page, which holds
        // no data; its sockets then carry the loopback origin.
        let link = head(
            "Host: localhost\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n",
            "/",
        );
        assert_eq!(status(access.check(&link, &Route::Page)), 200);
        assert_eq!(status(access.check(&link, &Route::Health)), 403);
        let framed = head(
            "Host: localhost\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: iframe\r\n",
            "/",
        );
        assert_eq!(status(access.check(&framed, &Route::Page)), 403);
    }

    #[test]
    fn allowed_and_any_origins() {
        let access = Access::from_config(&config(|c| {
            c.allow_origins = vec!["https://Dash.example/".into()];
            c.insecure_publish = true;
        }))
        .unwrap();
        let with = |origin: &str| head(&format!("Host: localhost\r\nOrigin: {origin}\r\n"), "/");
        let ws = Route::Subscribe("queue".into());
        assert_eq!(
            status(access.check(&with("https://dash.example"), &ws)),
            200
        );
        assert_eq!(
            status(access.check(&with("http://localhost:5173"), &ws)),
            200
        );
        assert_eq!(
            status(access.check(&with("https://evil.example"), &ws)),
            403
        );
        let any = Access::from_config(&config(|c| {
            c.allow_any_origin = true;
            c.insecure_publish = true;
        }))
        .unwrap();
        assert_eq!(status(any.check(&with("https://evil.example"), &ws)), 200);
        let strict = Access::from_config(&config(|c| c.require_origin = true)).unwrap();
        let bare = head("Host: localhost\r\n", "/");
        assert_eq!(status(strict.check(&bare, &ws)), 403);
        assert_eq!(status(strict.check(&bare, &Route::Health)), 200);
    }

    /// DNS rebinding: a page on evil.example whose name now points at
    /// 127.0.0.1 sends `Host: evil.example`; it gets 421.
    #[test]
    fn loopback_serves_loopback_hosts_and_allowed_names() {
        let access = Access::from_config(&config(|c| {
            c.allow_hosts = vec!["dash.example.com".into()];
            c.publish_token = Some(Secret::new("wr1te-wr1te-wr1te"));
        }))
        .unwrap();
        for host in [
            "localhost",
            "localhost:8002",
            "LocalHost.",
            "127.0.0.1:8002",
            "127.9.9.9",
            "[::1]:8002",
            "app.localhost",
            "dash.example.com",
            "dash.example.com:443",
        ] {
            let h = head(&format!("Host: {host}\r\n"), "/");
            assert_eq!(status(access.check(&h, &Route::Health)), 200, "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8002",
            "localhost.evil.example",
            "192.168.1.2",
            "[::2]",
            "0.0.0.0",
        ] {
            let h = head(&format!("Host: {host}\r\n"), "/");
            assert_eq!(status(access.check(&h, &Route::Page)), 421, "{host}");
        }
        let any = Access::from_config(&config(|c| {
            c.allow_hosts = vec!["*".into()];
            c.insecure_publish = true;
        }))
        .unwrap();
        assert_eq!(
            status(any.check(&head("Host: evil.example\r\n", "/"), &Route::Page)),
            200
        );
    }

    /// Off loopback, a name must be allowed as on loopback: a rebinding
    /// page on a LAN server is refused. IP literals, which no DNS answer
    /// stands behind, are served.
    #[test]
    fn off_loopback_names_must_be_allowed_too() {
        let lan = |hosts: &[&str]| {
            Access::from_config(&config(|c| {
                c.listen = "0.0.0.0:8002".parse().unwrap();
                c.allow_any_origin = true;
                c.publish_token = Some(Secret::new("wr1te-wr1te-wr1te"));
                c.allow_hosts = hosts.iter().map(|h| h.to_string()).collect();
            }))
            .unwrap()
        };
        let bare = lan(&[]);
        for host in ["evil.example", "dash.example.com", "nas.local:8002"] {
            let h = head(&format!("Host: {host}\r\n"), "/");
            for route in routes() {
                assert_eq!(status(bare.check(&h, &route)), 421, "{host} {route:?}");
            }
        }
        for host in [
            "192.168.1.5:8002",
            "10.0.0.1",
            "[fe80::1]:8002",
            "localhost",
        ] {
            let h = head(&format!("Host: {host}\r\n"), "/");
            assert_eq!(status(bare.check(&h, &Route::Health)), 200, "{host}");
        }
        let named = lan(&["dash.example.com"]);
        let h = head("Host: dash.example.com\r\n", "/");
        assert_eq!(status(named.check(&h, &Route::Page)), 200);
        let h = head("Host: evil.example\r\n", "/");
        assert_eq!(status(named.check(&h, &Route::Page)), 421);
    }

    /// A public name behind a proxy is as exposed as a public address:
    /// without a publish credential the server does not start, and the
    /// error names the ways out.
    #[test]
    fn a_public_name_needs_a_publish_policy() {
        for hosts in [vec!["dash.example.com"], vec!["localhost", "*"]] {
            let e = Access::from_config(&config(|c| {
                c.allow_hosts = hosts.iter().map(|h| h.to_string()).collect();
            }))
            .unwrap_err();
            assert!(
                e.contains("--publish-token") && e.contains("--insecure-publish"),
                "{e}"
            );
        }
        let loopback_names = config(|c| {
            c.allow_hosts = vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "app.localhost".into(),
            ];
            c.allow_origins = vec!["http://localhost:5173".into()];
        });
        assert!(Access::from_config(&loopback_names).is_ok());
        // A plain proxy_pass sends neither the public name nor
        // X-Forwarded-For: the page's origin still gives it away.
        for public in [
            config(|c| c.allow_origins = vec!["https://dash.example.com".into()]),
            config(|c| c.allow_any_origin = true),
        ] {
            let e = Access::from_config(&public).unwrap_err();
            assert!(
                e.contains("--allow-origin") && e.contains("--publish-token"),
                "{e}"
            );
        }
        for ok in [
            config(|c| {
                c.allow_hosts = vec!["dash.example.com".into()];
                c.publish_token = Some(Secret::new("wr1te-wr1te-wr1te"));
            }),
            config(|c| {
                c.allow_hosts = vec!["dash.example.com".into()];
                c.insecure_publish = true;
            }),
        ] {
            assert!(Access::from_config(&ok).is_ok());
        }
    }

    /// A publish a proxy passed on (`Forwarded`, `X-Forwarded-For`,
    /// `X-Real-IP`) may come from anyone: without a publish credential it
    /// is refused, unless `--insecure-publish` asked for it.
    #[test]
    fn a_forwarded_publish_needs_a_credential() {
        let open = Access::from_config(&Config::default()).unwrap();
        for proxy in [
            "X-Forwarded-For: 203.0.113.9\r\n",
            "Forwarded: for=203.0.113.9\r\n",
            "X-Real-IP: 203.0.113.9\r\n",
        ] {
            let h = head(&format!("Host: 127.0.0.1\r\n{proxy}"), "/");
            for route in [Route::Publish("queue".into()), Route::Broadcast] {
                let refused = open.check(&h, &route).unwrap_err();
                assert_eq!(refused.status.0, 403, "{proxy} {route:?}");
                let text = String::from_utf8_lossy(&refused.bytes);
                assert!(text.contains("--publish-token"), "{text}");
            }
            assert_eq!(status(open.check(&h, &Route::State("queue".into()))), 200);
        }
        let local = head("Host: 127.0.0.1\r\n", "/");
        assert_eq!(
            status(open.check(&local, &Route::Publish("queue".into()))),
            200
        );
        let insecure = Access::from_config(&config(|c| c.insecure_publish = true)).unwrap();
        let h = head("Host: 127.0.0.1\r\nX-Forwarded-For: 203.0.113.9\r\n", "/");
        assert_eq!(
            status(insecure.check(&h, &Route::Publish("queue".into()))),
            200
        );
    }

    #[test]
    fn tokens_are_compared_whole() {
        let access = Access::from_config(&config(|c| {
            c.publish_token = Some(Secret::new("s3cret"));
            c.subscribe_token = Some(Secret::new("r3ad"));
        }))
        .unwrap();
        assert!(
            access
                .check_publish(&head("Authorization: Bearer s3cret\r\n", "/"))
                .is_ok()
        );
        assert!(
            access
                .check_publish(&head("Authorization: bearer s3cret\r\n", "/"))
                .is_ok()
        );
        for bad in [
            "Authorization: Bearer s3cre\r\n",
            "Authorization: Bearer s3cret2\r\n",
            "",
        ] {
            let refused = access.check_publish(&head(bad, "/")).unwrap_err();
            let text = String::from_utf8_lossy(&refused.bytes);
            assert!(text.starts_with("HTTP/1.1 401"), "{bad:?}");
            assert!(!text.contains("s3cre"), "a refusal never echoes a token");
        }
        assert!(access.check_subscribe(&head("", "/x?token=r3ad")).is_ok());
        assert!(
            access
                .check_subscribe(&head("", "/x?since=3&token=r3ad"))
                .is_ok()
        );
        assert!(
            access
                .check_subscribe(&head("Authorization: Bearer r3ad\r\n", "/x"))
                .is_ok()
        );
        assert!(access.check_subscribe(&head("", "/x?token=nope")).is_err());
    }

    /// With a subscribe token, every read path needs it: the sockets,
    /// `/api/v1/state` and `/metrics` (unless `--public-metrics`).
    #[test]
    fn the_subscribe_token_covers_every_read_path() {
        let token = |public: bool| {
            Access::from_config(&config(|c| {
                c.subscribe_token = Some(Secret::new("r3ad-r3ad-r3ad-r3ad"));
                c.publish_token = Some(Secret::new("wr1te-wr1te-wr1te"));
                c.public_metrics = public;
            }))
            .unwrap()
        };
        let access = token(false);
        let bare = head("Host: localhost\r\n", "/");
        let read = head("Host: localhost\r\n", "/x?token=r3ad-r3ad-r3ad-r3ad");
        let write = head(
            "Host: localhost\r\nAuthorization: Bearer wr1te-wr1te-wr1te\r\n",
            "/",
        );
        for route in [
            Route::Subscribe("queue".into()),
            Route::Stream("queue".into()),
            Route::State("queue".into()),
            Route::Metrics,
        ] {
            assert_eq!(status(access.check(&bare, &route)), 401, "{route:?}");
            assert_eq!(status(access.check(&read, &route)), 200, "{route:?}");
        }
        assert_eq!(status(access.check(&write, &Route::Metrics)), 200);
        assert_eq!(status(access.check(&bare, &Route::Health)), 200);
        assert!(!access.may_read(&bare) && access.may_read(&read) && access.may_read(&write));
        assert_eq!(status(token(true).check(&bare, &Route::Metrics)), 200);
        let open = Access::from_config(&Config::default()).unwrap();
        assert!(open.may_read(&bare));
    }

    /// A token minted with the test secret, valid for an hour from now.
    #[cfg(feature = "jwt")]
    fn signed(topics: &[&str], publish: &[&str]) -> String {
        let minting = jwt::Minting {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            publish: publish.iter().map(|t| t.to_string()).collect(),
            lifetime: std::time::Duration::from_secs(3600),
            sub: Some("alice".into()),
            ..jwt::Minting::default()
        };
        jwt::mint(&Secret::new(JWT_SECRET), &minting, jwt::unix_now()).unwrap()
    }

    #[cfg(feature = "jwt")]
    const JWT_SECRET: &str = "jwt-secret-0123456789abcdefghijkl";

    #[cfg(feature = "jwt")]
    fn with_jwt(f: impl FnOnce(&mut Config)) -> Access {
        Access::from_config(&config(|c| {
            c.jwt_secret = Some(Secret::new(JWT_SECRET));
            f(c);
        }))
        .unwrap()
    }

    /// With a key, a token for topic `a` reads `a` on every read route and
    /// nothing else (403); a request without a token gets 401 everywhere a
    /// credential is needed; `topics` gives no publish rights.
    #[test]
    #[cfg(feature = "jwt")]
    fn a_signed_token_reads_only_its_topics() {
        let access = with_jwt(|_| {});
        let token = signed(&["a", "adw-state/*"], &[]);
        let by_query = head("Host: localhost\r\n", &format!("/x?token={token}"));
        let by_bearer = head(
            &format!("Host: localhost\r\nAuthorization: Bearer {token}\r\n"),
            "/x",
        );
        let bare = head("Host: localhost\r\n", "/x");
        for read in [
            |t: &str| Route::Subscribe(t.into()),
            |t: &str| Route::Stream(t.into()),
            |t: &str| Route::State(t.into()),
        ] {
            for h in [&by_query, &by_bearer] {
                assert_eq!(status(access.check(h, &read("a"))), 200);
                assert_eq!(status(access.check(h, &read("adw-state/x1"))), 200);
                assert_eq!(status(access.check(h, &read("b"))), 403, "{:?}", read("b"));
            }
            assert_eq!(status(access.check(&bare, &read("a"))), 401);
        }
        let grant = access
            .check(&by_query, &Route::Subscribe("a".into()))
            .unwrap()
            .unwrap();
        assert_eq!(grant.sub.as_deref(), Some("alice"));
        for route in [Route::Publish("a".into()), Route::Broadcast, Route::Metrics] {
            assert_eq!(status(access.check(&by_bearer, &route)), 403, "{route:?}");
            assert_eq!(status(access.check(&bare, &route)), 401, "{route:?}");
        }
        assert!(!access.may_read(&by_bearer) && !access.may_read(&bare));
        assert_eq!(status(access.check(&bare, &Route::Health)), 200);
    }

    /// `publish` covers publishing to its topics; a broadcast, which
    /// reaches every topic's subscribers, needs `*`; `/metrics` and the
    /// details of `/healthz` need `topics` to have `*`.
    #[test]
    #[cfg(feature = "jwt")]
    fn signed_publish_rights_and_star() {
        let access = with_jwt(|_| {});
        let bearer = |t: &str| {
            head(
                &format!("Host: localhost\r\nAuthorization: Bearer {t}\r\n"),
                "/",
            )
        };
        let writer = bearer(&signed(&[], &["a"]));
        assert_eq!(
            status(access.check(&writer, &Route::Publish("a".into()))),
            200
        );
        assert_eq!(
            status(access.check(&writer, &Route::Publish("b".into()))),
            403
        );
        assert_eq!(status(access.check(&writer, &Route::Broadcast)), 403);
        assert_eq!(
            status(access.check(&writer, &Route::Subscribe("a".into()))),
            403
        );
        let all = bearer(&signed(&["*"], &["*"]));
        for route in [
            Route::Broadcast,
            Route::Publish("b".into()),
            Route::Metrics,
            Route::Subscribe("z".into()),
        ] {
            assert_eq!(status(access.check(&all, &route)), 200, "{route:?}");
        }
        assert!(access.may_read(&all));
        let public = with_jwt(|c| c.public_metrics = true);
        assert_eq!(
            status(public.check(&head("Host: localhost\r\n", "/"), &Route::Metrics)),
            200
        );
    }

    /// A refused token gets 401 saying why, never the token; the static
    /// tokens keep working beside a key.
    #[test]
    #[cfg(feature = "jwt")]
    fn refusals_say_why_and_static_tokens_still_work() {
        let access = with_jwt(|c| {
            c.subscribe_token = Some(Secret::new("r3ad-r3ad-r3ad-r3ad"));
            c.publish_token = Some(Secret::new("wr1te-wr1te-wr1te"));
        });
        let expired = {
            let minting = jwt::Minting {
                topics: vec!["*".into()],
                lifetime: std::time::Duration::from_secs(1),
                ..jwt::Minting::default()
            };
            jwt::mint(&Secret::new(JWT_SECRET), &minting, jwt::unix_now() - 100).unwrap()
        };
        let h = head("Host: localhost\r\n", &format!("/x?token={expired}"));
        let refused = access.check(&h, &Route::Subscribe("a".into())).unwrap_err();
        let text = String::from_utf8_lossy(&refused.bytes);
        assert!(
            text.starts_with("HTTP/1.1 401") && text.contains("token expired"),
            "{text}"
        );
        assert!(!text.contains(&expired) && !text.contains(expired.split('.').nth(1).unwrap()));
        let read = head("Host: localhost\r\n", "/x?token=r3ad-r3ad-r3ad-r3ad");
        let write = head(
            "Host: localhost\r\nAuthorization: Bearer wr1te-wr1te-wr1te\r\n",
            "/",
        );
        assert_eq!(
            status(access.check(&read, &Route::Subscribe("a".into()))),
            200
        );
        assert_eq!(status(access.check(&read, &Route::Metrics)), 200);
        assert_eq!(
            status(access.check(&read, &Route::Publish("a".into()))),
            401
        );
        for route in [
            Route::Publish("a".into()),
            Route::Broadcast,
            Route::State("a".into()),
        ] {
            assert_eq!(status(access.check(&write, &route)), 200, "{route:?}");
        }
        let token = signed(&["a"], &["a"]);
        let jwt = head(
            &format!("Host: localhost\r\nAuthorization: Bearer {token}\r\n"),
            "/",
        );
        assert_eq!(status(access.check(&jwt, &Route::Publish("a".into()))), 200);
        assert_eq!(
            status(access.check(&jwt, &Route::Subscribe("a".into()))),
            200
        );
    }

    /// A key guards publishing, so a public address starts with one in
    /// place of a publish token.
    #[test]
    #[cfg(feature = "jwt")]
    fn a_key_is_a_publish_policy() {
        let public = config(|c| {
            c.listen = "0.0.0.0:8002".parse().unwrap();
            c.allow_any_origin = true;
            c.jwt_secret = Some(Secret::new(JWT_SECRET));
        });
        assert!(Access::from_config(&public).is_ok());
        let h = head("Host: 10.0.0.1\r\nX-Forwarded-For: 203.0.113.9\r\n", "/");
        let access = Access::from_config(&public).unwrap();
        assert_eq!(status(access.check(&h, &Route::Publish("a".into()))), 401);
    }
}
