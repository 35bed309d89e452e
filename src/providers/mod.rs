//! Providers: threads that publish into the loop through a `Publisher`.
//! `--demo`, `--agents-dir`, `--poll` and `--exec`, and the fetch / compare /
//! publish / back-off loop the last two share.

pub mod agents;
pub mod demo;
pub mod exec;
pub mod poll;
pub mod source;

use crate::config::Config;
use crate::topic::adw;

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
