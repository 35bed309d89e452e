//! Server configuration: every limit and timeout with its default, the
//! command-line parser, and the `500ms` / `1MiB` value syntax.

pub mod file;
mod specs;

pub use specs::{ExecSpec, Origin, PollSpec, parse_exec, parse_poll};

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
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
            max_connections_per_ip: 0,
            stats_interval: Duration::from_secs(60),
        }
    }
}

/// How often `--poll` fetches when the entry names no interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    /// Print the effective configuration as TOML and exit.
    PrintConfig(Box<Config>),
    Help,
    Version,
}

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

pub const HELP: &str = "\
statecast: a WebSocket push server for live dashboards

Clients open ws://HOST/api/v1/ws/<topic> and get the topic's current snapshot at
once, then every change. Producers publish with HTTP POST or the Rust API.

USAGE:
    statecast [OPTIONS]

ENDPOINTS:
    GET  /api/v1/ws/<topic>        WebSocket: snapshot now, updates as they happen
    POST /api/v1/publish/<topic>   JSON body becomes the topic's snapshot; 422 with
                                   the failing JSON pointer if its schema refuses it
    GET  /api/v1/sse/<topic>       the same messages as Server-Sent Events
    POST /api/v1/broadcast         {\"type\":..,\"data\":..} to every subscriber, not retained
    GET  /api/v1/state/<topic>     the message a new subscriber would get now
    GET  /healthz                  status; with the subscribe token (if one is set)
                                   uptime, connections, counters and providers
    GET  /metrics                  Prometheus metrics
    GET  /, /statecast.js          the live page and its JavaScript client

OPTIONS:
    --config FILE               read options from a TOML file (keys are the option
                                names with _ for -); options given here override it
    --print-config              print the effective configuration as TOML and exit
    --demo                      publish believable, moving demo data to every ADW
                                topic (workflows advancing, a service flapping, ...)
    --agents-dir DIR            publish adw-state/<id>, workflows and adw-monitor from
                                DIR/<adw_id>/adw_state.json files
    --scan-interval DURATION    how often --agents-dir is scanned [default: 500ms]
    --redis URL                 join the other nodes that use this Redis
                                (redis://[:PASSWORD@]HOST:PORT[/DB], or rediss://
                                for TLS in a build with --features tls, trusting
                                the system's roots or SSL_CERT_FILE): every publish
                                goes through it to every node, in one order per
                                topic, with one seq; snapshots are kept there for
                                nodes that start late. While it is unreachable,
                                publishes are served locally and /healthz says
                                degraded
    --github-repo OWNER/NAME    repository for each workflow's github_url
    --agent-program NAME        a workflow is running while a process whose command
                                line runs NAME and names its adw_id exists
                                [default: aider]
    --poll TOPIC=URL[#POINTER][@INTERVAL]
                                GET an http:// URL (https:// in a build with the
                                `tls` or `https` feature) every INTERVAL [default:
                                2s] and publish its JSON to TOPIC when it changes,
                                or the part the JSON pointer names (#/routes);
                                repeatable
    --poll-timeout DURATION     time allowed for one poll request [default: 5s]
    --exec TOPIC=COMMAND@INTERVAL
                                run COMMAND (with sh -c) every INTERVAL, which is
                                required, and publish its stdout to TOPIC when it
                                is JSON and changed
    --exec-timeout DURATION     time a command may run before it and everything
                                it started are killed [default: 10s]
    --listen ADDR               address to listen on [default: 127.0.0.1:8002]
    --preset NAME               starting topics: adw (the ADW dashboard's ten
                                endpoints with empty defaults) or none [default: adw]
    --topic NAME                add a topic ([a-z0-9-]); repeatable
    --any-topic                 accept any [a-z0-9-] topic name on first use
    --max-topics N              most topics at once [default: 10000]
    --schema TOPIC=FILE         check every value published to TOPIC against the
                                JSON Schema in FILE (422 if it fails); replaces
                                the contract's schema for an ADW topic; repeatable
    --no-validate               publish without checking values against schemas
                                (the ADW topics are checked against the contract
                                by default)
    --no-compression            refuse permessage-deflate. Without this, a client
                                that offers it (browsers do) gets each message of
                                256 bytes or more compressed, once per message
                                for every such client
    --max-publish-bytes SIZE    largest publish body [default: 1MiB]
    --max-client-message SIZE   largest message a client may send [default: 4KiB]
    --max-queue-bytes SIZE      output queued for one client before it is closed
                                with 1008 \"slow consumer\" [default: 1MiB]
    --max-connections N         most connections at once; past it a client gets 503
                                with Retry-After, and /healthz still answers
                                [default: 100000]
    --max-connections-per-ip N  most connections from one IP address; past it 429
                                with Retry-After; 0 for no limit [default: 0]
    --ping-interval DURATION    ping every client this often; close one silent
                                for two intervals [default: 20s]
    --handshake-timeout DURATION
                                time to send a complete request [default: 10s]
    --write-timeout DURATION    time a client may accept no bytes while output is
                                pending before it is closed as slow [default: 30s]
    --shutdown-timeout DURATION time clients get to take their 1001 close on
                                SIGINT/SIGTERM [default: 5s]
    --log-level LEVEL           off, error, warn, info, debug or trace [default: info]
    --stats-interval DURATION   log a summary line (connections, topics, publishes,
                                deliveries) and the refusals and protocol closes
                                since the last one, a line per reason [default: 60s]

ACCESS:
    --allow-origin ORIGIN       an origin browsers may also connect from, exactly as
                                they send it (https://dash.example.com), or *;
                                repeatable. A request from any other Origin gets 403
                                on every route. On a loopback address the loopback
                                origins (http(s)://localhost, 127.0.0.0/8, [::1], on
                                any port) are allowed already; on any other address
                                the server refuses to start without this
    --allow-any-origin          any origin may connect, on any address
    --require-origin            refuse (403) subscribers that send no Origin
    --allow-host NAME           a name the Host header may carry (dash.example.com),
                                or *; repeatable. On a loopback address only
                                localhost, *.localhost and loopback IPs are served
                                otherwise (421), which stops DNS rebinding; behind
                                a proxy on the same host, give its public name
    --publish-token TOKEN       publish and broadcast need `Authorization: Bearer
                                TOKEN` (else 401); also STATECAST_PUBLISH_TOKEN.
                                On a non-loopback address one is required unless
    --insecure-publish          lets anyone publish on a non-loopback address
    --subscribe-token TOKEN     subscribers need ?token=TOKEN or `Authorization:
                                Bearer TOKEN` (else 401); also
                                STATECAST_SUBSCRIBE_TOKEN. With it, /api/v1/state,
                                /metrics and the details of /healthz need a token
                                too. Tokens: 16 characters or more; never logged
                                or printed
    --public-metrics            /metrics answers without the subscribe token
    -h, --help                  print this help
    -V, --version               print the version

VALUES:
    DURATION is a whole number with a unit: 500ms, 20s, 5m, 1h.
    SIZE is a number of bytes, optionally with a unit: 4096, 4KiB, 1MiB.
";

/// Options that take a value.
const OPTIONS: &[&str] = &[
    "--config",
    "--listen",
    "--preset",
    "--topic",
    "--schema",
    "--agent-program",
    "--poll",
    "--exec",
    "--exec-timeout",
    "--poll-timeout",
    "--agents-dir",
    "--scan-interval",
    "--github-repo",
    "--redis",
    "--max-topics",
    "--max-publish-bytes",
    "--max-client-message",
    "--max-queue-bytes",
    "--max-connections",
    "--ping-interval",
    "--handshake-timeout",
    "--write-timeout",
    "--shutdown-timeout",
    "--log-level",
    "--allow-origin",
    "--allow-host",
    "--publish-token",
    "--subscribe-token",
    "--max-connections-per-ip",
    "--stats-interval",
];

/// Options that take no value.
const FLAGS: &[&str] = &[
    "-h",
    "--help",
    "-V",
    "--version",
    "--any-topic",
    "--demo",
    "--print-config",
    "--no-validate",
    "--no-compression",
    "--allow-any-origin",
    "--require-origin",
    "--insecure-publish",
    "--public-metrics",
];

/// Parses the command line (without the program name). A `--config FILE`
/// is read first, wherever it stands; every other option then overrides it,
/// and repeatable ones (`--topic`, `--poll`, `--exec`) add to its lists.
pub fn parse_args<I>(args: I) -> Result<Command, ArgError>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;

    let mut options: Vec<(String, Option<String>)> = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        let name = match arg {
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            Value(v) => {
                return Err(ArgError(format!(
                    "unexpected argument {:?}; see --help",
                    v.to_string_lossy()
                )));
            }
        };
        let value = if FLAGS.contains(&name.as_str()) {
            None
        } else if !OPTIONS.contains(&name.as_str()) {
            // Before asking for a value: `--bogus` alone is not "missing
            // an argument", it is unknown.
            return Err(ArgError(format!("unknown option {name}; see --help")));
        } else {
            let v = parser.value()?;
            Some(
                v.into_string()
                    .map_err(|_| ArgError(format!("{name}: value is not valid UTF-8")))?,
            )
        };
        options.push((name, value));
    }

    let mut config = Config::default();
    if let Some((_, Some(path))) = options.iter().find(|(name, _)| name == "--config") {
        crate::config::file::load(std::path::Path::new(path), &mut config)?;
    }
    // The environment keeps tokens off the command line, where any user
    // of the host could read them; a flag still wins.
    for (var, option) in [
        ("STATECAST_PUBLISH_TOKEN", "--publish-token"),
        ("STATECAST_SUBSCRIBE_TOKEN", "--subscribe-token"),
    ] {
        if let Ok(token) = std::env::var(var) {
            set(&mut config, option, Some(&token)).map_err(|e| ArgError(format!("{var}: {e}")))?;
        }
    }
    let mut print = false;
    for (name, value) in options {
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--print-config" => print = true,
            "--config" => {}
            _ => set(&mut config, &name, value.as_deref()).map_err(ArgError)?,
        }
    }
    Ok(if print {
        Command::PrintConfig(Box::new(config))
    } else {
        Command::Run(Box::new(config))
    })
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
            let token = value()?;
            // Said without the value: a token must not reach a terminal log.
            if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(at(
                    "a token needs at least 16 characters and no spaces".into()
                ));
            }
            let token = Some(Secret::new(token));
            match name {
                "--publish-token" => config.publish_token = token,
                _ => config.subscribe_token = token,
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

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not an address (expected HOST:PORT): {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive whole number")),
    }
}

/// Splits `"500ms"` into `(500, "ms")`.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let number = s[..digits].parse().ok()?;
    Some((number, s[digits..].trim()))
}

