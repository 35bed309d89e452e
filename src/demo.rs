//! `--demo`: a provider thread that plays a small, believable ADW system
//! (workflows advancing through their phases, a queue draining, a service
//! flapping, history growing) into every ADW topic, a few updates a second,
//! so a dashboard pointed at a fresh server shows something alive.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{debug, warn};
use serde_json::{Value, json};

use crate::publisher::{PublishError, Publisher};

const PHASES: &[&str] = &["plan", "build", "test", "review", "document", "ship"];
const SERVICES: &[&str] = &["backend", "database", "github", "webhook", "worktrees"];
const PRIORITIES: &[&str] = &["high", "medium", "low"];
const WORKFLOWS: usize = 4;
const TICK: Duration = Duration::from_millis(400);

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
}

struct Workflow {
    adw_id: String,
    issue: u64,
    phase: usize,
    progress: f64,
    errors: u64,
}

struct Demo {
    rng: Rng,
    repo: &'static str,
    workflows: Vec<Workflow>,
    history: Vec<Value>,
    next_issue: u64,
    tick: u64,
    degraded: Option<usize>,
    webhooks_received: u64,
    features: Vec<(u64, &'static str)>,
}

/// Formats a time as RFC 3339 UTC, as the dashboard's server did.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn now() -> String {
    rfc3339(SystemTime::now())
}

impl Demo {
    fn new(seed: u64) -> Demo {
        let mut demo = Demo {
            rng: Rng(seed | 1),
            repo: "acme/dashboard",
            workflows: Vec::new(),
            history: Vec::new(),
            next_issue: 140,
            tick: 0,
            degraded: None,
            webhooks_received: 0,
            features: (1..=6)
                .map(|id| {
                    (
                        id,
                        ["planned", "in_progress", "completed"][(id % 3) as usize],
                    )
                })
                .collect(),
        };
        for _ in 0..WORKFLOWS {
            let wf = demo.new_workflow();
            demo.workflows.push(wf);
        }
        demo
    }

    fn new_workflow(&mut self) -> Workflow {
        self.next_issue += 1;
        Workflow {
            adw_id: format!("{:08x}", self.rng.next() as u32),
            issue: self.next_issue,
            phase: self.rng.below(3) as usize,
            progress: 0.0,
            errors: 0,
        }
    }

    fn workflows(&self) -> Value {
        Value::Array(
            self.workflows
                .iter()
                .map(|w| {
                    json!({
                        "adw_id": w.adw_id,
                        "issue_number": w.issue,
                        "phase": PHASES[w.phase],
                        "github_url": format!("https://github.com/{}/issues/{}", self.repo, w.issue),
                    })
                })
                .collect(),
        )
    }

    fn monitor(&self) -> Value {
        let workflows: Vec<Value> = self
            .workflows
            .iter()
            .map(|w| {
                let done = (w.phase as f64 + w.progress) / PHASES.len() as f64 * 100.0;
                json!({
                    "adw_id": w.adw_id,
                    "issue_number": w.issue,
                    "status": "running",
                    "current_phase": PHASES[w.phase],
                    "phase_progress": (done * 10.0).round() / 10.0,
                    "phases_completed": &PHASES[..w.phase],
                    "total_phases": PHASES.len(),
                    "is_process_active": true,
                    "error_count": w.errors,
                })
            })
            .collect();
        let completed = self.history.len();
        json!({
            "summary": {"total": workflows.len() + completed, "running": workflows.len(),
                        "completed": completed, "failed": 0, "paused": 0},
            "workflows": workflows,
            "last_updated": now(),
        })
    }

    fn state(&self, w: &Workflow) -> Value {
        json!({
            "adw_id": w.adw_id,
            "issue_number": w.issue.to_string(),
            "branch_name": format!("feat-{}-demo", w.issue),
            "model_set": "base",
            "all_adws": PHASES[..=w.phase].iter().map(|p| format!("adw_{p}_iso")).collect::<Vec<_>>(),
        })
    }

