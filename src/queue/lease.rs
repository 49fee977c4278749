//! Processing times (pure): how long a queue's consumers hold a message, from the
//! reserve that handed it out to the delete that finished it, in a small
//! histogram the queue's state machine keeps (issue 14, "lease advice").
//!
//! - Buckets are logarithmic, four to each power of two of milliseconds (each
//!   about 19 % wide), from 0 up to 2^28 ms (3.1 days, past the longest lease):
//!   [`BUCKETS`] counters of 4 bytes, allocated on a queue's first sample, so a
//!   queue nobody deletes from with a reservation costs nothing.
//! - Recent work weighs most: when [`MAX_SAMPLES`] samples are held every bucket
//!   is halved, so the histogram describes roughly the last few thousand deletes.
//! - A quantile is the upper edge of the bucket it falls in: it errs long, which
//!   is the safe side for a lease.
//! - A reservation whose start is not known (restored by a restart, or touched
//!   past 49 days) is not sampled.
//! - Lease advice: a reserve may ask for `timeout = auto`
//!   ([`crate::queue::types::AUTO_TIMEOUT_MS`]); it gets twice the 99th
//!   percentile, at least 1 s and at most the longest lease (24 h), once
//!   [`MIN_ADVICE_SAMPLES`] deletes were measured, and the queue's
//!   `message_timeout` before that. The margin covers the bucket's width and the
//!   slow tail past p99; a consumer that needs longer touches, as with any lease.
//! - Kept with the queue's record ([`ProcessingTimes::encode`]), written like
//!   `total_pushed`: at most once a second while it changes, and when the queue
//!   stops. A crash can lose the last second's samples, nothing else.

/// Buckets of a histogram: one for 0 ms, then four per power of two.
pub const BUCKETS: usize = 1 + 4 * 28;
/// Samples held before every bucket is halved.
pub const MAX_SAMPLES: u32 = 4096;
/// The version byte of the stored form.
const ENCODING: u8 = 1;
/// Samples needed before a reserve with `timeout = auto` gets advice; until
/// then it gets the queue's `message_timeout`.
pub const MIN_ADVICE_SAMPLES: u32 = 20;
/// The advised lease: the 99th percentile of processing times times this.
pub const ADVICE_MARGIN: u64 = 2;
/// The shortest advised lease, ms (the longest is the longest lease, 24 h).
pub const MIN_ADVISED_MS: u64 = 1000;

/// A queue's processing times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingTimes {
    counts: Box<[u32; BUCKETS]>,
    samples: u32,
}

impl Default for ProcessingTimes {
    fn default() -> Self {
        ProcessingTimes {
            counts: Box::new([0; BUCKETS]),
            samples: 0,
        }
    }
}

/// The bucket of `ms`.
fn bucket(ms: u64) -> usize {
    if ms == 0 {
        return 0;
    }
    let power = 63 - ms.leading_zeros(); // 0..=63
                                         // The two bits after the leading one (fewer below 4 ms).
    let quarter = if power >= 2 {
        (ms >> (power - 2)) & 0b11
    } else {
        (ms << (2 - power)) & 0b11
    };
    let index = 1
        + 4 * usize::try_from(power).unwrap_or(usize::MAX)
        + usize::try_from(quarter).unwrap_or(0);
    index.min(BUCKETS - 1)
}

/// The largest value of bucket `index` (ms).
fn upper_edge(index: usize) -> u64 {
    if index == 0 {
        return 0;
    }
    let power = u32::try_from((index - 1) / 4).unwrap_or(u32::MAX);
    let quarter = u64::try_from((index - 1) % 4).unwrap_or(0);
    // Values 2^p * (1 + q/4) ..< 2^p * (1 + (q+1)/4).
    let start = (4 + quarter) << power >> 2;
    let next = (5 + quarter) << power >> 2;
    next.saturating_sub(1).max(start)
}

/// What a histogram says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessingSummary {
    /// Samples it holds (after halvings).
    pub samples: u32,
    /// The median, ms (the upper edge of its bucket).
    pub p50_ms: u64,
    /// The 99th percentile, ms (the upper edge of its bucket).
    pub p99_ms: u64,
    /// The lease `timeout = auto` gives now; `None` before enough samples.
    pub advised_ms: Option<u64>,
}

impl ProcessingTimes {
    /// Counts one message processed in `ms`.
    pub fn record(&mut self, ms: u64) {
        if self.samples >= MAX_SAMPLES {
            self.samples = 0;
            for count in self.counts.iter_mut() {
                *count /= 2;
                self.samples += *count;
            }
        }
        self.counts[bucket(ms)] += 1;
        self.samples += 1;
    }

