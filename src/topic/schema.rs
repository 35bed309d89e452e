//! JSON Schema checks on what would become a topic's snapshot: the ADW
//! contract's schemas and any `--schema TOPIC=FILE`, each compiled once at
//! start into a small tree of keyword sets, and the one-line error
//! (`/analytics: required property "total_workflows" missing`) a refused
//! value gets.
//!
//! The checker is our own, for draft 2020-12's assertions. The crates that
//! check JSON Schema compile every draft's metaschema at the first schema
//! and keep them for good: 6.4 MB resident before any client, on a server
//! meant to idle in 4 (docs/lab/footprint.md). A schema that uses a keyword
//! this checker does not know is refused at start with its location, never
//! half-checked, and so is one it would check otherwise than boon: a `$ref`
//! loop that never moves into the value, `$id` or `$schema` below the root,
//! a regex class that is ASCII here and Unicode there. Formats are
//! annotations, as draft 2020-12 says by default, so the server refuses
//! exactly what the contract's own Python checker refuses; the tests hold
//! this checker to boon's verdicts. Checking runs on the loop, so each
//! value's check has a budget of steps ([`STEP_BUDGET`]).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::path::{Path, PathBuf};

use log::warn;
use regex_lite::Regex;
use serde_json::{Map, Value};

use crate::topic::adw::{self, Preset};

/// Why a value was refused: where in it, and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// RFC 6901 pointer into the value; empty for the value itself.
    pub pointer: String,
    /// The rule, in words: `required property "phases" missing`.
    pub rule: String,
}

/// The most of a pointer or a rule shown: both quote the value, which
/// may be a megabyte long.
const SHOWN: usize = 200;

impl fmt::Display for SchemaError {
    /// Written for a log line or a 422's body: control characters in a
    /// key (a newline would start a forged log line) are escaped, and each
    /// part is cut at [`SHOWN`] characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            f.write_str("(root)")?;
        } else {
            shown(f, &self.pointer)?;
        }
        f.write_str(": ")?;
        shown(f, &self.rule)
    }
}

