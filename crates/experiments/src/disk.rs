//! Writes to disk: a line per write call against buffered writes, and one fsync per
//! write against one per batch, on a raw file and through the store's group commit
//! (`crates/store`). Everything is written under a directory the caller gives (the
//! benchmark uses a temporary one on the target directory's disk, not a tmpfs) and
//! removed afterwards.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use agora_store::{Durability, Store, StoreConfig};
use anyhow::Context;

/// How lines reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// `writeln!` straight on the `File`: a write system call for each piece of the
    /// format string (three here), as Go's unbuffered `fmt.Fprintln` does in one.
    Writeln,
    /// The line formatted first, then one `write_all`: one system call per line.
    WriteAll,
    /// `writeln!` on a `BufWriter` (8 KiB): one system call per ~8 KiB.
    Buffered,
}

impl Lines {
    /// Every kind, in the order of the tables.
    pub const ALL: [Lines; 3] = [Lines::Writeln, Lines::WriteAll, Lines::Buffered];

    /// Its name in benchmark ids and tables.
    pub fn name(self) -> &'static str {
        match self {
            Lines::Writeln => "writeln! on File",
            Lines::WriteAll => "one write_all per line",
            Lines::Buffered => "BufWriter",
        }
    }
}

/// Writes `n` numbered lines to a new file in `dir` the way `kind` says; returns the
/// time until the last byte was handed to the kernel (no fsync).
pub fn lines(dir: &Path, kind: Lines, n: u64) -> anyhow::Result<Duration> {
    let path = dir.join("lines.txt");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let start = Instant::now();
    match kind {
        Lines::Writeln => {
            let mut file = file;
            for i in 0..n {
                writeln!(file, "line {i}")?;
            }
        }
        Lines::WriteAll => {
            let mut file = file;
            let mut line = String::new();
            for i in 0..n {
                line.clear();
                use std::fmt::Write as _;
                let _ = writeln!(line, "line {i}");
                file.write_all(line.as_bytes())?;
            }
        }
        Lines::Buffered => {
            let mut out = BufWriter::new(file);
            for i in 0..n {
                writeln!(out, "line {i}")?;
            }
            out.flush()?;
        }
    }
    let took = start.elapsed();
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(took)
}

/// The size of a record in [`records`]: about a small write job's WAL frame payload.
pub const RECORD: usize = 128;

/// Appends `n` records of [`RECORD`] bytes to a new file in `dir`, calling `sync_data`
/// (fdatasync) after every `batch` of them and after the last; returns the time taken.
pub fn records(dir: &Path, n: u64, batch: u64) -> anyhow::Result<Duration> {
    let path = dir.join("records.bin");
    let mut file =
        File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let record = [b'r'; RECORD];
    let batch = batch.max(1);
    let start = Instant::now();
    for i in 1..=n {
        file.write_all(&record)?;
        if i % batch == 0 || i == n {
            file.sync_data()?;
        }
    }
    let took = start.elapsed();
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(took)
}

/// What an fsync experiment writes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// [`records`], fsync after each.
    FileEach,
    /// [`records`], fsync after every 64.
    FileBatch,
    /// The store as the servers run it by default: no fsync; one write at a time.
    StoreProcess,
    /// The store with `--durability machine`, one write at a time: a commit (and an
    /// fsync) each.
    StoreMachineEach,
    /// The store with `--durability machine`, 64 writes in flight: they share commits.
    StoreMachineShared,
}

impl Fsync {
    /// Every case, in the order of the tables.
    pub const ALL: [Fsync; 5] = [
        Fsync::FileEach,
        Fsync::FileBatch,
        Fsync::StoreProcess,
        Fsync::StoreMachineEach,
        Fsync::StoreMachineShared,
    ];

    /// Its name in benchmark ids and tables.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::FileEach => "file, fsync per record",
            Fsync::FileBatch => "file, fsync per 64 records",
            Fsync::StoreProcess => "store, --durability process, 1 write in flight",
            Fsync::StoreMachineEach => "store, --durability machine, 1 write in flight",
            Fsync::StoreMachineShared => "store, --durability machine, 64 writes in flight",
        }
    }

    /// The store this case writes through, opened in `dir`, if it uses one.
    pub fn store(self, dir: &Path) -> anyhow::Result<Option<StoreBench>> {
        let durability = match self {
            Fsync::FileEach | Fsync::FileBatch => return Ok(None),
            Fsync::StoreProcess => Durability::Process,
            Fsync::StoreMachineEach | Fsync::StoreMachineShared => Durability::Machine,
        };
        StoreBench::open(dir, durability).map(Some)
    }

    /// Writes `n` records (rows) in `dir` (or through `store`, from [`Fsync::store`]);
    /// returns the time taken.
    pub fn write(self, dir: &Path, store: Option<&StoreBench>, n: u64) -> anyhow::Result<Duration> {
        match (self, store) {
            (Fsync::FileEach, _) => records(dir, n, 1),
            (Fsync::FileBatch, _) => records(dir, n, 64),
            (Fsync::StoreProcess | Fsync::StoreMachineEach, Some(store)) => store.insert(n, 1),
            (Fsync::StoreMachineShared, Some(store)) => store.insert(n, 64),
            _ => anyhow::bail!("{} needs its store", self.name()),
        }
    }
}

/// A store in `dir` with one table, and the current-thread runtime it is used from (as
/// the servers run by default).
pub struct StoreBench {
    store: Store,
    runtime: tokio::runtime::Runtime,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, v BLOB NOT NULL);";

impl StoreBench {
    /// Opens a store at `dir/store.db` with `durability`.
    pub fn open(dir: &Path, durability: Durability) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a runtime")?;
        let mut config = StoreConfig::new(dir.join("store.db"));
        config.durability = durability;
        // `Store::write` of the Process durability spawns on the current runtime.
        let store = runtime.block_on(async { Store::open(&config, SCHEMA) })?;
        Ok(StoreBench { store, runtime })
    }

    /// Inserts `n` rows of [`RECORD`] bytes, each its own write job, keeping `in_flight`
    /// jobs waiting at all times (1: each waits for the last one's commit; more: as many
    /// clients, each sending its next write once the last is acknowledged, so jobs queue
    /// up while a commit runs and share the next one); returns the time taken.
    pub fn insert(&self, n: u64, in_flight: usize) -> anyhow::Result<Duration> {
        let in_flight = in_flight.max(1) as u64;
        self.runtime.block_on(async {
            let start = Instant::now();
            let mut jobs = tokio::task::JoinSet::new();
            let mut sent = 0;
            loop {
                while sent < n && (jobs.len() as u64) < in_flight {
                    let store = self.store.clone();
                    jobs.spawn(async move {
                        store
                            .write(|c| {
                                c.execute("INSERT INTO rows (v) VALUES (?1)", [&[b'r'; RECORD][..]])
                                    .map_err(agora_store::StoreError::from)
                            })
                            .await
                            .and_then(|inserted| inserted)
                    });
                    sent += 1;
                }
                let Some(joined) = jobs.join_next().await else { break };
                joined
                    .context("a write task failed")?
                    .map_err(|e| anyhow::anyhow!("write refused: {e}"))?;
            }
            Ok(start.elapsed())
        })
    }
}
