//! The agents-directory provider: a thread that scans `DIR/<adw_id>/adw_state.json`
//! and publishes `adw-state/<adw_id>`, plus the `workflows` and `adw-monitor`
//! panels derived from those files and from `/proc`, the way the ADW
//! dashboard's own server derived them, in the shapes of CONTRACT.md v2.
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

use crate::publisher::{PublishError, Publisher, set_status};
use crate::topic::adw::{self, rfc3339};
use crate::topic::is_adw_id;

/// The name this provider reports under in `/healthz`.
const PROVIDER: &str = "agents";

/// The `adw_<phase>_iso` directories, in the order the original server
/// ranked them: a workflow is in the last of these that exists.
const PHASE_DIRS: [&str; 6] = ["plan", "build", "test", "review", "document", "ship"];

/// The dashboard's phase ring (CONTRACT.md, adw-monitor), matched by
/// case-insensitive substring, so `document` lights `doc`.
const RING: [&str; 9] = [
    "plan", "validate", "build", "lint", "test", "review", "doc", "ship", "cleanup",
];

/// What the provider is told.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    pub dir: PathBuf,
    pub scan_interval: Duration,
    /// `OWNER/NAME`, for each workflow's `github_url`.
    pub github_repo: Option<String>,
    /// The agent program: a workflow is running while a process runs it
    /// with the workflow's id on its command line.
    pub agent_program: String,
    /// The largest state file read (`--max-publish-bytes`).
    pub max_bytes: usize,
}

/// What the provider remembers of one workflow directory.
#[derive(Debug, Default)]
struct Known {
    /// The bytes last read, to skip parsing when nothing changed.
    raw: Vec<u8>,
    /// The last state the server accepted.
    state: Option<Value>,
    /// Why the current file is not published, logged once until it changes.
    invalid: Option<String>,
}

/// The scanner: everything it learned from previous scans.
pub struct Scanner {
    config: AgentsConfig,
    known: BTreeMap<String, Known>,
    last_workflows: Option<Value>,
    /// adw-monitor without its timestamp, to publish only on change.
    last_monitor: Option<Value>,
    dir_error: Option<String>,
}

impl Scanner {
    pub fn new(config: AgentsConfig) -> Scanner {
        Scanner {
            config,
            known: BTreeMap::new(),
            last_workflows: None,
            last_monitor: None,
            dir_error: None,
        }
    }

    /// One scan: publishes every change it finds, and reports the
    /// provider's health for `/healthz`.
    pub fn scan(&mut self, publisher: &Publisher) -> Result<(), PublishError> {
        let result = self.scan_dir(publisher);
        let problem = self.dir_error.clone().or_else(|| {
            self.known
                .iter()
                .find_map(|(id, k)| Some(format!("{id}: {}", k.invalid.as_ref()?)))
        });
        set_status(publisher.providers(), PROVIDER, problem);
        result
    }

