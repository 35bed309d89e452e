//! The bytes a client receives: a [`Message`] (a snapshot or an event)
//! encoded once as a WebSocket text frame, the same as a Server-Sent
//! Event, and compressed by the one [`Compressor`]; the [`Form`] each
//! subscriber takes it in.

use std::sync::Arc;

use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::adw;
use crate::wire::Shared;
use crate::wire::deflate::{self, Deflater};
use crate::wire::protocol::write_header;

/// One published message, encoded once as a complete WebSocket text frame.
/// Every subscriber's queue holds a clone of `frame`, never a copy.
#[derive(Debug, Clone)]
pub struct Message {
    pub frame: Shared,
    header_len: usize,
    /// Where `data` starts in the JSON; it runs to the closing brace.
    data_at: usize,
}

impl Message {
    /// The JSON text inside the frame.
    pub fn json(&self) -> &[u8] {
        self.frame.get(self.header_len..).unwrap_or_default()
    }

    /// The published value inside the message: `data` of the envelope.
    pub fn data(&self) -> &[u8] {
        let json = self.json();
        json.get(self.data_at..json.len().saturating_sub(1))
            .unwrap_or_default()
    }

    /// Frames the concatenation of `parts` as one text message, in one
    /// allocation; the last two parts are the value and the closing brace.
    fn from_parts(parts: &[&[u8]]) -> Message {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut frame = Vec::with_capacity(len + 10);
        write_header(OpCode::Data(Data::Text), len, &mut frame);
        let header_len = frame.len();
        for part in parts {
            frame.extend_from_slice(part);
        }
        let data_at = parts.iter().rev().skip(2).map(|p| p.len()).sum();
        Message {
            frame: Arc::from(frame),
            header_len,
            data_at,
        }
    }

    /// A snapshot message: `{"type":..,"seq":..,"data":..}`, plus `adw_id`
    /// for the adw-state family as CONTRACT.md requires.
    pub(super) fn snapshot(
        message_type: &str,
        adw_id: Option<&str>,
        seq: u64,
        data: &str,
    ) -> Message {
        Message::snapshot_of(message_type, None, adw_id, seq, data.as_bytes())
    }

