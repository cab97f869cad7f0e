//! From response times to figures. Every response time goes into an HDR histogram (three
//! significant digits, 1 ns to 1 h); runs are combined by merging histograms and adding
//! sums, never by averaging averages or percentiles. Means and maxima are exact (kept
//! beside the histogram); percentiles are the histogram's, within 0.1 %.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

const HIGHEST_NANOS: u64 = 3_600_000_000_000;

/// Response times and failures of one call (or of all calls), over one run or several.
#[derive(Debug, Clone)]
pub struct Accum {
    hist: Histogram<u64>,
    sum_nanos: u128,
    min_nanos: u64,
    max_nanos: u64,
    errors: u64,
    errors_by_kind: BTreeMap<String, u64>,
    /// Measured seconds of the runs absorbed.
    seconds: f64,
    /// Throughput and mean response time of each run absorbed.
    per_run: Vec<(f64, Option<f64>)>,
}

impl Default for Accum {
    fn default() -> Self {
        Accum::new()
    }
}

impl Accum {
    /// Empty.
    pub fn new() -> Self {
        // Bounds and precision are constants that hdrhistogram accepts.
        #[allow(clippy::unwrap_used)]
        let hist = Histogram::new_with_bounds(1, HIGHEST_NANOS, 3).unwrap();
        Accum {
            hist,
            sum_nanos: 0,
            min_nanos: u64::MAX,
            max_nanos: 0,
            errors: 0,
            errors_by_kind: BTreeMap::new(),
            seconds: 0.0,
            per_run: Vec::new(),
        }
    }

    /// Calls recorded.
    pub fn calls(&self) -> u64 {
        self.hist.len()
    }

    /// Failed calls recorded.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Records one call's response time.
    pub fn record(&mut self, nanos: u64) {
        self.hist.saturating_record(nanos.max(1));
        self.sum_nanos += u128::from(nanos);
        self.min_nanos = self.min_nanos.min(nanos);
        self.max_nanos = self.max_nanos.max(nanos);
    }

    /// Counts one failure of kind `kind` (its response time is recorded separately).
    pub fn fail(&mut self, kind: &str) {
        self.errors += 1;
        *self.errors_by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds another accumulator's calls, as if they had been recorded here.
    pub fn merge(&mut self, other: &Accum) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.sum_nanos += other.sum_nanos;
        self.min_nanos = self.min_nanos.min(other.min_nanos);
        self.max_nanos = self.max_nanos.max(other.max_nanos);
        self.errors += other.errors;
        for (kind, n) in &other.errors_by_kind {
            *self.errors_by_kind.entry(kind.clone()).or_default() += n;
        }
    }

    /// Adds one run's calls, which took `duration` of wall-clock time, and remembers the
    /// run's own throughput and mean for the spread over runs.
    pub fn absorb_run(&mut self, run: &Accum, duration: Duration) {
        self.merge(run);
        let seconds = duration.as_secs_f64();
        self.seconds += seconds;
        let throughput = if seconds > 0.0 { run.calls() as f64 / seconds } else { 0.0 };
        self.per_run.push((throughput, run.mean_us()));
    }

    /// The exact mean response time in µs, if any call was recorded.
    fn mean_us(&self) -> Option<f64> {
        (self.calls() > 0).then(|| self.sum_nanos as f64 / self.calls() as f64 / 1000.0)
    }

    /// A percentile, never above the exact maximum (the histogram answers with the top of
    /// the value's bucket).
    fn quantile_us(&self, q: f64) -> f64 {
        if self.calls() == 0 { 0.0 } else { us(self.hist.value_at_quantile(q).min(self.max_nanos)) }
    }

    /// The figures, with `seconds` of measured time (the runs absorbed, unless given).
    pub fn stats(&self, seconds: Option<f64>) -> Stats {
        let seconds = seconds.unwrap_or(self.seconds);
        let throughputs: Vec<f64> = self.per_run.iter().map(|(t, _)| *t).collect();
        let means: Vec<f64> = self.per_run.iter().filter_map(|(_, m)| *m).collect();
        let (throughput_mean, throughput_stddev) = mean_stddev(&throughputs);
        let (avg_response_mean_us, avg_response_stddev_us) = mean_stddev(&means);
        let empty = self.calls() == 0;
        Stats {
            calls: self.calls(),
            errors: self.errors,
            errors_by_kind: self.errors_by_kind.clone(),
            throughput_ops_per_s: round1(if seconds > 0.0 {
                self.calls() as f64 / seconds
            } else {
                0.0
            }),
            avg_response_us: round1(self.mean_us().unwrap_or(0.0)),
            min_response_us: if empty { 0.0 } else { us(self.min_nanos) },
            p50_response_us: self.quantile_us(0.50),
            p90_response_us: self.quantile_us(0.90),
            p95_response_us: self.quantile_us(0.95),
            p99_response_us: self.quantile_us(0.99),
            p999_response_us: self.quantile_us(0.999),
            max_response_us: if empty { 0.0 } else { us(self.max_nanos) },
            runs: self.per_run.len(),
            throughput_mean: round1(throughput_mean),
            throughput_stddev: round1(throughput_stddev),
            avg_response_mean_us: round1(avg_response_mean_us),
            avg_response_stddev_us: round1(avg_response_stddev_us),
        }
    }
}

