//! Every option, declared once, in [`options!`] below: its flag, its
//! value's syntax, the environment variable that may give it, its key in a
//! config file, its help line, and where it lands in [`Config`] (the field,
//! its default, and the [`kinds`](super::kinds) type that reads and shows
//! it). From that one list come `Config` and its `Default`, and [`ALL`],
//! the table the command line ([`super::set`]), the environment
//! (`args`), the config file and `--print-config` (`file`) and `--help`
//! (`help`) all read. Adding an option is a row here, the code that uses
//! its field, and the new `--help` pasted into `docs/options.md`; a new
//! value syntax is a kind in `kinds`, with a sample in `args`' tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;

use super::kinds::{self, Kind, Shape, Shown};
use super::specs::{ExecSpec, PollSpec};
use super::values::Secret;
use crate::topic::Preset;

/// Where `--help` lists an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Options,
    Access,
}

/// One option.
#[derive(Debug)]
pub struct Opt {
    pub flag: &'static str,
    pub short: Option<&'static str>,
    /// The value's syntax; `None` for a switch.
    pub value: Option<&'static str>,
    /// An environment variable that gives it too (tokens: kept off command
    /// lines other users can read).
    pub env: Option<&'static str>,
    pub section: Section,
    pub help: &'static str,
    /// Its key in a config file, where that is not the flag's own
    /// (`topics` for `--topic`).
    file_key: Option<&'static str>,
    /// Where it lands in a [`Config`]; `None` for the options only the
    /// command line takes (`--config`, `--help`, ...).
    pub field: Option<Field>,
}

/// An option's field in [`Config`], reached through its kind.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Takes in one use of the option (`""` for a switch); an error does
    /// not name the option.
    pub set: fn(&mut Config, &str) -> Result<(), String>,
    /// The field as `--print-config` shows it.
    pub show: fn(&Config) -> Shown,
    /// Says where the use just taken in was written, for later errors.
    pub set_origin: fn(&mut Config, &str),
    /// How a config file gives it.
    pub shape: Shape,
}

impl Opt {
    /// The key in a config file: the flag without `--`, `_` for `-`,
    /// unless declared otherwise.
    pub fn key(&self) -> String {
        match self.file_key {
            Some(key) => key.to_owned(),
            None => self.flag.trim_start_matches("--").replace('-', "_"),
        }
    }

    /// Only for the command line: not a key in a config file.
    pub fn command_line_only(&self) -> bool {
        self.field.is_none()
    }
}

/// A setting only the environment gives: never a flag, never a file key.
#[derive(Debug)]
pub struct EnvOnly {
    pub var: &'static str,
    pub field: Field,
}

impl EnvOnly {
    /// Takes the variable in, if it is set; errors name it.
    pub fn read(&self, config: &mut Config) -> Result<(), String> {
        match std::env::var(self.var) {
            Ok(text) => (self.field.set)(config, &text).map_err(|e| format!("{}: {e}", self.var)),
            Err(std::env::VarError::NotPresent) => Ok(()),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("{}: not valid UTF-8", self.var)),
        }
    }
}

/// The option named `name` (`--flag` or `-f`).
pub fn find(name: &str) -> Option<&'static Opt> {
    ALL.iter().find(|o| o.flag == name || o.short == Some(name))
}

/// The option a config file's `key` gives. A list's key is plural
/// (`topics`); its singular (`topic = "x"`) gives one item, as the flag.
pub fn find_key(key: &str) -> Option<(&'static Opt, Shape)> {
    let declared = ALL.iter().find(|o| o.key() == key);
    let by_flag = || find(&format!("--{}", key.replace('_', "-")));
    match declared.or_else(by_flag) {
        Some(opt) => {
            let shape = opt.field.map_or(Shape::Value, |f| f.shape);
            let singular = opt.key() != key && shape == Shape::List;
            Some((opt, if singular { Shape::Value } else { shape }))
        }
        None => None,
    }
}

/// The variable that holds the HS256 key for signed tokens.
pub const JWT_SECRET_ENV: &str = "STATECAST_JWT_SECRET";

/// `Some(x)` for one token tree `x`, `None` for none.
macro_rules! maybe {
    () => {
        None
    };
    ($x:expr) => {
        Some($x)
    };
}

