//! Hand-offs: a message there and back between two tokio tasks (on a current-thread
//! runtime and on a multi-thread one), between two OS threads over a channel, and over
//! TCP on 127.0.0.1 within one process (between two OS threads, and between two tasks of
//! one current-thread runtime). Each function returns the time of `n` round trips, after
//! its set-up.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// A way of handing a message over and getting the answer back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Two tasks of a current-thread runtime, over tokio mpsc channels: what every
    /// server does between its tasks under the default `--threads 1`.
    TasksOneThread,
    /// Two tasks of a multi-thread runtime with two workers (`--threads 0` here).
    TasksTwoWorkers,
    /// Two OS threads over std mpsc channels (the store's writer and reader threads).
    OsThreads,
    /// TCP on 127.0.0.1 between two OS threads, blocking sockets, `TCP_NODELAY`.
    TcpOsThreads,
    /// TCP on 127.0.0.1 between two tasks of one current-thread runtime.
    TcpOneThread,
}

impl Handoff {
    /// Every kind, in the order of the tables.
    pub const ALL: [Handoff; 5] = [
        Handoff::TasksOneThread,
        Handoff::TasksTwoWorkers,
        Handoff::OsThreads,
        Handoff::TcpOsThreads,
        Handoff::TcpOneThread,
    ];

    /// Its name in benchmark ids and tables.
    pub fn name(self) -> &'static str {
        match self {
            Handoff::TasksOneThread => "tokio tasks, current-thread runtime",
            Handoff::TasksTwoWorkers => "tokio tasks, multi-thread runtime (2 workers)",
            Handoff::OsThreads => "OS threads, std mpsc",
            Handoff::TcpOsThreads => "TCP 127.0.0.1, two OS threads",
            Handoff::TcpOneThread => "TCP 127.0.0.1, one current-thread runtime",
        }
    }

    /// The runtime this kind needs, if any.
    pub fn runtime(self) -> anyhow::Result<Option<Runtime>> {
        let builder = match self {
            Handoff::TasksOneThread | Handoff::TcpOneThread => {
                tokio::runtime::Builder::new_current_thread()
            }
            Handoff::TasksTwoWorkers => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            }
            Handoff::OsThreads | Handoff::TcpOsThreads => return Ok(None),
        };
        let mut builder = builder;
        Ok(Some(builder.enable_all().build().context("cannot start a runtime")?))
    }

    /// `n` round trips; `runtime` is what [`Handoff::runtime`] gave.
    pub fn round_trips(self, runtime: Option<&Runtime>, n: u64) -> anyhow::Result<Duration> {
        match (self, runtime) {
            (Handoff::TasksOneThread | Handoff::TasksTwoWorkers, Some(rt)) => tasks(rt, n),
            (Handoff::OsThreads, _) => os_threads(n),
            (Handoff::TcpOsThreads, _) => tcp_os_threads(n),
            (Handoff::TcpOneThread, Some(rt)) => tcp_tasks(rt, n),
            _ => anyhow::bail!("{} needs its runtime", self.name()),
        }
    }
}

/// Two spawned tasks: the first sends, the second echoes. Both are tasks (not the
/// `block_on` future, which runs outside the workers), so a multi-thread runtime may run
/// them on one worker or two, as it would a server's.
fn tasks(rt: &Runtime, n: u64) -> anyhow::Result<Duration> {
    let (to_echo, mut echo_in) = tokio::sync::mpsc::channel::<u64>(1);
    let (echo_out, mut back) = tokio::sync::mpsc::channel::<u64>(1);
    rt.spawn(async move {
        while let Some(x) = echo_in.recv().await {
            if echo_out.send(x).await.is_err() {
                break;
            }
        }
    });
    let pinger = rt.spawn(async move {
        let start = Instant::now();
        for i in 0..n {
            to_echo.send(i).await.ok()?;
            back.recv().await?;
        }
        Some(start.elapsed())
    });
    rt.block_on(pinger).context("ping task failed")?.context("the echo task stopped")
}

fn os_threads(n: u64) -> anyhow::Result<Duration> {
    let (to_echo, echo_in) = mpsc::channel::<u64>();
    let (echo_out, back) = mpsc::channel::<u64>();
    let echo = std::thread::spawn(move || {
        while let Ok(x) = echo_in.recv() {
            if echo_out.send(x).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    for i in 0..n {
        to_echo.send(i).context("the echo thread stopped")?;
        back.recv().context("the echo thread stopped")?;
    }
    let took = start.elapsed();
    drop(to_echo);
    echo.join().map_err(|_| anyhow::anyhow!("the echo thread panicked"))?;
    Ok(took)
}

/// The size of a message over TCP: a small frame of our protocol.
const MESSAGE: usize = 64;

fn tcp_os_threads(n: u64) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let mut buf = [0u8; MESSAGE];
        loop {
            match conn.read_exact(&mut buf) {
                Ok(()) => conn.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut conn = TcpStream::connect(addr).context("cannot connect")?;
    conn.set_nodelay(true)?;
    let mut buf = [7u8; MESSAGE];
    let start = Instant::now();
    for _ in 0..n {
        conn.write_all(&buf)?;
        conn.read_exact(&mut buf)?;
    }
    let took = start.elapsed();
    drop(conn);
    echo.join().map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    Ok(took)
}

fn tcp_tasks(rt: &Runtime, n: u64) -> anyhow::Result<Duration> {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let echo = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await?;
            conn.set_nodelay(true)?;
            let mut buf = [0u8; MESSAGE];
            while conn.read_exact(&mut buf).await.is_ok() {
                conn.write_all(&buf).await?;
            }
            std::io::Result::Ok(())
        });
        let pinger = tokio::spawn(async move {
            let mut conn = tokio::net::TcpStream::connect(addr).await?;
            conn.set_nodelay(true)?;
            let mut buf = [7u8; MESSAGE];
            let start = Instant::now();
            for _ in 0..n {
                conn.write_all(&buf).await?;
                conn.read_exact(&mut buf).await?;
            }
            std::io::Result::Ok(start.elapsed())
        });
        let took = pinger.await.context("ping task failed")??;
        echo.await.context("echo task failed")??;
        Ok(took)
    })
}
