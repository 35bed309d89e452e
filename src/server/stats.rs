//! The loop's counters, shown in `/healthz`. Closes are counted once, by
//! their cause, when the connection is removed.

use std::collections::BTreeMap;

use log::info;

use std::time::{Duration, Instant};

use crate::cluster::Skip;
use crate::server::conn::Close;
use crate::wire::http::{self, Response};

/// What the operator sees every `--stats-interval`: a summary line, then
/// one line per kind of refusal and per protocol close since the last,
/// with a count, rather than a line per client.
#[derive(Debug, Default)]
pub struct Interval {
    /// Refused requests by status line, e.g. `404 Not Found`.
    refusals: BTreeMap<String, u64>,
    /// Counters at the start of the interval.
    publishes: u64,
    deliveries: u64,
    closes: CloseCounts,
}

impl Interval {
    /// Notes a response, if it is a refusal.
    pub fn note(&mut self, response: &Response) {
        let http::Status(code, reason) = response.status;
        if code >= 400 {
            *self.refusals.entry(format!("{code} {reason}")).or_default() += 1;
        }
    }

    /// Logs the interval and starts the next.
    pub fn log(
        &mut self,
        stats: &Stats,
        connections: usize,
        topics: usize,
        every: std::time::Duration,
    ) {
        let secs = every.as_secs_f64();
        info!(
            "stats: {connections} connections, {topics} topics; in the last {secs:.0}s {} publishes, {} deliveries",
            stats.publishes - self.publishes,
            stats.deliveries - self.deliveries
        );
        for (status, n) in std::mem::take(&mut self.refusals) {
            info!("refused in the last {secs:.0}s: {n} x {status}");
        }
        let reported = Close::REPORTED.iter();
        let since = stats.closes.iter().zip(self.closes.iter()).zip(reported);
        for (((cause, now), (_, then)), &reported) in since {
            let n = now.saturating_sub(then);
            if reported && n > 0 {
                info!("closed in the last {secs:.0}s: {n} x {cause}");
            }
        }
        self.publishes = stats.publishes;
        self.deliveries = stats.deliveries;
        self.closes = stats.closes.clone();
    }
}

/// Counters shown in `/healthz`.
#[derive(Debug, Default, serde::Serialize)]
pub struct Stats {
    pub accepted: u64,
    pub refused: u64,
    /// Subscriptions opened: WebSocket upgrades and SSE streams.
    pub subscribed: u64,
    pub publishes: u64,
    pub events: u64,
    /// Snapshots and events queued for a subscriber.
    pub deliveries: u64,
    pub superseded: u64,
    /// Every connection removed, by the cause it closed for.
    pub closes: CloseCounts,
    /// Publishes and broadcasts refused, by reason.
    pub refused_publishes: RefusedPublishes,
    /// WebSocket upgrades and SSE requests answered with an error (unknown
    /// topic, bad handshake, origin, token, shutdown).
    pub rejected_subscriptions: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Requests whose handler panicked (a bug): each was answered 500 and
    /// its connection closed; nothing else was affected.
    pub handler_panics: u64,
    /// Times a connection spent its read budget in one turn and was left
    /// to read later: a client sending faster than it is read.
    pub reads_deferred: u64,
    /// Entries and messages from Redis skipped, and publishes not written
    /// to it, by reason (`--redis`).
    pub redis_skipped: SkipCounts,
    /// From a publish reaching the loop to its snapshot written whole.
    #[serde(skip)]
    pub latency: Histogram,
}

/// Publishes and broadcasts refused, by reason.
#[derive(Debug, Default, serde::Serialize)]
pub struct RefusedPublishes {
    /// 422: the topic's schema refused the value.
    pub validation: u64,
    /// 401: no valid publish token.
    pub auth: u64,
    /// 413 or 503: over a size or topic limit.
    pub limit: u64,
    /// 400 or 404: bad JSON, a malformed or unknown topic.
    pub invalid: u64,
}

