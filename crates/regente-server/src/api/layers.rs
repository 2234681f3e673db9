//! The two layers around every route: [`ShapeErrors`] gives error answers the
//! API's JSON shape, [`CountAnswers`] counts answers for `/metrics`.
//!
//! They are tower services with their own futures rather than
//! `axum::middleware::from_fn`, which boxes the inner service, the middleware's
//! future and the inner future on every request: six allocations and about
//! 3 KB per request held for as long as it runs (a `?wait=` request for up to
//! its wait). Here an answer that is not an error allocates nothing in them;
//! an error answer is reshaped in a boxed future, with its path copied (an
//! answer axum made itself has its body read for the message).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Uri};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::error::{needs_shape, shape};
use crate::service::http_metrics::UNMATCHED;
use crate::service::Context;

/// Gives every error answer of the routes it wraps the API's JSON shape.
#[derive(Clone, Copy, Default)]
pub struct ShapeErrorsLayer;

impl<S> Layer<S> for ShapeErrorsLayer {
    type Service = ShapeErrors<S>;

    fn layer(&self, inner: S) -> ShapeErrors<S> {
        ShapeErrors { inner }
    }
}

#[derive(Clone)]
pub struct ShapeErrors<S> {
    inner: S,
}

impl<S, E> Service<Request> for ShapeErrors<S>
where
    S: Service<Request, Response = Response, Error = E>,
{
    type Response = Response;
    type Error = E;
    type Future = Shaping<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Shaping<S::Future> {
        // The path is written into an error body; the URI's clone shares its bytes.
        let uri = request.uri().clone();
        Shaping::Answering {
            answer: self.inner.call(request),
            uri,
        }
    }
}

type Reshaping = Pin<Box<dyn Future<Output = Response> + Send>>;

pin_project! {
    #[project = ShapingState]
    pub enum Shaping<F> {
        Answering { #[pin] answer: F, uri: Uri },
        Reshaping { shaped: Reshaping },
    }
}

impl<F, E> Future for Shaping<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                ShapingState::Answering { answer, uri } => {
                    let response = ready!(answer.poll(cx))?;
                    if !needs_shape(&response) {
                        return Poll::Ready(Ok(response));
                    }
                    let shaped = Box::pin(shape(response, uri.path().to_owned()));
                    self.set(Shaping::Reshaping { shaped });
                }
                ShapingState::Reshaping { shaped } => {
                    return shaped.as_mut().poll(cx).map(Ok);
                }
            }
        }
    }
}

/// Counts every answer by route template, method and status code, with how
/// long it took (to its headers; a streamed body may go on).
#[derive(Clone)]
pub struct CountAnswersLayer {
    ctx: Arc<Context>,
}

impl CountAnswersLayer {
    pub fn new(ctx: Arc<Context>) -> CountAnswersLayer {
        CountAnswersLayer { ctx }
    }
}

impl<S> Layer<S> for CountAnswersLayer {
    type Service = CountAnswers<S>;

    fn layer(&self, inner: S) -> CountAnswers<S> {
        CountAnswers {
            inner,
            ctx: self.ctx.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CountAnswers<S> {
    inner: S,
    ctx: Arc<Context>,
}

impl<S, E> Service<Request> for CountAnswers<S>
where
    S: Service<Request, Response = Response, Error = E>,
{
    type Response = Response;
    type Error = E;
    type Future = Counting<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Counting<S::Future> {
        // The template is shared with the router: cloning it allocates nothing.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        Counting {
            answer: self.inner.call(request),
            ctx: self.ctx.clone(),
            route,
            method,
            began: Instant::now(),
        }
    }
}

pin_project! {
    pub struct Counting<F> {
        #[pin]
        answer: F,
        ctx: Arc<Context>,
        route: Option<MatchedPath>,
        method: Method,
        began: Instant,
    }
}

impl<F, E> Future for Counting<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.answer.poll(cx))?;
        let route = this.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        this.ctx.http_metrics.count(
            route,
            this.method.as_str(),
            response.status().as_u16(),
            this.began.elapsed(),
        );
        Poll::Ready(Ok(response))
    }
}
