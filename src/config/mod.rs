//! Server configuration: every limit and timeout with its default, the
//! command-line parser, and the `500ms` / `1MiB` value syntax.

pub mod args;
pub mod file;
pub mod help;
pub mod options;
mod specs;
mod values;

pub use specs::{ExecSpec, Origin, PollSpec, parse_exec, parse_poll};
pub use values::{
    format_duration, has_secret, parse_duration, parse_size, redacted_url, redacted_urls,
};
use values::{parse_addr, parse_count};

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use log::LevelFilter;

use crate::topic::{self, Preset};

/// A token: never printed, not even by `{:?}`, so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(token: &str) -> Secret {
        Secret(token.to_owned())
    }

    /// The token itself, for the one comparison that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Everything the server can be told. `Config::default()` is what
/// `statecast` with no flags runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on for HTTP and WebSocket.
    pub listen: SocketAddr,
    /// The fixed topic set the server starts with.
    pub preset: Preset,
    /// Topics added to the preset by name.
    pub topics: Vec<String>,
    /// Accept any `[a-z0-9-]` topic name on first use.
    pub any_topic: bool,
    /// Most topics that may exist at once, preset ones included.
    pub max_topics: usize,
    /// Largest body `POST /api/v1/publish/<topic>` accepts.
    pub max_publish_bytes: usize,
    /// Largest message a WebSocket client may send.
    pub max_client_message: usize,
    /// Most frames a WebSocket client's message may come in.
    pub max_client_fragments: usize,
    /// Most bytes queued for one connection before it is closed as slow.
    pub max_queue_bytes: usize,
    /// How often the server pings each WebSocket; two intervals of silence close it.
    pub ping_interval: Duration,
    /// Time allowed from accept to a complete request (HTTP) or upgrade.
    pub handshake_timeout: Duration,
    /// Time a connection with pending output may accept no bytes.
    pub write_timeout: Duration,
    /// Time given to clients to take their close frame on shutdown.
    pub shutdown_timeout: Duration,
    /// Most connections held at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Log verbosity.
    pub log_level: LevelFilter,
    /// Run the demo provider: moving data on every ADW topic.
    pub demo: bool,
    /// Watch this directory of `<adw_id>/adw_state.json` files.
    pub agents_dir: Option<std::path::PathBuf>,
    /// How often the agents directory is scanned.
    pub scan_interval: Duration,
    /// `OWNER/NAME`, for the `github_url` of each workflow.
    pub github_repo: Option<String>,
    /// `--redis`: join the other nodes on this Redis (`redis://HOST:PORT[/DB]`).
    pub redis: Option<Secret>,
    /// URLs polled into topics.
    pub polls: Vec<PollSpec>,
    /// Time allowed for one poll request, connect to last byte.
    pub poll_timeout: Duration,
    /// Commands run into topics.
    pub execs: Vec<ExecSpec>,
    /// Time a command may run before it is killed.
    pub exec_timeout: Duration,
    /// JSON Schemas attached to topics with `--schema TOPIC=FILE`.
    pub schemas: Vec<(String, std::path::PathBuf)>,
    /// Check published data against the schemas (off with `--no-validate`).
    pub validate: bool,
    /// Offer permessage-deflate to clients that ask (off with
    /// `--no-compression`).
    pub compression: bool,
    /// The agent program whose process marks a workflow as running.
    pub agent_program: String,
    /// Origins browsers may connect from (`*` for any).
    pub allow_origins: Vec<String>,
    /// Any origin may connect, on any address.
    pub allow_any_origin: bool,
    /// Subscribers must send `Origin`.
    pub require_origin: bool,
    /// Names `Host` may carry besides the loopback ones (`*` for any).
    pub allow_hosts: Vec<String>,
    /// `/metrics` answers without the subscribe token.
    pub public_metrics: bool,
    /// Publish and broadcast need this as `Authorization: Bearer`.
    pub publish_token: Option<Secret>,
    /// Without a publish token, anyone may publish on a public address.
    pub insecure_publish: bool,
    /// Subscribers need this, as `?token=` or `Authorization: Bearer`.
    pub subscribe_token: Option<Secret>,
    /// The HS256 key for signed tokens (JWT), from `STATECAST_JWT_SECRET`
    /// only: never a flag or a config file key.
    pub jwt_secret: Option<Secret>,
    /// A PEM file with the Ed25519 or EC P-256 public key signed tokens
    /// are checked with; its type fixes the algorithm (EdDSA or ES256).
    pub jwt_public_key: Option<std::path::PathBuf>,
    /// A token's `aud` must be this, when set.
    pub jwt_audience: Option<String>,
    /// A token's `iss` must be this, when set.
    pub jwt_issuer: Option<String>,
    /// Most connections from one IP address; 0 for no limit.
    pub max_connections_per_ip: usize,
    /// How often a summary line, and the refusals since the last one, are
    /// logged at info.
    pub stats_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8002)),
            preset: Preset::Adw,
            topics: Vec::new(),
            any_topic: false,
            max_topics: 10_000,
            max_publish_bytes: 1 << 20,
            max_client_message: 4 << 10,
            max_client_fragments: 128,
            max_queue_bytes: 1 << 20,
            ping_interval: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            max_connections: 100_000,
            log_level: LevelFilter::Info,
            demo: false,
            agents_dir: None,
            scan_interval: Duration::from_millis(500),
            github_repo: None,
            redis: None,
            polls: Vec::new(),
            poll_timeout: Duration::from_secs(5),
            execs: Vec::new(),
            exec_timeout: Duration::from_secs(10),
            schemas: Vec::new(),
            validate: true,
            compression: true,
            agent_program: "aider".into(),
            allow_origins: Vec::new(),
            allow_any_origin: false,
            require_origin: false,
            allow_hosts: Vec::new(),
            public_metrics: false,
            publish_token: None,
            insecure_publish: false,
            subscribe_token: None,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_audience: None,
            jwt_issuer: None,
            max_connections_per_ip: 0,
            stats_interval: Duration::from_secs(60),
        }
    }
}

