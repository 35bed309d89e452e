//! Server configuration: every option declared once (`options`), the
//! kinds of value they take (`kinds`), the command line (`args`), the TOML
//! file (`file`), `--help` (`help`), and the `500ms` / `1MiB` value syntax.

pub mod args;
pub mod file;
pub mod help;
pub mod kinds;
pub mod options;
mod specs;
mod values;

pub use options::Config;
pub use specs::{DEFAULT_POLL_INTERVAL, ExecSpec, Origin, PollSpec, parse_exec, parse_poll};
pub use values::{
    MIN_SECRET_LEN, Secret, format_duration, has_secret, parse_duration, parse_size, redacted_url,
    redacted_urls, secret,
};

use std::fmt;

/// A command-line error, worded for the person who typed it.
#[derive(Debug, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

impl From<lexopt::Error> for ArgError {
    fn from(e: lexopt::Error) -> Self {
        ArgError(e.to_string())
    }
}

/// Sets one option, named as on the command line (`--ping-interval`), from
/// its text (`None` for a switch), through the kind its declaration names.
/// The config file and the environment go through here too, so all three
/// accept and refuse exactly the same values. Errors start with the
/// option's name.
pub fn set(config: &mut Config, name: &str, value: Option<&str>) -> Result<(), String> {
    let Some((opt, field)) = options::find(name).and_then(|o| Some((o, o.field?))) else {
        return Err(format!("unknown option {name}; see --help"));
    };
    let text = match (opt.value, value) {
        (Some(_), None) => return Err(format!("{name}: missing value")),
        (_, text) => text.unwrap_or_default(),
    };
    (field.set)(config, text).map_err(|e| format!("{name}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::args::{Command, parse_args};
    use super::*;

    fn run(args: &[&str]) -> Result<Config, ArgError> {
        match parse_args(args.iter().copied())? {
            Command::Run(c) => Ok(*c),
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn durations_and_sizes_take_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["20", "", "s", "1.5s", "-1s", "0s", "10x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        for bad in ["", "1.5MiB", "1MB", "0", "KiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        for d in ["500ms", "20s", "5m", "1h"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }

    /// `--drain` takes 0 (at once) as well as a duration, up to an hour,
    /// and prints back as it reads; `--max-accept-rate` takes 0 (no
    /// limit) and its smallest limit, 1.
    #[test]
    fn drain_takes_zero_and_at_most_an_hour() {
        for (text, window) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("00ms", Duration::ZERO),
            ("1ms", Duration::from_millis(1)),
            ("3s", Duration::from_secs(3)),
            ("1h", Duration::from_secs(3600)),
        ] {
            let c = run(&["--drain", text]).unwrap();
            assert_eq!(c.drain, window, "{text}");
        }
        for bad in ["", "3", "-1s", "61m", "2h", "0x", "1.5s"] {
            assert!(run(&["--drain", bad]).is_err(), "{bad}");
        }
        assert_eq!(Config::default().drain, Duration::from_secs(5));
        let printed = file::render(&run(&["--drain", "0"]).unwrap());
        assert!(printed.contains("drain = \"0s\""), "{printed}");
        assert_eq!(run(&["--max-accept-rate", "0"]).unwrap().max_accept_rate, 0);
        assert_eq!(run(&["--max-accept-rate", "1"]).unwrap().max_accept_rate, 1);
        assert!(run(&["--max-accept-rate", "-1"]).is_err());
    }

    #[test]
    fn flags_override_defaults() {
        let c = run(&[
            "--listen",
            "0.0.0.0:9000",
            "--ping-interval=250ms",
            "--max-queue-bytes",
            "64KiB",
            "--topic",
            "prices",
            "--any-topic",
        ])
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.ping_interval, Duration::from_millis(250));
        assert_eq!(c.max_queue_bytes, 64 << 10);
        assert_eq!(c.topics, ["prices"]);
        assert!(c.any_topic);
    }

    #[test]
    fn bad_values_name_the_option() {
        let err = run(&["--ping-interval", "20"]).unwrap_err();
        assert!(err.0.starts_with("--ping-interval: "), "{err}");
        let err = run(&["--max-queue-bytes", "lots"]).unwrap_err();
        assert!(err.0.starts_with("--max-queue-bytes: "), "{err}");
        let err = run(&["--topic", "Bad_Name"]).unwrap_err();
        assert!(err.0.starts_with("--topic: "), "{err}");
        let err = run(&["--bogus"]).unwrap_err();
        assert!(err.0.contains("--bogus"), "{err}");
        let err = run(&["--listen"]).unwrap_err();
        assert!(err.0.contains("--listen"), "{err}");
    }

    /// `--help`, written from the option table, names every option, and
    /// keeps its text within 84 columns.
    #[test]
    fn help_lists_every_option() {
        let help = help::help();
        for opt in options::ALL {
            assert!(help.contains(opt.flag), "{} missing from --help", opt.flag);
        }
        for line in help.lines() {
            assert!(line.chars().count() <= 88, "too wide: {line}");
        }
    }

    #[test]
    fn an_unknown_option_is_called_unknown() {
        let err = run(&["--bogus"]).unwrap_err();
        assert_eq!(err.0, "unknown option --bogus; see --help");
        let err = run(&["--bogus", "1"]).unwrap_err();
        assert!(err.0.starts_with("unknown option --bogus"), "{err}");
    }

    #[test]
    fn redis_passwords_never_show() {
        for (url, shown) in [
            ("redis://:hunter2@db:6379/1", "redis://***@db:6379/1"),
            ("redis://app:hunter2@db:6379", "redis://***@db:6379"),
            // Split at the last @, as URL parsers do.
            ("redis://:p@ss@host", "redis://***@host"),
            ("rediss://:a@b@c@host:6380/0", "rediss://***@host:6380/0"),
            ("redis://db:6379", "redis://db:6379"),
            (
                "https://user:pass@api.example/x?apikey=k3y",
                "https://***@api.example/x?***",
            ),
            (
                "https://api.example/q?apikey=k3y&x=1",
                "https://api.example/q?***",
            ),
            ("https://api.example/q#tok3n", "https://api.example/q?***"),
            (
                "http://localhost:8000/api/v1/queue",
                "http://localhost:8000/api/v1/queue",
            ),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
            for secret in ["hunter2", "p@ss", "pass", "k3y", "tok3n", "a@b"] {
                assert!(!redacted_url(url).contains(secret), "{url}");
            }
        }
        let e = run(&["--redis", "http://:hunter2@db"]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    /// Every URL in a command is redacted as a URL alone is; the words
    /// around it and the spaces between them stay as they were.
    #[test]
    fn urls_in_commands_never_show() {
        for (command, shown) in [
            (
                "curl -s 'https://u:hunter2@api.example/x'  | jq .",
                "curl -s 'https://***@api.example/x'  | jq .",
            ),
            (
                "fetch --url=http://h/q?apikey=k3y\t--json",
                "fetch --url=http://h/q?***\t--json",
            ),
            ("python3 tools/qc.py --json", "python3 tools/qc.py --json"),
            ("", ""),
        ] {
            assert_eq!(redacted_urls(command), shown, "{command}");
        }
    }
}
