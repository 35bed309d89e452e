//! The server's JSON Schema checker held to boon's verdicts: every contract
//! case and thousands of values made from them by swapping one part for
//! another kind of value or dropping a property, and a table of schemas
//! for the keywords the contract does not use.

use boon::{Compiler, Schemas};
use serde_json::{Value, json};
use statecast::topic::adw::Preset;
use statecast::topic::schema::Validator;
use statecast_testkit::contract::{self, Contract};

/// What one part of a value may be swapped for.
fn replacements() -> Vec<Value> {
    vec![
        json!(null),
        json!(true),
        json!(0),
        json!(2.5),
        json!(-1),
        json!(""),
        json!("not an id!"),
        json!([]),
        json!([null]),
        json!({}),
        json!({"title": {}}),
    ]
}

/// Every value `v` becomes with one part swapped or one property dropped.
fn mutations(v: &Value, out: &mut Vec<Value>) {
    let mut pointers = Vec::new();
    walk(v, String::new(), &mut pointers);
    for pointer in pointers {
        for replacement in replacements() {
            let mut m = v.clone();
            *m.pointer_mut(&pointer).unwrap() = replacement;
            out.push(m);
        }
        if let Some((parent, key)) = pointer.rsplit_once('/') {
            let mut m = v.clone();
            if let Some(Value::Object(map)) = m.pointer_mut(parent) {
                map.remove(&key.replace("~1", "/").replace("~0", "~"));
                out.push(m);
            }
        }
    }
}

fn walk(v: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{here}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let token = k.replace('~', "~0").replace('/', "~1");
                walk(item, format!("{here}/{token}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_contract_is_checked_exactly_as_boon_checks_it() {
    let ours = Validator::new(Preset::Adw, &[]).unwrap();
    let theirs = Contract::get();
    let (mut compared, mut refused) = (0, 0);
    for name in contract::topics() {
        let topic = if name == "adw-state" {
            "adw-state/a1"
        } else {
            name
        };
        let (valid, invalid) = Contract::cases(name);
        let mut values: Vec<Value> = valid
            .into_iter()
            .chain(invalid.into_iter().map(|(_, v)| v))
            .collect();
        let cases = values.clone();
        for case in &cases {
            mutations(case, &mut values);
        }
        for value in &values {
            let boon = theirs.check_data(topic, value);
            let mine = ours.check(topic, value);
            assert_eq!(
                mine.is_ok(),
                boon.is_ok(),
                "{topic}: statecast says {mine:?}, boon says {boon:?}, for\n{value}"
            );
            compared += 1;
            refused += usize::from(mine.is_err());
        }
    }
    // Both kinds of verdict were reached, many times.
    assert!(
        compared > 10_000 && refused > 1_000 && compared - refused > 1_000,
        "{compared} {refused}"
    );
}

/// Schemas using the keywords the contract does not, each with values on
/// both sides of its rule.
fn table() -> Vec<(Value, Vec<Value>)> {
    vec![
        (
            json!({"type": "integer", "minimum": 1, "maximum": 10}),
            vec![
                json!(1),
                json!(10),
                json!(0),
                json!(11),
                json!(2.0),
                json!(2.5),
                json!("3"),
            ],
        ),
        (
            json!({"exclusiveMaximum": 5, "multipleOf": 0.5}),
            vec![json!(4.5), json!(5), json!(4.2), json!("x")],
        ),
        (
            json!({"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-zé]+$"}),
            vec![
                json!("ab"),
                json!("éé"),
                json!("a"),
                json!("abcd"),
                json!("AB"),
                json!(5),
            ],
        ),
        (
            json!({"enum": [1, "a", null, {"k": [1]}]}),
            vec![
                json!(1),
                json!(1.0),
                json!("a"),
                json!(null),
                json!({"k": [1]}),
                json!({"k": [2]}),
                json!(2),
            ],
        ),
        (
            json!({"const": {"a": 1, "b": 2}}),
            vec![json!({"b": 2, "a": 1}), json!({"a": 1})],
        ),
        (
            json!({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "number"},
                "minItems": 1, "maxItems": 3, "uniqueItems": true}),
            vec![
                json!(["a"]),
                json!(["a", 1, 2]),
                json!([]),
                json!(["a", 1, 1]),
                json!([1]),
                json!(["a", "b"]),
                json!(["a", 1, 2, 3]),
            ],
        ),
        (
            json!({"contains": {"type": "null"}, "minContains": 2, "maxContains": 3}),
            vec![
                json!([null, null]),
                json!([null]),
                json!([null, null, null, null]),
                json!(7),
            ],
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "number"}},
                "patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": false,
                "minProperties": 1, "maxProperties": 2, "propertyNames": {"maxLength": 4},
                "dependentRequired": {"a": ["x-b"]}}),
            vec![
                json!({"a": 1, "x-b": "s"}),
                json!({"x-b": "s"}),
                json!({}),
                json!({"a": 1}),
                json!({"c": 1}),
                json!({"x-b": 1}),
                json!({"x-bcd": "s"}),
                json!({"a": "1", "x-b": "s"}),
            ],
        ),
        (
            json!({"oneOf": [{"type": "number"}, {"minimum": 5}]}),
            vec![json!(1), json!(7), json!("x"), json!(null)],
        ),
        (
            json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                "not": {"const": "no"}}),
            vec![json!("s"), json!(["s"]), json!([1]), json!("no"), json!(1)],
        ),
        (
            json!({"if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["a"]},
                "else": {"required": ["b"]}}),
            vec![
                json!({"kind": "a", "a": 1}),
                json!({"kind": "a", "b": 1}),
                json!({"b": 1}),
                json!({}),
            ],
        ),
        (
            json!({"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}},
                                    "required": ["v"]}},
                "$ref": "#/$defs/node"}),
            vec![
                json!({"v": 1, "next": {"v": 2}}),
                json!({"v": 1, "next": {"next": {"v": 3}}}),
            ],
        ),
        // An `if` inside a property named "if": its `then` is its sibling.
        (
            json!({"properties": {"if": {"if": {"const": 1}, "then": {"const": 2}}}}),
            vec![json!({"if": 1}), json!({"if": 3}), json!({"if": 2})],
        ),
        (
            json!({"allOf": [{"type": "object"}, {"required": ["a"]}], "properties": {"a~/b": false}}),
            vec![
                json!({"a": 1}),
                json!({"a": 1, "a~/b": 0}),
                json!([]),
                json!({"b": 1}),
            ],
        ),
    ]
}