    fn scan_dir(&mut self, publisher: &Publisher) -> Result<(), PublishError> {
        let entries = match fs::read_dir(&self.config.dir) {
            Ok(entries) => {
                self.dir_error = None;
                entries
            }
            Err(e) => {
                if self.dir_error.is_none() {
                    warn!("agents dir {}: {e}", self.config.dir.display());
                }
                self.dir_error = Some(format!("{}: {e}", self.config.dir.display()));
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

        // Workflows whose directory went away: their panel goes back to
        // the default, which names the workflow.
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|id| present.binary_search(id).is_err())
            .cloned()
            .collect();
        for id in gone {
            self.known.remove(&id);
            debug!("agents: {id} removed");
            publisher.publish(&format!("adw-state/{id}"), &adw::state_default(&id))?;
        }
        for id in &present {
            self.read_state(id, publisher)?;
        }

        let workflows = self.workflows();
        if self.last_workflows.as_ref() != Some(&workflows) {
            publisher.publish("workflows", &workflows)?;
            self.last_workflows = Some(workflows);
        }
        let monitor = self.monitor(&live_command_lines());
        if self.last_monitor.as_ref() != Some(&monitor) {
            let mut message = monitor.clone();
            if let Some(message) = message.as_object_mut() {
                message.insert("last_updated".into(), json!(rfc3339(SystemTime::now())));
            }
            publisher.publish("adw-monitor", &message)?;
            self.last_monitor = Some(monitor);
        }
        Ok(())
    }

    /// Reads one workflow's state file and publishes it if it changed and
    /// the server accepts it. A file that is broken, or that the adw-state
    /// schema refuses, keeps the last good state and is logged once.
    fn read_state(&mut self, id: &str, publisher: &Publisher) -> Result<(), PublishError> {
        let path = self.config.dir.join(id).join("adw_state.json");
        let raw = match read_regular(&path, self.config.max_bytes) {
            Ok(Some(raw)) => raw,
            // No state file yet (or it vanished mid-rename): keep what we had.
            Ok(None) => return Ok(()),
            Err(why) => {
                let known = self.known.entry(id.to_owned()).or_default();
                if known.invalid.as_deref() != Some(why.as_str()) {
                    warn!("agents: {}: {why}; skipped", path.display());
                }
                known.raw.clear();
                known.invalid = Some(why);
                return Ok(());
            }
        };
        let known = self.known.entry(id.to_owned()).or_default();
        if raw == known.raw {
            return Ok(());
        }
        known.raw = raw;
        let refusal = match serde_json::from_slice::<Value>(&known.raw) {
            Ok(state) if state.is_object() => {
                if known.state.as_ref() == Some(&state) {
                    None
                } else {
                    match publisher.publish(&format!("adw-state/{id}"), &state) {
                        Ok(()) => {
                            known.state = Some(state);
                            None
                        }
                        Err(PublishError::Invalid { error, .. }) => {
                            Some(format!("refused by the adw-state schema: {error}"))
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            // Half-written or broken.
            Ok(_) | Err(_) => Some("not a JSON object".to_owned()),
        };
        match (&refusal, &known.invalid) {
            (Some(why), None) => warn!(
                "agents: {}: {why}; keeping the last good state",
                path.display()
            ),
            (None, Some(_)) => info!("agents: {} is valid again", path.display()),
            _ => {}
        }
        known.invalid = refusal;
        Ok(())
    }

    /// The `adw_<phase>_iso` directories a workflow has, in phase order.
    fn phase_dirs(&self, id: &str) -> Vec<&'static str> {
        let dir = self.config.dir.join(id);
        PHASE_DIRS
            .into_iter()
            .filter(|phase| dir.join(format!("adw_{phase}_iso")).is_dir())
            .collect()
    }

    /// The `workflows` panel: one entry per accepted state whose issue
    /// number is an integer; the others are skipped, as the original did.
    fn workflows(&self) -> Value {
        let list: Vec<Value> = self
            .known
            .iter()
            .filter_map(|(id, known)| {
                let state = known.state.as_ref()?;
                let issue = issue_number(state)?;
                let phase = self.phase_dirs(id).last().copied().unwrap_or("plan");
                Some(json!({
                    "adw_id": id,
                    "issue_number": issue,
                    "phase": phase,
                    "github_url": self.github_url(state, Some(issue)),
                }))
            })
            .collect();
        Value::Array(list)
    }

    fn github_url(&self, state: &Value, issue: Option<i64>) -> Value {
        if let Some(url) = state["github_url"].as_str() {
            return json!(url);
        }
        match (&self.config.github_repo, issue) {
            (Some(repo), Some(issue)) => json!(format!("https://github.com/{repo}/issues/{issue}")),
            _ => Value::Null,
        }
    }

    /// Whether a workflow's worktree exists; a relative path is tried from
    /// the working directory and from the agents directory's parent, where
    /// ADW keeps `trees/`.
    fn worktree_exists(&self, state: &Value) -> bool {
        let Some(path) = state["worktree_path"].as_str().filter(|p| !p.is_empty()) else {
            return false;
        };
        let path = Path::new(path);
        path.is_dir()
            || (path.is_relative()
                && self
                    .config
                    .dir
                    .parent()
                    .is_some_and(|parent| parent.join(path).is_dir()))
    }

    /// The `adw-monitor` panel, without `last_updated`.
    fn monitor(&self, processes: &[Vec<String>]) -> Value {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        let workflows: Vec<Value> = self
            .known
            .iter()
            .filter_map(|(id, known)| Some((id, known.state.as_ref()?)))
            .map(|(id, state)| {
                let active = processes
                    .iter()
                    .any(|argv| runs_agent(argv, id, &self.config.agent_program));
                let status = match state["status"].as_str() {
                    Some(recorded @ ("completed" | "failed")) => recorded,
                    _ if active => "running",
                    _ if self.worktree_exists(state) => "paused",
                    _ => "queued",
                };
                *counts.entry(status).or_default() += 1;
                self.monitor_entry(id, state, status, active)
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

    /// One workflow of adw-monitor, every field in the contract's type
    /// whatever the state file holds: the Request tab renders it at load.
    fn monitor_entry(&self, id: &str, state: &Value, status: &str, active: bool) -> Value {
        let dirs = self.phase_dirs(id);
        let phases_completed: Vec<String> = match state["phases_completed"].as_array() {
            Some(list) if list.iter().all(Value::is_string) => list
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect(),
            // The newest directory is the phase under way, unless the
            // workflow is over.
            _ => {
                let done = if status == "completed" {
                    dirs.len()
                } else {
                    dirs.len().saturating_sub(1)
                };
                dirs.iter().take(done).map(|p| (*p).to_owned()).collect()
            }
        };
        let current_phase = match state["current_phase"].as_str() {
            Some(phase) => Some(phase.to_owned()),
            None => dirs.last().map(|p| (*p).to_owned()),
        };
        let lit = |phase: &str| {
            phases_completed
                .iter()
                .any(|p| p.to_ascii_lowercase().contains(phase))
        };
        let done = RING.iter().filter(|phase| lit(phase)).count();
        let current_adds = match &current_phase {
            Some(phase) if status != "completed" => {
                let phase = phase.to_ascii_lowercase();
                let in_ring = RING.iter().any(|r| phase.contains(r) && !lit(r));
                if in_ring { 0.5 } else { 0.0 }
            }
            _ => 0.0,
        };
        let progress = ((done as f64 + current_adds) / RING.len() as f64 * 1000.0).round() / 10.0;
        let issue = issue_number(state);
        let text = |key: &str| json!(state[key].as_str().unwrap_or_default());
        let text_or_null = |key: &str| state[key].as_str().map_or(Value::Null, |s| json!(s));
        let number_or = |key: &str, default: Value| match &state[key] {
            n @ Value::Number(_) => n.clone(),
            _ => default,
        };
        let number_or_null = |key: &str| number_or(key, Value::Null);
        let title = state["title"]
            .as_str()
            .or_else(|| state["nl_input"].as_str())
            .unwrap_or_default();
        json!({
            "adw_id": id,
            "issue_number": issue,
            "pr_number": number_or_null("pr_number"),
            "issue_class": text("issue_class"),
            "title": title,
            "status": status,
            "current_phase": current_phase,
            "phase_progress": progress.min(100.0),
            "workflow_template": text("workflow_template"),
            "start_time": text_or_null("start_time"),
            "end_time": text_or_null("end_time"),
            "duration_seconds": number_or_null("duration_seconds"),
            "github_url": self.github_url(state, issue),
            "worktree_path": text_or_null("worktree_path"),
            "current_cost": number_or_null("current_cost"),
            "estimated_cost_total": number_or_null("estimated_cost_total"),
            "error_count": number_or("error_count", json!(0)),
            "last_error": text_or_null("last_error"),
            "is_process_active": active,
            "phases_completed": phases_completed,
            "total_phases": RING.len(),
        })
    }
}

/// The issue number as an integer: state files store it as a string.
/// `None` when it does not convert, and the workflow is left out.
fn issue_number(state: &Value) -> Option<i64> {
    match &state["issue_number"] {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    }
}

/// Whether a command line runs the agent for this workflow: one argument
/// is the agent program (by file name: `aider`, `/usr/bin/aider`, or `-m
/// aider`) and one names the id. A shell, an editor or a WebSocket client
/// that merely names the id does not count.
fn runs_agent(argv: &[String], adw_id: &str, program: &str) -> bool {
    let is_program = |arg: &String| Path::new(arg).file_name().is_some_and(|f| f == program);
    argv.iter().any(is_program) && argv.iter().any(|arg| arg.contains(adw_id))
}

/// Every live process's arguments, from `/proc`.
fn live_command_lines() -> Vec<Vec<String>> {
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
        .map(|c| {
            c.split(|&b| b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .collect()
}

impl AgentsConfig {
    /// `--agents-dir` and the options that go with it.
    pub fn configured(config: &crate::config::Config) -> Option<Box<dyn super::Provider>> {
        let dir = config.agents_dir.clone()?;
        Some(Box::new(AgentsConfig {
            dir,
            scan_interval: config.scan_interval,
            github_repo: config.github_repo.clone(),
            agent_program: config.agent_program.clone(),
            max_bytes: config.max_publish_bytes,
        }))
    }
}

impl super::Provider for AgentsConfig {
    fn describe(&self) -> String {
        format!("agents {}", self.dir.display())
    }

    fn start(
        self: Box<Self>,
        publisher: Publisher,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        spawn(*self, publisher)
    }
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
/// Reads `path` if it is a regular file of at most `max` bytes. A
/// symlink is not followed (it could name any file the server may read),
/// and a FIFO or a device is not opened for reading (one would hang the
/// thread, the other never end): each is an error for `/healthz`.
/// `Ok(None)` when there is no file.
fn read_regular(path: &Path, max: usize) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer before the type could be checked.
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err("a symlink, not followed".into());
        }
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    let mut raw = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    if raw.len() > max {
        return Err(format!("over --max-publish-bytes ({max} bytes)"));
    }
    Ok(Some(raw))
}