/// Parses `500ms`, `20s`, `5m`, `1h`. A unit is required: a bare `20` is
/// ambiguous and a wrong guess is an outage.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (expected e.g. 500ms, 20s, 5m, 1h)");
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok(duration)
}

/// Parses `4096`, `4KiB`, `1MiB`, `1GiB` (also `B`, and `K`/`M`/`G` as the
/// binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let bad = || format!("{s:?} is not a size (expected e.g. 4096, 64KiB, 1MiB)");
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(scale).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(format!("{s:?} must be more than zero"));
    }
    usize::try_from(bytes).map_err(|_| bad())
}

/// Formats a duration the way the options take it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `url` as logs, errors, `/healthz` and `--print-config` may show it:
/// user info and the query string, where secrets go (`user:pass@`,
/// `?apikey=`), become `***`. User info ends at the last `@`, as URL
/// parsers read it, so a password holding `@` is hidden whole; an `@` in
/// the query hides more than it needs to, never less.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (shown, hid_user) = match rest.rsplit_once('@') {
        Some((_, host)) => (host, true),
        None => (rest, false),
    };
    let user = if hid_user { "***@" } else { "" };
    // The fragment, if any, goes with the query: it is never sent anyway.
    match shown.split_once(['?', '#']) {
        Some((before, _)) => format!("{scheme}://{user}{before}?***"),
        None => format!("{scheme}://{user}{shown}"),
    }
}