    /// Samples held.
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// The smallest bucket edge at or below which a fraction `q` (0..=1) of the
    /// samples fall; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.samples == 0 {
            return None;
        }
        // ceil(q * samples), at least 1, in integers: q is a fixed fraction here.
        let wanted = (q.clamp(0.0, 1.0) * f64::from(self.samples)).ceil();
        let mut seen = 0u32;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if f64::from(seen) >= wanted.max(1.0) {
                return Some(upper_edge(index));
            }
        }
        Some(upper_edge(BUCKETS - 1))
    }

    /// The stored form: a version byte, then (bucket u8, count u32 BE) for each
    /// bucket that has samples.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENCODING];
        for (index, &count) in self.counts.iter().enumerate() {
            if count > 0 {
                out.push(u8::try_from(index).unwrap_or(u8::MAX));
                out.extend_from_slice(&count.to_be_bytes());
            }
        }
        out
    }

    /// Reads [`ProcessingTimes::encode`]'s form; `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&version, mut rest) = bytes.split_first()?;
        if version != ENCODING || rest.len() % 5 != 0 {
            return None;
        }
        let mut times = ProcessingTimes::default();
        while let [index, a, b, c, d, tail @ ..] = rest {
            let count = u32::from_be_bytes([*a, *b, *c, *d]);
            let slot = times.counts.get_mut(usize::from(*index))?;
            *slot = count;
            times.samples = times.samples.checked_add(count)?;
            rest = tail;
        }
        Some(times)
    }

    /// The lease a reserve with `timeout = auto` gets: the 99th percentile
    /// times [`ADVICE_MARGIN`], within [`MIN_ADVISED_MS`]..=`max_ms`; `None`
    /// before [`MIN_ADVICE_SAMPLES`] samples.
    pub fn advised_lease_ms(&self, max_ms: u64) -> Option<u64> {
        if self.samples < MIN_ADVICE_SAMPLES {
            return None;
        }
        let p99 = self.quantile(0.99)?;
        Some(
            p99.saturating_mul(ADVICE_MARGIN)
                .clamp(MIN_ADVISED_MS, max_ms.max(MIN_ADVISED_MS)),
        )
    }

    /// Median and 99th percentile, and the advised lease (up to `max_ms`);
    /// `None` without samples.
    pub fn summary(&self, max_ms: u64) -> Option<ProcessingSummary> {
        Some(ProcessingSummary {
            samples: self.samples,
            p50_ms: self.quantile(0.5)?,
            p99_ms: self.quantile(0.99)?,
            advised_ms: self.advised_lease_ms(max_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_whose_edge_is_at_or_above_it_and_within_a_quarter() {
        for ms in (0..5000u64).chain([86_400_000, 1 << 27, (1 << 28) - 1]) {
            let edge = upper_edge(bucket(ms));
            assert!(edge >= ms, "{ms} -> {edge}");
            assert!(edge <= ms + ms / 4 + 1, "{ms} -> {edge}");
        }
        // Buckets are in value order.
        for index in 1..BUCKETS {
            assert!(upper_edge(index) >= upper_edge(index - 1), "{index}");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_the_bucket_edges_of_the_ranks() {
        let mut times = ProcessingTimes::default();
        assert_eq!(times.summary(86_400_000), None);
        // 98 quick ones (100 ms) and 2 slow ones (10 s).
        for _ in 0..98 {
            times.record(100);
        }
        times.record(10_000);
        times.record(10_000);
        let summary = times.summary(86_400_000).unwrap();
        assert_eq!(summary.samples, 100);
        assert_eq!(summary.p50_ms, upper_edge(bucket(100)));
        assert_eq!(summary.p99_ms, upper_edge(bucket(10_000)));
        assert!((100..=125).contains(&summary.p50_ms), "{summary:?}");
        assert!((10_000..=12_500).contains(&summary.p99_ms), "{summary:?}");
    }

    #[test]
    fn the_stored_form_reads_back_and_anything_else_is_refused() {
        let mut times = ProcessingTimes::default();
        assert_eq!(
            ProcessingTimes::decode(&times.encode()),
            Some(times.clone())
        );
        for ms in [0, 7, 7, 300, 86_400_000] {
            times.record(ms);
        }
        let stored = times.encode();
        assert_eq!(stored.len(), 1 + 4 * 5);
        assert_eq!(ProcessingTimes::decode(&stored), Some(times));
        assert_eq!(ProcessingTimes::decode(&[]), None);
        assert_eq!(ProcessingTimes::decode(&[2]), None);
        assert_eq!(ProcessingTimes::decode(&[1, 0, 0, 0]), None);
        assert_eq!(
            ProcessingTimes::decode(&[1, 200, 0, 0, 0, 1]),
            None,
            "no such bucket"
        );
        let overflow = [1, 1, 255, 255, 255, 255, 2, 0, 0, 0, 1];
        assert_eq!(ProcessingTimes::decode(&overflow), None);
    }

    #[test]
    fn advice_waits_for_enough_samples_then_is_twice_the_p99_within_bounds() {
        let mut times = ProcessingTimes::default();
        for _ in 0..MIN_ADVICE_SAMPLES - 1 {
            times.record(3_000);
        }
        assert_eq!(times.advised_lease_ms(86_400_000), None);
        times.record(3_000);
        let p99 = times.quantile(0.99).unwrap();
        assert_eq!(times.advised_lease_ms(86_400_000), Some(2 * p99));
        assert_eq!(
            times.advised_lease_ms(5_000),
            Some(5_000),
            "at most the bound"
        );
        let mut quick = ProcessingTimes::default();
        for _ in 0..MIN_ADVICE_SAMPLES {
            quick.record(3);
        }
        assert_eq!(quick.advised_lease_ms(86_400_000), Some(MIN_ADVISED_MS));
    }

    #[test]
    fn old_samples_fade_so_the_histogram_follows_the_work() {
        let mut times = ProcessingTimes::default();
        for _ in 0..MAX_SAMPLES {
            times.record(50);
        }
        // The work slows down: after a few halvings the new time dominates.
        for _ in 0..3 * MAX_SAMPLES {
            times.record(5_000);
        }
        assert!(times.samples() <= MAX_SAMPLES);
        let summary = times.summary(86_400_000).unwrap();
        assert!(summary.p50_ms >= 5_000, "{summary:?}");
    }
}
