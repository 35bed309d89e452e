//! The kinds of option value, one type each: how an option's text is
//! taken into its `Config` field, how a config file gives it, and how
//! `--print-config` shows it. An option's declaration
//! ([`super::options`]) names its kind, so the command line, the
//! environment, the file and the printout all treat it the same way.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;

use super::specs::{DEFAULT_POLL_INTERVAL, ExecSpec, PollSpec, parse_exec, parse_poll};
use super::values::{
    Secret, format_duration, has_secret, hs256_key, parse_addr, parse_count, parse_duration,
    parse_size, redacted_url, redacted_urls, secret,
};
use crate::topic::{self, Preset};

/// One kind of value.
pub trait Kind {
    /// The `Config` field an option of this kind sets.
    type Field;
    /// How a config file gives it.
    const SHAPE: Shape = Shape::Value;
    /// Takes in one use of the option: its text, `""` for a switch. An
    /// error says what is wrong with the text; the caller names the option.
    fn set(field: &mut Self::Field, text: &str) -> Result<(), String>;
    /// The field as `--print-config` shows it.
    fn show(field: &Self::Field) -> Shown;
    /// Says where the use just taken in was written (`statecast.toml:7:
    /// [[poll]]`), for the errors that come once the whole configuration is
    /// known; only a `[[key]]` entry keeps it.
    fn set_origin(_field: &mut Self::Field, _origin: &str) {}
}

/// How a config file gives an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A switch: `true` turns it on, `false` leaves it.
    Switch,
    /// A string or a number: the option's text.
    Value,
    /// A list of strings, each one use of the option (`topics = ["a"]`).
    List,
    /// A `[key]` table of `NAME = "VALUE"`, each one use as `NAME=VALUE`;
    /// the example is what `--print-config` shows, commented, when empty.
    Table {
        example: (&'static str, &'static str),
    },
    /// `[[key]]` tables with `topic`, `target` and `interval`, each one use
    /// as `TOPIC=TARGET@INTERVAL`; the example, `--print-config`'s when
    /// there are none, gives the three values.
    Entries {
        target: &'static str,
        interval_required: bool,
        example: [&'static str; 3],
    },
}

/// A field as `--print-config` shows it.
#[derive(Debug, PartialEq, Eq)]
pub enum Shown {
    /// `key = VALUE`, the value written as TOML.
    Value(String),
    /// Unset: `# key = "SYNTAX"`, the option's value syntax as an example.
    Unset,
    /// A secret: whether it is set, never what it is.
    Secret { set: bool },
    /// Commented out, what follows `# key`.
    Note(String),
    /// The `NAME = "VALUE"` pairs of a `[key]` table.
    Table(Vec<(String, String)>),
    /// One `[[key]]` table each: `[topic, target, interval]`, or what
    /// stands in a comment in its place when it holds a secret.
    Entries(Vec<Result<[String; 3], String>>),
}

