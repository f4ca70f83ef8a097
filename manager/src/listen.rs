//! Connection admission in front of the gRPC server: unauthenticated connections must
//! not lock anyone out.
//!
//! ```text
//!  TcpListener ──accept──▶ Admission::offer(src) ──refuse──▶ closed at once (counted)
//!                               │ admit (maybe evicting the oldest pending one)
//!                               ▼
//!                     handshake task: TLS (or, plaintext, the first byte) within the
//!                     deadline, else closed ──▶ channel ──▶ tonic (HTTP/2, services)
//! ```
//!
//! - Every connection has a handshake deadline (`handshake_timeout`): one that never
//!   completes its TLS handshake (plaintext: never sends a byte) is closed then.
//! - Pending (not yet authenticated) connections are bounded per source address
//!   (`max_pending_per_source`: the newest beyond it is refused) and in total
//!   (`max_pending`: the oldest pending one is evicted, so a flood from many sources
//!   churns its own slots while a real client's handshake, milliseconds long, gets
//!   through).
//! - All connections together stay under `max_connections`, computed from the
//!   descriptor limit minus a reserve for the store, logs and the metrics listener;
//!   pending ones are a fraction of that, so authenticated agents and operators always
//!   find descriptors.
//!
//! - Every accepted socket has TCP keepalive ([`KEEPALIVE_IDLE`], then probes every
//!   [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_PROBES`] of them) and `TCP_USER_TIMEOUT`, so a
//!   peer that died without a FIN (power loss, a cut link) is closed; the HTTP/2 server
//!   pings idle connections too (server.rs).
//!
//! [`Admission`] is the pure bookkeeping (unit-tested); the rest is the I/O edge.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Descriptors kept back from connections: the store's files, logs, the listeners,
/// syslog, OTLP, and some slack.
pub const FD_RESERVE: u64 = 64;

/// Idle time before the first TCP keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Time between TCP keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes before the kernel closes the connection.
pub const KEEPALIVE_PROBES: u32 = 3;
/// Longest time sent data may stay unacknowledged before the kernel closes.
pub const USER_TIMEOUT: Duration = Duration::from_secs(30);

/// TCP keepalive and user timeout on an accepted socket: dead peers are noticed.
fn keep_alive(sock: &TcpStream) -> io::Result<()> {
    let s = socket2::SockRef::from(sock);
    s.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    s.set_tcp_user_timeout(Some(USER_TIMEOUT))
}

/// Admission limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionOptions {
    /// Time a connection has to finish its TLS handshake (plaintext: send its first
    /// byte).
    pub handshake_timeout: Duration,
    /// Pending connections allowed from one source address.
    pub max_pending_per_source: usize,
    /// Pending connections allowed in total (the oldest is evicted beyond).
    pub max_pending: usize,
    /// Connections allowed in total, pending or not.
    pub max_connections: usize,
}

impl AdmissionOptions {
    /// Limits for a process that may open `nofile` descriptors: connections get
    /// `nofile - FD_RESERVE`, pending ones a quarter of that (at least 16), one source at
    /// most 32 pending.
    pub fn for_fd_limit(nofile: u64, handshake_timeout: Duration) -> Self {
        let conns =
            usize::try_from(nofile.saturating_sub(FD_RESERVE).max(32)).unwrap_or(usize::MAX);
        let pending = (conns / 4).max(16);
        AdmissionOptions {
            handshake_timeout,
            max_pending_per_source: 32.min(pending),
            max_pending: pending,
            max_connections: conns,
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its source has `max_pending_per_source` handshakes in progress.
    SourceBusy,
    /// `max_connections` are open and none is pending to evict.
    Full,
}

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start its handshake under this id; close the pending connection `evict` first.
    Admit {
        /// Connection id.
        id: u64,
        /// Oldest pending connection to close to make room.
        evict: Option<u64>,
    },
    /// Close it at once.
    Refuse(Refusal),
}

/// The bookkeeping of open connections. Pure: ids, addresses and counts.
#[derive(Debug, Default)]
pub struct Admission {
    /// Limits.
    opts: Option<AdmissionOptions>,
    /// Every open connection: id -> (source, authenticated).
    conns: HashMap<u64, (IpAddr, bool)>,
    /// Pending connections by id (ids grow, so the first is the oldest).
    pending: BTreeMap<u64, IpAddr>,
    /// Pending connections per source.
    per_source: HashMap<IpAddr, usize>,
    /// Next id.
    next: u64,
}

impl Admission {
    /// Empty table with these limits.
    pub fn new(opts: AdmissionOptions) -> Self {
        Admission {
            opts: Some(opts),
            ..Default::default()
        }
    }

