//! HTTP/1.1 as the server needs it: parsing a request head and body from a
//! byte buffer, routing by the one table of endpoints ([`ENDPOINTS`], which
//! `--help`, `docs/options.md` and the README's table follow too), the
//! RFC 6455 §4.2.1 upgrade checks, and building responses. No I/O; every
//! function works on byte slices.

use std::fmt::Write as _;

use crate::wire::deflate;
use tungstenite::handshake::derive_accept_key;

/// Largest request head accepted; a longer one gets 431.
pub const MAX_HEAD: usize = 8 << 10;

/// Most header lines parsed; more is treated as too large.
const MAX_HEADERS: usize = 64;

/// An HTTP status with its reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16, pub &'static str);

pub const OK: Status = Status(200, "OK");
pub const BAD_REQUEST: Status = Status(400, "Bad Request");
pub const NOT_FOUND: Status = Status(404, "Not Found");
pub const METHOD_NOT_ALLOWED: Status = Status(405, "Method Not Allowed");
pub const REQUEST_TIMEOUT: Status = Status(408, "Request Timeout");
pub const LENGTH_REQUIRED: Status = Status(411, "Length Required");
pub const PAYLOAD_TOO_LARGE: Status = Status(413, "Content Too Large");
pub const UNPROCESSABLE: Status = Status(422, "Unprocessable Content");
pub const UPGRADE_REQUIRED: Status = Status(426, "Upgrade Required");
pub const HEADERS_TOO_LARGE: Status = Status(431, "Request Header Fields Too Large");
pub const INTERNAL_ERROR: Status = Status(500, "Internal Server Error");
pub const NOT_IMPLEMENTED: Status = Status(501, "Not Implemented");
pub const UNAVAILABLE: Status = Status(503, "Service Unavailable");
pub const VERSION_NOT_SUPPORTED: Status = Status(505, "HTTP Version Not Supported");

/// A complete response, ready to queue, and whether the connection ends
/// after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status, as written in `bytes`.
    pub status: Status,
    pub bytes: Vec<u8>,
    pub close: bool,
}

impl Response {
    /// The same response with `lines` (complete header lines) added after
    /// its status line: for headers that depend on who asked, not on what
    /// was answered, such as [`cors`] on a refusal.
    #[must_use]
    pub fn with_headers(mut self, lines: &str) -> Response {
        if let Some(end) = self.bytes.windows(2).position(|w| w == b"\r\n") {
            let at = end + 2;
            self.bytes.splice(at..at, lines.bytes());
        }
        self
    }
}

/// Builds a response. `extra` holds complete header lines (`Name: value\r\n`).
pub fn response(
    status: Status,
    content_type: &str,
    extra: &str,
    body: &[u8],
    close: bool,
    head_only: bool,
) -> Response {
    let mut head = String::with_capacity(128 + extra.len());
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}",
        status.0,
        status.1,
        body.len()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    Response {
        status,
        bytes,
        close,
    }
}

/// A short plain-text error; errors before the head is understood always
/// close, since the rest of the stream cannot be trusted.
pub fn error(status: Status, reason: &str, extra: &str, close: bool) -> Response {
    let body = format!("{reason}\n");
    response(
        status,
        "text/plain; charset=utf-8",
        extra,
        body.as_bytes(),
        close,
        false,
    )
}

/// JSON with status 200.
pub fn json(body: &[u8], close: bool, head_only: bool) -> Response {
    response(OK, "application/json", "", body, close, head_only)
}

/// The head of a Server-Sent Events response: the body is the stream,
/// delimited by the connection's end. Proxies are asked not to buffer it.
/// `extra` holds complete header lines ([`cors`], say).
pub fn event_stream_head(extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n{extra}\r\n")
        .into_bytes()
}

/// The header lines that let a page from `origin`, already checked to be
/// allowed, read a response (an `EventSource` or a `fetch` from the
/// dashboard's dev server on another port).
pub fn cors(origin: Option<&str>) -> String {
    origin.map_or_else(String::new, |origin| {
        format!("Access-Control-Allow-Origin: {origin}\r\nVary: Origin\r\n")
    })
}

/// An SSE comment: keeps the connection and proxies awake.
pub const EVENT_STREAM_KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// The 101 that completes a WebSocket upgrade (RFC 6455 §4.2.2), with the
/// permessage-deflate answer when the extension was agreed.
pub fn switching_protocols(accept: &str, deflate: bool) -> Vec<u8> {
    let extension = if deflate { deflate::RESPONSE } else { "" };
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extension}\r\n"
    )
    .into_bytes()
}

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Length(usize),
    Chunked,
}

/// What the server needs from a request head, copied out of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    /// The query string, without its `?`.
    pub query: Option<String>,
    /// HTTP/1.x minor version.
    pub minor: u8,
    /// Whether the client wants the connection kept after this exchange.
    pub keep_alive: bool,
    pub body: BodyKind,
    pub expect_continue: bool,
    pub content_type: Option<String>,
    /// `Host`, as sent.
    pub host: Option<String>,
    /// `Sec-Fetch-Site`, `Sec-Fetch-Mode` and `Sec-Fetch-Dest`: what a
    /// browser says about who asked, and for what.
    pub fetch_site: Option<String>,
    pub fetch_mode: Option<String>,
    pub fetch_dest: Option<String>,
    /// `Upgrade` lists `websocket`.
    pub upgrade_websocket: bool,
    /// `Connection` lists `upgrade`.
    pub connection_upgrade: bool,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    /// A `Sec-WebSocket-Extensions` offer of permessage-deflate this server
    /// can accept.
    pub deflate: bool,
    /// `Origin`, sent by browsers.
    pub origin: Option<String>,
    /// `Authorization`, whole.
    pub authorization: Option<String>,
    /// `Last-Event-ID`, sent by a reconnecting `EventSource`.
    pub last_event_id: Option<String>,
    /// `Forwarded`, `X-Forwarded-For` or `X-Real-IP` is present: a proxy
    /// passed this request on, so its sender may be anyone it serves.
    pub forwarded: bool,
}

