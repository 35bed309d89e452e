//! JSON Schema checks on what would become a topic's snapshot: the ADW
//! contract's schemas and any `--schema TOPIC=FILE`, each compiled once at
//! start into a small tree of rules, and the one-line error
//! (`/analytics: required property "total_workflows" missing`) a refused
//! value gets.
//!
//! The checker is our own, for draft 2020-12's assertions. The crates that
//! check JSON Schema compile every draft's metaschema at the first schema
//! and keep them for good: 6.4 MB resident before any client, on a server
//! meant to idle in 4 (docs/footprint.md). A schema that uses a keyword
//! this checker does not know is refused at start with its location, never
//! half-checked. Formats are annotations, as draft 2020-12 says by default,
//! so the server refuses exactly what the contract's own Python checker
//! refuses; the tests hold this checker to boon's verdicts.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

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

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "(root): {}", self.rule)
        } else {
            write!(f, "{}: {}", self.pointer, self.rule)
        }
    }
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
            let id = validator.compile_file(path)?;
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

    fn compile_file(&mut self, path: &Path) -> Result<Id, String> {
        let file = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {file}: {e}"))?;
        let schema: Value =
            serde_json::from_str(&text).map_err(|e| format!("{file}: not JSON: {e}"))?;
        compile(&mut self.nodes, &schema)
            .map_err(|e| format!("{file}: not a usable JSON Schema: {e}"))
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
            Some(id) => self.validate(id, value),
            None => Ok(()),
        }
    }

    /// Checks an event's `data` when its `type` is a preset topic's message
    /// type: the client renders it exactly like a snapshot of that topic.
    pub fn check_event(&self, message_type: &str, data: &Value) -> Result<(), SchemaError> {
        match adw::schema_name_for_type(message_type) {
            Some("adw-state") => match self.adw_state {
                Some(id) => self.validate(id, data),
                None => Ok(()),
            },
            Some(topic) => self.check(topic, data),
            None => Ok(()),
        }
    }

    fn validate(&self, id: Id, value: &Value) -> Result<(), SchemaError> {
        let mut check = Check {
            nodes: &self.nodes,
            path: Vec::new(),
            depth: 0,
        };
        check.node(id, value).map_err(|failure| SchemaError {
            pointer: failure.pointer,
            rule: failure.rule,
        })
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
    Rules(Box<Rules>),
}

/// A schema object's assertions. Keywords that only annotate (title,
/// description, examples, format, ...) leave nothing here, and each group
/// is allocated only when one of its keywords is used: the contract's ten
/// schemas are some hundreds of these, and an idle server holds them all.
#[derive(Debug, Default)]
struct Rules {
    reference: Option<Id>,
    types: Option<Box<[Type]>>,
    values: Option<Box<ValueRules>>,
    number: Option<Box<NumberRules>>,
    string: Option<Box<StringRules>>,
    array: Option<Box<ArrayRules>>,
    object: Option<Box<ObjectRules>>,
    logic: Option<Box<LogicRules>>,
}

#[derive(Debug, Default)]
struct ValueRules {
    allowed: Option<Vec<Value>>,
    constant: Option<Value>,
}

#[derive(Debug, Default)]
struct NumberRules {
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<f64>,
}

#[derive(Debug, Default)]
struct StringRules {
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<Pattern>,
}

#[derive(Debug, Default)]
struct ArrayRules {
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
struct ObjectRules {
    required: Vec<String>,
    properties: Vec<(String, Id)>,
    pattern_properties: Vec<(Pattern, Id)>,
    additional_properties: Option<Id>,
    property_names: Option<Id>,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    dependent_required: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Default)]
struct LogicRules {
    all_of: Vec<Id>,
    any_of: Vec<Id>,
    one_of: Vec<Id>,
    not: Option<Id>,
    if_then_else: Option<(Id, Option<Id>, Option<Id>)>,
}

/// The group of `rules` a keyword goes in, made on first use.
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

