//! The agents-directory provider: a thread that scans `DIR/<adw_id>/adw_state.json`
//! and publishes `adw-state/<adw_id>`, plus the `workflows` and `adw-monitor`
//! panels derived from those files and from `/proc`, the way the ADW
//! dashboard's own server derived them, in the shapes of CONTRACT.md v2.
//!
//! Each workflow is opened from the directory's descriptor, never by a
//! path through it, so a symlink swapped in after a listing is not
//! followed.
//!
//! It polls rather than using inotify: a scan of a few hundred small files
//! every 500 ms costs little, works on every file system (network mounts
//! included) and sees in-place rewrites and atomic renames alike.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use log::{debug, info, warn};
use serde_json::{Value, json};

use crate::publisher::{PublishError, Publisher, set_status};
use crate::topic::adw::{self, rfc3339};
use crate::topic::is_adw_id;

/// The name this provider reports under in `/healthz`.
const PROVIDER: &str = "agents";

/// Each workflow's state, in its directory.
const STATE_FILE: &str = "adw_state.json";

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
    /// The `adw_<phase>_iso` directories it had at the last read, in
    /// phase order.
    phases: Vec<&'static str>,
}

/// The scanner: everything it learned from previous scans.
pub struct Scanner {
    config: AgentsConfig,
    known: BTreeMap<String, Known>,
    last_workflows: Option<Value>,
    /// adw-monitor without its timestamp, to publish only on change.
    last_monitor: Option<Value>,
    dir_error: Option<String>,
    /// Runs between the listing and the reads, where a test swaps a
    /// workflow's directory for a symlink.
    #[cfg(test)]
    after_listing: Option<Box<dyn FnMut() + Send>>,
}

