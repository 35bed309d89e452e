//! The load generator's command line, parsed with `lexopt` as the server's is.

use std::net::SocketAddr;

pub(crate) const HELP: &str = "\
statecast-load: measure statecast's fan-out against the kernel floor

USAGE:
    statecast-load [OPTIONS]

OPTIONS:
    --server ADDR         use a running server (default: spawn one)
    --server-pid PID      its pid, for CPU and memory figures
    --publish-to ADDR     publish to this server instead: another node joined
                          to the first through Redis, to measure cross-node
                          delivery [default: the server the clients use]
    --spawn PATH          server binary to spawn [default: statecast next to this binary]
    --server-cpu N        pin the spawned server and floor to this CPU [default: 0]
    --connections N       WebSockets to open [default: 1000]
    --messages M          publishes to send [default: 100]
    --rate R              publishes per second; 0 = as fast as possible [default: 10]
    --payload BYTES       size of each message's data [default: 256]
    --data KIND           filler (a padded string of --payload bytes) or history (a
                          16 KiB workflow-history of 50 items, which compresses like
                          the real thing; --payload is then ignored) [default: filler]
    --deflate             clients offer permessage-deflate, as browsers do, and
                          inflate what comes compressed; bytes on the wire per
                          delivery and the server's compression time are reported
    --dashboards N        instead: N dashboards, each with the real client's eight
                          sockets, fed the demo's topics at the demo's sizes and
                          rates for --seconds; CPU per delivery, latency per topic
                          and RSS are reported
    --seconds S           how long --dashboards publishes [default: 30]
    --kind KIND           snapshot (conflated) or event (never dropped) [default: snapshot]
    --publish HOW         http (POST over keep-alive, to a server process) or inproc
                          (a Publisher, to a server thread in this process, pinned
                          to --server-cpu; at most about 9,900 connections) [default: http]
    --stalled PERCENT     share of clients that stop reading after the snapshot [default: 0]
    --warmup N            publishes sent, one at a time, and delivered to every healthy
                          client before measuring; the floor gets as many rounds first.
                          New loopback connections cost more per write for their
                          first rounds [default: 20]
    --no-floor            skip the kernel floor measurement
    --memory N,N,...      instead of publishing: server RSS at each connection count
    --tls                 speak wss:// and https:// to --server (a build with
                          --features tls), taking any certificate; publishes paced
    --json                print one JSON object instead of the report
    -h, --help            print this help
";

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// A running server to measure; `None` spawns one.
    pub server: Option<SocketAddr>,
    pub server_pid: Option<u32>,
    /// Where publishes go, when not to `server`.
    pub publish_to: Option<SocketAddr>,
    /// The server binary to spawn.
    pub spawn: Option<String>,
    /// The CPU the server and the floor are pinned to.
    pub server_cpu: usize,
    pub connections: usize,
    pub messages: usize,
    /// Publishes per second; 0 is as fast as possible.
    pub rate: f64,
    pub payload: usize,
    /// Publish events (never dropped) instead of snapshots.
    pub event: bool,
    /// Percent of clients that stop reading after their snapshot.
    pub stalled: f64,
    pub warmup: usize,
    pub floor: bool,
    /// Connection counts for `--memory`; empty for a publishing run.
    pub memory: Vec<usize>,
    pub json: bool,
    /// Publish through a `Publisher` to a server thread in this process.
    pub inproc: bool,
    /// Publish the workflow-history fixture rather than filler.
    pub history: bool,
    /// Clients offer permessage-deflate.
    pub deflate: bool,
    /// Dashboards for the realistic run; 0 for the single-topic run.
    pub dashboards: usize,
    pub seconds: f64,
    /// Every connection speaks TLS (`--tls`).
    pub tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            server: None,
            server_pid: None,
            publish_to: None,
            spawn: None,
            server_cpu: 0,
            connections: 1000,
            messages: 100,
            rate: 10.0,
            payload: 256,
            event: false,
            stalled: 0.0,
            warmup: 20,
            floor: true,
            memory: Vec::new(),
            json: false,
            inproc: false,
            history: false,
            deflate: false,
            dashboards: 0,
            seconds: 30.0,
            tls: false,
        }
    }
}

/// What the command line asks for.
pub(crate) enum Command {
    Run(Options),
    Help,
    /// Be the floor process (`--floor-child`); users never call it.
    FloorChild,
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{name}: {value:?} is not a number"))
}

/// Publishes per second: 0 (as fast as possible), or a rate whose
/// interval a `Duration` holds (`from_secs_f64` panics on a negative,
/// infinite or too long interval).
fn rate(name: &str, value: &str) -> Result<f64, String> {
    let rate: f64 = number(name, value)?;
    if rate == 0.0 || (rate.is_finite() && rate >= MIN_RATE) {
        Ok(rate)
    } else {
        Err(format!(
            "{name}: {value:?}: 0, or at least {MIN_RATE} publishes a second"
        ))
    }
}

