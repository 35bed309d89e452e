//! `--demo`: a provider thread that plays a small, believable ADW system into
//! every ADW topic, a few updates a second, so a dashboard pointed at a fresh
//! server shows every state its panels can show: workflows advancing through
//! the client's steps, one paused and now and then one failing, a queue
//! moving through all its statuses and pausing, a service degrading, webhook
//! failures, history with full analytics, a routes list that changes.
//!
//! [`Demo`] only computes messages; the thread publishes them. Every value
//! it makes must pass the contract's schemas, and the tests check that.

// Proof: the demo builds its own data here; no input from a client, a file
// or Redis reaches this module, so its indexing and unwraps are on values
// it just made.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{debug, warn};
use serde_json::{Map, Value, json};

use crate::publisher::{PublishError, Publisher};
use crate::topic::adw::rfc3339;

/// The client's steps a workflow goes through (CONTRACT.md, adw-state).
const STEPS: &[&str] = &[
    "plan", "validate", "build", "lint", "test", "review", "doc", "ship",
];
/// The adw-monitor ring's length: the steps above plus cleanup.
const TOTAL_PHASES: usize = 9;
/// The six services the System Status panel draws, in its order.
const SERVICES: &[(&str, &str)] = &[
    ("backend_api", "Backend API"),
    ("database", "Database"),
    ("webhook", "Webhook Service"),
    ("frontend", "Frontend"),
    ("cloudflare_tunnel", "Cloudflare Tunnel"),
    ("github_webhook", "GitHub Webhook"),
];
const TITLES: &[&str] = &[
    "Add a login page",
    "Export reports as CSV",
    "Fix flaky queue test",
    "Dark mode for settings",
    "Rate-limit the webhook",
    "Paginate workflow history",
    "Cache route metadata",
    "Retry failed deployments",
];
const MODELS: &[&str] = &["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"];
const TEMPLATES: &[&str] = &[
    "adw_sdlc_complete_iso",
    "adw_plan_build_iso",
    "adw_patch_iso",
];
const REPO: &str = "acme/dashboard";
const WORKFLOWS: usize = 4;
/// How often the story moves on with `--demo`.
pub const TICK: Duration = Duration::from_millis(400);

/// xorshift64*: deterministic enough for a demo, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True one time in `n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// What the demo asks the server to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A new snapshot for a topic.
    Snapshot(String, Value),
    /// A one-off event to every client.
    Event(&'static str, Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    Paused,
    Failed,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Failed => "failed",
        }
    }
}

struct Workflow {
    adw_id: String,
    issue: u64,
    title: &'static str,
    model: &'static str,
    template: &'static str,
    /// Index into `STEPS`.
    step: usize,
    /// Progress through the current step, 0 to 1.
    progress: f64,
    state: RunState,
    /// Ticks left before a paused workflow resumes or a failed one leaves.
    wait: u64,
    errors: u64,
    last_error: Option<&'static str>,
    started: SystemTime,
    cost: f64,
}

struct QueuePhase {
    queue_id: String,
    parent: u64,
    number: u64,
    status: &'static str,
    title: String,
    adw_id: Option<String>,
    created: SystemTime,
    updated: SystemTime,
    /// Ticks a finished phase stays listed.
    linger: u64,
}

struct Feature {
    id: u64,
    kind: &'static str,
    status: &'static str,
    priority: &'static str,
    hours: u64,
}

/// Finished workflows kept whole, for the history panel.
pub const HISTORY_KEPT: usize = 50;

/// Workflow ids in use at most: the history's, the running ones', and
/// room to spare, so no id in view is reused.
const ADW_IDS: u64 = HISTORY_KEPT as u64 + WORKFLOWS as u64 + 10;

/// What the history's analytics sum over every finished workflow, kept as
/// running totals so the items themselves need not be.
#[derive(Debug, Default)]
struct Totals {
    count: u64,
    failed: u64,
    duration: f64,
    cost: f64,
    tokens: f64,
    cache_efficiency: f64,
    by_model: BTreeMap<String, u64>,
    by_template: BTreeMap<String, u64>,
    by_status: BTreeMap<String, u64>,
}

impl Totals {
    fn add(&mut self, item: &Value) {
        let number = |key: &str| item.get(key).and_then(Value::as_f64).unwrap_or(0.0);
        let text = |key: &str| {
            let text = item.get(key).and_then(Value::as_str);
            text.unwrap_or("unknown").to_owned()
        };
        self.count += 1;
        self.failed += u64::from(text("status") == "failed");
        self.duration += number("duration_seconds");
        self.cost += number("actual_cost_total");
        self.tokens += number("total_tokens");
        self.cache_efficiency += number("cache_efficiency_percent");
        *self.by_model.entry(text("model_used")).or_default() += 1;
        *self
            .by_template
            .entry(text("workflow_template"))
            .or_default() += 1;
        *self.by_status.entry(text("status")).or_default() += 1;
    }
}