fn us(nanos: u64) -> f64 {
    round1(nanos as f64 / 1000.0)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_stddev(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The figures of one call, of all calls, or of a floor ping, over the runs measured.
/// Field names are stable: docs/bench.md documents each.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Calls completed, failed ones included.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Failed calls by error code (or `transport: ...`).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Calls per second of measured time (all runs' calls over all runs' time).
    pub throughput_ops_per_s: f64,
    /// Exact mean response time, µs.
    pub avg_response_us: f64,
    /// Fastest response, µs.
    pub min_response_us: f64,
    /// Median response time, µs.
    pub p50_response_us: f64,
    /// 90th percentile, µs.
    pub p90_response_us: f64,
    /// 95th percentile, µs.
    pub p95_response_us: f64,
    /// 99th percentile, µs.
    pub p99_response_us: f64,
    /// 99.9th percentile, µs.
    pub p999_response_us: f64,
    /// Slowest response, µs.
    pub max_response_us: f64,
    /// Runs the figures cover.
    pub runs: usize,
    /// Mean over runs of each run's throughput.
    pub throughput_mean: f64,
    /// Sample standard deviation over runs of each run's throughput.
    pub throughput_stddev: f64,
    /// Mean over runs of each run's mean response time, µs.
    pub avg_response_mean_us: f64,
    /// Sample standard deviation over runs of each run's mean response time, µs.
    pub avg_response_stddev_us: f64,
}

/// One run, all calls together.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    /// 1-based run number.
    pub run: u32,
    /// Wall-clock time from the barrier's release to the last user's last answer, s.
    pub duration_s: f64,
    /// Calls completed.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls per second of this run.
    pub throughput_ops_per_s: f64,
    /// Exact mean response time, µs.
    pub avg_response_us: f64,
    /// Median, µs.
    pub p50_response_us: f64,
    /// 95th percentile, µs.
    pub p95_response_us: f64,
    /// 99th percentile, µs.
    pub p99_response_us: f64,
    /// Slowest, µs.
    pub max_response_us: f64,
    /// The longest time in the run with no successful call, ms.
    pub longest_gap_ms: f64,
    /// What a failure did to this run (`--fail` other than `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<crate::timeline::Failure>,
    /// The run's calls in 100 ms buckets.
    pub timeline: Vec<crate::timeline::Bucket>,
}

impl RunStats {
    /// Run `run`'s figures from its calls.
    pub fn new(run: u32, all: &Accum, duration: Duration) -> RunStats {
        let s = all.stats(Some(duration.as_secs_f64()));
        RunStats {
            run,
            duration_s: (duration.as_secs_f64() * 1000.0).round() / 1000.0,
            calls: s.calls,
            errors: s.errors,
            throughput_ops_per_s: s.throughput_ops_per_s,
            avg_response_us: s.avg_response_us,
            p50_response_us: s.p50_response_us,
            p95_response_us: s.p95_response_us,
            p99_response_us: s.p99_response_us,
            max_response_us: s.max_response_us,
            longest_gap_ms: 0.0,
            failure: None,
            timeline: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_histograms_instead_of_averaging_averages() {
        let mut fast = Accum::new();
        for _ in 0..900 {
            fast.record(100_000);
        }
        let mut slow = Accum::new();
        for _ in 0..100 {
            slow.record(10_000_000);
        }
        slow.fail("Timeout");
        let mut all = Accum::new();
        all.absorb_run(&fast, Duration::from_secs(1));
        all.absorb_run(&slow, Duration::from_secs(1));
        let s = all.stats(None);
        assert_eq!(s.calls, 1000);
        assert_eq!(s.errors, 1);
        assert_eq!(s.errors_by_kind["Timeout"], 1);
        // (900 × 100 µs + 100 × 10 ms) / 1000, not the mean of the two runs' means.
        assert_eq!(s.avg_response_us, 1090.0);
        assert_eq!(s.avg_response_mean_us, 5050.0);
        assert_eq!(s.throughput_ops_per_s, 500.0);
        assert_eq!(s.throughput_mean, 500.0);
        assert!((s.throughput_stddev - 565.7).abs() < 0.1);
        assert_eq!(s.p50_response_us, 100.0);
        assert!((s.p99_response_us - 10_000.0).abs() <= 10.0);
        assert_eq!((s.min_response_us, s.max_response_us), (100.0, 10_000.0));
    }

    #[test]
    fn empty_figures_are_zero_not_nan() {
        let s = Accum::new().stats(None);
        assert_eq!(
            (s.calls, s.avg_response_us, s.p99_response_us, s.min_response_us),
            (0, 0.0, 0.0, 0.0)
        );
        assert_eq!(mean_stddev(&[3.0]), (3.0, 0.0));
    }
}
