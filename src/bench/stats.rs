//! The benchmark's arithmetic: percentiles, rates, ratios. Pure functions.

use std::time::Duration;

use serde::Serialize;

/// The `p`-th quantile (0 < p ≤ 1) of `sorted` by the nearest-rank method: the smallest
/// value with at least `p` of the values at or below it. `None` when empty.
pub fn nearest_rank<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 1.0);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latencies {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latencies {
    /// Percentiles of `samples` (sorted in place); `None` when there are none.
    pub fn of(samples: &mut [Duration]) -> Option<Self> {
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Some(Self {
            count: samples.len() as u64,
            p50_ms: ms(nearest_rank(samples, 0.50)?),
            p95_ms: ms(nearest_rank(samples, 0.95)?),
            p99_ms: ms(nearest_rank(samples, 0.99)?),
            max_ms: ms(*samples.last()?),
        })
    }
}

/// Events per second; 0 when no time passed (nothing meaningful to divide by).
pub fn per_second(events: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        events as f64 / secs
    } else {
        0.0
    }
}

/// `measured` as a fraction of `ceiling` (0.4 = 40 %); `None` without a ceiling.
pub fn ratio(measured: f64, ceiling: f64) -> Option<f64> {
    (ceiling > 0.0 && ceiling.is_finite() && measured.is_finite()).then(|| measured / ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_the_smallest_value_covering_p() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 0.50), Some(50));
        assert_eq!(nearest_rank(&v, 0.95), Some(95));
        assert_eq!(nearest_rank(&v, 0.99), Some(99));
        assert_eq!(nearest_rank(&v, 1.0), Some(100));
        // p99 of ten values is the largest: 9 values cover only 90 %.
        let ten: Vec<u32> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 0.99), Some(10));
        assert_eq!(nearest_rank(&ten, 0.5), Some(5));
        assert_eq!(nearest_rank(&ten, 0.51), Some(6));
    }

    #[test]
    fn nearest_rank_of_one_value_and_of_none() {
        assert_eq!(nearest_rank(&[7], 0.01), Some(7));
        assert_eq!(nearest_rank(&[7], 0.99), Some(7));
        assert_eq!(nearest_rank::<u32>(&[], 0.5), None);
        // Out-of-range p is clamped rather than indexing out of bounds.
        assert_eq!(nearest_rank(&[1, 2, 3], 0.0), Some(1));
        assert_eq!(nearest_rank(&[1, 2, 3], 1.5), Some(3));
    }

    #[test]
    fn latencies_sort_their_samples_first() {
        let mut samples: Vec<Duration> = (1..=200u64).rev().map(Duration::from_millis).collect();
        let l = Latencies::of(&mut samples).unwrap();
        assert_eq!(l.count, 200);
        assert_eq!(l.p50_ms, 100.0);
        assert_eq!(l.p95_ms, 190.0);
        assert_eq!(l.p99_ms, 198.0);
        assert_eq!(l.max_ms, 200.0);
        assert_eq!(Latencies::of(&mut []), None);
    }

    #[test]
    fn rates_and_ratios() {
        assert_eq!(per_second(10_000, Duration::from_secs(4)), 2_500.0);
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(ratio(4_000.0, 10_000.0), Some(0.4));
        assert_eq!(ratio(4_000.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }
}