/// The demo's whole world.
pub struct Demo {
    rng: Rng,
    tick: u64,
    workflows: Vec<Workflow>,
    /// The newest finished workflows, at most `HISTORY_KEPT`: what a paged
    /// history view shows. Older ones live on only in `totals`, so a demo
    /// left on for days holds what it held after a minute.
    history: VecDeque<Value>,
    totals: Totals,
    next_issue: u64,
    /// Where this demo's workflow ids start (see `adw_id`).
    id_base: u64,
    next_history_id: u64,
    queue: Vec<QueuePhase>,
    next_queue: u64,
    queue_paused: bool,
    /// A service that is not healthy, with its status.
    unhealthy: Option<(usize, &'static str)>,
    webhooks_ok: u64,
    webhook_failures: Vec<Value>,
    last_webhook: Option<Value>,
    features: Vec<Feature>,
    /// Whether the routes list holds its optional extra routes.
    extra_routes: bool,
    qc_drift: f64,
}

thread_local! {
    /// A simulated clock, set by [`simulate_clock`]; `None`: the system's.
    static CLOCK: std::cell::Cell<Option<SystemTime>> = const { std::cell::Cell::new(None) };
}

/// Makes the demo on this thread read `at` as the time, so a benchmark can
/// play ten minutes of it without sleeping and still see its timestamps
/// and durations move as they would. `None` goes back to the system clock.
pub fn simulate_clock(at: Option<SystemTime>) {
    CLOCK.with(|clock| clock.set(at));
}

/// The demo's time: the simulated clock when one is set.
fn wall() -> SystemTime {
    CLOCK
        .with(std::cell::Cell::get)
        .unwrap_or_else(SystemTime::now)
}

fn now() -> String {
    rfc3339(wall())
}

fn ago(seconds: u64) -> String {
    rfc3339(wall() - Duration::from_secs(seconds))
}

/// Rounds to one decimal, as dashboards print percentages.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn human(seconds: u64) -> String {
    if seconds >= 3600 {
        format!("{}h {}m", seconds / 3600, seconds % 3600 / 60)
    } else {
        format!("{}m {}s", seconds / 60, seconds % 60)
    }
}

impl Demo {
    /// A world with four workflows under way (one of them paused), a full
    /// page of history, a queue and a backlog of features.
    pub fn new(seed: u64) -> Demo {
        let mut demo = Demo {
            rng: Rng(seed | 1),
            tick: 0,
            workflows: Vec::new(),
            history: VecDeque::new(),
            totals: Totals::default(),
            next_issue: 140,
            id_base: seed,
            next_history_id: 1,
            queue: Vec::new(),
            next_queue: 1,
            queue_paused: false,
            unhealthy: None,
            webhooks_ok: 16,
            webhook_failures: Vec::new(),
            last_webhook: None,
            features: Vec::new(),
            extra_routes: false,
            qc_drift: 0.0,
        };
        for i in 0..WORKFLOWS {
            let mut w = demo.new_workflow();
            w.step = demo.rng.below(4) as usize;
            if i == 1 {
                w.state = RunState::Paused;
                w.wait = 20;
            }
            demo.workflows.push(w);
        }
        // A full page of history from the start: the demo holds from its
        // first minute what it holds after a day.
        for _ in 0..HISTORY_KEPT {
            let w = demo.new_workflow();
            let failed = demo.rng.one_in(4);
            demo.record_history(&w, failed);
        }
        for _ in 0..5 {
            demo.add_queue_phase();
        }
        for id in 1..=8 {
            demo.features.push(Feature {
                id,
                kind: ["feature", "bug", "enhancement", "session"][(id % 4) as usize],
                status: ["planned", "in_progress", "completed"][(id % 3) as usize],
                priority: ["high", "medium", "low"][(id % 3) as usize],
                hours: 2 + id % 5,
            });
        }
        demo
    }

    fn new_workflow(&mut self) -> Workflow {
        self.next_issue += 1;
        Workflow {
            adw_id: self.adw_id(self.next_issue),
            issue: self.next_issue,
            title: self.rng.pick(TITLES),
            model: self.rng.pick(MODELS),
            template: self.rng.pick(TEMPLATES),
            step: 0,
            progress: 0.0,
            state: RunState::Running,
            wait: 0,
            errors: 0,
            last_error: None,
            started: wall(),
            cost: 0.0,
        }
    }

    /// The id of the workflow for `issue`. Each id is a topic of its own
    /// (`adw-state/<id>`), which the server keeps, so ids come round from
    /// a pool of `ADW_IDS`: an id is used again only once its workflow has
    /// left the history's newest items, and a demo left on for days serves
    /// as many topics as it did after an hour.
    fn adw_id(&self, issue: u64) -> String {
        let mut z = self.id_base.wrapping_add(issue % ADW_IDS);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        format!("{:08x}", (z ^ (z >> 31)) as u32)
    }

