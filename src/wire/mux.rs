//! The multiplexed protocol's text, without I/O: the `topic=` and `since=`
//! parameters of `/api/v1/ws` and `/api/v1/sse`, the seq vector an SSE
//! stream's `id:` carries (and `Last-Event-ID` brings back), a client's
//! subscribe and unsubscribe commands, and the server's control messages
//! in the reserved `statecast.` namespace.

use std::fmt::Write as _;

/// The prefix of every control message's `type`; a broadcast may not use
/// it, so a client never mistakes a producer's event for the server's.
pub const RESERVED: &str = "statecast.";

/// The `type` of the last event of an SSE stream the server ends on
/// purpose (a token's expiry), which clients take as a close; a broadcast
/// may not use it either. Older than the `statecast.` namespace, so kept
/// outside it.
pub const CLOSE_EVENT: &str = "close";

/// Every value of `name` in a query string, percent-decoded: a browser's
/// `URLSearchParams` writes `adw-state/x` as `adw-state%2Fx` and `a:1` as
/// `a%3A1`. A value that does not decode to UTF-8 is an error naming it.
pub fn query_values(query: Option<&str>, name: &str) -> Result<Vec<String>, String> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map(|raw| percent_decode(raw, true).ok_or_else(|| format!("{name}={raw:?} is not valid")))
        .collect()
}

/// A `token=` value as the credential it carries: `%XX` escapes decoded,
/// since statecast.js and `URLSearchParams` write a base64 token's `+`,
/// `/` and `=` as `%2B`, `%2F` and `%3D`. A `+` stays a `+`: a base64
/// token pasted into a URL unescaped (`curl "...?token=$TOKEN"`) means
/// it, and no token holds a space. A value that does not decode is
/// compared as sent.
pub fn query_token(raw: &str) -> String {
    percent_decode(raw, false).unwrap_or_else(|| raw.to_owned())
}

/// `%XX` escapes decoded, and `+` as a space when `plus_is_space` (as a
/// form-encoded query writes one); `None` for a broken escape or bytes
/// that are not UTF-8.
fn percent_decode(raw: &str, plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// `<topic>:<seq>`, split at the last `:` (topic names hold none).
pub fn parse_since(value: &str) -> Option<(&str, u64)> {
    let (topic, seq) = value.rsplit_once(':')?;
    if topic.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic, seq.parse().ok()?))
}

/// A seq vector, `a:12,b:4`, as `Last-Event-ID` brings it back; `None`
/// when any part is not `<topic>:<seq>`.
pub fn parse_vector(id: &str) -> Option<Vec<(&str, u64)>> {
    let id = id.trim();
    if id.is_empty() {
        return Some(Vec::new());
    }
    id.split(',').map(parse_since).collect()
}

/// Appends `<topic>:<seq>` to a seq vector being written.
pub fn push_vector(vector: &mut String, topic: &str, seq: u64) {
    if !vector.is_empty() {
        vector.push(',');
    }
    let _ = write!(vector, "{topic}:{seq}");
}

/// What a client asks of its multiplexed WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Add these topics; `since` names the seq the client already has of
    /// some of them.
    Subscribe {
        topics: Vec<String>,
        since: Vec<(String, u64)>,
    },
    /// Drop these topics.
    Unsubscribe { topics: Vec<String> },
}

/// Reads a client's text message as a command: `None` when it is not one
/// (not JSON, not an object, or no `op`), which stays ignored as every
/// client message was before; an error (the reason of a 400) for an
/// object whose `op` is unknown or whose fields are malformed.
pub fn parse_command(text: &str) -> Option<Result<Command, String>> {
    let serde_json::Value::Object(object) = serde_json::from_str(text).ok()? else {
        return None;
    };
    let op = object.get("op")?;
    let topics = || -> Result<Vec<String>, String> {
        let listed = object.get("topics").and_then(|t| t.as_array());
        let Some(listed) = listed else {
            return Err("\"topics\" must be an array of topic names".into());
        };
        listed
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "\"topics\" must be an array of strings".to_owned())
            })
            .collect()
    };
    Some(match op.as_str() {
        Some("subscribe") => topics().and_then(|topics| {
            let since = match object.get("since") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::Object(since)) => since
                    .iter()
                    .map(|(topic, seq)| match seq.as_u64() {
                        Some(seq) => Ok((topic.clone(), seq)),
                        None => Err(format!("\"since\".{topic:?} must be a whole number")),
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err("\"since\" must be an object of topic: seq".into()),
            };
            Ok(Command::Subscribe { topics, since })
        }),
        Some("unsubscribe") => topics().map(|topics| Command::Unsubscribe { topics }),
        Some(other) => Err(format!("unknown op {other:?}")),
        None => Err("\"op\" must be a string".into()),
    })
}