impl Head {
    /// The value of `name` in the query string, if present, as sent: a
    /// parameter that may be escaped is decoded by its reader
    /// (`mux::query_values`, `mux::query_token`).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }

    /// The token of an `Authorization: Bearer` header.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.authorization.as_deref()?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

/// The outcome of looking at the start of a buffer for a request head.
#[derive(Debug)]
pub enum ParsedHead {
    /// More bytes are needed.
    Partial,
    /// A complete head of `len` bytes.
    Complete { head: Box<Head>, len: usize },
}

/// Whether a comma-separated header value lists `token`, ignoring case.
fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses a request head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Result<ParsedHead, Response> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(too_large_head()),
        Ok(httparse::Status::Partial) => return Ok(ParsedHead::Partial),
        Err(e) => return Err(refuse_unparsable(buf, e)),
    };
    if len > MAX_HEAD {
        return Err(too_large_head());
    }
    let minor = req.version.unwrap_or(1);
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };
    let mut head = Head {
        method: req.method.unwrap_or("GET").to_owned(),
        path: path.to_owned(),
        query,
        minor,
        keep_alive: minor >= 1,
        body: BodyKind::Length(0),
        expect_continue: false,
        content_type: None,
        host: None,
        fetch_site: None,
        fetch_mode: None,
        fetch_dest: None,
        upgrade_websocket: false,
        connection_upgrade: false,
        ws_key: None,
        ws_version: None,
        deflate: false,
        origin: None,
        authorization: None,
        last_event_id: None,
        forwarded: false,
    };
    let mut framing = Framing::default();
    for h in req.headers.iter() {
        read_header(&mut head, &mut framing, h.name, h.value)?;
    }
    head.body = framing.body()?;
    Ok(ParsedHead::Complete {
        head: Box::new(head),
        len,
    })
}

/// The answer to a head httparse cannot read.
fn refuse_unparsable(buf: &[u8], e: httparse::Error) -> Response {
    match e {
        httparse::Error::TooManyHeaders => too_large_head(),
        httparse::Error::Version if names_other_http_version(buf) => error(
            VERSION_NOT_SUPPORTED,
            "only HTTP/1.0 and HTTP/1.1 are supported",
            "",
            true,
        ),
        e => error(BAD_REQUEST, &format!("malformed request: {e}"), "", true),
    }
}

/// What the headers say about where the body ends.
#[derive(Default)]
struct Framing {
    content_length: Option<usize>,
    chunked: bool,
}

impl Framing {
    fn content_length(&mut self, value: &[u8]) -> Result<(), Response> {
        let parsed = std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<usize>().ok());
        match (parsed, self.content_length) {
            (None, _) => Err(error(BAD_REQUEST, "invalid Content-Length", "", true)),
            // RFC 9112 §6.3: differing lengths make the message unreadable.
            (Some(n), Some(m)) if n != m => {
                Err(error(BAD_REQUEST, "conflicting Content-Length", "", true))
            }
            (Some(n), _) => {
                self.content_length = Some(n);
                Ok(())
            }
        }
    }

    fn transfer_encoding(&mut self, value: &[u8]) -> Result<(), Response> {
        // Only `chunked` alone is understood (RFC 9112 §6.1); anything
        // else would leave the body's end unknown.
        if !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(error(
                NOT_IMPLEMENTED,
                "unsupported Transfer-Encoding (only chunked is supported)",
                "",
                true,
            ));
        }
        self.chunked = true;
        Ok(())
    }

    fn body(&self) -> Result<BodyKind, Response> {
        match (self.chunked, self.content_length) {
            // RFC 9112 §6.1: a request with both is a smuggling attempt or a bug.
            (true, Some(_)) => Err(error(
                BAD_REQUEST,
                "both Transfer-Encoding and Content-Length",
                "",
                true,
            )),
            (true, None) => Ok(BodyKind::Chunked),
            (false, n) => Ok(BodyKind::Length(n.unwrap_or(0))),
        }
    }
}

