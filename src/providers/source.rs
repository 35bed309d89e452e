//! What every polling provider (`--poll`, `--exec`) shares: fetch on an
//! interval, publish only what changed, keep the last snapshot and back off
//! on failure, log only when the state changes, report health for `/healthz`.

use std::time::Duration;

use log::{info, warn};

use crate::publisher::{PublishError, Publisher, set_status};

/// One provider's identity and schedule.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its name in logs and `/healthz`, e.g. `poll queue`.
    pub name: String,
    /// What it fetches, for log lines (a URL, a command).
    pub what: String,
    pub topic: String,
    pub interval: Duration,
}

impl Source {
    /// Runs `fetch` every interval in a thread of its own until the server
    /// stops. `fetch` returns valid JSON or a one-line error.
    pub fn spawn(
        self,
        publisher: Publisher,
        mut fetch: impl FnMut() -> Result<String, String> + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                let Source {
                    name,
                    what,
                    topic,
                    interval,
                } = self;
                let registry = publisher.providers().clone();
                let mut last: Option<String> = None;
                // The last body the server refused, so it is logged once and
                // not sent again every interval.
                let mut refused: Option<String> = None;
                let mut failures = 0u32;
                loop {
                    let was_ok = failures == 0;
                    match fetch() {
                        Ok(body) => {
                            if !was_ok {
                                info!("{name}: {what} recovered after {failures} failures");
                            }
                            failures = 0;
                            let changed = last.as_deref() != Some(body.as_str())
                                && refused.as_deref() != Some(body.as_str());
                            if changed {
                                match publisher.publish_json(&topic, &body) {
                                    Ok(()) => {
                                        last = Some(body);
                                        refused = None;
                                    }
                                    Err(PublishError::Closed) => return,
                                    Err(e) => {
                                        warn!("{name}: {what}: {e}; keeping the last snapshot");
                                        set_status(&registry, &name, Some(e.to_string()));
                                        refused = Some(body);
                                    }
                                }
                            }
                            if refused.is_none() {
                                set_status(&registry, &name, None);
                            }
                        }
                        Err(error) => {
                            if was_ok {
                                warn!("{name}: {what} failed: {error}; keeping the last snapshot");
                            }
                            failures = failures.saturating_add(1);
                            set_status(&registry, &name, Some(error));
                        }
                    }
                    // Back off while failing: double the interval per
                    // failure, at most 16 times it and never a minute more.
                    let wait = if failures == 0 {
                        interval
                    } else {
                        (interval * 2u32.pow(failures.min(4)))
                            .min(interval + Duration::from_secs(60))
                    };
                    std::thread::sleep(wait);
                    if publisher.is_closed() {
                        return;
                    }
                }
            })
    }
}
