//! The clock every sample is taken on and the percentiles they are
//! reported as, shared by the clients, the publisher, the floor and the
//! reports (in a file of their own, so none of those names `main.rs`,
//! which names them).

use std::sync::OnceLock;
use std::time::Instant;

/// Clock shared by publisher and clients: nanoseconds since start.
pub(crate) fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The `p`th percentile of sorted samples, 0 for none.
pub(crate) fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