    /// Everything once, so every panel starts full.
    pub fn initial(&mut self) -> Vec<Output> {
        let mut out = vec![
            self.snapshot("routes", self.routes()),
            self.snapshot("workflows", self.workflows_panel()),
            self.snapshot("adw-monitor", self.monitor()),
            self.snapshot("queue", self.queue_panel()),
            self.snapshot("system-status", self.system_status()),
            self.snapshot("webhook-status", self.webhook_status()),
            self.snapshot("workflow-history", self.history_panel()),
            self.snapshot("planned-features", self.features_panel()),
            self.snapshot("qc-metrics", self.qc()),
        ];
        for w in &self.workflows {
            out.push(Output::Snapshot(
                format!("adw-state/{}", w.adw_id),
                Demo::state(w),
            ));
        }
        out
    }

    fn snapshot(&self, topic: &str, data: Value) -> Output {
        Output::Snapshot(topic.to_owned(), data)
    }

    /// One step of the story: what changed.
    pub fn step(&mut self) -> Vec<Output> {
        self.tick += 1;
        let mut out = Vec::new();
        self.step_workflows(&mut out);
        if self.tick.is_multiple_of(3) {
            self.step_queue();
            out.push(self.snapshot("queue", self.queue_panel()));
        }
        if self.tick.is_multiple_of(5) {
            self.step_webhooks();
            out.push(self.snapshot("webhook-status", self.webhook_status()));
        }
        if self.tick.is_multiple_of(10) {
            self.step_services();
            out.push(self.snapshot("system-status", self.system_status()));
        }
        if self.tick.is_multiple_of(25) {
            self.qc_drift = (self.rng.below(41) as f64 - 20.0) / 10.0;
            out.push(self.snapshot("qc-metrics", self.qc()));
        }
        if self.tick.is_multiple_of(50) && self.rng.one_in(2) {
            self.extra_routes = !self.extra_routes;
            out.push(self.snapshot("routes", self.routes()));
        }
        out
    }

    /// Moves one workflow on; finished ones go to history and are replaced.
    fn step_workflows(&mut self, out: &mut Vec<Output>) {
        let i = self.rng.below(self.workflows.len() as u64) as usize;
        let roll = self.rng.below(100);
        let advance = 0.2 + self.rng.below(30) as f64 / 100.0;
        let w = &mut self.workflows[i];
        let mut step_changed = false;
        let mut leaves = None;
        match w.state {
            RunState::Paused | RunState::Failed if w.wait > 0 => w.wait -= 1,
            RunState::Paused => {
                w.state = RunState::Running;
                step_changed = true;
            }
            RunState::Failed => leaves = Some(true),
            RunState::Running if roll < 2 => {
                w.state = RunState::Failed;
                w.errors += 1;
                w.last_error = Some("Tests failed: 3 of 112 (e2e/login.spec.ts)");
                w.wait = 15;
                step_changed = true;
            }
            RunState::Running if roll < 5 => {
                w.state = RunState::Paused;
                w.wait = 10 + roll * 3;
                step_changed = true;
            }
            RunState::Running => {
                if roll == 99 {
                    w.errors += 1;
                    w.last_error = Some("Lint warning treated as error; retried");
                }
                w.cost += 0.02 + advance / 10.0;
                w.progress += advance;
                if w.progress >= 1.0 {
                    w.progress = 0.0;
                    step_changed = true;
                    if w.step + 1 == STEPS.len() {
                        leaves = Some(false);
                    } else {
                        w.step += 1;
                    }
                }
            }
        }
        if let Some(failed) = leaves {
            self.finish_workflow(i, failed, out);
        } else if step_changed {
            let w = &self.workflows[i];
            out.push(Output::Snapshot(
                format!("adw-state/{}", w.adw_id),
                Demo::state(w),
            ));
            out.push(self.snapshot("workflows", self.workflows_panel()));
        }
        out.push(self.snapshot("adw-monitor", self.monitor()));
    }

    fn finish_workflow(&mut self, i: usize, failed: bool, out: &mut Vec<Output>) {
        let done = self.workflows.remove(i);
        self.record_history(&done, failed);
        // The panel of a finished workflow keeps its last state, ended.
        let mut last = Demo::state(&done);
        last["status"] = json!(if failed { "failed" } else { "completed" });
        last["end_time"] = json!(now());
        out.push(Output::Snapshot(format!("adw-state/{}", done.adw_id), last));
        out.push(Output::Event(
            "workflow_completed",
            json!({"queue_id": format!("q-{}-1", done.issue), "feature_id": done.issue % 17,
                   "phase_number": 1, "status": if failed { "failed" } else { "completed" },
                   "adw_id": done.adw_id, "timestamp": now()}),
        ));
        let fresh = self.new_workflow();
        out.push(Output::Snapshot(
            format!("adw-state/{}", fresh.adw_id),
            Demo::state(&fresh),
        ));
        self.workflows.push(fresh);
        out.push(self.snapshot("workflows", self.workflows_panel()));
        out.push(self.snapshot("workflow-history", self.history_panel()));
        let f = self.rng.below(self.features.len() as u64) as usize;
        let feature = &mut self.features[f];
        feature.status = match feature.status {
            "planned" => "in_progress",
            "in_progress" => "completed",
            _ => "planned",
        };
        out.push(self.snapshot("planned-features", self.features_panel()));
    }

