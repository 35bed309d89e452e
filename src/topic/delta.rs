//! Deltas between two snapshots of a topic (`?delta=json-patch`): the
//! formats a subscriber may ask for, and the differ that makes an RFC 6902
//! JSON Patch out of two snapshots' text, which the browser applies with
//! `web/delta.js`.
//!
//! JSON Patch won on the demo's streams over fossil delta and over deflate
//! alone (figures in `benches/delta.rs` and docs/lab/performance.md): its ops
//! carry only the members that changed, which permessage-deflate then
//! shrinks further, and its applier is a few dozen lines of JavaScript.
//!
//! The texts are never parsed into values. A snapshot is compact JSON
//! this server wrote, so a subtree that did not change is the same run of
//! bytes in both, skipped with one comparison, and the value an op
//! carries is copied out of the new text as it is. Each text is read
//! into a tape first, one entry per value with its span and where its
//! subtree ends, with no allocation per value and no string decoded but
//! a key with escapes; only what differs is walked. (Parsing both texts
//! into `serde_json::Value`s was three fifths of a delta of the demo's
//! history, docs/lab/performance.md.)
//!
//! Arrays are where a naive differ loses: the history panel puts each new
//! workflow first and drops the oldest, which compared index by index
//! changes every element. So an array's elements are matched by a longest
//! common subsequence (after trimming the common ends), and an element
//! removed and one added at the same place are diffed as one changed
//! element, so a workflow whose progress moved costs only that member.
//!
//! A publisher chooses both texts, so a diff's work is bounded, not just
//! its table: each array's elements are hashed once and compared by hash
//! (their text only when the hashes agree), and every step spends from a
//! budget proportional to the two texts' sizes. Past it the diff gives
//! up, and the subscriber gets the whole snapshot, as it would without
//! `?delta=`; so it does for a text the tape cannot read, and once the
//! patch is as long as the new text, which it would not be sent at.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::io::Write;

/// The delta formats a subscriber may ask for with `?delta=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaFormat {
    /// RFC 6902 JSON Patch: an array of `add`/`remove`/`replace` ops.
    JsonPatch,
}

impl DeltaFormat {
    /// Every format's name, as `?delta=` spells it.
    pub const NAMES: &'static [&'static str] = &["json-patch"];

    /// The format `?delta=` names, if it is one.
    pub fn parse(name: &str) -> Option<DeltaFormat> {
        match name {
            "json-patch" => Some(DeltaFormat::JsonPatch),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DeltaFormat::JsonPatch => "json-patch",
        }
    }
}

/// Snapshots bigger than this (their JSON, in bytes) go whole to delta
/// subscribers, and the topic keeps no base for them: a delta costs a
/// read of both texts and a diff per publish, and its base is held while
/// the topic has a delta subscriber, which past this size costs more than
/// it saves.
/// The demo's largest stream, the workflow history, is 36-72 KB.
pub const MAX_DELTA_SNAPSHOT: usize = 256 * 1024;

/// Past this many element pairs (`old.len() * new.len()` after trimming
/// the common ends) an array is compared by index instead of by common
/// subsequence, which would cost more time and memory than the delta is
/// worth: 64 K cells is a quarter of a megabyte of table.
const MAX_LCS_CELLS: usize = 1 << 16;

/// A patch is given up once its text is as long as the new text's, or
/// as this many bytes if that is more: a delta is sent only when smaller
/// than its snapshot, and a patch must not grow far past its text (its
/// paths repeat the keys above each op, with escapes). The floor leaves a
/// tiny value its patch, which its caller judges.
const MIN_PATCH_CAP: usize = 4096;

/// The work a diff may do, in units of [`weight`], as a multiple of the
/// two texts' weights (plus one full table): a publisher picks what is
/// diffed, and a text shaped to make every step compare deeply must not
/// hold the loop. Every delta of ten simulated minutes of the demo stays
/// within it (`benches/delta.rs` fails otherwise).
const WORK_PER_WEIGHT: u64 = 8;

/// Bytes one unit of work stands for: comparing, hashing or copying text
/// costs by its length.
const BYTES_PER_UNIT: usize = 16;

/// The work left for one diff. Every step that visits a node, fills a
/// table cell or writes out a value spends from it; once it runs out,
/// every step fails and the diff gives up.
#[derive(Debug)]
struct Budget {
    limit: u64,
    spent: u64,
}

/// The budget ran out.
#[derive(Debug)]
struct OverBudget;

impl Budget {
    fn spend(&mut self, units: u64) -> Result<(), OverBudget> {
        self.spent = self.spent.saturating_add(units);
        if self.spent > self.limit {
            Err(OverBudget)
        } else {
            Ok(())
        }
    }

    fn spend_bytes(&mut self, bytes: usize) -> Result<(), OverBudget> {
        self.spend(1 + (bytes / BYTES_PER_UNIT) as u64)
    }
}

/// Deeper than this a text is not diffed (its snapshot goes whole): the
/// diff recurses once per level, and serde_json, which checked every
/// published value, refuses past 128.
const MAX_DEPTH: usize = 256;

/// Objects with more members than this are looked up through a map;
/// smaller ones by a walk, which costs less than building it.
const MAX_WALKED_MEMBERS: usize = 16;

/// What a value is, as far as the differ needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    /// A number, `true`, `false` or `null`.
    Scalar,
}

/// One value of a text: its bytes are `text[start..end]`, and the values
/// inside it (an object's keys and values in turn, an array's elements)
/// are the entries after it, up to `next`.
#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Kind,
    start: usize,
    end: usize,
    next: usize,
}

/// A [`Node`] as the tape holds it: 16 bytes, not 32, which halves the
/// memory a diff touches (with 32, faulting in a fresh tape's pages was
/// nearly half of reading a text).
#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: Kind,
    start: u32,
    end: u32,
    next: u32,
}

impl Entry {
    /// Positions fit: [`Tape::read`] refuses a text of 4 GiB or more.
    fn new(kind: Kind, start: usize, end: usize, next: usize) -> Entry {
        Entry {
            kind,
            start: start as u32,
            end: end as u32,
            next: next as u32,
        }
    }
}

/// A text read into its tape; the root is entry 0.
#[derive(Debug)]
struct Tape<'a> {
    text: &'a [u8],
    nodes: Vec<Entry>,
}

/// The text is not one JSON value this differ can read, or the diff ran
/// over its budget: either way the snapshot goes whole.
#[derive(Debug)]
struct Stop;

