//! The drain on SIGINT/SIGTERM (`--drain`): every subscriber gets a close
//! instant, spread evenly over the window, so a thousand dashboards do not
//! come back (and each take a snapshot) in the same second; an SSE stream
//! also gets a `retry:` jittered within the window, since EventSource
//! reconnects after it rather than after its own backoff. No I/O here: the
//! loop asks what is due and closes it.

use std::time::{Duration, Instant};

/// Subscribers still to close, and when each is due.
#[derive(Debug)]
pub(super) struct Drain {
    /// By slab key and id (a key may be reused once its connection goes;
    /// the id says whose entry it is), latest first, so the next due is
    /// popped off the end.
    schedule: Vec<(Instant, usize, u64)>,
}

impl Drain {
    /// Spreads `subscribers` over `window` from `now`, in the order given
    /// (slab order: deterministic, and as good as random for who goes
    /// first): the first at once, the last one `window / n` before its end.
    pub(super) fn new(now: Instant, window: Duration, subscribers: &[(usize, u64)]) -> Drain {
        let n = subscribers.len().max(1) as u128;
        let mut schedule: Vec<(Instant, usize, u64)> = subscribers
            .iter()
            .enumerate()
            .map(|(i, &(key, id))| {
                let offset = window.as_nanos() * i as u128 / n;
                let offset = Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX));
                (now.checked_add(offset).unwrap_or(now), key, id)
            })
            .collect();
        schedule.reverse();
        Drain { schedule }
    }

    /// When the next subscriber is due, if any is left.
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.schedule.last().map(|&(at, _, _)| at)
    }

    /// Whether every subscriber has had its turn.
    pub(super) fn is_over(&self) -> bool {
        self.schedule.is_empty()
    }

    /// The subscribers (key and id) whose instant has come.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(usize, u64)> {
        let mut due = Vec::new();
        while let Some(&(at, key, id)) = self.schedule.last() {
            if at > now {
                break;
            }
            self.schedule.pop();
            due.push((key, id));
        }
        due
    }
}

/// The `retry:` (in ms) an SSE stream closed by a drain of `window` is
/// told: from 1 ms to the whole window, picked by the connection's `id`
/// (SplitMix64, a cheap and well-spread mix), so streams closed together
/// (a second signal closes all at once) still come back spread out.
/// `None` with no window: the browser's own delay, as before `--drain`.
pub(super) fn retry_ms(window: Duration, id: u64) -> Option<u64> {
    let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    if window == 0 {
        return None;
    }
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    Some(1 + z % window)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closes are spread evenly over the window, the first at once and
    /// none past the end, and come due in order, each once.
    #[test]
    fn closes_are_spread_evenly_over_the_window() {
        let now = Instant::now();
        let subscribers: Vec<(usize, u64)> = (0..10).map(|i| (i, 100 + i as u64)).collect();
        let mut drain = Drain::new(now, Duration::from_secs(10), &subscribers);
        assert_eq!(drain.next_at(), Some(now));
        assert_eq!(drain.due(now), vec![(0, 100)]);
        assert!(drain.due(now + Duration::from_millis(999)).is_empty());
        assert_eq!(drain.due(now + Duration::from_secs(1)), vec![(1, 101)]);
        assert_eq!(
            drain.due(now + Duration::from_millis(3500)),
            vec![(2, 102), (3, 103)]
        );
        assert_eq!(drain.next_at(), Some(now + Duration::from_secs(4)));
        assert_eq!(drain.due(now + Duration::from_secs(10)).len(), 6);
        assert!(drain.is_over());
        assert_eq!(drain.next_at(), None);
    }

    /// No subscribers: the drain is over at once; one subscriber is due at
    /// once; a zero window makes every close due at once.
    #[test]
    fn the_smallest_drains_end_at_once() {
        let now = Instant::now();
        assert!(Drain::new(now, Duration::from_secs(5), &[]).is_over());
        let mut one = Drain::new(now, Duration::from_secs(5), &[(7, 1)]);
        assert_eq!(one.due(now), vec![(7, 1)]);
        let mut zero = Drain::new(now, Duration::ZERO, &[(1, 1), (2, 2)]);
        assert_eq!(zero.due(now).len(), 2);
    }

    /// `retry:` values stay within the window, differ between
    /// connections, and are absent without a window; the smallest window
    /// (1 ms) gives 1.
    #[test]
    fn retry_is_jittered_within_the_window() {
        let window = Duration::from_secs(3);
        let values: Vec<u64> = (1..=50).map(|id| retry_ms(window, id).unwrap()).collect();
        assert!(
            values.iter().all(|&ms| (1..=3000).contains(&ms)),
            "{values:?}"
        );
        let mut distinct = values.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 40, "{values:?}");
        assert_eq!(retry_ms(Duration::ZERO, 1), None);
        assert_eq!(retry_ms(Duration::from_millis(1), u64::MAX), Some(1));
    }
}
