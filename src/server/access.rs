//! Who may do what: which `Host` names and browser origins are served
//! (against DNS rebinding and cross-site requests from other pages), and
//! the publish and subscribe tokens. Each check answers a refused request
//! itself (421, 403 or 401) before its body is read.

use std::net::{IpAddr, Ipv6Addr};

use subtle::ConstantTimeEq;

use crate::config::{Config, Secret};
use crate::wire::http::{self, Head, Requires, Response, Route, Status};

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
        let public_name = config
            .allow_hosts
            .iter()
            .find(|h| !is_loopback_name(&host_name(h)));
        if config.publish_token.is_none() && !config.insecure_publish {
            let exposed = match public_name {
                _ if !loopback => Some(format!("{listen} is reachable from other hosts")),
                Some(name) => Some(format!(
                    "--allow-host {name} serves a public name, which a proxy passes on \
                     from anyone"
                )),
                None => None,
            };
            if let Some(exposed) = exposed {
                return Err(format!(
                    "{exposed}: guard publishing with --publish-token (or \
                     STATECAST_PUBLISH_TOKEN), or accept anyone's publishes with \
                     --insecure-publish"
                ));
            }
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
        })
    }

    /// Everything a request's head must pass before its route is served:
    /// its `Host`, its origin, and the credential its route requires.
    pub fn check(&self, head: &Head, route: &Route) -> Result<(), Response> {
        self.check_host(head)?;
        self.check_origin(head, route)?;
        match route.requires() {
            Requires::Nothing => Ok(()),
            Requires::Read(_) => self.check_subscribe(head),
            Requires::Write(_) | Requires::WriteAll => self.check_publish(head),
            Requires::Metrics if self.public_metrics || self.may_read(head) => Ok(()),
            Requires::Metrics => Err(unauthorized("/metrics")),
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
                && matches!(route, Route::Subscribe(_) | Route::Stream(_)) =>
            {
                refuse("an Origin header is required".into())
            }
            None => Ok(()),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        let origin = normalize(origin);
        self.origins.contains(&origin) || (self.loopback_origins && is_loopback_origin(&origin))
    }

    /// Publish and broadcast need `Authorization: Bearer <--publish-token>`
    /// when one is set. Without one, a request a proxy passed on may come
    /// from anyone the proxy serves: it is refused unless
    /// `--insecure-publish` asked for exactly that.
    pub fn check_publish(&self, head: &Head) -> Result<(), Response> {
        match &self.publish_token {
            Some(token) if !token.matches(head.bearer()) => Err(unauthorized("publishing")),
            Some(_) => Ok(()),
            None if head.forwarded && !self.insecure_publish => Err(http::error(
                FORBIDDEN,
                "publishing through a proxy needs a credential: start statecast with \
                 --publish-token (or STATECAST_PUBLISH_TOKEN), or --insecure-publish",
                "",
                true,
            )),
            None => Ok(()),
        }
    }

    /// Reading a topic (WebSocket, SSE, `/api/v1/state`) needs the
    /// `--subscribe-token` or the publish token, as `?token=` or as
    /// `Authorization: Bearer`, when a subscribe token is set.
    pub fn check_subscribe(&self, head: &Head) -> Result<(), Response> {
        if self.may_read(head) {
            return Ok(());
        }
        Err(unauthorized("subscribing"))
    }

    /// Whether this request may read what the subscribe token guards: no
    /// token is set, or it carries the subscribe or the publish token.
    pub fn may_read(&self, head: &Head) -> bool {
        let Some(token) = &self.subscribe_token else {
            return true;
        };
        let offered = [head.query_param("token"), head.bearer()];
        offered.into_iter().any(|offered| {
            token.matches(offered)
                || self
                    .publish_token
                    .as_ref()
                    .is_some_and(|p| p.matches(offered))
        })
    }
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

/// The 401: says what is needed, never what was sent.
fn unauthorized(what: &str) -> Response {
    http::error(
        UNAUTHORIZED,
        &format!("{what} needs a valid bearer token"),
        "WWW-Authenticate: Bearer realm=\"statecast\"\r\n",
        true,
    )
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

    fn status(r: Result<(), Response>) -> u16 {
        match r {
            Ok(()) => 200,
            Err(r) => r.status.0,
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
            Route::Metrics,
            Route::Page,
            Route::Script,
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
        let any = Access::from_config(&config(|c| c.allow_any_origin = true)).unwrap();
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
        });
        assert!(Access::from_config(&loopback_names).is_ok());
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
}
