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
//!
//! A publisher chooses both values, so a diff's work is bounded, not just
//! its table: each array's elements are hashed once and compared by hash
//! (their values only when the hashes agree), and every step spends from
//! a budget proportional to the two values' sizes. Past it the diff gives
//! up, and the subscriber gets the whole snapshot, as it would without
//! `?delta=`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};

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

/// Snapshots bigger than this (their JSON, in bytes) go whole to delta
/// subscribers, and the topic keeps no base for them: a delta costs two
/// parses and a diff per publish, and its base is held while the topic
/// has a delta subscriber, which past this size costs more than it saves.
/// The demo's largest stream, the workflow history, is 36-72 KB.
pub const MAX_DELTA_SNAPSHOT: usize = 256 * 1024;

/// Past this many element pairs (`old.len() * new.len()` after trimming
/// the common ends) an array is compared by index instead of by common
/// subsequence, which would cost more time and memory than the delta is
/// worth: 64 K cells is a quarter of a megabyte of table.
const MAX_LCS_CELLS: usize = 1 << 16;

/// The work a diff may do, in units of [`weight`], as a multiple of the
/// two values' weights (plus one full table): a publisher picks what is
/// diffed, and a value shaped to make every step compare deeply must not
/// hold the loop. Every delta of ten simulated minutes of the demo stays
/// within it (`benches/delta.rs` fails otherwise).
const WORK_PER_WEIGHT: u64 = 8;

/// String bytes one unit of work stands for: comparing, hashing or
/// writing a string costs by its length, a number or a bracket does not.
const BYTES_PER_UNIT: usize = 16;

/// The RFC 6902 patch that turns `old` into `new`, as a JSON array of ops
/// (empty when they are equal); `None` when making it would take more
/// work than its budget, and the whole snapshot goes instead.
pub fn json_patch(old: &Value, new: &Value) -> Option<Value> {
    Differ::new(old, new).patch(old, new)
}

