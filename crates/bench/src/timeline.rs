//! A run seen over time: its calls in 100 ms buckets (successes, failures, p99), the
//! longest stretch without a successful call, and, for a run in which a server was killed,
//! how long its throughput took to come back (docs/bench.md, "Failures").

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::args::Condition;
use crate::workload::Sample;

/// The width of a bucket.
pub const BUCKET: Duration = Duration::from_millis(100);

/// Throughput counts as back once a bucket has this share of the calls per bucket before
/// the kill.
pub const RECOVERED_SHARE: f64 = 0.9;

/// The calls that ended within one bucket of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// The bucket's start, s from the run's start.
    pub t_s: f64,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed.
    pub errors: u64,
    /// 99th percentile response time of the calls that ended in it (failed ones too), µs;
    /// 0 if none did.
    pub p99_response_us: f64,
}

/// A run over time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    /// One per [`BUCKET`] from the run's start to its last answer.
    pub buckets: Vec<Bucket>,
    /// The longest time with no successful call, ms: between two successes, or from the
    /// run's start to its first success, or from its last success to its end.
    pub longest_gap_ms: f64,
    /// When that stretch began, s from the run's start.
    pub longest_gap_at_s: f64,
}

/// What a failure did to one run.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The condition measured.
    pub condition: Condition,
    /// The servers killed (SIGKILL).
    pub killed: Vec<String>,
    /// Their process ids.
    pub killed_pids: Vec<u32>,
    /// When they were killed, s from the run's start.
    pub killed_at_s: f64,
    /// Whether every killed process was found gone at the run's end.
    pub gone: bool,
    /// The replica that took over the killed one's work, where one does (a new leader);
    /// `None` when clients just moved to the other frontends.
    pub took_over: Option<String>,
    /// The run's longest time with no successful call, ms (the unavailability window).
    pub unavailable_ms: f64,
    /// Calls that failed after the kill.
    pub errors_after_kill: u64,
    /// Successful calls per second before the kill (buckets after the first).
    pub throughput_before_ops_per_s: f64,
    /// From the kill to the end of the first bucket whose successful calls were back to
    /// 90 % of the rate before it, ms; `None` if that did not happen before the run ended.
    pub recovered_after_ms: Option<f64>,
}

/// The timeline of the calls in `samples`, for a run that started at `origin` and lasted
/// `length`.
pub fn timeline<'a>(
    samples: impl Iterator<Item = &'a Sample>,
    origin: Instant,
    length: Duration,
) -> Timeline {
    let n = (length.as_nanos().div_ceil(BUCKET.as_nanos())).max(1) as usize;
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); n];
    let mut ok = vec![0u64; n];
    let mut errors = vec![0u64; n];
    let mut successes = Vec::new();
    for sample in samples {
        let at = sample.end.saturating_duration_since(origin);
        let i = ((at.as_nanos() / BUCKET.as_nanos()) as usize).min(n - 1);
        latencies[i].push(sample.nanos);
        if sample.ok {
            ok[i] += 1;
            successes.push(at);
        } else {
            errors[i] += 1;
        }
    }
    let buckets = (0..n)
        .map(|i| Bucket {
            t_s: round3((BUCKET * i as u32).as_secs_f64()),
            ok: ok[i],
            errors: errors[i],
            p99_response_us: p99_us(&mut latencies[i]),
        })
        .collect();
    successes.sort_unstable();
    let mut gap = (Duration::ZERO, Duration::ZERO);
    let mut last = Duration::ZERO;
    for at in successes.iter().copied().chain(std::iter::once(length)) {
        let stretch = at.saturating_sub(last);
        if stretch > gap.0 {
            gap = (stretch, last);
        }
        last = last.max(at);
    }
    Timeline {
        buckets,
        longest_gap_ms: round3(gap.0.as_secs_f64() * 1000.0),
        longest_gap_at_s: round3(gap.1.as_secs_f64()),
    }
}

/// A kill during a run, as the driver saw it.
#[derive(Debug, Clone)]
pub struct Kill {
    /// The condition measured.
    pub condition: Condition,
    /// The servers killed.
    pub killed: Vec<String>,
    /// Their process ids.
    pub pids: Vec<u32>,
    /// When, from the run's start.
    pub at: Duration,
    /// Whether every killed process was found gone at the run's end.
    pub gone: bool,
    /// The replica that took over, where one does.
    pub took_over: Option<String>,
}