    fn workflows_panel(&self) -> Value {
        let list = self.workflows.iter().map(|w| {
            // The original server's phase names, derived from directories.
            let phase = [
                "plan", "plan", "build", "build", "test", "review", "document", "ship",
            ][w.step];
            json!({"adw_id": w.adw_id, "issue_number": w.issue, "phase": phase,
                   "github_url": format!("https://github.com/{REPO}/issues/{}", w.issue)})
        });
        Value::Array(list.collect())
    }

    fn monitor(&self) -> Value {
        let count = |s: RunState| self.workflows.iter().filter(|w| w.state == s).count();
        let workflows: Vec<Value> = self.workflows.iter().map(Demo::monitor_entry).collect();
        let completed = self.totals.count - self.totals.failed;
        json!({
            "summary": {"total": workflows.len(), "running": count(RunState::Running),
                        "completed": completed, "failed": count(RunState::Failed),
                        "paused": count(RunState::Paused)},
            "workflows": workflows,
            "last_updated": now(),
        })
    }

    fn monitor_entry(w: &Workflow) -> Value {
        let elapsed = wall().duration_since(w.started).map_or(0, |d| d.as_secs());
        let progress = (w.step as f64 + 0.5) / TOTAL_PHASES as f64 * 100.0;
        json!({
            "adw_id": w.adw_id, "issue_number": w.issue, "pr_number": null,
            "issue_class": "/feature", "title": w.title, "status": w.state.as_str(),
            "current_phase": STEPS[w.step], "phase_progress": round1(progress),
            "workflow_template": w.template, "start_time": rfc3339(w.started),
            "end_time": null, "duration_seconds": elapsed,
            "github_url": format!("https://github.com/{REPO}/issues/{}", w.issue),
            "worktree_path": format!("trees/{}", w.adw_id),
            "current_cost": round1(w.cost * 100.0) / 100.0, "estimated_cost_total": 1.2,
            "error_count": w.errors, "last_error": w.last_error,
            "is_process_active": w.state == RunState::Running,
            "phases_completed": &STEPS[..w.step], "total_phases": TOTAL_PHASES,
        })
    }

    /// A workflow's `adw_state.json`, as ADW writes it.
    fn state(w: &Workflow) -> Value {
        let port = 9100 + (w.issue % 100);
        json!({
            "adw_id": w.adw_id, "issue_number": w.issue.to_string(),
            "status": w.state.as_str(),
            "branch_name": format!("feat-issue-{}-{}", w.issue, w.title.to_lowercase().replace(' ', "-")),
            "plan_file": format!("specs/issue-{}-plan.md", w.issue),
            "issue_class": "/feature", "worktree_path": format!("trees/{}", w.adw_id),
            "backend_port": port, "frontend_port": port + 100, "model_set": "base",
            "all_adws": STEPS[..=w.step].iter().map(|p| format!("adw_{p}_iso")).collect::<Vec<_>>(),
            "workflow_template": w.template, "start_time": rfc3339(w.started),
            "current_phase": STEPS[w.step],
            "phase_progress": round1((w.step as f64 + w.progress) / STEPS.len() as f64 * 100.0),
            "error_count": w.errors, "last_error": w.last_error, "nl_input": w.title,
            "github_url": format!("https://github.com/{REPO}/issues/{}", w.issue),
        })
    }

