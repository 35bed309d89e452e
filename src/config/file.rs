//! The TOML configuration file (`--config FILE`): reading it into a
//! [`Config`] through the same setter the command line uses, and printing a
//! configuration back as TOML (`--print-config`).
//!
//! Keys are the option names with `_` for `-` (`ping_interval = "20s"`);
//! `topics` is a list, `[[poll]]` and `[[exec]]` are tables with `topic`,
//! `url` or `command`, and `interval`, and `[schema]` maps topics to schema
//! files (`queue = "schemas/queue.json"`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use toml::{Spanned, Value};

use crate::config::kinds::{Shape, Shown, quoted};
use crate::config::options::{self, Opt};
use crate::config::{self, ArgError, Config};

/// Reads `path` into `config`. Errors name the file, the line and the key.
pub fn load(path: &Path, config: &mut Config) -> Result<(), ArgError> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ArgError(format!("--config: cannot read {file}: {e}")))?;
    apply_text(&text, &file.to_string(), config)
}

/// Applies the text of a config file named `file` (for errors) to `config`.
/// Each key is an option's ([`options::find_key`]), given in the shape its
/// kind takes; `[[poll]]`-like entries come last, each named by its line.
pub fn apply_text(text: &str, file: &str, config: &mut Config) -> Result<(), ArgError> {
    let toml_error = |e: toml::de::Error| ArgError(format!("{file}: {}", e.to_string().trim_end()));
    let table: BTreeMap<String, Spanned<Value>> = toml::from_str(text).map_err(toml_error)?;
    let line_at = |offset: usize| text.get(..offset).unwrap_or(text).matches('\n').count() + 1;
    let mut entries = Vec::new();
    for (key, value) in &table {
        let line = line_at(value.span().start);
        let fail = |msg: String| ArgError(format!("{file}:{line}: {key}: {msg}"));
        let Some((opt, shape)) = options::find_key(key) else {
            return Err(fail(
                "unknown key (see statecast --help for the options)".into(),
            ));
        };
        if opt.command_line_only() {
            return Err(fail("only valid on the command line".into()));
        }
        match (shape, value.get_ref()) {
            (Shape::Entries { .. }, Value::Array(items)) => entries.push((opt, shape, items)),
            (Shape::Entries { .. }, _) => {
                return Err(fail(format!("expected [[{key}]] tables")));
            }
            (_, value) => apply(config, opt, shape, value).map_err(fail)?,
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    // Where each entry starts: only the parser's own tables keep the span
    // of every item of an array.
    let spans = toml::de::DeTable::parse(text).map_err(toml_error)?;
    for (opt, shape, items) in entries {
        let key = opt.key();
        let starts: Vec<usize> = spans
            .get_ref()
            .iter()
            .find(|(k, _)| k.get_ref() == key.as_str())
            .and_then(|(_, v)| v.get_ref().as_array())
            .map(|items| items.iter().map(|i| i.span().start).collect())
            .unwrap_or_default();
        for (n, item) in items.iter().enumerate() {
            let start = starts.get(n).copied().unwrap_or_default();
            let origin = format!("{file}:{}: [[{key}]]", line_at(start));
            add_entry(config, opt, shape, item, &origin)
                .map_err(|msg| ArgError(format!("{origin}: {msg}")))?;
        }
    }
    Ok(())
}

/// Sets `opt` from `text`, with the error in the file's terms: without
/// the flag `set` puts first, since the file names the key.
fn set(config: &mut Config, opt: &Opt, text: Option<&str>) -> Result<(), String> {
    config::set(config, opt.flag, text).map_err(|e| {
        e.strip_prefix(&format!("{}: ", opt.flag))
            .map_or(e.clone(), str::to_owned)
    })
}

/// Applies one key of the file, in the shape its option's kind takes.
fn apply(config: &mut Config, opt: &Opt, shape: Shape, value: &Value) -> Result<(), String> {
    match (shape, value) {
        (Shape::Switch, Value::Boolean(on)) => {
            if *on {
                set(config, opt, None)?;
            }
        }
        (Shape::Switch, _) => return Err("expected true or false".into()),
        (Shape::List, Value::Array(items)) => {
            for item in items {
                let Value::String(item) = item else {
                    return Err(format!("expected a list of strings, found {item}"));
                };
                set(config, opt, Some(item))?;
            }
        }
        (Shape::List, _) => {
            let what = opt.value.unwrap_or_default();
            return Err(format!("expected a list, as {} = [\"{what}\"]", opt.key()));
        }
        (Shape::Table { .. }, Value::Table(table)) => {
            for (name, value) in table {
                let Value::String(value) = value else {
                    return Err(format!("{name}: expected a string, found {value}"));
                };
                set(config, opt, Some(&format!("{name}={value}")))?;
            }
        }
        (Shape::Table { .. }, _) => {
            let syntax = opt.value.unwrap_or_default();
            let (name, value) = syntax.split_once('=').unwrap_or((syntax, ""));
            return Err(format!(
                "expected a [{}] table of {name} = \"{value}\"",
                opt.key()
            ));
        }
        (_, Value::String(text)) => set(config, opt, Some(text))?,
        (_, Value::Integer(n)) => set(config, opt, Some(&n.to_string()))?,
        (_, other) => return Err(format!("expected a string or a number, found {other}")),
    }
    Ok(())
}

/// Adds one `[[key]]` entry, remembering where it was written for the
/// checks that come once the whole configuration is known.
fn add_entry(
    config: &mut Config,
    opt: &Opt,
    shape: Shape,
    item: &Value,
    origin: &str,
) -> Result<(), String> {
    let text = entry(&opt.key(), shape, item)?;
    set(config, opt, Some(&text))?;
    if let Some(field) = opt.field {
        (field.set_origin)(config, origin);
    }
    Ok(())
}

/// Turns a `[[key]]` table into the option's text, `TOPIC=TARGET@INTERVAL`.
fn entry(key: &str, shape: Shape, item: &Value) -> Result<String, String> {
    let Shape::Entries {
        target,
        interval_required,
        ..
    } = shape
    else {
        return Err(format!("expected [[{key}]] tables"));
    };
    let Value::Table(table) = item else {
        return Err(format!("expected [[{key}]] tables"));
    };
    let field = |name: &str| match table.get(name) {
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(format!("{name}: expected a string, found {other}")),
        None => Ok(None),
    };
    for name in table.keys() {
        if !["topic", target, "interval"].contains(&name.as_str()) {
            return Err(format!("unknown key {name:?} in [[{key}]]"));
        }
    }
    let missing = |name: &str| format!("the key {name:?} is missing");
    let topic = field("topic")?.ok_or_else(|| missing("topic"))?;
    let what = field(target)?.ok_or_else(|| missing(target))?;
    Ok(match field("interval")? {
        Some(interval) => format!("{topic}={what}@{interval}"),
        // Said in the file's terms, not in the command line's
        // TOPIC=COMMAND@INTERVAL.
        None if interval_required => return Err(missing("interval")),
        None => format!("{topic}={what}"),
    })
}

/// The effective configuration as a TOML file `load` reads back unchanged:
/// every option in the order `--help` lists them, each as its kind shows
/// it. An option that is unset, or secret, is shown commented out, and an
/// empty table as a commented example, so every key is named.
pub fn render(c: &Config) -> String {
    let mut out = String::new();
    let mut tables = String::new();
    for opt in options::ALL {
        let Some(field) = opt.field else { continue };
        let key = opt.key();
        let line = match (field.show)(c) {
            Shown::Value(value) => format!("{key} = {value}"),
            Shown::Unset => format!("# {key} = {}", quoted(opt.value.unwrap_or_default())),
            // Tokens are never printed: said whether set, in a comment.
            Shown::Secret { set: true } => format!("# {key} is set; not printed"),
            Shown::Secret { set: false } => {
                format!("# {key}: unset (give it in the environment, not here)")
            }
            Shown::Note(note) => format!("# {key}{note}"),
            Shown::Table(pairs) => {
                render_table(&mut tables, &key, field.shape, &pairs);
                continue;
            }
            Shown::Entries(entries) => {
                render_entries(&mut tables, &key, field.shape, &entries);
                continue;
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    // Only ever from the environment: said in a comment when set.
    for setting in options::ENVIRONMENT {
        if (setting.field.show)(c) == (Shown::Secret { set: true }) {
            let _ = writeln!(out, "# {} is set; not printed", setting.var);
        }
    }
    out + &tables
}

/// A `[key]` table, which TOML wants after every top-level key; a
/// commented example when it is empty.
fn render_table(out: &mut String, key: &str, shape: Shape, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        if let Shape::Table {
            example: (name, value),
        } = shape
        {
            let _ = write!(out, "\n# [{key}]\n# {} = {}\n", quoted(name), quoted(value));
        }
        return;
    }
    let _ = write!(out, "\n[{key}]\n");
    for (name, value) in pairs {
        let _ = writeln!(out, "{} = {}", quoted(name), quoted(value));
    }
}

/// `[[key]]` tables, one an entry; one holding a secret is named in a
/// comment instead, and a commented example stands for none.
fn render_entries(
    out: &mut String,
    key: &str,
    shape: Shape,
    entries: &[Result<[String; 3], String>],
) {
    let Shape::Entries {
        target, example, ..
    } = shape
    else {
        return;
    };
    let table = |[topic, what, interval]: [&str; 3], comment: &str| {
        format!(
            "\n{comment}[[{key}]]\n{comment}topic = {}\n{comment}{target} = {}\n{comment}interval = {}\n",
            quoted(topic),
            quoted(what),
            quoted(interval)
        )
    };
    if entries.is_empty() {
        out.push_str(&table(example, "# "));
    }
    for entry in entries {
        match entry {
            Ok(values) => out.push_str(&table(values.each_ref().map(String::as_str), "")),
            Err(note) => {
                let _ = write!(out, "\n# [[{key}]] {note}\n");
            }
        }
    }
}
