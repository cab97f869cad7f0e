//! A TCP proxy that a test can cut and heal: the network fault between two real
//! processes (or two replicas in one process) without touching either.
//!
//! It forwards bytes opaquely, so TLS between the two ends goes through untouched. A cut
//! drops every open connection at once (both ends see the connection break) and closes
//! each new one as soon as it is accepted, which a client sees as a failed handshake:
//! to the peers the link is down, while the proxy keeps its port so that a heal restores
//! the same address. Everything the proxy runs stops when it is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long the proxy waits to reach its target for a new connection; past it the
/// connection is closed, as an unreachable target would close it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A running proxy on `127.0.0.1:0` in front of one target address.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    target: String,
    /// True while the link is cut; every connection task watches it.
    cut: watch::Sender<bool>,
    /// Connections closed on accept because the link was cut.
    refused: Arc<AtomicU64>,
    /// Connections let through.
    passed: Arc<AtomicU64>,
    /// Stops the accept loop and every connection when the proxy is dropped.
    _stop: DropGuard,
}

impl Proxy {
    /// Starts a proxy to `target`, listening on a free port of 127.0.0.1.
    pub async fn start(target: impl Into<String>) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let target = target.into();
        let (cut, _) = watch::channel(false);
        let stop = CancellationToken::new();
        let (refused, passed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counts = (refused.clone(), passed.clone());
        tokio::spawn(accept(listener, target.clone(), cut.clone(), counts, stop.clone()));
        Ok(Proxy { addr, target, cut, refused, passed, _stop: stop.drop_guard() })
    }

    /// Where the proxy listens: give this to whoever should reach the target through it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Breaks the link: every open connection is dropped, new ones are closed on accept.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Restores the link for new connections (the dropped ones stay dropped).
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// Whether the link is cut now.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    /// How many connections the proxy has closed on accept because the link was cut:
    /// how often the dialling side tried to get through meanwhile.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// How many connections the proxy has let through since it started.
    pub fn connections(&self) -> u64 {
        self.passed.load(Ordering::Relaxed)
    }
}

async fn accept(
    listener: TcpListener,
    target: String,
    cut: watch::Sender<bool>,
    (refused, passed): (Arc<AtomicU64>, Arc<AtomicU64>),
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((inbound, _)) = accepted else {
            // Out of descriptors, or a connection reset before it was accepted: let the
            // moment pass rather than spin, unless the proxy is going away.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(10)) => continue,
            }
        };
        // Subscribed before the check, so a cut that comes between the two still
        // reaches this connection.
        let watch = cut.subscribe();
        if *watch.borrow() {
            drop(inbound);
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        passed.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(forward(inbound, target.clone(), watch, stop.clone()));
    }
}

/// Carries one connection's bytes both ways until either end closes, the link is cut
/// or the proxy stops; then drops both sockets.
async fn forward(
    mut inbound: TcpStream,
    target: String,
    mut cut: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    let carry = async {
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target));
        let Ok(Ok(mut outbound)) = connect.await else { return };
        // Raft's heartbeats are small writes: no Nagle delay on either leg.
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        let _ = outbound.shutdown().await;
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = cut.wait_for(|cut| *cut) => {}
        _ = carry => {}
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    async fn within<T>(step: impl Future<Output = T>) -> T {
        tokio::time::timeout(DEADLINE, step).await.expect("within the deadline")
    }

    /// A server that echoes every byte back, on 127.0.0.1:0.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Whether a round trip through `stream` works.
    async fn round_trip(stream: &mut TcpStream) -> bool {
        if stream.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 4];
        within(stream.read_exact(&mut buf)).await.is_ok() && &buf == b"ping"
    }

    #[tokio::test]
    async fn bytes_pass_until_a_cut_then_pass_again_after_a_heal() {
        let proxy = Proxy::start(echo().await.to_string()).await.expect("proxy");
        let mut open = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(round_trip(&mut open).await);

        proxy.cut();
        assert!(proxy.is_cut());
        // The open connection is dropped: the client reads its end.
        let mut buf = [0u8; 1];
        let read = within(open.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // A new one is closed before anything goes through.
        let mut new = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(!round_trip(&mut new).await);

        proxy.heal();
        let mut healed = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(round_trip(&mut healed).await);
    }

    #[tokio::test]
    async fn a_dropped_proxy_closes_its_connections_and_its_port() {
        let proxy = Proxy::start(echo().await.to_string()).await.expect("proxy");
        let addr = proxy.addr();
        let mut open = TcpStream::connect(addr).await.expect("connect");
        assert!(round_trip(&mut open).await);
        drop(proxy);
        let mut buf = [0u8; 1];
        let read = within(open.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // The accept loop has stopped once connecting is refused.
        within(async {
            while TcpStream::connect(addr).await.is_ok() {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn an_unreachable_target_closes_the_connection() {
        // A port that was free a moment ago: nothing listens there.
        let free = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = free.local_addr().expect("addr").to_string();
        drop(free);
        let proxy = Proxy::start(target).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(!round_trip(&mut stream).await);
    }
}
