//! A fixed-size, lock-free latency histogram (nanoseconds) shared by every worker.
//!
//! One histogram for the whole run keeps memory flat at any concurrency and any run length,
//! so the peak RSS the bench reports is the library's, not the meter's. Values below 128 ns
//! get their own bucket; above that each power of two is split into 64 buckets, so a
//! reported quantile is within 1/128 (0.8%) of the true value.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Exact buckets below this value.
const LINEAR: u64 = 128;
/// Buckets per power of two above `LINEAR`.
const PER_OCTAVE: u64 = 64;
/// Octaves from 2^7 up to 2^64.
const OCTAVES: u64 = 64 - 7;
const BUCKETS: usize = (LINEAR + OCTAVES * PER_OCTAVE) as usize;

pub struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Bucket of a value: its top 7 significant bits and its octave.
fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - u64::from(v.leading_zeros()); // >= 7
    let shift = msb - 6; // v >> shift lies in [64, 128)
    (LINEAR + (shift - 1) * PER_OCTAVE + ((v >> shift) - PER_OCTAVE)) as usize
}

/// The middle of the values that fall in bucket `i`.
fn representative(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = (i - LINEAR) / PER_OCTAVE + 1;
    let top = (i - LINEAR) % PER_OCTAVE + PER_OCTAVE;
    (top << shift) + ((1u64 << shift) - 1) / 2
}

impl Histogram {
    pub fn record(&self, nanos: u64) {
        self.counts[bucket(nanos)].fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The value at quantile `q` in 0..=1 (nanoseconds), 0 when nothing was recorded.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Relaxed);
            if seen >= rank {
                return representative(i);
            }
        }
        representative(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_precise() {
        let mut prev = 0;
        for v in (0..3_000_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let b = bucket(v);
            assert!(b == prev || b == prev + 1 || v > 3_000_000, "gap at {v}");
            assert!(b < BUCKETS);
            prev = b;
            let r = representative(b);
            assert!(r.abs_diff(v) as f64 <= v as f64 / 128.0 + 0.5, "{v} -> {r}");
        }
    }

    #[test]
    fn quantiles() {
        let h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.01);
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.01);
    }
}
