//! Every option, declared once: its flag, its value's syntax, the
//! environment variable that may give it, where `--help` lists it, and its
//! help line. `--help` is written from this table (by [`super::help`]), the command line is
//! read by it, the config file's keys and switches come from it, and its
//! default is the one `--print-config` shows; tests check the parser
//! ([`super::set`]) and `--print-config` take every option here.

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
}

impl Opt {
    /// The key in a config file: the flag without `--`, `_` for `-`.
    pub fn key(&self) -> String {
        self.flag.trim_start_matches("--").replace('-', "_")
    }

    /// Only for the command line: not a key in a config file.
    pub fn command_line_only(&self) -> bool {
        matches!(
            self.flag,
            "--config" | "--print-config" | "--help" | "--version"
        )
    }
}

/// The option named `name` (`--flag` or `-f`).
pub fn find(name: &str) -> Option<&'static Opt> {
    ALL.iter().find(|o| o.flag == name || o.short == Some(name))
}

/// Every option statecast takes, in the order `--help` lists them.
pub const ALL: &[Opt] = &[
    Opt {
        flag: "--config",
        short: None,
        value: Some("FILE"),
        env: None,
        section: Section::Options,
        help: "read options from a TOML file (keys are the option names with _ for -); options given here override it",
    },
    Opt {
        flag: "--print-config",
        short: None,
        value: None,
        env: None,
        section: Section::Options,
        help: "print the effective configuration as TOML and exit",
    },
    Opt {
        flag: "--demo",
        short: None,
        value: None,
        env: None,
        section: Section::Options,
        help: "publish believable, moving demo data to every ADW topic (workflows advancing, a service flapping, ...)",
    },
    Opt {
        flag: "--agents-dir",
        short: None,
        value: Some("DIR"),
        env: None,
        section: Section::Options,
        help: "publish adw-state/<id>, workflows and adw-monitor from DIR/<adw_id>/adw_state.json files",
    },
    Opt {
        flag: "--scan-interval",
        short: None,
        value: Some("DURATION"),
        env: None,
        section: Section::Options,
        help: "how often --agents-dir is scanned",
    },
    Opt {
        flag: "--redis",
        short: None,
        value: Some("URL"),
        env: None,
        section: Section::Options,
        help: "join the other nodes that use this Redis (redis://[:PASSWORD@]HOST:PORT[/DB], or rediss:// for TLS in a build with --features tls, trusting the system's roots or SSL_CERT_FILE): every publish goes through it to every node, in one order per topic, with one seq; snapshots are kept there for nodes that start late. While it is unreachable, publishes are served locally and /healthz says degraded",
    },
    Opt {
        flag: "--github-repo",
        short: None,
        value: Some("OWNER/NAME"),
        env: None,
        section: Section::Options,
        help: "repository for each workflow's github_url",
    },
    Opt {
        flag: "--agent-program",
        short: None,
        value: Some("NAME"),
        env: None,
        section: Section::Options,
        help: "a workflow is running while a process whose command line runs NAME and names its adw_id exists",
    },
    Opt {
        flag: "--poll",
        short: None,
        value: Some("TOPIC=URL[#POINTER][@INTERVAL]"),
        env: None,
        section: Section::Options,
        help: "GET an http:// URL (https:// in a build with the `tls` or `https` feature) every INTERVAL (2s if not given) and publish its JSON to TOPIC when it changes, or the part the JSON pointer names (#/routes); a redirect is not followed (the poll fails, /healthz names its status and Location); repeatable",
    },
    Opt {
        flag: "--poll-timeout",
        short: None,
        value: Some("DURATION"),
        env: None,
        section: Section::Options,
        help: "time allowed for one poll request",
    },
    Opt {
        flag: "--exec",
        short: None,
        value: Some("TOPIC=COMMAND@INTERVAL"),
        env: None,
        section: Section::Options,
        help: "run COMMAND (with sh -c) every INTERVAL, which is required, and publish its stdout to TOPIC when it is JSON and changed",
    },
    Opt {
        flag: "--exec-timeout",
        short: None,
        value: Some("DURATION"),
        env: None,
        section: Section::Options,
        help: "time a command may run before it and everything it started are killed",
    },
    Opt {
        flag: "--listen",
        short: None,
        value: Some("ADDR"),
        env: None,
        section: Section::Options,
        help: "address to listen on",
    },
    Opt {
        flag: "--preset",
        short: None,
        value: Some("NAME"),
        env: None,
        section: Section::Options,
        help: "starting topics: adw (the ADW dashboard's ten endpoints with empty defaults) or none",
    },
    Opt {
        flag: "--topic",
        short: None,
        value: Some("NAME"),
        env: None,
        section: Section::Options,
        help: "add a topic ([a-z0-9-]); repeatable",
    },
    Opt {
        flag: "--any-topic",
        short: None,
        value: None,
        env: None,
        section: Section::Options,
        help: "accept any [a-z0-9-] topic name on first use",
    },
    Opt {
        flag: "--max-topics",
        short: None,
        value: Some("N"),
        env: None,
        section: Section::Options,
        help: "most topics holding a publish (the preset's included) at once; topics subscribers open that nobody has published have a cap of their own, as large (503 past either)",
    },
    Opt {
        flag: "--schema",
        short: None,
        value: Some("TOPIC=FILE"),
        env: None,
        section: Section::Options,
        help: "check every value published to TOPIC against the JSON Schema in FILE (422 if it fails); replaces the contract's schema for an ADW topic; repeatable",
    },
    Opt {
        flag: "--no-validate",
        short: None,
        value: None,
        env: None,
        section: Section::Options,
        help: "publish without checking values against schemas (the ADW topics are checked against the contract by default)",
    },
    Opt {
        flag: "--no-compression",
        short: None,
        value: None,
        env: None,
        section: Section::Options,
        help: "refuse permessage-deflate. Without this, a client that offers it (browsers do) gets each message of 256 bytes or more compressed, once per message for every such client",
    },
    Opt {
        flag: "--max-publish-bytes",
        short: None,
        value: Some("SIZE"),
        env: None,
        section: Section::Options,
        help: "largest publish body (see also --max-queue-bytes); under --redis, also the largest value taken from or written to Redis",
    },
    Opt {
        flag: "--max-client-message",
        short: None,
        value: Some("SIZE"),
        env: None,
        section: Section::Options,
        help: "largest message a client may send",
    },
    Opt {
        flag: "--max-client-fragments",
        short: None,
        value: Some("N"),
        env: None,
        section: Section::Options,
        help: "most frames one message from a client may come in; past it, close 1009",
    },
    Opt {
        flag: "--max-queue-bytes",
        short: None,
        value: Some("SIZE"),
        env: None,
        section: Section::Options,
        help: "output queued for one client before it is closed with 1008 \"slow consumer\"; at least 18KiB. A value longer than this less 9KiB (a response head and the envelope) is refused with 413, so every stored snapshot can be delivered",
    },
    Opt {
        flag: "--max-connections",
        short: None,
        value: Some("N"),
        env: None,
        section: Section::Options,
        help: "most connections at once; past it a client gets 503 with Retry-After, and /healthz still answers",
    },
    Opt {
        flag: "--max-connections-per-ip",
        short: None,
        value: Some("N"),
        env: None,
        section: Section::Options,
        help: "most connections from one IP address; past it 429 with Retry-After; 0 for no limit",
    },
    Opt {
        flag: "--ping-interval",
        short: None,
        value: Some("DURATION"),
        env: None,
        section: Section::Options,
        help: "ping every client this often; close one silent for two intervals",
    },
    Opt {
        flag: "--handshake-timeout",
        short: None,
        value: Some("DURATION"),
        env: None,
        section: Section::Options,
        help: "time to send a complete request",
    },
    Opt {
        flag: "--write-timeout",
        short: None,
        value: Some("DURATION"),
        env: None,
        section: Section::Options,
        help: "time a client may accept no bytes while output is pending before it is closed as slow",
    },
    Opt {
        flag: "--shutdown-timeout",
        short: None,
        value: Some("DURATION"),
        env: None,
        section: Section::Options,
        help: "time clients get to take their 1001 close on SIGINT/SIGTERM",
    },
    Opt {
        flag: "--log-level",
        short: None,
        value: Some("LEVEL"),
        env: None,
        section: Section::Options,
        help: "off, error, warn, info, debug or trace",
    },
    Opt {
        flag: "--stats-interval",
        short: None,
        value: Some("DURATION"),
        env: None,
        section: Section::Options,
        help: "log a summary line (connections, topics, publishes, deliveries) and the refusals and protocol closes since the last one, a line per reason",
    },
    Opt {
        flag: "--allow-origin",
        short: None,
        value: Some("ORIGIN"),
        env: None,
        section: Section::Access,
        help: "an origin browsers may also connect from, exactly as they send it (https://dash.example.com), or *; repeatable. A request from any other Origin gets 403 on every route. On a loopback address the loopback origins (http(s)://localhost, 127.0.0.0/8, [::1], on any port) are allowed already; on any other address the server refuses to start without this. An origin off loopback (or *) means requests may come through a proxy: it needs a publish token, a signed-token key or --insecure-publish",
    },
    Opt {
        flag: "--allow-any-origin",
        short: None,
        value: None,
        env: None,
        section: Section::Access,
        help: "any origin may connect, on any address",
    },
    Opt {
        flag: "--require-origin",
        short: None,
        value: None,
        env: None,
        section: Section::Access,
        help: "refuse (403) subscribers that send no Origin",
    },
    Opt {
        flag: "--allow-host",
        short: None,
        value: Some("NAME"),
        env: None,
        section: Section::Access,
        help: "a name the Host header may carry (dash.example.com), or *; repeatable. Besides these, only localhost, *.localhost, loopback IPs and, off loopback, IP literals are served; any other Host gets 421, which stops DNS rebinding. Behind a proxy on the same host, give its public name. A name other than a loopback one needs a publish token, a signed-token key or --insecure-publish",
    },
    Opt {
        flag: "--publish-token",
        short: None,
        value: Some("TOKEN"),
        env: Some("STATECAST_PUBLISH_TOKEN"),
        section: Section::Access,
        help: "publish and broadcast need `Authorization: Bearer TOKEN` (else 401). Off loopback, or with a public --allow-host name or --allow-origin origin, this or a signed-token key is required, or --insecure-publish; without either, a publish through a proxy (Forwarded, X-Forwarded-For, X-Real-IP) gets 403",
    },
    Opt {
        flag: "--insecure-publish",
        short: None,
        value: None,
        env: None,
        section: Section::Access,
        help: "lets anyone publish without a token: off loopback, under a public --allow-host name, and through a proxy",
    },
    Opt {
        flag: "--subscribe-token",
        short: None,
        value: Some("TOKEN"),
        env: Some("STATECAST_SUBSCRIBE_TOKEN"),
        section: Section::Access,
        help: "subscribers need ?token=TOKEN or `Authorization: Bearer TOKEN` (else 401). With it, /api/v1/state, /metrics and the details of /healthz need a token too. Tokens: 16 characters or more; never logged or printed",
    },
    Opt {
        flag: "--jwt-public-key",
        short: None,
        value: Some("FILE"),
        env: None,
        section: Section::Access,
        help: "accept signed tokens (JWT) checked with the Ed25519 (EdDSA) or EC P-256 (ES256) public key in this PEM file, wherever the tokens above go; the key's type is the only algorithm taken. For HS256, put a secret of 16 characters or more in STATECAST_JWT_SECRET instead (one key, not both). A token needs exp; its topics claim (names, or prefixes ending in *) lets it read those topics, its publish claim lets it publish to them (broadcast needs *). With a key, reads and publishes need a token (a JWT, or a static token when one is set). A connection is closed when its token expires (WebSocket 4001 \"token expired\"). Needs a build with --features jwt (the Debian package has it)",
    },
    Opt {
        flag: "--jwt-audience",
        short: None,
        value: Some("AUD"),
        env: None,
        section: Section::Access,
        help: "a signed token's aud must be AUD",
    },
    Opt {
        flag: "--jwt-issuer",
        short: None,
        value: Some("ISS"),
        env: None,
        section: Section::Access,
        help: "a signed token's iss must be ISS",
    },
    Opt {
        flag: "--public-metrics",
        short: None,
        value: None,
        env: None,
        section: Section::Access,
        help: "/metrics answers without the subscribe token",
    },
    Opt {
        flag: "--help",
        short: Some("-h"),
        value: None,
        env: None,
        section: Section::Access,
        help: "print this help",
    },
    Opt {
        flag: "--version",
        short: Some("-V"),
        value: None,
        env: None,
        section: Section::Access,
        help: "print the version",
    },
];