fn shown(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for (i, c) in text.chars().enumerate() {
        if i == SHOWN {
            return f.write_str("...");
        }
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

impl std::error::Error for SchemaError {}

/// Every schema the server enforces, by topic.
#[derive(Debug)]
pub struct Validator {
    nodes: Vec<Node>,
    by_topic: HashMap<String, Id>,
    /// Applies to the whole `adw-state/` family unless a `--schema` names
    /// one of its topics.
    adw_state: Option<Id>,
}

impl Validator {
    /// Checks nothing (`--no-validate`).
    pub fn off() -> Validator {
        Validator {
            nodes: Vec::new(),
            by_topic: HashMap::new(),
            adw_state: None,
        }
    }

    /// Compiles the preset's schemas and each `(topic, file)`. A `--schema`
    /// for a preset topic replaces the contract's. Errors name the file.
    pub fn new(preset: Preset, files: &[(String, PathBuf)]) -> Result<Validator, String> {
        let mut validator = Validator::off();
        if preset == Preset::Adw {
            for topic in adw::TOPICS {
                let id = validator.compile_text(topic.schema)?;
                validator.by_topic.insert(topic.name.to_owned(), id);
            }
            validator.adw_state = Some(validator.compile_text(adw::ADW_STATE_SCHEMA)?);
        }
        for (topic, path) in files {
            let id = validator.compile_file(topic, path)?;
            validator.by_topic.insert(topic.clone(), id);
        }
        Ok(validator)
    }

    fn compile_text(&mut self, text: &str) -> Result<Id, String> {
        let schema: Value =
            serde_json::from_str(text).map_err(|e| format!("embedded schema is not JSON: {e}"))?;
        let name = schema
            .get("$id")
            .and_then(Value::as_str)
            .unwrap_or("embedded schema");
        compile(&mut self.nodes, &schema).map_err(|e| format!("{name}: {e}"))
    }

    fn compile_file(&mut self, topic: &str, path: &Path) -> Result<Id, String> {
        let file = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {file}: {e}"))?;
        let schema: Value =
            serde_json::from_str(&text).map_err(|e| format!("{file}: not JSON: {e}"))?;
        compile(&mut self.nodes, &schema)
            .map_err(|e| format!("{file} (for {topic}): not a usable JSON Schema: {e}"))
    }

    fn root(&self, topic: &str) -> Option<Id> {
        match self.by_topic.get(topic) {
            Some(&id) => Some(id),
            None if topic.starts_with(adw::ADW_STATE_PREFIX) => self.adw_state,
            None => None,
        }
    }

    /// Whether values published to `topic` are checked.
    pub fn applies(&self, topic: &str) -> bool {
        self.root(topic).is_some()
    }

    /// Checks `value` against `topic`'s schema; a topic without one takes
    /// any JSON.
    pub fn check(&self, topic: &str, value: &Value) -> Result<(), SchemaError> {
        match self.root(topic) {
            Some(id) => self.validate(topic, id, value),
            None => Ok(()),
        }
    }

    /// Checks an event's `data` when its `type` is a preset topic's message
    /// type: the client renders it exactly like a snapshot of that topic.
    pub fn check_event(&self, message_type: &str, data: &Value) -> Result<(), SchemaError> {
        match adw::schema_name_for_type(message_type) {
            Some("adw-state") => match self.adw_state {
                Some(id) => self.validate(message_type, id, data),
                None => Ok(()),
            },
            Some(topic) => self.check(topic, data),
            None => Ok(()),
        }
    }

    /// How many steps checking `value` against `topic`'s schema takes, up
    /// to [`STEP_BUDGET`]: what tests and benches hold the budget's margin
    /// to.
    pub fn steps(&self, topic: &str, value: &Value) -> u64 {
        self.root(topic)
            .map_or(0, |id| self.run(topic, id, value).1)
    }

    fn validate(&self, topic: &str, id: Id, value: &Value) -> Result<(), SchemaError> {
        self.run(topic, id, value).0
    }

    /// The verdict on a value for `topic` (named in the log), and the
    /// steps it took.
    fn run(&self, topic: &str, id: Id, value: &Value) -> (Result<(), SchemaError>, u64) {
        let mut check = Check {
            nodes: &self.nodes,
            depth: 0,
            steps_left: STEP_BUDGET,
        };
        let verdict = check.node(id, value).map_err(|stop| match stop {
            Stop::Refused(failure) => SchemaError {
                pointer: failure.pointer(),
                rule: failure.rule,
            },
            Stop::OutOfSteps => {
                // An operator sees it: either the schema does more work
                // than it needs, or a publisher is sending values built to
                // make it.
                warn!(
                    "a value for {topic:?} was refused unchecked: its schema's \
                     work limit ({STEP_BUDGET} steps) was reached"
                );
                SchemaError {
                    pointer: String::new(),
                    rule: format!(
                        "the schema's work limit was reached ({STEP_BUDGET} steps) \
                         before this value was checked"
                    ),
                }
            }
        });
        (verdict, STEP_BUDGET - check.steps_left)
    }
}

// ----- the compiled form -----

/// A compiled schema's place in the validator's list.
type Id = usize;

#[derive(Debug)]
enum Node {
    /// `true`, or a schema with no assertion.
    Any,
    /// `false`.
    Never,
    /// A schema object with at least one assertion.
    Keywords(Box<Keywords>),
}

/// A schema object's assertions. Keywords that only annotate (title,
/// description, examples, format, ...) leave nothing here, and each group
/// is allocated only when one of its keywords is used: the contract's ten
/// schemas are some hundreds of these, and an idle server holds them all.
#[derive(Debug, Default)]
struct Keywords {
    reference: Option<Id>,
    types: Option<Box<[Type]>>,
    values: Option<Box<ValueKeywords>>,
    number: Option<Box<NumberKeywords>>,
    string: Option<Box<StringKeywords>>,
    array: Option<Box<ArrayKeywords>>,
    object: Option<Box<ObjectKeywords>>,
    logic: Option<Box<LogicKeywords>>,
}

#[derive(Debug, Default)]
struct ValueKeywords {
    allowed: Option<Vec<Value>>,
    constant: Option<Value>,
}

#[derive(Debug, Default)]
struct NumberKeywords {
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<f64>,
}

#[derive(Debug, Default)]
struct StringKeywords {
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<Pattern>,
}

#[derive(Debug, Default)]
struct ArrayKeywords {
    prefix_items: Vec<Id>,
    items: Option<Id>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    contains: Option<Id>,
    min_contains: Option<u64>,
    max_contains: Option<u64>,
}

#[derive(Debug, Default)]
struct ObjectKeywords {
    required: Vec<String>,
    /// Sorted by name: a value's property is found by binary search, so
    /// a wide object against a wide schema is not their product.
    properties: Box<[(String, Id)]>,
    pattern_properties: Vec<(Pattern, Id)>,
    additional_properties: Option<Id>,
    property_names: Option<Id>,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    dependent_required: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Default)]
struct LogicKeywords {
    all_of: Vec<Id>,
    any_of: Vec<Id>,
    one_of: Vec<Id>,
    not: Option<Id>,
    if_then_else: Option<(Id, Option<Id>, Option<Id>)>,
}

/// The group of `Keywords` a keyword goes in, made on first use.
fn group<T: Default>(slot: &mut Option<Box<T>>) -> &mut T {
    slot.get_or_insert_with(Box::default)
}

#[derive(Debug)]
struct Pattern {
    source: String,
    regex: Regex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Null,
    Boolean,
    Object,
    Array,
    Number,
    Integer,
    String,
}

impl Type {
    fn parse(name: &str) -> Option<Type> {
        Some(match name {
            "null" => Type::Null,
            "boolean" => Type::Boolean,
            "object" => Type::Object,
            "array" => Type::Array,
            "number" => Type::Number,
            "integer" => Type::Integer,
            "string" => Type::String,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Type::Null => "null",
            Type::Boolean => "boolean",
            Type::Object => "object",
            Type::Array => "array",
            Type::Number => "number",
            Type::Integer => "integer",
            Type::String => "string",
        }
    }

    /// The narrowest type of `value`: `integer` for a number with no
    /// fraction (1.0 included, as the spec says).
    fn of(value: &Value) -> Type {
        match value {
            Value::Null => Type::Null,
            Value::Bool(_) => Type::Boolean,
            Value::Object(_) => Type::Object,
            Value::Array(_) => Type::Array,
            Value::String(_) => Type::String,
            Value::Number(n) if is_integer(n) => Type::Integer,
            Value::Number(_) => Type::Number,
        }
    }

    fn admits(self, value: &Value) -> bool {
        let got = Type::of(value);
        got == self || (self == Type::Number && got == Type::Integer)
    }
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

// ----- compiling -----

/// Keywords that only annotate, or hold subschemas reached by `$ref`.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "$vocabulary",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "format",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
];

/// The one dialect this checker reads; boon reads a document that names
/// another with that draft's rules, so such a document is refused.
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Compiles the schema document `doc`; returns its root's id.
fn compile(nodes: &mut Vec<Node>, doc: &Value) -> Result<Id, String> {
    if let Some(dialect) = doc.get("$schema") {
        let known = dialect
            .as_str()
            .is_some_and(|d| d.strip_suffix('#').unwrap_or(d) == DRAFT_2020_12);
        if !known {
            return Err(format!(
                "/$schema: {dialect} is not supported; only {DRAFT_2020_12:?} is"
            ));
        }
    }
    let own_id = doc.get("$id").and_then(Value::as_str).map(str::to_owned);
    let first = nodes.len();
    let mut compiler = Compiler {
        doc,
        own_id,
        nodes,
        by_pointer: HashMap::new(),
    };
    let root = compiler.at("")?;
    let Compiler {
        nodes, by_pointer, ..
    } = compiler;
    if let Some(cycle) = cycle_without_progress(nodes, first) {
        let mut pointers: HashMap<Id, &str> = HashMap::new();
        for (pointer, &id) in &by_pointer {
            pointers.insert(id, pointer);
        }
        return Err(describe_cycle(&cycle, nodes, &pointers));
    }
    Ok(root)
}

struct Compiler<'a> {
    doc: &'a Value,
    /// The document's `$id`: a `$ref` may name it before its `#`.
    own_id: Option<String>,
    nodes: &'a mut Vec<Node>,
    /// Compiled subschemas by JSON pointer, so a `$ref` to one already
    /// compiled (or being compiled: recursion) reuses its id.
    by_pointer: HashMap<String, Id>,
}

impl Compiler<'_> {
    fn at(&mut self, pointer: &str) -> Result<Id, String> {
        if let Some(&id) = self.by_pointer.get(pointer) {
            return Ok(id);
        }
        let Some(schema) = self.doc.pointer(pointer) else {
            return Err(format!("$ref to {pointer:?}, which is not in the schema"));
        };
        self.no_inner_resource(pointer)?;
        let id = self.nodes.len();
        self.nodes.push(Node::Any);
        self.by_pointer.insert(pointer.to_owned(), id);
        let node = match schema {
            Value::Bool(true) => Node::Any,
            Value::Bool(false) => Node::Never,
            Value::Object(object) => self.keywords(object, pointer)?,
            _ => {
                return Err(format!(
                    "{}: a schema must be an object or a boolean",
                    here(pointer)
                ));
            }
        };
        if let Some(slot) = self.nodes.get_mut(id) {
            *slot = node;
        }
        Ok(id)
    }

    fn keywords(&mut self, object: &Map<String, Value>, pointer: &str) -> Result<Node, String> {
        let mut keywords = Keywords::default();
        let mut any = false;
        for (key, value) in object {
            if ANNOTATIONS.contains(&key.as_str()) {
                continue;
            }
            let at = format!("{pointer}/{}", escape(key));
            self.keyword(&mut keywords, key, value, &at)
                .map_err(|e| format!("{}: {e}", here(&at)))?;
            any = true;
        }
        Ok(if any {
            Node::Keywords(Box::new(keywords))
        } else {
            Node::Any
        })
    }

    /// Reads one assertion keyword into `r`; `at` is its pointer.
    ///
    /// A table, one arm per keyword, so a keyword's reading is found by
    /// its name and one not listed is refused. An arm that does more than
    /// convert its value calls a step named for the keyword, below, which
    /// keeps the table one line a keyword.
    fn keyword(&mut self, r: &mut Keywords, key: &str, v: &Value, at: &str) -> Result<(), String> {
        match key {
            "$ref" => r.reference = Some(self.reference(v)?),
            "type" => r.types = Some(types(v)?.into_boxed_slice()),
            "enum" => {
                group(&mut r.values).allowed = Some(v.as_array().ok_or("must be an array")?.clone())
            }
            "const" => group(&mut r.values).constant = Some(v.clone()),
            "minimum" => group(&mut r.number).minimum = Some(number(v)?),
            "maximum" => group(&mut r.number).maximum = Some(number(v)?),
            "exclusiveMinimum" => group(&mut r.number).exclusive_minimum = Some(number(v)?),
            "exclusiveMaximum" => group(&mut r.number).exclusive_maximum = Some(number(v)?),
            "multipleOf" => group(&mut r.number).multiple_of = Some(number(v).and_then(positive)?),
            "minLength" => group(&mut r.string).min_length = Some(count(v)?),
            "maxLength" => group(&mut r.string).max_length = Some(count(v)?),
            "pattern" => group(&mut r.string).pattern = Some(pattern(v)?),
            "prefixItems" => group(&mut r.array).prefix_items = self.list(v, at)?,
            "items" if v.is_array() => {
                return Err("an array of schemas is draft 7's form; use prefixItems".into());
            }
            "items" => group(&mut r.array).items = Some(self.at(at)?),
            "minItems" => group(&mut r.array).min_items = Some(count(v)?),
            "maxItems" => group(&mut r.array).max_items = Some(count(v)?),
            "uniqueItems" => {
                group(&mut r.array).unique_items = v.as_bool().ok_or("must be a boolean")?
            }
            "contains" => group(&mut r.array).contains = Some(self.at(at)?),
            "minContains" => group(&mut r.array).min_contains = Some(count(v)?),
            "maxContains" => group(&mut r.array).max_contains = Some(count(v)?),
            "required" => group(&mut r.object).required = strings(v)?,
            "properties" => group(&mut r.object).properties = self.properties(v, at)?,
            "patternProperties" => self.pattern_properties(&mut r.object, v, at)?,
            "additionalProperties" => {
                group(&mut r.object).additional_properties = Some(self.at(at)?)
            }
            "propertyNames" => group(&mut r.object).property_names = Some(self.at(at)?),
            "minProperties" => group(&mut r.object).min_properties = Some(count(v)?),
            "maxProperties" => group(&mut r.object).max_properties = Some(count(v)?),
            "dependentRequired" => dependent_required(&mut r.object, v)?,
            "allOf" => group(&mut r.logic).all_of = self.list(v, at)?,
            "anyOf" => group(&mut r.logic).any_of = self.list(v, at)?,
            "oneOf" => group(&mut r.logic).one_of = self.list(v, at)?,
            "not" => group(&mut r.logic).not = Some(self.at(at)?),
            "if" => group(&mut r.logic).if_then_else = Some(self.conditional(at)?),
            // Read with their `if`; without one they assert nothing.
            "then" | "else" => {}
            other => return Err(format!("keyword {other:?} is not supported")),
        }
        Ok(())
    }

    /// `properties`, sorted by name, since a value's property is found by
    /// binary search.
    fn properties(&mut self, v: &Value, at: &str) -> Result<Box<[(String, Id)]>, String> {
        let mut named = self.named(v, at)?;
        named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(named.into_boxed_slice())
    }

    /// `patternProperties`, each name compiled as a regex. The group is
    /// made only for an entry: an empty map asserts nothing, and an
    /// object group would cost steps on every object checked.
    fn pattern_properties(
        &mut self,
        slot: &mut Option<Box<ObjectKeywords>>,
        v: &Value,
        at: &str,
    ) -> Result<(), String> {
        for (source, id) in self.named(v, at)? {
            group(slot)
                .pattern_properties
                .push((pattern(&Value::String(source))?, id));
        }
        Ok(())
    }

    /// `if` at `at`, with the `then` and `else` beside it: they mean
    /// something only with it, so they are read here and their own arms
    /// skip them.
    fn conditional(&mut self, at: &str) -> Result<(Id, Option<Id>, Option<Id>), String> {
        let parent = at.strip_suffix("/if").unwrap_or(at);
        let branch = |c: &mut Self, k: &str| -> Result<Option<Id>, String> {
            let p = format!("{parent}/{k}");
            c.doc.pointer(&p).map(|_| c.at(&p)).transpose()
        };
        let then = branch(self, "then")?;
        let otherwise = branch(self, "else")?;
        Ok((self.at(at)?, then, otherwise))
    }

    /// Refuses a subschema at `pointer` that is inside (or is) a schema
    /// resource of its own: `$id` there moves the base its `$ref`s resolve
    /// against, and `$schema` may change the draft, both of which boon
    /// honours and this checker does not. A `$id` or `$schema` keyword
    /// holds a string, which tells it from a property of that name.
    fn no_inner_resource(&self, pointer: &str) -> Result<(), String> {
        let mut end = pointer.len();
        while end > 0 {
            let prefix = pointer.get(..end).unwrap_or("");
            if let Some(Value::Object(object)) = self.doc.pointer(prefix) {
                for keyword in ["$id", "$schema"] {
                    if object.get(keyword).is_some_and(Value::is_string) {
                        return Err(format!(
                            "{prefix}/{keyword}: only the root schema may have {keyword} \
                             (a subschema with its own is not supported)"
                        ));
                    }
                }
            }
            end = prefix.rfind('/').unwrap_or(0);
        }
        Ok(())
    }

    /// Compiles each schema in the array at `at`.
    fn list(&mut self, v: &Value, at: &str) -> Result<Vec<Id>, String> {
        let items = v.as_array().ok_or("must be an array of schemas")?;
        (0..items.len())
            .map(|i| self.at(&format!("{at}/{i}")))
            .collect()
    }

    /// Compiles each schema in the object at `at`, by name.
    fn named(&mut self, v: &Value, at: &str) -> Result<Vec<(String, Id)>, String> {
        let map = v.as_object().ok_or("must be an object of schemas")?;
        let names: Vec<String> = map.keys().cloned().collect();
        names
            .into_iter()
            .map(|name| {
                let id = self.at(&format!("{at}/{}", escape(&name)))?;
                Ok((name, id))
            })
            .collect()
    }

    /// Resolves a `$ref` within this document: `#`, `#/json/pointer`, or
    /// either after the document's own `$id`.
    fn reference(&mut self, v: &Value) -> Result<Id, String> {
        let target = v.as_str().ok_or("must be a string")?;
        let (base, fragment) = target.split_once('#').unwrap_or((target, ""));
        let local = base.is_empty() || self.own_id.as_deref() == Some(base);
        if !local || !(fragment.is_empty() || fragment.starts_with('/')) {
            return Err(format!(
                "{target:?}: only references within the same schema (#/...) are supported"
            ));
        }
        self.at(&percent_decode(fragment)?)
    }
}