/// Compiles the schema document `doc`; returns its root's id.
fn compile(nodes: &mut Vec<Node>, doc: &Value) -> Result<Id, String> {
    let own_id = doc.get("$id").and_then(Value::as_str).map(str::to_owned);
    let mut compiler = Compiler {
        doc,
        own_id,
        nodes,
        by_pointer: HashMap::new(),
    };
    compiler.at("")
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
        let id = self.nodes.len();
        self.nodes.push(Node::Any);
        self.by_pointer.insert(pointer.to_owned(), id);
        let node = match schema {
            Value::Bool(true) => Node::Any,
            Value::Bool(false) => Node::Never,
            Value::Object(object) => self.rules(object, pointer)?,
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

    fn rules(&mut self, object: &Map<String, Value>, pointer: &str) -> Result<Node, String> {
        let mut rules = Rules::default();
        let mut any = false;
        for (key, value) in object {
            if ANNOTATIONS.contains(&key.as_str()) {
                continue;
            }
            let at = format!("{pointer}/{}", escape(key));
            self.keyword(&mut rules, key, value, &at)
                .map_err(|e| format!("{}: {e}", here(&at)))?;
            any = true;
        }
        Ok(if any {
            Node::Rules(Box::new(rules))
        } else {
            Node::Any
        })
    }

    /// Reads one assertion keyword into `rules`; `at` is its pointer.
    fn keyword(&mut self, r: &mut Rules, key: &str, v: &Value, at: &str) -> Result<(), String> {
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
            "properties" => group(&mut r.object).properties = self.named(v, at)?,
            "patternProperties" => {
                for (source, id) in self.named(v, at)? {
                    group(&mut r.object)
                        .pattern_properties
                        .push((pattern(&Value::String(source))?, id));
                }
            }
            "additionalProperties" => {
                group(&mut r.object).additional_properties = Some(self.at(at)?)
            }
            "propertyNames" => group(&mut r.object).property_names = Some(self.at(at)?),
            "minProperties" => group(&mut r.object).min_properties = Some(count(v)?),
            "maxProperties" => group(&mut r.object).max_properties = Some(count(v)?),
            "dependentRequired" => {
                let map = v.as_object().ok_or("must be an object")?;
                for (name, needs) in map {
                    group(&mut r.object)
                        .dependent_required
                        .push((name.clone(), strings(needs)?));
                }
            }
            "allOf" => group(&mut r.logic).all_of = self.list(v, at)?,
            "anyOf" => group(&mut r.logic).any_of = self.list(v, at)?,
            "oneOf" => group(&mut r.logic).one_of = self.list(v, at)?,
            "not" => group(&mut r.logic).not = Some(self.at(at)?),
            "if" => {
                let parent = at.strip_suffix("/if").unwrap_or(at);
                let branch = |c: &mut Self, k: &str| -> Result<Option<Id>, String> {
                    let p = format!("{parent}/{k}");
                    c.doc.pointer(&p).map(|_| c.at(&p)).transpose()
                };
                let then = branch(self, "then")?;
                let otherwise = branch(self, "else")?;
                group(&mut r.logic).if_then_else = Some((self.at(at)?, then, otherwise));
            }
            // Read with their `if`; without one they assert nothing.
            "then" | "else" => {}
            other => return Err(format!("keyword {other:?} is not supported")),
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
    let regex = Regex::new(source).map_err(|e| format!("{source:?} is not a usable regex: {e}"))?;
    Ok(Pattern {
        source: source.to_owned(),
        regex,
    })
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

// ----- checking -----

/// How deep `$ref`s and combinators may nest while checking one value: a
/// schema that refers to itself without moving into the value would
/// otherwise recurse until the stack ran out.
const MAX_DEPTH: usize = 512;

struct Check<'a> {
    nodes: &'a [Node],
    /// Where in the value the check is, for the error's pointer.
    path: Vec<String>,
    depth: usize,
}

/// A broken rule and where.
struct Failure {
    pointer: String,
    rule: String,
    /// How many tokens deep into the value it was found.
    depth: usize,
    /// It failed on the value's type (or enum/const): at an `anyOf`, such a
    /// branch says less than one that matched the type and failed deeper.
    on_type: bool,
}

type Checked = Result<(), Failure>;

impl Check<'_> {
    fn fail(&self, rule: String) -> Failure {
        let pointer: String = self
            .path
            .iter()
            .map(|t| format!("/{}", escape(t)))
            .collect();
        Failure {
            pointer,
            rule,
            depth: self.path.len(),
            on_type: false,
        }
    }

    fn fail_on_type(&self, rule: String) -> Failure {
        Failure {
            on_type: true,
            ..self.fail(rule)
        }
    }

    fn node(&mut self, id: Id, value: &Value) -> Checked {
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            Err(self.fail("the schema nests too deeply to check this value".into()))
        } else {
            match self.nodes.get(id) {
                Some(Node::Rules(rules)) => self.rules(rules, value),
                Some(Node::Never) => Err(self.fail("no value is allowed here".into())),
                Some(Node::Any) | None => Ok(()),
            }
        };
        self.depth -= 1;
        result
    }

    /// Checks `value` one step down, at `token`.
    fn child(&mut self, id: Id, token: String, value: &Value) -> Checked {
        self.path.push(token);
        let result = self.node(id, value);
        self.path.pop();
        result
    }

    fn rules(&mut self, r: &Rules, value: &Value) -> Checked {
        if let Some(id) = r.reference {
            self.node(id, value)?;
        }
        self.kind(r, value)?;
        match (value, &r.number, &r.string, &r.array, &r.object) {
            (Value::Number(n), Some(rules), ..) => self.number(rules, n.as_f64().unwrap_or(0.0))?,
            (Value::String(s), _, Some(rules), ..) => self.string(rules, s)?,
            (Value::Array(items), _, _, Some(rules), _) => self.array(rules, items)?,
            (Value::Object(map), .., Some(rules)) => self.object(rules, map)?,
            _ => {}
        }
        match &r.logic {
            Some(rules) => self.combinators(rules, value),
            None => Ok(()),
        }
    }

    fn kind(&self, r: &Rules, value: &Value) -> Checked {
        if let Some(types) = &r.types
            && !types.iter().any(|t| t.admits(value))
        {
            let want: Vec<&str> = types.iter().map(|t| t.name()).collect();
            let got = Type::of(value).name();
            return Err(self.fail_on_type(format!("must be {}, not {got}", want.join(" or "))));
        }
        let Some(values) = &r.values else {
            return Ok(());
        };
        if let Some(constant) = &values.constant
            && !same(constant, value)
        {
            return Err(self.fail_on_type(format!("must be {constant}")));
        }
        if let Some(allowed) = &values.allowed
            && !allowed.iter().any(|a| same(a, value))
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(self.fail_on_type(format!("must be one of {}", list.join(", "))));
        }
        Ok(())
    }

    fn number(&self, r: &NumberRules, n: f64) -> Checked {
        let broken = [
            (r.minimum.filter(|&m| n < m), "at least"),
            (r.maximum.filter(|&m| n > m), "at most"),
            (r.exclusive_minimum.filter(|&m| n <= m), "more than"),
            (r.exclusive_maximum.filter(|&m| n >= m), "less than"),
        ];
        if let Some((Some(bound), words)) = broken.into_iter().find(|(b, _)| b.is_some()) {
            return Err(self.fail(format!("must be {words} {bound}, not {n}")));
        }
        if let Some(m) = r.multiple_of {
            let q = n / m;
            if !q.is_finite() || q.fract() != 0.0 {
                return Err(self.fail(format!("must be a multiple of {m}, not {n}")));
            }
        }
        Ok(())
    }

    fn string(&self, r: &StringRules, s: &str) -> Checked {
        if r.min_length.is_some() || r.max_length.is_some() {
            let len = s.chars().count() as u64;
            if let Some(min) = r.min_length.filter(|&m| len < m) {
                return Err(self.fail(format!("must be at least {min} characters, not {len}")));
            }
            if let Some(max) = r.max_length.filter(|&m| len > m) {
                return Err(self.fail(format!("must be at most {max} characters, not {len}")));
            }
        }
        if let Some(p) = &r.pattern
            && !p.regex.is_match(s)
        {
            return Err(self.fail(format!("{s:?} does not match pattern {:?}", p.source)));
        }
        Ok(())
    }

    fn array(&mut self, r: &ArrayRules, items: &[Value]) -> Checked {
        let len = items.len() as u64;
        if let Some(min) = r.min_items.filter(|&m| len < m) {
            return Err(self.fail(format!("must have at least {min} items, not {len}")));
        }
        if let Some(max) = r.max_items.filter(|&m| len > m) {
            return Err(self.fail(format!("must have at most {max} items, not {len}")));
        }
        if r.unique_items {
            for (i, a) in items.iter().enumerate() {
                if let Some(j) = items.iter().skip(i + 1).position(|b| same(a, b)) {
                    let j = i + 1 + j;
                    return Err(self.fail(format!("items {i} and {j} are equal")));
                }
            }
        }
        for (i, item) in items.iter().enumerate() {
            let id = match r.prefix_items.get(i) {
                Some(&id) => Some(id),
                None => r.items,
            };
            if let Some(id) = id {
                self.child(id, i.to_string(), item)?;
            }
        }
        if let Some(id) = r.contains {
            let mut matched = 0u64;
            for item in items {
                let mut probe = self.probe();
                matched += u64::from(probe.node(id, item).is_ok());
            }
            let min = r.min_contains.unwrap_or(1);
            if matched < min {
                return Err(self.fail(format!(
                    "must contain at least {min} matching items, not {matched}"
                )));
            }
            if let Some(max) = r.max_contains.filter(|&m| matched > m) {
                return Err(self.fail(format!(
                    "must contain at most {max} matching items, not {matched}"
                )));
            }
        }
        Ok(())
    }

    fn object(&mut self, r: &ObjectRules, map: &Map<String, Value>) -> Checked {
        let missing: Vec<&str> = r
            .required
            .iter()
            .filter(|name| !map.contains_key(name.as_str()))
            .map(String::as_str)
            .collect();
        match missing.as_slice() {
            [] => {}
            [one] => return Err(self.fail(format!("required property {one:?} missing"))),
            many => {
                let list: Vec<String> = many.iter().map(|n| format!("{n:?}")).collect();
                return Err(self.fail(format!("required properties {} missing", list.join(", "))));
            }
        }
        for (name, needs) in &r.dependent_required {
            if map.contains_key(name)
                && let Some(need) = needs.iter().find(|n| !map.contains_key(n.as_str()))
            {
                return Err(self.fail(format!("property {need:?} is required with {name:?}")));
            }
        }
        let len = map.len() as u64;
        if let Some(min) = r.min_properties.filter(|&m| len < m) {
            return Err(self.fail(format!("must have at least {min} properties, not {len}")));
        }
        if let Some(max) = r.max_properties.filter(|&m| len > m) {
            return Err(self.fail(format!("must have at most {max} properties, not {len}")));
        }
        for (name, value) in map {
            if let Some(id) = r.property_names {
                let key = Value::String(name.clone());
                if let Err(e) = self.probe().node(id, &key) {
                    return Err(self.fail(format!("property name {name:?}: {}", e.rule)));
                }
            }
            let mut matched = false;
            if let Some((_, id)) = r.properties.iter().find(|(n, _)| n == name) {
                matched = true;
                self.child(*id, name.clone(), value)?;
            }
            for (p, id) in &r.pattern_properties {
                if p.regex.is_match(name) {
                    matched = true;
                    self.child(*id, name.clone(), value)?;
                }
            }
            if let (false, Some(id)) = (matched, r.additional_properties) {
                if matches!(self.nodes.get(id), Some(Node::Never)) {
                    return Err(self.fail(format!("property {name:?} is not allowed")));
                }
                self.child(id, name.clone(), value)?;
            }
        }
        Ok(())
    }

    fn combinators(&mut self, r: &LogicRules, value: &Value) -> Checked {
        for &id in &r.all_of {
            self.node(id, value)?;
        }
        if !r.any_of.is_empty() {
            let mut failures = Vec::new();
            for &id in &r.any_of {
                match self.node(id, value) {
                    Ok(()) => return self.rest(r, value),
                    Err(f) => failures.push(f),
                }
            }
            return Err(self.none_matched(failures));
        }
        self.rest(r, value)
    }

    /// `oneOf`, `not` and `if`, after `anyOf` passed.
    fn rest(&mut self, r: &LogicRules, value: &Value) -> Checked {
        if !r.one_of.is_empty() {
            let mut failures = Vec::new();
            let mut passed = Vec::new();
            for (i, &id) in r.one_of.iter().enumerate() {
                match self.node(id, value) {
                    Ok(()) => passed.push(i),
                    Err(f) => failures.push(f),
                }
            }
            match passed.as_slice() {
                [] => return Err(self.none_matched(failures)),
                [_] => {}
                [a, b, ..] => {
                    return Err(self.fail(format!(
                        "matches more than one allowed form (#{a} and #{b})"
                    )));
                }
            }
        }
        if let Some(id) = r.not
            && self.probe().node(id, value).is_ok()
        {
            return Err(self.fail("matches a form that is not allowed".into()));
        }
        if let Some((condition, then, otherwise)) = r.if_then_else {
            let branch = match self.probe().node(condition, value) {
                Ok(()) => then,
                Err(_) => otherwise,
            };
            if let Some(id) = branch {
                self.node(id, value)?;
            }
        }
        Ok(())
    }

    /// A check whose failure is only a verdict (`not`, `if`, `contains`):
    /// it starts where this one is.
    fn probe(&self) -> Check<'_> {
        Check {
            nodes: self.nodes,
            path: self.path.clone(),
            depth: self.depth,
        }
    }

    /// The error for an `anyOf`/`oneOf` no branch of which matched: a
    /// branch that failed only on the value's type tells the producer
    /// nothing; one whose type matched and failed deeper does, as Python
    /// jsonschema's `best_match` has it.
    fn none_matched(&self, failures: Vec<Failure>) -> Failure {
        let here = self.path.len();
        let mut failures = failures;
        if let Some(i) = failures.iter().position(|f| f.depth > here || !f.on_type) {
            return failures.swap_remove(i);
        }
        let each: Vec<&str> = failures.iter().map(|f| f.rule.as_str()).collect();
        self.fail_on_type(format!(
            "matches none of the allowed forms ({})",
            each.join("; ")
        ))
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
}