/// `s` as a TOML string.
pub fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A size the way the options take it.
fn size(bytes: usize) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{}MiB", bytes >> 20)
    } else if bytes.is_multiple_of(1 << 10) {
        format!("{}KiB", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

fn list(items: &[String]) -> Shown {
    let items: Vec<String> = items.iter().map(|i| quoted(i)).collect();
    Shown::Value(format!("[{}]", items.join(", ")))
}

/// An optional text: quoted when set, the syntax's example when not.
fn optional(value: Option<&str>) -> Shown {
    value.map_or(Shown::Unset, |v| Shown::Value(quoted(v)))
}

/// A switch that turns something on (`--demo`).
pub struct Switch;

impl Kind for Switch {
    type Field = bool;
    const SHAPE: Shape = Shape::Switch;
    fn set(field: &mut bool, _: &str) -> Result<(), String> {
        *field = true;
        Ok(())
    }
    fn show(field: &bool) -> Shown {
        Shown::Value(field.to_string())
    }
}

/// A switch that turns something off (`--no-validate`): the field says
/// whether it is on, the file's key whether the switch was given.
pub struct Off;

impl Kind for Off {
    type Field = bool;
    const SHAPE: Shape = Shape::Switch;
    fn set(field: &mut bool, _: &str) -> Result<(), String> {
        *field = false;
        Ok(())
    }
    fn show(field: &bool) -> Shown {
        Shown::Value((!field).to_string())
    }
}

/// `HOST:PORT`.
pub struct Addr;

impl Kind for Addr {
    type Field = SocketAddr;
    fn set(field: &mut SocketAddr, text: &str) -> Result<(), String> {
        *field = parse_addr(text)?;
        Ok(())
    }
    fn show(field: &SocketAddr) -> Shown {
        Shown::Value(quoted(&field.to_string()))
    }
}

/// A positive whole number.
pub struct Count;

impl Kind for Count {
    type Field = usize;
    fn set(field: &mut usize, text: &str) -> Result<(), String> {
        *field = parse_count(text)?;
        Ok(())
    }
    fn show(field: &usize) -> Shown {
        Shown::Value(field.to_string())
    }
}

/// A whole number where 0 means no limit.
pub struct Limit;

impl Kind for Limit {
    type Field = usize;
    fn set(field: &mut usize, text: &str) -> Result<(), String> {
        *field = text
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number (0 for no limit)"))?;
        Ok(())
    }
    fn show(field: &usize) -> Shown {
        Shown::Value(field.to_string())
    }
}

/// A SIZE: `4096`, `4KiB`, `1MiB`.
pub struct Size;

impl Kind for Size {
    type Field = usize;
    fn set(field: &mut usize, text: &str) -> Result<(), String> {
        *field = parse_size(text)?;
        Ok(())
    }
    fn show(field: &usize) -> Shown {
        Shown::Value(quoted(&size(*field)))
    }
}

/// A DURATION: `500ms`, `20s`, `5m`, `1h`.
pub struct Time;

impl Kind for Time {
    type Field = Duration;
    fn set(field: &mut Duration, text: &str) -> Result<(), String> {
        *field = parse_duration(text)?;
        Ok(())
    }
    fn show(field: &Duration) -> Shown {
        Shown::Value(quoted(&format_duration(*field)))
    }
}

/// A DURATION that may be `0` (off), at most [`MAX_WINDOW`]: `--drain`.
pub struct Window;

/// The longest `--drain`: a restart that takes longer is an outage, and
/// the bound keeps every instant computed from it in range.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

impl Kind for Window {
    type Field = Duration;
    fn set(field: &mut Duration, text: &str) -> Result<(), String> {
        let rest = text.trim_start_matches('0');
        let zero = rest.len() < text.len() && matches!(rest, "" | "ms" | "s" | "m" | "h");
        let window = if zero {
            Duration::ZERO
        } else {
            parse_duration(text)?
        };
        if window > MAX_WINDOW {
            return Err(format!("{text:?} is longer than the most allowed, 1h"));
        }
        *field = window;
        Ok(())
    }
    fn show(field: &Duration) -> Shown {
        if field.is_zero() {
            return Shown::Value(quoted("0s"));
        }
        Shown::Value(quoted(&format_duration(*field)))
    }
}

/// `adw` or `none`.
pub struct PresetName;

impl Kind for PresetName {
    type Field = Preset;
    fn set(field: &mut Preset, text: &str) -> Result<(), String> {
        *field = match text {
            "adw" => Preset::Adw,
            "none" => Preset::None,
            other => return Err(format!("unknown preset {other:?} (expected adw or none)")),
        };
        Ok(())
    }
    fn show(field: &Preset) -> Shown {
        Shown::Value(quoted(match field {
            Preset::Adw => "adw",
            Preset::None => "none",
        }))
    }
}

/// A log level.
pub struct Level;

impl Kind for Level {
    type Field = LevelFilter;
    fn set(field: &mut LevelFilter, text: &str) -> Result<(), String> {
        *field = text.parse().map_err(|_| {
            format!("unknown level {text:?} (expected off, error, warn, info, debug or trace)")
        })?;
        Ok(())
    }
    fn show(field: &LevelFilter) -> Shown {
        Shown::Value(quoted(&field.to_string().to_lowercase()))
    }
}

/// A topic name, repeatable.
pub struct Topics;

impl Kind for Topics {
    type Field = Vec<String>;
    const SHAPE: Shape = Shape::List;
    fn set(field: &mut Vec<String>, text: &str) -> Result<(), String> {
        if !topic::is_plain_name(text) {
            return Err(format!(
                "{text:?} is not a topic name (1 to {} of a-z, 0-9 and -)",
                topic::MAX_NAME_LEN
            ));
        }
        field.push(text.to_owned());
        Ok(())
    }
    fn show(field: &Vec<String>) -> Shown {
        list(field)
    }
}

/// A page origin browsers may connect from, or `*`; repeatable.
pub struct Origins;

impl Kind for Origins {
    type Field = Vec<String>;
    const SHAPE: Shape = Shape::List;
    fn set(field: &mut Vec<String>, text: &str) -> Result<(), String> {
        let plausible = text == "*" || text.starts_with("http://") || text.starts_with("https://");
        if !plausible {
            return Err(format!(
                "{text:?} is not an origin (expected e.g. https://dash.example.com, or *)"
            ));
        }
        field.push(text.to_owned());
        Ok(())
    }
    fn show(field: &Vec<String>) -> Shown {
        list(field)
    }
}

/// A name `Host` may carry, or `*`; repeatable, kept in lower case.
pub struct Hosts;

impl Kind for Hosts {
    type Field = Vec<String>;
    const SHAPE: Shape = Shape::List;
    fn set(field: &mut Vec<String>, text: &str) -> Result<(), String> {
        let plausible = text == "*"
            || (!text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)));
        if !plausible {
            return Err(format!(
                "{text:?} is not a host name (expected e.g. dash.example.com, or *)"
            ));
        }
        field.push(text.to_ascii_lowercase());
        Ok(())
    }
    fn show(field: &Vec<String>) -> Shown {
        list(field)
    }
}