fn here(pointer: &str) -> &str {
    if pointer.is_empty() {
        "(root)"
    } else {
        pointer
    }
}

fn types(v: &Value) -> Result<Vec<Type>, String> {
    let names: Vec<&str> = match v {
        Value::String(name) => vec![name.as_str()],
        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let all = names.len() == v.as_array().map_or(1, Vec::len) && !names.is_empty();
    let types: Option<Vec<Type>> = names.into_iter().map(Type::parse).collect();
    match types {
        Some(types) if all => Ok(types),
        _ => Err("must be a type name or an array of them".into()),
    }
}

fn number(v: &Value) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| "must be a number".into())
}

fn positive(n: f64) -> Result<f64, String> {
    if n > 0.0 {
        Ok(n)
    } else {
        Err("must be more than zero".into())
    }
}

fn count(v: &Value) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| "must be a whole number, zero or more".into())
}

/// `dependentRequired`: for each name, the names it needs. As with
/// `patternProperties`, an empty map makes no object group.
fn dependent_required(slot: &mut Option<Box<ObjectKeywords>>, v: &Value) -> Result<(), String> {
    let map = v.as_object().ok_or("must be an object")?;
    for (name, needs) in map {
        group(slot)
            .dependent_required
            .push((name.clone(), strings(needs)?));
    }
    Ok(())
}