impl Scanner {
    pub fn new(config: AgentsConfig) -> Scanner {
        Scanner {
            config,
            known: BTreeMap::new(),
            last_workflows: None,
            last_monitor: None,
            dir_error: None,
            #[cfg(test)]
            after_listing: None,
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
        // Every workflow is opened from this descriptor, never by a path
        // through DIR: what the listing saw as a directory may be a
        // symlink by the time it is read.
        let listed = fs::read_dir(&self.config.dir)
            .and_then(|entries| Ok((entries, open_at_path(&self.config.dir)?)));
        let (entries, dir) = match listed {
            Ok(listed) => {
                self.dir_error = None;
                listed
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
        #[cfg(test)]
        if let Some(hook) = &mut self.after_listing {
            hook();
        }

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
            self.read_state(&dir, id, publisher)?;
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
    fn read_state(
        &mut self,
        dir: &File,
        id: &str,
        publisher: &Publisher,
    ) -> Result<(), PublishError> {
        let path = self.config.dir.join(id).join(STATE_FILE);
        let raw = match read_workflow(dir, id, self.config.max_bytes) {
            Ok(Some(Workflow {
                phases,
                state: Some(raw),
            })) => {
                self.known.entry(id.to_owned()).or_default().phases = phases;
                raw
            }
            // No state file yet (or it vanished mid-rename): keep what we
            // had, with the directories as they are now.
            Ok(Some(Workflow {
                phases,
                state: None,
            })) => {
                if let Some(known) = self.known.get_mut(id) {
                    known.phases = phases;
                }
                return Ok(());
            }
            // The directory went after the listing: the next scan says so.
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

    /// The `workflows` panel: one entry per accepted state whose issue
    /// number is an integer; the others are skipped, as the original did.
    fn workflows(&self) -> Value {
        let list: Vec<Value> = self
            .known
            .iter()
            .filter_map(|(id, known)| {
                let state = known.state.as_ref()?;
                let issue = issue_number(state)?;
                let phase = known.phases.last().copied().unwrap_or("plan");
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
            .filter_map(|(id, known)| Some((id, known.state.as_ref()?, &known.phases)))
            .map(|(id, state, dirs)| {
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
                self.monitor_entry(id, state, dirs, status, active)
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
    fn monitor_entry(
        &self,
        id: &str,
        state: &Value,
        dirs: &[&'static str],
        status: &str,
        active: bool,
    ) -> Value {
        let phases = Phases::of(state, dirs, status);
        let progress = phases.percent(status);
        let issue = issue_number(state);
        let field = Fields(state);
        let title = state["title"]
            .as_str()
            .or_else(|| state["nl_input"].as_str())
            .unwrap_or_default();
        json!({
            "adw_id": id,
            "issue_number": issue,
            "pr_number": field.number_or_null("pr_number"),
            "issue_class": field.text("issue_class"),
            "title": title,
            "status": status,
            "current_phase": phases.current,
            "phase_progress": progress,
            "workflow_template": field.text("workflow_template"),
            "start_time": field.text_or_null("start_time"),
            "end_time": field.text_or_null("end_time"),
            "duration_seconds": field.number_or_null("duration_seconds"),
            "github_url": self.github_url(state, issue),
            "worktree_path": field.text_or_null("worktree_path"),
            "current_cost": field.number_or_null("current_cost"),
            "estimated_cost_total": field.number_or_null("estimated_cost_total"),
            "error_count": field.number_or("error_count", json!(0)),
            "last_error": field.text_or_null("last_error"),
            "is_process_active": active,
            "phases_completed": phases.completed,
            "total_phases": RING.len(),
        })
    }
}

/// Where a workflow stands among its phases: what its state file says,
/// or, where the file does not say, what its `adw_<phase>_iso`
/// directories show.
struct Phases {
    completed: Vec<String>,
    current: Option<String>,
}

impl Phases {
    /// Trusts the state file's lists only when they hold the contract's
    /// types, since a hand-edited file must not break the panel.
    fn of(state: &Value, dirs: &[&'static str], status: &str) -> Phases {
        let completed = match state["phases_completed"].as_array() {
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
        let current = match state["current_phase"].as_str() {
            Some(phase) => Some(phase.to_owned()),
            None => dirs.last().map(|p| (*p).to_owned()),
        };
        Phases { completed, current }
    }

    /// Whether a phase of the ring is done; matched by substring, as the
    /// dashboard does, so `document` lights `doc`.
    fn lit(&self, phase: &str) -> bool {
        self.completed
            .iter()
            .any(|p| p.to_ascii_lowercase().contains(phase))
    }

    /// How much of the dashboard's ring is lit, in percent to one place: a
    /// phase under way counts half, so a running workflow shows movement
    /// before its phase ends.
    fn percent(&self, status: &str) -> f64 {
        let done = RING.iter().filter(|phase| self.lit(phase)).count();
        let current_adds = match &self.current {
            Some(phase) if status != "completed" => {
                let phase = phase.to_ascii_lowercase();
                let in_ring = RING.iter().any(|r| phase.contains(r) && !self.lit(r));
                if in_ring { 0.5 } else { 0.0 }
            }
            _ => 0.0,
        };
        let progress = ((done as f64 + current_adds) / RING.len() as f64 * 1000.0).round() / 10.0;
        progress.min(100.0)
    }
}

/// A state file's fields in the contract's types: a field that is missing
/// or of another type becomes the contract's empty value, so the panel
/// never carries what the dashboard cannot render.
struct Fields<'a>(&'a Value);

impl Fields<'_> {
    /// A string, or `""`.
    fn text(&self, key: &str) -> Value {
        json!(self.0[key].as_str().unwrap_or_default())
    }

    /// A string, or `null`.
    fn text_or_null(&self, key: &str) -> Value {
        self.0[key].as_str().map_or(Value::Null, |s| json!(s))
    }

    /// A number as written, or `default`.
    fn number_or(&self, key: &str, default: Value) -> Value {
        match &self.0[key] {
            n @ Value::Number(_) => n.clone(),
            _ => default,
        }
    }

    /// A number as written, or `null`.
    fn number_or_null(&self, key: &str) -> Value {
        self.number_or(key, Value::Null)
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

    fn origin(&self) -> String {
        "--agents-dir".into()
    }

    fn topics(&self) -> Vec<String> {
        let family = format!("{}*", adw::ADW_STATE_PREFIX);
        vec!["workflows".into(), "adw-monitor".into(), family]
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
/// What one workflow directory holds, read through its descriptor.
struct Workflow {
    /// Its `adw_<phase>_iso` directories, in phase order.
    phases: Vec<&'static str>,
    /// Its state file's bytes; `None` while it has none.
    state: Option<Vec<u8>>,
}

/// Reads `DIR/<id>` through `dir`, DIR's descriptor: the workflow's
/// directory is opened from it without following a symlink, and its state
/// file from that, so a directory swapped for a symlink after the listing
/// leads nowhere. `Ok(None)` when the directory has gone.
fn read_workflow(dir: &File, id: &str, max: usize) -> Result<Option<Workflow>, String> {
    let workflow = match open_at(dir, id, libc::O_DIRECTORY) {
        Ok(workflow) => workflow,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW gives ELOOP for a symlink; O_DIRECTORY gives ENOTDIR
        // for a symlink on some kernels, and for anything not a directory.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            return Err("its directory is no longer a directory (a symlink?), not followed".into());
        }
        Err(e) => return Err(e.to_string()),
    };
    // A phase directory is looked for as `is_dir` would (a symlink to a
    // directory counts): it only says that a phase began, and is looked
    // for inside the workflow's own directory.
    let phases = PHASE_DIRS
        .into_iter()
        .filter(|phase| is_dir_at(&workflow, &format!("adw_{phase}_iso")))
        .collect();
    let state = read_regular(&workflow, STATE_FILE, max)?;
    Ok(Some(Workflow { phases, state }))
}

/// Opens the agents directory itself, which the operator named.
fn open_at_path(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
}

/// openat(2) of one name in `dir`, read-only, never through a symlink.
fn open_at(dir: &File, name: &str, flags: libc::c_int) -> std::io::Result<File> {
    let name = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let flags = flags | libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated
    // string, both alive for the call.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether `name` in `dir` is a directory (following a symlink there).
fn is_dir_at(dir: &File, name: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `stat` is plain data that fstatat fills in.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is open, `name` NUL-terminated and `stat` writable.
    let found = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut stat, 0) } == 0;
    found && stat.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Reads `name` in `dir` if it is a regular file of at most `max` bytes.
/// A symlink is not followed (it could name any file the server may read),
/// and a FIFO or a device is not opened for reading (one would hang the
/// thread, the other never end): each is an error for `/healthz`.
/// `Ok(None)` when there is no file.
fn read_regular(dir: &File, name: &str, max: usize) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;

    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer before the type could be checked.
    let file = match open_at(dir, name, libc::O_NONBLOCK) {
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
    file.take((max as u64).saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    if raw.len() > max {
        return Err(format!("over --max-publish-bytes ({max} bytes)"));
    }
    Ok(Some(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publisher::{Command, Inbox};
    use crate::topic::Rules;
    use crate::topic::schema::Validator;
    use std::sync::Arc;

    /// A publisher whose inbox the test reads; the poll keeps the waker's
    /// registration alive.
    fn publisher() -> (Publisher, Inbox, mio::Poll) {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let rules = Rules::new(adw::Preset::Adw, &[], false, Validator::off());
        let (publisher, inbox) = crate::publisher::channel(waker, Arc::new(rules));
        (publisher, inbox, poll)
    }

    /// Every snapshot sent since the last call, as text.
    fn sent(inbox: &Inbox) -> Vec<String> {
        std::iter::from_fn(|| inbox.try_recv())
            .filter_map(|command| match command {
                Command::Snapshot { topic, data } => Some(format!("{topic} {data}")),
                _ => None,
            })
            .collect()
    }

    /// A workflow's directory swapped, between the listing and the read,
    /// for a symlink to a directory outside DIR holding a planted state
    /// file and phase directory is not followed: nothing planted is
    /// published, and /healthz says why.
    #[test]
    fn a_directory_swapped_for_a_symlink_after_the_listing_is_not_followed() {
        let root =
            std::env::temp_dir().join(format!("statecast-agents-swap-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (agents, outside) = (root.join("agents"), root.join("outside"));
        fs::create_dir_all(agents.join("swap0001")).unwrap();
        fs::create_dir_all(outside.join("adw_ship_iso")).unwrap();
        let state =
            |class: &str| json!({"adw_id": "swap0001", "issue_number": "7", "issue_class": class});
        fs::write(
            agents.join("swap0001").join(STATE_FILE),
            state("real").to_string(),
        )
        .unwrap();
        fs::write(outside.join(STATE_FILE), state("planted").to_string()).unwrap();

        let (publisher, inbox, _poll) = publisher();
        let mut scanner = Scanner::new(AgentsConfig {
            dir: agents.clone(),
            scan_interval: Duration::from_millis(50),
            github_repo: None,
            agent_program: "aider".into(),
            max_bytes: 1 << 16,
        });
        scanner.scan(&publisher).unwrap();
        let first = sent(&inbox);
        assert!(
            first
                .iter()
                .any(|s| s.starts_with("adw-state/swap0001 ") && s.contains("real")),
            "{first:?}"
        );

        let (swapped, moved) = (agents.join("swap0001"), root.join("moved"));
        let target = outside.clone();
        scanner.after_listing = Some(Box::new(move || {
            fs::rename(&swapped, &moved).unwrap();
            std::os::unix::fs::symlink(&target, &swapped).unwrap();
        }));
        scanner.scan(&publisher).unwrap();
        let second = sent(&inbox);
        for s in &second {
            assert!(!s.contains("planted") && !s.contains("ship"), "{s}");
        }
        let health = publisher.providers().lock().unwrap()[PROVIDER].clone();
        let error = health.last_error.unwrap_or_default();
        assert!(
            error.contains("swap0001") && error.contains("not followed"),
            "{error}"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
