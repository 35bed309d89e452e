//! RFC 6455 framing as the server sees it: encoding unmasked server frames and
//! decoding masked client frames. Pure byte work, no I/O, so every rule here is
//! unit-tested on byte slices.
//!
//! tungstenite parses and formats frame headers; what it does not do for a
//! non-blocking server that keeps no per-connection buffers is decide what a
//! client frame *means* (a ping to answer, a close to echo, a protocol error to
//! fail with). That decision lives in [`Decoder`].

use std::fmt;
use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;

use crate::wire::deflate::{self, InflateError};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// Close codes the server sends (RFC 6455 §7.4.1).
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    /// The server is restarting (a SIGTERM): reconnect, with jitter.
    pub const SERVICE_RESTART: u16 = 1012;
    /// The server is overloaded for this client (a slow consumer): it
    /// broke no rule, so it may reconnect, with jitter.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The signed token the connection was opened with has expired: fetch
    /// a new one and reconnect. 4000-4999 are for applications (RFC 6455
    /// §7.4.2).
    pub const TOKEN_EXPIRED: u16 = 4001;
}

/// Why the server ends a WebSocket connection: the code and short reason that
/// go into its close frame. 1005 and 1006 are never constructed: they are
/// reserved for reporting, never for the wire (RFC 6455 §7.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    pub const fn new(code: u16, reason: &'static str) -> Self {
        CloseReason { code, reason }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

/// Maximum payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Encodes one unmasked, final server frame. Server frames are never masked
/// (RFC 6455 §5.1), so the same bytes serve every subscriber.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    write_header(opcode, payload.len(), &mut out);
    out.extend_from_slice(payload);
    out
}

/// Appends the header of an unmasked final frame carrying `len` payload bytes.
pub fn write_header(opcode: OpCode, len: usize, out: &mut Vec<u8>) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    // Writing to a `Vec` cannot fail.
    let _ = header.format(len as u64, out);
}

/// Encodes a close frame with a code and a reason. The reason is truncated on
/// a character boundary so the payload stays within a control frame's 125 bytes.
pub fn encode_close(reason: &CloseReason) -> Vec<u8> {
    let mut text = reason.reason;
    while text.len() > MAX_CONTROL_PAYLOAD - 2 {
        let mut cut = MAX_CONTROL_PAYLOAD - 2;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text = &text[..cut];
    }
    let mut payload = Vec::with_capacity(2 + text.len());
    payload.extend_from_slice(&reason.code.to_be_bytes());
    payload.extend_from_slice(text.as_bytes());
    encode_frame(OpCode::Control(Control::Close), &payload)
}

/// Encodes a text frame.
pub fn encode_text(text: &str) -> Vec<u8> {
    encode_frame(OpCode::Data(Data::Text), text.as_bytes())
}

/// Encodes a masked client frame, the way a browser sends one; `first` is
/// the first header byte as is (FIN, RSV and opcode bits), so tests can
/// build bad frames too. The server never sends these: they are for the
/// load generator and the tests that play the client.
pub fn encode_masked(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(first);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

/// What a complete client frame or message asks of the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A complete text message, already checked to be UTF-8.
    Text(String),
    /// A complete binary message; dashboards have no use for it, so only its
    /// arrival counts.
    Binary,
    /// A ping whose payload the pong must echo (RFC 6455 §5.5.3).
    Ping(Vec<u8>),
    /// A pong, solicited or not (RFC 6455 §5.5.3 allows unsolicited ones).
    Pong,
    /// A close frame: the code the client sent, if any. The reason has been
    /// checked to be UTF-8 and is otherwise of no interest.
    Close(Option<u16>),
}

/// The limits a client's messages are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message in bytes, inflated if it was compressed
    /// (`--max-client-message`).
    pub max_message: usize,
    /// Most frames one message may come in (`--max-client-fragments`).
    pub max_fragments: usize,
}

/// A message being reassembled from fragments (RFC 6455 §5.4).
#[derive(Debug)]
struct Fragmented {
    text: bool,
    /// Its first frame had RSV1 set: the bytes are deflated (RFC 7692).
    compressed: bool,
    bytes: Vec<u8>,
    /// How many of `bytes` are known to be whole UTF-8 characters; the
    /// rest (three bytes at most) is a character cut at a frame boundary.
    /// A frame's check starts there, so a message costs one pass over its
    /// bytes however many frames it comes in.
    valid: usize,
    /// Frames so far, the first included.
    frames: usize,
}