fn strings(v: &Value) -> Result<Vec<String>, String> {
    let items = v.as_array().ok_or("must be an array of strings")?;
    items
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or("must be an array of strings".into())
        })
        .collect()
}

fn pattern(v: &Value) -> Result<Pattern, String> {
    let source = v.as_str().ok_or("must be a string")?;
    if let Some(why) = differs_from_boon(source) {
        return Err(format!("{source:?}: {why}"));
    }
    let regex = Regex::new(source).map_err(|e| format!("{source:?} is not a usable regex: {e}"))?;
    Ok(Pattern {
        source: source.to_owned(),
        regex,
    })
}

/// What in `source` regex-lite would match differently from boon's
/// regexes: `\s` and `\S` (regex-lite's are ASCII, boon adds U+00A0,
/// U+FEFF, U+2003 and U+2029), the word boundaries `\b`, `\B`, `\<` and
/// `\>` (ASCII here, Unicode there) and the `i` flag (ASCII case folding
/// here, Unicode there: `(?i)k` matches the Kelvin sign there). `\d` and
/// `\w` are ASCII in both, as ECMA-262 has them.
fn differs_from_boon(source: &str) -> Option<String> {
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(class @ ('s' | 'S')) => {
                    return Some(format!(
                        "\\{class} is not supported (its whitespace is ASCII here, \
                         wider elsewhere); list the characters, as [ \\t\\r\\n]"
                    ));
                }
                Some(class @ ('b' | 'B' | '<' | '>')) => {
                    return Some(format!(
                        "the word boundary \\{class} is not supported (ASCII here, \
                         Unicode elsewhere)"
                    ));
                }
                _ => {}
            },
            '(' if chars.peek() == Some(&'?') => {
                let flags: String = chars
                    .clone()
                    .skip(1)
                    .take_while(|f| f.is_ascii_alphabetic() || *f == '-')
                    .collect();
                let closed = chars.clone().nth(flags.len() + 1);
                if flags.contains('i') && matches!(closed, Some(':' | ')')) {
                    return Some(
                        "the case-insensitive flag i is not supported (ASCII here, \
                         Unicode elsewhere); list both cases, as [Kk]"
                            .into(),
                    );
                }
            }
            _ => {}
        }
    }
    None
}

/// RFC 6901's escaping of one pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A `$ref` fragment is a URI fragment: `%25` and the like are decoded.
fn percent_decode(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex: Vec<u8> = bytes.by_ref().take(2).collect();
        let digits = std::str::from_utf8(&hex).ok().filter(|h| h.len() == 2);
        let byte = digits.and_then(|h| u8::from_str_radix(h, 16).ok());
        out.push(byte.ok_or_else(|| format!("bad escape in {s:?}"))?);
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// The subschemas `node` applies to the very value it is given, with
/// whether each is reached through its `$ref` (the others are its own
/// `allOf`, `anyOf`, `oneOf`, `not`, `if`, `then` and `else`).
fn same_value_edges(node: &Node) -> Vec<(Id, bool)> {
    let Node::Keywords(keywords) = node else {
        return Vec::new();
    };
    let mut edges: Vec<(Id, bool)> = keywords
        .reference
        .map(|id| (id, true))
        .into_iter()
        .collect();
    if let Some(logic) = &keywords.logic {
        let lists = [&logic.all_of, &logic.any_of, &logic.one_of];
        edges.extend(lists.into_iter().flatten().map(|&id| (id, false)));
        edges.extend(logic.not.map(|id| (id, false)));
        if let Some((condition, then, otherwise)) = logic.if_then_else {
            edges.extend(
                [Some(condition), then, otherwise]
                    .into_iter()
                    .flatten()
                    .map(|id| (id, false)),
            );
        }
    }
    edges
}

/// A loop among the nodes from `first` on that returns to a schema
/// without moving into the value, as its ids in order (the first is
/// where it returns to); checking any value that reaches it would never
/// end. boon compiles such a schema and refuses every value that reaches
/// the loop ("... causing reference cycle"); refusing the schema instead
/// says so once, at start. A depth-first search, iterative: a long chain
/// of `allOf`s must not exhaust the stack.
fn cycle_without_progress(nodes: &[Node], first: Id) -> Option<Vec<Id>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        No,
        OnPath,
        Done,
    }
    let mut seen = vec![Seen::No; nodes.len()];
    for start in first..nodes.len() {
        if seen.get(start) != Some(&Seen::No) {
            continue;
        }
        // The path from `start`, each node with the edges it has left.
        let mut path: Vec<(Id, Vec<(Id, bool)>)> = Vec::new();
        let edges = nodes.get(start).map(same_value_edges).unwrap_or_default();
        path.push((start, edges));
        if let Some(s) = seen.get_mut(start) {
            *s = Seen::OnPath;
        }
        while let Some((id, edges)) = path.last_mut() {
            let id = *id;
            let Some((next, _)) = edges.pop() else {
                if let Some(s) = seen.get_mut(id) {
                    *s = Seen::Done;
                }
                path.pop();
                continue;
            };
            match seen.get(next) {
                Some(Seen::OnPath) => {
                    let from = path.iter().position(|(on, _)| *on == next).unwrap_or(0);
                    return Some(path.iter().skip(from).map(|(on, _)| *on).collect());
                }
                Some(Seen::No) => {
                    if let Some(s) = seen.get_mut(next) {
                        *s = Seen::OnPath;
                    }
                    let edges = nodes.get(next).map(same_value_edges).unwrap_or_default();
                    path.push((next, edges));
                }
                Some(Seen::Done) | None => {}
            }
        }
    }
    None
}

