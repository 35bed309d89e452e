//! The polled-URL provider (`--poll TOPIC=URL[@INTERVAL]`): a thread per
//! entry GETs a plain-HTTP URL and publishes the JSON when it differs from
//! what it last published, so an existing REST backend can feed topics
//! without changing. Failures keep the last snapshot, back off, are logged
//! when the state changes, and show in `/healthz`.

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::providers::source::Source;
use crate::publisher::Publisher;
use crate::wire::http::{self, BodyKind, ParsedBody};

/// One `--poll` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSpec {
    pub topic: String,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    pub interval: Duration,
}

impl fmt::Display for PollSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// Parses `TOPIC=http://HOST[:PORT]/PATH[@INTERVAL]`.
pub fn parse_spec(s: &str, default_interval: Duration) -> Result<PollSpec, String> {
    let (topic, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not TOPIC=URL[@INTERVAL]"))?;
    let (url, interval) = match rest.rsplit_once('@') {
        Some((url, interval)) if !interval.contains('/') => {
            (url, crate::config::parse_duration(interval)?)
        }
        _ => (rest, default_interval),
    };
    let Some(after) = url.strip_prefix("http://") else {
        return Err(format!(
            "{url:?}: only plain http:// URLs are supported (put a local proxy before https)"
        ));
    };
    let (authority, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    // An IPv6 literal is bracketed (RFC 3986 §3.2.2); only a colon after
    // the closing bracket starts the port.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed [ in the host"))?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(port) => port
            .parse()
            .map_err(|_| format!("{url:?}: {port:?} is not a port"))?,
        None => 80,
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(PollSpec {
        topic: topic.to_owned(),
        host: host.to_owned(),
        port,
        path: path.to_owned(),
        interval,
    })
}

/// Limits for one fetch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_bytes: usize,
}

/// GETs the URL and returns its body, which must be a 200 with valid JSON.
pub fn fetch(spec: &PollSpec, limits: Limits) -> Result<String, String> {
    let deadline = Instant::now() + limits.timeout;
    let addr = (spec.host.as_str(), spec.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", spec.host))?
        .next()
        .ok_or_else(|| format!("{} resolves to nothing", spec.host))?;
    let mut stream = TcpStream::connect_timeout(&addr, limits.timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream
        .set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    // One write: `write!` on a socket would send each piece on its own.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: statecast/{}\r\n\r\n",
        spec.path,
        spec.host,
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        if Instant::now() >= deadline {
            return Err(format!("no complete response within {:?}", limits.timeout));
        }
        stream
            .set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no complete response within {:?}", limits.timeout));
            }
            Err(e) => return Err(format!("reading the response: {e}")),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(body) = parse_response(&buf, n == 0, limits.max_bytes)? {
            let raw: &serde_json::value::RawValue =
                serde_json::from_slice(&body).map_err(|e| format!("invalid JSON: {e}"))?;
            return Ok(raw.get().to_owned());
        }
        if n == 0 {
            return Err("connection closed before the response was complete".into());
        }
    }
}

/// Parses a response from what has arrived; `Ok(None)` asks for more.
fn parse_response(buf: &[u8], eof: bool, max: usize) -> Result<Option<Vec<u8>>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > http::MAX_HEAD => {
            return Err("response head too large".into());
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response: {e}")),
    };
    let code = response.code.unwrap_or(0);
    if code != 200 {
        return Err(format!(
            "HTTP {code} {}",
            response.reason.unwrap_or_default()
        ));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let kind = if header("transfer-encoding").is_some_and(|v| v == "chunked") {
        Some(BodyKind::Chunked)
    } else {
        header("content-length")
            .map(|v| v.parse().map(BodyKind::Length))
            .transpose()
            .map_err(|_| "invalid Content-Length".to_owned())?
    };
    let body = &buf[head_len..];
    match kind {
        Some(kind) => match http::parse_body(kind, body, max) {
            Ok(ParsedBody::Complete(body, _)) => Ok(Some(body)),
            Ok(ParsedBody::Partial) => Ok(None),
            Err(_) => Err(format!(
                "response body over the limit of {max} bytes or malformed"
            )),
        },
        // Delimited by the end of the connection.
        None if body.len() > max => Err(format!("response body over the limit of {max} bytes")),
        None if eof => Ok(Some(body.to_vec())),
        None => Ok(None),
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
        what: spec.to_string(),
        topic: spec.topic.clone(),
        interval: spec.interval,
    };
    source.spawn(publisher, move || fetch(&spec, limits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let d = Duration::from_secs(2);
        assert_eq!(
            parse_spec("queue=http://localhost:8000/api/queue@500ms", d),
            Ok(PollSpec {
                topic: "queue".into(),
                host: "localhost".into(),
                port: 8000,
                path: "/api/queue".into(),
                interval: Duration::from_millis(500),
            })
        );
        let s = parse_spec("system-status=http://backend/status?x=1", d).unwrap();
        assert_eq!(
            (s.port, s.path.as_str(), s.interval),
            (80, "/status?x=1", d)
        );
        assert!(
            parse_spec("queue=https://x/", d)
                .unwrap_err()
                .contains("http://")
        );
        assert!(parse_spec("queue", d).is_err());
        assert!(parse_spec("queue=http://x:port/", d).is_err());
        assert!(parse_spec("queue=http://x/@20", d).is_err());
    }

    #[test]
    fn responses_parse() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]";
        assert_eq!(parse_response(ok, false, 100), Ok(Some(b"[]".to_vec())));
        assert_eq!(parse_response(&ok[..30], false, 100), Ok(None));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked, false, 100),
            Ok(Some(b"{}".to_vec()))
        );
        let until_eof = b"HTTP/1.1 200 OK\r\n\r\n{\"a\":1}";
        assert_eq!(parse_response(until_eof, false, 100), Ok(None));
        assert_eq!(
            parse_response(until_eof, true, 100),
            Ok(Some(b"{\"a\":1}".to_vec()))
        );
        let err = parse_response(b"HTTP/1.1 503 Busy\r\n\r\n", false, 100).unwrap_err();
        assert_eq!(err, "HTTP 503 Busy");
        assert!(parse_response(ok, false, 1).is_err());
    }
}