/// A token (16 characters or more, no spaces): never shown.
pub struct Token;

impl Kind for Token {
    type Field = Option<Secret>;
    fn set(field: &mut Option<Secret>, text: &str) -> Result<(), String> {
        *field = Some(secret(text)?);
        Ok(())
    }
    fn show(field: &Option<Secret>) -> Shown {
        Shown::Secret {
            set: field.is_some(),
        }
    }
}

/// An HS256 key (32 bytes or more, no spaces): never shown.
pub struct Hs256Key;

impl Kind for Hs256Key {
    type Field = Option<Secret>;
    fn set(field: &mut Option<Secret>, text: &str) -> Result<(), String> {
        *field = Some(hs256_key(text)?);
        Ok(())
    }
    fn show(field: &Option<Secret>) -> Shown {
        Shown::Secret {
            set: field.is_some(),
        }
    }
}

/// A file or directory.
pub struct Path;

impl Kind for Path {
    type Field = Option<PathBuf>;
    fn set(field: &mut Option<PathBuf>, text: &str) -> Result<(), String> {
        *field = Some(text.into());
        Ok(())
    }
    fn show(field: &Option<PathBuf>) -> Shown {
        optional(field.as_ref().map(|p| p.to_string_lossy()).as_deref())
    }
}

/// Any text but the empty one.
pub struct Text;

impl Kind for Text {
    type Field = Option<String>;
    fn set(field: &mut Option<String>, text: &str) -> Result<(), String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        *field = Some(text.to_owned());
        Ok(())
    }
    fn show(field: &Option<String>) -> Shown {
        optional(field.as_deref())
    }
}

/// A program's name: no path, no spaces.
pub struct Program;

impl Kind for Program {
    type Field = String;
    fn set(field: &mut String, text: &str) -> Result<(), String> {
        if text.is_empty() || text.contains(['/', ' ', '\0']) {
            return Err(format!(
                "{text:?} is not a program name (no path, no spaces)"
            ));
        }
        *field = text.to_owned();
        Ok(())
    }
    fn show(field: &String) -> Shown {
        Shown::Value(quoted(field))
    }
}

/// A GitHub repository, `OWNER/NAME`.
pub struct Repo;

impl Kind for Repo {
    type Field = Option<String>;
    fn set(field: &mut Option<String>, text: &str) -> Result<(), String> {
        let valid = text.split_once('/').is_some_and(|(owner, name)| {
            !owner.is_empty()
                && !name.is_empty()
                && !name.contains('/')
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        });
        if !valid {
            return Err(format!("{text:?} is not OWNER/NAME"));
        }
        *field = Some(text.to_owned());
        Ok(())
    }
    fn show(field: &Option<String>) -> Shown {
        optional(field.as_deref())
    }
}

/// A `redis://` or `rediss://` URL, whose password is never shown.
pub struct Redis;