/// Takes in one header; the ones statecast does not use are ignored.
fn read_header(
    head: &mut Head,
    framing: &mut Framing,
    name: &str,
    value: &[u8],
) -> Result<(), Response> {
    let is = |wanted: &str| name.eq_ignore_ascii_case(wanted);
    let text = || String::from_utf8_lossy(value).trim().to_owned();
    if is("content-length") {
        framing.content_length(value)?;
    } else if is("transfer-encoding") {
        framing.transfer_encoding(value)?;
    } else if is("connection") {
        // HTTP/1.0 keep-alive is not offered: the response would need
        // its own header, and no client of ours needs it.
        if lists(value, "close") {
            head.keep_alive = false;
        }
        head.connection_upgrade = lists(value, "upgrade");
    } else if is("expect") {
        if !value.eq_ignore_ascii_case(b"100-continue") {
            return Err(error(
                Status(417, "Expectation Failed"),
                "only Expect: 100-continue is supported",
                "",
                true,
            ));
        }
        head.expect_continue = head.minor >= 1;
    } else if is("host") {
        head.host = Some(text());
    } else if is("sec-fetch-site") {
        head.fetch_site = Some(text());
    } else if is("sec-fetch-mode") {
        head.fetch_mode = Some(text());
    } else if is("sec-fetch-dest") {
        head.fetch_dest = Some(text());
    } else if is("upgrade") {
        head.upgrade_websocket = lists(value, "websocket");
    } else if is("sec-websocket-key") {
        head.ws_key = Some(text());
    } else if is("sec-websocket-version") {
        head.ws_version = Some(text());
    } else if is("sec-websocket-extensions") {
        // The header may come more than once: any acceptable offer counts.
        head.deflate |= deflate::accepts(&text());
    } else if is("content-type") {
        head.content_type = Some(text());
    } else if is("origin") {
        head.origin = Some(text());
    } else if is("authorization") {
        head.authorization = Some(text());
    } else if is("last-event-id") {
        head.last_event_id = Some(text());
    } else if is("forwarded") || is("x-forwarded-for") || is("x-real-ip") {
        head.forwarded = true;
    }
    Ok(())
}

/// Whether the request line ends in a well-formed `HTTP/x.y` that is
/// simply not 1.x: that gets 505, anything else is malformed.
fn names_other_http_version(buf: &[u8]) -> bool {
    let line = buf
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(buf);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(line);
    match version.strip_prefix(b"HTTP/") {
        Some([major, b'.', minor]) => major.is_ascii_digit() && minor.is_ascii_digit(),
        Some([major]) => major.is_ascii_digit(),
        _ => false,
    }
}

fn too_large_head() -> Response {
    error(
        HEADERS_TOO_LARGE,
        &format!("request head over {MAX_HEAD} bytes"),
        "",
        true,
    )
}

pub fn too_large_body(max: usize) -> Response {
    error(
        PAYLOAD_TOO_LARGE,
        &format!("body over the limit of {max} bytes"),
        "",
        true,
    )
}

/// Largest trailer section after a chunked body; more gets 431.
pub const MAX_TRAILERS: usize = 8 << 10;

/// Largest chunk-size line (with extensions); a longer one is malformed.
const MAX_CHUNK_LINE: usize = 1024;

/// The most bytes one request may take on the wire, head, chunk framing,
/// trailers and body together, when a body may hold `max_body`: twice the
/// body, so honest chunking always fits, plus the head's and trailers' own
/// limits.
pub fn max_request_bytes(max_body: usize) -> usize {
    max_body
        .saturating_mul(2)
        .saturating_add(MAX_HEAD + MAX_TRAILERS)
}

/// Where a chunked body's decoding stands (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, with this much left.
    Data(usize),
    /// After a chunk's data, expecting its CRLF.
    DataEnd,
    /// After the last chunk, in the trailer section, this many bytes in.
    Trailers(usize),
}

/// A request body read as its bytes arrive: every byte is looked at once,
/// so a body sent a byte at a time costs time linear in its size.
#[derive(Debug)]
pub struct BodyReader {
    body: Vec<u8>,
    /// Bytes of the body still to come (`Content-Length`), or where the
    /// chunked decoding stands.
    framing: Result<usize, Chunk>,
    max_body: usize,
    /// Bytes of the request taken so far, its head included.
    taken: usize,
    max_total: usize,
}

impl BodyReader {
    /// Reads the body `kind` announces for a request whose head took
    /// `head_len` bytes. A declared length over `max_body` is refused here,
    /// before a byte of it is read.
    pub fn new(kind: BodyKind, head_len: usize, max_body: usize) -> Result<BodyReader, Response> {
        let framing = match kind {
            BodyKind::Length(n) if n > max_body => return Err(too_large_body(max_body)),
            BodyKind::Length(n) => Ok(n),
            BodyKind::Chunked => Err(Chunk::Size),
        };
        Ok(BodyReader {
            body: Vec::new(),
            framing,
            max_body,
            taken: head_len,
            max_total: max_request_bytes(max_body),
        })
    }

    /// Whether the whole body has been read.
    pub fn is_complete(&self) -> bool {
        self.framing == Ok(0)
    }

