//! A histogram of durations in atomics, cheap to count into from any thread:
//! the store's commit times, and the server's own figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A histogram of durations with fixed bounds (seconds), kept in atomics.
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then one for what exceeds them all (not cumulative).
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = self.bounds.partition_point(|bound| *bound < seconds);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            counts: self
                .buckets
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .collect(),
            sum: Some(self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6),
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// The buckets' upper bounds, in seconds, ascending.
    pub bounds: Vec<f64>,
    /// Per bucket, not cumulative: one per bound, then one for what exceeds
    /// them all.
    pub counts: Vec<u64>,
    /// The sum of the times counted, in seconds, when known.
    pub sum: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_goes_into_the_first_bucket_that_holds_it() {
        let histogram = Histogram::new(&[0.01, 1.0]);
        for millis in [0, 10, 11, 1_000, 1_001] {
            histogram.observe(Duration::from_millis(millis));
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts, [2, 2, 1]);
        assert_eq!(snapshot.sum, Some(2.022));
    }
}