impl RefusedPublishes {
    /// Counts a refused publish by its status.
    pub fn count(&mut self, status: u16) {
        let counter = match status {
            422 => &mut self.validation,
            401 | 403 => &mut self.auth,
            413 | 503 => &mut self.limit,
            _ => &mut self.invalid,
        };
        *counter += 1;
    }
}

/// One counter per close cause, in [`Close::LABELS`]' order; shown in
/// `/healthz` as an object keyed by label.
#[derive(Debug, Default, Clone)]
pub struct CloseCounts([u64; Close::LABELS.len()]);

impl CloseCounts {
    /// Counts a removed connection by its cause.
    pub fn count(&mut self, cause: Close) {
        if let Some(n) = self.0.get_mut(cause.index()) {
            *n += 1;
        }
    }

    /// The count of one cause.
    pub fn of(&self, cause: Close) -> u64 {
        self.0.get(cause.index()).copied().unwrap_or(0)
    }

    /// Each cause's label and count, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Close::LABELS.iter().copied().zip(self.0.iter().copied())
    }
}

impl serde::Serialize for CloseCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// One counter per [`Skip`] reason, in [`Skip::ALL`]'s order; shown in
/// `/healthz` as an object keyed by label.
#[derive(Debug, Default, Clone)]
pub struct SkipCounts([u64; Skip::ALL.len()]);

impl SkipCounts {
    /// Counts one thing skipped for `why`.
    #[cfg(feature = "redis")]
    pub fn count(&mut self, why: Skip) {
        let index = Skip::ALL.iter().position(|&s| s == why);
        if let Some(n) = index.and_then(|i| self.0.get_mut(i)) {
            *n += 1;
        }
    }

    /// Each reason's label and count, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Skip::ALL
            .iter()
            .map(|s| s.label())
            .zip(self.0.iter().copied())
    }
}

impl serde::Serialize for SkipCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

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

    /// Each bucket's upper bound in seconds and its cumulative count.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        BUCKETS.iter().copied().zip(self.counts.iter().copied())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Where a connection reports the snapshots a write finished: each is
    /// observed as its age at `now`, from its publish.
    pub fn ages_at(&mut self, now: Instant) -> impl FnMut(Instant) + '_ {
        move |published| self.observe(now.saturating_duration_since(published))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each cause lands in the counter its label names, so `/healthz` and
    /// the log line agree.
    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(10));
        let counts: Vec<u64> = h.buckets().map(|(_, n)| n).collect();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[5], 2, "le=0.025");
        assert_eq!(counts[BUCKETS.len() - 1], 2, "le=2.5");
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn every_cause_is_counted_under_its_label() {
        let causes = [
            Close::PeerGone,
            Close::ClientClosed,
            Close::Protocol(1002),
            Close::PingTimeout,
            Close::PingFlood,
            Close::CommandFlood,
            Close::SlowConsumer,
            Close::WriteTimeout,
            Close::HandshakeTimeout,
            Close::HttpDone,
            Close::Shutdown,
            Close::Io(std::io::ErrorKind::BrokenPipe),
            Close::Internal,
            Close::TokenExpired,
        ];
        // One of each, so a cause added to `close_causes!` fails here until
        // it is listed.
        let mut labels: Vec<_> = causes.iter().map(|c| Close::LABELS[c.index()]).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Close::LABELS.len(), "{labels:?}");
        for cause in causes {
            let mut counts = CloseCounts::default();
            counts.count(cause);
            assert_eq!(counts.of(cause), 1, "{cause:?}");
            let json = serde_json::to_value(&counts).unwrap();
            assert_eq!(json[Close::LABELS[cause.index()]], 1, "{cause:?}");
            let total: u64 = json
                .as_object()
                .unwrap()
                .values()
                .filter_map(|v| v.as_u64())
                .sum();
            assert_eq!(total, 1, "{cause:?}");
        }
    }
}