/// Decodes the client side of one connection. Holds nothing between calls but
/// a message under reassembly, which is rare: dashboards send nothing, or a
/// small unfragmented ping.
#[derive(Debug, Default)]
pub struct Decoder {
    fragmented: Option<Box<Fragmented>>,
    /// permessage-deflate was agreed: RSV1 marks a compressed message.
    deflate: bool,
}

impl Decoder {
    /// A decoder for a connection that agreed to permessage-deflate, or not.
    pub fn new(deflate: bool) -> Decoder {
        Decoder {
            fragmented: None,
            deflate,
        }
    }

    /// Decodes the first frame in `buf`, unmasking it in place.
    ///
    /// Returns the number of bytes consumed and, when the frame completes a
    /// message or is a control frame, what it means. `Ok((0, None))` means the
    /// frame is not complete yet. `Err` carries the close the server must send:
    /// the connection is to be failed (RFC 6455 §7.1.7).
    pub fn decode(
        &mut self,
        buf: &mut [u8],
        limits: Limits,
    ) -> Result<(usize, Option<Incoming>), CloseReason> {
        let max_message = limits.max_message;
        let mut cursor = Cursor::new(&buf[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok((0, None)),
            Err(_) => return Err(CloseReason::new(code::PROTOCOL, "reserved opcode")),
        };
        let header_len = cursor.position() as usize;
        let mask = check_header(&header, len, self.deflate)?;
        let already = self.fragmented.as_ref().map_or(0, |f| f.bytes.len());
        if len.saturating_add(already as u64) > max_message as u64 {
            return Err(CloseReason::new(code::TOO_BIG, "message too big"));
        }
        self.check_fragments(&header, limits.max_fragments)?;
        let len = len as usize;
        if buf.len() - header_len < len {
            return Ok((0, None));
        }
        let consumed = header_len + len;
        let Some(payload) = buf.get_mut(header_len..consumed) else {
            return Ok((0, None));
        };
        unmask(payload, mask);
        let incoming = match header.opcode {
            OpCode::Control(Control::Ping) => Some(Incoming::Ping(payload.to_vec())),
            OpCode::Control(Control::Pong) => Some(Incoming::Pong),
            OpCode::Control(Control::Close) => Some(Incoming::Close(parse_close(payload)?)),
            // FrameHeader::parse refuses these already; refused here too,
            // so a change there cannot panic here.
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                return Err(CloseReason::new(code::PROTOCOL, "reserved opcode"));
            }
            OpCode::Data(Data::Continue) => {
                self.continuation(payload, header.is_final, max_message)?
            }
            OpCode::Data(data) => {
                let first = First {
                    text: data == Data::Text,
                    compressed: header.rsv1,
                    is_final: header.is_final,
                };
                self.first_fragment(first, payload, max_message)?
            }
        };
        Ok((consumed, incoming))
    }

    /// Refuses a data frame that takes its message past `max` frames, as
    /// soon as that is certain: a frame that is not final promises another.
    /// Frames out of order are left to the protocol checks after (1002).
    fn check_fragments(&self, header: &FrameHeader, max: usize) -> Result<(), CloseReason> {
        let frames = match (header.opcode, &self.fragmented) {
            (OpCode::Data(Data::Continue), Some(f)) => f.frames.saturating_add(1),
            (OpCode::Data(d), None) if d != Data::Continue => 1,
            _ => return Ok(()),
        };
        if frames.saturating_add(usize::from(!header.is_final)) > max {
            return Err(CloseReason::new(code::TOO_BIG, "too many fragments"));
        }
        Ok(())
    }

    /// A frame continuing the message under reassembly.
    fn continuation(
        &mut self,
        payload: &[u8],
        is_final: bool,
        max_message: usize,
    ) -> Result<Option<Incoming>, CloseReason> {
        let Some(fragmented) = self.fragmented.as_mut() else {
            return Err(CloseReason::new(
                code::PROTOCOL,
                "continuation without start",
            ));
        };
        fragmented.bytes.extend_from_slice(payload);
        fragmented.frames = fragmented.frames.saturating_add(1);
        // Compressed text can only be checked once inflated.
        if fragmented.text && !fragmented.compressed {
            fragmented.valid = check_utf8_after(&fragmented.bytes, fragmented.valid, is_final)?;
        }
        if !is_final {
            return Ok(None);
        }
        match self.fragmented.take() {
            Some(done) => complete(done.text, done.compressed, done.bytes, max_message),
            None => Ok(None),
        }
    }

