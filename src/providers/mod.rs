//! Providers: threads that publish into the loop through a `Publisher`.
//! `--demo`, `--agents-dir`, `--poll` and `--exec`, and the fetch / compare /
//! publish / back-off loop the last two share.
//!
//! A provider is one type implementing [`Provider`], in a file of its own;
//! [`configured`] lists them, one line each. Adding one is a new file and a
//! line there.

pub mod agents;
pub mod demo;
pub mod exec;
pub mod poll;
mod provider;
pub mod source;

pub use provider::Provider;

use crate::config::Config;
use crate::topic::adw;

/// Every provider `config` asks for, each from its own section of it.
pub fn configured(config: &Config) -> Vec<Box<dyn Provider>> {
    let mut all: Vec<Box<dyn Provider>> = Vec::new();
    all.extend(demo::Player::configured(config));
    all.extend(agents::AgentsConfig::configured(config));
    all.extend(poll::Poller::configured(config));
    all.extend(exec::Runner::configured(config));
    all
}

/// The providers that publish to topics `--demo` publishes to, each with
/// the topics it shares, for the warning at start: two writers to one
/// topic make a panel flip between their stories.
pub fn shared_with_demo(config: &Config) -> Vec<String> {
    if !config.demo {
        return Vec::new();
    }
    let mut shared = Vec::new();
    if config.agents_dir.is_some() {
        shared.push("--agents-dir (workflows, adw-monitor, adw-state/*)".to_owned());
    }
    let demo_writes =
        |topic: &str| adw::topic(topic).is_some() || topic.starts_with(adw::ADW_STATE_PREFIX);
    for poll in config.polls.iter().filter(|p| demo_writes(&p.topic)) {
        shared.push(format!("{} ({})", poll.origin, poll.topic));
    }
    for exec in config.execs.iter().filter(|e| demo_writes(&e.topic)) {
        shared.push(format!("{} ({})", exec.origin, exec.topic));
    }
    shared
}