    /// The body, once complete.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// Takes what it can from the front of `input` and returns how many
    /// bytes it used. Bytes it leaves (a partial chunk-size line, say) are
    /// to be offered again with more behind them.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, Response> {
        let mut at = 0;
        while !self.is_complete() {
            let rest = input.get(at..).unwrap_or_default();
            let used = match self.framing {
                Ok(left) => {
                    let n = self.take(left, rest);
                    self.framing = Ok(left - n);
                    n
                }
                Err(chunk) => self.chunked(chunk, rest)?,
            };
            if used == 0 {
                break;
            }
            at += used;
            self.taken = self.taken.saturating_add(used);
            if self.taken > self.max_total {
                return Err(error(
                    PAYLOAD_TOO_LARGE,
                    &format!("request over the limit of {} bytes", self.max_total),
                    "",
                    true,
                ));
            }
        }
        Ok(at)
    }

    /// Up to `left` bytes of body from the front of `rest`; returns how
    /// many it took. Both framings grow the body here, so the bound on a
    /// slice of hostile input is written once.
    fn take(&mut self, left: usize, rest: &[u8]) -> usize {
        let n = left.min(rest.len());
        self.body
            .extend_from_slice(rest.get(..n).unwrap_or_default());
        n
    }

    /// One step of chunked decoding; returns the bytes it used, 0 when it
    /// needs more. Each state's rule (RFC 9112 §7.1) is a method of its
    /// own, so each can be read against the grammar alone.
    fn chunked(&mut self, chunk: Chunk, rest: &[u8]) -> Result<usize, Response> {
        match chunk {
            Chunk::Size => self.chunk_size(rest),
            Chunk::Data(left) => {
                let n = self.take(left, rest);
                self.framing = Err(if n == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n)
                });
                Ok(n)
            }
            Chunk::DataEnd => self.chunk_end(rest),
            Chunk::Trailers(seen) => self.trailer_line(seen, rest),
        }
    }

    /// A chunk-size line. The size is checked against the body's limit
    /// before any of the chunk is read, so a huge size costs nothing; a
    /// line that never ends is cut off at `MAX_CHUNK_LINE`.
    fn chunk_size(&mut self, rest: &[u8]) -> Result<usize, Response> {
        match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete((used, size))) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if self.body.len().saturating_add(size) > self.max_body {
                    return Err(too_large_body(self.max_body));
                }
                self.framing = Err(if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                });
                Ok(used)
            }
            Ok(httparse::Status::Partial) if rest.len() > MAX_CHUNK_LINE => {
                Err(malformed_chunked("chunk-size line too long"))
            }
            Ok(httparse::Status::Partial) => Ok(0),
            Err(_) => Err(malformed_chunked("invalid chunk size")),
        }
    }

    /// The CRLF after a chunk's data. A lone `\r` may be the first half of
    /// one, so it waits for more; any other byte is refused at once.
    fn chunk_end(&mut self, rest: &[u8]) -> Result<usize, Response> {
        match rest.get(..2) {
            None if rest.first().is_none_or(|&b| b == b'\r') => Ok(0),
            Some(b"\r\n") => {
                self.framing = Err(Chunk::Size);
                Ok(2)
            }
            _ => Err(malformed_chunked("chunk data not followed by CRLF")),
        }
    }

    /// One line of the trailer section, `seen` bytes into it. Trailer
    /// fields are skipped, not read; an empty line ends the body. The
    /// section's size is counted even before a line ends, so a sender
    /// cannot make it grow without bound by never ending one.
    fn trailer_line(&mut self, seen: usize, rest: &[u8]) -> Result<usize, Response> {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            if seen.saturating_add(rest.len()) > MAX_TRAILERS {
                return Err(too_large_trailers());
            }
            return Ok(0);
        };
        let seen = seen.saturating_add(end + 2);
        if seen > MAX_TRAILERS {
            return Err(too_large_trailers());
        }
        self.framing = if end == 0 {
            Ok(0)
        } else {
            Err(Chunk::Trailers(seen))
        };
        Ok(end + 2)
    }
}

/// The 400 for a chunked body that breaks RFC 9112's grammar, naming the
/// rule it broke.
fn malformed_chunked(why: &str) -> Response {
    error(
        BAD_REQUEST,
        &format!("malformed chunked body: {why}"),
        "",
        true,
    )
}

/// The 431 for a trailer section over `MAX_TRAILERS`.
fn too_large_trailers() -> Response {
    error(
        HEADERS_TOO_LARGE,
        &format!("trailers over {MAX_TRAILERS} bytes"),
        "",
        true,
    )
}

/// What reading a connection's input came to.
#[derive(Debug)]
pub enum Next {
    /// More bytes are needed.
    Partial,
    /// A new request's head and the bytes it took, consumed. The caller
    /// routes and authorizes it, then calls [`RequestReader::admit`] or
    /// answers.
    Head(Box<Head>, usize),
    /// The admitted request waits for `100 Continue` before its body.
    Continue,
    /// The admitted request is complete.
    Complete(Box<Head>, Route, Vec<u8>),
    /// Malformed or too large: answer and close.
    Refused(Response),
}

/// Reads requests from a connection's input: a head, then, only once the
/// request is admitted, its body. Nothing is read twice.
#[derive(Debug, Default)]
pub struct RequestReader {
    admitted: Option<Box<Admitted>>,
}

#[derive(Debug)]
struct Admitted {
    head: Box<Head>,
    route: Route,
    body: BodyReader,
    continue_sent: bool,
}

impl RequestReader {
    /// Takes what it can from the front of `input`; returns how many bytes
    /// it used and what they came to.
    pub fn next(&mut self, input: &[u8]) -> (usize, Next) {
        let Some(admitted) = &mut self.admitted else {
            return match parse_head(input) {
                Ok(ParsedHead::Partial) => (0, Next::Partial),
                Ok(ParsedHead::Complete { head, len }) => (len, Next::Head(head, len)),
                Err(response) => (0, Next::Refused(response)),
            };
        };
        let used = match admitted.body.feed(input) {
            Ok(used) => used,
            Err(response) => return (0, Next::Refused(response)),
        };
        if !admitted.body.is_complete() {
            if admitted.head.expect_continue && !admitted.continue_sent {
                admitted.continue_sent = true;
                return (used, Next::Continue);
            }
            return (used, Next::Partial);
        }
        match self.admitted.take() {
            Some(done) => {
                let Admitted {
                    head, route, body, ..
                } = *done;
                (used, Next::Complete(head, route, body.into_body()))
            }
            None => (used, Next::Partial),
        }
    }