/// The [`Field`] of `Config::$field`, read and shown by `kinds::$kind`.
macro_rules! field {
    ($field:ident, $kind:ident) => {
        Field {
            set: |c, text| <kinds::$kind as Kind>::set(&mut c.$field, text),
            show: |c| <kinds::$kind as Kind>::show(&c.$field),
            set_origin: |c, origin| <kinds::$kind as Kind>::set_origin(&mut c.$field, origin),
            shape: <kinds::$kind as Kind>::SHAPE,
        }
    };
}

/// Declares every option and writes `Config`, its `Default`, [`ALL`] and
/// [`ENVIRONMENT`] from the list. An option is
///
/// ```text
/// /// The field's doc.
/// field: Type = default, Kind,
/// "--flag" [short "-f"] ["VALUE"] [env "VAR"] [key "file_key"],
///     "help line";
/// ```
///
/// in the section of `--help` that lists it; one the command line alone
/// takes has no field line. A row without a `"VALUE"` is a switch, and its
/// kind must be one (a test holds them to it). `environment` lists the
/// fields only a variable gives.
macro_rules! options {
    (
        environment {
            $( $(#[$edoc:meta])* $efield:ident: $ety:ty = $edefault:expr, $ekind:ident, $var:expr; )*
        }
        $( $section:ident {
            $(
                $( $(#[$doc:meta])* $field:ident: $ty:ty = $default:expr, $kind:ident, )?
                $flag:literal $(short $short:literal)? $($value:literal)? $(env $env:literal)?
                    $(key $key:literal)?,
                $help:literal;
            )*
        } )*
    ) => {
        /// Everything the server can be told. `Config::default()` is what
        /// `statecast` with no flags runs.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $( $( $(#[$doc])* pub $field: $ty, )? )* )*
            $( $(#[$edoc])* pub $efield: $ety, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $( $( $( $field: $default, )? )* )*
                    $( $efield: $edefault, )*
                }
            }
        }

        /// Every option statecast takes, in the order `--help` lists them.
        pub const ALL: &[Opt] = &[
            $( $( Opt {
                flag: $flag,
                short: maybe!($($short)?),
                value: maybe!($($value)?),
                env: maybe!($($env)?),
                section: Section::$section,
                help: $help,
                file_key: maybe!($($key)?),
                field: maybe!($(field!($field, $kind))?),
            }, )* )*
        ];

        /// The settings only the environment gives.
        pub const ENVIRONMENT: &[EnvOnly] = &[
            $( EnvOnly { var: $var, field: field!($efield, $ekind) }, )*
        ];
    };
}

options! {
    environment {
        /// The HS256 key for signed tokens (JWT), from `STATECAST_JWT_SECRET`
        /// only: never a flag or a config file key.
        jwt_secret: Option<Secret> = None, Token, JWT_SECRET_ENV;
    }

    Options {
        "--config" "FILE",
            "read options from a TOML file (keys are the option names with _ for -); options given here override it";

        "--print-config",
            "print the effective configuration as TOML and exit";

        /// Run the demo provider: moving data on every ADW topic.
        demo: bool = false, Switch,
        "--demo",
            "publish believable, moving demo data to every ADW topic (workflows advancing, a service flapping, ...)";

        /// Watch this directory of `<adw_id>/adw_state.json` files.
        agents_dir: Option<PathBuf> = None, Path,
        "--agents-dir" "DIR",
            "publish adw-state/<id>, workflows and adw-monitor from DIR/<adw_id>/adw_state.json files";

        /// How often the agents directory is scanned.
        scan_interval: Duration = Duration::from_millis(500), Time,
        "--scan-interval" "DURATION",
            "how often --agents-dir is scanned";

        /// `--redis`: join the other nodes on this Redis (`redis://HOST:PORT[/DB]`).
        redis: Option<Secret> = None, Redis,
        "--redis" "URL",
            "join the other nodes that use this Redis (redis://[:PASSWORD@]HOST:PORT[/DB], or rediss:// for TLS in a build with --features tls, trusting the system's roots or SSL_CERT_FILE): every publish goes through it to every node, in one order per topic, with one seq; snapshots are kept there for nodes that start late. While it is unreachable, publishes are served locally and /healthz says degraded";

        /// `OWNER/NAME`, for the `github_url` of each workflow.
        github_repo: Option<String> = None, Repo,
        "--github-repo" "OWNER/NAME",
            "repository for each workflow's github_url";

        /// The agent program whose process marks a workflow as running.
        agent_program: String = "aider".into(), Program,
        "--agent-program" "NAME",
            "a workflow is running while a process whose command line runs NAME and names its adw_id exists";

        /// URLs polled into topics.
        polls: Vec<PollSpec> = Vec::new(), Polls,
        "--poll" "TOPIC=URL[#POINTER][@INTERVAL]",
            "GET an http:// URL (https:// in a build with the `tls` or `https` feature) every INTERVAL (2s if not given) and publish its JSON to TOPIC when it changes, or the part the JSON pointer names (#/routes); a redirect is not followed (the poll fails, /healthz names its status and Location); repeatable";

        /// Time allowed for one poll request, connect to last byte.
        poll_timeout: Duration = Duration::from_secs(5), Time,
        "--poll-timeout" "DURATION",
            "time allowed for one poll request";

        /// Commands run into topics.
        execs: Vec<ExecSpec> = Vec::new(), Execs,
        "--exec" "TOPIC=COMMAND@INTERVAL",
            "run COMMAND (with sh -c) every INTERVAL, which is required, and publish its stdout to TOPIC when it is JSON and changed";

        /// Time a command may run before it is killed.
        exec_timeout: Duration = Duration::from_secs(10), Time,
        "--exec-timeout" "DURATION",
            "time a command may run before it and everything it started are killed";

        /// Address to listen on for HTTP and WebSocket.
        listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8002)), Addr,
        "--listen" "ADDR",
            "address to listen on";

        /// The certificate chain (PEM) served over TLS; with `tls_key`.
        tls_cert: Option<PathBuf> = None, Path,
        "--tls-cert" "FILE",
            "serve https:// and wss:// on --listen with the certificate chain in this PEM file (leaf first), TLS 1.2 and 1.3; needs --tls-key and a build with --features tls (the Debian package has it). The pair is loaded again on SIGHUP and when either file changes (a certbot renewal); a pair that fails to load (bad PEM, a key that does not match, expired) leaves the old one serving, with a warning. A plain-HTTP request gets 400";

        /// The private key (PEM) of `tls_cert`.
        tls_key: Option<PathBuf> = None, Path,
        "--tls-key" "FILE",
            "the private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert; never logged or printed";

        /// The fixed topic set the server starts with.
        preset: Preset = Preset::Adw, PresetName,
        "--preset" "NAME",
            "starting topics: adw (the ADW dashboard's ten endpoints with empty defaults) or none";

        /// Topics added to the preset by name.
        topics: Vec<String> = Vec::new(), Topics,
        "--topic" "NAME" key "topics",
            "add a topic ([a-z0-9-]); repeatable";

        /// Accept any `[a-z0-9-]` topic name on first use.
        any_topic: bool = false, Switch,
        "--any-topic",
            "accept any [a-z0-9-] topic name on first use";

        /// Most topics that may exist at once, preset ones included.
        max_topics: usize = 10_000, Count,
        "--max-topics" "N",
            "most topics holding a publish (the preset's included) at once; topics subscribers open that nobody has published have a cap of their own, as large (503 past either)";

        /// JSON Schemas attached to topics with `--schema TOPIC=FILE`.
        schemas: Vec<(String, PathBuf)> = Vec::new(), Schemas,
        "--schema" "TOPIC=FILE",
            "check every value published to TOPIC against the JSON Schema in FILE (422 if it fails); replaces the contract's schema for an ADW topic; repeatable";

        /// Check published data against the schemas (off with `--no-validate`).
        validate: bool = true, Off,
        "--no-validate",
            "publish without checking values against schemas (the ADW topics are checked against the contract by default)";

        /// Offer permessage-deflate to clients that ask (off with
        /// `--no-compression`).
        compression: bool = true, Off,
        "--no-compression",
            "refuse permessage-deflate. Without this, a client that offers it (browsers do) gets each message of 256 bytes or more compressed, once per message for every such client";

        /// Largest body `POST /api/v1/publish/<topic>` accepts.
        max_publish_bytes: usize = 1 << 20, Size,
        "--max-publish-bytes" "SIZE",
            "largest publish body (see also --max-queue-bytes); under --redis, also the largest value taken from or written to Redis";

        /// Largest message a WebSocket client may send.
        max_client_message: usize = 4 << 10, Size,
        "--max-client-message" "SIZE",
            "largest message a client may send";

        /// Most frames a WebSocket client's message may come in.
        max_client_fragments: usize = 128, Count,
        "--max-client-fragments" "N",
            "most frames one message from a client may come in; past it, close 1009";

        /// Most bytes queued for one connection before it is closed as slow.
        max_queue_bytes: usize = 1 << 20, Size,
        "--max-queue-bytes" "SIZE",
            "output queued for one client before it is closed with 1013 \"slow consumer\"; at least 18KiB. A value longer than this less 9KiB (a response head and the envelope) is refused with 413, so every stored snapshot can be delivered";

        /// Most connections held at once; more are accepted and closed at once.
        max_connections: usize = 100_000, Count,
        "--max-connections" "N",
            "most connections at once; past it a client gets 503 with Retry-After, and /healthz still answers";

        /// Most topics one multiplexed connection may carry. The default
        /// is what keeps a full SSE resume (the topics in the URL and the
        /// seq vector in `Last-Event-ID`, every name and seq at its
        /// longest) inside the request-head limit.
        max_topics_per_connection: usize = 32, Count,
        "--max-topics-per-connection" "N",
            "most topics one /api/v1/ws or /api/v1/sse connection may carry; past it 400 at connect, and a statecast.error answers a subscribe command";

        /// Most connections from one IP address; 0 for no limit.
        max_connections_per_ip: usize = 0, Limit,
        "--max-connections-per-ip" "N",
            "most connections from one IP address; past it 429 with Retry-After; 0 for no limit";

        /// New connections let in per second (a token bucket holding one
        /// second's worth); 0 for no limit.
        max_accept_rate: usize = 0, Limit,
        "--max-accept-rate" "N",
            "most new connections let in per second, a burst of N at most (a token bucket); past it 503 with Retry-After before the request is read, so a stampede of reconnects costs a refusal, not a snapshot; 0 for no limit";

        /// How often the server pings each WebSocket; two intervals of silence close it.
        ping_interval: Duration = Duration::from_secs(20), Time,
        "--ping-interval" "DURATION",
            "ping every client this often; close one silent for two intervals";

        /// Time allowed from accept to a complete request (HTTP) or upgrade.
        handshake_timeout: Duration = Duration::from_secs(10), Time,
        "--handshake-timeout" "DURATION",
            "time to send a complete request";

        /// Time a connection with pending output may accept no bytes.
        write_timeout: Duration = Duration::from_secs(30), Time,
        "--write-timeout" "DURATION",
            "time a client may accept no bytes while output is pending before it is closed as slow";

        /// The window over which SIGINT/SIGTERM closes subscribers, spread
        /// out so they do not all reconnect at once; 0 closes them at once.
        drain: Duration = Duration::from_secs(5), Window,
        "--drain" "DURATION",
            "on SIGINT/SIGTERM, stop accepting and close subscribers spread evenly over this window (WebSocket 1012 \"service restart\"; SSE a retry: jittered within it), so they come back spread out too; a second signal closes the rest at once; 0 closes everyone at once; at most 1h";

        /// Time given to clients to take their close frame on shutdown.
        shutdown_timeout: Duration = Duration::from_secs(5), Time,
        "--shutdown-timeout" "DURATION",
            "time clients get to take their 1012 close once they are all closing (after --drain)";

        /// Log verbosity.
        log_level: LevelFilter = LevelFilter::Info, Level,
        "--log-level" "LEVEL",
            "off, error, warn, info, debug or trace";

        /// How often a summary line, and the refusals since the last one, are
        /// logged at info.
        stats_interval: Duration = Duration::from_secs(60), Time,
        "--stats-interval" "DURATION",
            "log a summary line (connections, topics, publishes, deliveries) and the refusals and protocol closes since the last one, a line per reason";
    }
    Access {
        /// Origins browsers may connect from (`*` for any).
        allow_origins: Vec<String> = Vec::new(), Origins,
        "--allow-origin" "ORIGIN" key "allow_origins",
            "an origin browsers may also connect from, exactly as they send it (https://dash.example.com), or *; repeatable. A request from any other Origin gets 403 on every route. On a loopback address the loopback origins (http(s)://localhost, 127.0.0.0/8, [::1], on any port) are allowed already; on any other address the server refuses to start without this. An origin off loopback (or *) means requests may come through a proxy: it needs a publish token, a signed-token key or --insecure-publish";

        /// Any origin may connect, on any address.
        allow_any_origin: bool = false, Switch,
        "--allow-any-origin",
            "any origin may connect, on any address";

        /// Subscribers must send `Origin`.
        require_origin: bool = false, Switch,
        "--require-origin",
            "refuse (403) subscribers that send no Origin";

        /// Names `Host` may carry besides the loopback ones (`*` for any).
        allow_hosts: Vec<String> = Vec::new(), Hosts,
        "--allow-host" "NAME" key "allow_hosts",
            "a name the Host header may carry (dash.example.com), or *; repeatable. Besides these, only localhost, *.localhost, loopback IPs and, off loopback, IP literals are served; any other Host gets 421, which stops DNS rebinding. Behind a proxy on the same host, give its public name. A name other than a loopback one needs a publish token, a signed-token key or --insecure-publish";

        /// Publish and broadcast need this as `Authorization: Bearer`.
        publish_token: Option<Secret> = None, Token,
        "--publish-token" "TOKEN" env "STATECAST_PUBLISH_TOKEN",
            "publish and broadcast need `Authorization: Bearer TOKEN` (else 401). Off loopback, or with a public --allow-host name or --allow-origin origin, this or a signed-token key is required, or --insecure-publish; without either, a publish through a proxy (Forwarded, X-Forwarded-For, X-Real-IP) gets 403";

        /// Without a publish token, anyone may publish on a public address.
        insecure_publish: bool = false, Switch,
        "--insecure-publish",
            "lets anyone publish without a token: off loopback, under a public --allow-host name, and through a proxy";

        /// Subscribers need this, as `?token=` or `Authorization: Bearer`.
        subscribe_token: Option<Secret> = None, Token,
        "--subscribe-token" "TOKEN" env "STATECAST_SUBSCRIBE_TOKEN",
            "subscribers need ?token=TOKEN or `Authorization: Bearer TOKEN` (else 401). With it, /api/v1/state, /metrics and the details of /healthz need a token too. Tokens: 16 characters or more; never logged or printed";

        /// A PEM file with the Ed25519 or EC P-256 public key signed tokens
        /// are checked with; its type fixes the algorithm (EdDSA or ES256).
        jwt_public_key: Option<PathBuf> = None, Path,
        "--jwt-public-key" "FILE",
            "accept signed tokens (JWT) checked with the Ed25519 (EdDSA) or EC P-256 (ES256) public key in this PEM file, wherever the tokens above go; the key's type is the only algorithm taken. For HS256, put a secret of 16 characters or more in STATECAST_JWT_SECRET instead (one key, not both). A token needs exp; its topics claim (names, or prefixes ending in *) lets it read those topics, its publish claim lets it publish to them (broadcast needs *). With a key, reads and publishes need a token (a JWT, or a static token when one is set). A connection is closed when its token expires (WebSocket 4001 \"token expired\"). Needs a build with --features jwt (the Debian package has it)";

        /// A token's `aud` must be this, when set.
        jwt_audience: Option<String> = None, Text,
        "--jwt-audience" "AUD",
            "a signed token's aud must be AUD";

        /// A token's `iss` must be this, when set.
        jwt_issuer: Option<String> = None, Text,
        "--jwt-issuer" "ISS",
            "a signed token's iss must be ISS";

        /// `/metrics` answers without the subscribe token.
        public_metrics: bool = false, Switch,
        "--public-metrics",
            "/metrics answers without the subscribe token";

        "--help" short "-h",
            "print this help";

        "--version" short "-V",
            "print the version";
    }
}
