//! Runs one timed phase: every user on its own task, released together by a barrier, each
//! making its calls one after another (a closed loop), or on a fixed schedule with `--rate`
//! (an open loop, timed from each call's intended start). A ticker task feeds the progress
//! bar from a shared counter, so users never touch the bar.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Barrier;

use crate::mix::Mix;
use crate::stats::Accum;
use crate::timeline::{Timeline, timeline};
use crate::workload::{Recorder, SLOTS, Sample, Trigger, User};

/// What every user does in a phase.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// Calls drawn from the mix.
    Mix,
    /// Pings: deep (through to the databases) or not.
    Ping {
        /// Through the frontend to both databases.
        deep: bool,
    },
}

/// A phase's outcome: one accumulator per slot, how long it took, and its calls over time.
pub struct Phase {
    /// Per slot (see [`crate::workload::SLOTS`]).
    pub slots: Vec<Accum>,
    /// From the barrier's release to the last answer.
    pub duration: Duration,
    /// The barrier's release.
    pub started: Instant,
    /// Every call, user after user.
    pub samples: Vec<Sample>,
    /// The calls in 100 ms buckets.
    pub timeline: Timeline,
}

/// Runs `calls` calls on every user and gives the users back with what they measured.
/// `rate` is the total intended calls per second (open loop) or `None` (closed loop).
/// `trigger` rings when that many of the phase's calls have ended.
pub async fn phase(
    users: Vec<User>,
    mix: &Arc<Mix>,
    work: Work,
    calls: u64,
    rate: Option<f64>,
    bar: &ProgressBar,
    trigger: Option<Trigger>,
) -> anyhow::Result<(Vec<User>, Phase)> {
    let n = users.len();
    let barrier = Arc::new(Barrier::new(n + 1));
    let progress = Arc::new(AtomicU64::new(0));
    // Each user's interval under an open loop; users are spread evenly over the first one.
    let interval = rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(n as f64 / r));

    let mut tasks = Vec::with_capacity(n);
    for (i, mut user) in users.into_iter().enumerate() {
        let (barrier, progress, mix) = (barrier.clone(), progress.clone(), mix.clone());
        let trigger = trigger.clone();
        tasks.push(tokio::spawn(async move {
            let mut rec = Recorder::new(calls, progress, trigger);
            barrier.wait().await;
            let start = Instant::now();
            let offset = interval.map(|iv| iv.mul_f64(i as f64 / n as f64));
            while rec.calls() < calls {
                let made = rec.calls();
                let intended = match (interval, offset) {
                    (Some(iv), Some(offset)) => {
                        let at = start + offset + iv.mul_f64(made as f64);
                        if Instant::now() < at {
                            // Ahead of schedule. The timer wakes us up to a millisecond
                            // late; that lateness is the load generator's, not the
                            // server's, so the call is timed from the wake-up.
                            tokio::time::sleep_until(at.into()).await;
                            Some(Instant::now())
                        } else {
                            // Behind schedule because an earlier answer came late: timed
                            // from the intended start, so the wait counts.
                            Some(at)
                        }
                    }
                    _ => None,
                };
                match work {
                    Work::Mix => user.step(&mix, made + 1 == calls, intended, &mut rec).await,
                    Work::Ping { deep } => user.ping(deep, &mut rec).await,
                }
                if rec.calls() == made {
                    // The mix has nothing for this user: stop rather than spin.
                    break;
                }
            }
            (user, rec)
        }));
    }

    bar.set_length(calls * n as u64);
    bar.set_position(0);
    bar.reset_eta();
    let ticker = {
        let (bar, progress) = (bar.clone(), progress.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                bar.set_position(progress.load(Ordering::Relaxed));
            }
        })
    };

    barrier.wait().await;
    let start = Instant::now();
    let mut finished = Vec::with_capacity(n);
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(done) => finished.push(done),
            Err(e) => failure = Some(e),
        }
    }
    let duration = start.elapsed();
    ticker.abort();
    if let Some(e) = failure {
        anyhow::bail!("a simulated user's task failed: {e}");
    }
    bar.set_position(progress.load(Ordering::Relaxed));

    let mut slots: Vec<Accum> = (0..SLOTS).map(|_| Accum::new()).collect();
    let mut users = Vec::with_capacity(n);
    let mut samples = Vec::with_capacity(finished.iter().map(|(_, rec)| rec.samples.len()).sum());
    for (user, rec) in finished {
        for sample in &rec.samples {
            slots[usize::from(sample.slot)].record(sample.nanos);
        }
        for (slot, kind) in &rec.errors {
            slots[usize::from(*slot)].fail(kind);
        }
        samples.extend(rec.samples);
        users.push(user);
    }
    let timeline = timeline(samples.iter(), start, duration);
    Ok((users, Phase { slots, duration, started: start, samples, timeline }))
}

/// A progress bar on stderr (hidden when stderr is not a terminal, or with `quiet`).
pub fn bar(quiet: bool, prefix: String) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    let style = ProgressStyle::with_template(
        "{prefix:>18} {wide_bar} {pos:>7}/{len:7} calls  {per_sec:>12}  {elapsed_precise} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(prefix);
    bar
}
