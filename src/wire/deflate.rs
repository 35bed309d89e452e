//! permessage-deflate (RFC 7692) as this server speaks it: the offer it
//! accepts, the answer it gives, one shared compressor for server frames and
//! a per-message inflater for client frames.
//!
//! The server always answers with `server_no_context_takeover` and
//! `client_no_context_takeover`. With no context carried from one message to
//! the next, a compressed frame depends on nothing but its own payload, so
//! it is made once per publish and the same bytes serve every subscriber
//! that negotiated the extension (uWebSockets' "shared compressor" does the
//! same). A client's compressed message is inflated by an inflater made for
//! it and dropped after it: an idle connection owns no zlib state.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// What the server answers to an accepted offer (RFC 7692 §7.1.1.1 and
/// §7.1.1.2 let it add both parameters unasked).
pub const RESPONSE: &str = "Sec-WebSocket-Extensions: permessage-deflate; \
     server_no_context_takeover; client_no_context_takeover\r\n";

/// The tail a sync flush leaves, which RFC 7692 §7.2.1 removes from the
/// payload and §7.2.2 puts back before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Payloads shorter than this go out plain even to a client that
/// negotiated compression: below it, deflate saves too few bytes to pay
/// for the compressed copy (measured in `benches/compression.rs`; see
/// docs/lab/performance.md).
pub const MIN_COMPRESSED: usize = 256;

/// Whether any offer in a `Sec-WebSocket-Extensions` value is a
/// permessage-deflate this server can accept (RFC 7692 §5): known
/// parameters, none twice, and no `server_max_window_bits` below 15, which
/// would ask for a smaller window than this compressor can keep to.
/// `client_max_window_bits` needs nothing: any window inflates.
pub fn accepts(header_value: &str) -> bool {
    header_value.split(',').any(|offer| {
        let mut parts = offer.split(';').map(str::trim);
        if !parts
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
        {
            return false;
        }
        let mut seen = Vec::new();
        parts.all(|param| {
            let (name, value) = match param.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (param, None),
            };
            let name = name.to_ascii_lowercase();
            if seen.contains(&name) {
                return false;
            }
            let ok = match (name.as_str(), value) {
                ("server_no_context_takeover" | "client_no_context_takeover", None) => true,
                ("server_max_window_bits", Some(bits)) => bits == "15",
                ("client_max_window_bits", None) => true,
                ("client_max_window_bits", Some(bits)) => {
                    bits.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b))
                }
                _ => false,
            };
            seen.push(name);
            ok
        })
    })
}

/// The one compressor the server keeps, reset before each message.
pub struct Deflater {
    compress: Compress,
    /// Reused between messages; grows to the largest message, never shrinks.
    buf: Vec<u8>,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").finish_non_exhaustive()
    }
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater::new(Compression::default())
    }
}

impl Deflater {
    pub fn new(level: Compression) -> Deflater {
        Deflater {
            compress: Compress::new(level, false),
            buf: Vec::new(),
        }
    }

    /// The text message `payload` as one compressed, unmasked, final frame
    /// with RSV1 set; `None` when it is too short to be worth it or does not
    /// shrink.
    pub fn text_frame(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        if payload.len() < MIN_COMPRESSED {
            return None;
        }
        let body = self.compress(payload)?;
        let header = FrameHeader {
            rsv1: true,
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        let mut frame = Vec::with_capacity(body.len() + 10);
        header.format(body.len() as u64, &mut frame).ok()?;
        frame.extend_from_slice(body);
        Some(frame)
    }

    /// Deflates `payload` on its own (no context before it, none kept after)
    /// and strips the sync flush's tail; `None` unless it came out smaller.
    fn compress(&mut self, payload: &[u8]) -> Option<&[u8]> {
        let len = self.deflate(payload)?.len();
        self.buf.get(..len).filter(|_| len < payload.len())
    }

    /// The size `payload` deflates to, however short or incompressible:
    /// what `benches/compression.rs` measures the threshold with.
    pub fn deflated_len(&mut self, payload: &[u8]) -> usize {
        self.deflate(payload).map_or(usize::MAX, <[u8]>::len)
    }

    fn deflate(&mut self, payload: &[u8]) -> Option<&[u8]> {
        self.compress.reset();
        // Deflate grows incompressible input by a few bytes per block. The
        // buffer is a slice that only ever grows: `compress_vec` would zero
        // a vector's whole spare capacity on every call, which after one
        // large message is a large `memset` for every small one.
        let room = payload.len() + payload.len() / 100 + 64;
        if self.buf.len() < room {
            self.buf.resize(room, 0);
        }
        let status = self
            .compress
            .compress(payload, self.buf.get_mut(..room)?, FlushCompress::Sync)
            .ok()?;
        let consumed = self.compress.total_in() as usize == payload.len();
        let out = self.buf.get(..self.compress.total_out() as usize)?;
        if status != Status::Ok || !consumed {
            return None;
        }
        out.strip_suffix(&TAIL)
    }
}

/// Why a client's compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the largest message the server takes.
    TooBig,
    /// Not valid deflate data (or data that uses a context the client
    /// agreed not to keep).
    Corrupt,
}