impl From<OverBudget> for Stop {
    fn from(_: OverBudget) -> Stop {
        Stop
    }
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while matches!(text.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Whether any of the eight bytes of `word` is a quote, a backslash or a
/// control character: what ends a run of plain string bytes.
fn special(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `v` is zero (below `n`) where `v - n` borrows into its
    // high bit and `v`'s own high bit is clear.
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGHS;
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    (quote | backslash | below(word, 0x20)) != 0
}

/// Where the string opening at `at` ends (one past its closing quote).
fn string_end(text: &[u8], at: usize) -> Result<usize, Stop> {
    let mut i = at + 1;
    loop {
        // Eight plain bytes a step, then one at a time past what stopped it.
        while let Some(word) = text.get(i..i + 8) {
            let word = <[u8; 8]>::try_from(word).map_or(0, u64::from_le_bytes);
            if special(word) {
                break;
            }
            i += 8;
        }
        match text.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => i += 2,
            Some(&c) if c >= 0x20 => i += 1,
            _ => return Err(Stop),
        }
    }
}

/// Where the number or literal starting at `at` ends.
fn scalar_end(text: &[u8], at: usize) -> Result<usize, Stop> {
    let end = text
        .get(at..)
        .and_then(|rest| {
            rest.iter()
                .position(|c| matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
        })
        .map_or(text.len(), |len| at + len);
    match text.get(at) {
        Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') if end > at => Ok(end),
        _ => Err(Stop),
    }
}

/// Reads the key at `at` into `nodes`, and its colon; returns where its
/// value starts.
fn read_key(text: &[u8], at: usize, nodes: &mut Vec<Entry>) -> Result<usize, Stop> {
    if text.get(at) != Some(&b'"') {
        return Err(Stop);
    }
    let end = string_end(text, at)?;
    nodes.push(Entry::new(Kind::String, at, end, nodes.len() + 1));
    let colon = skip_space(text, end);
    if text.get(colon) != Some(&b':') {
        return Err(Stop);
    }
    Ok(skip_space(text, colon + 1))
}

impl<'a> Tape<'a> {
    /// Reads `text`, checking its structure (brackets, strings, colons
    /// and commas; not every number's spelling: it was JSON when taken in).
    fn read(text: &'a [u8]) -> Result<Tape<'a>, Stop> {
        Tape::read_into(text, Vec::new())
    }

    /// Reads `text` into `nodes`' allocation.
    fn read_into(text: &'a [u8], mut nodes: Vec<Entry>) -> Result<Tape<'a>, Stop> {
        if u32::try_from(text.len()).is_err() {
            return Err(Stop);
        }
        // An open container: its entry, and whether it is an object.
        let mut open: Vec<(usize, bool)> = Vec::new();
        nodes.clear();
        nodes.reserve(text.len() / 12);
        let mut at = skip_space(text, 0);
        // Whether a value (or, in an object, a key) may close its container
        // here: right after the bracket that opened it.
        let mut first = false;
        loop {
            let c = *text.get(at).ok_or(Stop)?;
            let in_object = open.last().is_some_and(|&(_, object)| object);
            let closes = if in_object { b'}' } else { b']' };
            let mut closed = first && c == closes;
            if !closed {
                if in_object {
                    at = read_key(text, at, &mut nodes)?;
                }
                let c = *text.get(at).ok_or(Stop)?;
                let kind = match c {
                    b'{' => Kind::Object,
                    b'[' => Kind::Array,
                    b'"' => Kind::String,
                    _ => Kind::Scalar,
                };
                let end = match kind {
                    Kind::Object | Kind::Array => {
                        if open.len() >= MAX_DEPTH {
                            return Err(Stop);
                        }
                        open.push((nodes.len(), kind == Kind::Object));
                        nodes.push(Entry::new(kind, at, at, 0));
                        at = skip_space(text, at + 1);
                        first = true;
                        continue;
                    }
                    Kind::String => string_end(text, at)?,
                    Kind::Scalar => scalar_end(text, at)?,
                };
                nodes.push(Entry::new(kind, at, end, nodes.len() + 1));
                at = skip_space(text, end);
            }
            // After a value: a comma, or the close of its container (or of
            // the one just closed's parent), or the end of the text.
            loop {
                if std::mem::take(&mut closed) {
                    let (entry, _) = open.pop().ok_or(Stop)?;
                    let next = nodes.len();
                    let node = nodes.get_mut(entry).ok_or(Stop)?;
                    *node = Entry::new(node.kind, node.start as usize, at + 1, next);
                    at = skip_space(text, at + 1);
                }
                let Some(&(_, object)) = open.last() else {
                    return if at == text.len() {
                        Ok(Tape { text, nodes })
                    } else {
                        Err(Stop)
                    };
                };
                match text.get(at) {
                    Some(b',') => {
                        at = skip_space(text, at + 1);
                        first = false;
                        break;
                    }
                    Some(b'}') if object => closed = true,
                    Some(b']') if !object => closed = true,
                    _ => return Err(Stop),
                }
            }
        }
    }

    fn node(&self, i: usize) -> Result<Node, Stop> {
        let entry = self.nodes.get(i).ok_or(Stop)?;
        Ok(Node {
            kind: entry.kind,
            start: entry.start as usize,
            end: entry.end as usize,
            next: entry.next as usize,
        })
    }

    fn bytes(&self, node: Node) -> &'a [u8] {
        self.text.get(node.start..node.end).unwrap_or_default()
    }

    /// The entries directly inside entry `i`.
    fn children(&self, i: usize) -> Result<Vec<usize>, Stop> {
        let node = self.node(i)?;
        let mut children = Vec::new();
        let mut at = i + 1;
        while at < node.next {
            children.push(at);
            // Every entry's `next` is past it, so the walk moves on.
            at = self.node(at)?.next.max(at + 1);
        }
        Ok(children)
    }

    /// Key entry `key` decoded (only a key with escapes is copied).
    fn key(&self, key: usize) -> Result<Cow<'a, str>, Stop> {
        let raw = self.bytes(self.node(key)?);
        let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
        Ok(if inner.contains(&b'\\') {
            Cow::Owned(serde_json::from_slice::<String>(raw).map_err(|_| Stop)?)
        } else {
            Cow::Borrowed(std::str::from_utf8(inner).map_err(|_| Stop)?)
        })
    }

    /// The members of an object from key entry `from` to its end
    /// (`end`, the object's `next`): each key, decoded, and its value's
    /// entry.
    fn members(&self, from: usize, end: usize) -> Result<Members<'a>, Stop> {
        let mut list = Vec::new();
        let mut key = from;
        while key < end {
            let value = key + 1;
            list.push((self.key(key)?, value));
            key = self.node(value)?.next.max(value + 1);
        }
        Members::new(list)
    }
}

/// An object's members, found by key.
struct Members<'a> {
    list: Vec<(Cow<'a, str>, usize)>,
    /// For a big object: where each key is in `list`.
    map: Option<HashMap<Cow<'a, str>, usize>>,
}

impl<'a> Members<'a> {
    /// Refuses a key written twice, whose value the two ends of a patch
    /// would not agree on.
    fn new(list: Vec<(Cow<'a, str>, usize)>) -> Result<Members<'a>, Stop> {
        if list.len() <= MAX_WALKED_MEMBERS {
            for (n, (key, _)) in list.iter().enumerate() {
                if list.iter().skip(n + 1).any(|(other, _)| other == key) {
                    return Err(Stop);
                }
            }
            return Ok(Members { list, map: None });
        }
        let mut map = HashMap::with_capacity(list.len());
        for (n, (key, _)) in list.iter().enumerate() {
            if map.insert(key.clone(), n).is_some() {
                return Err(Stop);
            }
        }
        Ok(Members {
            list,
            map: Some(map),
        })
    }

    fn get(&self, key: &str) -> Option<usize> {
        match &self.map {
            Some(map) => map
                .get(key)
                .and_then(|&n| self.list.get(n))
                .map(|&(_, value)| value),
            None => self
                .list
                .iter()
                .find(|(other, _)| other == key)
                .map(|&(_, value)| value),
        }
    }
}

/// The RFC 6902 patch that turns the JSON text `old` into `new`, as the
/// text of an array of ops (`[]` when they are equal); `None` when either
/// is not one JSON value, or making it would take more work than its
/// budget, or the patch would be at least as long as `new` (past
/// [`MIN_PATCH_CAP`]), and the whole snapshot goes instead.
pub fn json_patch(old: &[u8], new: &[u8]) -> Option<String> {
    let (old, new) = (Tape::read(old).ok()?, Tape::read(new).ok()?);
    TextDiffer::new(old, new).patch().ok()
}

/// A kept tape may take at most this many times its text's bytes (an
/// entry is 16 bytes: the demo's history takes 1.3 times, a value of one
/// entry per four bytes or fewer fits, one of a thousand zeros does not).
/// Past it the tape is dropped and read again.
const MAX_KEPT_PER_BYTE: usize = 4;

/// What a topic keeps from one delta for the next: the new text's tape,
/// which is the next delta's base, so that no text is read twice, and
/// the allocation of the tape before it, so that reading the next new
/// text touches no fresh memory. Each is kept only while it takes at
/// most [`MAX_KEPT_PER_BYTE`] times its text's size, so a topic holds at
/// most eight times [`MAX_DELTA_SNAPSHOT`] here (the demo's history about
/// two and a half times its text).
#[derive(Debug, Default)]
pub struct Kept {
    /// The tape of snapshot `.0`'s text, whose length is `.1`.
    tape: Option<(u64, usize, Vec<Entry>)>,
    spare: Vec<Entry>,
}

impl Kept {
    /// The seq of the snapshot whose tape is kept, if any.
    pub fn holds(&self) -> Option<u64> {
        self.tape.as_ref().map(|&(seq, _, _)| seq)
    }

    /// The heap bytes held.
    pub fn held(&self) -> usize {
        let tape = self.tape.as_ref().map_or(0, |(_, _, tape)| tape.capacity());
        (tape + self.spare.capacity()) * std::mem::size_of::<Entry>()
    }

    /// [`json_patch`] from snapshot `old_seq`'s text `old` to snapshot
    /// `new_seq`'s text `new`: `old` is read only if the tape kept is not
    /// of it, and `new`'s tape is kept for the next.
    pub fn json_patch(
        &mut self,
        (old_seq, old): (u64, &[u8]),
        (new_seq, new): (u64, &[u8]),
    ) -> Option<String> {
        let spare = std::mem::take(&mut self.spare);
        let (old_tape, spare) = match self.tape.take() {
            Some((seq, len, nodes)) if seq == old_seq && len == old.len() => {
                (Tape { text: old, nodes }, spare)
            }
            Some((_, _, stale)) => (Tape::read_into(old, spare).ok()?, stale),
            None => (Tape::read_into(old, spare).ok()?, Vec::new()),
        };
        let new_tape = Tape::read_into(new, spare).ok()?;
        let mut differ = TextDiffer::new(old_tape, new_tape);
        let patch = differ.run();
        // Within its bound, with the allocation's slack cut to it.
        let fit = |mut tape: Tape<'_>| {
            let bound = MAX_KEPT_PER_BYTE * tape.text.len() / std::mem::size_of::<Entry>();
            tape.nodes.shrink_to(bound);
            (tape.nodes.capacity() <= bound).then_some(tape.nodes)
        };
        let TextDiffer { old, new, .. } = differ;
        let len = new.text.len();
        self.tape = fit(new).map(|nodes| (new_seq, len, nodes));
        self.spare = fit(old).unwrap_or_default();
        patch.ok()
    }
}

/// One diff of two texts: their tapes, the budget, the ops written so far.
struct TextDiffer<'a> {
    old: Tape<'a>,
    new: Tape<'a>,
    budget: Budget,
    /// The random key of elements' hashes ([`hash_bytes`]).
    key: u64,
    /// The ops, comma-separated, without the array's brackets.
    out: Vec<u8>,
    ops: usize,
    /// The length of patch text at which the diff gives up.
    cap: usize,
    /// The diff stopped because the patch reached `cap`.
    full: bool,
}

/// A hash of `bytes` under `key`, eight bytes a step. It only sorts out
/// elements that differ: equal hashes are confirmed by comparing the
/// texts, each comparison paid from the budget, so a collision (found by
/// chance or aimed, the key being random per diff) costs at worst a
/// bigger delta or a diff that gives up, never a wrong one. SipHash took
/// a seventh of a delta of the demo's monitor.
fn hash_bytes(key: u64, bytes: &[u8]) -> u64 {
    const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = key ^ (bytes.len() as u64).wrapping_mul(MIX);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = <[u8; 8]>::try_from(word).map_or(0, u64::from_le_bytes);
        h = (h ^ word).wrapping_mul(MIX).rotate_left(31);
    }
    let mut tail = [0u8; 8];
    for (to, from) in tail.iter_mut().zip(words.remainder()) {
        *to = *from;
    }
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(MIX);
    h ^ (h >> 29)
}

