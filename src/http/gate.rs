//! What every request passes through before (and after) its handler, as plain tower layers:
//! [`Guard`] ([`super::guard`]'s rules, on every route), [`Token`] (the bearer token, on the
//! API's routes) and [`Count`] (ingest requests by endpoint and answer).
//!
//! Why not `axum::middleware::from_fn`: each such layer boxes a future and clones the route's
//! service for every request, and the counter looked its metric up by name each time (two
//! strings and a key allocated). On 64 clients posting single alerts those three layers were
//! 16 % of the daemon's samples (`perf`), around a handler that was 24 %. Here a refusal is an
//! answer made at once, a pass is the inner service's own future, and a counter is registered
//! once per endpoint and status.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use tower::{Layer, Service};

use super::{ApiError, AppState, bearer_ok, error, guard};

/// A layer's service: the layer's state beside the service it wraps.
#[derive(Clone)]
pub(super) struct Gated<G, S> {
    gate: G,
    inner: S,
}

/// A gate that answers a request itself (`Some`) or lets it through (`None`).
pub(super) trait Check: Clone {
    fn refuse(&self, request: &Request) -> Option<Response>;
}

impl<G: Check, S> Service<Request> for Gated<G, S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.gate.refuse(&request) {
            Some(answer) => Either::Left(ready(Ok(answer))),
            None => Either::Right(self.inner.call(request)),
        }
    }
}

/// Turns away what [`guard::check`] refuses, before any route (or token check) sees it.
#[derive(Clone)]
pub(super) struct Guard(pub(super) AppState);

impl Check for Guard {
    fn refuse(&self, request: &Request) -> Option<Response> {
        let config = self.0.live.config();
        // The console's forms post form bodies, to its own routes only, under stricter rules.
        let form = request.method() == Method::POST && request.uri().path().starts_with("/ui/");
        let checked = if form {
            guard::check_form(request.headers(), self.0.local, &config.server)
        } else {
            guard::check(
                request.method(),
                request.headers(),
                self.0.local,
                &config.server,
            )
        };
        checked.err().map(|r| error(r.status, r.message))
    }
}

/// Lets through only requests with `Authorization: Bearer <one of server.auth_tokens>`, when
/// there are tokens.
#[derive(Clone)]
pub(super) struct Token(pub(super) AppState);

impl Check for Token {
    fn refuse(&self, request: &Request) -> Option<Response> {
        let config = self.0.live.config();
        let tokens = &config.server.auth_tokens;
        if tokens.is_empty() || bearer_ok(request.headers(), tokens) {
            return None;
        }
        Some(
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token; send Authorization: Bearer <token> (one of server.auth_tokens)",
            )
            .with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            )
            .into_response(),
        )
    }
}

impl<S> Layer<S> for Guard {
    type Service = Gated<Guard, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gated {
            gate: self.clone(),
            inner,
        }
    }
}

impl<S> Layer<S> for Token {
    type Service = Gated<Token, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gated {
            gate: self.clone(),
            inner,
        }
    }
}

/// Counts ingest requests by endpoint and answer (`sluice_ingest_requests_total`). The endpoint
/// is the route as written, so a Feishu door's token (a path segment) never becomes a label.
#[derive(Clone)]
pub(super) struct Count {
    app: AppState,
    /// Each endpoint and status's counter, registered on its first request.
    counters: Arc<RwLock<Vec<(MatchedPath, u16, metrics::Counter)>>>,
}

impl Count {
    pub(super) fn new(app: AppState) -> Count {
        Count {
            app,
            counters: Arc::default(),
        }
    }

    fn add(&self, endpoint: Option<&MatchedPath>, status: StatusCode) {
        let (path, status) = (
            endpoint.map_or("other", MatchedPath::as_str),
            status.as_u16(),
        );
        let known = self
            .counters
            .read()
            .expect("counters lock")
            .iter()
            .find_map(|(p, s, c)| (p.as_str() == path && *s == status).then(|| c.clone()));
        let counter = known.unwrap_or_else(|| {
            let counter = self.app.metrics.counter(
                "sluice_ingest_requests_total",
                &[("endpoint", path), ("status", &status.to_string())],
            );
            if let Some(endpoint) = endpoint {
                let mut all = self.counters.write().expect("counters lock");
                if !all
                    .iter()
                    .any(|(p, s, _)| p.as_str() == path && *s == status)
                {
                    all.push((endpoint.clone(), status, counter.clone()));
                }
            }
            counter
        });
        counter.increment(1);
    }
}

impl<S> Layer<S> for Count {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            count: self.clone(),
            inner,
        }
    }
}

/// [`Count`]'s service.
#[derive(Clone)]
pub(super) struct Counted<S> {
    count: Count,
    inner: S,
}

impl<S> Service<Request> for Counted<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Counting<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let endpoint = request.extensions().get::<MatchedPath>().cloned();
        Counting {
            inner: self.inner.call(request),
            count: Some((self.count.clone(), endpoint)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The handler's future, counted once it has answered.
    pub(super) struct Counting<F> {
        #[pin]
        inner: F,
        count: Option<(Count, Option<MatchedPath>)>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Counting<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(answer) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        if let (Some((count, endpoint)), Ok(response)) = (this.count.take(), &answer) {
            count.add(endpoint.as_ref(), response.status());
        }
        Poll::Ready(answer)
    }
}