    /// Lets the request whose head [`next`](Self::next) returned read its
    /// body, of at most `max_body` bytes (413 otherwise). `head_len` is
    /// what its head took, counted toward the request's total.
    pub fn admit(
        &mut self,
        head: Box<Head>,
        head_len: usize,
        route: Route,
        max_body: usize,
    ) -> Result<(), Response> {
        let body = BodyReader::new(head.body, head_len, max_body)?;
        self.admitted = Some(Box::new(Admitted {
            head,
            route,
            body,
            continue_sent: false,
        }));
        Ok(())
    }

    /// Whether a request is admitted and reading its body.
    pub fn is_reading_body(&self) -> bool {
        self.admitted.is_some()
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A WebSocket on a topic.
    Subscribe(String),
    /// Server-Sent Events on a topic.
    Stream(String),
    /// A WebSocket carrying the topics its `topic=` parameters name, and
    /// those its subscribe commands add.
    MuxSocket,
    /// Server-Sent Events carrying the topics its `topic=` parameters name.
    MuxStream,
    /// A new snapshot for a topic.
    Publish(String),
    /// An event to every subscriber.
    Broadcast,
    /// A topic's current message, read once.
    State(String),
    Health,
    /// Whether the server takes new clients, for a load balancer.
    Ready,
    /// Prometheus metrics.
    Metrics,
    /// The live page.
    Page,
    /// The JavaScript client as a classic script.
    Script,
    /// The JavaScript client as an ES module.
    Module,
    /// The client's TypeScript declarations.
    Types,
    /// The path exists, the method does not: 405 with this `Allow`.
    WrongMethod(&'static str),
    NotFound,
}

/// The word that stands for a topic at the end of a path pattern.
pub const TOPIC: &str = "<topic>";

/// One endpoint: what [`route`] matches, and what `--help` and the README
/// say of it.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// The methods served, as a 405's `Allow` lists them.
    pub allow: &'static str,
    /// The paths that reach it; one ending in [`TOPIC`] takes the rest of
    /// the path as the topic.
    pub paths: &'static [&'static str],
    /// The route a request here takes, given its topic (ignored by a
    /// route without one).
    pub route: fn(String) -> Route,
    /// What it does, in a line of `--help`.
    pub help: &'static str,
}

/// Every endpoint, in the order `--help` and the README list them. The
/// router reads this table, so an endpoint exists exactly when it is
/// listed; what it requires comes from [`Route::requires`].
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        allow: "GET",
        paths: &["/api/v1/ws/<topic>"],
        route: Route::Subscribe,
        help: "WebSocket: snapshot now, updates as they happen",
    },
    Endpoint {
        allow: "POST",
        paths: &["/api/v1/publish/<topic>"],
        route: Route::Publish,
        help: "JSON body becomes the topic's snapshot; 422 with the failing JSON pointer \
               if its schema refuses it",
    },
    Endpoint {
        allow: "GET",
        paths: &["/api/v1/sse/<topic>"],
        route: Route::Stream,
        help: "the same messages as Server-Sent Events",
    },
    Endpoint {
        allow: "GET",
        paths: &["/api/v1/ws"],
        route: |_| Route::MuxSocket,
        help: "WebSocket on the topics ?topic=a&topic=b names, each message with its \"topic\"; \
               subscribe and unsubscribe commands add and drop topics",
    },
    Endpoint {
        allow: "GET",
        paths: &["/api/v1/sse"],
        route: |_| Route::MuxStream,
        help: "Server-Sent Events on the topics ?topic=a&topic=b names, the event name \
               each message's topic",
    },
    Endpoint {
        allow: "POST",
        paths: &["/api/v1/broadcast"],
        route: |_| Route::Broadcast,
        help: "{\"type\":..,\"data\":..} to every subscriber, not retained",
    },
    Endpoint {
        allow: "GET, HEAD",
        paths: &["/api/v1/state/<topic>"],
        route: Route::State,
        help: "the message a new subscriber would get now",
    },
    Endpoint {
        allow: "GET, HEAD",
        paths: &["/healthz"],
        route: |_| Route::Health,
        help: "status; with the subscribe token (if one is set) uptime, connections, \
               counters and providers",
    },
    Endpoint {
        allow: "GET, HEAD",
        paths: &["/readyz"],
        route: |_| Route::Ready,
        help: "200 while the server takes new clients, whatever its providers and Redis \
               say; 503 past --max-connections, or to a request under way when a drain \
               begins (new connections are then refused): for load balancers",
    },
    Endpoint {
        allow: "GET, HEAD",
        paths: &["/metrics"],
        route: |_| Route::Metrics,
        help: "Prometheus metrics",
    },
    Endpoint {
        allow: "GET, HEAD",
        paths: &["/", "/index.html"],
        route: |_| Route::Page,
        help: "the live page",
    },
    Endpoint {
        allow: "GET, HEAD",
        paths: &["/statecast.js"],
        route: |_| Route::Script,
        help: "the page's JavaScript client, as a classic script (the `statecast` global)",
    },
    Endpoint {
        allow: "GET, HEAD",
        paths: &["/statecast.mjs"],
        route: |_| Route::Module,
        help: "the same client as an ES module",
    },
    Endpoint {
        allow: "GET, HEAD",
        paths: &["/statecast.d.ts"],
        route: |_| Route::Types,
        help: "the client's TypeScript declarations",
    },
];