    /// A snapshot message, with `"topic"` after `"type"` when it goes to
    /// multiplexed connections, which carry several topics.
    pub(super) fn snapshot_of(
        message_type: &str,
        topic: Option<&str>,
        adw_id: Option<&str>,
        seq: u64,
        data: &[u8],
    ) -> Message {
        // Topic names and adw_ids are restricted to characters that need no
        // JSON escaping, so they are written as they are.
        let mut head = format!(r#"{{"type":"{message_type}""#);
        if let Some(topic) = topic {
            head.push_str(&format!(r#","topic":"{topic}""#));
        }
        if let Some(id) = adw_id {
            head.push_str(&format!(r#","adw_id":"{id}""#));
        }
        head.push_str(&format!(r#","seq":{seq},"data":"#));
        Message::from_parts(&[head.as_bytes(), data, b"}"])
    }

    /// A delta message (`?delta=`): `{"type":..,"seq":..,"base":..,"delta":..}`,
    /// `adw_id` as in a snapshot; `delta` (JSON) turns snapshot `base`
    /// into snapshot `seq`.
    pub(super) fn delta(
        message_type: &str,
        adw_id: Option<&str>,
        seq: u64,
        base: u64,
        delta: &str,
    ) -> Message {
        let mut head = format!(r#"{{"type":"{message_type}""#);
        if let Some(id) = adw_id {
            head.push_str(&format!(r#","adw_id":"{id}""#));
        }
        head.push_str(&format!(r#","seq":{seq},"base":{base},"delta":"#));
        Message::from_parts(&[head.as_bytes(), delta.as_bytes(), b"}"])
    }

    /// The same message as a Server-Sent Event: `id:` (for a snapshot, its
    /// seq, which `Last-Event-ID` brings back), then the JSON as `data:`
    /// lines. A published value keeps its own line breaks, so each line is
    /// its own `data:` line, which the client joins back with `\n`.
    pub fn sse(&self, id: Option<u64>) -> Shared {
        let json = self.json();
        let mut out = Vec::with_capacity(json.len() + 32);
        if let Some(id) = id {
            out.extend_from_slice(format!("id: {id}\n").as_bytes());
        }
        self.data_lines(&mut out);
        out.push(b'\n');
        Shared::from(out)
    }

    /// The same message as the start of a named Server-Sent Event
    /// (`event:` its topic, then its `data:` lines), shared by every
    /// multiplexed stream; each stream ends it with its own `id:` line and
    /// the blank line.
    pub fn sse_named(&self, event: &str) -> Shared {
        let mut out = Vec::with_capacity(self.json().len() + event.len() + 16);
        out.extend_from_slice(format!("event: {event}\n").as_bytes());
        self.data_lines(&mut out);
        Shared::from(out)
    }

    /// The JSON as `data:` lines: a published value keeps its own line
    /// breaks, so each line is its own `data:` line.
    fn data_lines(&self, out: &mut Vec<u8>) {
        for line in self.json().split(|&b| b == b'\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            out.push(b'\n');
        }
    }

    /// A one-off event: `{"type":..,"data":..}`; `type_json` is already a
    /// JSON string literal.
    pub fn event(type_json: &str, data: &str) -> Message {
        Message::from_parts(&[
            br#"{"type":"#,
            type_json.as_bytes(),
            br#","data":"#,
            data.as_bytes(),
            b"}",
        ])
    }
}

/// What a subscriber to `adw-state/{id}` gets before anything is published.
pub fn default_adw_state(name: &str) -> Message {
    let id = adw::state_id(name).unwrap_or_default();
    let data = adw::state_default(id).to_string();
    Message::snapshot("adw_state_update", Some(id), 0, &data)
}

/// The encodings a subscriber may take a message in. Each is made at most
/// once per message, and only when a subscriber needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A WebSocket text frame.
    Frame,
    /// A WebSocket that negotiated permessage-deflate: the compressed frame
    /// when the message is worth compressing, else the plain one.
    Deflate,
    /// A Server-Sent Event.
    Sse,
}

/// One message in the encodings its subscribers need: the frame always,
/// the others when asked for (`deflated` is `None` also when compressing
/// did not pay).
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a> {
    pub frame: &'a Shared,
    pub deflated: Option<&'a Shared>,
    pub sse: Option<&'a Shared>,
    /// The snapshot's seq.
    pub seq: u64,
    /// What `?delta=` subscribers may need, made on first use; `None`
    /// while the topic has none.
    pub deltas: Option<&'a dyn Deltas>,
}

impl<'a> Encoded<'a> {
    /// The bytes a subscriber of `form` gets.
    pub fn pick(&self, form: Form) -> &'a Shared {
        match form {
            Form::Frame => self.frame,
            Form::Deflate => self.deflated.unwrap_or(self.frame),
            Form::Sse => self.sse.unwrap_or(self.frame),
        }
    }
}

/// What a `?delta=` subscriber may need of one publish, each made at most
/// once and only when a subscriber first needs it: the delta (shared by
/// every subscriber whose last snapshot is its base), and the whole
/// snapshot in a form the plain subscribers may not have needed.
pub trait Deltas: std::fmt::Debug {
    /// The seq the delta applies to: the snapshot fanned out before this
    /// one; `None` when there is none to diff against.
    fn base(&self) -> Option<u64>;
    /// The delta message in `form`; `None` when it is not smaller than
    /// the snapshot.
    fn delta(&self, form: Form) -> Option<Shared>;
    /// The whole snapshot in `form`.
    fn snapshot(&self, form: Form) -> Option<Shared>;
}

/// The one compressor for every message (see [`crate::wire::deflate`]),
/// and what it has cost, for `/metrics`.
#[derive(Debug, Default)]
pub struct Compressor {
    deflater: Deflater,
    /// Messages compressed, whether or not the result was used.
    pub messages: u64,
    /// Time spent compressing them.
    pub busy: std::time::Duration,
}

impl Compressor {
    /// `message` as a compressed frame, or `None` when it is not worth it.
    pub fn compress(&mut self, message: &Message) -> Option<Shared> {
        if message.json().len() < deflate::MIN_COMPRESSED {
            return None;
        }
        let started = std::time::Instant::now();
        let frame = self.deflater.text_frame(message.json()).map(Shared::from);
        self.messages += 1;
        self.busy += started.elapsed();
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event's JSON is its type and data, in that order, and nothing else.
    #[test]
    fn events_frame_type_and_data() {
        let msg = Message::event(r#""workflow_completed""#, r#"{"adw_id":"x"}"#);
        assert_eq!(
            msg.json(),
            br#"{"type":"workflow_completed","data":{"adw_id":"x"}}"#
        );
    }
}