/// The slowest pace `--rate` takes: one publish in about 17 minutes.
const MIN_RATE: f64 = 0.001;

fn choice(name: &str, value: &str, yes: &str, no: &str) -> Result<bool, String> {
    match value {
        v if v == yes => Ok(true),
        v if v == no => Ok(false),
        other => Err(format!("{name}: {other:?} (expected {no} or {yes})")),
    }
}

/// Parses the arguments (without the program name).
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut o = Options::default();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let name = match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("floor-child") => return Ok(Command::FloorChild),
            Long("no-floor") => {
                o.floor = false;
                continue;
            }
            Long("json") => {
                o.json = true;
                continue;
            }
            Long("deflate") => {
                o.deflate = true;
                continue;
            }
            Long("tls") => {
                o.tls = true;
                continue;
            }
            Long(name) => format!("--{name}"),
            Short(c) => return Err(format!("unknown option -{c}; see --help")),
            Value(v) => return Err(format!("unexpected argument {v:?}; see --help")),
        };
        set(&mut o, &name, &mut parser)?;
    }
    Ok(Command::Run(o))
}

/// Sets one option that takes a value.
fn set(o: &mut Options, name: &str, parser: &mut lexopt::Parser) -> Result<(), String> {
    let known = [
        "--server",
        "--server-pid",
        "--publish-to",
        "--spawn",
        "--server-cpu",
        "--connections",
        "--messages",
        "--rate",
        "--payload",
        "--kind",
        "--stalled",
        "--warmup",
        "--memory",
        "--publish",
        "--data",
        "--dashboards",
        "--seconds",
    ];
    if !known.contains(&name) {
        return Err(format!("unknown option {name}; see --help"));
    }
    let value = parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| format!("{name}: value is not valid UTF-8"))?;
    let v = value.as_str();
    match name {
        "--server" => o.server = Some(number(name, v)?),
        "--server-pid" => o.server_pid = Some(number(name, v)?),
        "--publish-to" => o.publish_to = Some(number(name, v)?),
        "--spawn" => o.spawn = Some(value.clone()),
        "--server-cpu" => o.server_cpu = number(name, v)?,
        "--connections" => o.connections = number(name, v)?,
        "--messages" => o.messages = number(name, v)?,
        "--rate" => o.rate = rate(name, v)?,
        "--payload" => o.payload = number(name, v)?,
        "--kind" => o.event = choice(name, v, "event", "snapshot")?,
        "--stalled" => o.stalled = number(name, v)?,
        "--warmup" => o.warmup = number(name, v)?,
        "--memory" => {
            o.memory = v
                .split(',')
                .map(|n| number(name, n))
                .collect::<Result<_, _>>()?
        }
        "--data" => o.history = choice(name, v, "history", "filler")?,
        "--dashboards" => o.dashboards = number(name, v)?,
        "--seconds" => o.seconds = number(name, v)?,
        _ => o.inproc = choice(name, v, "inproc", "http")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|a| a.to_string()))? {
            Command::Run(o) => Ok(o),
            _ => panic!("expected a run"),
        }
    }

    #[test]
    fn options_parse_and_errors_name_the_option() {
        let o = run(&[
            "--connections",
            "10",
            "--rate=0",
            "--kind",
            "event",
            "--no-floor",
        ])
        .unwrap();
        assert_eq!(
            (o.connections, o.rate, o.event, o.floor),
            (10, 0.0, true, false)
        );
        let o = run(&["--memory", "1,2,3", "--publish", "inproc"]).unwrap();
        assert_eq!((o.memory, o.inproc, o.tls), (vec![1, 2, 3], true, false));
        assert!(run(&["--tls"]).unwrap().tls);
        // Rates a `Duration` cannot take as an interval are refused, not
        // panicked on later; the smallest legal one is taken.
        for bad in ["-1", "1e-300", "inf", "NaN", "0.0009"] {
            assert!(
                run(&["--rate", bad]).unwrap_err().starts_with("--rate:"),
                "{bad}"
            );
        }
        assert_eq!(run(&["--rate", "0.001"]).unwrap().rate, 0.001);
        assert!(
            run(&["--connections", "lots"])
                .unwrap_err()
                .starts_with("--connections:")
        );
        assert!(
            run(&["--kind", "x"])
                .unwrap_err()
                .contains("snapshot or event")
        );
        assert_eq!(
            run(&["--bogus"]).unwrap_err(),
            "unknown option --bogus; see --help"
        );
    }
}