impl Endpoint {
    /// The topic `path` names if it reaches this endpoint (empty for an
    /// endpoint without one).
    fn matches<'p>(&self, path: &'p str) -> Option<&'p str> {
        self.paths
            .iter()
            .find_map(|pattern| match pattern.strip_suffix(TOPIC) {
                Some(prefix) => path.strip_prefix(prefix),
                None => (path == *pattern).then_some(""),
            })
    }

    /// Whether `method` is one this endpoint serves.
    fn allows(&self, method: &str) -> bool {
        self.allow.split(", ").any(|m| m == method)
    }

    /// Who may use it, in words: [`Requires::in_words`] of its route.
    pub fn access(&self) -> &'static str {
        (self.route)(String::new()).requires().in_words()
    }
}

/// What a route is for, as its refusals are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Publish or broadcast.
    Publish,
    /// A WebSocket or an SSE stream.
    Subscribe,
    Other,
}

/// The access a route needs, which `server::access` enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requires<'a> {
    /// Anyone whose `Host` and origin pass may ask.
    Nothing,
    /// Reading this topic: the subscribe credentials.
    Read(&'a str),
    /// Reading each topic the request names, checked one by one once the
    /// credential is known: the subscribe credentials.
    ReadEach,
    /// Writing this topic: the publish credentials.
    Write(&'a str),
    /// Writing to every subscriber of every topic.
    WriteAll,
    /// The server's counters: a read credential, unless `--public-metrics`.
    Metrics,
}

impl Requires<'_> {
    /// The credential, as the README's endpoint table says it.
    pub fn in_words(&self) -> &'static str {
        match self {
            Requires::Nothing => "public",
            Requires::Read(_) => "subscribe token or JWT `topics`",
            Requires::ReadEach => "subscribe token or JWT `topics`, for each topic",
            Requires::Write(_) => "publish token or JWT `publish`",
            Requires::WriteAll => "publish token or JWT `publish` with `*`",
            Requires::Metrics => {
                "subscribe token or JWT `topics` with `*`; public with `--public-metrics`"
            }
        }
    }
}

impl Route {
    pub fn purpose(&self) -> Purpose {
        match self {
            Route::Publish(_) | Route::Broadcast => Purpose::Publish,
            Route::Subscribe(_) | Route::Stream(_) | Route::MuxSocket | Route::MuxStream => {
                Purpose::Subscribe
            }
            _ => Purpose::Other,
        }
    }

    /// The access this route needs: the one place it is decided, and what
    /// `server::access` enforces and the README's endpoint table states.
    ///
    /// The `match` has no wildcard arm on purpose: a variant added to
    /// [`Route`] without an arm here is a compile error (E0004,
    /// "non-exhaustive patterns"), so a new endpoint cannot come out public
    /// by default; whoever adds it must choose what it requires.
    pub fn requires(&self) -> Requires<'_> {
        match self {
            Route::Subscribe(topic) | Route::Stream(topic) | Route::State(topic) => {
                Requires::Read(topic)
            }
            Route::MuxSocket | Route::MuxStream => Requires::ReadEach,
            Route::Publish(topic) => Requires::Write(topic),
            Route::Broadcast => Requires::WriteAll,
            Route::Metrics => Requires::Metrics,
            // `/healthz` gives its details only to a reader; the page and
            // the script hold no data.
            Route::Health | Route::Page | Route::Script | Route::Module | Route::Types => {
                Requires::Nothing
            }
            // A load balancer's probe carries no credential, and the answer
            // holds nothing but whether new clients are taken, which a
            // connect attempt tells anyone anyway.
            Route::Ready => Requires::Nothing,
            // Answered with 405 and 404, saying nothing of any topic.
            Route::WrongMethod(_) | Route::NotFound => Requires::Nothing,
        }
    }
}

/// Routes a method and path by [`ENDPOINTS`]: the first endpoint whose
/// path matches decides, with 405 for a method it does not serve.
pub fn route(method: &str, path: &str) -> Route {
    for endpoint in ENDPOINTS {
        if let Some(topic) = endpoint.matches(path) {
            return if endpoint.allows(method) {
                (endpoint.route)(topic.to_owned())
            } else {
                Route::WrongMethod(endpoint.allow)
            };
        }
    }
    Route::NotFound
}

/// Checks a WebSocket opening handshake (RFC 6455 §4.2.1) and returns the
/// `Sec-WebSocket-Accept` value, or the response refusing it.
pub fn check_upgrade(head: &Head) -> Result<String, Response> {
    let refuse = |why: &str| Err(error(BAD_REQUEST, why, "", true));
    if head.method != "GET" {
        return refuse("a WebSocket upgrade must be a GET");
    }
    if head.minor < 1 {
        return refuse("a WebSocket upgrade needs HTTP/1.1");
    }
    if !head.upgrade_websocket {
        return refuse("expected a WebSocket upgrade (Upgrade: websocket)");
    }
    if !head.connection_upgrade {
        return refuse("expected Connection: Upgrade");
    }
    if head.host.is_none() {
        return refuse("missing Host header");
    }
    match head.ws_version.as_deref() {
        Some("13") => {}
        // RFC 6455 §4.2.2: answer an unsupported version with the versions
        // the server does support.
        Some(_) | None => {
            return Err(error(
                UPGRADE_REQUIRED,
                "unsupported Sec-WebSocket-Version (this server speaks 13)",
                "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
                true,
            ));
        }
    }
    match head.ws_key.as_deref() {
        Some(key) if is_valid_key(key) => Ok(derive_accept_key(key.as_bytes())),
        Some(_) => refuse("Sec-WebSocket-Key is not 16 bytes of base64"),
        None => refuse("missing Sec-WebSocket-Key"),
    }
}