    fn opts(&self) -> AdmissionOptions {
        self.opts
            .unwrap_or_else(|| AdmissionOptions::for_fd_limit(1024, Duration::from_secs(10)))
    }

    /// Connections open (pending or not).
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    /// Connections still in their handshake.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A connection from `src` arrived.
    pub fn offer(&mut self, src: IpAddr) -> Verdict {
        let o = self.opts();
        if self.per_source.get(&src).copied().unwrap_or(0) >= o.max_pending_per_source {
            return Verdict::Refuse(Refusal::SourceBusy);
        }
        let mut evict = None;
        if self.pending.len() >= o.max_pending || self.conns.len() >= o.max_connections {
            match self.pending.keys().next().copied() {
                Some(oldest) => {
                    self.release(oldest);
                    evict = Some(oldest);
                }
                None => return Verdict::Refuse(Refusal::Full),
            }
        }
        self.next += 1;
        let id = self.next;
        self.conns.insert(id, (src, false));
        self.pending.insert(id, src);
        *self.per_source.entry(src).or_default() += 1;
        Verdict::Admit { id, evict }
    }

    /// Connection `id` finished its handshake: it no longer counts as pending.
    pub fn authenticated(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.1 = true;
        }
        self.unpend(id);
    }

    /// Connection `id` closed (or was evicted): forget it. Idempotent.
    pub fn release(&mut self, id: u64) {
        self.unpend(id);
        self.conns.remove(&id);
    }

    fn unpend(&mut self, id: u64) {
        if let Some(src) = self.pending.remove(&id) {
            if let Some(n) = self.per_source.get_mut(&src) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&src);
                }
            }
        }
    }
}

/// Counters of the admission edge, for metrics and logs.
#[derive(Debug, Default)]
pub struct AdmissionStats {
    /// Connections accepted by the kernel.
    pub accepted: AtomicU64,
    /// Refused at once: their source had too many handshakes in progress.
    pub refused_source: AtomicU64,
    /// Refused at once: the connection limit was reached.
    pub refused_full: AtomicU64,
    /// Pending connections closed to make room for newer ones.
    pub evicted: AtomicU64,
    /// Closed at the handshake deadline.
    pub handshake_timeouts: AtomicU64,
    /// Handshakes that failed (bad certificate, not TLS, reset).
    pub handshake_failures: AtomicU64,
    /// Accept failed for want of descriptors (EMFILE/ENFILE).
    pub fd_exhausted: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections in their handshake now.
    pub pending: AtomicU64,
}

/// The process-wide admission counters.
pub static STATS: AdmissionStats = AdmissionStats {
    accepted: AtomicU64::new(0),
    refused_source: AtomicU64::new(0),
    refused_full: AtomicU64::new(0),
    evicted: AtomicU64::new(0),
    handshake_timeouts: AtomicU64::new(0),
    handshake_failures: AtomicU64::new(0),
    fd_exhausted: AtomicU64::new(0),
    open: AtomicU64::new(0),
    pending: AtomicU64::new(0),
};

type Table = Arc<Mutex<Admission>>;

fn lock(t: &Table) -> MutexGuard<'_, Admission> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

fn publish(a: &Admission) {
    STATS.open.store(a.open() as u64, Ordering::Relaxed);
    STATS.pending.store(a.pending() as u64, Ordering::Relaxed);
}