#[test]
fn every_keyword_is_checked_as_boon_checks_it() {
    let dir = std::env::temp_dir().join(format!("statecast-keywords-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (schema, values)) in table().into_iter().enumerate() {
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, schema.to_string()).unwrap();
        let ours = Validator::new(Preset::None, &[("t".into(), path)]).unwrap();
        let mut compiler = Compiler::new();
        let mut schemas = Schemas::new();
        let url = format!("urn:table:{i}");
        compiler.add_resource(&url, schema.clone()).unwrap();
        let index = compiler.compile(&url, &mut schemas).unwrap();
        let (mut passed, mut failed) = (0, 0);
        for value in values {
            let boon = schemas.validate(&value, index).map_err(|e| e.to_string());
            let mine = ours.check("t", &value);
            assert_eq!(
                mine.is_ok(),
                boon.is_ok(),
                "{schema}\n{value}: statecast {mine:?}, boon {boon:?}"
            );
            if mine.is_ok() {
                passed += 1
            } else {
                failed += 1
            }
        }
        assert!(
            passed > 0 && failed > 0,
            "{schema}: every value got the same verdict"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A schema that uses what the checker does not know is refused at start,
/// naming the keyword and where it is; one that refers to itself without
/// end is a 422, not a crash.
#[test]
fn what_the_checker_cannot_do_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("statecast-unsupported-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let refused = [
        (
            json!({"properties": {"a": {"unevaluatedProperties": false}}}),
            "/properties/a/unevaluatedProperties",
        ),
        (
            json!({"$ref": "other.json#/a"}),
            "only references within the same schema",
        ),
        (json!({"items": [{"type": "string"}]}), "prefixItems"),
        (json!({"pattern": "(unclosed"}), "not a usable regex"),
        (json!({"type": "text"}), "/type"),
        (json!({"$ref": "#/$defs/missing"}), "not in the schema"),
    ];
    for (i, (schema, says)) in refused.iter().enumerate() {
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, schema.to_string()).unwrap();
        let e = Validator::new(Preset::None, &[("t".into(), path)]).unwrap_err();
        assert!(
            e.contains(says) && e.contains(&format!("{i}.json")),
            "{schema}: {e}"
        );
    }
    let path = dir.join("loop.json");
    std::fs::write(&path, json!({"$ref": "#"}).to_string()).unwrap();
    let v = Validator::new(Preset::None, &[("t".into(), path)]).unwrap();
    let e = v.check("t", &json!(1)).unwrap_err();
    assert!(e.rule.contains("nests too deeply"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
