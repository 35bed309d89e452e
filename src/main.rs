//! The `statecast` binary: parses the command line, sets up logging and
//! signal handling, and runs the server until SIGINT or SIGTERM (SIGHUP
//! reloads the TLS certificate).

use std::process::ExitCode;

use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use simplelog::{CombinedLogger, ConfigBuilder, WriteLogger};
use statecast::Server;
use statecast::config::{self, args::Command};

/// The exit status of every configuration error: one that a restart cannot
/// mend (a short token, a bad value, an address it must not serve).
/// debian/statecast.service names it in `RestartPreventExitStatus=`, so
/// systemd stops there instead of restarting in a loop; a failure that
/// may pass (the port still taken) exits 1 and is restarted.
const CONFIG_ERROR: u8 = 2;

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
    grow_the_heap_by_need();
    let config = match config::args::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::PrintConfig(config)) => {
            print!("{}", statecast::config::file::render(&config));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            print!("{}", config::help::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("statecast {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::TokenHelp) => {
            print!("{}", config::args::TOKEN_HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Token(minting)) => return print_token(&minting),
        Err(e) => {
            eprintln!("statecast: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    forget_secrets_in_the_environment();
    let _ = init_logging(config.log_level);
    let drain = !config.drain.is_zero();
    let server = match start(config) {
        Ok(server) => server,
        Err(code) => return code,
    };
    if let Err(e) = reload_on_sighup(server.publisher()) {
        error!("cannot install the SIGHUP handler: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = shut_down_on_signals(server.publisher(), drain) {
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

/// `statecast token`: the token on stdout, or why not on stderr (exit
/// [`CONFIG_ERROR`]).
fn print_token(minting: &statecast::server::jwt::Minting) -> ExitCode {
    use statecast::server::jwt;
    let secret = match config::args::jwt_secret_from_env() {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            eprintln!(
                "statecast token: set {} to the secret to sign with",
                jwt::SECRET_ENV
            );
            return ExitCode::from(CONFIG_ERROR);
        }
        Err(e) => {
            eprintln!("statecast token: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    match jwt::mint(&secret, minting, jwt::unix_now()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("statecast token: {e}");
            ExitCode::from(CONFIG_ERROR)
        }
    }
}

/// Binds the server and starts the providers the configuration asks for;
/// a configuration that cannot run exits [`CONFIG_ERROR`] with the
/// reason, a failure to start exits 1.
fn start(config: statecast::Config) -> Result<Server, ExitCode> {
    let listen = config.listen;
    let providers = statecast::providers::configured(&config);
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("statecast: {e}");
            return Err(ExitCode::from(CONFIG_ERROR));
        }
        Err(e) => {
            error!("cannot listen on {listen}: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let running: Vec<String> = providers.iter().map(|p| p.describe()).collect();
    match server.start_providers(providers) {
        Ok(()) => {}
        // A provider's topic the server does not serve.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("statecast: {e}");
            return Err(ExitCode::from(CONFIG_ERROR));
        }
        Err(e) => {
            error!("cannot start a provider thread: {e}");
            return Err(ExitCode::FAILURE);
        }
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

/// The first SIGINT or SIGTERM drains (closes clients spread over
/// `--drain`, then shuts down); a second, during the drain, closes the rest
/// at once; one more exits at once. Without a drain window, the second
/// exits at once, as there is no drain to cut short.
fn shut_down_on_signals(publisher: statecast::Publisher, drain: bool) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut signals = signals.forever();
            if signals.next().is_some() {
                let _ = publisher.drain();
            }
            if drain && signals.next().is_some() {
                warn!("second signal: closing every client now");
                let _ = publisher.drain();
            }
            if signals.next().is_some() {
                warn!("another signal: exiting without waiting for clients");
                std::process::exit(1);
            }
        })?;
    Ok(())
}

/// SIGHUP loads the TLS certificate pair again (what certbot's deploy hook
/// or `systemctl reload` sends), and never ends the process. A thread of
/// its own, so it does not count toward the shutdown signals.
fn reload_on_sighup(publisher: statecast::Publisher) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGHUP])?;
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                if publisher.reload().is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

/// glibc pads each growth of the heap by 128 KiB, which on an idle server
/// was 164 KiB of its resident memory; it grows by what is asked instead.
/// Growth happens only when the high-water mark rises (10k connections
/// arriving), where one more `brk` per step is nothing beside the accepts.
fn grow_the_heap_by_need() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it is called
    // before any thread exists.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 0);
    }
}

/// The secrets are read; now they leave the process's environment. Not
/// only `std::env`: `/proc/PID/environ` shows the environment block the
/// process started with, which unsetting a variable leaves in place, and
/// an `--exec` command (statecast's child, the same user) could read it
/// there. So each `STATECAST_` value is overwritten in place first.
fn forget_secrets_in_the_environment() {
    let names: Vec<std::ffi::OsString> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.as_encoded_bytes().starts_with(b"STATECAST_"))
        .collect();
    for name in names {
        let Ok(c_name) = std::ffi::CString::new(name.as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: no other thread exists yet (none reads the environment
        // while it changes); getenv's pointer is to the value's bytes,
        // NUL-terminated, which are overwritten within their length.
        unsafe {
            let value = libc::getenv(c_name.as_ptr());
            if !value.is_null() {
                let len = libc::strlen(value);
                std::ptr::write_bytes(value, b'x', len);
            }
            std::env::remove_var(&name);
        }
    }
}
