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
        // Equal items as the spec has it: numbers by value, objects in any
        // order, at any depth.
        (
            json!({"uniqueItems": true}),
            vec![
                json!([1, 1.0]),
                json!([0, -0.0]),
                json!([{"a": 1, "b": [2]}, {"b": [2.0], "a": 1}]),
                json!([[1], [1.0]]),
                json!([1, "1", true, null, [1], {"1": 1}]),
                json!([{"a": 1}, {"a": 2}, {"a": 1, "b": 1}]),
                json!([[1, 2], [2, 1]]),
            ],
        ),
        // \d, \w and their negations are ASCII in both checkers.
        (
            json!({"pattern": "^\\w+\\d$", "patternProperties": {"^\\W\\D$": {"type": "null"}}}),
            vec![
                json!("a_1"),
                json!("é1"),
                json!("a\u{663}"),
                json!({"éa": null}),
                json!({"\u{663}a": 1}),
                json!({"_1": 1}),
            ],
        ),
        // The root may name the draft and an id its $ref uses; "$id" and
        // "$schema" as property names are only names.
        (
            json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:t",
                "$defs": {"n": {"type": "integer"}}, "$ref": "urn:t#/$defs/n"}),
            vec![json!(1), json!("x")],
        ),
        (
            json!({"properties": {"$id": {"type": "string"}, "$schema": {"const": 1}}}),
            vec![
                json!({"$id": "x", "$schema": 1}),
                json!({"$id": 1}),
                json!({"$schema": "x"}),
            ],
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

/// A schema that uses what the checker does not know, or would check
/// otherwise than boon, is refused at start, naming the keyword and where
/// it is: a `$ref` loop that never moves into the value (boon compiles it
/// and refuses every value that reaches it), `$id` or `$schema` below the
/// root, another draft, and regex classes that match differently.
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
        (json!({"$ref": "#"}), "/$ref: a $ref cycle"),
        (
            json!({"anyOf": [{"$ref": "#"}, {"$ref": "#"}]}),
            "/anyOf/1/$ref: a $ref cycle",
        ),
        (
            json!({"$defs": {"a": {"$id": "urn:a", "type": "string"}}, "$ref": "#/$defs/a"}),
            "/$defs/a/$id: only the root schema may have $id",
        ),
        (
            json!({"properties": {"a": {"$schema": "https://json-schema.org/draft/2020-12/schema"}}}),
            "/properties/a/$schema",
        ),
        (
            json!({"$schema": "http://json-schema.org/draft-07/schema#"}),
            "/$schema: \"http://json-schema.org/draft-07/schema#\" is not supported",
        ),
        (
            json!({"pattern": "^\\s*$"}),
            "/pattern: \"^\\\\s*$\": \\s is not supported",
        ),
        (json!({"pattern": "[^\\S]"}), "\\S is not supported"),
        (
            json!({"patternProperties": {"\\bx": true}}),
            "the word boundary \\b is not supported",
        ),
        (json!({"pattern": "(?i)^k$"}), "the case-insensitive flag i"),
        (
            json!({"pattern": "a(?mi:b)"}),
            "the case-insensitive flag i",
        ),
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
    // An escaped backslash before s is a literal, and a named group no flag.
    for (i, fine) in [r"^\\s$", r"(?<i>x)", r"(?m)^x$"].iter().enumerate() {
        let path = dir.join(format!("fine-{i}.json"));
        std::fs::write(&path, json!({ "pattern": fine }).to_string()).unwrap();
        Validator::new(Preset::None, &[("t".into(), path)]).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// boon compiles a `$ref` loop that never moves into the value and
/// refuses every value that reaches it, so refusing the schema at start
/// takes no value boon would pass.
#[test]
fn boon_refuses_every_value_that_reaches_a_ref_cycle() {
    for schema in [
        json!({"$ref": "#"}),
        json!({"anyOf": [{"$ref": "#"}, {"$ref": "#"}]}),
        json!({"allOf": [{"allOf": [{"$ref": "#"}]}]}),
    ] {
        let mut compiler = Compiler::new();
        let mut schemas = Schemas::new();
        compiler.add_resource("urn:cycle", schema.clone()).unwrap();
        let index = compiler.compile("urn:cycle", &mut schemas).unwrap();
        for value in [
            json!(1),
            json!("x"),
            json!({"a": 1}),
            json!([1]),
            json!(null),
        ] {
            let e = schemas.validate(&value, index).unwrap_err().to_string();
            assert!(e.contains("reference cycle"), "{schema} {value}: {e}");
        }
    }
}

/// The contract's own examples and the demo's values over a long run take
/// a tenth of the step budget or less, and so does a workflow-history
/// filling the 1 MiB default publish limit: the budget stops runaway
/// schemas, never a value the dashboard sends.
#[test]
fn the_step_budget_has_a_wide_margin_over_real_values() {
    use statecast::providers::demo::{self, Demo, Output};
    use statecast::topic::schema::STEP_BUDGET;
    let ours = Validator::new(Preset::Adw, &[]).unwrap();
    let mut largest = (0, String::new());
    let mut measure = |topic: &str, value: &Value| {
        assert!(ours.check(topic, value).is_ok(), "{topic}: {value}");
        let steps = ours.steps(topic, value);
        if steps > largest.0 {
            largest = (steps, topic.to_owned());
        }
    };
    for name in contract::topics() {
        let topic = if name == "adw-state" {
            "adw-state/a1"
        } else {
            name
        };
        for value in Contract::cases(name).0 {
            measure(topic, &value);
        }
    }
    let mut demo = Demo::new(7);
    let mut outputs = demo.initial();
    for _ in 0..2_000 {
        outputs.extend(demo.step());
    }
    for output in &outputs {
        if let Output::Snapshot(topic, value) = output {
            measure(topic, value);
        }
    }
    // The contract's largest history item, repeated to 1 MiB.
    let (valid, _) = Contract::cases("workflow-history");
    let one = valid
        .into_iter()
        .max_by_key(|v| v.to_string().len())
        .unwrap();
    let item = one["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|v| v.to_string().len())
        .unwrap()
        .clone();
    let items = (1 << 20) / (item.to_string().len() + 1);
    let mut full = one.clone();
    full["workflows"] = Value::Array(vec![item; items]);
    full["total_count"] = items.into();
    measure("workflow-history", &full);
    measure("workflow-history", &demo::history_fixture(50, 1));
    let (steps, topic) = largest;
    assert!(
        steps * 10 <= STEP_BUDGET,
        "{topic} takes {steps} steps, too near the budget of {STEP_BUDGET}"
    );
}

/// docs/options.md states the step budget the checker has.
#[test]
fn the_documented_budget_is_the_budget() {
    use statecast::topic::schema::STEP_BUDGET;
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/options.md")).unwrap();
    let digits = STEP_BUDGET.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    assert!(
        page.contains(&format!("at most {grouped} steps"))
            && page.contains(&format!("({digits}\nsteps)")),
        "docs/options.md should give the budget as {grouped}"
    );
}