/// Releases a connection's admission slot when the connection is dropped.
#[derive(Debug)]
struct Slot {
    /// The table.
    table: Table,
    /// Connection id.
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut a = lock(&self.table);
        a.release(self.id);
        publish(&a);
    }
}

/// An admitted TCP connection; closing it frees its slot.
#[derive(Debug)]
pub struct Tracked {
    /// The socket.
    stream: TcpStream,
    /// Its admission slot.
    _slot: Slot,
}

impl Connected for Tracked {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.stream.local_addr().ok(),
            remote_addr: self.stream.peer_addr().ok(),
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Connections for tonic, TLS or plaintext.
pub type Incoming<IO> = ReceiverStream<Result<IO, io::Error>>;

/// Accepts on `listener` under `opts`, TLS-handshakes each connection with `acceptor`,
/// and yields the authenticated ones. Runs until the returned stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    opts: AdmissionOptions,
) -> Incoming<TlsStream<Tracked>> {
    spawn_accept(listener, opts, move |t: Tracked| {
        let acceptor = acceptor.clone();
        async move { acceptor.accept(t).await }
    })
}

/// Plaintext (`--insecure`): a connection is admitted once it sends its first byte.
pub fn plain_incoming(listener: TcpListener, opts: AdmissionOptions) -> Incoming<Tracked> {
    spawn_accept(listener, opts, |t: Tracked| async move {
        let mut b = [0u8; 1];
        let n = t.stream.peek(&mut b).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before sending anything",
            ));
        }
        Ok(t)
    })
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