    /// A text or binary frame that starts a message (and may end it).
    fn first_fragment(
        &mut self,
        first: First,
        payload: &[u8],
        max_message: usize,
    ) -> Result<Option<Incoming>, CloseReason> {
        // RFC 6455 §5.4: fragments of one message MUST NOT be interleaved
        // with another data message.
        if self.fragmented.is_some() {
            return Err(CloseReason::new(
                code::PROTOCOL,
                "expected continuation frame",
            ));
        }
        let valid = if first.text && !first.compressed {
            check_utf8_after(payload, 0, first.is_final)?
        } else {
            0
        };
        if first.is_final {
            return complete(first.text, first.compressed, payload.to_vec(), max_message);
        }
        self.fragmented = Some(Box::new(Fragmented {
            text: first.text,
            compressed: first.compressed,
            bytes: payload.to_vec(),
            valid,
            frames: 1,
        }));
        Ok(None)
    }
}

/// What the frame starting a message says of it.
struct First {
    text: bool,
    compressed: bool,
    is_final: bool,
}

/// A whole message's payload: inflated if it was compressed (RFC 7692
/// §6.2), within `max_message`, and checked to be UTF-8 if text.
fn complete(
    text: bool,
    compressed: bool,
    bytes: Vec<u8>,
    max_message: usize,
) -> Result<Option<Incoming>, CloseReason> {
    if !compressed {
        return finish(text, bytes).map(Some);
    }
    let bytes = deflate::inflate(&bytes, max_message).map_err(|e| match e {
        InflateError::TooBig => CloseReason::new(code::TOO_BIG, "message too big"),
        InflateError::Corrupt => CloseReason::new(code::INVALID_DATA, "invalid compressed data"),
    })?;
    if text {
        check_utf8_after(&bytes, 0, true)?;
    }
    finish(text, bytes).map(Some)
}

/// The checks a client frame's header must pass whatever its payload;
/// returns its mask.
fn check_header(header: &FrameHeader, len: u64, deflate: bool) -> Result<[u8; 4], CloseReason> {
    // RFC 6455 §5.2: "MUST be 0 unless an extension is negotiated". With
    // permessage-deflate, RSV1 marks the first frame of a compressed data
    // message, and nothing else (RFC 7692 §6).
    let starts_message = matches!(header.opcode, OpCode::Data(d) if d != Data::Continue);
    if header.rsv1 && !(deflate && starts_message) || header.rsv2 || header.rsv3 {
        return Err(CloseReason::new(code::PROTOCOL, "reserved bits set"));
    }
    // RFC 6455 §5.1: "The server MUST close the connection upon receiving
    // a frame that is not masked."
    let Some(mask) = header.mask else {
        return Err(CloseReason::new(code::PROTOCOL, "client frame not masked"));
    };
    if let OpCode::Control(_) = header.opcode {
        // RFC 6455 §5.5: control frames MUST have a payload length of 125
        // bytes or less and MUST NOT be fragmented.
        if len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(CloseReason::new(code::PROTOCOL, "control frame too long"));
        }
        if !header.is_final {
            return Err(CloseReason::new(code::PROTOCOL, "fragmented control frame"));
        }
    }
    Ok(mask)
}

/// Text was checked while it was reassembled; checked again here rather
/// than trusted, at the cost of one pass over a short message.
fn finish(text: bool, bytes: Vec<u8>) -> Result<Incoming, CloseReason> {
    if !text {
        return Ok(Incoming::Binary);
    }
    String::from_utf8(bytes)
        .map(Incoming::Text)
        .map_err(|_| CloseReason::new(code::INVALID_DATA, "invalid UTF-8"))
}

/// Checks the UTF-8 of `bytes` after the first `valid`, which are whole
/// characters already checked, and returns how many are now. Fails fast on
/// invalid UTF-8 (RFC 6455 §8.1): a sequence cut at the end of a non-final
/// fragment may still complete, anything else is invalid, including a
/// prefix that no continuation could make valid (std refuses those).
fn check_utf8_after(bytes: &[u8], valid: usize, is_final: bool) -> Result<usize, CloseReason> {
    let fresh = bytes.get(valid..).unwrap_or_default();
    match std::str::from_utf8(fresh) {
        Ok(_) => Ok(bytes.len()),
        Err(e) if e.error_len().is_none() && !is_final => Ok(valid + e.valid_up_to()),
        Err(_) => Err(CloseReason::new(
            code::INVALID_DATA,
            "invalid UTF-8 in text",
        )),
    }
}

