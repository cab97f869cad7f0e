//! Concurrency experiments behind Agora's choices, as functions the benchmark
//! (`benches/experiments.rs`) times and the smoke test runs once. Each module is one
//! experiment of docs/experiments.md:
//!
//! - [`counters`]: a shared counter under contention (relaxed atomic, mutex, per-thread
//!   shards), and the updates a load-then-store loses;
//! - [`sessions`]: the session tables' real mix of lookups, inserts and removals on a
//!   mutex, a read-write lock and a sharded map, shaped like the frontends' and the
//!   customer database's tables;
//! - [`disk`]: a line per write call against buffered writes, and one fsync per write
//!   against one per batch, on a raw file and through the store's group commit;
//! - [`handoff`]: a round trip between two tokio tasks, two OS threads, and over TCP.
//!
//! Every function that runs work on several threads splits `ops` operations among them
//! and returns the wall time of all of them, from the moment they are all released: the
//! time per operation is then the machine's, not one thread's.

pub mod counters;
pub mod disk;
pub mod handoff;
pub mod report;
pub mod sessions;

use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Runs `work(thread, ops_of_that_thread)` on `threads` threads that start together, and
/// returns the wall time from their release to the last one's end. Thread start-up is
/// not counted.
pub fn on_threads<F>(threads: usize, ops: u64, work: F) -> Duration
where
    F: Fn(usize, u64) + Sync,
{
    let threads = threads.max(1);
    let barrier = Barrier::new(threads + 1);
    let work = &work;
    let barrier = &barrier;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let share = share(ops, threads, t);
            scope.spawn(move || {
                barrier.wait();
                work(t, share);
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed()
}

/// Thread `t`'s share of `ops` split as evenly as possible among `threads`.
pub fn share(ops: u64, threads: usize, t: usize) -> u64 {
    let n = threads as u64;
    ops / n + u64::from((t as u64) < ops % n)
}

/// A small fast generator for picking keys (xorshift64*): the same sequence on every
/// run, a different one per thread.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator of thread `t`.
    pub fn for_thread(t: usize) -> Self {
        Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    /// The next number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for threads in [1, 2, 3, 8, 50] {
            for ops in [0, 1, 7, 1000, 1001] {
                let total: u64 = (0..threads).map(|t| share(ops, threads, t)).sum();
                assert_eq!(total, ops);
            }
        }
    }
}
