//! A minimum rate for request bodies: after a grace period, a body must have
//! arrived at `rate` bytes per second on average so far, or reading it fails.
//! A client that holds a connection open by trickling a body is cut off, while
//! a slow but honest upload (a package over an office line) goes through.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// What became of a body, for the answer to say so.
#[derive(Clone, Default)]
pub(super) struct Watch(Arc<WatchState>);

#[derive(Default)]
struct WatchState {
    ended: AtomicBool,
    too_slow: AtomicBool,
}

impl Watch {
    /// Whether the body was read to its end.
    pub(super) fn ended(&self) -> bool {
        self.0.ended.load(Ordering::Relaxed)
    }

    /// Whether reading the body failed for its slowness.
    pub(super) fn too_slow(&self) -> bool {
        self.0.too_slow.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub(super) struct TooSlow;

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body arrived too slowly")
    }
}

impl std::error::Error for TooSlow {}

pub(super) struct MinRate<B> {
    inner: B,
    rate: u64,
    grace: Duration,
    started: Instant,
    received: u64,
    /// Fires when the bytes received so far stop being enough.
    deadline: Pin<Box<Sleep>>,
    watch: Watch,
}

impl<B: Body> MinRate<B> {
    pub(super) fn new(inner: B, rate: u64, grace: Duration, watch: Watch) -> MinRate<B> {
        if inner.is_end_stream() {
            watch.0.ended.store(true, Ordering::Relaxed);
        }
        let started = Instant::now();
        MinRate {
            inner,
            rate: rate.max(1),
            grace,
            started,
            received: 0,
            deadline: Box::pin(tokio::time::sleep_until(started + grace)),
            watch,
        }
    }

    /// When the bytes received so far stop being enough.
    fn allowed_until(&self) -> Instant {
        self.started + self.grace + Duration::from_secs_f64(self.received as f64 / self.rate as f64)
    }
}

impl<B> Body for MinRate<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let until = this.allowed_until();
                    this.deadline.as_mut().reset(until);
                }
                if this.inner.is_end_stream() {
                    this.watch.0.ended.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.watch.0.ended.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.watch.0.too_slow.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(Box::new(TooSlow))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// A body that yields `chunks` one at a time, each after `gap`.
    fn trickle(
        chunks: usize,
        size: usize,
        gap: Duration,
    ) -> impl Body<Data = Bytes, Error = Infallible> + Unpin {
        let stream = futures_util::stream::unfold(0usize, move |sent| async move {
            if sent == chunks {
                return None;
            }
            tokio::time::sleep(gap).await;
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; size]))),
                sent + 1,
            ))
        });
        http_body_util::StreamBody::new(Box::pin(stream))
    }

    use std::convert::Infallible;

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_rate_is_read_whole() {
        let watch = Watch::default();
        // 1,000 bytes every second against a floor of 500 bytes per second.
        let body = MinRate::new(
            trickle(30, 1000, Duration::from_secs(1)),
            500,
            Duration::from_secs(2),
            watch.clone(),
        );
        let bytes = body.collect().await.expect("the whole body").to_bytes();
        assert_eq!(bytes.len(), 30_000);
        assert!(watch.ended());
        assert!(!watch.too_slow());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_below_the_rate_fails_after_the_grace() {
        let watch = Watch::default();
        // 100 bytes every second against a floor of 500.
        let body = MinRate::new(
            trickle(100, 100, Duration::from_secs(1)),
            500,
            Duration::from_secs(2),
            watch.clone(),
        );
        let error = body.collect().await.expect_err("too slow");
        assert!(error.to_string().contains("too slowly"), "{error}");
        assert!(watch.too_slow());
        assert!(!watch.ended());
    }
}