/// The error for `cycle`: the keyword that closes the loop, then the
/// loop, as boon names its "reference cycle".
fn describe_cycle(cycle: &[Id], nodes: &[Node], pointers: &HashMap<Id, &str>) -> String {
    let place = |id: &Id| here(pointers.get(id).copied().unwrap_or("?")).to_owned();
    let (Some(&first), Some(&last)) = (cycle.first(), cycle.last()) else {
        return "a $ref cycle".into();
    };
    let by_ref = nodes
        .get(last)
        .map(same_value_edges)
        .unwrap_or_default()
        .into_iter()
        .any(|(id, by_ref)| id == first && by_ref);
    let keyword = if by_ref {
        format!("{}/$ref", pointers.get(&last).copied().unwrap_or("?"))
    } else {
        place(&first)
    };
    let mut hops: Vec<String> = cycle.iter().map(place).collect();
    hops.push(place(&first));
    format!(
        "{keyword}: a $ref cycle that never moves into the value ({})",
        hops.join(" -> ")
    )
}

// ----- checking -----

/// How many steps checking one value may take before it is refused with
/// 422. A step is one subschema applied to one part of the value, one
/// property or item of an object or array a schema with object or array
/// keywords looks over, one `enum` entry, `patternProperties` pattern or
/// `uniqueItems` value compared or hashed, or 64 bytes of a string
/// measured or matched. The contract's largest examples and the demo's
/// values take some thousands, a workflow-history filling the 1 MiB
/// default publish limit some hundred thousand (`tests/schema.rs` holds
/// them to a tenth of this); a schema whose work grows exponentially with
/// the value (a recursive union tried branch by branch) reaches the limit
/// in a bounded time instead of holding the loop.
pub const STEP_BUDGET: u64 = 3_000_000;

/// A string's length costs a step per this many bytes where it is
/// measured or matched: a long string read many times is work.
const STRING_BYTES_PER_STEP: u64 = 64;

/// How deep `$ref`s and combinators may nest while checking one value:
/// the stack's bound, as [`STEP_BUDGET`] is the time's.
const MAX_DEPTH: usize = 512;

struct Check<'a> {
    nodes: &'a [Node],
    depth: usize,
    /// Steps left of [`STEP_BUDGET`].
    steps_left: u64,
}

/// One step into a value: a property's name or an item's index.
#[derive(Debug, Clone, Copy)]
enum Token<'v> {
    Key(&'v str),
    Index(usize),
}

/// A broken rule and where.
struct Failure<'v> {
    /// Where in the value, innermost first, from wherever the failure has
    /// been carried up to: each level adds its token on the way out, so a
    /// failure that is dropped (an `anyOf` branch, a `not`) cost nothing
    /// to place, and the pointer is written once, for the one reported.
    tokens: Vec<Token<'v>>,
    rule: String,
    /// It failed on the value's type (or enum/const): at an `anyOf`, such a
    /// branch says less than one that matched the type and failed deeper.
    on_type: bool,
}

impl Failure<'_> {
    /// RFC 6901 pointer to where it failed.
    fn pointer(&self) -> String {
        self.tokens
            .iter()
            .rev()
            .map(|t| match t {
                Token::Key(name) => format!("/{}", escape(name)),
                Token::Index(i) => format!("/{i}"),
            })
            .collect()
    }
}

/// Why a check ended without a pass.
enum Stop<'v> {
    /// The value broke a rule.
    Refused(Failure<'v>),
    /// [`STEP_BUDGET`] ran out; no verdict, and no branch may take this
    /// for one.
    OutOfSteps,
}

impl<'v> Stop<'v> {
    /// The same stop, seen from one level up.
    fn within(mut self, token: Token<'v>) -> Stop<'v> {
        if let Stop::Refused(failure) = &mut self {
            failure.tokens.push(token);
        }
        self
    }
}

type Checked<'v> = Result<(), Stop<'v>>;

fn refuse<'v>(rule: String) -> Stop<'v> {
    Stop::Refused(Failure {
        tokens: Vec::new(),
        rule,
        on_type: false,
    })
}

fn refuse_on_type<'v>(rule: String) -> Stop<'v> {
    Stop::Refused(Failure {
        tokens: Vec::new(),
        rule,
        on_type: true,
    })
}

impl Check<'_> {
    /// Takes `n` steps from the budget, or stops the check.
    fn spend<'v>(&mut self, n: u64) -> Checked<'v> {
        match self.steps_left.checked_sub(n) {
            Some(left) => {
                self.steps_left = left;
                Ok(())
            }
            None => {
                self.steps_left = 0;
                Err(Stop::OutOfSteps)
            }
        }
    }

