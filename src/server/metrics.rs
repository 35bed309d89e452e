//! `GET /metrics`: the loop's counters in the Prometheus text format
//! (version 0.0.4), written by hand: the format itself is some 50 of this
//! file's 290 lines (`header`, `label`, `metric`, `with`, `bare`,
//! `histogram`), which do not earn a crate; the rest names the metrics.
//! Names follow Prometheus conventions: `_total` counters, seconds.

use std::fmt::Write as _;
use std::time::Instant;

use crate::publisher::ProviderStatus;
use crate::server::conn::Close;
use crate::server::stats::{Histogram, Stats};
use crate::topic::{Topic, Topics};

/// What `/metrics` reports, gathered by the loop.
pub struct MetricsView<'a> {
    pub stats: &'a Stats,
    pub topics: &'a Topics,
    pub websockets: usize,
    pub streams: usize,
    pub providers: &'a std::collections::BTreeMap<String, ProviderStatus>,
    pub now: Instant,
    /// Under `--tls-cert`: the certificate's notAfter (Unix seconds) and
    /// the reloads that took and that failed.
    pub tls: Option<(i64, (u64, u64))>,
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

/// One metric: its header, then a sample per `(labels, value)`; labels
/// are written as given (`transport="sse"`), empty for none.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    header(out, name, kind, help);
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// A sample with one label.
fn with(key: &str, value: &str, n: impl ToString) -> (String, String) {
    (format!("{key}=\"{}\"", label(value)), n.to_string())
}

/// A sample without labels.
fn bare(n: impl ToString) -> (String, String) {
    (String::new(), n.to_string())
}

/// The text of `/metrics`.
pub fn render(v: &MetricsView) -> String {
    let mut out = String::new();
    connection_metrics(&mut out, v);
    traffic_metrics(&mut out, v.stats);
    topic_metrics(&mut out, v);
    let per_provider = |value: fn(&ProviderStatus) -> u64| -> Vec<_> {
        v.providers
            .iter()
            .map(|(name, status)| with("provider", name, value(status)))
            .collect()
    };
    let help = "1 while a provider (or the link to Redis) works, 0 while it fails.";
    let up = per_provider(|s| u64::from(s.ok));
    metric(&mut out, "statecast_provider_up", "gauge", help, &up);
    let help = "Times a provider went into error or its error changed.";
    let errors = per_provider(|s| s.errors);
    metric(
        &mut out,
        "statecast_provider_errors_total",
        "counter",
        help,
        &errors,
    );
    compression_metrics(&mut out, v);
    if let Some((not_after, reloads)) = v.tls {
        tls_metrics(&mut out, not_after, reloads);
    }
    histogram(&mut out, &v.stats.latency);
    out
}

/// The certificate served, so an alert can fire before it expires, and
/// whether reloading it works.
fn tls_metrics(out: &mut String, not_after: i64, (ok, failed): (u64, u64)) {
    let help =
        "When the TLS certificate new connections get expires (its notAfter), in Unix seconds.";
    metric(
        out,
        "statecast_tls_certificate_expiry_seconds",
        "gauge",
        help,
        &[bare(not_after)],
    );
    let help = "Reloads of the TLS certificate pair (SIGHUP or a file changed) that took, and that failed.";
    let results = [with("result", "ok", ok), with("result", "failed", failed)];
    metric(
        out,
        "statecast_tls_reloads_total",
        "counter",
        help,
        &results,
    );
}

/// What permessage-deflate costs: one compression per message that a
/// subscriber with the extension needed, never one per subscriber.
fn compression_metrics(out: &mut String, v: &MetricsView) {
    let c = &v.topics.compressor;
    let help = "Messages compressed for permessage-deflate subscribers (once each).";
    metric(
        out,
        "statecast_compressed_messages_total",
        "counter",
        help,
        &[bare(c.messages)],
    );
    metric(
        out,
        "statecast_compress_seconds_total",
        "counter",
        "Time spent compressing those messages.",
        &[bare(c.busy.as_secs_f64())],
    );
}

fn connection_metrics(out: &mut String, v: &MetricsView) {
    let s = v.stats;
    let transports = [
        with("transport", "websocket", v.websockets),
        with("transport", "sse", v.streams),
    ];
    metric(
        out,
        "statecast_connections",
        "gauge",
        "Open subscriptions by transport.",
        &transports,
    );
    let outcomes = [
        with("outcome", "accepted", s.accepted),
        with("outcome", "subscribed", s.subscribed),
        with("outcome", "refused", s.refused),
        with("outcome", "rejected", s.rejected_subscriptions),
    ];
    let help = "Connections accepted, subscribed, refused at accept, and subscriptions rejected.";
    metric(
        out,
        "statecast_handshakes_total",
        "counter",
        help,
        &outcomes,
    );
    metric(
        out,
        "statecast_handler_panics_total",
        "counter",
        "Requests whose handler panicked: answered 500, their connection closed.",
        &[bare(s.handler_panics)],
    );
    metric(
        out,
        "statecast_reads_deferred_total",
        "counter",
        "Times a connection spent its read budget in one turn and was read later.",
        &[bare(s.reads_deferred)],
    );
    let causes: Vec<_> = s
        .closes
        .iter()
        .map(|(cause, n)| with("cause", cause, n))
        .collect();
    let help = "Connections removed, by the cause they closed for.";
    metric(out, "statecast_closes_total", "counter", help, &causes);
    let slow = [bare(
        s.closes.of(Close::SlowConsumer) + s.closes.of(Close::WriteTimeout),
    )];
    let help = "Closes for a full queue or a write timeout.";
    metric(
        out,
        "statecast_slow_consumer_closes_total",
        "counter",
        help,
        &slow,
    );
}

fn traffic_metrics(out: &mut String, s: &Stats) {
    let r = &s.refused_publishes;
    let reasons = [
        with("reason", "validation", r.validation),
        with("reason", "auth", r.auth),
        with("reason", "limit", r.limit),
        with("reason", "invalid", r.invalid),
    ];
    let help = "Publishes and broadcasts refused, by reason.";
    metric(
        out,
        "statecast_refused_publishes_total",
        "counter",
        help,
        &reasons,
    );
    let help = "Bytes written to clients.";
    metric(
        out,
        "statecast_bytes_out_total",
        "counter",
        help,
        &[bare(s.bytes_out)],
    );
    let help = "Queued snapshots superseded by a newer one before they went out.";
    metric(
        out,
        "statecast_frames_conflated_total",
        "counter",
        help,
        &[bare(s.superseded)],
    );
    let skipped: Vec<_> = s
        .redis_skipped
        .iter()
        .map(|(reason, n)| with("reason", reason, n))
        .collect();
    let help =
        "Entries and messages from Redis skipped, and publishes not written to it, by reason.";
    metric(
        out,
        "statecast_redis_skipped_total",
        "counter",
        help,
        &skipped,
    );
    let help = "One-off events broadcast.";
    metric(
        out,
        "statecast_events_total",
        "counter",
        help,
        &[bare(s.events)],
    );
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
    let samples: Vec<_> = v
        .topics
        .iter()
        .map(|t| with("topic", t.name(), value(t)))
        .collect();
    metric(out, name, kind, help, &samples);
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
    for (bound, count) in h.buckets() {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{name}_sum {}", h.sum());
    let _ = writeln!(out, "{name}_count {}", h.count());
}