    /// A history item with every numeric field the Details view reads.
    fn record_history(&mut self, w: &Workflow, failed: bool) {
        let id = self.next_history_id;
        self.next_history_id += 1;
        let duration = 600 + self.rng.below(3000);
        let input = 60_000 + self.rng.below(90_000);
        let output = 8_000 + self.rng.below(20_000);
        let cached = input * (40 + self.rng.below(50)) / 100;
        let total = input + output;
        let actual = ((total as f64 / 1000.0 * 0.008 + 0.1) * 100.0).round() / 100.0;
        let steps_done = if failed { 3 + self.rng.below(4) } else { 8 };
        let phase_cost = |share: f64| (actual * share * 1000.0).round() / 1000.0;
        let ended = wall();
        let started = ended - Duration::from_secs(duration);
        let mut item = json!({
            "id": id, "adw_id": w.adw_id, "issue_number": w.issue, "nl_input": w.title,
            "github_url": format!("https://github.com/{REPO}/issues/{}", w.issue),
            "gh_issue_state": if failed { "open" } else { "closed" },
            "workflow_template": w.template, "model_used": w.model,
            "status": if failed { "failed" } else { "completed" },
            "start_time": rfc3339(started), "end_time": rfc3339(ended), "duration_seconds": duration,
            "created_at": rfc3339(started), "updated_at": rfc3339(ended),
            "error_message": if failed { json!("Tests failed: 3 of 112") } else { Value::Null },
            "error_category": if failed { json!("test_failure") } else { Value::Null },
            "retry_reasons": if failed { json!(["flaky e2e test"]) } else { json!([]) },
            "current_phase": STEPS[steps_done as usize - 1], "retry_count": u64::from(failed),
            "steps_completed": steps_done, "steps_total": STEPS.len(), "concurrent_workflows": WORKFLOWS,
            "worktree_reused": false, "structured_input": {"classification": "feature"},
        });
        // Two literals: one would pass `json!`'s recursion limit.
        let costs = json!({
            "input_tokens": input, "output_tokens": output, "cached_tokens": cached,
            "cache_hit_tokens": cached, "cache_miss_tokens": input - cached, "total_tokens": total,
            "cache_efficiency_percent": round1(cached as f64 * 100.0 / input as f64),
            "estimated_cost_total": 1.2, "actual_cost_total": actual,
            "estimated_cost_per_step": 0.15, "actual_cost_per_step": (actual / steps_done as f64 * 1e4).round() / 1e4,
            "cost_per_token": actual / total as f64,
            "cost_breakdown": {"estimated_total": 1.2, "actual_total": actual,
                               "by_phase": {"plan": phase_cost(0.2), "build": phase_cost(0.45),
                                            "test": phase_cost(0.2), "review": phase_cost(0.15)}},
            "phase_durations": {"plan": duration / 8, "build": duration / 2, "test": duration / 4,
                                "review": duration / 8},
            "anomaly_flags": if duration > 3000 { json!(["slow_build"]) } else { json!([]) },
            "optimization_recommendations": ["Cache dependencies between runs"],
            "similar_workflow_ids": [],
            "hour_of_day": 9 + id % 8, "day_of_week": id % 7,
            "nl_input_clarity_score": 70 + id % 25, "cost_efficiency_score": 80 + id % 15,
            "performance_score": 75 + id % 20, "quality_score": if failed { 55 } else { 90 },
        });
        if let (Value::Object(item), Value::Object(costs)) = (&mut item, costs) {
            item.extend(costs);
        }
        self.totals.add(&item);
        self.history.push_back(item);
        if self.history.len() > HISTORY_KEPT {
            self.history.pop_front();
        }
    }

    fn history_panel(&self) -> Value {
        let t = &self.totals;
        let n = t.count;
        let failed = t.failed;
        let counts = |by: &BTreeMap<String, u64>| -> Value {
            Value::Object(by.iter().map(|(k, c)| (k.clone(), json!(c))).collect())
        };
        let per = |total: f64| round1(total / n.max(1) as f64);
        let completed = n - failed;
        let total_cost = (t.cost * 100.0).round() / 100.0;
        let newest: Vec<&Value> = self.history.iter().rev().collect();
        json!({
            "workflows": newest,
            "total_count": n,
            "analytics": {
                "total_workflows": n, "completed_workflows": completed, "failed_workflows": failed,
                "avg_duration_seconds": per(t.duration),
                "success_rate_percent": round1(completed as f64 * 100.0 / n.max(1) as f64),
                "workflows_by_model": counts(&t.by_model), "workflows_by_template": counts(&t.by_template),
                "workflows_by_status": counts(&t.by_status),
                "avg_cost": (total_cost / n.max(1) as f64 * 1000.0).round() / 1000.0,
                "total_cost": total_cost,
                "avg_tokens": per(t.tokens),
                "avg_cache_efficiency": per(t.cache_efficiency),
                "avg_cost_per_completion": (total_cost / completed.max(1) as f64 * 1000.0).round() / 1000.0,
                "cost_trend_7day": -3.5, "cost_trend_30day": 1.2,
            },
        })
    }

    fn add_queue_phase(&mut self) {
        let n = self.next_queue;
        self.next_queue += 1;
        let parent = 130 + n / 3;
        let number = n % 3 + 1;
        let title = format!("Phase {number}: {}", self.rng.pick(TITLES));
        let created = wall();
        self.queue.push(QueuePhase {
            queue_id: format!("q-{parent}-{number}"),
            parent,
            number,
            status: "queued",
            title,
            adw_id: None,
            created,
            updated: created,
            linger: 0,
        });
    }

    /// Moves one queue phase on: queued → ready → running → completed, now
    /// and then failed or blocked; finished phases leave after a while.
    fn step_queue(&mut self) {
        if self.rng.one_in(12) {
            self.queue_paused = !self.queue_paused;
        }
        self.queue.retain_mut(|p| {
            if matches!(p.status, "completed" | "failed" | "blocked") {
                p.linger += 1;
            }
            p.linger < 6
        });
        while self.queue.len() < 5 {
            self.add_queue_phase();
        }
        if self.queue_paused {
            return;
        }
        let i = self.rng.below(self.queue.len() as u64) as usize;
        let roll = self.rng.below(12);
        let running_id = self.workflows[i % self.workflows.len()].adw_id.clone();
        let phase = &mut self.queue[i];
        phase.status = match (phase.status, roll) {
            ("queued", 0) => "blocked",
            ("queued", _) => "ready",
            ("ready", _) => {
                phase.adw_id = Some(running_id);
                "running"
            }
            ("running", 0 | 1) => "failed",
            ("running", _) => "completed",
            (other, _) => other,
        };
        phase.updated = wall();
    }