    fn node<'v>(&mut self, id: Id, value: &'v Value) -> Checked<'v> {
        self.spend(1)?;
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            Err(refuse(
                "the schema nests too deeply to check this value".into(),
            ))
        } else {
            match self.nodes.get(id) {
                Some(Node::Keywords(keywords)) => self.keywords(keywords, value),
                Some(Node::Never) => Err(refuse("no value is allowed here".into())),
                Some(Node::Any) | None => Ok(()),
            }
        };
        self.depth -= 1;
        result
    }

    /// Checks `value` for a verdict only (`anyOf` and `oneOf` branches,
    /// `not`, `if`, `contains`, `propertyNames`): a refusal comes back as
    /// a value, but running out of steps still ends the whole check.
    fn verdict<'v>(
        &mut self,
        id: Id,
        value: &'v Value,
    ) -> Result<Result<(), Failure<'v>>, Stop<'v>> {
        match self.node(id, value) {
            Ok(()) => Ok(Ok(())),
            Err(Stop::Refused(failure)) => Ok(Err(failure)),
            Err(Stop::OutOfSteps) => Err(Stop::OutOfSteps),
        }
    }

    /// Checks `value` one step down, at `token`.
    fn child<'v>(&mut self, id: Id, token: Token<'v>, value: &'v Value) -> Checked<'v> {
        self.node(id, value).map_err(|stop| stop.within(token))
    }

    fn keywords<'v>(&mut self, r: &Keywords, value: &'v Value) -> Checked<'v> {
        if let Some(id) = r.reference {
            self.node(id, value)?;
        }
        self.kind(r, value)?;
        match (value, &r.number, &r.string, &r.array, &r.object) {
            (Value::Number(n), Some(group), ..) => check_number(group, n.as_f64().unwrap_or(0.0))?,
            (Value::String(s), _, Some(group), ..) => {
                self.spend(s.len() as u64 / STRING_BYTES_PER_STEP)?;
                check_string(group, s)?
            }
            (Value::Array(items), _, _, Some(group), _) => self.array(group, items)?,
            (Value::Object(map), .., Some(group)) => self.object(group, map)?,
            _ => {}
        }
        match &r.logic {
            Some(group) => self.combinators(group, value),
            None => Ok(()),
        }
    }

    fn kind<'v>(&mut self, r: &Keywords, value: &'v Value) -> Checked<'v> {
        if let Some(types) = &r.types
            && !types.iter().any(|t| t.admits(value))
        {
            let want: Vec<&str> = types.iter().map(|t| t.name()).collect();
            let got = Type::of(value).name();
            return Err(refuse_on_type(format!(
                "must be {}, not {got}",
                want.join(" or ")
            )));
        }
        let Some(values) = &r.values else {
            return Ok(());
        };
        if let Some(constant) = &values.constant
            && !same(constant, value)
        {
            return Err(refuse_on_type(format!("must be {constant}")));
        }
        if let Some(allowed) = &values.allowed {
            self.spend(allowed.len() as u64)?;
            if !allowed.iter().any(|a| same(a, value)) {
                let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
                return Err(refuse_on_type(format!(
                    "must be one of {}",
                    list.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn array<'v>(&mut self, r: &ArrayKeywords, items: &'v [Value]) -> Checked<'v> {
        let len = items.len() as u64;
        self.spend(len)?;
        if let Some(min) = r.min_items.filter(|&m| len < m) {
            return Err(refuse(format!("must have at least {min} items, not {len}")));
        }
        if let Some(max) = r.max_items.filter(|&m| len > m) {
            return Err(refuse(format!("must have at most {max} items, not {len}")));
        }
        if r.unique_items {
            self.unique(items)?;
        }
        for (i, item) in items.iter().enumerate() {
            let id = match r.prefix_items.get(i) {
                Some(&id) => Some(id),
                None => r.items,
            };
            if let Some(id) = id {
                self.child(id, Token::Index(i), item)?;
            }
        }
        if let Some(id) = r.contains {
            let mut matched = 0u64;
            for item in items {
                matched += u64::from(self.verdict(id, item)?.is_ok());
            }
            let min = r.min_contains.unwrap_or(1);
            if matched < min {
                return Err(refuse(format!(
                    "must contain at least {min} matching items, not {matched}"
                )));
            }
            if let Some(max) = r.max_contains.filter(|&m| matched > m) {
                return Err(refuse(format!(
                    "must contain at most {max} matching items, not {matched}"
                )));
            }
        }
        Ok(())
    }

    /// `uniqueItems`: each item is hashed once by its canonical form and
    /// compared only with the earlier items of its hash, so the work is
    /// the items' size, not its square. A step per value hashed (an item
    /// and each value inside it) and per comparison.
    fn unique<'v>(&mut self, items: &'v [Value]) -> Checked<'v> {
        let keys = RandomState::new();
        let mut seen: HashMap<u64, Vec<usize>> = HashMap::with_capacity(items.len());
        for (j, item) in items.iter().enumerate() {
            let mut parts = 0;
            let hash = canonical_hash(item, &keys, &mut parts);
            self.spend(parts)?;
            let earlier = seen.entry(hash).or_default();
            for &i in earlier.iter() {
                self.spend(1)?;
                if items.get(i).is_some_and(|a| same(a, item)) {
                    return Err(refuse(format!("items {i} and {j} are equal")));
                }
            }
            earlier.push(j);
        }
        Ok(())
    }

    fn object<'v>(&mut self, r: &ObjectKeywords, map: &'v Map<String, Value>) -> Checked<'v> {
        let missing: Vec<&str> = r
            .required
            .iter()
            .filter(|name| !map.contains_key(name.as_str()))
            .map(String::as_str)
            .collect();
        match missing.as_slice() {
            [] => {}
            [one] => return Err(refuse(format!("required property {one:?} missing"))),
            many => {
                let list: Vec<String> = many.iter().map(|n| format!("{n:?}")).collect();
                return Err(refuse(format!(
                    "required properties {} missing",
                    list.join(", ")
                )));
            }
        }
        for (name, needs) in &r.dependent_required {
            if map.contains_key(name)
                && let Some(need) = needs.iter().find(|n| !map.contains_key(n.as_str()))
            {
                return Err(refuse(format!(
                    "property {need:?} is required with {name:?}"
                )));
            }
        }
        let len = map.len() as u64;
        let patterns = r.pattern_properties.len() as u64;
        self.spend(len.saturating_mul(1 + patterns))?;
        if let Some(min) = r.min_properties.filter(|&m| len < m) {
            return Err(refuse(format!(
                "must have at least {min} properties, not {len}"
            )));
        }
        if let Some(max) = r.max_properties.filter(|&m| len > m) {
            return Err(refuse(format!(
                "must have at most {max} properties, not {len}"
            )));
        }
        for (name, value) in map {
            let token = Token::Key(name.as_str());
            if let Some(id) = r.property_names {
                let key = Value::String(name.clone());
                match self.verdict(id, &key) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        return Err(refuse(format!("property name {name:?}: {}", e.rule)));
                    }
                    Err(_) => return Err(Stop::OutOfSteps),
                }
            }
            let mut matched = false;
            let found = r.properties.binary_search_by(|(n, _)| n.as_str().cmp(name));
            if let Some((_, id)) = found.ok().and_then(|i| r.properties.get(i)) {
                matched = true;
                self.child(*id, token, value)?;
            }
            for (p, id) in &r.pattern_properties {
                if p.regex.is_match(name) {
                    matched = true;
                    self.child(*id, token, value)?;
                }
            }
            if let (false, Some(id)) = (matched, r.additional_properties) {
                if matches!(self.nodes.get(id), Some(Node::Never)) {
                    return Err(refuse(format!("property {name:?} is not allowed")));
                }
                self.child(id, token, value)?;
            }
        }
        Ok(())
    }

    fn combinators<'v>(&mut self, r: &LogicKeywords, value: &'v Value) -> Checked<'v> {
        for &id in &r.all_of {
            self.node(id, value)?;
        }
        if !r.any_of.is_empty() {
            let mut failures = Vec::new();
            for &id in &r.any_of {
                match self.verdict(id, value)? {
                    Ok(()) => return self.rest(r, value),
                    Err(f) => failures.push(f),
                }
            }
            return Err(none_matched(failures));
        }
        self.rest(r, value)
    }

    /// `oneOf`, `not` and `if`, after `anyOf` passed.
    fn rest<'v>(&mut self, r: &LogicKeywords, value: &'v Value) -> Checked<'v> {
        if !r.one_of.is_empty() {
            let mut failures = Vec::new();
            let mut passed = Vec::new();
            for (i, &id) in r.one_of.iter().enumerate() {
                match self.verdict(id, value)? {
                    Ok(()) => passed.push(i),
                    Err(f) => failures.push(f),
                }
            }
            match passed.as_slice() {
                [] => return Err(none_matched(failures)),
                [_] => {}
                [a, b, ..] => {
                    return Err(refuse(format!(
                        "matches more than one allowed form (#{a} and #{b})"
                    )));
                }
            }
        }
        if let Some(id) = r.not
            && self.verdict(id, value)?.is_ok()
        {
            return Err(refuse("matches a form that is not allowed".into()));
        }
        if let Some((condition, then, otherwise)) = r.if_then_else {
            let branch = match self.verdict(condition, value)? {
                Ok(()) => then,
                Err(_) => otherwise,
            };
            if let Some(id) = branch {
                self.node(id, value)?;
            }
        }
        Ok(())
    }
}