/// A text's size for the work budget: one per value, plus its bytes.
fn weight(tape: &Tape<'_>) -> u64 {
    (tape.nodes.len() + tape.text.len() / BYTES_PER_UNIT) as u64
}

impl<'a> TextDiffer<'a> {
    fn new(old: Tape<'a>, new: Tape<'a>) -> TextDiffer<'a> {
        let limit = WORK_PER_WEIGHT
            .saturating_mul(weight(&old).saturating_add(weight(&new)))
            .saturating_add(MAX_LCS_CELLS as u64);
        let cap = new.text.len().max(MIN_PATCH_CAP);
        TextDiffer {
            old,
            new,
            budget: Budget { limit, spent: 0 },
            key: RandomState::new().hash_one(0x5eed_u64),
            cap,
            out: Vec::new(),
            ops: 0,
            full: false,
        }
    }

    fn patch(mut self) -> Result<String, Stop> {
        self.run()
    }

    /// Diffs the two texts once, and writes the patch.
    fn run(&mut self) -> Result<String, Stop> {
        self.diff(&mut String::new(), 0, 0)?;
        let mut patch = Vec::with_capacity(self.out.len() + 2);
        patch.push(b'[');
        patch.append(&mut self.out);
        patch.push(b']');
        String::from_utf8(patch).map_err(|_| Stop)
    }

    /// Appends an op, its value being entry `value` of the new text, and
    /// pays for the bytes written (a path's character may take six).
    fn op(&mut self, op: &str, path: &str, value: Option<usize>) -> Result<(), Stop> {
        let start = self.out.len();
        if self.ops > 0 {
            self.out.push(b',');
        }
        self.ops += 1;
        write!(self.out, r#"{{"op":"{op}","path":"#).map_err(|_| Stop)?;
        serde_json::to_writer(&mut self.out, path).map_err(|_| Stop)?;
        if let Some(value) = value {
            let bytes = self.new.bytes(self.new.node(value)?);
            self.out.extend_from_slice(br#","value":"#);
            self.out.extend_from_slice(bytes);
        }
        self.out.push(b'}');
        self.budget.spend_bytes(self.out.len() - start)?;
        // With its brackets.
        if self.out.len() + 2 >= self.cap {
            self.full = true;
            return Err(Stop);
        }
        Ok(())
    }

    /// Whether old entry `a` and new entry `b` are the same text, paying
    /// for the bytes compared.
    fn same_text(&mut self, a: Node, b: Node) -> Result<bool, Stop> {
        let (x, y) = (self.old.bytes(a), self.new.bytes(b));
        if x.len() != y.len() {
            return Ok(false);
        }
        self.budget.spend_bytes(x.len())?;
        Ok(x == y)
    }

    fn diff(&mut self, path: &mut String, a: usize, b: usize) -> Result<(), Stop> {
        self.budget.spend(1)?;
        let (x, y) = (self.old.node(a)?, self.new.node(b)?);
        if self.same_text(x, y)? {
            return Ok(());
        }
        self.diff_unequal(path, (a, x), (b, y))
    }

    /// Diffs two entries whose texts differ.
    fn diff_unequal(
        &mut self,
        path: &mut String,
        (a, x): (usize, Node),
        (b, y): (usize, Node),
    ) -> Result<(), Stop> {
        match (x.kind, y.kind) {
            (Kind::Object, Kind::Object) => self.diff_object(path, a, b),
            (Kind::Array, Kind::Array) => self.diff_array(path, a, b),
            _ => self.op("replace", path, Some(b)),
        }
    }

    /// Diffs two elements an array edit paired up: when their ops would
    /// spell out more than the new element itself (two different workflows
    /// that happen to sit at the same place), it is replaced whole; so it
    /// is when they reach the patch's cap, as the replace may be shorter.
    fn diff_paired(&mut self, path: &mut String, a: usize, b: usize) -> Result<(), Stop> {
        let (len, ops, at) = (self.out.len(), self.ops, path.len());
        let done = self.diff(path, a, b);
        let full = std::mem::take(&mut self.full);
        if done.is_err() && !full {
            return done;
        }
        // A diff that stopped left its keys on the path.
        path.truncate(at);
        let new_size = self.new.bytes(self.new.node(b)?).len();
        // The ops' own bytes, without the commas between them.
        let added = self.ops - ops;
        let commas = if ops > 0 {
            added
        } else {
            added.saturating_sub(1)
        };
        let spelled = (self.out.len() - len).saturating_sub(commas);
        if full || (added > 1 && spelled > new_size) {
            self.out.truncate(len);
            self.ops = ops;
            self.op("replace", path, Some(b))?;
        }
        Ok(())
    }

    fn diff_object(&mut self, path: &mut String, a: usize, b: usize) -> Result<(), Stop> {
        let len = path.len();
        let (end_a, end_b) = (self.old.node(a)?.next, self.new.node(b)?.next);
        if self.same_keys((a, end_a), (b, end_b))? {
            // Side by side, as a writer of snapshots mostly leaves them: a
            // member whose text did not change costs one comparison.
            let (mut i, mut j) = (a + 1, b + 1);
            let mut repeated = None;
            while i < end_a && j < end_b {
                let (x, y) = (self.old.node(i + 1)?, self.new.node(j + 1)?);
                if !self.same_text(x, y)? {
                    // A key written twice: the two ends of the patch would
                    // not agree on which one it changes. The keys are read
                    // for it once per object, at its first changed member,
                    // so that many changed members do not each read them all.
                    if repeated.is_none() {
                        repeated = Some(self.repeated_keys(b)?);
                    }
                    let key = self.new.key(j)?;
                    self.budget.spend_bytes(key.len())?;
                    if repeated.as_ref().is_some_and(|keys| keys.contains(&key)) {
                        return Err(Stop);
                    }
                    push_key(path, &key);
                    self.diff_unequal(path, (i + 1, x), (j + 1, y))?;
                    path.truncate(len);
                }
                (i, j) = (x.next.max(i + 2), y.next.max(j + 2));
            }
            return Ok(());
        }
        let (old, new) = (
            self.old.members(a + 1, end_a)?,
            self.new.members(b + 1, end_b)?,
        );
        self.budget
            .spend((old.list.len() + new.list.len()) as u64)?;
        for (key, _) in &old.list {
            if new.get(key).is_none() {
                push_key(path, key);
                self.op("remove", path, None)?;
                path.truncate(len);
            }
        }
        for (key, value) in &new.list {
            self.budget.spend_bytes(key.len())?;
            push_key(path, key);
            match old.get(key) {
                Some(was) => self.diff(path, was, *value)?,
                None => self.op("add", path, Some(*value))?,
            }
            path.truncate(len);
        }
        Ok(())
    }

    /// The keys of new object `object` written more than once, decoded,
    /// paying for every key's bytes.
    fn repeated_keys(&mut self, object: usize) -> Result<HashSet<Cow<'a, str>>, Stop> {
        let end = self.new.node(object)?.next;
        let (mut seen, mut repeated) = (HashSet::new(), HashSet::new());
        let mut key = object + 1;
        while key < end {
            self.budget
                .spend_bytes(self.new.bytes(self.new.node(key)?).len())?;
            if let Some(name) = seen.replace(self.new.key(key)?) {
                repeated.insert(name);
            }
            key = self.new.node(key + 1)?.next.max(key + 2);
        }
        Ok(repeated)
    }

    /// Whether two objects' keys (entries `a` and `b`, up to their ends)
    /// are spelled the same in the same order, paying for the bytes.
    fn same_keys(
        &mut self,
        (a, end_a): (usize, usize),
        (b, end_b): (usize, usize),
    ) -> Result<bool, Stop> {
        let (mut i, mut j) = (a + 1, b + 1);
        while i < end_a && j < end_b {
            let (x, y) = (
                self.old.bytes(self.old.node(i)?),
                self.new.bytes(self.new.node(j)?),
            );
            self.budget.spend_bytes(y.len())?;
            if x != y {
                return Ok(false);
            }
            i = self.old.node(i + 1)?.next.max(i + 2);
            j = self.new.node(j + 1)?.next.max(j + 2);
        }
        Ok(i >= end_a && j >= end_b)
    }

    /// The hash of each entry's text, paying for its bytes.
    fn hashes(&mut self, old: bool, entries: &[usize]) -> Result<Vec<u64>, Stop> {
        let tape = if old { &self.old } else { &self.new };
        let mut hashes = Vec::with_capacity(entries.len());
        for &entry in entries {
            let bytes = tape.bytes(tape.node(entry)?);
            self.budget.spend_bytes(bytes.len())?;
            hashes.push(hash_bytes(self.key, bytes));
        }
        Ok(hashes)
    }

    /// Whether old element `i` and new element `j` are equal: their
    /// hashes first, then, only when those agree, their text.
    fn same(
        &mut self,
        (a, ha): (&[usize], &[u64]),
        (b, hb): (&[usize], &[u64]),
        (i, j): (usize, usize),
    ) -> Result<bool, Stop> {
        match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if ha.get(i) == hb.get(j) => {
                let (x, y) = (self.old.node(x)?, self.new.node(y)?);
                self.same_text(x, y)
            }
            _ => Ok(false),
        }
    }

    fn diff_array(&mut self, path: &mut String, a: usize, b: usize) -> Result<(), Stop> {
        let (a, b) = (self.old.children(a)?, self.new.children(b)?);
        self.budget.spend((a.len() + b.len()) as u64)?;
        let (prefix, suffix) = self.common_ends(&a, &b)?;
        let a_mid = a.get(prefix..a.len() - suffix).unwrap_or_default();
        let b_mid = b.get(prefix..b.len() - suffix).unwrap_or_default();
        let script = if a_mid.is_empty() || b_mid.is_empty() {
            let mut script = vec![Edit::Remove; a_mid.len()];
            script.resize(a_mid.len() + b_mid.len(), Edit::Insert);
            script
        } else if a_mid.len().saturating_mul(b_mid.len()) <= MAX_LCS_CELLS {
            let ha = self.hashes(true, a_mid)?;
            let hb = self.hashes(false, b_mid)?;
            self.common_subsequence((a_mid, &ha), (b_mid, &hb))?
        } else {
            let mut script = vec![Edit::Remove; a_mid.len()];
            script.resize(a_mid.len() + b_mid.len(), Edit::Insert);
            script
        };
        // Walk the script gap by gap: in each run between kept elements, the
        // removed and inserted ones are paired up and diffed, and the rest
        // removed or added. `at` is the index in the array as patched so far.
        let len = path.len();
        let (mut at, mut i, mut j) = (prefix, 0, 0);
        let mut steps = script.iter().peekable();
        while steps.peek().is_some() {
            let (mut removed, mut inserted) = (0, 0);
            while let Some(&&step) = steps.peek() {
                match step {
                    Edit::Remove => removed += 1,
                    Edit::Insert => inserted += 1,
                    Edit::Keep => break,
                }
                steps.next();
            }
            let paired = removed.min(inserted);
            let pairs: Vec<(usize, usize)> = a_mid
                .iter()
                .skip(i)
                .copied()
                .zip(b_mid.iter().skip(j).copied())
                .take(paired)
                .collect();
            for (old, new) in pairs {
                path.push_str(&format!("/{at}"));
                self.diff_paired(path, old, new)?;
                path.truncate(len);
                at += 1;
            }
            for _ in paired..removed {
                self.op("remove", &format!("{path}/{at}"), None)?;
            }
            let added: Vec<usize> = b_mid
                .iter()
                .skip(j + paired)
                .take(inserted - paired)
                .copied()
                .collect();
            for new in added {
                self.op("add", &format!("{path}/{at}"), Some(new))?;
                at += 1;
            }
            i += removed;
            j += inserted;
            if steps.next().is_some() {
                at += 1;
                i += 1;
                j += 1;
            }
        }
        Ok(())
    }

    /// How many elements two arrays' entries `a` and `b` have in common at
    /// their start and, of the rest, at their end, compared by text (a
    /// change mostly ends a comparison at its first bytes); the rest are
    /// then hashed once each, so neither the table nor the walk compares
    /// two elements' text unless equal.
    fn common_ends(&mut self, a: &[usize], b: &[usize]) -> Result<(usize, usize), Stop> {
        let mut prefix = 0;
        while let (Some(&x), Some(&y)) = (a.get(prefix), b.get(prefix)) {
            let (x, y) = (self.old.node(x)?, self.new.node(y)?);
            if !self.same_text(x, y)? {
                break;
            }
            prefix += 1;
        }
        let mut suffix = 0;
        while suffix < a.len().min(b.len()) - prefix {
            let (x, y) = (a.len() - 1 - suffix, b.len() - 1 - suffix);
            let (Some(&x), Some(&y)) = (a.get(x), b.get(y)) else {
                break;
            };
            let (x, y) = (self.old.node(x)?, self.new.node(y)?);
            if !self.same_text(x, y)? {
                break;
            }
            suffix += 1;
        }
        Ok((prefix, suffix))
    }

    /// The edit script of a longest common subsequence of `a` and `b`, from a
    /// table of the subsequences' lengths for every pair of suffixes, filled
    /// by comparing hashes; a step is kept only if its elements are equal.
    fn common_subsequence(
        &mut self,
        (a, ha): (&[usize], &[u64]),
        (b, hb): (&[usize], &[u64]),
    ) -> Result<Vec<Edit>, Stop> {
        let (n, m) = (a.len(), b.len());
        self.budget.spend((n * m) as u64)?;
        let width = m + 1;
        // lengths[i * width + j]: the LCS length of a[i..] and b[j..].
        let mut lengths = vec![0u32; (n + 1) * width];
        let at =
            |lengths: &[u32], i: usize, j: usize| lengths.get(i * width + j).copied().unwrap_or(0);
        for (i, x) in ha.iter().enumerate().rev() {
            for (j, y) in hb.iter().enumerate().rev() {
                let value = if x == y {
                    at(&lengths, i + 1, j + 1) + 1
                } else {
                    at(&lengths, i + 1, j).max(at(&lengths, i, j + 1))
                };
                if let Some(cell) = lengths.get_mut(i * width + j) {
                    *cell = value;
                }
            }
        }
        let mut script = Vec::with_capacity(n + m);
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            let step = if self.same((a, ha), (b, hb), (i, j))? {
                Edit::Keep
            } else if i < n && (j >= m || at(&lengths, i + 1, j) >= at(&lengths, i, j + 1)) {
                Edit::Remove
            } else {
                Edit::Insert
            };
            match step {
                Edit::Keep => (i, j) = (i + 1, j + 1),
                Edit::Remove => i += 1,
                Edit::Insert => j += 1,
            }
            script.push(step);
        }
        Ok(script)
    }
}