/// Validates a close frame's body (RFC 6455 §5.5.1, §7.4).
fn parse_close(payload: &[u8]) -> Result<Option<u16>, CloseReason> {
    match payload {
        [] => Ok(None),
        [_] => Err(CloseReason::new(
            code::PROTOCOL,
            "close payload of one byte",
        )),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Err(CloseReason::new(code::PROTOCOL, "invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(CloseReason::new(
                    code::INVALID_DATA,
                    "invalid UTF-8 in close reason",
                ));
            }
            Ok(Some(code))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (byte, m) in payload.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

/// The reply to a client's `{"type":"ping","timestamp":T}`: the same
/// timestamp in a `pong`, as the dashboard's keep-alive expects. Any other
/// text is not for us and gets no reply.
pub fn json_pong(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Ping<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(borrow)]
        timestamp: Option<&'a serde_json::value::RawValue>,
    }
    let ping: Ping = serde_json::from_str(text).ok()?;
    if ping.kind != "ping" {
        return None;
    }
    let timestamp = ping.timestamp.map_or("null", |t| t.get());
    Some(format!(r#"{{"type":"pong","timestamp":{timestamp}}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    const LIMITS: Limits = Limits {
        max_message: 4096,
        max_fragments: 128,
    };

    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        encode_masked(first, payload, MASK)
    }

    fn decode_all(frames: &[u8]) -> Result<Vec<Incoming>, CloseReason> {
        decode_with(Decoder::default(), frames)
    }

    fn decode_with(decoder: Decoder, frames: &[u8]) -> Result<Vec<Incoming>, CloseReason> {
        decode_limited(decoder, frames, LIMITS)
    }

    fn decode_limited(
        mut decoder: Decoder,
        frames: &[u8],
        limits: Limits,
    ) -> Result<Vec<Incoming>, CloseReason> {
        let mut buf = frames.to_vec();
        let mut at = 0;
        let mut out = Vec::new();
        while at < buf.len() {
            let (used, incoming) = decoder.decode(&mut buf[at..], limits)?;
            assert!(used > 0, "frame incomplete at {at}");
            at += used;
            out.extend(incoming);
        }
        Ok(out)
    }

    #[test]
    fn rfc_sample_masked_text_decodes() {
        // RFC 6455 §5.7: a single-frame masked text message containing "Hello".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(decode_all(&frame), Ok(vec![Incoming::Text("Hello".into())]));
    }

    #[test]
    fn server_frames_match_rfc_examples() {
        // RFC 6455 §5.7: unmasked "Hello" and an unmasked ping with "Hello".
        assert_eq!(
            encode_text("Hello"),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            encode_frame(OpCode::Control(Control::Ping), b"Hello"),
            [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        // 256 bytes uses the 16-bit length form.
        assert_eq!(
            &encode_text(&"a".repeat(256))[..4],
            [0x81, 0x7e, 0x01, 0x00]
        );
        // RFC 6455 §5.2: 7-bit lengths to 125, then 16-bit, then 64-bit.
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            assert_eq!(encode_text(&"a".repeat(len)).len(), header + len);
        }
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let frame = client_frame(0x81, b"Hello");
        let mut decoder = Decoder::default();
        for cut in 0..frame.len() {
            let mut part = frame[..cut].to_vec();
            assert_eq!(
                decoder.decode(&mut part, LIMITS),
                Ok((0, None)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn fragmented_text_is_reassembled_around_a_ping() {
        let mut bytes = client_frame(0x01, b"Hel");
        bytes.extend(client_frame(0x89, b"p"));
        bytes.extend(client_frame(0x80, b"lo"));
        assert_eq!(
            decode_all(&bytes),
            Ok(vec![
                Incoming::Ping(b"p".to_vec()),
                Incoming::Text("Hello".into())
            ])
        );
    }

    #[test]
    fn protocol_violations_map_to_1002() {
        let unmasked = [0x81, 0x01, b'a'];
        let rsv = client_frame(0xc1, b"a");
        let opcode = client_frame(0x83, b"a");
        let long_ping = client_frame(0x89, &[0; 126]);
        let fragmented_ping = client_frame(0x09, b"a");
        let stray_continuation = client_frame(0x80, b"a");
        let mut interleaved = client_frame(0x01, b"a");
        interleaved.extend(client_frame(0x81, b"b"));
        let one_byte_close = client_frame(0x88, &[3]);
        let bad_code = client_frame(0x88, &999u16.to_be_bytes());
        let reserved_code = client_frame(0x88, &1005u16.to_be_bytes());
        for (name, bytes) in [
            ("unmasked", &unmasked[..]),
            ("rsv", &rsv),
            ("opcode", &opcode),
            ("long ping", &long_ping),
            ("fragmented ping", &fragmented_ping),
            ("stray continuation", &stray_continuation),
            ("interleaved", &interleaved),
            ("one byte close", &one_byte_close),
            ("close code 999", &bad_code),
            ("close code 1005", &reserved_code),
        ] {
            let err = decode_all(bytes).expect_err(name);
            assert_eq!(err.code, code::PROTOCOL, "{name}: {err}");
        }
    }

    #[test]
    fn invalid_utf8_maps_to_1007_and_fails_fast() {
        assert_eq!(
            decode_all(&client_frame(0x81, &[0xce, 0xba, 0xff]))
                .unwrap_err()
                .code,
            code::INVALID_DATA
        );
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.push(0xff);
        assert_eq!(
            decode_all(&client_frame(0x88, &close)).unwrap_err().code,
            code::INVALID_DATA
        );
        // A sequence cut at a fragment boundary is fine...
        let mut ok = client_frame(0x01, &[0xce]);
        ok.extend(client_frame(0x80, &[0xba]));
        assert_eq!(decode_all(&ok), Ok(vec![Incoming::Text("κ".into())]));
        // ...but a byte that can never be valid fails on its own fragment.
        let mut decoder = Decoder::default();
        let mut first = client_frame(0x01, &[0xff]);
        assert_eq!(
            decoder.decode(&mut first, LIMITS).unwrap_err().code,
            code::INVALID_DATA
        );
    }

    /// UTF-8 is checked as each fragment arrives, from where the last
    /// check stopped: a character cut over several fragments (even one
    /// byte each) completes, and an invalid byte fails on the fragment that
    /// brings it, whatever was valid before (Autobahn 6.4: fail fast).
    #[test]
    fn utf8_is_checked_fragment_by_fragment_and_fails_fast() {
        // "κ€𝄞" with every character cut, one byte per frame.
        let text = "aκ€𝄞z";
        let bytes = text.as_bytes();
        let mut frames = client_frame(0x01, &bytes[..1]);
        for byte in &bytes[1..bytes.len() - 1] {
            frames.extend(client_frame(0x00, std::slice::from_ref(byte)));
        }
        frames.extend(client_frame(0x80, &bytes[bytes.len() - 1..]));
        assert_eq!(decode_all(&frames), Ok(vec![Incoming::Text(text.into())]));

        // A start byte held over, then a byte that cannot continue it;
        // then a prefix no byte could complete (a surrogate, past U+10FFFF).
        for (held, bad) in [
            (&[0xe2, 0x82][..], &[0x41][..]),
            (&[0xed][..], &[0xa0, 0x80][..]),
            (&[0xf4][..], &[0x90][..]),
        ] {
            let mut decoder = Decoder::default();
            let mut first = client_frame(0x01, &[b"valid ".as_slice(), held].concat());
            assert_eq!(decoder.decode(&mut first, LIMITS).map(|d| d.1), Ok(None));
            let mut next = client_frame(0x00, bad);
            let err = decoder.decode(&mut next, LIMITS).unwrap_err();
            assert_eq!(err.code, code::INVALID_DATA, "{held:x?} then {bad:x?}");
        }
        // A character still cut when the message ends is invalid.
        let mut cut = client_frame(0x01, b"ok");
        cut.extend(client_frame(0x80, &[0xe2, 0x82]));
        assert_eq!(decode_all(&cut).unwrap_err().code, code::INVALID_DATA);
        // An invalid byte after many valid fragments fails on its own.
        let mut decoder = Decoder::default();
        let mut start = client_frame(0x01, "é".repeat(1000).as_bytes());
        decoder.decode(&mut start, LIMITS).unwrap();
        for _ in 0..50 {
            let mut empty = client_frame(0x00, b"");
            assert_eq!(decoder.decode(&mut empty, LIMITS), Ok((6, None)));
        }
        let mut bad = client_frame(0x00, &[0xff]);
        let err = decoder.decode(&mut bad, LIMITS).unwrap_err();
        assert_eq!(err.code, code::INVALID_DATA);
    }

    /// Each frame checks only its own bytes and the few held over from
    /// the last: the part of the message already checked is not looked at
    /// again. Planted bytes that are not UTF-8, marked as checked, show it.
    #[test]
    fn a_fragment_checks_only_what_is_new() {
        let mut decoder = Decoder::default();
        let mut start = client_frame(0x01, b"abc");
        decoder.decode(&mut start, LIMITS).unwrap();
        if let Some(fragmented) = decoder.fragmented.as_mut() {
            fragmented.bytes = vec![0xff; 3];
        }
        let mut next = client_frame(0x00, b"d");
        assert_eq!(decoder.decode(&mut next, LIMITS), Ok((7, None)));
        assert_eq!(decoder.fragmented.as_ref().map(|f| f.valid), Some(4));
    }

    /// A message in more frames than `max_fragments` closes with 1009 as
    /// soon as that is certain: on the frame past the limit, or on a frame
    /// that is not final once the limit is reached. At the smallest limit,
    /// 1, a message must come whole; frames out of order stay 1002.
    #[test]
    fn messages_in_too_many_fragments_map_to_1009() {
        let limits = |max_fragments| Limits {
            max_fragments,
            ..LIMITS
        };
        let fragmented = |count: usize, fin: bool| {
            let mut frames = client_frame(0x01, b"a");
            for i in 1..count {
                let last = i + 1 == count;
                frames.extend(client_frame(if last && fin { 0x80 } else { 0x00 }, b""));
            }
            frames
        };
        for max in [1, 2, 3, 128] {
            // Exactly `max` frames: a whole message.
            let whole = if max == 1 {
                client_frame(0x81, b"a")
            } else {
                fragmented(max, true)
            };
            assert_eq!(
                decode_limited(Decoder::default(), &whole, limits(max)),
                Ok(vec![Incoming::Text("a".into())]),
                "{max} frames under a limit of {max}"
            );
            // The `max`th frame not final: it promises one too many.
            let over = fragmented(max, false);
            let err = decode_limited(Decoder::default(), &over, limits(max)).unwrap_err();
            assert_eq!(
                (err.code, err.reason),
                (code::TOO_BIG, "too many fragments"),
                "limit {max}"
            );
        }
        // Refused on the frame's header, before its payload arrives.
        let mut decoder = Decoder::default();
        let mut first = client_frame(0x02, b"");
        decoder.decode(&mut first, limits(2)).unwrap();
        let mut header = client_frame(0x00, &[0; 100])[..6].to_vec();
        let err = decoder.decode(&mut header, limits(2)).unwrap_err();
        assert_eq!(err.code, code::TOO_BIG);
        // Order is checked before the count.
        let stray = client_frame(0x00, b"a");
        let err = decode_limited(Decoder::default(), &stray, limits(1)).unwrap_err();
        assert_eq!(err.code, code::PROTOCOL);
        // Control frames between fragments do not count.
        let mut frames = client_frame(0x01, b"a");
        frames.extend(client_frame(0x89, b""));
        frames.extend(client_frame(0x89, b""));
        frames.extend(client_frame(0x80, b"b"));
        assert_eq!(
            decode_limited(Decoder::default(), &frames, limits(2)),
            Ok(vec![
                Incoming::Ping(Vec::new()),
                Incoming::Ping(Vec::new()),
                Incoming::Text("ab".into())
            ])
        );
    }

    #[test]
    fn oversized_messages_map_to_1009_before_the_payload_arrives() {
        let frame = client_frame(0x82, &[0; 5000]);
        let mut header_only = frame[..8].to_vec();
        let err = Decoder::default()
            .decode(&mut header_only, LIMITS)
            .unwrap_err();
        assert_eq!(err.code, code::TOO_BIG);
        // Fragments count towards the same limit.
        let mut bytes = client_frame(0x02, &[0; 3000]);
        bytes.extend(client_frame(0x80, &[0; 3000]));
        assert_eq!(decode_all(&bytes).unwrap_err().code, code::TOO_BIG);
    }

    #[test]
    fn close_frames_report_their_code() {
        assert_eq!(
            decode_all(&client_frame(0x88, &[])),
            Ok(vec![Incoming::Close(None)])
        );
        let mut body = 1001u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        assert_eq!(
            decode_all(&client_frame(0x88, &body)),
            Ok(vec![Incoming::Close(Some(1001))])
        );
    }

    #[test]
    fn close_reason_is_truncated_to_fit_a_control_frame() {
        let long: &'static str = Box::leak("é".repeat(100).into_boxed_str());
        let frame = encode_close(&CloseReason::new(1008, long));
        assert!(frame.len() <= 2 + 125);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }

    #[test]
    fn json_ping_gets_json_pong() {
        assert_eq!(
            json_pong(r#"{"type":"ping","timestamp":1732550000123}"#).as_deref(),
            Some(r#"{"type":"pong","timestamp":1732550000123}"#)
        );
        assert_eq!(json_pong(r#"{"type":"client_ready"}"#), None);
        assert_eq!(json_pong("hello"), None);
    }

    /// A client's compressed message: raw deflate, sync-flush tail removed.
    fn deflated(text: impl AsRef<[u8]>) -> Vec<u8> {
        let text = text.as_ref();
        use flate2::{Compress, Compression, FlushCompress};
        let mut c = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(text.len() + 64);
        c.compress_vec(text, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn compressed_messages_inflate_when_deflate_was_agreed() {
        let ping = r#"{"type":"ping","timestamp":1}"#;
        let body = deflated(ping);
        // FIN + RSV1 + text, whole.
        let whole = client_frame(0xc1, &body);
        assert_eq!(
            decode_with(Decoder::new(true), &whole).unwrap(),
            vec![Incoming::Text(ping.into())]
        );
        // Fragmented: RSV1 on the first frame only, a ping between.
        let (a, b) = body.split_at(body.len() / 2);
        let mut frames = client_frame(0x41, a);
        frames.extend(client_frame(0x89, b"hi"));
        frames.extend(client_frame(0x80, b));
        assert_eq!(
            decode_with(Decoder::new(true), &frames).unwrap(),
            vec![Incoming::Ping(b"hi".to_vec()), Incoming::Text(ping.into())]
        );
        // Plain messages still pass on a deflate connection.
        let plain = client_frame(0x81, b"plain");
        assert_eq!(
            decode_with(Decoder::new(true), &plain).unwrap(),
            vec![Incoming::Text("plain".into())]
        );
    }

    #[test]
    fn rsv1_is_an_error_where_deflate_does_not_allow_it() {
        let body = deflated("hello");
        let cases = [
            (Decoder::new(false), client_frame(0xc1, &body)),
            // On a continuation frame, and on a control frame.
            (Decoder::new(true), {
                let mut f = client_frame(0x01, b"he");
                f.extend(client_frame(0xc0, b"llo"));
                f
            }),
            (Decoder::new(true), client_frame(0xc9, b"")),
        ];
        for (decoder, frames) in cases {
            let err = decode_with(decoder, &frames).unwrap_err();
            assert_eq!(
                (err.code, err.reason),
                (code::PROTOCOL, "reserved bits set")
            );
        }
    }

    #[test]
    fn bad_or_oversized_compressed_messages_fail_with_their_codes() {
        let garbage = client_frame(0xc1, &[0xff; 16]);
        let err = decode_with(Decoder::new(true), &garbage).unwrap_err();
        assert_eq!(err.code, code::INVALID_DATA);
        // 64 KiB of one byte deflates to a few hundred: inside the 4 KiB
        // frame limit, far past the 4 KiB message limit once inflated.
        let bomb = client_frame(0xc1, &deflated("a".repeat(64 << 10)));
        assert!(bomb.len() < 4096);
        let err = decode_with(Decoder::new(true), &bomb).unwrap_err();
        assert_eq!(err.code, code::TOO_BIG);
        // Inflated text is still checked to be UTF-8.
        let invalid = client_frame(0xc1, &deflated([0xc3, 0x28, 0x41, 0x41]));
        let err = decode_with(Decoder::new(true), &invalid).unwrap_err();
        assert_eq!(err.code, code::INVALID_DATA);
    }
}