    fn queue_panel(&self) -> Value {
        let phases: Vec<Value> = self
            .queue
            .iter()
            .map(|p| {
                let mut phase = json!({
                    "queue_id": p.queue_id, "parent_issue": p.parent, "phase_number": p.number,
                    "issue_number": p.parent + p.number, "status": p.status,
                    "phase_data": {"title": p.title, "content": format!("Implement {}", p.title),
                                   "externalDocs": [], "predicted_patterns": ["react-form"]},
                    "created_at": rfc3339(p.created), "updated_at": rfc3339(p.updated),
                });
                if p.number > 1 {
                    phase["depends_on_phase"] = json!(p.number - 1);
                }
                if let Some(id) = &p.adw_id {
                    phase["adw_id"] = json!(id);
                }
                if p.status == "failed" {
                    phase["error_message"] = json!("workflow exited with status 1");
                }
                phase
            })
            .collect();
        json!({"phases": phases, "total": self.queue.len(), "paused": self.queue_paused})
    }

    /// A service turns degraded or fails now and then, and recovers.
    fn step_services(&mut self) {
        self.unhealthy = match self.unhealthy {
            Some(_) => None,
            None if self.rng.one_in(2) => {
                let service = self.rng.below(SERVICES.len() as u64) as usize;
                let status = if self.rng.one_in(3) {
                    "error"
                } else {
                    "degraded"
                };
                Some((service, status))
            }
            None => None,
        };
    }

    fn system_status(&self) -> Value {
        let uptime = 86_400 + self.tick * TICK.as_millis() as u64 / 1000;
        let mut services = Map::new();
        for (i, (key, name)) in SERVICES.iter().enumerate() {
            let (status, message) = match self.unhealthy {
                Some((s, "error")) if s == i => ("error", "Not responding".to_owned()),
                Some((s, _)) if s == i => {
                    ("degraded", format!("Slow: {} ms", 800 + self.tick % 400))
                }
                _ => ("healthy", "OK".to_owned()),
            };
            services.insert(
                (*key).into(),
                json!({"name": name, "status": status, "uptime_seconds": uptime,
                       "uptime_human": human(uptime), "message": message,
                       "details": {"response_time_ms": 5 + (i as u64 * 7 + self.tick) % 40}}),
            );
        }
        let healthy = SERVICES.len() - usize::from(self.unhealthy.is_some());
        let overall = match self.unhealthy {
            Some((_, "error")) => "error",
            Some(_) => "degraded",
            None => "healthy",
        };
        json!({
            "overall_status": overall,
            "timestamp": now(),
            "services": services,
            "summary": {"healthy_services": healthy, "total_services": SERVICES.len(),
                        "health_percentage": round1(healthy as f64 * 100.0 / SERVICES.len() as f64)},
        })
    }

    /// A webhook arrives; one in five fails to launch its workflow.
    fn step_webhooks(&mut self) {
        let issue = 120 + self.rng.below(40);
        if self.rng.one_in(5) {
            self.webhook_failures
                .push(json!({"issue": issue, "timestamp": now(),
                                              "error": "workflow launch timed out"}));
            if self.webhook_failures.len() > 5 {
                self.webhook_failures.remove(0);
            }
        } else {
            self.webhooks_ok += 1;
            let w = &self.workflows[0];
            self.last_webhook = Some(json!({"issue": issue, "adw_id": w.adw_id,
                                            "workflow": w.template, "timestamp": now()}));
        }
    }

    fn webhook_status(&self) -> Value {
        let failed = self.webhook_failures.len() as u64;
        let total = self.webhooks_ok + failed;
        let hours = 5.0 + self.tick as f64 * TICK.as_secs_f64() / 3600.0;
        json!({
            "status": if failed > 0 { "degraded" } else { "healthy" },
            "uptime": {"hours": round1(hours), "human": human((hours * 3600.0) as u64)},
            "stats": {"total_received": total, "successful": self.webhooks_ok, "failed": failed,
                      "success_rate": format!("{:.1}%", self.webhooks_ok as f64 * 100.0 / total.max(1) as f64)},
            "recent_failures": self.webhook_failures,
            "last_successful": self.last_webhook,
        })
    }