/// Inflates one client message, at most `max` bytes of it, with an
/// inflater that lives only for this call.
pub fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let mut input = Vec::with_capacity(compressed.len() + TAIL.len());
    input.extend_from_slice(compressed);
    input.extend_from_slice(&TAIL);
    let mut inflater = Decompress::new(false);
    // One byte past `max` is room enough to tell "too big" from "just fits".
    let limit = max.saturating_add(1);
    // Not `clamp(64, limit)`: that panics when `--max-client-message` is
    // under 64, and a client chooses when this runs.
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).max(64).min(limit));
    loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                return Err(InflateError::TooBig);
            }
            out.reserve_exact(out.len().max(4096).min(limit - out.len()));
        }
        let (read, wrote) = (inflater.total_in(), out.len());
        let status = inflater
            .decompress_vec(
                input.get(read as usize..).unwrap_or_default(),
                &mut out,
                FlushDecompress::Sync,
            )
            .map_err(|_| InflateError::Corrupt)?;
        let all_read = inflater.total_in() as usize == input.len();
        if status == Status::StreamEnd || (all_read && out.len() < out.capacity()) {
            break;
        }
        if inflater.total_in() == read && out.len() == wrote {
            return Err(InflateError::Corrupt);
        }
    }
    if out.len() > max {
        return Err(InflateError::TooBig);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(items: usize) -> String {
        let item = r#"{"adw_id":"a1b2c3d4","status":"completed","duration":1234,"phase":"build"}"#;
        format!("[{}]", vec![item; items].join(","))
    }

    #[test]
    fn offers_are_accepted_by_their_parameters() {
        // What Chromium and Python's websockets send.
        assert!(accepts("permessage-deflate; client_max_window_bits"));
        assert!(accepts("permessage-deflate"));
        assert!(accepts(
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"
        ));
        assert!(accepts("x-webkit-deflate-frame, permessage-deflate"));
        assert!(accepts("Permessage-Deflate; SERVER_MAX_WINDOW_BITS=\"15\""));
        // A window this compressor cannot keep to, a parameter it does not
        // know, one given twice, a value where none belongs.
        assert!(!accepts("permessage-deflate; server_max_window_bits=10"));
        assert!(!accepts("permessage-deflate; mystery"));
        assert!(!accepts(
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover"
        ));
        assert!(!accepts("permessage-deflate; server_no_context_takeover=1"));
        assert!(!accepts("permessage-deflate; client_max_window_bits=16"));
        assert!(!accepts("deflate-frame"));
        assert!(!accepts(""));
        // The second offer is taken when the first cannot be.
        assert!(accepts(
            "permessage-deflate; server_max_window_bits=9, permessage-deflate"
        ));
    }

    #[test]
    fn a_compressed_frame_inflates_to_its_payload_and_sets_rsv1() {
        let payload = json(50);
        let mut deflater = Deflater::default();
        let frame = deflater.text_frame(payload.as_bytes()).unwrap();
        assert_eq!(frame[0], 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
        let (header_len, len) = match frame[1] {
            126 => (4, u16::from_be_bytes([frame[2], frame[3]]) as usize),
            n => (2, n as usize),
        };
        assert_eq!(frame.len(), header_len + len);
        assert!(len * 4 < payload.len(), "{len} of {}", payload.len());
        let back = inflate(&frame[header_len..], 1 << 20).unwrap();
        assert_eq!(back, payload.as_bytes());
        // No context kept: the same input gives the same bytes again.
        assert_eq!(deflater.text_frame(payload.as_bytes()).unwrap(), frame);
    }

    #[test]
    fn short_or_incompressible_payloads_stay_plain() {
        let mut deflater = Deflater::default();
        assert!(deflater.text_frame(json(1).as_bytes()).is_none());
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(deflater.text_frame(&noise).is_none());
    }

    #[test]
    fn inflating_is_bounded_and_refuses_garbage() {
        let big = "a".repeat(1 << 20);
        let mut deflater = Deflater::default();
        let frame = deflater.text_frame(big.as_bytes()).unwrap();
        let body = &frame[4..];
        let body = if frame[1] == 127 { &frame[10..] } else { body };
        assert_eq!(inflate(body, 1 << 20).unwrap().len(), 1 << 20);
        assert_eq!(inflate(body, 1000), Err(InflateError::TooBig));
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff, 0xff], 1000),
            Err(InflateError::Corrupt)
        );
    }

    /// Every limit from the smallest legal one (1 byte) past the first
    /// buffer's 64 gets an answer, never a panic: an empty message inflates
    /// within any of them, and a longer one is too big for the small ones.
    #[test]
    fn any_limit_from_one_byte_is_an_answer() {
        let mut deflater = Deflater::default();
        let body = deflater.deflate(b"hello, world").unwrap().to_vec();
        for max in 1..=80 {
            assert_eq!(inflate(&[], max), Ok(Vec::new()), "max {max}");
            let expected = if max >= 12 {
                Ok(b"hello, world".to_vec())
            } else {
                Err(InflateError::TooBig)
            };
            assert_eq!(inflate(&body, max), expected, "max {max}");
        }
    }
}