/// How often `--poll` fetches when the entry names no interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

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
/// its text. One arm per option, so the match is as long as the option
/// list: read as a table, it is clearer than any split would be. The config file goes through here too, so both accept and
/// refuse exactly the same values. Errors start with the option's name.
pub fn set(config: &mut Config, name: &str, value: Option<&str>) -> Result<(), String> {
    let known = set_server(config, name, value)?
        || set_access(config, name, value)?
        || set_providers(config, name, value)?;
    if known {
        Ok(())
    } else {
        Err(format!("unknown option {name}; see --help"))
    }
}

/// The listening socket, topics, limits, timers and logging. Returns whether `name` is one of them.
fn set_server(config: &mut Config, name: &str, value: Option<&str>) -> Result<bool, String> {
    let value = || value.ok_or_else(|| format!("{name}: missing value"));
    let at = |msg: String| format!("{name}: {msg}");
    match name {
        "--listen" => config.listen = parse_addr(value()?).map_err(at)?,
        "--preset" => {
            config.preset = match value()? {
                "adw" => Preset::Adw,
                "none" => Preset::None,
                other => {
                    return Err(at(format!(
                        "unknown preset {other:?} (expected adw or none)"
                    )));
                }
            }
        }
        "--topic" => {
            let topic = value()?;
            if !topic::is_plain_name(topic) {
                return Err(at(format!(
                    "{topic:?} is not a topic name (1 to {} of a-z, 0-9 and -)",
                    topic::MAX_NAME_LEN
                )));
            }
            config.topics.push(topic.to_owned());
        }
        "--any-topic" => config.any_topic = true,
        "--no-compression" => config.compression = false,
        "--max-topics" => config.max_topics = parse_count(value()?).map_err(at)?,
        "--max-publish-bytes" => config.max_publish_bytes = parse_size(value()?).map_err(at)?,
        "--max-client-message" => config.max_client_message = parse_size(value()?).map_err(at)?,
        "--max-client-fragments" => {
            config.max_client_fragments = parse_count(value()?).map_err(at)?
        }
        "--max-queue-bytes" => config.max_queue_bytes = parse_size(value()?).map_err(at)?,
        "--max-connections" => config.max_connections = parse_count(value()?).map_err(at)?,
        "--ping-interval" => config.ping_interval = parse_duration(value()?).map_err(at)?,
        "--handshake-timeout" => config.handshake_timeout = parse_duration(value()?).map_err(at)?,
        "--write-timeout" => config.write_timeout = parse_duration(value()?).map_err(at)?,
        "--shutdown-timeout" => config.shutdown_timeout = parse_duration(value()?).map_err(at)?,
        "--stats-interval" => config.stats_interval = parse_duration(value()?).map_err(at)?,
        "--log-level" => {
            let v = value()?;
            config.log_level = v.parse().map_err(|_| {
                at(format!(
                    "unknown level {v:?} (expected off, error, warn, info, debug or trace)"
                ))
            })?
        }

        _ => return Ok(false),
    }
    Ok(true)
}