    fn features_panel(&self) -> Value {
        let mut stats: [Map<String, Value>; 3] = Default::default();
        for f in &self.features {
            for (map, key) in stats.iter_mut().zip([f.status, f.priority, f.kind]) {
                let n = map.get(key).and_then(Value::as_u64).unwrap_or(0);
                map.insert(key.into(), json!(n + 1));
            }
        }
        let done: Vec<&Feature> = self
            .features
            .iter()
            .filter(|f| f.status == "completed")
            .collect();
        let features: Vec<Value> = self.features.iter().map(|f| {
            let mut feature = json!({
                "id": f.id, "item_type": f.kind, "title": TITLES[f.id as usize % TITLES.len()],
                "description": format!("Planned work item {}", f.id), "status": f.status,
                "priority": f.priority, "estimated_hours": f.hours, "github_issue_number": 100 + f.id,
                "tags": ["dashboard", f.kind], "created_at": ago(86_400 * (10 - f.id)),
            });
            if f.status != "planned" {
                feature["started_at"] = json!(ago(86_400 * 2));
            }
            if f.status == "completed" {
                feature["actual_hours"] = json!(f.hours + 1);
                feature["completed_at"] = json!(ago(3600));
                feature["completion_notes"] = json!("Shipped behind a flag");
            }
            feature
        }).collect();
        let [by_status, by_priority, by_type] = stats;
        json!({
            "features": features,
            "stats": {"by_status": by_status, "by_priority": by_priority, "by_type": by_type,
                      "total_estimated_hours": self.features.iter().map(|f| f.hours).sum::<u64>(),
                      "total_actual_hours": done.iter().map(|f| f.hours + 1).sum::<u64>(),
                      "completion_rate": round1(done.len() as f64 * 100.0 / self.features.len() as f64)},
        })
    }

    fn qc(&self) -> Value {
        let d = self.qc_drift;
        let violations = if d > 0.5 {
            json!([{"file": "src/components/QueueCard.tsx", "issue": "PascalCase file in utils/", "severity": "warning"}])
        } else {
            json!([])
        };
        json!({
            "coverage": {"overall_coverage": round1(81.5 + d), "backend_coverage": round1(86.0 + d),
                         "frontend_coverage": round1(74.0 + d), "adws_coverage": 69.5, "total_tests": 412},
            "naming": {"total_files_checked": 318, "compliant_files": 312, "violations": violations,
                       "compliance_rate": 98.1},
            "file_structure": {"total_files": 318, "avg_file_size_kb": 4.2,
                               "oversized_files": [{"file": "src/api/client.ts", "size_kb": 61}],
                               "long_files": [{"file": "src/pages/History.tsx", "lines": 812}]},
            "linting": {"backend_issues": 3, "frontend_issues": 7, "backend_errors": 0,
                        "backend_warnings": 3, "frontend_errors": 1, "frontend_warnings": 6,
                        "total_issues": 10},
            "overall_score": round1(88.0 + d / 2.0),
            "last_updated": now(),
        })
    }

    fn routes(&self) -> Value {
        let mut routes = vec![
            json!({"path": "/api/v1/queue", "method": "GET", "name": "get_queue", "summary": "List the phase queue", "tags": ["queue"]}),
            json!({"path": "/api/v1/queue/pause", "method": "POST", "name": "pause_queue", "summary": "Pause or resume the queue", "tags": ["queue"]}),
            json!({"path": "/api/v1/adw-monitor", "method": "GET", "name": "adw_monitor", "summary": "Workflows under way", "tags": ["workflows"]}),
            json!({"path": "/api/v1/system-status", "method": "GET", "name": "system_status", "summary": null, "tags": ["health"]}),
            json!({"path": "/api/v1/workflows/{adw_id}", "method": "DELETE", "name": "cancel_workflow", "description": "Stop a workflow and remove its worktree", "tags": ["workflows"]}),
        ];
        if self.extra_routes {
            routes.push(json!({"path": "/api/v1/queue/{queue_id}/execute", "method": "POST", "name": "execute_phase", "summary": "Run a ready phase now", "tags": ["queue"]}));
            routes.push(json!({"path": "/api/v1/webhook/replay", "method": "PATCH", "name": "replay_webhook", "tags": ["webhooks"]}));
        }
        Value::Array(routes)
    }
}

fn publish_all(publisher: &Publisher, outputs: Vec<Output>) -> Result<(), PublishError> {
    for output in outputs {
        match output {
            Output::Snapshot(topic, data) => publisher.publish(&topic, &data)?,
            Output::Event(kind, data) => publisher.event(kind, &data)?,
        }
    }
    Ok(())
}

/// A workflow-history value of `items` finished workflows, each the
/// contract's item cut to its identity and numeric fields (about 330 bytes
/// of JSON; 50 items make the 16 KiB snapshot the compression benchmark and
/// tests use). Values vary as real ones do, so it compresses like real data
/// rather than like one item repeated.
pub fn history_fixture(items: usize, seed: u64) -> Value {
    let mut rng = Rng(seed | 1);
    let workflows: Vec<Value> = (0..items as u64)
        .map(|i| {
            let input = 20_000 + rng.below(200_000);
            let output = 2_000 + rng.below(30_000);
            let cached = rng.below(input);
            let cost = (input + output * 5) as f64 * 0.000_003;
            let steps = 1 + rng.below(9);
            json!({
                "id": 1000 + i,
                "adw_id": format!("{:08x}", rng.next() as u32),
                "issue_number": 100 + rng.below(400),
                "status": if rng.one_in(8) { "failed" } else { "completed" },
                "duration_seconds": 300 + rng.below(4000),
                "retry_count": u64::from(rng.one_in(6)),
                "steps_completed": steps,
                "steps_total": 9,
                "input_tokens": input,
                "output_tokens": output,
                "cached_tokens": cached,
                "total_tokens": input + output,
                "cache_efficiency_percent": cached * 100 / input,
                "actual_cost_total": (cost * 100.0).round() / 100.0,
                "actual_cost_per_step": (cost / steps as f64 * 1e4).round() / 1e4,
                "hour_of_day": rng.below(24),
            })
        })
        .collect();
    json!({
        "workflows": workflows,
        "total_count": items,
        "analytics": {
            "total_workflows": items, "completed_workflows": items, "failed_workflows": 0,
            "avg_duration_seconds": 1900.5, "success_rate_percent": 100.0,
            "workflows_by_model": {"claude-sonnet-4-5": items}, "workflows_by_template": {},
        },
    })
}

