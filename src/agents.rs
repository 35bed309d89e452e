//! The agents-directory provider: a thread that scans `DIR/<adw_id>/adw_state.json`
//! and publishes `adw-state/<adw_id>`, plus the `workflows` and `adw-monitor`
//! panels derived from those files and from `/proc`, the way the ADW
//! dashboard's own server derived them.
//!
//! It polls rather than using inotify: a scan of a few hundred small files
//! every 500 ms costs little, works on every file system (network mounts
//! included) and sees in-place rewrites and atomic renames alike.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use log::{debug, info, warn};
use serde_json::{Value, json};

use crate::demo::rfc3339;
use crate::publisher::{PublishError, Publisher};
use crate::topic::is_adw_id;

/// What the provider is told.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    pub dir: PathBuf,
    pub scan_interval: Duration,
    /// `OWNER/NAME`, for each workflow's `github_url`.
    pub github_repo: Option<String>,
}

/// What the provider remembers of one workflow directory.
#[derive(Debug, Default)]
struct Known {
    /// The bytes last read, to skip parsing when nothing changed.
    raw: Vec<u8>,
    /// The last valid state published.
    state: Option<Value>,
    /// The file is currently invalid (logged once, until it changes).
    invalid: bool,
}

/// The scanner: everything it learned from previous scans.
pub struct Scanner {
    config: AgentsConfig,
    known: BTreeMap<String, Known>,
    last_workflows: Option<Value>,
    /// adw-monitor without its timestamp, to publish only on change.
    last_monitor: Option<Value>,
    dir_missing_logged: bool,
}

impl Scanner {
    pub fn new(config: AgentsConfig) -> Scanner {
        Scanner {
            config,
            known: BTreeMap::new(),
            last_workflows: None,
            last_monitor: None,
            dir_missing_logged: false,
        }
    }

    /// One scan: publishes every change it finds.
    pub fn scan(&mut self, publisher: &Publisher) -> Result<(), PublishError> {
        let entries = match fs::read_dir(&self.config.dir) {
            Ok(entries) => {
                self.dir_missing_logged = false;
                entries
            }
            Err(e) => {
                if !self.dir_missing_logged {
                    warn!("agents dir {}: {e}", self.config.dir.display());
                    self.dir_missing_logged = true;
                }
                return Ok(());
            }
        };
        let mut present: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| is_adw_id(name))
            .collect();
        present.sort();

        // Workflows whose directory went away: their panel goes back to `{}`.
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|id| present.binary_search(id).is_err())
            .cloned()
            .collect();
        for id in gone {
            self.known.remove(&id);
            debug!("agents: {id} removed");
            publisher.publish(&format!("adw-state/{id}"), &json!({}))?;
        }

        for id in &present {
            let path = self.config.dir.join(id).join("adw_state.json");
            let Ok(raw) = fs::read(&path) else {
                // No state file yet (or it vanished mid-rename): keep what we had.
                continue;
            };
            let known = self.known.entry(id.clone()).or_default();
            if raw == known.raw {
                continue;
            }
            known.raw = raw;
            match serde_json::from_slice::<Value>(&known.raw) {
                Ok(state) if state.is_object() => {
                    if known.invalid {
                        info!("agents: {} is valid again", path.display());
                        known.invalid = false;
                    }
                    if known.state.as_ref() != Some(&state) {
                        publisher.publish(&format!("adw-state/{id}"), &state)?;
                        known.state = Some(state);
                    }
                }
                Ok(_) | Err(_) => {
                    // Half-written or broken: keep the last good snapshot,
                    // say so once per bad version.
                    if !known.invalid {
                        warn!(
                            "agents: {} is not a JSON object; keeping the last good state",
                            path.display()
                        );
                        known.invalid = true;
                    }
                }
            }
        }

        let workflows = self.workflows();
        if self.last_workflows.as_ref() != Some(&workflows) {
            publisher.publish("workflows", &workflows)?;
            self.last_workflows = Some(workflows);
        }
        let monitor = self.monitor(&live_command_lines());
        if self.last_monitor.as_ref() != Some(&monitor) {
            let mut message = monitor.clone();
            message["last_updated"] = json!(rfc3339(SystemTime::now()));
            publisher.publish("adw-monitor", &message)?;
            self.last_monitor = Some(monitor);
        }
        Ok(())
    }

    /// The newest `adw_<phase>_iso` directory in a workflow's directory.
    fn phase(&self, id: &str) -> Option<String> {
        let entries = fs::read_dir(self.config.dir.join(id)).ok()?;
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let phase = name.strip_prefix("adw_")?.strip_suffix("_iso")?.to_owned();
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((modified, phase))
            })
            .max()
            .map(|(_, phase)| phase)
    }

    fn issue_number(state: &Value) -> Option<i64> {
        match &state["issue_number"] {
            Value::String(s) => s.trim().parse().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The `workflows` panel: one entry per state file with an integer issue.
    fn workflows(&self) -> Value {
        let list: Vec<Value> = self
            .known
            .iter()
            .filter_map(|(id, known)| {
                let issue = Self::issue_number(known.state.as_ref()?)?;
                let url = self
                    .config
                    .github_repo
                    .as_ref()
                    .map(|repo| format!("https://github.com/{repo}/issues/{issue}"));
                Some(json!({
                    "adw_id": id,
                    "issue_number": issue,
                    "phase": self.phase(id),
                    "github_url": url,
                }))
            })
            .collect();
        Value::Array(list)
    }

    /// The `adw-monitor` panel, without `last_updated`.
    fn monitor(&self, command_lines: &[String]) -> Value {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        let workflows: Vec<Value> = self
            .known
            .iter()
            .filter_map(|(id, known)| Some((id, known.state.as_ref()?)))
            .map(|(id, state)| {
                let active = command_lines.iter().any(|c| c.contains(id.as_str()));
                let recorded = state["status"].as_str().unwrap_or_default();
                let worktree = state["worktree_path"]
                    .as_str()
                    .is_some_and(|p| Path::new(p).is_dir());
                let status = match recorded {
                    "completed" | "failed" => recorded,
                    _ if active => "running",
                    _ if worktree => "paused",
                    _ => "queued",
                };
                *counts.entry(status).or_default() += 1;
                json!({
                    "adw_id": id,
                    "issue_number": Self::issue_number(state),
                    "status": status,
                    "current_phase": self.phase(id),
                    "is_process_active": active,
                    // Only the old database knew these.
                    "phase_progress": null,
                    "phases_completed": null,
                    "total_phases": null,
                    "error_count": null,
                })
            })
            .collect();
        let count = |s: &str| counts.get(s).copied().unwrap_or(0);
        json!({
            "summary": {
                "total": workflows.len(),
                "running": count("running"),
                "completed": count("completed"),
                "failed": count("failed"),
                "paused": count("paused"),
            },
            "workflows": workflows,
            "last_updated": null,
        })
    }
}

/// Every live process's command line, from `/proc`.
fn live_command_lines() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .filter(|c| !c.is_empty())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect()
}

/// Starts the provider thread; it stops when the server does.
pub fn spawn(
    config: AgentsConfig,
    publisher: Publisher,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("agents".into())
        .spawn(move || {
            info!(
                "agents: watching {} every {:?}",
                config.dir.display(),
                config.scan_interval
            );
            let interval = config.scan_interval;
            let mut scanner = Scanner::new(config);
            loop {
                match scanner.scan(&publisher) {
                    Ok(()) => {}
                    Err(PublishError::Closed) => return,
                    Err(e) => warn!("agents: publish failed: {e}"),
                }
                std::thread::sleep(interval);
            }
        })
}