/// Who may connect, publish and subscribe. Returns whether `name` is one of them.
fn set_access(config: &mut Config, name: &str, value: Option<&str>) -> Result<bool, String> {
    let value = || value.ok_or_else(|| format!("{name}: missing value"));
    let at = |msg: String| format!("{name}: {msg}");
    match name {
        "--allow-any-origin" => config.allow_any_origin = true,
        "--require-origin" => config.require_origin = true,
        "--insecure-publish" => config.insecure_publish = true,
        "--public-metrics" => config.public_metrics = true,
        "--allow-host" => {
            let host = value()?;
            let plausible = host == "*"
                || (!host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)));
            if !plausible {
                return Err(at(format!(
                    "{host:?} is not a host name (expected e.g. dash.example.com, or *)"
                )));
            }
            config.allow_hosts.push(host.to_ascii_lowercase());
        }
        "--allow-origin" => {
            let origin = value()?;
            let plausible =
                origin == "*" || origin.starts_with("http://") || origin.starts_with("https://");
            if !plausible {
                return Err(at(format!(
                    "{origin:?} is not an origin (expected e.g. https://dash.example.com, or *)"
                )));
            }
            config.allow_origins.push(origin.to_owned());
        }
        "--publish-token" | "--subscribe-token" => {
            let token = Some(secret(value()?).map_err(at)?);
            match name {
                "--publish-token" => config.publish_token = token,
                _ => config.subscribe_token = token,
            }
        }
        "--jwt-public-key" => config.jwt_public_key = Some(value()?.into()),
        "--jwt-audience" | "--jwt-issuer" => {
            let v = value()?;
            if v.is_empty() {
                return Err(at("must not be empty".into()));
            }
            match name {
                "--jwt-audience" => config.jwt_audience = Some(v.to_owned()),
                _ => config.jwt_issuer = Some(v.to_owned()),
            }
        }
        "--max-connections-per-ip" => {
            let v = value()?;
            config.max_connections_per_ip = v
                .parse()
                .map_err(|_| at(format!("{v:?} is not a whole number (0 for no limit)")))?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// A token or key as the rules for one go: 16 characters at least, no
/// spaces. Said without the value: a secret must not reach a terminal log.
pub fn secret(text: &str) -> Result<Secret, String> {
    if text.len() < MIN_SECRET_LEN || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "a token needs at least {MIN_SECRET_LEN} characters and no spaces"
        ));
    }
    Ok(Secret::new(text))
}

/// The shortest token or key taken: guessing 16 characters is out of reach.
pub const MIN_SECRET_LEN: usize = 16;

/// Where data comes from: schemas, providers, Redis. Returns whether `name` is one of them.
fn set_providers(config: &mut Config, name: &str, value: Option<&str>) -> Result<bool, String> {
    let value = || value.ok_or_else(|| format!("{name}: missing value"));
    let at = |msg: String| format!("{name}: {msg}");
    match name {
        "--no-validate" => config.validate = false,
        "--schema" => {
            let spec = value()?;
            let (topic, file) = spec
                .split_once('=')
                .ok_or_else(|| at(format!("{spec:?} is not TOPIC=FILE")))?;
            if topic.is_empty() || file.is_empty() {
                return Err(at(format!("{spec:?} is not TOPIC=FILE")));
            }
            config.schemas.retain(|(t, _)| t != topic);
            config.schemas.push((topic.to_owned(), file.into()));
        }
        "--agent-program" => {
            let name = value()?;
            if name.is_empty() || name.contains(['/', ' ', '\0']) {
                return Err(at(format!(
                    "{name:?} is not a program name (no path, no spaces)"
                )));
            }
            config.agent_program = name.to_owned();
        }
        "--demo" => config.demo = true,
        "--poll" => config
            .polls
            .push(parse_poll(value()?, DEFAULT_POLL_INTERVAL).map_err(at)?),
        "--exec" => config.execs.push(parse_exec(value()?).map_err(at)?),
        "--exec-timeout" => config.exec_timeout = parse_duration(value()?).map_err(at)?,
        "--poll-timeout" => config.poll_timeout = parse_duration(value()?).map_err(at)?,
        "--agents-dir" => config.agents_dir = Some(value()?.into()),
        "--scan-interval" => config.scan_interval = parse_duration(value()?).map_err(at)?,
        "--redis" => {
            let url = value()?;
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                return Err(at(format!(
                    "{:?} is not a redis:// or rediss:// URL",
                    redacted_url(url)
                )));
            }
            config.redis = Some(Secret::new(url));
        }
        "--github-repo" => {
            let repo = value()?;
            let valid = repo.split_once('/').is_some_and(|(owner, name)| {
                !owner.is_empty()
                    && !name.is_empty()
                    && !name.contains('/')
                    && repo
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
            });
            if !valid {
                return Err(at(format!("{repo:?} is not OWNER/NAME")));
            }
            config.github_repo = Some(repo.to_owned());
        }
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
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