fn check_number<'v>(r: &NumberKeywords, n: f64) -> Checked<'v> {
    let broken = [
        (r.minimum.filter(|&m| n < m), "at least"),
        (r.maximum.filter(|&m| n > m), "at most"),
        (r.exclusive_minimum.filter(|&m| n <= m), "more than"),
        (r.exclusive_maximum.filter(|&m| n >= m), "less than"),
    ];
    if let Some((Some(bound), words)) = broken.into_iter().find(|(b, _)| b.is_some()) {
        return Err(refuse(format!("must be {words} {bound}, not {n}")));
    }
    if let Some(m) = r.multiple_of {
        let q = n / m;
        if !q.is_finite() || q.fract() != 0.0 {
            return Err(refuse(format!("must be a multiple of {m}, not {n}")));
        }
    }
    Ok(())
}

fn check_string<'v>(r: &StringKeywords, s: &str) -> Checked<'v> {
    if r.min_length.is_some() || r.max_length.is_some() {
        let len = s.chars().count() as u64;
        if let Some(min) = r.min_length.filter(|&m| len < m) {
            return Err(refuse(format!(
                "must be at least {min} characters, not {len}"
            )));
        }
        if let Some(max) = r.max_length.filter(|&m| len > m) {
            return Err(refuse(format!(
                "must be at most {max} characters, not {len}"
            )));
        }
    }
    if let Some(p) = &r.pattern
        && !p.regex.is_match(s)
    {
        return Err(refuse(format!(
            "{s:?} does not match pattern {:?}",
            p.source
        )));
    }
    Ok(())
}

/// The error for an `anyOf`/`oneOf` no branch of which matched: a
/// branch that failed only on the value's type tells the producer
/// nothing; one whose type matched, or that failed deeper in the value,
/// does, as Python jsonschema's `best_match` has it.
fn none_matched<'v>(failures: Vec<Failure<'v>>) -> Stop<'v> {
    let mut failures = failures;
    if let Some(i) = failures
        .iter()
        .position(|f| !f.tokens.is_empty() || !f.on_type)
    {
        return Stop::Refused(failures.swap_remove(i));
    }
    let each: Vec<&str> = failures.iter().map(|f| f.rule.as_str()).collect();
    refuse_on_type(format!(
        "matches none of the allowed forms ({})",
        each.join("; ")
    ))
}

/// A hash of `value` under which every value [`same`] counts equal hashes
/// alike: numbers by their value as a double (0 and -0.0 alike), objects
/// as an unordered sum of their entries. `keys` is random per check, so
/// a publisher cannot pick items that all collide.
/// `parts` counts the values hashed, the work done.
fn canonical_hash(value: &Value, keys: &RandomState, parts: &mut u64) -> u64 {
    let mut hasher = keys.build_hasher();
    feed(value, keys, &mut hasher, parts);
    hasher.finish()
}

fn feed(value: &Value, keys: &RandomState, hasher: &mut impl Hasher, parts: &mut u64) {
    *parts += 1;
    match value {
        Value::Null => hasher.write_u8(0),
        Value::Bool(b) => {
            hasher.write_u8(1);
            b.hash(hasher);
        }
        Value::Number(n) => {
            hasher.write_u8(2);
            let x = n.as_f64().unwrap_or(0.0);
            // -0.0 == 0.0, so both hash as 0.0.
            let x = if x == 0.0 { 0.0 } else { x };
            hasher.write_u64(x.to_bits());
        }
        Value::String(s) => {
            hasher.write_u8(3);
            s.hash(hasher);
        }
        Value::Array(items) => {
            hasher.write_u8(4);
            hasher.write_usize(items.len());
            for item in items {
                feed(item, keys, hasher, parts);
            }
        }
        Value::Object(map) => {
            hasher.write_u8(5);
            hasher.write_usize(map.len());
            let entries = map.iter().fold(0u64, |sum, (name, item)| {
                let mut entry = keys.build_hasher();
                name.hash(&mut entry);
                feed(item, keys, &mut entry, parts);
                sum.wrapping_add(entry.finish())
            });
            hasher.write_u64(entries);
        }
    }
}