/// Whether `url` holds what [`redacted_url`] hides.
pub fn has_secret(url: &str) -> bool {
    redacted_url(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lists an option appears in agree: every flag the parser takes is
    /// in --help, and every one in --help is taken; every switch and every
    /// option with a value but the command-line-only ones is named in
    /// --print-config (commented out when unset or secret), under its key.
    #[test]
    fn every_option_is_in_help_parser_and_print_config() {
        let printed = file::render(&Config::default());
        let in_help = |flag: &str| {
            HELP.split(|c: char| c.is_whitespace() || c == ',')
                .any(|w| w == flag)
        };
        for flag in OPTIONS.iter().chain(FLAGS) {
            assert!(in_help(flag), "{flag} is not in --help");
        }
        for word in HELP.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')') {
            let flag = word.trim_end_matches(['.', ';', ':']);
            // `--features` is cargo's, named where a build option is.
            if flag.starts_with("--")
                && flag.len() > 2
                && !flag.contains('=')
                && flag != "--features"
            {
                assert!(
                    OPTIONS.contains(&flag) || FLAGS.contains(&flag),
                    "--help names {flag}, which the parser does not take"
                );
            }
        }
        let command_line_only = [
            "--config",
            "--print-config",
            "--help",
            "--version",
            "-h",
            "-V",
        ];
        // Repeatable options are lists or tables in the file.
        let key_of = |flag: &str| match flag {
            "--topic" => "topics".to_owned(),
            "--allow-origin" => "allow_origins".to_owned(),
            "--allow-host" => "allow_hosts".to_owned(),
            "--schema" => "[schema]".to_owned(),
            "--poll" => "[[poll]]".to_owned(),
            "--exec" => "[[exec]]".to_owned(),
            other => other.trim_start_matches("--").replace('-', "_"),
        };
        let with_tables = {
            let mut c = Config::default();
            set(&mut c, "--schema", Some("queue=q.json")).unwrap();
            set(&mut c, "--poll", Some("queue=http://h/q")).unwrap();
            set(&mut c, "--exec", Some("routes=echo []@1s")).unwrap();
            file::render(&c)
        };
        for flag in OPTIONS.iter().chain(FLAGS) {
            if command_line_only.contains(flag) {
                continue;
            }
            let key = key_of(flag);
            let named = printed.lines().chain(with_tables.lines()).any(|line| {
                let line = line.trim_start_matches("# ");
                line == key
                    || line.starts_with(&format!("{key} "))
                    || line.starts_with(&format!("{key}:"))
            });
            assert!(named, "--print-config does not name {key} ({flag})");
        }
    }

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

    #[test]
    fn help_lists_every_option() {
        for option in OPTIONS.iter().chain(FLAGS) {
            assert!(HELP.contains(option), "{option} missing from --help");
        }
    }

    #[test]
    fn every_option_the_setter_knows_is_listed() {
        // A name `set` accepts but `parse_args` does not know would be
        // refused as unknown on the command line.
        for option in OPTIONS.iter().chain(FLAGS) {
            if [
                "--config",
                "-h",
                "--help",
                "-V",
                "--version",
                "--print-config",
            ]
            .contains(option)
            {
                continue;
            }
            let mut config = Config::default();
            let err = set(&mut config, option, None).err().unwrap_or_default();
            assert!(!err.contains("unknown option"), "{option}: {err}");
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
}
