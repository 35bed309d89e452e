//! Published JSON, taken in once: parsed into a value under I-JSON's rules
//! (RFC 7493) and written back out compactly by us, so what reaches a
//! client is always text serde_json produced, never the sender's bytes.
//!
//! I-JSON is what every JSON parser a dashboard may use agrees on: finite
//! numbers (RFC 7493 §2.2), well-formed Unicode with no lone surrogates
//! (§2.1), and no duplicate member names (§2.3). serde_json already refuses
//! the first two and nests at most 128 deep; duplicate names are refused
//! here, where serde_json would silently keep the last.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body is not I-JSON, with the parser's line and column.
#[derive(Debug)]
pub struct JsonError(serde_json::Error);

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // serde_json's message already ends "at line L column C".
        write!(f, "invalid JSON: {}", self.0)
    }
}

impl std::error::Error for JsonError {}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> JsonError {
        JsonError(e)
    }
}

/// Parses one I-JSON value, with nothing but JSON whitespace around it.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de).map_err(JsonError)?;
    de.end().map_err(JsonError)?;
    Ok(value)
}

/// Parses one I-JSON value and returns it with its compact text.
pub fn canonical(bytes: &[u8]) -> Result<(Value, String), JsonError> {
    let value = parse(bytes)?;
    let text = compact(&value);
    Ok((value, text))
}

/// The compact text of a value: no whitespace between tokens, control
/// characters escaped, so no raw CR or LF can split an SSE line.
pub fn compact(value: &Value) -> String {
    // Writing a `Value` into a `String` cannot fail: its map keys are
    // strings and its numbers finite.
    value.to_string()
}

/// Builds a `Value` like serde_json's own visitor, refusing duplicate
/// member names.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json refuses overflow itself; this keeps the rule if it
        // ever stops doing so.
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(A::Error::custom(format_args!(
                    "duplicate member name {name:?}"
                )));
            }
            let value = map.next_value_seed(Strict)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(input: &str) -> String {
        match parse(input.as_bytes()) {
            Ok(v) => panic!("{input:?} was accepted as {v}"),
            Err(e) => e.to_string(),
        }
    }

    /// The three inputs that once ended the process or were relayed raw,
    /// and a duplicate name, are each refused with a position.
    #[test]
    fn non_i_json_is_refused_with_line_and_column() {
        let e = refused("{\"type\":\"x\",\n\"data\":1e400}");
        assert!(e.contains("line 2 column"), "{e}");
        let e = refused(r#"["\ud800"]"#);
        assert!(e.contains("escape"), "{e}");
        refused(r#""\udc00x""#);
        assert!(refused(&"[".repeat(200)).contains("recursion"));
        let e = refused(r#"{"a":1,"a":2}"#);
        assert!(e.contains("duplicate member name \"a\""), "{e}");
        assert!(e.contains("column"), "{e}");
        refused("1 2");
        refused("");
        // A well-formed pair is fine.
        assert_eq!(parse(br#""\ud83d\ude00""#).unwrap(), Value::from("😀"));
    }

    /// What is stored is our own compact text: whitespace, including a bare
    /// CR between tokens, is gone, and member order is the sender's.
    #[test]
    fn stored_text_is_compact_and_keeps_order() {
        let (_, text) = canonical(b" {\"b\" :\r[1 ,\t2],\n\"a\":\"x\\ry\"}\r\n").unwrap();
        assert_eq!(text, r#"{"b":[1,2],"a":"x\ry"}"#);
        assert!(!text.contains('\r'));
        let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert_eq!(canonical(deep.as_bytes()).unwrap().1, deep);
    }
}
