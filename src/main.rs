//! The `statecast` binary: parses the command line, sets up logging and
//! signal handling, and runs the server until SIGINT or SIGTERM.

use std::process::ExitCode;

use log::{error, info, warn};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use simplelog::{CombinedLogger, ConfigBuilder, WriteLogger};
use statecast::Server;
use statecast::config::{self, Command};

/// statecast's own lines at `level`; the crates it uses at info at most,
/// because their debug and trace lines (an HTTP client's request line,
/// say) show URLs whole, and statecast shows them only redacted.
fn init_logging(level: log::LevelFilter) -> Result<(), log::SetLoggerError> {
    let ours = ConfigBuilder::new()
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .add_filter_allow_str("statecast")
        .build();
    let theirs = ConfigBuilder::new()
        .set_target_level(log::LevelFilter::Error)
        .set_thread_level(log::LevelFilter::Off)
        .add_filter_ignore_str("statecast")
        .build();
    CombinedLogger::init(vec![
        WriteLogger::new(level, ours, std::io::stderr()),
        WriteLogger::new(level.min(log::LevelFilter::Info), theirs, std::io::stderr()),
    ])
}

fn main() -> ExitCode {
    let config = match config::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::PrintConfig(config)) => {
            print!("{}", statecast::config::file::render(&config));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            print!("{}", config::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("statecast {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("statecast: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = init_logging(config.log_level);
    let server = match start(config) {
        Ok(server) => server,
        Err(code) => return code,
    };
    if let Err(e) = shut_down_on_signals(server.publisher()) {
        error!("cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds the server and starts its providers; a configuration that cannot
/// run exits 2 with the reason, a failure to start exits 1.
fn start(config: statecast::Config) -> Result<Server, ExitCode> {
    let listen = config.listen;
    let providers = Providers::from(&config);
    if (providers.demo || providers.agents.is_some()) && config.preset != statecast::Preset::Adw {
        eprintln!(
            "statecast: --demo and --agents-dir publish to the ADW topics and need --preset adw"
        );
        return Err(ExitCode::from(2));
    }
    let shared = statecast::providers::shared_with_demo(&config);
    if !shared.is_empty() {
        warn!(
            "--demo and {} publish to the same topics; each overwrites the other's snapshots",
            shared.join(", ")
        );
    }
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("statecast: {e}");
            return Err(ExitCode::from(2));
        }
        Err(e) => {
            error!("cannot listen on {listen}: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let topics = providers.polls.iter().map(|p| (&p.origin, &p.topic));
    for (origin, topic) in topics.chain(providers.execs.iter().map(|e| (&e.origin, &e.topic))) {
        if let Err(e) = server.rules().check(topic) {
            eprintln!("statecast: {origin}: {e}");
            return Err(ExitCode::from(2));
        }
    }
    let running = providers.describe();
    if let Err(e) = start_providers(&server, providers) {
        error!("cannot start a provider thread: {e}");
        return Err(ExitCode::FAILURE);
    }
    if let Ok(addr) = server.local_addr() {
        let running = if running.is_empty() {
            "none".to_owned()
        } else {
            running.join(", ")
        };
        info!(
            "statecast {}: open http://{addr}/ for the live page; WebSockets at ws://{addr}/api/v1/ws/<topic>, SSE at http://{addr}/api/v1/sse/<topic>, health at http://{addr}/healthz, metrics at http://{addr}/metrics; providers: {running}",
            env!("CARGO_PKG_VERSION"),
        );
    }
    Ok(server)
}

/// The first SIGINT or SIGTERM shuts down gracefully; a second exits at once.
fn shut_down_on_signals(publisher: statecast::Publisher) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut signals = signals.forever();
            if signals.next().is_some() {
                let _ = publisher.shutdown();
            }
            if signals.next().is_some() {
                warn!("second signal: exiting without waiting for clients");
                std::process::exit(1);
            }
        })?;
    Ok(())
}

/// The provider threads the configuration asks for.
struct Providers {
    demo: bool,
    agents: Option<statecast::providers::agents::AgentsConfig>,
    polls: Vec<statecast::config::PollSpec>,
    poll_limits: statecast::providers::poll::Limits,
    execs: Vec<statecast::config::ExecSpec>,
    exec_limits: statecast::providers::exec::Limits,
}

impl From<&statecast::Config> for Providers {
    fn from(config: &statecast::Config) -> Self {
        Providers {
            demo: config.demo,
            agents: config.agents_dir.clone().map(|dir| {
                statecast::providers::agents::AgentsConfig {
                    dir,
                    scan_interval: config.scan_interval,
                    github_repo: config.github_repo.clone(),
                    agent_program: config.agent_program.clone(),
                    max_bytes: config.max_publish_bytes,
                }
            }),
            polls: config.polls.clone(),
            poll_limits: statecast::providers::poll::Limits {
                timeout: config.poll_timeout,
                max_bytes: config.max_publish_bytes,
            },
            execs: config.execs.clone(),
            exec_limits: statecast::providers::exec::Limits {
                timeout: config.exec_timeout,
                max_bytes: config.max_publish_bytes,
            },
        }
    }
}

impl Providers {
    /// One phrase per provider, for the start line.
    fn describe(&self) -> Vec<String> {
        let mut running = Vec::new();
        if self.demo {
            running.push("demo".to_owned());
        }
        if let Some(agents) = &self.agents {
            running.push(format!("agents {}", agents.dir.display()));
        }
        for poll in &self.polls {
            let url = statecast::config::redacted_url(&poll.url);
            running.push(format!("poll {} <- {url}", poll.topic));
        }
        for exec in &self.execs {
            running.push(format!("exec {} <- `{}`", exec.topic, exec.command));
        }
        running
    }
}

/// Starts every provider thread; each publishes through its own handle.
fn start_providers(server: &Server, p: Providers) -> std::io::Result<()> {
    if p.demo {
        statecast::providers::demo::spawn(server.publisher())?;
    }
    if let Some(agents) = p.agents {
        statecast::providers::agents::spawn(agents, server.publisher())?;
    }
    for spec in p.polls {
        statecast::providers::poll::spawn(spec, p.poll_limits, server.publisher())?;
    }
    for spec in p.execs {
        statecast::providers::exec::spawn(spec, p.exec_limits, server.publisher())?;
    }
    Ok(())
}
