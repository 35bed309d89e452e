//! `statecast-load`: a load generator for statecast, and the kernel floor it
//! is measured against.
//!
//! It opens N WebSockets to one topic with a hand-rolled mio client (one
//! prepared upgrade request, large reads, no per-message allocation), waits
//! for every snapshot, then publishes M messages over HTTP keep-alive, each
//! carrying its send time, and reports latency, throughput, losses and the
//! server's CPU per delivery beside the floor: the CPU one process spends
//! to `write()` the same frame to the same number of loopback sockets.
//!
//! Runs with `--floor-child` are that floor process; users never call it.

//!
//! Layout: [`options`] the command line; [`target`] the server under test
//! and the CPU clocks; [`client`] the WebSocket clients; [`schedule`] the
//! publishing; [`measure`] the clock and percentiles; [`floor`] the kernel floor; [`report`] a run from start to
//! figures; [`dashboards`] the realistic run; [`tls`] `--tls`.

mod client;
mod dashboards;
mod floor;
mod measure;
mod options;
mod report;
mod schedule;
mod target;
mod tls;

use options::Command;

fn main() {
    let result = match options::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", options::HELP);
            return;
        }
        Ok(Command::FloorChild) => floor::floor_child(),
        Ok(Command::Run(options)) => start_tls(&options).and_then(|()| {
            if options.dashboards > 0 {
                dashboards::run(&options)
            } else {
                report::run(options)
            }
        }),
        Err(e) => {
            eprintln!("statecast-load: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("statecast-load: {e}");
        std::process::exit(1);
    }
}

/// `--tls`: on for every connection, against a server the caller started
/// with its certificate.
fn start_tls(options: &options::Options) -> std::io::Result<()> {
    if !options.tls {
        return Ok(());
    }
    if options.server.is_none() {
        return Err(std::io::Error::other(
            "--tls measures a running server: give --server",
        ));
    }
    tls::enable()
}
