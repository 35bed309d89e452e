//! The `--help` text, written from the option table ([`super::options`])
//! with each default as `--print-config` ([`super::file::render`]) shows
//! it. It lives apart from the table because it reads both, and the file
//! reader reads the table.

use super::Config;
use super::options::{ALL, Section};
use crate::wire::http::ENDPOINTS;

const HEAD: &str = "\
statecast: a WebSocket push server for live dashboards

Clients open ws://HOST/api/v1/ws/<topic> and get the topic's current snapshot at
once, then every change. Producers publish with HTTP POST or the Rust API.

USAGE:
    statecast [OPTIONS]
    statecast token [--topics LIST] [--publish LIST] [--exp DURATION] [--sub NAME]
                    prints a signed token (JWT, HS256) for testing, signed with
                    STATECAST_JWT_SECRET; see statecast token --help
";

const TAIL: &str = "\
VALUES:
    DURATION is a whole number with a unit: 500ms, 20s, 5m, 1h.
    SIZE is a number of bytes, optionally with a unit: 4096, 4KiB, 1MiB.
";

/// Where help text starts, and where lines end.
const TEXT_COLUMN: usize = 32;
const WIDTH: usize = 84;

/// The `--help` text, from the table, with each default as
/// `--print-config` shows it.
pub fn help() -> String {
    let defaults = super::file::render(&Config::default());
    let default_of = |key: &str| {
        defaults.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix(" = ")?;
            let value = value.trim_matches('"');
            (!value.is_empty() && value != "[]" && value != "false").then(|| value.to_owned())
        })
    };
    let mut out = String::from(HEAD);
    out.push_str(&endpoints());
    for (section, title) in [(Section::Options, "OPTIONS"), (Section::Access, "ACCESS")] {
        out.push_str(&format!("\n{title}:\n"));
        for opt in ALL.iter().filter(|o| o.section == section) {
            let mut text = opt.help.to_owned();
            if let Some(env) = opt.env {
                text.push_str(&format!("; also {env}"));
            }
            if opt.value.is_some()
                && let Some(default) = default_of(&opt.key())
            {
                text.push_str(&format!(" [default: {default}]"));
            }
            let name = match (opt.short, opt.value) {
                (Some(short), _) => format!("{short}, {}", opt.flag),
                (None, Some(value)) => format!("{} {value}", opt.flag),
                (None, None) => opt.flag.to_owned(),
            };
            out.push_str(&entry(&name, &text));
        }
    }
    out.push('\n');
    out.push_str(TAIL);
    out
}

/// The ENDPOINTS section, from the router's own table.
fn endpoints() -> String {
    let mut out = String::from("\nENDPOINTS:\n");
    for endpoint in ENDPOINTS {
        let name = format!("{:<4} {}", endpoint.allow, endpoint.paths.join(", "));
        out.push_str(&entry(&name, endpoint.help));
    }
    out
}

/// One option's lines: its name, then its text wrapped from the text
/// column (on the next line when the name reaches it).
fn entry(name: &str, text: &str) -> String {
    let mut out = format!("    {name}");
    let mut column = out.len();
    if column + 1 > TEXT_COLUMN {
        out.push('\n');
        column = 0;
    }
    for word in text.split_whitespace() {
        let fits = column > TEXT_COLUMN && column + 1 + word.len() <= WIDTH;
        if fits {
            out.push(' ');
            column += 1;
        } else {
            if column > TEXT_COLUMN {
                out.push('\n');
                column = 0;
            }
            out.push_str(&" ".repeat(TEXT_COLUMN - column));
            column = TEXT_COLUMN;
        }
        out.push_str(word);
        column += word.len();
    }
    out.push('\n');
    out
}