impl Kind for Redis {
    type Field = Option<Secret>;
    fn set(field: &mut Option<Secret>, text: &str) -> Result<(), String> {
        if !text.starts_with("redis://") && !text.starts_with("rediss://") {
            return Err(format!(
                "{:?} is not a redis:// or rediss:// URL",
                redacted_url(text)
            ));
        }
        *field = Some(Secret::new(text));
        Ok(())
    }
    fn show(field: &Option<Secret>) -> Shown {
        let Some(url) = field else {
            return Shown::Note(format!(" = {}", quoted("redis://HOST:PORT/DB")));
        };
        let shown = redacted_url(url.expose());
        if shown == url.expose() {
            Shown::Value(quoted(&shown))
        } else {
            Shown::Note(format!(
                " = {} (its password is not printed)",
                quoted(&shown)
            ))
        }
    }
}

/// `TOPIC=FILE`, repeatable; a topic named again takes the later file.
pub struct Schemas;

impl Kind for Schemas {
    type Field = Vec<(String, PathBuf)>;
    const SHAPE: Shape = Shape::Table {
        example: ("queue", "schemas/queue.json"),
    };
    fn set(field: &mut Self::Field, text: &str) -> Result<(), String> {
        let (topic, file) = text
            .split_once('=')
            .filter(|(topic, file)| !topic.is_empty() && !file.is_empty())
            .ok_or_else(|| format!("{text:?} is not TOPIC=FILE"))?;
        field.retain(|(t, _)| t != topic);
        field.push((topic.to_owned(), file.into()));
        Ok(())
    }
    fn show(field: &Self::Field) -> Shown {
        Shown::Table(
            field
                .iter()
                .map(|(topic, file)| (topic.clone(), file.to_string_lossy().into_owned()))
                .collect(),
        )
    }
}

/// `TOPIC=URL[#POINTER][@INTERVAL]`, repeatable.
pub struct Polls;

impl Kind for Polls {
    type Field = Vec<PollSpec>;
    const SHAPE: Shape = Shape::Entries {
        target: "url",
        interval_required: false,
        example: ["queue", "http://127.0.0.1:8000/api/v1/queue", "2s"],
    };
    fn set(field: &mut Vec<PollSpec>, text: &str) -> Result<(), String> {
        field.push(parse_poll(text, DEFAULT_POLL_INTERVAL)?);
        Ok(())
    }
    fn set_origin(field: &mut Vec<PollSpec>, origin: &str) {
        if let Some(last) = field.last_mut() {
            last.origin = origin.to_owned();
        }
    }
    fn show(field: &Vec<PollSpec>) -> Shown {
        Shown::Entries(
            field
                .iter()
                .map(|p| {
                    if has_secret(&p.url) {
                        Err(format!(
                            "for {} is set; its URL holds a secret, not printed: {}",
                            p.topic,
                            redacted_url(&p.url)
                        ))
                    } else {
                        Ok([p.topic.clone(), p.to_string(), format_duration(p.interval)])
                    }
                })
                .collect(),
        )
    }
}

/// `TOPIC=COMMAND@INTERVAL`, repeatable.
pub struct Execs;

impl Kind for Execs {
    type Field = Vec<ExecSpec>;
    const SHAPE: Shape = Shape::Entries {
        target: "command",
        interval_required: true,
        example: ["qc-metrics", "python3 tools/qc_metrics.py --json", "30s"],
    };
    fn set(field: &mut Vec<ExecSpec>, text: &str) -> Result<(), String> {
        field.push(parse_exec(text)?);
        Ok(())
    }
    fn set_origin(field: &mut Vec<ExecSpec>, origin: &str) {
        if let Some(last) = field.last_mut() {
            last.origin = origin.to_owned();
        }
    }
    fn show(field: &Vec<ExecSpec>) -> Shown {
        Shown::Entries(
            field
                .iter()
                .map(|e| {
                    let shown = redacted_urls(&e.command);
                    if shown == e.command {
                        Ok([
                            e.topic.clone(),
                            e.command.clone(),
                            format_duration(e.interval),
                        ])
                    } else {
                        Err(format!(
                            "for {} is set; its command holds a secret, not printed: {shown}",
                            e.topic
                        ))
                    }
                })
                .collect(),
        )
    }
}
