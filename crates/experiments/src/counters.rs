//! A counter many threads increment: what each way of sharing it costs, and what the
//! unsynchronised way loses.
//!
//! Go's version of this experiment increments a plain `int` from 50 goroutines and loses
//! updates. Safe Rust does not compile that: a `&mut u64` cannot be shared between
//! threads, and a `static mut` needs `unsafe` (forbidden in this workspace). The smallest
//! safe program with the same race is a load followed by a store on an atomic
//! ([`lost_updates`]): each step is atomic, the increment is not.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::on_threads;

/// A way of sharing a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// One `AtomicU64`, `fetch_add(1, Relaxed)`: what `crates/proto` uses.
    Atomic,
    /// A `Mutex<u64>`.
    Mutex,
    /// One atomic per thread, each on its own cache line, summed when read.
    Sharded,
}

impl Counter {
    /// Every kind, in the order of the tables.
    pub const ALL: [Counter; 3] = [Counter::Atomic, Counter::Mutex, Counter::Sharded];

    /// Its name in benchmark ids and tables.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Atomic => "relaxed atomic",
            Counter::Mutex => "mutex",
            Counter::Sharded => "per-thread shards",
        }
    }
}

/// One shard of a sharded counter, alone on its cache line (128 bytes: adjacent-line
/// prefetch pairs 64-byte lines on x86), so that threads do not fight over the line.
#[repr(align(128))]
#[derive(Default)]
struct Shard(AtomicU64);

/// `threads` threads increment a counter of `kind` `ops` times in all; returns the wall
/// time and the count read at the end (always `ops`: every kind here is exact).
pub fn increment(kind: Counter, threads: usize, ops: u64) -> (Duration, u64) {
    match kind {
        Counter::Atomic => {
            let counter = AtomicU64::new(0);
            let took = on_threads(threads, ops, |_, n| {
                for _ in 0..n {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
            (took, counter.load(Ordering::Relaxed))
        }
        Counter::Mutex => {
            let counter = Mutex::new(0u64);
            let took = on_threads(threads, ops, |_, n| {
                for _ in 0..n {
                    *counter.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                }
            });
            (took, counter.into_inner().unwrap_or_else(|p| p.into_inner()))
        }
        Counter::Sharded => {
            let shards: Vec<Shard> = (0..threads.max(1)).map(|_| Shard::default()).collect();
            let took = on_threads(threads, ops, |t, n| {
                let mine = &shards[t].0;
                for _ in 0..n {
                    mine.fetch_add(1, Ordering::Relaxed);
                }
            });
            (took, shards.iter().map(|s| s.0.load(Ordering::Relaxed)).sum())
        }
    }
}

/// `threads` threads each add one `per_thread` times with a load and then a store (the
/// shape of `counter += 1` on a plain integer); returns the final count, which falls
/// short of `threads * per_thread` by the updates lost when two threads interleave.
pub fn lost_updates(threads: usize, per_thread: u64) -> u64 {
    let counter = AtomicU64::new(0);
    let running = AtomicU64::new(0);
    on_threads(threads, per_thread * threads as u64, |_, n| {
        // Start counting only once every thread runs, so that they overlap as much as
        // the cores allow: released by the barrier, some would otherwise finish before
        // others are even scheduled, and lose nothing.
        running.fetch_add(1, Ordering::Relaxed);
        while running.load(Ordering::Relaxed) < threads as u64 {
            std::thread::yield_now();
        }
        for _ in 0..n {
            let seen = counter.load(Ordering::Relaxed);
            counter.store(seen + 1, Ordering::Relaxed);
        }
    });
    counter.into_inner()
}
