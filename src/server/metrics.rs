//! `GET /metrics`: the loop's counters in the Prometheus text format
//! (version 0.0.4), written by hand: a few dozen lines do not earn a crate.
//! Names follow Prometheus conventions: `_total` counters, seconds.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::publisher::ProviderStatus;
use crate::server::stats::Stats;
use crate::topic::{Topic, Topics};

/// Upper bounds, in seconds, of the publish-to-written histogram.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A cumulative histogram of durations.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Observations at or below each bound of `BUCKETS`.
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        for (count, bound) in self.counts.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// What `/metrics` reports, gathered by the loop.
pub struct MetricsView<'a> {
    pub stats: &'a Stats,
    pub topics: &'a Topics,
    pub websockets: usize,
    pub streams: usize,
    pub providers: &'a std::collections::BTreeMap<String, ProviderStatus>,
    pub now: Instant,
}

/// One metric's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values are topic names, providers and fixed words; escaped all
/// the same, as the format asks.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text of `/metrics`.
pub fn render(v: &MetricsView) -> String {
    let mut out = String::new();
    let s = v.stats;
    header(
        &mut out,
        "statecast_connections",
        "gauge",
        "Open subscriptions by transport.",
    );
    let _ = writeln!(
        out,
        "statecast_connections{{transport=\"websocket\"}} {}",
        v.websockets
    );
    let _ = writeln!(
        out,
        "statecast_connections{{transport=\"sse\"}} {}",
        v.streams
    );
    header(
        &mut out,
        "statecast_handshakes_total",
        "counter",
        "Connections accepted and upgraded, and refused at accept.",
    );
    let _ = writeln!(
        out,
        "statecast_handshakes_total{{outcome=\"accepted\"}} {}",
        s.accepted
    );
    let _ = writeln!(
        out,
        "statecast_handshakes_total{{outcome=\"subscribed\"}} {}",
        s.upgraded
    );
    let _ = writeln!(
        out,
        "statecast_handshakes_total{{outcome=\"refused\"}} {}",
        s.refused
    );
    let _ = writeln!(
        out,
        "statecast_handshakes_total{{outcome=\"rejected\"}} {}",
        s.rejected_subscriptions
    );
    header(
        &mut out,
        "statecast_closes_total",
        "counter",
        "Connections removed, by the cause they closed for.",
    );
    let closes = serde_json::to_value(&s.closes).unwrap_or_default();
    for (cause, n) in closes.as_object().into_iter().flatten() {
        let _ = writeln!(
            out,
            "statecast_closes_total{{cause=\"{}\"}} {}",
            label(cause),
            n
        );
    }
    header(
        &mut out,
        "statecast_slow_consumer_closes_total",
        "counter",
        "Closes for a full queue or a write timeout.",
    );
    let _ = writeln!(
        out,
        "statecast_slow_consumer_closes_total {}",
        s.closes.slow_consumer + s.closes.write_timeout
    );
    header(
        &mut out,
        "statecast_refused_publishes_total",
        "counter",
        "Publishes and broadcasts refused, by reason.",
    );
    for (reason, n) in [
        ("validation", s.refused_publishes.validation),
        ("auth", s.refused_publishes.auth),
        ("limit", s.refused_publishes.limit),
        ("invalid", s.refused_publishes.invalid),
    ] {
        let _ = writeln!(
            out,
            "statecast_refused_publishes_total{{reason=\"{reason}\"}} {n}"
        );
    }
    header(
        &mut out,
        "statecast_bytes_out_total",
        "counter",
        "Bytes written to clients.",
    );
    let _ = writeln!(out, "statecast_bytes_out_total {}", s.bytes_out);
    header(
        &mut out,
        "statecast_frames_conflated_total",
        "counter",
        "Queued snapshots superseded by a newer one before they went out.",
    );
    let _ = writeln!(out, "statecast_frames_conflated_total {}", s.superseded);
    header(
        &mut out,
        "statecast_events_total",
        "counter",
        "One-off events broadcast.",
    );
    let _ = writeln!(out, "statecast_events_total {}", s.events);
    topic_metrics(&mut out, v);
    header(
        &mut out,
        "statecast_provider_errors_total",
        "counter",
        "Times a provider went into error or its error changed.",
    );
    for (name, status) in v.providers {
        let _ = writeln!(
            out,
            "statecast_provider_errors_total{{provider=\"{}\"}} {}",
            label(name),
            status.errors
        );
    }
    histogram(&mut out, &s.latency);
    out
}

/// One sample per topic of the metric `name`.
fn per_topic(
    out: &mut String,
    v: &MetricsView,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&Topic) -> String,
) {
    header(out, name, kind, help);
    for t in v.topics.iter() {
        let _ = writeln!(out, "{name}{{topic=\"{}\"}} {}", label(t.name()), value(t));
    }
}

fn topic_metrics(out: &mut String, v: &MetricsView) {
    per_topic(
        out,
        v,
        "statecast_topic_subscribers",
        "gauge",
        "Subscribers per topic.",
        |t| t.subscribers().len().to_string(),
    );
    per_topic(
        out,
        v,
        "statecast_publishes_total",
        "counter",
        "Publishes per topic.",
        |t| t.seq().to_string(),
    );
    let help = "Snapshots queued for subscribers, per topic.";
    per_topic(out, v, "statecast_deliveries_total", "counter", help, |t| {
        t.deliveries().to_string()
    });
    let help = "Time since each topic's snapshot was set.";
    per_topic(
        out,
        v,
        "statecast_snapshot_age_seconds",
        "gauge",
        help,
        |t| {
            let age = v.now.saturating_duration_since(t.published_at());
            format!("{:.3}", age.as_secs_f64())
        },
    );
}

fn histogram(out: &mut String, h: &Histogram) {
    let name = "statecast_publish_to_write_seconds";
    header(
        out,
        name,
        "histogram",
        "From a publish reaching the loop to its snapshot written whole to a subscriber's socket.",
    );
    for (bound, count) in BUCKETS.iter().zip(h.counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(10));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[5], 2, "le=0.025");
        assert_eq!(h.counts[BUCKETS.len() - 1], 2, "le=2.5");
        assert_eq!(h.count, 3);
    }
}
