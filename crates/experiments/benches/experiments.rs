//! The experiments of docs/experiments.md. `cargo bench -p agora-experiments` measures
//! them all (a few minutes); a name filters them (`cargo bench -p agora-experiments --
//! counters`). `cargo test` runs each once, as a smoke test. Every figure is the time of
//! one operation: one increment, one session-table operation, one line or record
//! written, one round trip, whatever the number of threads sharing the work.

use std::time::Duration;

use agora_experiments::counters::{self, Counter};
use agora_experiments::disk::{self, Fsync, Lines};
use agora_experiments::handoff::Handoff;
use agora_experiments::sessions::{self, DbTable, FrontendTable};
use criterion::{BenchmarkId, Criterion, Throughput};

/// The thread counts of the counter experiment: Go's 50 and the ones we run.
const COUNTER_THREADS: [usize; 4] = [1, 2, 8, 50];
/// Session tables: 1 thread (the servers' default `--threads 1`), 2 (`--threads 0` on our
/// two cores), 8 (a bigger host).
const SESSION_THREADS: [usize; 3] = [1, 2, 8];
/// Sessions held: scenario 3's 200 users, and `SessionCache`'s cap.
const SESSION_KEYS: [usize; 2] = [200, 100_000];

/// "1 thread", "8 threads".
fn threads_param(threads: usize) -> String {
    let s = if threads == 1 { "" } else { "s" };
    format!("{threads} thread{s}")
}

/// The parameter part of a session benchmark's id.
fn session_param(keys: usize, threads: usize) -> String {
    format!("{keys} keys, {}", threads_param(threads))
}

/// Stops the run on a failed experiment (a full disk, say). A panic rather than an exit,
/// so that the temporary directories are removed on the way out.
fn or_exit<T>(result: anyhow::Result<T>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("experiment failed: {e:#}"),
    }
}

fn counters(c: &mut Criterion) {
    let mut group = c.benchmark_group("counters");
    group.throughput(Throughput::Elements(1));
    for kind in Counter::ALL {
        for threads in COUNTER_THREADS {
            let id = BenchmarkId::new(kind.name(), threads_param(threads));
            group.bench_function(id, |b| {
                b.iter_custom(|ops| {
                    let (took, count) = counters::increment(kind, threads, ops);
                    assert_eq!(count, ops, "{} lost updates", kind.name());
                    took
                })
            });
        }
    }
    group.finish();
}

fn sessions_frontend(c: &mut Criterion) {
    let mut group = c.benchmark_group("sessions-frontend");
    group.throughput(Throughput::Elements(1));
    for keys in SESSION_KEYS {
        let tokens = sessions::frontend_tokens(keys);
        for variant in FrontendTable::ALL {
            for threads in SESSION_THREADS {
                let id = BenchmarkId::new(variant.name(), session_param(keys, threads));
                // Filled once: a sample runs the mix on the table the last one left.
                let table = sessions::frontend_table(variant, &tokens);
                group.bench_function(id, |b| {
                    b.iter_custom(|ops| sessions::run_mix(&*table, &tokens, threads, ops))
                });
            }
        }
    }
    group.finish();
}

fn sessions_customer_db(c: &mut Criterion) {
    let mut group = c.benchmark_group("sessions-customer-db");
    group.throughput(Throughput::Elements(1));
    for keys in SESSION_KEYS {
        let all = sessions::db_keys(keys);
        for variant in DbTable::ALL {
            for threads in SESSION_THREADS {
                let id = BenchmarkId::new(variant.name(), session_param(keys, threads));
                let table = sessions::db_table(variant, &all);
                group.bench_function(id, |b| {
                    b.iter_custom(|ops| sessions::run_mix(&*table, &all, threads, ops))
                });
            }
        }
    }
    group.finish();
}

/// A temporary directory on the disk the build is on (the target directory), not /tmp,
/// which may be in memory.
fn disk_dir() -> tempfile::TempDir {
    or_exit(
        tempfile::Builder::new()
            .prefix("experiments-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .map_err(anyhow::Error::from),
    )
}

fn disk_lines(c: &mut Criterion) {
    let dir = disk_dir();
    let mut group = c.benchmark_group("disk-lines");
    group.throughput(Throughput::Elements(1));
    for kind in Lines::ALL {
        group.bench_function(kind.name(), |b| {
            b.iter_custom(|n| or_exit(disk::lines(dir.path(), kind, n)))
        });
    }
    group.finish();
}

fn disk_fsync(c: &mut Criterion) {
    let dir = disk_dir();
    let mut group = c.benchmark_group("disk-fsync");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    for case in Fsync::ALL {
        let store = or_exit(case.store(dir.path()));
        group.bench_function(case.name(), |b| {
            b.iter_custom(|n| or_exit(case.write(dir.path(), store.as_ref(), n)))
        });
    }
    group.finish();
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("handoff");
    group.throughput(Throughput::Elements(1));
    for kind in Handoff::ALL {
        let runtime = or_exit(kind.runtime());
        group.bench_function(kind.name(), |b| {
            b.iter_custom(|n| or_exit(kind.round_trips(runtime.as_ref(), n)))
        });
    }
    group.finish();
}

/// The lost-update demonstration (docs/experiments.md, "Counters"): updates are meant to
/// be lost here, and how many is the finding. Printed only by `cargo bench`; under `cargo
/// test`, which runs this target once as a smoke test, the smallest case runs silently,
/// where a bare "3417 lost" read as a failure.
fn lost_updates(benching: bool) {
    if !benching {
        let counted = counters::lost_updates(2, 1_000);
        assert!(counted <= 2_000, "a load-then-store counter cannot count more than it adds");
        return;
    }
    for (threads, per_thread) in [(50, 1_000), (50, 100_000), (2, 10_000_000)] {
        let expected = threads as u64 * per_thread;
        let counted = counters::lost_updates(threads, per_thread);
        println!(
            "lost updates, as intended (a load then a store on an AtomicU64, the shape of a \
             non-atomic `+= 1`): {threads} threads x {per_thread} increments counted {counted} \
             of {expected}: {} updates lost to interleaving (docs/experiments.md, \"Counters\")",
            expected - counted
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` runs this target without it.
    lost_updates(std::env::args().any(|a| a == "--bench"));
    let mut c = Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    counters(&mut c);
    sessions_frontend(&mut c);
    sessions_customer_db(&mut c);
    disk_lines(&mut c);
    disk_fsync(&mut c);
    handoff(&mut c);
    c.final_summary();
}
