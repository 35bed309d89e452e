//! Deltas between two snapshots of a topic (`?delta=json-patch`): the
//! formats a subscriber may ask for, and the differ that makes an RFC 6902
//! JSON Patch out of two values, which the browser applies with
//! `web/delta.js`.
//!
//! JSON Patch won on the demo's streams over fossil delta and over deflate
//! alone (figures in `benches/delta.rs` and docs/lab/performance.md): its ops
//! carry only the members that changed, which permessage-deflate then
//! shrinks further, and its applier is a few dozen lines of JavaScript.
//!
//! Arrays are where a naive differ loses: the history panel puts each new
//! workflow first and drops the oldest, which compared index by index
//! changes every element. So an array's elements are matched by a longest
//! common subsequence (after trimming the common ends), and an element
//! removed and one added at the same place are diffed as one changed
//! element, so a workflow whose progress moved costs only that member.

use serde_json::{Map, Value, json};

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

/// Past this many element pairs (`old.len() * new.len()` after trimming
/// the common ends) an array is compared by index instead of by common
/// subsequence, which would cost more time and memory than the delta is
/// worth: 64 K cells is a quarter of a megabyte of table.
const MAX_LCS_CELLS: usize = 1 << 16;

/// The RFC 6902 patch that turns `old` into `new`, as a JSON array of ops;
/// empty when they are equal.
pub fn json_patch(old: &Value, new: &Value) -> Value {
    let mut ops = Vec::new();
    diff(&mut String::new(), old, new, &mut ops);
    Value::Array(ops)
}

/// Appends the ops that turn `old` into `new` at `path` (an RFC 6901
/// pointer, restored before returning).
fn diff(path: &mut String, old: &Value, new: &Value, ops: &mut Vec<Value>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => diff_object(path, a, b, ops),
        (Value::Array(a), Value::Array(b)) => diff_array(path, a, b, ops),
        _ => ops.push(json!({"op": "replace", "path": path.as_str(), "value": new})),
    }
}

/// Diffs two elements an array edit paired up: when their ops would
/// spell out more than the new element itself (two different workflows
/// that happen to sit at the same place), it is replaced whole.
fn diff_paired(path: &mut String, old: &Value, new: &Value, ops: &mut Vec<Value>) {
    let mut inner = Vec::new();
    diff(path, old, new, &mut inner);
    let size = |v: &Value| serde_json::to_string(v).map_or(0, |s| s.len());
    let spelled: usize = inner.iter().map(size).sum();
    if inner.len() > 1 && spelled > size(new) {
        ops.push(json!({"op": "replace", "path": path.as_str(), "value": new}));
    } else {
        ops.extend(inner);
    }
}

fn diff_object(
    path: &mut String,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    ops: &mut Vec<Value>,
) {
    let len = path.len();
    for key in a.keys().filter(|key| !b.contains_key(*key)) {
        push_key(path, key);
        ops.push(json!({"op": "remove", "path": path.as_str()}));
        path.truncate(len);
    }
    for (key, value) in b {
        push_key(path, key);
        match a.get(key) {
            Some(old) => diff(path, old, value, ops),
            None => ops.push(json!({"op": "add", "path": path.as_str(), "value": value})),
        }
        path.truncate(len);
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

fn diff_array(path: &mut String, a: &[Value], b: &[Value], ops: &mut Vec<Value>) {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a_rest, b_rest) = (
        a.get(prefix..).unwrap_or_default(),
        b.get(prefix..).unwrap_or_default(),
    );
    let suffix = a_rest
        .iter()
        .rev()
        .zip(b_rest.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let a_mid = a_rest.get(..a_rest.len() - suffix).unwrap_or_default();
    let b_mid = b_rest.get(..b_rest.len() - suffix).unwrap_or_default();
    let script = if a_mid.len().saturating_mul(b_mid.len()) <= MAX_LCS_CELLS {
        common_subsequence(a_mid, b_mid)
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
        for (old, new) in a_mid.iter().skip(i).zip(b_mid.iter().skip(j)).take(paired) {
            path.push_str(&format!("/{at}"));
            diff_paired(path, old, new, ops);
            path.truncate(len);
            at += 1;
        }
        for _ in paired..removed {
            ops.push(json!({"op": "remove", "path": format!("{path}/{at}")}));
        }
        for new in b_mid.iter().skip(j + paired).take(inserted - paired) {
            ops.push(json!({"op": "add", "path": format!("{path}/{at}"), "value": new}));
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
}

/// The edit script of a longest common subsequence of `a` and `b`, from a
/// table of the subsequences' lengths for every pair of suffixes.
fn common_subsequence(a: &[Value], b: &[Value]) -> Vec<Edit> {
    let (n, m) = (a.len(), b.len());
    let width = m + 1;
    // lengths[i * width + j]: the LCS length of a[i..] and b[j..].
    let mut lengths = vec![0u32; (n + 1) * width];
    let at = |lengths: &[u32], i: usize, j: usize| lengths.get(i * width + j).copied().unwrap_or(0);
    for (i, x) in a.iter().enumerate().rev() {
        for (j, y) in b.iter().enumerate().rev() {
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
        let step = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => Edit::Keep,
            (Some(_), Some(_)) if at(&lengths, i + 1, j) >= at(&lengths, i, j + 1) => Edit::Remove,
            (Some(_), None) => Edit::Remove,
            _ => Edit::Insert,
        };
        match step {
            Edit::Keep => (i, j) = (i + 1, j + 1),
            Edit::Remove => i += 1,
            Edit::Insert => j += 1,
        }
        script.push(step);
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn round_trip(old: Value, new: Value) -> Value {
        let patch = json_patch(&old, &new);
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
            json_patch(&json!([1, {"x": 2}]), &json!([1, {"x": 2}])),
            json!([])
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
    /// any shape round-trip, the empty ones and those too big for the table.
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
        round_trip(json!(1), json!("x"));
        let big: Vec<Value> = (0..300).map(|i| json!(i)).collect();
        let other: Vec<Value> = (0..300).map(|i| json!(i * 7 % 301)).collect();
        round_trip(Value::Array(big), Value::Array(other));
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