/// What `kill` did to the run whose calls are `samples`, started at `origin`, with
/// timeline `t`.
pub fn failure(kill: Kill, t: &Timeline, samples: &[&Sample], origin: Instant) -> Failure {
    let Kill { condition, killed, pids: killed_pids, at: killed_at, gone, took_over } = kill;
    let kill_bucket = (killed_at.as_nanos() / BUCKET.as_nanos()) as usize;
    // The first bucket is the users' start, not their pace: left out when there are others.
    let before: Vec<u64> = t.buckets.iter().take(kill_bucket).skip(1).map(|b| b.ok).collect();
    let per_bucket = if before.is_empty() {
        0.0
    } else {
        before.iter().sum::<u64>() as f64 / before.len() as f64
    };
    // The last bucket is partial (the users finish one after another): never "back".
    let full = t.buckets.len().saturating_sub(1);
    let recovered_after_ms = (per_bucket > 0.0)
        .then(|| {
            t.buckets.iter().enumerate().take(full).skip(kill_bucket + 1).find_map(|(i, b)| {
                (b.ok as f64 >= RECOVERED_SHARE * per_bucket).then(|| {
                    let end = BUCKET * (i as u32 + 1);
                    round3(end.saturating_sub(killed_at).as_secs_f64() * 1000.0)
                })
            })
        })
        .flatten();
    let errors_after_kill = samples
        .iter()
        .filter(|s| !s.ok && s.end.saturating_duration_since(origin) >= killed_at)
        .count() as u64;
    Failure {
        condition,
        killed,
        killed_pids,
        killed_at_s: round3(killed_at.as_secs_f64()),
        gone,
        took_over,
        unavailable_ms: t.longest_gap_ms,
        errors_after_kill,
        throughput_before_ops_per_s: round3(per_bucket / BUCKET.as_secs_f64()),
        recovered_after_ms,
    }
}

fn p99_us(nanos: &mut [u64]) -> f64 {
    if nanos.is_empty() {
        return 0.0;
    }
    let rank = ((nanos.len() as f64 * 0.99).ceil() as usize).clamp(1, nanos.len()) - 1;
    let (_, p99, _) = nanos.select_nth_unstable(rank);
    round3(*p99 as f64 / 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(origin: Instant, at_ms: u64, ok: bool) -> Sample {
        Sample { slot: 0, ok, nanos: 1_000_000, end: origin + Duration::from_millis(at_ms) }
    }

    /// Ten calls a bucket for 0.3 s, then nothing but failures for 0.25 s, then ten a
    /// bucket again: the gap, the failures after the kill and the recovery are read off it.
    #[test]
    fn a_kill_shows_as_a_gap_failures_and_a_recovery() {
        let origin = Instant::now();
        let mut samples = Vec::new();
        for ms in (0..300).step_by(10) {
            samples.push(sample(origin, ms, true));
        }
        for ms in [310, 350, 420] {
            samples.push(sample(origin, ms, false));
        }
        for ms in (550..1000).step_by(10) {
            samples.push(sample(origin, ms, true));
        }
        let t = timeline(samples.iter(), origin, Duration::from_millis(1000));
        assert_eq!(t.buckets.len(), 10);
        assert_eq!((t.buckets[1].ok, t.buckets[1].errors), (10, 0));
        assert_eq!((t.buckets[3].ok, t.buckets[3].errors), (0, 2));
        assert_eq!(t.longest_gap_ms, 260.0, "from the success at 290 ms to the one at 550 ms");
        assert_eq!(t.longest_gap_at_s, 0.29);

        let refs: Vec<&Sample> = samples.iter().collect();
        let kill = Kill {
            condition: Condition::Frontend,
            killed: vec!["seller-server-1".into()],
            pids: vec![7],
            at: Duration::from_millis(305),
            gone: true,
            took_over: None,
        };
        let f = failure(kill, &t, &refs, origin);
        assert_eq!(f.errors_after_kill, 3);
        assert_eq!(f.throughput_before_ops_per_s, 100.0, "ten per bucket in buckets 1 and 2");
        // Bucket 5 (500-600 ms) has five successes, bucket 6 has ten: back at 700 ms.
        assert_eq!(f.recovered_after_ms, Some(395.0));
        assert_eq!(f.unavailable_ms, 260.0);
    }

    #[test]
    fn a_run_that_never_recovers_says_so() {
        let origin = Instant::now();
        let samples: Vec<Sample> =
            (0..300).step_by(10).map(|ms| sample(origin, ms, true)).collect();
        let t = timeline(samples.iter(), origin, Duration::from_millis(800));
        assert_eq!(t.longest_gap_ms, 510.0, "from the last success to the run's end");
        let refs: Vec<&Sample> = samples.iter().collect();
        let kill = Kill {
            condition: Condition::Frontend,
            killed: vec![],
            pids: vec![],
            at: Duration::from_millis(300),
            gone: true,
            took_over: None,
        };
        let f = failure(kill, &t, &refs, origin);
        assert_eq!(f.recovered_after_ms, None);
    }
}
