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

use crate::config::{self, ArgError, Config};
use crate::topic::Preset;

/// The `[[poll]]` and `[[exec]]` tables with where each starts, so an entry
/// can be named by its own line long after the file was read.
#[derive(serde::Deserialize, Default)]
struct Entries {
    #[serde(default)]
    poll: Vec<Spanned<Value>>,
    #[serde(default)]
    exec: Vec<Spanned<Value>>,
}

/// Reads `path` into `config`. Errors name the file, the line and the key.
pub fn load(path: &Path, config: &mut Config) -> Result<(), ArgError> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ArgError(format!("--config: cannot read {file}: {e}")))?;
    apply_text(&text, &file.to_string(), config)
}

/// Applies the text of a config file named `file` (for errors) to `config`.
pub fn apply_text(text: &str, file: &str, config: &mut Config) -> Result<(), ArgError> {
    let toml_error = |e: toml::de::Error| ArgError(format!("{file}: {}", e.to_string().trim_end()));
    let table: BTreeMap<String, Spanned<Value>> = toml::from_str(text).map_err(toml_error)?;
    let line_at = |offset: usize| text[..offset].matches('\n').count() + 1;
    for (key, value) in &table {
        if key == "poll" || key == "exec" {
            continue;
        }
        let line = line_at(value.span().start);
        let fail = |msg: String| ArgError(format!("{file}:{line}: {key}: {msg}"));
        apply(config, key, value.get_ref()).map_err(fail)?;
    }
    let entries: Entries = toml::from_str(text).map_err(toml_error)?;
    for (kind, items) in [("poll", entries.poll), ("exec", entries.exec)] {
        for item in items {
            let origin = format!("{file}:{}: [[{kind}]]", line_at(item.span().start));
            add_entry(config, kind, item.get_ref(), &origin)
                .map_err(|msg| ArgError(format!("{origin}: {msg}")))?;
        }
    }
    Ok(())
}

/// Adds one `[[poll]]` or `[[exec]]` entry, remembering where it was written
/// for the checks that come once the whole configuration is known.
fn add_entry(config: &mut Config, kind: &str, item: &Value, origin: &str) -> Result<(), String> {
    let flag = format!("--{kind}");
    let spec = entry(kind, item)?;
    config::set(config, &flag, Some(&spec)).map_err(|e| e.replacen(&format!("{flag}: "), "", 1))?;
    let added = match kind {
        "poll" => config.polls.last_mut().map(|p| &mut p.origin),
        _ => config.execs.last_mut().map(|e| &mut e.origin),
    };
    if let Some(at) = added {
        *at = origin.to_owned();
    }
    Ok(())
}

/// Applies one key of the file.
fn apply(config: &mut Config, key: &str, value: &Value) -> Result<(), String> {
    let option = format!("--{}", key.replace('_', "-"));
    // `set` words its errors for the command line; here the key is named.
    let set = |config: &mut Config, text: Option<&str>| {
        config::set(config, &option, text).map_err(|e| {
            e.strip_prefix(&format!("{option}: "))
                .map(str::to_owned)
                .unwrap_or_else(|| "unknown key (see statecast --help for the options)".to_owned())
        })
    };
    let declared = config::options::find(&option);
    if declared.is_some_and(|o| o.command_line_only()) {
        return Err("only valid on the command line".into());
    }
    // A switch (an option without a value): `true` turns it on.
    let switch = declared.is_some_and(|o| o.value.is_none());
    match (key, value) {
        (_, Value::Boolean(on)) if switch => {
            if *on {
                set(config, None)?;
            }
        }
        _ if switch => return Err("expected true or false".into()),
        ("topics", Value::Array(items)) => {
            for item in items {
                let Value::String(topic) = item else {
                    return Err(format!("expected a list of strings, found {item}"));
                };
                config::set(config, "--topic", Some(topic))
                    .map_err(|e| e.replacen("--topic: ", "", 1))?;
            }
        }
        ("topics", _) => return Err("expected a list of topic names".into()),
        ("allow_origins" | "allow_hosts", Value::Array(items)) => {
            let flag = if key == "allow_origins" {
                "--allow-origin"
            } else {
                "--allow-host"
            };
            for item in items {
                let Value::String(item) = item else {
                    return Err(format!("expected a list of strings, found {item}"));
                };
                config::set(config, flag, Some(item))
                    .map_err(|e| e.replacen(&format!("{flag}: "), "", 1))?;
            }
        }
        ("schema", Value::Table(table)) => {
            for (topic, file) in table {
                let Value::String(file) = file else {
                    return Err(format!("{topic}: expected a file name, found {file}"));
                };
                config::set(config, "--schema", Some(&format!("{topic}={file}")))
                    .map_err(|e| e.replacen("--schema: ", "", 1))?;
            }
        }
        ("schema", _) => return Err("expected a [schema] table of TOPIC = \"FILE\"".into()),
        (_, Value::String(text)) => set(config, Some(text))?,
        (_, Value::Integer(n)) => set(config, Some(&n.to_string()))?,
        (_, other) => return Err(format!("expected a string or a number, found {other}")),
    }
    Ok(())
}