fn spawn_accept<IO, F, Fut>(
    listener: TcpListener,
    opts: AdmissionOptions,
    handshake: F,
) -> Incoming<IO>
where
    IO: Send + 'static,
    F: Fn(Tracked) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = io::Result<IO>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<IO, io::Error>>(64);
    let table: Table = Arc::new(Mutex::new(Admission::new(opts)));
    let cancels: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>> = Arc::default();
    let handshake = Arc::new(handshake);
    tokio::spawn(async move {
        let mut last_warn: Option<tokio::time::Instant> = None;
        loop {
            let (sock, peer): (TcpStream, SocketAddr) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        if is_fd_exhaustion(&e) {
                            STATS.fd_exhausted.fetch_add(1, Ordering::Relaxed);
                            let now = tokio::time::Instant::now();
                            if last_warn.is_none_or(|t| now - t > Duration::from_secs(10)) {
                                last_warn = Some(now);
                                tracing::warn!(error = %e, "accept: out of file descriptors");
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        } else {
                            tracing::debug!(error = %e, "accept failed");
                        }
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            STATS.accepted.fetch_add(1, Ordering::Relaxed);
            let verdict = {
                let mut a = lock(&table);
                let v = a.offer(peer.ip());
                publish(&a);
                v
            };
            let (id, evict) = match verdict {
                Verdict::Admit { id, evict } => (id, evict),
                Verdict::Refuse(r) => {
                    let c = match r {
                        Refusal::SourceBusy => &STATS.refused_source,
                        Refusal::Full => &STATS.refused_full,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    drop(sock);
                    continue;
                }
            };
            let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
            {
                let mut c = cancels.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(e) = evict {
                    STATS.evicted.fetch_add(1, Ordering::Relaxed);
                    if let Some(s) = c.remove(&e) {
                        let _ = s.send(());
                    }
                }
                c.insert(id, cancel_tx);
            }
            let _ = sock.set_nodelay(true);
            if let Err(e) = keep_alive(&sock) {
                tracing::debug!(%peer, error = %e, "cannot set TCP keepalive");
            }
            let tracked = Tracked {
                stream: sock,
                _slot: Slot {
                    table: table.clone(),
                    id,
                },
            };
            let (tx, table, cancels, handshake) = (
                tx.clone(),
                table.clone(),
                cancels.clone(),
                handshake.clone(),
            );
            let deadline = opts.handshake_timeout;
            tokio::spawn(async move {
                let res = tokio::select! {
                    r = tokio::time::timeout(deadline, handshake(tracked)) => Some(r),
                    _ = cancel_rx => None,
                };
                cancels
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                match res {
                    Some(Ok(Ok(io))) => {
                        {
                            let mut a = lock(&table);
                            a.authenticated(id);
                            publish(&a);
                        }
                        let _ = tx.send(Ok(io)).await;
                    }
                    Some(Ok(Err(e))) => {
                        STATS.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %e, "handshake failed");
                    }
                    Some(Err(_)) => {
                        STATS.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "handshake deadline passed; closed");
                    }
                    None => tracing::debug!(%peer, "pending connection evicted"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(per_source: usize, pending: usize, conns: usize) -> AdmissionOptions {
        AdmissionOptions {
            handshake_timeout: Duration::from_secs(1),
            max_pending_per_source: per_source,
            max_pending: pending,
            max_connections: conns,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, last])
    }

    fn admitted(v: Verdict) -> (u64, Option<u64>) {
        match v {
            Verdict::Admit { id, evict } => (id, evict),
            Verdict::Refuse(r) => panic!("refused: {r:?}"),
        }
    }

    #[test]
    fn one_source_cannot_hold_more_than_its_share() {
        let mut a = Admission::new(opts(2, 10, 100));
        admitted(a.offer(ip(1)));
        let (id2, _) = admitted(a.offer(ip(1)));
        assert_eq!(a.offer(ip(1)), Verdict::Refuse(Refusal::SourceBusy));
        // Another source is not affected.
        admitted(a.offer(ip(2)));
        // A finished handshake frees the source's share, not the connection.
        a.authenticated(id2);
        admitted(a.offer(ip(1)));
        assert_eq!(a.open(), 4);
        assert_eq!(a.pending(), 3);
    }

    #[test]
    fn the_oldest_pending_is_evicted_when_pending_is_full() {
        let mut a = Admission::new(opts(10, 3, 100));
        let ids: Vec<u64> = (1..=3).map(|i| admitted(a.offer(ip(i))).0).collect();
        let (new, evict) = admitted(a.offer(ip(9)));
        assert_eq!(evict, Some(ids[0]));
        assert_eq!(a.pending(), 3);
        // Releasing the evicted one again (its task closes it) changes nothing.
        a.release(ids[0]);
        assert_eq!(a.pending(), 3);
        a.authenticated(new);
        assert_eq!(a.pending(), 2);
    }

    #[test]
    fn authenticated_connections_keep_their_descriptors() {
        let mut a = Admission::new(opts(10, 10, 3));
        let (x, _) = admitted(a.offer(ip(1)));
        let (y, _) = admitted(a.offer(ip(2)));
        a.authenticated(x);
        a.authenticated(y);
        // One slot left: a pending one takes it; the next evicts that pending one,
        // never an authenticated connection.
        let (p, _) = admitted(a.offer(ip(3)));
        assert_eq!(admitted(a.offer(ip(4))).1, Some(p));
        // All three authenticated: refused.
        let last = a.pending.keys().next().copied().unwrap();
        a.authenticated(last);
        assert_eq!(a.offer(ip(5)), Verdict::Refuse(Refusal::Full));
        a.release(x);
        admitted(a.offer(ip(5)));
    }

    #[test]
    fn limits_follow_the_descriptor_limit() {
        let o = AdmissionOptions::for_fd_limit(1024, Duration::from_secs(10));
        assert_eq!(o.max_connections, 960);
        assert_eq!(o.max_pending, 240);
        assert_eq!(o.max_pending_per_source, 32);
        let tiny = AdmissionOptions::for_fd_limit(10, Duration::from_secs(10));
        assert_eq!(tiny.max_connections, 32);
        assert_eq!(tiny.max_pending, 16);
        assert_eq!(tiny.max_pending_per_source, 16);
    }
}