/// Appends `/key` with RFC 6901's escapes (`~` as `~0`, `/` as `~1`).
fn push_key(path: &mut String, key: &str) {
    path.push('/');
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// One step of an edit script between two arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Keep,
    Remove,
    Insert,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Applies an RFC 6902 patch of add/remove/replace ops, as the browser does.
    fn apply(mut doc: Value, patch: &Value) -> Value {
        for op in patch.as_array().unwrap() {
            let path = op["path"].as_str().unwrap();
            if path.is_empty() {
                doc = op["value"].clone();
                continue;
            }
            let (parent, last) = path.rsplit_once('/').unwrap();
            let last = last.replace("~1", "/").replace("~0", "~");
            let target = doc.pointer_mut(parent).unwrap();
            match (op["op"].as_str().unwrap(), target) {
                ("add", Value::Array(items)) => {
                    items.insert(last.parse().unwrap(), op["value"].clone())
                }
                ("remove", Value::Array(items)) => {
                    items.remove(last.parse().unwrap());
                }
                ("replace", Value::Array(items)) => {
                    items[last.parse::<usize>().unwrap()] = op["value"].clone()
                }
                ("add" | "replace", Value::Object(map)) => {
                    map.insert(last, op["value"].clone());
                }
                ("remove", Value::Object(map)) => {
                    map.remove(&last);
                }
                other => panic!("bad op {other:?}"),
            }
        }
        doc
    }

    /// The patch between two values' compact text, parsed.
    fn patch_of(old: &Value, new: &Value) -> Option<Value> {
        let patch = json_patch(old.to_string().as_bytes(), new.to_string().as_bytes())?;
        Some(serde_json::from_str(&patch).expect("a patch is JSON"))
    }

    fn round_trip(old: Value, new: Value) -> Value {
        let patch = patch_of(&old, &new).unwrap();
        assert_eq!(apply(old, &patch), new, "{patch}");
        patch
    }

    /// Only what changed is in the patch, and applying it gives the new value.
    #[test]
    fn a_changed_member_costs_one_op() {
        let patch = round_trip(
            json!({"a": 1, "b": {"c": [1, 2, 3], "d/~": "x"}, "gone": true}),
            json!({"a": 1, "b": {"c": [1, 2, 4], "d/~": "y"}, "new": null}),
        );
        assert_eq!(
            patch,
            json!([
                {"op": "remove", "path": "/gone"},
                {"op": "replace", "path": "/b/c/2", "value": 4},
                {"op": "replace", "path": "/b/d~1~0", "value": "y"},
                {"op": "add", "path": "/new", "value": null},
            ])
        );
        assert_eq!(
            json_patch(br#"[1,{"x":2}]"#, br#"[1,{"x":2}]"#).as_deref(),
            Some("[]")
        );
        // Written compact, as serde_json writes a patch.
        assert_eq!(
            json_patch(br#"{"a":1,"b":"x"}"#, br#"{"a":2,"b":"x"}"#).as_deref(),
            Some(r#"[{"op":"replace","path":"/a","value":2}]"#)
        );
    }

    /// A new item first and the oldest dropped, as the history panel does,
    /// is one add and one remove, not a replace of every element.
    #[test]
    fn an_array_shifted_by_one_is_an_add_and_a_remove() {
        let old: Vec<Value> = (0..50)
            .map(|i| json!({"id": i, "pad": "x".repeat(40)}))
            .collect();
        let mut new = old.clone();
        new.insert(0, json!({"id": 50}));
        new.pop();
        let patch = round_trip(json!({"workflows": old}), json!({"workflows": new}));
        assert_eq!(patch.as_array().unwrap().len(), 2, "{patch}");
    }

    /// Elements changed in place are diffed member by member; arrays of
    /// any shape round-trip, the empty ones and those too big for the table
    /// (compared by index), whose patch is given up when it would be
    /// longer than the new text.
    #[test]
    fn arrays_of_every_shape_round_trip() {
        round_trip(
            json!([{"a": 1, "b": 1, "c": 1}, 2]),
            json!([{"a": 1, "b": 2, "c": 1}, 3, 4]),
        );
        round_trip(json!([]), json!([1, 2]));
        round_trip(json!([1, 2, 3]), json!([]));
        round_trip(json!([1, 2, 3, 4, 5]), json!([5, 3, 1]));
        round_trip(json!({"a": [1]}), json!({"a": {"0": 1}}));
        round_trip(json!({}), json!({"a": {}}));
        round_trip(json!(1), json!("x"));
        let big: Vec<Value> = (0..300).map(|i| json!(i)).collect();
        let sparse: Vec<Value> = (0..300)
            .map(|i| json!(if i % 10 == 0 || i == 299 { -i - 1 } else { i }))
            .collect();
        let patch = round_trip(Value::Array(big.clone()), Value::Array(sparse));
        assert_eq!(patch.as_array().unwrap().len(), 31);
        let other: Vec<Value> = (0..300).map(|i| json!(i * 7 % 301)).collect();
        let permuted = patch_of(&Value::Array(big), &Value::Array(other));
        assert!(permuted.is_none(), "its patch outweighs the new text");
    }

    /// An element that changed almost everywhere is replaced whole, and
    /// values of different kinds are replaced, the root too.
    #[test]
    fn a_wholly_changed_element_is_one_replace() {
        let patch = round_trip(
            json!([{"a": 1, "b": 2, "c": 3}]),
            json!([{"a": 4, "b": 5, "c": 6}]),
        );
        assert_eq!(
            patch,
            json!([{"op": "replace", "path": "/0", "value": {"a": 4, "b": 5, "c": 6}}])
        );
        let patch = round_trip(json!([1]), json!({"a": 1}));
        assert_eq!(
            patch,
            json!([{"op": "replace", "path": "", "value": {"a": 1}}])
        );
    }

    /// Keys and strings with escapes (quotes, backslashes, control
    /// characters, `\u` forms, `~` and `/`) are found by their decoded
    /// name and round-trip; text with whitespace between its tokens is
    /// read too.
    #[test]
    fn escapes_and_whitespace_round_trip() {
        round_trip(
            json!({"q\"k": 1, "b\\s": [1], "n\nl": "x\u{1}y", "é/~1": {"t\tab": 1}}),
            json!({"q\"k": 2, "b\\s": [1, 2], "n\nl": "x\u{2}y", "é/~1": {"t\tab": 3}}),
        );
        // The same key spelled with and without a `\u` escape is one key.
        let patch = json_patch(br#"{"a":1,"b":2}"#, br#"{"\u0061":1,"b":3}"#).unwrap();
        assert_eq!(patch, r#"[{"op":"replace","path":"/b","value":3}]"#);
        let patch = json_patch(
            b" { \"a\" : [ 1 , 2 ] ,\n\"b\":{ } } ",
            br#"{"a":[1,3],"b":{"c":true}}"#,
        )
        .unwrap();
        let patch: Value = serde_json::from_str(&patch).unwrap();
        assert_eq!(
            apply(json!({"a": [1, 2], "b": {}}), &patch),
            json!({"a": [1, 3], "b": {"c": true}})
        );
    }

    /// Text that is not one JSON value (cut short, trailing commas,
    /// missing colons, stray bytes, a changed member's key written twice,
    /// nesting past the bound) is refused: the snapshot goes whole. No prefix of a document
    /// makes the reader panic.
    #[test]
    fn text_the_tape_cannot_read_is_refused() {
        let good = br#"{"a":[1,{"b":"c\"d"}],"e":null}"#;
        for bad in [
            &b""[..],
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{1:2}",
            b"[1 2]",
            b"[1]]",
            b"[1],",
            b"\"ab",
            b"\"a\x01b\"",
            b"]",
            b"{\"a\":1,\"a\":2}",
            b"x",
        ] {
            assert_eq!(
                json_patch(bad, good),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(
                json_patch(good, bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A changed member whose key is written twice, where both texts
        // have the same keys in the same order too, however the second is
        // spelled. (One written twice but unchanged does no harm: every
        // reader keeps the last, and it is the same on both ends.)
        for (old, new) in [
            (&br#"{"a":1,"a":2}"#[..], &br#"{"a":1,"a":3}"#[..]),
            (br#"{"a":1,"\u0061":2}"#, br#"{"a":1,"\u0061":3}"#),
        ] {
            assert_eq!(
                json_patch(old, new),
                None,
                "{}",
                String::from_utf8_lossy(new)
            );
        }
        assert_eq!(
            json_patch(br#"{"a":1,"b":2,"a":2}"#, br#"{"a":1,"b":3,"a":2}"#).as_deref(),
            Some(r#"[{"op":"replace","path":"/b","value":3}]"#)
        );
        for end in 0..good.len() {
            let _ = json_patch(&good[..end], good);
        }
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(json_patch(deep(MAX_DEPTH).as_bytes(), b"[]").is_some());
        assert_eq!(json_patch(deep(MAX_DEPTH + 1).as_bytes(), b"[]"), None);
    }

    /// A small deterministic generator, so a failure names its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// A workflow like the demo's history and monitor rows.
    fn workflow(rng: &mut Rng, id: usize) -> Value {
        let steps: Vec<Value> = (0..rng.below(4))
            .map(|s| json!({"name": format!("step {s}"), "done": rng.below(2) == 1}))
            .collect();
        let status = ["running", "done", "failed"][rng.below(3)];
        let note = ["", "a \"quoted\" note", "line\nbreak", "~/path", "é"][rng.below(5)];
        let started = format!("2026-12-06T11:{:02}:{:02}Z", rng.below(60), rng.below(60));
        json!({
            "adw_id": format!("{id:08x}"),
            "status": status,
            "progress": rng.below(101),
            "duration_s": rng.below(5000) as f64 / 10.0,
            "started": started,
            "steps": steps,
            "note": note,
        })
    }

    /// One random edit somewhere in a demo-like document.
    fn edit(rng: &mut Rng, doc: &mut Value, next_id: &mut usize) {
        let rows = doc["workflows"].as_array_mut().unwrap();
        match rng.below(10) {
            0 => {
                rows.insert(0, workflow(rng, *next_id));
                *next_id += 1;
            }
            1 if !rows.is_empty() => {
                rows.pop();
            }
            2 if !rows.is_empty() => {
                let at = rng.below(rows.len());
                rows.remove(at);
            }
            3 if !rows.is_empty() => {
                let at = rng.below(rows.len());
                rows[at]["progress"] = json!(rng.below(101));
            }
            4 if !rows.is_empty() => {
                let at = rng.below(rows.len());
                let row = rows[at].as_object_mut().unwrap();
                if row.remove("note").is_none() {
                    row.insert("note".into(), json!("back"));
                }
            }
            5 if rows.len() > 1 => {
                let (a, b) = (rng.below(rows.len()), rng.below(rows.len()));
                rows.swap(a, b);
            }
            6 if !rows.is_empty() => {
                let at = rng.below(rows.len());
                let steps = rows[at]["steps"].as_array_mut().unwrap();
                steps.push(json!({"name": "late", "done": false}));
            }
            7 if !rows.is_empty() => {
                // Same length, other bytes: a timestamp that moved.
                let at = rng.below(rows.len());
                let started = format!("2026-12-06T12:{:02}:{:02}Z", rng.below(60), rng.below(60));
                rows[at]["started"] = json!(started);
            }
            8 => {
                doc["updated"] = json!(format!("2026-12-06T12:00:{:02}Z", rng.below(60)));
            }
            _ => {
                let total = doc["workflows"].as_array().unwrap().len();
                doc["counts"] = json!({"total": total, "kinds": [rng.below(3), rng.below(3)]});
            }
        }
    }

    /// Many random edits of a demo-like document (rows added first,
    /// dropped, moved, their members changed, added and removed, strings
    /// of the same length changed, escapes): every patch applied to the
    /// old value gives the new one exactly, and is smaller than the new
    /// text when only a few members changed.
    #[test]
    fn random_edits_of_a_demo_like_document_round_trip() {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut next_id = 0;
            let rows: Vec<Value> = (0..20)
                .map(|_| {
                    next_id += 1;
                    workflow(&mut rng, next_id)
                })
                .collect();
            let mut doc =
                json!({"workflows": rows, "updated": "2026-12-06T11:00:00Z", "counts": {}});
            for step in 0..50 {
                let old = doc.clone();
                for _ in 0..1 + rng.below(3) {
                    edit(&mut rng, &mut doc, &mut next_id);
                }
                let patch = patch_of(&old, &doc)
                    .unwrap_or_else(|| panic!("seed {seed} step {step}: over budget"));
                assert_eq!(apply(old, &patch), doc, "seed {seed} step {step}: {patch}");
            }
        }
    }

    /// A text whose tape would pass its bound (a dense array: 16 bytes of
    /// tape for every 2 of text) is not kept, nor its allocation: a topic
    /// publishing such values holds no more than its bound.
    #[test]
    fn a_dense_text_is_not_kept() {
        let old = format!("[{}]", vec!["0"; 5000].join(","));
        let new = old.replacen('0', "1", 1);
        let mut kept = Kept::default();
        assert!(
            kept.json_patch((1, old.as_bytes()), (2, new.as_bytes()))
                .is_some()
        );
        assert_eq!(kept.holds(), None);
        assert!(
            kept.held() <= MAX_KEPT_PER_BYTE * new.len(),
            "{}",
            kept.held()
        );
    }

    /// A topic's diffs through [`Kept`]: each against the snapshot before,
    /// whose tape it kept, or, when a fan-out made no delta or a burst
    /// came between two, against an older one, whose tape it did not
    /// keep; every patch applied to its base gives the new value, and
    /// what it holds stays within its bound.
    #[test]
    fn a_kept_tape_serves_only_its_own_text() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut next_id = 0;
        let rows: Vec<Value> = (0..20)
            .map(|_| {
                next_id += 1;
                workflow(&mut rng, next_id)
            })
            .collect();
        let mut doc = json!({"workflows": rows, "updated": "2026-12-06T11:00:00Z"});
        let mut snapshots = vec![doc.clone()];
        let mut kept = Kept::default();
        let mut served = 0;
        for seq in 1..300u64 {
            edit(&mut rng, &mut doc, &mut next_id);
            snapshots.push(doc.clone());
            // Mostly the one before; now and then none, or an older base.
            let back = match rng.below(8) {
                0 => continue,
                1 => 1 + rng.below(3).min(seq as usize - 1),
                _ => 1,
            };
            let base_seq = seq - back as u64;
            let base = &snapshots[base_seq as usize];
            let (old, new) = (base.to_string(), doc.to_string());
            let patch = kept
                .json_patch((base_seq, old.as_bytes()), (seq, new.as_bytes()))
                .unwrap_or_else(|| panic!("seq {seq} from {base_seq}: no patch"));
            let patch: Value = serde_json::from_str(&patch).unwrap();
            assert_eq!(
                apply(base.clone(), &patch),
                doc,
                "seq {seq} from {base_seq}"
            );
            assert!(kept.held() <= 2 * MAX_KEPT_PER_BYTE * new.len().max(old.len()));
            assert!(kept.tape.is_some(), "a demo-like tape is kept");
            served += usize::from(back == 1);
        }
        assert!(served > 100, "{served}");
    }

    /// What one diff did: its patch (`None`: it gave up), the work it
    /// spent and was allowed, the two texts' weights, and the bytes of ops
    /// it wrote.
    struct Work {
        patch: Option<String>,
        spent: u64,
        limit: u64,
        size: u64,
        written: usize,
    }

    fn work(old: &str, new: &str) -> Work {
        let (old, new) = (Tape::read(old.as_bytes()), Tape::read(new.as_bytes()));
        let mut differ = TextDiffer::new(old.unwrap(), new.unwrap());
        let size = weight(&differ.old) + weight(&differ.new);
        let limit = differ.budget.limit;
        let done = differ.diff(&mut String::new(), 0, 0);
        let spent = differ.budget.spent;
        let ops = std::mem::take(&mut differ.out);
        let written = ops.len();
        let patch = done
            .ok()
            .map(|()| format!("[{}]", String::from_utf8(ops).unwrap()));
        Work {
            patch,
            spent,
            limit,
            size,
            written,
        }
    }

    /// An object of 200 members, each key 60 escaped line breaks and a
    /// number, every other value changed: its keys are checked for repeats
    /// once, not once per changed member, so the work stays in proportion
    /// to the texts (checked per member, it is the keys squared).
    #[test]
    fn a_changed_objects_keys_are_checked_once() {
        let text = |value: u8| {
            let members: Vec<String> = (0..200)
                .map(|i| format!(r#""{}{i:06}":{}"#, r"\n".repeat(60), value * (i % 2)))
                .collect();
            format!("{{{}}}", members.join(","))
        };
        let (old, new) = (text(0), text(1));
        let Work {
            patch, spent, size, ..
        } = work(&old, &new);
        assert!(spent <= 4 * size, "spent {spent} for a size of {size}");
        let patch: Value = serde_json::from_str(&patch.expect("within budget")).unwrap();
        assert_eq!(patch.as_array().unwrap().len(), 100);
        let (old, new): (Value, Value) = (
            serde_json::from_str(&old).unwrap(),
            serde_json::from_str(&new).unwrap(),
        );
        assert_eq!(apply(old, &patch), new);
    }

    /// Many changed members of one object cost each its own key and value,
    /// not the whole object again: a flat object of 1,000 numbers with 60
    /// changed, and a dashboard's 40 counters changed beside a history of
    /// 1,500 rows, each get a small delta.
    #[test]
    fn many_changed_members_of_an_object_get_a_delta() {
        let flat = |changed: i64| {
            let map: serde_json::Map<String, Value> = (0..1000i64)
                .map(|i| {
                    let value = if i % 16 == 0 && i / 16 < changed {
                        -i - 1
                    } else {
                        i
                    };
                    (format!("k{i:04}"), json!(value))
                })
                .collect();
            Value::Object(map)
        };
        let patch = round_trip(flat(0), flat(60));
        assert_eq!(patch.as_array().unwrap().len(), 60);
        let history: Vec<Value> = (0..1500)
            .map(|i| json!({"id": i, "s": "done", "p": 100}))
            .collect();
        let dashboard = |changed: i64| {
            let mut map: serde_json::Map<String, Value> = (0..40)
                .map(|i: i64| {
                    (
                        format!("c{i:02}"),
                        json!(if i < changed { -i - 1 } else { i }),
                    )
                })
                .collect();
            map.insert("history".into(), json!(history));
            Value::Object(map)
        };
        let patch = round_trip(dashboard(0), dashboard(40));
        assert_eq!(patch.as_array().unwrap().len(), 40);
        assert!(patch.to_string().len() < 2048, "{patch}");
    }

    /// A key of 2,000 control characters (six bytes each as a path) over
    /// 6,000 numbers that all changed: the patch is given up once it is as
    /// long as the new text, which a delta is never sent at, so what the
    /// diff writes stays within twice the text, not thousands of paths.
    #[test]
    fn a_patch_longer_than_the_new_text_is_given_up() {
        let text = |value: u8| {
            let numbers = vec![value.to_string(); 6000].join(",");
            format!(r#"{{"{}":[{numbers}]}}"#, r"\u0001".repeat(2000))
        };
        let (old, new) = (text(0), text(1));
        let Work {
            patch,
            spent,
            limit,
            written,
            ..
        } = work(&old, &new);
        assert!(
            written <= 2 * new.len(),
            "wrote {written} for {}",
            new.len()
        );
        assert_eq!(patch, None, "the snapshot goes whole");
        assert!(spent <= limit, "spent {spent} of {limit}");
    }

    /// An element whose ops reach the patch's cap, though it alone is
    /// much smaller than the new text, is replaced whole: the diff does not
    /// give up a patch that would be sent.
    #[test]
    fn a_paired_element_past_the_cap_is_replaced_whole() {
        let doc = |value: u8| {
            let row: serde_json::Map<String, Value> = (0..300)
                .map(|i| (format!("a{i:03}"), json!(value)))
                .collect();
            json!({"pad": "x".repeat(10_000), "rows": [row]})
        };
        let (old, new) = (doc(0), doc(1));
        assert!(300 * 45 > new.to_string().len(), "its ops pass the cap");
        let patch = round_trip(old, new.clone());
        assert_eq!(
            patch,
            json!([{"op": "replace", "path": "/rows/0", "value": new["rows"][0]}])
        );
    }

    /// 256 equal arrays of 2,040 numbers against the same with each last
    /// number changed (a 1 MiB publish where every pair of elements is
    /// alike up to its end) costs work in proportion to its size, not to
    /// the table's cells times the elements' size, and still gets its
    /// 256-op delta.
    #[test]
    fn alike_elements_cost_work_in_proportion_to_their_size() {
        let text = |last: u8| {
            let inner = format!("[{}{last}]", "0,".repeat(2039));
            format!("[{}]", vec![inner; 256].join(","))
        };
        let (old, new) = (text(1), text(2));
        let Work {
            patch, spent, size, ..
        } = work(&old, &new);
        let patch: Value = serde_json::from_str(&patch.expect("within budget")).unwrap();
        assert_eq!(patch.as_array().unwrap().len(), 256);
        assert_eq!(
            patch[255],
            json!({"op": "replace", "path": "/255/2039", "value": 2})
        );
        assert!(spent <= 4 * size, "spent {spent} for a size of {size}");
    }

    /// Arrays nested a hundred deep around a changed 64 KiB string make
    /// every level compare what is below it: the differ gives up once its
    /// budget is spent, having done at most one step more.
    #[test]
    fn deep_nesting_gives_up_within_the_budget() {
        let value = |last: u64| {
            let mut v = json!(["x".repeat(1 << 16), last]);
            for _ in 0..100 {
                v = json!([v]);
            }
            v.to_string()
        };
        let (old, new) = (value(1), value(2));
        let Work {
            patch,
            spent,
            limit,
            size,
            ..
        } = work(&old, &new);
        assert_eq!(patch, None, "the snapshot goes whole");
        assert!(spent <= limit + size, "spent {spent} of {limit}");
        assert!(limit <= WORK_PER_WEIGHT * size + (1 << 16));
        // The same shape shallow enough is diffed.
        let shallow = |last: u64| json!([[["x".repeat(1 << 16), last]]]);
        assert_eq!(
            patch_of(&shallow(1), &shallow(2)),
            Some(json!([{"op": "replace", "path": "/0/0/1", "value": 2}]))
        );
    }

    /// Names other than the known ones are not formats.
    #[test]
    fn format_names() {
        assert_eq!(
            DeltaFormat::parse("json-patch"),
            Some(DeltaFormat::JsonPatch)
        );
        assert_eq!(DeltaFormat::parse("fossil"), None);
        assert_eq!(DeltaFormat::parse(""), None);
        assert_eq!(DeltaFormat::JsonPatch.name(), DeltaFormat::NAMES[0]);
    }
}
