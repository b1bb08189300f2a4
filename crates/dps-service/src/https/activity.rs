//! The request rule of every HTTP connection (#14 item 1): a connection with no request in flight that starts
//! none within the idle time is closed, however many bytes it keeps moving.
//!
//! The byte-level idle deadline ([`crate::bounds::Deadlines`]) closes a silent peer, and hyper's header-read
//! timeout closes an HTTP/1 peer that drips its head; HTTP/2 has neither at the request level in hyper: a peer
//! dripping a HEADERS frame a byte at a time, or sending a PING now and then, would hold its connection (and its
//! place under the connection caps) for ever. Counting requests instead of bytes closes both, on HTTP/1 and
//! HTTP/2 alike. A request is in flight from the moment hyper hands it over (its head complete) until its
//! answer's body has been sent or dropped, so a long answer (the live log's follow mode) keeps its connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// Requests in flight on one connection and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    last_ended: Mutex<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { in_flight: AtomicUsize::new(0), last_ended: Mutex::new(Instant::now()) })
    }

    /// A request starts; it is in flight until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    fn quiet_since(&self) -> Option<Instant> {
        let last = *self.last_ended.lock().unwrap_or_else(|p| p.into_inner());
        (self.in_flight.load(Ordering::SeqCst) == 0).then_some(last)
    }

    /// Resolves once no request has been in flight for `idle`.
    pub async fn quiet_for(&self, idle: Duration) {
        loop {
            match self.quiet_since() {
                Some(since) if since + idle <= Instant::now() => return,
                Some(since) => tokio::time::sleep_until(since + idle).await,
                None => tokio::time::sleep(idle).await,
            }
        }
    }
}

/// One request in flight (see [`Activity::begin`]).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_ended.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An answer's body that keeps its request in flight until it has been sent (or dropped).
pub fn tracked(body: BoxBody<Bytes, std::convert::Infallible>, guard: InFlight) -> BoxBody<Bytes, std::convert::Infallible> {
    BoxBody::new(Tracked { body, _guard: guard })
}

struct Tracked {
    body: BoxBody<Bytes, std::convert::Infallible>,
    _guard: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn quiet_never_comes_while_a_request_is_in_flight_and_comes_after_the_last_one_ends() {
        let a = Activity::new();
        let idle = Duration::from_millis(20);
        let guard = a.begin();
        let second = a.begin();
        drop(second);
        assert!(tokio::time::timeout(idle * 10, a.quiet_for(idle)).await.is_err(), "a request in flight keeps the connection");
        assert_eq!(a.quiet_since(), None, "no quiet while a request is in flight");
        drop(guard);
        let ended = a.quiet_since().expect("quiet once the last request ended");
        a.quiet_for(idle).await;
        assert_eq!(a.quiet_since(), Some(ended), "quiet counts from the end of the last request");
    }
}
