//! What bounds every connection of every listener, whatever its protocol (#14: a hostile or broken peer must
//! not hold memory, connections or tasks without limit):
//!
//! - [`ConnectionCaps`]: open connections at most, in total and per source address, per listener. A
//!   connection over a cap is closed right at accept (before TLS), counted, and logged at most every
//!   [`REFUSAL_LOG_EVERY`]; one admitted holds a [`ConnectionPermit`] in its task until the task ends.
//! - [`Deadlines`]: a stream wrapper under TLS that fails a write left pending longer than the write deadline
//!   (a peer that stops reading) and a read once the connection has moved no byte either way for the idle
//!   time (a peer that goes silent). Protocols with their own idle rule (MQTT keep-alive, AMQP idle-time-out)
//!   turn the idle part off through the [`DeadlineHandle`]; the write deadline stays.
//!
//! Per-protocol deadlines (TLS handshake, first packet / header, per packet / frame) sit in each protocol,
//! which knows where a packet starts and ends.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Refusals over a cap are logged at most this often per listener (a flood must not flood the log).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The caps of one listener (both at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub total: usize,
    pub per_ip: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self { total: 20_000, per_ip: 1_000 }
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    last_logged: Option<Instant>,
    refused_since_log: u64,
}

/// The open connections of one listener, against its [`Caps`].
#[derive(Debug)]
pub struct ConnectionCaps {
    what: &'static str,
    caps: Caps,
    open: Mutex<Open>,
    refused: AtomicU64,
}

/// One admitted connection; dropping it (the connection's task ending) frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    caps: Arc<ConnectionCaps>,
    ip: IpAddr,
}

impl ConnectionCaps {
    pub fn new(what: &'static str, caps: Caps) -> Arc<Self> {
        Arc::new(Self { what, caps, open: Mutex::new(Open::default()), refused: AtomicU64::new(0) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for one more connection from `ip`, or `None` (counted, logged at a limited rate).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionPermit> {
        let mut open = self.lock();
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if open.total < self.caps.total && from_ip < self.caps.per_ip {
            open.total += 1;
            open.per_ip.insert(ip, from_ip + 1);
            return Some(ConnectionPermit { caps: Arc::clone(self), ip });
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        open.refused_since_log += 1;
        let now = Instant::now();
        if open.last_logged.is_none_or(|t| now.saturating_duration_since(t) >= REFUSAL_LOG_EVERY) {
            let (refused, total, max_total, max_per_ip) = (open.refused_since_log, open.total, self.caps.total, self.caps.per_ip);
            tracing::warn!(listener = self.what, peer = %ip, from_ip, total, max_total, max_per_ip, refused, "connections refused: over the cap");
            open.last_logged = Some(now);
            open.refused_since_log = 0;
        }
        None
    }

    /// The listener's name (`HTTPS`, `console`, `MQTT`, `AMQP`).
    pub fn listener(&self) -> &'static str {
        self.what
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.caps.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Changes a [`Deadlines`] stream's idle time while it runs (0: no idle limit).
#[derive(Debug, Clone, Default)]
pub struct DeadlineHandle {
    idle_ms: Arc<AtomicU64>,
}

impl DeadlineHandle {
    pub fn set_idle(&self, idle: Option<Duration>) {
        let ms = idle.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1));
        self.idle_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Option<Duration> {
        match self.idle_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

/// A stream with a write deadline and an idle deadline (see the module doc).
#[derive(Debug)]
pub struct Deadlines<S> {
    inner: S,
    write_timeout: Duration,
    handle: DeadlineHandle,
    /// Armed while a write is pending.
    write_sleep: Option<Pin<Box<Sleep>>>,
    idle_sleep: Pin<Box<Sleep>>,
    idle_armed_for: Option<Duration>,
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned())
}

impl<S> Deadlines<S> {
    pub fn new(inner: S, write_timeout: Duration, idle: Option<Duration>) -> Self {
        let handle = DeadlineHandle::default();
        handle.set_idle(idle);
        let start = Instant::now() + idle.unwrap_or(Duration::from_secs(3600));
        Self {
            inner,
            write_timeout,
            handle,
            write_sleep: None,
            idle_sleep: Box::pin(tokio::time::sleep_until(start)),
            idle_armed_for: idle,
        }
    }

    pub fn handle(&self) -> DeadlineHandle {
        self.handle.clone()
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes moved: the idle time starts again.
    fn progressed(&mut self) {
        self.idle_armed_for = self.handle.idle();
        if let Some(idle) = self.idle_armed_for {
            self.idle_sleep.as_mut().reset(Instant::now() + idle);
        }
    }

    /// Whether the idle time has passed (re-armed when the handle changed it).
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        let now = self.handle.idle();
        if now != self.idle_armed_for {
            self.progressed();
        }
        self.idle_armed_for.is_some() && self.idle_sleep.as_mut().poll(cx).is_ready()
    }

    /// Whether a pending write has waited past the write deadline.
    fn poll_write_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.write_timeout;
        let sleep = self.write_sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        sleep.as_mut().poll(cx).is_ready()
    }

    fn on_write<T>(&mut self, cx: &mut Context<'_>, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write_sleep = None;
                if r.is_ok() {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.poll_write_deadline(cx) => Poll::Ready(Err(timed_out("the peer stopped reading (write deadline)"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.poll_idle(cx) => Poll::Ready(Err(timed_out("the connection was idle too long"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.on_write(cx, r)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.on_write(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.on_write(cx, r)
    }
}

/// What the TLS accept loop applies to each connection of a listener.
#[derive(Debug, Clone)]
pub struct ListenerBounds {
    pub caps: Arc<ConnectionCaps>,
    pub handshake_timeout: Duration,
    pub write_timeout: Duration,
    /// The idle time of a new connection (the protocol may change or remove it through the handle).
    pub idle_timeout: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn caps_count_in_total_and_per_address_and_free_on_drop() {
        let caps = ConnectionCaps::new("test", Caps { total: 3, per_ip: 2 });
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let a1 = caps.admit(a).expect("first");
        let _a2 = caps.admit(a).expect("second");
        assert!(caps.admit(a).is_none(), "a third from one address");
        let _b1 = caps.admit(b).expect("another address");
        assert!(caps.admit(b).is_none(), "over the total");
        assert_eq!((caps.open(), caps.refused()), (3, 2));
        drop(a1);
        assert!(caps.admit(a).is_some(), "a place was freed");
    }

    /// The outcome, or a panic when it does not come (a deadline that does not fire).
    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f).await.expect("the deadline did not fire")
    }

    #[tokio::test]
    async fn a_write_pending_past_the_deadline_fails_and_idle_reads_end() {
        let (near, _far) = tokio::io::duplex(8);
        let mut s = Deadlines::new(near, Duration::from_millis(200), None);
        let err = within(s.write_all(&[0u8; 64])).await.expect_err("the far end never reads");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);

        let (near, mut far) = tokio::io::duplex(64);
        let mut s = Deadlines::new(near, Duration::from_millis(200), Some(Duration::from_millis(300)));
        far.write_all(b"x").await.expect("write");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.expect("a byte");
        let err = within(s.read_exact(&mut b)).await.expect_err("silence");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        s.handle().set_idle(None);
        let late = async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            far.write_all(b"y").await.expect("write");
        };
        let (read, ()) = within(async { tokio::join!(s.read_exact(&mut b), late) }).await;
        read.expect("no idle limit any more: a byte after twice the old idle time is read");
    }
}