/// `{"type":"statecast.error",...}`: what a refused command, or a topic
/// it names, gets; `status` is the HTTP status a connect would have got.
pub fn error(topic: Option<&str>, status: u16, reason: &str) -> String {
    let reason = serde_json::Value::from(reason);
    match topic {
        Some(topic) => {
            let topic = serde_json::Value::from(topic);
            format!(
                r#"{{"type":"statecast.error","topic":{topic},"status":{status},"reason":{reason}}}"#
            )
        }
        None => format!(r#"{{"type":"statecast.error","status":{status},"reason":{reason}}}"#),
    }
}

/// `{"type":"statecast.unsubscribed","topic":..}`: the answer to an
/// unsubscribe, after which nothing more of that topic comes.
pub fn unsubscribed(topic: &str) -> String {
    let topic = serde_json::Value::from(topic);
    format!(r#"{{"type":"statecast.unsubscribed","topic":{topic}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token's escapes are decoded, its `+` kept (base64's, sent raw),
    /// and one that does not decode is compared as sent.
    #[test]
    fn a_token_is_decoded_but_its_plus_kept() {
        assert_eq!(query_token("q1%2BZx%2F8k%3D%3D"), "q1+Zx/8k==");
        assert_eq!(query_token("q1+Zx/8k=="), "q1+Zx/8k==");
        assert_eq!(query_token("a%20b"), "a b");
        assert_eq!(query_token("%zz"), "%zz");
        assert_eq!(query_token("%ff"), "%ff");
        assert_eq!(query_token(""), "");
    }

    /// Repeated parameters come back in order, percent-decoded; a broken
    /// escape is an error, not a guess.
    #[test]
    fn query_values_are_every_value_decoded() {
        let q = Some("topic=queue&token=x&topic=adw-state%2Fab&since=queue%3A3&topic=");
        assert_eq!(
            query_values(q, "topic").unwrap(),
            ["queue", "adw-state/ab", ""]
        );
        assert_eq!(query_values(q, "since").unwrap(), ["queue:3"]);
        assert!(query_values(None, "topic").unwrap().is_empty());
        assert!(query_values(Some("topic=%zz"), "topic").is_err());
        assert!(query_values(Some("topic=%4"), "topic").is_err());
        assert!(query_values(Some("topic=%ff"), "topic").is_err());
    }

    /// A since splits at the last colon; a vector is since values joined
    /// by commas, and any bad part spoils it.
    #[test]
    fn since_and_vectors_parse_and_round_trip() {
        assert_eq!(parse_since("adw-state/x:12"), Some(("adw-state/x", 12)));
        for bad in [
            "queue",
            ":3",
            "queue:",
            "queue:-1",
            "queue:1x",
            "q:99999999999999999999",
        ] {
            assert_eq!(parse_since(bad), None, "{bad}");
        }
        let mut v = String::new();
        push_vector(&mut v, "a", 12);
        push_vector(&mut v, "b", 4);
        assert_eq!(v, "a:12,b:4");
        assert_eq!(parse_vector(&v), Some(vec![("a", 12), ("b", 4)]));
        assert_eq!(parse_vector(" "), Some(vec![]));
        assert_eq!(parse_vector("a:1,,b:2"), None);
        assert_eq!(parse_vector("17"), None);
    }

    /// Commands are read; what is not a command is ignored; a malformed
    /// command is an error saying what is wrong.
    #[test]
    fn commands_parse_or_say_why_not() {
        assert_eq!(
            parse_command(r#"{"op":"subscribe","topics":["a","b"],"since":{"a":12}}"#),
            Some(Ok(Command::Subscribe {
                topics: vec!["a".into(), "b".into()],
                since: vec![("a".into(), 12)]
            }))
        );
        assert_eq!(
            parse_command(r#"{"op":"unsubscribe","topics":[]}"#),
            Some(Ok(Command::Unsubscribe { topics: vec![] }))
        );
        for ignored in ["hello", "[1]", r#"{"type":"ping"}"#, "{}"] {
            assert_eq!(parse_command(ignored), None, "{ignored}");
        }
        for bad in [
            r#"{"op":"dance"}"#,
            r#"{"op":1}"#,
            r#"{"op":"subscribe"}"#,
            r#"{"op":"subscribe","topics":"a"}"#,
            r#"{"op":"subscribe","topics":[1]}"#,
            r#"{"op":"subscribe","topics":["a"],"since":{"a":-1}}"#,
            r#"{"op":"subscribe","topics":["a"],"since":[1]}"#,
            r#"{"op":"unsubscribe","topics":null}"#,
        ] {
            assert!(matches!(parse_command(bad), Some(Err(_))), "{bad}");
        }
    }

    /// Control messages are JSON with the reason escaped.
    #[test]
    fn control_messages_are_json() {
        let e: serde_json::Value =
            serde_json::from_str(&error(Some("a"), 404, r#"unknown topic "a""#)).unwrap();
        assert_eq!(e["type"], "statecast.error");
        assert_eq!(e["topic"], "a");
        assert_eq!(e["status"], 404);
        assert_eq!(e["reason"], r#"unknown topic "a""#);
        assert_eq!(
            error(None, 400, "x"),
            r#"{"type":"statecast.error","status":400,"reason":"x"}"#
        );
        assert_eq!(
            unsubscribed("a"),
            r#"{"type":"statecast.unsubscribed","topic":"a"}"#
        );
    }
}