/// JSON equality as JSON Schema has it: numbers by value (1 and 1.0 are
/// the same), objects whatever their order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A key holding a newline cannot start a forged log line, and a
    /// megabyte string is not copied whole into the message.
    #[test]
    fn errors_are_one_short_line() {
        let e = SchemaError {
            pointer: "/stats/x\n2026-01-01T00:00:00Z [ERROR] forged".into(),
            rule: format!("{:?} does not match", "y".repeat(1 << 20)),
        };
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("\\n2026"), "{text}");
        assert!(text.len() < 2 * SHOWN + 16, "{} bytes", text.len());
    }

    fn adw() -> Validator {
        Validator::new(Preset::Adw, &[]).unwrap()
    }

    #[test]
    fn errors_name_the_pointer_and_the_rule() {
        let v = adw();
        let bad = json!({"workflows": [], "analytics": {"completed_workflows": 1}});
        let e = v.check("workflow-history", &bad).unwrap_err();
        assert_eq!(e.pointer, "/analytics");
        assert!(e.rule.starts_with("required propert"), "{e}");
        assert!(e.rule.contains("\"total_workflows\""), "{e}");

        let e = v.check("queue", &Value::Null).unwrap_err();
        assert_eq!(e.to_string(), "(root): must be object, not null");

        let e = v
            .check("queue", &json!({"phases": [{"phase_data": null}]}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/phases/0/phase_data: must be object, not null"
        );
    }

    #[test]
    fn unschematised_topics_take_anything() {
        let v = adw();
        assert!(!v.applies("prices"));
        assert!(v.check("prices", &Value::Null).is_ok());
        assert!(v.applies("adw-state/a1b2c3d4"));
        assert!(
            v.check("adw-state/a1b2c3d4", &json!({"all_adws": "x"}))
                .is_err()
        );
        let off = Validator::off();
        assert!(off.check("queue", &Value::Null).is_ok());
    }

    #[test]
    fn events_of_a_preset_type_are_checked_like_snapshots() {
        let v = adw();
        assert!(v.check_event("queue_update", &Value::Null).is_err());
        assert!(v.check_event("adw_state_update", &json!([])).is_err());
        assert!(v.check_event("workflow_completed", &Value::Null).is_ok());
    }

    #[test]
    fn a_schema_file_applies_to_its_topic_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("statecast-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("prices.json");
        std::fs::write(&good, r#"{"type":"object","required":["bid"]}"#).unwrap();
        let v = Validator::new(Preset::None, &[("prices".into(), good)]).unwrap();
        assert_eq!(
            v.check("prices", &json!({})).unwrap_err().to_string(),
            r#"(root): required property "bid" missing"#
        );
        assert!(v.check("prices", &json!({"bid": 1})).is_ok());

        let broken = dir.join("broken.json");
        std::fs::write(&broken, r#"{"type": 5}"#).unwrap();
        let e = Validator::new(Preset::None, &[("x".into(), broken)]).unwrap_err();
        assert!(e.contains("broken.json"), "{e}");
        let e =
            Validator::new(Preset::None, &[("x".into(), dir.join("missing.json"))]).unwrap_err();
        assert!(e.contains("missing.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Compiles `schema` as the only `--schema`, for topic "t".
    fn compiled(schema: &Value) -> Result<Validator, String> {
        let dir = std::env::temp_dir().join(format!("statecast-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "{:016x}.json",
            canonical_hash(schema, &RandomState::new(), &mut 0)
        ));
        std::fs::write(&path, schema.to_string()).unwrap();
        let made = Validator::new(Preset::None, &[("t".into(), path.clone())]);
        std::fs::remove_file(&path).unwrap();
        made
    }

    /// A recursive discriminated union, `oneOf` two forms that each recurse
    /// through `next` before they check `kind`: both branches are tried at
    /// every level, 2^depth applications in all.
    fn union() -> Value {
        json!({
            "$defs": {
                "node": {"oneOf": [{"$ref": "#/$defs/a"}, {"$ref": "#/$defs/b"}]},
                "a": {"type": "object",
                      "properties": {"next": {"$ref": "#/$defs/node"}, "kind": {"const": "a"}}},
                "b": {"type": "object",
                      "properties": {"next": {"$ref": "#/$defs/node"}, "kind": {"const": "b"}}}
            },
            "$ref": "#/$defs/node"
        })
    }

    fn chain(depth: usize) -> Value {
        let mut value = json!({"kind": "a"});
        for _ in 0..depth {
            value = json!({"next": value, "kind": "a"});
        }
        value
    }

    /// Work that doubles with each level of the value stops at the step
    /// budget with a 422-bound refusal naming the limit, after exactly
    /// the budget's steps, where the whole check would take more than
    /// twice as many.
    #[test]
    fn an_exponential_union_stops_at_the_step_budget() {
        let v = compiled(&union()).unwrap();
        let shallow = v.steps("t", &chain(10));
        assert!(
            shallow > 1 << 10 && v.check("t", &chain(10)).is_ok(),
            "{shallow}"
        );
        assert!(
            shallow << 9 > 2 * STEP_BUDGET,
            "depth 19 would take {shallow} << 9 steps"
        );
        let deep = chain(19);
        let e = v.check("t", &deep).unwrap_err();
        assert_eq!(e.pointer, "");
        assert!(e.rule.contains("work limit was reached"), "{e}");
        assert_eq!(v.steps("t", &deep), STEP_BUDGET);
    }

    /// A `$ref` loop that comes back to a schema without moving into the
    /// value is refused when the schema is compiled, naming the keyword
    /// that closes it; one that moves into the value is recursion, and
    /// compiles.
    #[test]
    fn a_ref_cycle_without_progress_is_refused_at_compile() {
        let cycles = [
            (
                json!({"$ref": "#"}),
                "/$ref: a $ref cycle",
                "((root) -> (root))",
            ),
            (
                json!({"anyOf": [{"$ref": "#"}, {"$ref": "#"}]}),
                "/anyOf/1/$ref: a $ref cycle",
                "((root) -> /anyOf/1 -> (root))",
            ),
            (
                json!({"allOf": [{"allOf": [{"$ref": "#"}]}]}),
                "/allOf/0/allOf/0/$ref",
                "(root)",
            ),
            (
                json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                       "properties": {"x": {"$ref": "#/$defs/a"}}}),
                "/$defs/b/$ref",
                "(/$defs/a -> /$defs/b -> /$defs/a)",
            ),
            (json!({"not": {"$ref": "#"}}), "/not/$ref", "(root)"),
            (
                json!({"if": {"$ref": "#"}, "then": true}),
                "/if/$ref",
                "(root)",
            ),
            // Closed by a child already compiled through a $ref.
            (
                json!({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}},
                       "$ref": "#/$defs/a/allOf/0"}),
                "$ref cycle",
                "/$defs/a",
            ),
        ];
        for (schema, keyword, hops) in cycles {
            let e = compiled(&schema).unwrap_err();
            assert!(e.contains(keyword) && e.contains(hops), "{schema}: {e}");
            assert!(e.contains("(for t)"), "{e}");
        }
        let recursive = json!({"properties": {"a": {"$ref": "#"}}, "items": {"$ref": "#"}});
        let v = compiled(&recursive).unwrap();
        assert!(v.check("t", &json!({"a": [{"a": 1}]})).is_ok());
        // An unreached loop is never compiled, as boon never visits it.
        assert!(compiled(&json!({"$defs": {"a": {"$ref": "#/$defs/a"}}})).is_ok());
    }

    /// uniqueItems hashes each item once: 150,000 distinct items take a
    /// step or two each, not one per pair (over 10^10), and a duplicate at
    /// the far end is still found.
    #[test]
    fn unique_items_take_steps_in_proportion_to_the_items() {
        let v = compiled(&json!({"uniqueItems": true})).unwrap();
        let n = 150_000;
        let mut items: Vec<Value> = (0..n).map(|i| json!(i)).collect();
        let distinct = Value::Array(items.clone());
        assert!(v.check("t", &distinct).is_ok());
        let steps = v.steps("t", &distinct);
        assert!(steps <= 3 * n as u64, "{steps} steps for {n} items");
        items.push(json!(0.0));
        let e = v.check("t", &Value::Array(items)).unwrap_err();
        assert_eq!(e.rule, format!("items 0 and {n} are equal"));
    }

    /// Equal as JSON Schema has it: numbers by value, objects in any
    /// order, at any depth.
    #[test]
    fn unique_items_compare_canonical_json() {
        let v = compiled(&json!({"uniqueItems": true})).unwrap();
        for equal in [
            json!([1, 1.0]),
            json!([0, -0.0]),
            json!([{"a": 1, "b": [2]}, {"b": [2.0], "a": 1}]),
            json!([[1, {"x": null}], [1.0, {"x": null}]]),
            json!(["a", null, "a"]),
        ] {
            assert!(v.check("t", &equal).is_err(), "{equal}");
        }
        for distinct in [
            json!([1, "1", true, null, [1], {"1": 1}]),
            json!([{"a": 1}, {"a": 2}, {"b": 1}, {"a": 1, "b": 1}]),
            json!([[1, 2], [2, 1], [1, 2, 3]]),
            json!([{"a": 1, "b": 2}, {"a": 2, "b": 1}]),
            json!([0.1, 0.2, 0.30000000000000004, 0.3]),
        ] {
            assert!(v.check("t", &distinct).is_ok(), "{distinct}");
        }
    }
}