/// A value's size for the work budget: one per node, plus its strings'
/// and keys' bytes.
fn weight(value: &Value) -> u64 {
    let bytes = |s: &str| (s.len() / BYTES_PER_UNIT) as u64;
    1 + match value {
        Value::String(s) => bytes(s),
        Value::Array(items) => items.iter().map(weight).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| bytes(k) + weight(v)).sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

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

/// One diff: its budget, and the keyed hasher its element hashes use (a
/// publisher cannot aim collisions at a per-process random key, and a
/// collision would only cost a smaller delta: equal hashes are confirmed).
struct Differ {
    budget: Budget,
    hasher: RandomState,
    ops: Vec<Value>,
}

impl Differ {
    fn new(old: &Value, new: &Value) -> Differ {
        let cells = MAX_LCS_CELLS as u64;
        let limit = WORK_PER_WEIGHT
            .saturating_mul(weight(old).saturating_add(weight(new)))
            .saturating_add(cells);
        Differ {
            budget: Budget { limit, spent: 0 },
            hasher: RandomState::new(),
            ops: Vec::new(),
        }
    }

    fn patch(mut self, old: &Value, new: &Value) -> Option<Value> {
        self.diff(&mut String::new(), old, new).ok()?;
        Some(Value::Array(self.ops))
    }

    /// Appends an op, paying for its path and for the copy of its value.
    fn op(&mut self, op: &str, path: &str, value: Option<&Value>) -> Result<(), OverBudget> {
        self.budget.spend_bytes(path.len())?;
        let op = match value {
            Some(value) => {
                self.budget.spend(weight(value))?;
                json!({"op": op, "path": path, "value": value})
            }
            None => json!({"op": op, "path": path}),
        };
        self.ops.push(op);
        Ok(())
    }

    /// Whether two values are equal, paying for each node compared.
    fn equal(&mut self, a: &Value, b: &Value) -> Result<bool, OverBudget> {
        self.budget.spend(1)?;
        Ok(match (a, b) {
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (x, y) in x.iter().zip(y) {
                    if !self.equal(x, y)? {
                        return Ok(false);
                    }
                }
                true
            }
            (Value::Object(x), Value::Object(y)) => {
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (key, x) in x {
                    self.budget.spend_bytes(key.len())?;
                    match y.get(key) {
                        Some(y) if self.equal(x, y)? => {}
                        _ => return Ok(false),
                    }
                }
                true
            }
            (Value::String(x), Value::String(y)) => {
                self.budget.spend_bytes(x.len().min(y.len()))?;
                x == y
            }
            (a, b) => a == b,
        })
    }

    /// A hash of `value` that equal values share (members in any order,
    /// as `==` on objects does), paying for each node.
    fn hash(&mut self, value: &Value) -> Result<u64, OverBudget> {
        self.budget.spend(1)?;
        let mut state = self.hasher.build_hasher();
        match value {
            Value::Null => 0u8.hash(&mut state),
            Value::Bool(b) => (1u8, b).hash(&mut state),
            Value::Number(n) => {
                // As `Number`'s `==`: 1 and 1.0 differ, 0.0 and -0.0 do not.
                if let Some(n) = n.as_u64() {
                    (2u8, n).hash(&mut state);
                } else if let Some(n) = n.as_i64() {
                    (3u8, n).hash(&mut state);
                } else {
                    let f = n.as_f64().unwrap_or(0.0);
                    (4u8, if f == 0.0 { 0 } else { f.to_bits() }).hash(&mut state);
                }
            }
            Value::String(s) => {
                self.budget.spend_bytes(s.len())?;
                (5u8, s).hash(&mut state);
            }
            Value::Array(items) => {
                (6u8, items.len()).hash(&mut state);
                for item in items {
                    self.hash(item)?.hash(&mut state);
                }
            }
            Value::Object(map) => {
                let mut members = 0u64;
                for (key, item) in map {
                    self.budget.spend_bytes(key.len())?;
                    let item = self.hash(item)?;
                    members = members.wrapping_add(self.hasher.hash_one((key, item)));
                }
                (7u8, map.len(), members).hash(&mut state);
            }
        }
        Ok(state.finish())
    }

    /// Appends the ops that turn `old` into `new` at `path` (an RFC 6901
    /// pointer, restored before returning).
    fn diff(&mut self, path: &mut String, old: &Value, new: &Value) -> Result<(), OverBudget> {
        match (old, new) {
            (Value::Object(a), Value::Object(b)) => self.diff_object(path, a, b),
            (Value::Array(a), Value::Array(b)) => self.diff_array(path, a, b),
            (old, new) if self.equal(old, new)? => Ok(()),
            _ => self.op("replace", path, Some(new)),
        }
    }

    /// Diffs two elements an array edit paired up: when their ops would
    /// spell out more than the new element itself (two different workflows
    /// that happen to sit at the same place), it is replaced whole.
    fn diff_paired(
        &mut self,
        path: &mut String,
        old: &Value,
        new: &Value,
    ) -> Result<(), OverBudget> {
        let outer = std::mem::take(&mut self.ops);
        let done = self.diff(path, old, new);
        let inner = std::mem::replace(&mut self.ops, outer);
        done?;
        if inner.len() > 1 {
            let size = |v: &Value| serde_json::to_string(v).map_or(0, |s| s.len());
            let new_size = size(new);
            self.budget.spend_bytes(new_size)?;
            let mut spelled = 0;
            for op in &inner {
                spelled += size(op);
                self.budget.spend_bytes(size(op))?;
                if spelled > new_size {
                    return self.op("replace", path, Some(new));
                }
            }
        }
        self.ops.extend(inner);
        Ok(())
    }

    fn diff_object(
        &mut self,
        path: &mut String,
        a: &Map<String, Value>,
        b: &Map<String, Value>,
    ) -> Result<(), OverBudget> {
        let len = path.len();
        for key in a.keys().filter(|key| !b.contains_key(*key)) {
            push_key(path, key);
            self.op("remove", path, None)?;
            path.truncate(len);
        }
        for (key, value) in b {
            self.budget.spend_bytes(key.len())?;
            push_key(path, key);
            match a.get(key) {
                Some(old) => self.diff(path, old, value)?,
                None => self.op("add", path, Some(value))?,
            }
            path.truncate(len);
        }
        Ok(())
    }

    /// Whether `a[i]` equals `b[j]`: their hashes first, then, only when
    /// those agree, the values.
    fn same(
        &mut self,
        (a, ha): (&[Value], &[u64]),
        (b, hb): (&[Value], &[u64]),
        (i, j): (usize, usize),
    ) -> Result<bool, OverBudget> {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if ha.get(i) == hb.get(j) => self.equal(x, y),
            _ => Ok(false),
        }
    }

    fn diff_array(
        &mut self,
        path: &mut String,
        a: &[Value],
        b: &[Value],
    ) -> Result<(), OverBudget> {
        // Each element hashed once, so neither the ends' trimming nor the
        // table compares two elements deeply unless they are equal.
        let ha = a
            .iter()
            .map(|v| self.hash(v))
            .collect::<Result<Vec<_>, _>>()?;
        let hb = b
            .iter()
            .map(|v| self.hash(v))
            .collect::<Result<Vec<_>, _>>()?;
        let (aa, bb) = ((a, ha.as_slice()), (b, hb.as_slice()));
        let mut prefix = 0;
        while prefix < a.len().min(b.len()) && self.same(aa, bb, (prefix, prefix))? {
            prefix += 1;
        }
        let mut suffix = 0;
        while suffix < a.len().min(b.len()) - prefix
            && self.same(aa, bb, (a.len() - 1 - suffix, b.len() - 1 - suffix))?
        {
            suffix += 1;
        }
        let a_mid = a.get(prefix..a.len() - suffix).unwrap_or_default();
        let b_mid = b.get(prefix..b.len() - suffix).unwrap_or_default();
        let ha_mid = ha.get(prefix..a.len() - suffix).unwrap_or_default();
        let hb_mid = hb.get(prefix..b.len() - suffix).unwrap_or_default();
        let script = if a_mid.len().saturating_mul(b_mid.len()) <= MAX_LCS_CELLS {
            self.common_subsequence((a_mid, ha_mid), (b_mid, hb_mid))?
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
                self.diff_paired(path, old, new)?;
                path.truncate(len);
                at += 1;
            }
            for _ in paired..removed {
                self.op("remove", &format!("{path}/{at}"), None)?;
            }
            for new in b_mid.iter().skip(j + paired).take(inserted - paired) {
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

    /// The edit script of a longest common subsequence of `a` and `b`, from a
    /// table of the subsequences' lengths for every pair of suffixes, filled
    /// by comparing hashes; a step is kept only if its elements are equal.
    fn common_subsequence(
        &mut self,
        (a, ha): (&[Value], &[u64]),
        (b, hb): (&[Value], &[u64]),
    ) -> Result<Vec<Edit>, OverBudget> {
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
        let patch = json_patch(&old, &new).unwrap();
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
            Some(json!([]))
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

    /// A diff's patch (`None`: over budget), and the work it spent and
    /// was allowed.
    fn work(old: &Value, new: &Value) -> (Option<Value>, u64, u64) {
        let differ = Differ::new(old, new);
        let limit = differ.budget.limit;
        let mut differ = differ;
        let done = differ.diff(&mut String::new(), old, new);
        let spent = differ.budget.spent;
        (done.ok().map(|()| Value::Array(differ.ops)), spent, limit)
    }

    /// 256 equal arrays of 2,040 numbers against the same with each last
    /// number changed (a 1 MiB publish where every pair of elements is
    /// alike up to its end) costs work in proportion to its size, not to
    /// the table's cells times the elements' size, and still gets its
    /// 256-op delta.
    #[test]
    fn alike_elements_cost_work_in_proportion_to_their_size() {
        let value = |last: u64| {
            let mut inner = vec![json!(0); 2039];
            inner.push(json!(last));
            Value::Array(vec![Value::Array(inner); 256])
        };
        let (old, new) = (value(1), value(2));
        let size = weight(&old) + weight(&new);
        let (patch, spent, _) = work(&old, &new);
        let patch = patch.expect("within budget");
        assert_eq!(patch.as_array().unwrap().len(), 256);
        assert_eq!(
            patch[255],
            json!({"op": "replace", "path": "/255/2039", "value": 2})
        );
        assert!(spent <= 4 * size, "spent {spent} for a size of {size}");
    }

    /// Arrays nested a hundred deep around a changed 64 KiB string make
    /// every level hash what is below it: the differ gives up once its
    /// budget is spent, having done at most one step more.
    #[test]
    fn deep_nesting_gives_up_within_the_budget() {
        let value = |last: u64| {
            let mut v = json!(["x".repeat(1 << 16), last]);
            for _ in 0..100 {
                v = json!([v]);
            }
            v
        };
        let (old, new) = (value(1), value(2));
        let (patch, spent, limit) = work(&old, &new);
        assert_eq!(patch, None, "the snapshot goes whole");
        assert!(spent <= limit + weight(&new), "spent {spent} of {limit}");
        assert!(limit <= WORK_PER_WEIGHT * (weight(&old) + weight(&new)) + (1 << 16));
        // The same shape shallow enough is diffed.
        let shallow = |last: u64| json!([[["x".repeat(1 << 16), last]]]);
        assert_eq!(
            json_patch(&shallow(1), &shallow(2)),
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
