//! JSON Schema checks on what would become a topic's snapshot: the ADW
//! contract's schemas and any `--schema TOPIC=FILE`, each compiled once at
//! start, and the one-line error (`/analytics: required property
//! "total_workflows" missing`) a refused value gets.
//!
//! The checker is `boon` (see the README for why not `jsonschema`). Formats
//! are annotations, as draft 2020-12 says by default, so the server refuses
//! exactly what the contract's own Python checker refuses.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use boon::{Compiler, ErrorKind, SchemaIndex, Schemas, ValidationError};
use serde_json::Value;

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
pub struct Validator {
    schemas: Schemas,
    by_topic: HashMap<String, SchemaIndex>,
    /// Applies to the whole `adw-state/` family unless a `--schema` names
    /// one of its topics.
    adw_state: Option<SchemaIndex>,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut topics: Vec<&str> = self.by_topic.keys().map(String::as_str).collect();
        topics.sort_unstable();
        f.debug_struct("Validator")
            .field("topics", &topics)
            .field("adw_state", &self.adw_state.is_some())
            .finish()
    }
}

impl Validator {
    /// Checks nothing (`--no-validate`).
    pub fn off() -> Validator {
        Validator {
            schemas: Schemas::new(),
            by_topic: HashMap::new(),
            adw_state: None,
        }
    }

    /// Compiles the preset's schemas and each `(topic, file)`. A `--schema`
    /// for a preset topic replaces the contract's. Errors name the file.
    pub fn new(preset: Preset, files: &[(String, PathBuf)]) -> Result<Validator, String> {
        let mut validator = Validator::off();
        let mut compiler = Compiler::new();
        if preset == Preset::Adw {
            for topic in adw::TOPICS {
                let index = compile_text(&mut compiler, &mut validator.schemas, topic.schema)?;
                validator.by_topic.insert(topic.name.to_owned(), index);
            }
            validator.adw_state = Some(compile_text(
                &mut compiler,
                &mut validator.schemas,
                adw::ADW_STATE_SCHEMA,
            )?);
        }
        for (topic, path) in files {
            let index = compile_file(&mut compiler, &mut validator.schemas, path)?;
            validator.by_topic.insert(topic.clone(), index);
        }
        Ok(validator)
    }

    fn index(&self, topic: &str) -> Option<SchemaIndex> {
        match self.by_topic.get(topic) {
            Some(&index) => Some(index),
            None if topic.starts_with(adw::ADW_STATE_PREFIX) => self.adw_state,
            None => None,
        }
    }

    /// Whether values published to `topic` are checked.
    pub fn applies(&self, topic: &str) -> bool {
        self.index(topic).is_some()
    }

    /// Checks `value` against `topic`'s schema; a topic without one takes
    /// any JSON.
    pub fn check(&self, topic: &str, value: &Value) -> Result<(), SchemaError> {
        let Some(index) = self.index(topic) else {
            return Ok(());
        };
        self.schemas
            .validate(value, index)
            .map_err(|e| describe(&e))
    }

    /// Checks an event's `data` when its `type` is a preset topic's message
    /// type: the client renders it exactly like a snapshot of that topic.
    pub fn check_event(&self, message_type: &str, data: &Value) -> Result<(), SchemaError> {
        match adw::schema_name_for_type(message_type) {
            Some("adw-state") => match self.adw_state {
                Some(index) => self.schemas.validate(data, index).map_err(|e| describe(&e)),
                None => Ok(()),
            },
            Some(topic) => self.check(topic, data),
            None => Ok(()),
        }
    }
}

fn compile_text(
    compiler: &mut Compiler,
    schemas: &mut Schemas,
    text: &str,
) -> Result<SchemaIndex, String> {
    let schema: Value =
        serde_json::from_str(text).map_err(|e| format!("embedded schema is not JSON: {e}"))?;
    let id = schema
        .get("$id")
        .and_then(Value::as_str)
        .ok_or("embedded schema has no $id")?
        .to_owned();
    compiler
        .add_resource(&id, schema)
        .map_err(|e| format!("{id}: {e}"))?;
    compiler
        .compile(&id, schemas)
        .map_err(|e| format!("{id}: {e}"))
}

fn compile_file(
    compiler: &mut Compiler,
    schemas: &mut Schemas,
    path: &Path,
) -> Result<SchemaIndex, String> {
    let file = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {file}: {e}"))?;
    let schema: Value =
        serde_json::from_str(&text).map_err(|e| format!("{file}: not JSON: {e}"))?;
    // Registered under the file's own URL so its relative `$ref`s resolve
    // beside it; an `$id` inside still wins, as the spec says.
    let absolute = std::path::absolute(path).map_err(|e| format!("{file}: {e}"))?;
    let url = format!("file://{}", absolute.display());
    compiler
        .add_resource(&url, schema)
        .map_err(|e| format!("{file}: {e}"))?;
    compiler
        .compile(&url, schemas)
        .map_err(|e| format!("{file}: not a usable JSON Schema: {e:#}"))
}

/// Turns boon's error tree into the one error a producer should fix first.
fn describe(error: &ValidationError) -> SchemaError {
    let leaf = best(error);
    SchemaError {
        pointer: leaf.instance_location.to_string(),
        rule: rule(leaf),
    }
}

/// Descends through the wrappers boon nests errors in to the most useful
/// leaf. At an `anyOf`/`oneOf`, a branch that failed only because the value
/// has another type tells the producer nothing; the branch whose type
/// matched and failed deeper does, as Python jsonschema's `best_match` has it.
fn best<'a, 's, 'v>(error: &'a ValidationError<'s, 'v>) -> &'a ValidationError<'s, 'v> {
    match &error.kind {
        ErrorKind::AnyOf | ErrorKind::OneOf(None) => {
            let here = error.instance_location.tokens.len();
            let deeper = error.causes.iter().map(best).find(|leaf| {
                leaf.instance_location.tokens.len() > here || !is_type_mismatch(&leaf.kind)
            });
            deeper.unwrap_or(error)
        }
        // Group, Schema, Reference, AllOf, if/then and the like wrap causes.
        _ => error.causes.first().map_or(error, best),
    }
}

fn is_type_mismatch(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Type { .. } | ErrorKind::Enum { .. } | ErrorKind::Const { .. }
    )
}

fn quote_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rule(error: &ValidationError) -> String {
    match &error.kind {
        ErrorKind::Required { want } if want.len() == 1 => {
            format!("required property {} missing", quote_list(want))
        }
        ErrorKind::Required { want } => {
            format!("required properties {} missing", quote_list(want))
        }
        ErrorKind::Type { got, want } => {
            let want: Vec<String> = want.iter().map(|t| t.to_string()).collect();
            format!("must be {}, not {got}", want.join(" or "))
        }
        ErrorKind::AnyOf | ErrorKind::OneOf(None) => {
            let each: Vec<String> = error.causes.iter().map(|c| rule(best(c))).collect();
            format!("matches none of the allowed forms ({})", each.join("; "))
        }
        ErrorKind::OneOf(Some((a, b))) => {
            format!("matches more than one allowed form (#{a} and #{b})")
        }
        other => other.to_string(),
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
