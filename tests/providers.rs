//! Every provider goes through one start: the topics it states are checked
//! against the server's topic rules before any provider starts, and one
//! whose topic is not served stops the start, named, whatever provider it
//! is; providers that share a topic are named in one warning.

use std::io;
use std::thread::JoinHandle;

use statecast::config::{Config, parse_exec, parse_poll};
use statecast::providers::{self, Provider};
use statecast::{Preset, Publisher, Server};

/// A configuration that asks for every provider `providers::configured`
/// lists, each publishing to a topic of the ADW preset.
fn every_provider(preset: Preset) -> Config {
    let interval = std::time::Duration::from_secs(3600);
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        preset,
        demo: true,
        agents_dir: Some(std::env::temp_dir().join("statecast-providers-none")),
        polls: vec![parse_poll("queue=http://127.0.0.1:9/q", interval).unwrap()],
        execs: vec![parse_exec("routes=echo {}@1h").unwrap()],
        ..Config::default()
    }
}

/// A provider this crate has never heard of: only its trait.
struct Stranger(Vec<String>);

impl Provider for Stranger {
    fn describe(&self) -> String {
        "stranger".into()
    }
    fn origin(&self) -> String {
        "the stranger".into()
    }
    fn topics(&self) -> Vec<String> {
        self.0.clone()
    }
    fn start(self: Box<Self>, _: Publisher) -> io::Result<JoinHandle<()>> {
        panic!("a provider whose topic is not served was started")
    }
}

/// Each provider the list holds, alone on a server that serves none of its
/// topics, stops the start with its own name and an unknown topic; every
/// one of them is checked, so none escapes by being last or first.
#[test]
fn every_listed_provider_has_its_topics_checked() {
    let config = every_provider(Preset::None);
    let listed = providers::configured(&config);
    let origins: Vec<String> = listed.iter().map(|p| p.origin()).collect();
    assert_eq!(origins, ["--demo", "--agents-dir", "--poll", "--exec"]);
    for provider in listed {
        let origin = provider.origin();
        let server = Server::bind(config.clone()).unwrap();
        let e = server.start_providers(vec![provider]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{origin}: {e}");
        let e = e.to_string();
        assert!(e.starts_with(&format!("{origin}: ")), "{e}");
        assert!(e.contains("unknown topic"), "{e}");
    }
}

/// With the topics served, the same list passes the check (and starts).
#[test]
fn served_topics_pass() {
    let config = every_provider(Preset::Adw);
    let server = Server::bind(config.clone()).unwrap();
    server
        .start_providers(providers::configured(&config))
        .unwrap();
    server.publisher().shutdown().unwrap();
}

/// A provider after good ones, with a topic the server does not serve,
/// stops the start before any of them runs, named; so does a family the
/// server has no rule for.
#[test]
fn any_provider_is_checked_through_its_trait() {
    for topics in [vec!["queue", "nope"], vec!["elsewhere/*"]] {
        let topics: Vec<String> = topics.into_iter().map(String::from).collect();
        let server = Server::bind(every_provider(Preset::Adw)).unwrap();
        let mut list = providers::configured(&every_provider(Preset::Adw));
        list.push(Box::new(Stranger(topics.clone())));
        let e = server.start_providers(list).unwrap_err().to_string();
        let last = topics.last().unwrap();
        assert_eq!(e, format!("the stranger: unknown topic {last:?}"));
    }
}

/// Two providers writing one topic make one warning, naming both and what
/// they share, a family included.
#[test]
fn providers_sharing_topics_are_named() {
    let listed = providers::configured(&every_provider(Preset::Adw));
    let warnings = providers::shared_topics(&listed);
    assert_eq!(
        warnings,
        [
            "--demo and --agents-dir (workflows, adw-monitor, adw-state/*), --poll (queue), \
          --exec (routes) \
          publish to the same topics; each overwrites the other's snapshots"
        ]
    );
}
