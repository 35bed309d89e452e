//! The command line: `--help`, the flags that take a value and those that
//! do not, and reading them (and `--config FILE` first, and the tokens'
//! environment variables) into a [`Config`] through [`set`].

use super::file;
use super::{ArgError, Config, set};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    /// Print the effective configuration as TOML and exit.
    PrintConfig(Box<Config>),
    Help,
    Version,
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
pub(crate) const OPTIONS: &[&str] = &[
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
pub(crate) const FLAGS: &[&str] = &[
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
        file::load(std::path::Path::new(path), &mut config)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file;

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
}