/// Turns a `[[poll]]` or `[[exec]]` table into the option's text form.
fn entry(kind: &str, item: &Value) -> Result<String, String> {
    let Value::Table(table) = item else {
        return Err(format!("expected [[{kind}]] tables"));
    };
    let field = |name: &str| match table.get(name) {
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(format!("{name}: expected a string, found {other}")),
        None => Ok(None),
    };
    let target = if kind == "poll" { "url" } else { "command" };
    for name in table.keys() {
        if !["topic", target, "interval"].contains(&name.as_str()) {
            return Err(format!("unknown key {name:?} in [[{kind}]]"));
        }
    }
    let missing = |key: &str| format!("the key {key:?} is missing");
    let topic = field("topic")?.ok_or_else(|| missing("topic"))?;
    let what = field(target)?.ok_or_else(|| missing(target))?;
    Ok(match field("interval")? {
        Some(interval) => format!("{topic}={what}@{interval}"),
        // A command has no default interval: say so in the file's terms,
        // not in the command line's TOPIC=COMMAND@INTERVAL.
        None if kind == "exec" => return Err(missing("interval")),
        None => format!("{topic}={what}"),
    })
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// Formats a size the way the options take it.
fn size(bytes: usize) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{}MiB", bytes >> 20)
    } else if bytes.is_multiple_of(1 << 10) {
        format!("{}KiB", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

/// The effective configuration as a TOML file `load` reads back unchanged.
pub fn render(c: &Config) -> String {
    let d = config::format_duration;
    let mut out = String::new();
    let preset = match c.preset {
        Preset::Adw => "adw",
        Preset::None => "none",
    };
    let topics: Vec<String> = c.topics.iter().map(|t| quoted(t)).collect();
    let _ = writeln!(out, "listen = {}", quoted(&c.listen.to_string()));
    let _ = writeln!(out, "preset = {}", quoted(preset));
    let _ = writeln!(out, "topics = [{}]", topics.join(", "));
    let _ = writeln!(out, "any_topic = {}", c.any_topic);
    let _ = writeln!(out, "max_topics = {}", c.max_topics);
    let _ = writeln!(
        out,
        "max_publish_bytes = {}",
        quoted(&size(c.max_publish_bytes))
    );
    let _ = writeln!(
        out,
        "max_client_message = {}",
        quoted(&size(c.max_client_message))
    );
    let _ = writeln!(out, "max_client_fragments = {}", c.max_client_fragments);
    let _ = writeln!(
        out,
        "max_queue_bytes = {}",
        quoted(&size(c.max_queue_bytes))
    );
    let _ = writeln!(out, "max_connections = {}", c.max_connections);
    let _ = writeln!(out, "ping_interval = {}", quoted(&d(c.ping_interval)));
    let _ = writeln!(
        out,
        "handshake_timeout = {}",
        quoted(&d(c.handshake_timeout))
    );
    let _ = writeln!(out, "write_timeout = {}", quoted(&d(c.write_timeout)));
    let _ = writeln!(out, "shutdown_timeout = {}", quoted(&d(c.shutdown_timeout)));
    let _ = writeln!(out, "stats_interval = {}", quoted(&d(c.stats_interval)));
    let _ = writeln!(
        out,
        "log_level = {}",
        quoted(&c.log_level.to_string().to_lowercase())
    );
    render_sources(c, &mut out);
    render_tables(c, &mut out);
    out
}

/// Who may connect and publish, and where data comes from. An option that
/// is unset, or secret, is shown commented out, so every key is named.
fn render_sources(c: &Config, out: &mut String) {
    let d = config::format_duration;
    let _ = writeln!(out, "demo = {}", c.demo);
    let _ = writeln!(out, "no_validate = {}", !c.validate);
    let _ = writeln!(out, "no_compression = {}", !c.compression);
    let _ = writeln!(out, "agent_program = {}", quoted(&c.agent_program));
    let origins: Vec<String> = c.allow_origins.iter().map(|o| quoted(o)).collect();
    let _ = writeln!(out, "allow_origins = [{}]", origins.join(", "));
    let _ = writeln!(out, "allow_any_origin = {}", c.allow_any_origin);
    let _ = writeln!(out, "require_origin = {}", c.require_origin);
    let hosts: Vec<String> = c.allow_hosts.iter().map(|h| quoted(h)).collect();
    let _ = writeln!(out, "allow_hosts = [{}]", hosts.join(", "));
    let _ = writeln!(out, "public_metrics = {}", c.public_metrics);
    let _ = writeln!(out, "insecure_publish = {}", c.insecure_publish);
    let _ = writeln!(out, "max_connections_per_ip = {}", c.max_connections_per_ip);
    // Tokens are never printed: say whether one is set, in a comment.
    for (key, token) in [
        ("publish_token", &c.publish_token),
        ("subscribe_token", &c.subscribe_token),
    ] {
        let _ = match token {
            Some(_) => writeln!(out, "# {key} is set; not printed"),
            None => writeln!(out, "# {key}: unset (give it in the environment, not here)"),
        };
    }
    let _ = match &c.jwt_public_key {
        Some(file) => writeln!(out, "jwt_public_key = {}", quoted(&file.to_string_lossy())),
        None => writeln!(out, "# jwt_public_key = \"FILE\""),
    };
    for (key, value) in [
        ("jwt_audience", &c.jwt_audience),
        ("jwt_issuer", &c.jwt_issuer),
    ] {
        let _ = match value {
            Some(v) => writeln!(out, "{key} = {}", quoted(v)),
            None => writeln!(out, "# {key} = \"\""),
        };
    }
    // Only ever from the environment; said whether set, in a comment.
    if c.jwt_secret.is_some() {
        let _ = writeln!(
            out,
            "# {} is set; not printed",
            crate::server::jwt::SECRET_ENV
        );
    }
    let _ = match &c.agents_dir {
        Some(dir) => writeln!(out, "agents_dir = {}", quoted(&dir.to_string_lossy())),
        None => writeln!(out, "# agents_dir = \"DIR\""),
    };
    let _ = writeln!(out, "scan_interval = {}", quoted(&d(c.scan_interval)));
    let _ = match &c.github_repo {
        Some(repo) => writeln!(out, "github_repo = {}", quoted(repo)),
        None => writeln!(out, "# github_repo = \"OWNER/NAME\""),
    };
    if c.redis.is_none() {
        let _ = writeln!(out, "# redis = \"redis://HOST:PORT/DB\"");
    }
    if let Some(url) = &c.redis {
        // A password in the URL stays out of the printout.
        let shown = config::redacted_url(url.expose());
        if shown == url.expose() {
            let _ = writeln!(out, "redis = {}", quoted(&shown));
        } else {
            let _ = writeln!(
                out,
                "# redis = {} (its password is not printed)",
                quoted(&shown)
            );
        }
    }
    let _ = writeln!(out, "poll_timeout = {}", quoted(&d(c.poll_timeout)));
    let _ = writeln!(out, "exec_timeout = {}", quoted(&d(c.exec_timeout)));
}

/// The tables, which TOML wants after every top-level key.
fn render_tables(c: &Config, out: &mut String) {
    let d = config::format_duration;
    if !c.schemas.is_empty() {
        out.push_str("\n[schema]\n");
        for (topic, file) in &c.schemas {
            let _ = writeln!(
                out,
                "{} = {}",
                quoted(topic),
                quoted(&file.to_string_lossy())
            );
        }
    }
    for p in &c.polls {
        if config::has_secret(&p.url) {
            // Not printed; said in a comment, as tokens are.
            let _ = write!(
                out,
                "\n# [[poll]] for {} is set; its URL holds a secret, not printed: {}\n",
                p.topic,
                config::redacted_url(&p.url)
            );
            continue;
        }
        let _ = write!(
            out,
            "\n[[poll]]\ntopic = {}\nurl = {}\ninterval = {}\n",
            quoted(&p.topic),
            quoted(&p.to_string()),
            quoted(&d(p.interval))
        );
    }
    for e in &c.execs {
        let shown = config::redacted_urls(&e.command);
        if shown != e.command {
            let _ = write!(
                out,
                "\n# [[exec]] for {} is set; its command holds a secret, not printed: {}\n",
                e.topic, shown
            );
            continue;
        }
        let _ = write!(
            out,
            "\n[[exec]]\ntopic = {}\ncommand = {}\ninterval = {}\n",
            quoted(&e.topic),
            quoted(&e.command),
            quoted(&d(e.interval))
        );
    }
}
