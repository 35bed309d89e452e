//! Who may do what: the origin policy against cross-site WebSocket
//! hijacking, and the publish and subscribe tokens. Each check answers a
//! refused request itself (403 or 401) before anything else happens.

use subtle::ConstantTimeEq;

use crate::config::{Config, Secret};
use crate::wire::http::{self, Head, Response, Status};

const FORBIDDEN: Status = Status(403, "Forbidden");
const UNAUTHORIZED: Status = Status(401, "Unauthorized");

/// Which origins browsers may connect from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    Any,
    Only(Vec<String>),
}

/// The access rules of one server.
#[derive(Debug)]
pub struct Access {
    origins: Origins,
    require_origin: bool,
    publish_token: Option<Secret>,
    subscribe_token: Option<Secret>,
}

impl Access {
    /// The rules a configuration asks for. A server reachable from other
    /// hosts must say which origins may connect and how publishes are
    /// guarded: it refuses to start otherwise.
    pub fn from_config(config: &Config) -> Result<Access, String> {
        let loopback = config.listen.ip().is_loopback();
        let listen = config.listen;
        if !loopback && config.allow_origins.is_empty() && !config.allow_any_origin {
            return Err(format!(
                "{listen} is reachable from other hosts: say which origins may connect \
                 with --allow-origin ORIGIN (repeatable), or --allow-any-origin"
            ));
        }
        if !loopback && config.publish_token.is_none() && !config.insecure_publish {
            return Err(format!(
                "{listen} is reachable from other hosts: guard publishing with \
                 --publish-token (or STATECAST_PUBLISH_TOKEN), or accept anyone's \
                 publishes with --insecure-publish"
            ));
        }
        let any = config.allow_any_origin
            || config.allow_origins.iter().any(|o| o == "*")
            || (loopback && config.allow_origins.is_empty());
        let origins = if any {
            Origins::Any
        } else {
            Origins::Only(config.allow_origins.iter().map(|o| normalize(o)).collect())
        };
        Ok(Access {
            origins,
            require_origin: config.require_origin,
            publish_token: config.publish_token.clone(),
            subscribe_token: config.subscribe_token.clone(),
        })
    }

    /// A browser's `Origin` must be allowed; a request without one (not a
    /// browser) is allowed unless `--require-origin` asks for one when
    /// subscribing.
    pub fn check_origin(&self, head: &Head, subscribing: bool) -> Result<(), Response> {
        let Some(origin) = head.origin.as_deref() else {
            if subscribing && self.require_origin {
                return Err(http::error(
                    FORBIDDEN,
                    "an Origin header is required",
                    "",
                    true,
                ));
            }
            return Ok(());
        };
        match &self.origins {
            Origins::Any => Ok(()),
            Origins::Only(allowed) if allowed.iter().any(|a| *a == normalize(origin)) => Ok(()),
            Origins::Only(_) => Err(http::error(
                FORBIDDEN,
                &format!("origin {origin:?} is not allowed"),
                "",
                true,
            )),
        }
    }

    /// Publish and broadcast need `Authorization: Bearer <--publish-token>`
    /// when one is set.
    pub fn check_publish(&self, head: &Head) -> Result<(), Response> {
        match &self.publish_token {
            Some(token) if !token.matches(head.bearer()) => Err(unauthorized("publishing")),
            _ => Ok(()),
        }
    }

    /// Subscribing needs the `--subscribe-token`, as `?token=` or as
    /// `Authorization: Bearer`, when one is set.
    pub fn check_subscribe(&self, head: &Head) -> Result<(), Response> {
        let Some(token) = &self.subscribe_token else {
            return Ok(());
        };
        if token.matches(head.query_param("token")) || token.matches(head.bearer()) {
            return Ok(());
        }
        Err(unauthorized("subscribing"))
    }
}

/// Origins compare without case and without a trailing slash.
fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
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
        let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
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

    #[test]
    fn origins_are_checked_when_sent() {
        let access = Access::from_config(&config(|c| {
            c.allow_origins = vec!["https://Dash.example/".into()];
        }))
        .unwrap();
        assert!(
            access
                .check_origin(&head("Origin: https://dash.example\r\n", "/"), true)
                .is_ok()
        );
        let refused = access
            .check_origin(&head("Origin: https://evil.example\r\n", "/"), true)
            .unwrap_err();
        assert!(String::from_utf8_lossy(&refused.bytes).starts_with("HTTP/1.1 403"));
        assert!(
            access.check_origin(&head("", "/"), true).is_ok(),
            "no Origin: not a browser"
        );
        let strict = Access::from_config(&config(|c| c.require_origin = true)).unwrap();
        assert!(strict.check_origin(&head("", "/"), true).is_err());
        assert!(strict.check_origin(&head("", "/"), false).is_ok());
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
}
