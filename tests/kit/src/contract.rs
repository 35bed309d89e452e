//! The dashboard contract as the tests read it: the schemas and case files
//! under `contract/`, compiled here with boon on their own, apart from the
//! copy the server embeds, so a test checks what the server sends against
//! the files rather than against itself.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use boon::{Compiler, SchemaIndex, Schemas};
use serde_json::Value;

/// Every schema's name: the nine fixed topics and `adw-state`.
pub fn topics() -> Vec<&'static str> {
    statecast::topic::adw::schema_names().collect()
}

pub struct Contract {
    schemas: Schemas,
    by_name: HashMap<String, SchemaIndex>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contract")
}

fn read(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The schema that checks `data` on a topic: `adw-state/x` → `adw-state`.
pub fn schema_name(topic: &str) -> &str {
    if topic.starts_with("adw-state/") {
        "adw-state"
    } else {
        topic
    }
}

impl Contract {
    pub fn get() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(Contract::load)
    }

    fn load() -> Contract {
        let mut compiler = Compiler::new();
        let mut schemas = Schemas::new();
        let mut by_name = HashMap::new();
        let names = topics().into_iter().chain(["envelope"]);
        for name in names {
            let path = if name == "envelope" {
                dir().join("envelope.schema.json")
            } else {
                dir().join("schemas").join(format!("{name}.schema.json"))
            };
            let schema = read(path);
            let id = schema["$id"].as_str().expect("$id").to_owned();
            compiler.add_resource(&id, schema).unwrap();
            let index = compiler.compile(&id, &mut schemas).unwrap();
            by_name.insert(name.to_owned(), index);
        }
        Contract { schemas, by_name }
    }

    /// Checks `data` against the schema for `topic`.
    pub fn check_data(&self, topic: &str, data: &Value) -> Result<(), String> {
        let index = self.by_name[schema_name(topic)];
        self.schemas
            .validate(data, index)
            .map_err(|e| format!("{e:#}"))
    }

    #[track_caller]
    pub fn check_message(&self, topic: &str, message: &Value) {
        let envelope = self.by_name["envelope"];
        if let Err(e) = self.schemas.validate(message, envelope) {
            panic!("{topic}: envelope refused: {e:#}\n{message}");
        }
        let expected = if topic.starts_with("adw-state/") {
            "adw_state_update".to_owned()
        } else {
            format!("{}_update", topic.replace('-', "_"))
        };
        assert_eq!(message["type"], expected.as_str(), "{topic}: {message}");
        if let Some(id) = topic.strip_prefix("adw-state/") {
            assert_eq!(message["adw_id"], id, "{topic}: {message}");
        }
        if let Err(e) = self.check_data(topic, &message["data"]) {
            panic!("{topic}: data refused: {e}\n{message}");
        }
    }

    /// The `valid` and `invalid` values of `contract/cases/<name>.json`.
    pub fn cases(name: &str) -> (Vec<Value>, Vec<(String, Value)>) {
        let cases = read(dir().join("cases").join(format!("{name}.json")));
        let valid = cases["valid"].as_array().expect("valid").clone();
        let invalid = cases["invalid"]
            .as_array()
            .expect("invalid")
            .iter()
            .map(|case| {
                let why = case["why"].as_str().expect("why").to_owned();
                (why, case["data"].clone())
            })
            .collect();
        (valid, invalid)
    }
}