/// Starts the demo provider thread. It stops when the server does.
/// The demo as a provider: `--demo`.
pub struct Player {
    tick: Duration,
}

impl Player {
    pub fn configured(config: &crate::config::Config) -> Option<Box<dyn super::Provider>> {
        config
            .demo
            .then(|| Box::new(Player { tick: TICK }) as Box<dyn super::Provider>)
    }
}

impl super::Provider for Player {
    fn describe(&self) -> String {
        "demo".into()
    }

    fn origin(&self) -> String {
        "--demo".into()
    }

    /// Every ADW topic, each workflow's state among them.
    fn topics(&self) -> Vec<String> {
        let family = format!("{}*", crate::topic::adw::ADW_STATE_PREFIX);
        crate::topic::adw::TOPICS
            .iter()
            .map(|t| t.name.to_owned())
            .chain([family])
            .collect()
    }

    fn start(
        self: Box<Self>,
        publisher: Publisher,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        spawn_with(publisher, self.tick)
    }
}

pub fn spawn(publisher: Publisher) -> std::io::Result<std::thread::JoinHandle<()>> {
    spawn_with(publisher, TICK)
}

/// [`spawn`] with the story moving every `tick`: tests play minutes of it
/// in seconds.
pub fn spawn_with(
    publisher: Publisher,
    tick: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("demo".into())
        .spawn(move || {
            let seed = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            let mut demo = Demo::new(seed);
            let mut run = || -> Result<(), PublishError> {
                publish_all(&publisher, demo.initial())?;
                loop {
                    std::thread::sleep(tick);
                    publish_all(&publisher, demo.step())?;
                }
            };
            match run() {
                Err(PublishError::Closed) => debug!("demo stopped with the server"),
                Err(e) => warn!("demo stopped: {e}"),
                Ok(()) => {}
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps the demo until `finished` workflows are in its history;
    /// returns the last workflow-history value it published.
    fn run_until(demo: &mut Demo, finished: u64) -> Value {
        let mut last = Value::Null;
        while demo.totals.count < finished {
            for out in demo.step() {
                if let Output::Snapshot(topic, data) = out
                    && topic == "workflow-history"
                {
                    last = data;
                }
            }
        }
        last
    }

    /// Left on for days, the demo holds the newest `HISTORY_KEPT` items and
    /// no more, while its counts and analytics still cover every one.
    #[test]
    fn history_is_bounded_and_its_analytics_count_everything() {
        let mut demo = Demo::new(7);
        let early = run_until(&mut demo, 2 * HISTORY_KEPT as u64);
        let late = run_until(&mut demo, 4 * HISTORY_KEPT as u64);
        assert_eq!(demo.history.len(), HISTORY_KEPT);
        let items = late["workflows"].as_array().unwrap();
        assert_eq!(items.len(), HISTORY_KEPT);
        let total = late["total_count"].as_u64().unwrap();
        assert!(total >= 4 * HISTORY_KEPT as u64, "{total}");
        assert_eq!(late["analytics"]["total_workflows"], total);
        let by_status: u64 = late["analytics"]["workflows_by_status"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(by_status, total);
        // Newest first, and the newest is the last one recorded.
        let ids: Vec<u64> = items.iter().map(|i| i["id"].as_u64().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
        assert_eq!(ids[0], demo.next_history_id - 1);
        // Every topic the demo ever published to: the adw-state ones are
        // a bounded few, however long it runs.
        let mut topics = std::collections::HashSet::new();
        for _ in 0..3000 {
            for out in demo.step() {
                if let Output::Snapshot(topic, _) = out {
                    topics.insert(topic);
                }
            }
        }
        let states = topics
            .iter()
            .filter(|t| t.starts_with("adw-state/"))
            .count();
        assert!(states as u64 <= ADW_IDS, "{states} adw-state topics");
        // What a subscriber gets stops growing once the window is full.
        let size = |v: &Value| v.to_string().len() as f64;
        let growth = size(&late) / size(&early);
        assert!((0.9..1.1).contains(&growth), "grew {growth:.2}x");
    }
}