/// RFC 6455 §4.1: the key is a base64-encoded 16-byte value, so exactly 22
/// base64 characters (the last of which carries only 2 bits) and `==`.
fn is_valid_key(key: &str) -> bool {
    let Some((chars, b"==")) = key.as_bytes().split_at_checked(22) else {
        return false;
    };
    chars
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        && matches!(chars.last(), Some(b'A' | b'Q' | b'g' | b'w'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        match parse_head(raw.as_bytes()) {
            Ok(ParsedHead::Complete { head, len }) => {
                assert_eq!(len, raw.len());
                *head
            }
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    fn status_of(r: Response) -> u16 {
        r.status.0
    }

    const UPGRADE: &str = "GET /api/v1/ws/queue HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_sample_key_gives_rfc_accept() {
        assert_eq!(
            check_upgrade(&head(UPGRADE)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn bad_upgrades_are_refused_with_the_right_status() {
        let cases = [
            (UPGRADE.replace("Upgrade: websocket\r\n", ""), 400),
            (UPGRADE.replace("keep-alive, Upgrade", "keep-alive"), 400),
            (UPGRADE.replace("Host: x\r\n", ""), 400),
            (UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"), 400),
            (
                UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
            ),
            (UPGRADE.replace("Version: 13", "Version: 8"), 426),
            (UPGRADE.replace("Sec-WebSocket-Version: 13\r\n", ""), 426),
            (UPGRADE.replace("HTTP/1.1", "HTTP/1.0"), 400),
        ];
        for (raw, status) in cases {
            let err = check_upgrade(&head(&raw)).unwrap_err();
            assert_eq!(status_of(err.clone()), status, "{raw}");
            assert!(err.close);
        }
        let err = check_upgrade(&head(&UPGRADE.replace("Version: 13", "Version: 8"))).unwrap_err();
        assert!(
            String::from_utf8(err.bytes)
                .unwrap()
                .contains("Sec-WebSocket-Version: 13\r\n")
        );
    }

    #[test]
    fn partial_heads_wait_and_oversized_heads_get_431() {
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHo"),
            Ok(ParsedHead::Partial)
        ));
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(status_of(parse_head(big.as_bytes()).unwrap_err()), 431);
        assert_eq!(
            status_of(parse_head(b"GET / HTTP/3.0\r\n\r\n").unwrap_err()),
            505
        );
        assert_eq!(
            status_of(parse_head(b"G\x01T / HTTP/1.1\r\n\r\n").unwrap_err()),
            400
        );
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        assert!(head("GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    /// Feeds `input` to a body reader `step` bytes at a time, as reads
    /// would deliver it; returns the body and the bytes it used.
    fn read_body(
        kind: BodyKind,
        input: &[u8],
        max: usize,
        step: usize,
    ) -> Result<Option<(Vec<u8>, usize)>, Response> {
        let mut reader = BodyReader::new(kind, 0, max)?;
        let mut pending = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            let n = reader.feed(&pending)?;
            pending.drain(..n);
            used += n;
            if reader.is_complete() {
                return Ok(Some((reader.into_body(), used)));
            }
        }
        Ok(reader.is_complete().then(|| (Vec::new(), used)))
    }

    #[test]
    fn bodies_by_length_and_chunked() {
        assert_eq!(read_body(BodyKind::Length(3), b"ab", 10, 1), Ok(None));
        assert_eq!(
            read_body(BodyKind::Length(3), b"abcGET", 10, 6),
            Ok(Some((b"abc".to_vec(), 3)))
        );
        assert_eq!(
            status_of(read_body(BodyKind::Length(11), b"", 10, 1).unwrap_err()),
            413
        );
        let chunked = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in 1..chunked.len() {
            assert_eq!(
                read_body(BodyKind::Chunked, chunked, 10, step),
                Ok(Some((b"abcde".to_vec(), chunked.len() - 4))),
                "read {step} bytes at a time"
            );
            assert_eq!(
                read_body(BodyKind::Chunked, &chunked[..chunked.len() - 5], 10, step),
                Ok(None),
                "cut short, read {step} at a time"
            );
        }
        assert_eq!(
            status_of(read_body(BodyKind::Chunked, chunked, 4, 1).unwrap_err()),
            413
        );
        assert_eq!(
            status_of(read_body(BodyKind::Chunked, b"3\r\nabcX\r\n", 10, 1).unwrap_err()),
            400
        );
    }

    /// Chunk data must be followed by CRLF: any other byte is refused
    /// when it arrives, not one byte later.
    #[test]
    fn a_byte_after_chunk_data_that_is_not_cr_is_refused_at_once() {
        // Fed one byte at a time: the `x` is refused the moment it comes,
        // without waiting for a byte after it; a lone `\r` waits.
        for step in [1, 64] {
            let refused = read_body(BodyKind::Chunked, b"1\r\nax", 10, step).unwrap_err();
            assert_eq!(status_of(refused), 400, "step {step}");
        }
        assert!(matches!(
            read_body(BodyKind::Chunked, b"1\r\na\r", 10, 1),
            Ok(None)
        ));
    }

    /// Trailers are capped at 8 KiB, whether they come as one long line or
    /// many short ones, and the whole request has one cap, framing included.
    #[test]
    fn trailers_and_framing_have_limits() {
        let line = format!("X: {}\r\n", "a".repeat(100));
        let many = format!(
            "1\r\na\r\n0\r\n{}\r\n",
            line.repeat(MAX_TRAILERS / line.len() + 1)
        );
        assert_eq!(
            status_of(read_body(BodyKind::Chunked, many.as_bytes(), 10, 64).unwrap_err()),
            431
        );
        let long = format!("1\r\na\r\n0\r\nX: {}", "a".repeat(MAX_TRAILERS));
        assert_eq!(
            status_of(read_body(BodyKind::Chunked, long.as_bytes(), 10, 64).unwrap_err()),
            431
        );
        let fits = format!(
            "1\r\na\r\n0\r\n{}\r\n",
            line.repeat(MAX_TRAILERS / line.len() - 1)
        );
        assert!(matches!(
            read_body(BodyKind::Chunked, fits.as_bytes(), 10, 64),
            Ok(Some(_))
        ));
        // A byte per chunk is six bytes of framing per byte of body: past
        // twice the body limit (plus head and trailers), it is refused.
        let max = 64 << 10;
        let bytewise = "1\r\na\r\n".repeat(max) + "0\r\n\r\n";
        let refused = read_body(BodyKind::Chunked, bytewise.as_bytes(), max, 4096).unwrap_err();
        assert_eq!(status_of(refused.clone()), 413);
        assert!(String::from_utf8_lossy(&refused.bytes).contains("request over the limit"));
        let small = "1\r\na\r\n".repeat(1000) + "0\r\n\r\n";
        assert!(matches!(
            read_body(BodyKind::Chunked, small.as_bytes(), max, 1),
            Ok(Some((body, _))) if body.len() == 1000
        ));
    }

    /// The reader hands over a head before it looks at the body, and reads
    /// the body only once the request is admitted.
    #[test]
    fn a_head_comes_before_its_body_is_read() {
        let raw = b"POST /api/v1/publish/x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}GET";
        let mut reader = RequestReader::default();
        let (used, next) = reader.next(raw);
        let Next::Head(head, _) = next else {
            panic!("{next:?}")
        };
        assert_eq!(&raw[used..], b"{}GET");
        let route = route(&head.method, &head.path);
        reader.admit(head, used, route.clone(), 1).unwrap_err();
        reader
            .admit(
                Box::new(self::head("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n")),
                used,
                route,
                10,
            )
            .unwrap();
        match reader.next(&raw[used..]) {
            (2, Next::Complete(_, _, body)) => assert_eq!(body, b"{}"),
            other => panic!("{other:?}"),
        }
        assert!(!reader.is_reading_body());
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let both = "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status_of(parse_head(both.as_bytes()).unwrap_err()), 400);
        let twice = "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(status_of(parse_head(twice.as_bytes()).unwrap_err()), 400);
        let gzip = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(status_of(parse_head(gzip.as_bytes()).unwrap_err()), 501);
        let signed = "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n";
        assert_eq!(status_of(parse_head(signed.as_bytes()).unwrap_err()), 400);
    }

    #[test]
    fn routes() {
        assert_eq!(
            route("GET", "/api/v1/ws/queue"),
            Route::Subscribe("queue".into())
        );
        assert_eq!(route("POST", "/api/v1/ws/queue"), Route::WrongMethod("GET"));
        assert_eq!(
            route("POST", "/api/v1/publish/queue"),
            Route::Publish("queue".into())
        );
        assert_eq!(
            route("GET", "/api/v1/publish/queue"),
            Route::WrongMethod("POST")
        );
        assert_eq!(
            route("PUT", "/api/v1/state/queue"),
            Route::WrongMethod("GET, HEAD")
        );
        assert_eq!(route("HEAD", "/healthz"), Route::Health);
        assert_eq!(route("DELETE", "/healthz"), Route::WrongMethod("GET, HEAD"));
        assert_eq!(route("GET", "/readyz"), Route::Ready);
        assert_eq!(route("POST", "/readyz"), Route::WrongMethod("GET, HEAD"));
        assert_eq!(route("POST", "/api/v1/broadcast"), Route::Broadcast);
        assert_eq!(route("GET", "/nope"), Route::NotFound);
    }

    /// Every listed path, asked with every method, reaches the route the
    /// table says when the table allows the method and a 405 with the
    /// table's `Allow` when it does not: no endpoint shadows another, and
    /// the list is the router.
    #[test]
    fn every_listed_endpoint_routes_as_listed() {
        let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get"];
        for endpoint in ENDPOINTS {
            for pattern in endpoint.paths {
                let (path, topic) = match pattern.strip_suffix(TOPIC) {
                    Some(prefix) => (format!("{prefix}adw-state/a1"), "adw-state/a1"),
                    None => ((*pattern).to_owned(), ""),
                };
                for method in methods {
                    let listed = endpoint.allow.split(", ").any(|m| m == method);
                    let expected = if listed {
                        (endpoint.route)(topic.to_owned())
                    } else {
                        Route::WrongMethod(endpoint.allow)
                    };
                    assert_eq!(route(method, &path), expected, "{method} {path}");
                }
            }
        }
        assert_eq!(route("GET", "/index.htm"), Route::NotFound);
        assert_eq!(route("GET", "/api/v1/ws"), Route::MuxSocket);
        assert_eq!(route("GET", "/api/v1/ws/"), Route::Subscribe(String::new()));
        assert_eq!(route("GET", "/api/v1/wss"), Route::NotFound);
    }
}