    fn queue(&self) -> Value {
        let phases: Vec<Value> = self
            .workflows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                json!({
                    "queue_id": format!("q-{}", &w.adw_id[..3]), "feature_id": w.issue % 17,
                    "phase_number": w.phase + 1, "issue_number": w.issue,
                    "status": if i == 0 { "running" } else { "queued" },
                    "current_phase": PHASES[w.phase], "depends_on_phases": [],
                    "phase_data": {}, "adw_id": w.adw_id, "priority": 50,
                    "queue_position": i + 1,
                })
            })
            .collect();
        json!({"total": phases.len(), "phases": phases, "paused": false})
    }

    fn system_status(&self) -> Value {
        let mut services = serde_json::Map::new();
        for (i, name) in SERVICES.iter().enumerate() {
            let status = if self.degraded == Some(i) {
                "degraded"
            } else {
                "healthy"
            };
            services.insert(
                (*name).into(),
                json!({"name": name, "status": status, "response_time_ms": 5 + (i as u64 * 7 + self.tick) % 40}),
            );
        }
        let healthy = SERVICES.len() - usize::from(self.degraded.is_some());
        json!({
            "overall_status": if self.degraded.is_some() { "degraded" } else { "healthy" },
            "timestamp": now(),
            "services": services,
            "summary": {"healthy_services": healthy, "total_services": SERVICES.len(),
                        "health_percentage": (healthy * 1000 / SERVICES.len()) as f64 / 10.0},
        })
    }

    fn webhook_status(&self) -> Value {
        json!({
            "status": "healthy",
            "uptime": {"seconds": self.tick * TICK.as_millis() as u64 / 1000, "started_at": null},
            "stats": {"total_received": self.webhooks_received, "successful": self.webhooks_received, "failed": 0},
            "recent_failures": [],
            "last_successful": now(),
        })
    }

    fn history(&self) -> Value {
        let newest: Vec<&Value> = self.history.iter().rev().take(50).collect();
        json!({
            "workflows": newest,
            "total_count": self.history.len(),
            "analytics": {"success_rate": 100.0, "completed": self.history.len()},
        })
    }

    fn features(&self) -> Value {
        let mut by_status = serde_json::Map::new();
        for (_, status) in &self.features {
            let n = by_status.get(*status).and_then(Value::as_u64).unwrap_or(0);
            by_status.insert((*status).into(), json!(n + 1));
        }
        let done = self
            .features
            .iter()
            .filter(|(_, s)| *s == "completed")
            .count();
        json!({
            "features": self.features.iter().map(|(id, status)| json!({
                "id": id, "title": format!("Feature {id}"), "status": status,
                "priority": PRIORITIES[(*id % 3) as usize], "item_type": "feature",
                "estimated_hours": 2 + id, "actual_hours": if *status == "completed" { json!(2 + id) } else { Value::Null },
            })).collect::<Vec<_>>(),
            "stats": {"by_status": by_status, "by_priority": {"high": 2, "medium": 2, "low": 2},
                      "by_type": {"feature": self.features.len()},
                      "total_estimated_hours": self.features.iter().map(|(id, _)| 2 + id).sum::<u64>(),
                      "total_actual_hours": self.features.iter().filter(|(_, s)| *s == "completed").map(|(id, _)| 2 + id).sum::<u64>(),
                      "completion_rate": (done * 1000 / self.features.len()) as f64 / 10.0},
        })
    }

    fn qc(&mut self) -> Value {
        let wobble = (self.rng.below(21) as f64 - 10.0) / 10.0;
        json!({
            "coverage": 82.0 + wobble, "naming": 91.5, "file_structure": 88.0,
            "linting": 95.0 - wobble.abs(), "overall_score": 89.0 + wobble / 2.0,
            "last_updated": now(),
        })
    }

    fn routes() -> Value {
        json!([
            {"path": "/api/workflows", "method": "GET", "name": "list_workflows", "summary": "List workflows", "tags": ["workflows"]},
            {"path": "/api/queue", "method": "GET", "name": "queue", "summary": "Phase queue", "tags": ["queue"]},
            {"path": "/api/queue/pause", "method": "POST", "name": "pause_queue", "tags": ["queue"]},
            {"path": "/api/system-status", "method": "GET", "name": "system_status", "tags": ["health"]},
        ])
    }

    /// Publishes everything once, so every panel starts full.
    fn publish_all(&mut self, p: &Publisher) -> Result<(), PublishError> {
        p.publish("routes", &Demo::routes())?;
        p.publish("workflows", &self.workflows())?;
        p.publish("adw-monitor", &self.monitor())?;
        p.publish("queue", &self.queue())?;
        p.publish("system-status", &self.system_status())?;
        p.publish("webhook-status", &self.webhook_status())?;
        p.publish("workflow-history", &self.history())?;
        p.publish("planned-features", &self.features())?;
        let qc = self.qc();
        p.publish("qc-metrics", &qc)?;
        for w in &self.workflows {
            p.publish(&format!("adw-state/{}", w.adw_id), &self.state(w))?;
        }
        Ok(())
    }

    /// One step of the story; publishes what changed.
    fn step(&mut self, p: &Publisher) -> Result<(), PublishError> {
        self.tick += 1;
        let i = self.rng.below(self.workflows.len() as u64) as usize;
        let w = &mut self.workflows[i];
        w.progress += 0.2 + self.rng.below(30) as f64 / 100.0;
        if self.rng.below(40) == 0 {
            w.errors += 1;
        }
        let mut phase_changed = false;
        let mut finished = None;
        if w.progress >= 1.0 {
            w.progress = 0.0;
            phase_changed = true;
            if w.phase + 1 == PHASES.len() {
                finished = Some(i);
            } else {
                w.phase += 1;
            }
        }
        if let Some(i) = finished {
            let done = self.workflows.remove(i);
            p.publish(&format!("adw-state/{}", done.adw_id), &json!({}))?;
            self.history.push(json!({
                "adw_id": done.adw_id, "issue_number": done.issue, "status": "completed",
                "phases": PHASES, "completed_at": now(),
            }));
            p.event(
                "workflow_completed",
                &json!({"queue_id": format!("q-{}", &done.adw_id[..3]), "feature_id": done.issue % 17,
                        "phase_number": PHASES.len(), "status": "completed", "adw_id": done.adw_id,
                        "timestamp": now()}),
            )?;
            let fresh = self.new_workflow();
            p.publish(&format!("adw-state/{}", fresh.adw_id), &self.state(&fresh))?;
            self.workflows.push(fresh);
            p.publish("workflow-history", &self.history())?;
            let f = self.rng.below(self.features.len() as u64) as usize;
            self.features[f].1 = match self.features[f].1 {
                "planned" => "in_progress",
                "in_progress" => "completed",
                _ => "planned",
            };
            p.publish("planned-features", &self.features())?;
        }
        if phase_changed {
            p.publish("workflows", &self.workflows())?;
            p.publish("queue", &self.queue())?;
            if finished.is_none() {
                let w = &self.workflows[i];
                p.publish(&format!("adw-state/{}", w.adw_id), &self.state(w))?;
            }
        }
        p.publish("adw-monitor", &self.monitor())?;
        if self.tick.is_multiple_of(5) {
            self.webhooks_received += 1 + self.rng.below(3);
            p.publish("webhook-status", &self.webhook_status())?;
        }
        if self.tick.is_multiple_of(10) {
            // A service flaps now and then.
            self.degraded = match self.degraded {
                Some(_) => None,
                None if self.rng.below(2) == 0 => {
                    Some(self.rng.below(SERVICES.len() as u64) as usize)
                }
                None => None,
            };
            p.publish("system-status", &self.system_status())?;
        }
        if self.tick.is_multiple_of(25) {
            let qc = self.qc();
            p.publish("qc-metrics", &qc)?;
        }
        Ok(())
    }
}

/// Starts the demo provider thread. It stops when the server does.
pub fn spawn(publisher: Publisher) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("demo".into())
        .spawn(move || {
            let seed = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            let mut demo = Demo::new(seed);
            let mut run = || -> Result<(), PublishError> {
                demo.publish_all(&publisher)?;
                loop {
                    std::thread::sleep(TICK);
                    demo.step(&publisher)?;
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

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_637_422);
        assert_eq!(rfc3339(t), "2026-11-25T20:10:22Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
