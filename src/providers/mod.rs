//! Providers: threads that publish into the loop through a `Publisher`.
//! `--demo`, `--agents-dir`, `--poll` and `--exec`, and the fetch / compare /
//! publish / back-off loop the last two share.
//!
//! A provider is one type implementing [`Provider`], in a file of its own;
//! [`configured`] lists them, one line each. Adding one is a new file, its
//! `mod` line and a line there, its options (a row each in
//! `config::options`, and the new `--help` in `docs/options.md`), and its
//! entry in `every_provider` in `tests/providers.rs`: what the server does
//! with a provider before starting it (checking its topics,
//! [`shared_topics`]'s warning, the start line) goes through the trait,
//! never through code that names a provider.

pub mod agents;
pub mod demo;
pub mod exec;
pub mod poll;
mod provider;
pub mod source;

pub use provider::Provider;

use crate::config::Config;

/// Every provider `config` asks for, each from its own section of it.
pub fn configured(config: &Config) -> Vec<Box<dyn Provider>> {
    let mut all: Vec<Box<dyn Provider>> = Vec::new();
    all.extend(demo::Player::configured(config));
    all.extend(agents::AgentsConfig::configured(config));
    all.extend(poll::Poller::configured(config));
    all.extend(exec::Runner::configured(config));
    all
}

/// One warning for each provider that shares topics with those after it,
/// naming them and what they share: two writers to one topic make a panel
/// flip between their stories.
pub fn shared_topics(providers: &[Box<dyn Provider>]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (n, first) in providers.iter().enumerate() {
        let mine = first.topics();
        let sharing: Vec<String> = providers
            .iter()
            .skip(n + 1)
            .filter_map(|other| {
                let theirs = other.topics();
                let both: Vec<&str> = mine
                    .iter()
                    .flat_map(|a| theirs.iter().filter_map(move |b| overlap(a, b)))
                    .collect();
                (!both.is_empty()).then(|| format!("{} ({})", other.origin(), both.join(", ")))
            })
            .collect();
        if !sharing.is_empty() {
            warnings.push(format!(
                "{} and {} publish to the same topics; each overwrites the other's snapshots",
                first.origin(),
                sharing.join(", ")
            ));
        }
    }
    warnings
}

/// What two topics (a name, or a family as its prefix and `*`) have in
/// common: the narrower one, when one covers the other.
fn overlap<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    let covers = |pattern: &str, name: &str| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    };
    if covers(a, b) {
        Some(b)
    } else if covers(b, a) {
        Some(a)
    } else {
        None
    }
}
