//! The IronMQ v3 HTTP/JSON API ([docs/ironmq-v3-api.md](../../docs/ironmq-v3-api.md)),
//! served by `ferromq serve --http-listen ADDR` over the same service layer as the
//! binary protocol.
//!
//! This module owns the HTTP side only: the connections ([`serve`]), routing of
//! `/3/projects/{project}/...` (`routes.rs`), authentication (the token read by
//! `auth.rs` and checked by [`crate::auth`] before anything else is done, the
//! request body included), JSON ⇄ domain values
//! (`json.rs`), the mapping of errors to IronMQ's status codes and `{"msg": ...}`
//! bodies (`error.rs`), and the queue alerts, which only this API has (`alerts.rs`).
//! Every response, errors included, is JSON with `Content-Type: application/json`.
//!
//! # Projects
//! A project is a namespace: queue `q` of project `p` is the queue `p/q` of the
//! registry (see [`crate::queue::types::QueueName`]), which the binary protocol
//! reaches by that name.
//!
//! # Decisions (the spec's open points and silences)
//! - Reservation timeouts: 1..=86400 s (the official test suites use 3–10 s); 0 or
//!   absent means the queue's `message_timeout`. `wait` is clamped to 30 s.
//! - `n` over 100 on reserve or peek: 400. `per_page` over 100: clamped to 100.
//! - Batch delete is all or nothing: every entry is checked first, the first
//!   failure is the answer, and nothing is deleted then.
//! - A body over `--max-body` (64 KiB by default): 413 "Message body too large".
//! - Touch does not add 1 to `reserved_count` (only reserve does, as in the binary
//!   protocol); no client test checks it.
//! - `size` counts available, reserved and delayed messages.
//! - Pull queues with dead-letter queues and expiration are served, and push
//!   queues (section 6; delivery is [`crate::push`]'s):
//!   - `push` in PUT or PATCH states the queue's push settings: its `subscribers`
//!     replace the queue's; adding one by name is POST `.../subscribers`, removing
//!     DELETE. A push queue keeps at least one subscriber (removing the last: 400)
//!     and has at most 64. A subscriber without a name is named by its URL (a bare
//!     URL string is taken too, for clients that send one).
//!   - The type is fixed at creation: `type` pull on a push queue, unicast on a
//!     multicast one, push settings or subscribers on a pull queue, `dead_letter`
//!     on a push queue and alerts on a push queue all get 400.
//!   - Reserving from a push queue gets 400 (the server delivers its messages;
//!     a consumer would race it). Peek, get, delete, touch and release work.
//!   - DELETE of a message with `subscriber_name` and `reservation_id` is the
//!     acknowledgement of a delivery answered 202; with `subscriber_name` but no
//!     `reservation_id`, 400. `Iron-Subscriber-Message-Url` carries no token (a
//!     token in a URL ends up in logs): the subscriber acknowledges with a token of
//!     its own that covers the project, like any client.
//!   - A 202 holds the message for the queue's `message_timeout` (IronMQ: "the
//!     timeout"); push statuses come from memory while the server runs and from
//!     the message's record after a restart (`push/mod.rs`, "Statuses"), with
//!     `last_try_at` as an RFC 3339 UTC time and a `msg` field with the start of
//!     the subscriber's answer or what went wrong.
//!   - The webhook's `X-Subscribers-Name: value` headers become the message's push
//!     headers; invalid ones are dropped, as IronMQ does.
//! - Alerts (legacy) are stored with the queue, shown by GET, added by PATCH,
//!   replaced by PUT and removed by DELETE .../alerts[/{id}], with IronMQ's rules
//!   (at most 5, no duplicate type+direction+trigger); they are not fired, which the
//!   spec leaves optional.
//! - ferromq's own extension, `POST .../queues/{q}/messages/{id}/hand_off`: the
//!   atomic hand-off (docs/protocol.md, "Atomic hand-off"), its target queues in
//!   the request's project; answered 200 with each target's new ids as strings,
//!   as a post's.
//! - Queue names and project ids use the binary protocol's characters
//!   (`A-Z a-z 0-9 . _ -`); others get 400.
//! - `/health/live` and `/health/ready` answer without a token (they say nothing
//!   about queues): orchestrators probe them.
//! - A request for another project than its token's, or without a token, gets 401
//!   before its body is read: an unauthenticated client cannot make the server
//!   buffer anything. Paths outside `/3/projects/` get 404 without a token check.

mod alerts;
pub mod auth;
mod dashboard;
mod error;
mod json;
mod routes;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::metrics::Protocol;
use crate::net::Acceptor;
use crate::queue::types::MAX_BATCH;
use crate::service::Service;
use crate::tls::{Conn, ServerTls};
use error::ApiError;
use json::Call;
use prometheus_client::metrics::counter::Counter;
use std::time::Instant;

/// The limits of the HTTP front end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most connections at once.
    pub(crate) max_connections: usize,
    /// A request's headers must arrive within this time of the connection
    /// opening or of the previous response (hyper's header read timeout), so it
    /// is also the longest a keep-alive connection may sit idle (`None`: no limit).
    pub(crate) header_timeout: Option<Duration>,
    /// Bytes of request bodies held at once, every connection together.
    pub(crate) body_budget: usize,
    /// Serve the IronMQ API; without it only `/metrics` and `/health/*` (the
    /// `--metrics-listen` listener).
    pub(crate) api: bool,
    /// Serve the web dashboard under `/ui/` (`--dashboard`; `dashboard.rs`).
    pub(crate) dashboard: bool,
}

/// What every request needs.
struct Api {
    service: Arc<Service>,
    auth: Arc<Auth>,
    /// The bytes of request bodies being read or served, in KiB permits (see
    /// [`Api::hold_body`]).
    bodies: Arc<tokio::sync::Semaphore>,
    /// `bodies`' size in KiB.
    budget_kib: usize,
    /// Largest request body: 100 messages of the largest body, JSON-escaped, plus room.
    max_request: usize,
    /// The IronMQ API is served here (not only metrics and health).
    routes_api: bool,
    /// The dashboard is served under `/ui/`.
    dashboard: bool,
    /// Bytes of request and response bodies (metrics).
    received: Counter,
    sent: Counter,
}

/// Accepts HTTP/1.1 connections until `stop` is cancelled; at most
/// `max_connections` at once (more get a 503 and are closed). Every connection
/// task is tracked by `connections`.
/// With `tls`, every connection is HTTPS ([`crate::tls`]).
pub(crate) async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    auth: Arc<Auth>,
    tls: Option<Arc<ServerTls>>,
    limits: Limits,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    let mut api = Api::new(service, auth, limits.body_budget);
    api.routes_api = limits.api;
    api.dashboard = limits.dashboard && limits.api;
    let api = Arc::new(api);
    let refusal = refusal_response(limits.max_connections);
    let mut acceptor = Acceptor::new(
        listener,
        limits.max_connections,
        refusal,
        tls,
        &connections,
        api.service.metrics().connection_counters(Protocol::Http),
    );
    while let Some((incoming, permit)) = acceptor.next(&stop).await {
        let api = Arc::clone(&api);
        let stop = stop.clone();
        let peer = incoming.peer;
        connections.spawn(async move {
            if let Some(conn) = incoming.open(&stop).await {
                serve_connection(conn, api, peer, limits, stop).await;
            }
            drop(permit);
        });
    }
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it ends or `stop`.
async fn serve_connection(
    stream: Conn,
    api: Arc<Api>,
    peer: std::net::SocketAddr,
    limits: Limits,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |request| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Infallible>(api.handle(request).await) }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%peer, cause = %err, "http connection ended");
            }
        }
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// What a connection over `--max-connections` gets before it is closed: 503 with
/// `Retry-After`, written as raw bytes (no request is read).
fn refusal_response(max_connections: usize) -> Bytes {
    let body = json!({
        "msg": format!("Too many connections: this server serves at most {max_connections}; retry later")
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into()
}

/// The status as a metrics label (the statuses this API answers with; others
/// are `other`).
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // A limit or a shutdown: worth retrying, not at once.
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

impl Api {
    fn new(service: Arc<Service>, auth: Arc<Auth>, body_budget: usize) -> Self {
        // 100 bodies of the largest size, even if every byte is JSON-escaped
        // (`\u00XX`), plus room for the rest of the document.
        let max_request = service.max_body().saturating_mul(6 * MAX_BATCH) + 64 * 1024;
        let budget_kib = (body_budget / 1024).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let (received, sent) = service.metrics().byte_counters(Protocol::Http);
        Api {
            routes_api: true,
            dashboard: false,
            received,
            sent,
            service,
            auth,
            max_request,
            bodies: Arc::new(tokio::sync::Semaphore::new(budget_kib)),
            budget_kib,
        }
    }

    /// Takes the share of the body budget a request declaring `declared` bytes
    /// (`None`: chunked, so the largest allowed) may need, held until its response
    /// is built; `None` if the budget is spent, refused at once (503) rather than
    /// queued. A body larger than the whole budget still goes alone, so no valid
    /// request is refused for ever.
    fn hold_body(
        &self,
        declared: Option<u64>,
    ) -> Option<Option<tokio::sync::OwnedSemaphorePermit>> {
        let bytes = declared
            .map_or(self.max_request, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            })
            .min(self.max_request);
        if bytes == 0 {
            return Some(None);
        }
        let kib = bytes.div_ceil(1024).min(self.budget_kib);
        let kib = u32::try_from(kib).unwrap_or(u32::MAX);
        Arc::clone(&self.bodies)
            .try_acquire_many_owned(kib)
            .ok()
            .map(Some)
    }

    /// `GET /health/live` (200 while the process serves HTTP) and `GET
    /// /health/ready` (200, or 503 with the reasons: [`Service::health`]), for
    /// orchestrators and load balancers: no token, no body, nothing about queues.
    fn health(&self, method: &hyper::Method, path: &str) -> Option<Response<Full<Bytes>>> {
        let path = path.strip_suffix('/').unwrap_or(path);
        if !matches!(path, "/health/live" | "/health/ready") {
            return None;
        }
        if method != hyper::Method::GET && method != hyper::Method::HEAD {
            return Some(json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"msg": "Method not allowed"}),
            ));
        }
        if path == "/health/live" {
            return Some(json_response(StatusCode::OK, &json!({"status": "live"})));
        }
        let health = self.service.health();
        Some(if health.ready {
            json_response(StatusCode::OK, &json!({"status": "ready"}))
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "not ready", "reasons": health.reasons}),
            )
        })
    }

    /// `GET /metrics`: the exposition of [`crate::metrics`]. It names every
    /// queue, so with authentication on it needs a token that reaches every
    /// queue, sent as `Authorization: Bearer TOKEN` (Prometheus' way) or `OAuth
    /// TOKEN`.
    fn metrics(&self, method: &hyper::Method, headers: &hyper::HeaderMap) -> Response<Full<Bytes>> {
        if method != hyper::Method::GET && method != hyper::Method::HEAD {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"msg": "Method not allowed"}),
            );
        }
        if !self.auth.disabled {
            let token = auth::token(headers.get(AUTHORIZATION));
            if !matches!(
                self.auth.scope(token.as_deref()),
                Some(crate::auth::Scope::All)
            ) {
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"msg": "Unauthorized: /metrics needs a token that reaches every queue"}),
                );
            }
        }
        let mut response = Response::new(Full::new(Bytes::from(self.service.metrics().encode())));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        response
    }

    /// Serves one request and accounts for it: the request metrics (operation,
    /// status, time), the bytes of both bodies, and one access-log line at info
    /// (`ferromq::access`: method, path without the query, where a token may be,
    /// status, milliseconds).
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        if let Some(size) = hyper::body::Body::size_hint(request.body()).exact() {
            self.received.inc_by(size);
        }
        let (response, op) = self.respond(request).await;
        let took = started.elapsed();
        let status = response.status();
        if let Some(size) = hyper::body::Body::size_hint(response.body()).exact() {
            self.sent.inc_by(size);
        }
        self.service
            .metrics()
            .request(Protocol::Http, op, status_label(status), took);
        tracing::info!(
            target: "ferromq::access",
            method = %method,
            path = %path,
            status = status.as_u16(),
            duration_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            op,
            "http request"
        );
        response
    }

    /// Path, then token, then body, then the route: nothing is read or done for a
    /// request that may not be served. Says which operation it was.
    async fn respond(&self, request: Request<Incoming>) -> (Response<Full<Bytes>>, &'static str) {
        let (parts, body) = request.into_parts();
        if let Some(health) = self.health(&parts.method, parts.uri.path()) {
            return (health, "health");
        }
        if matches!(parts.uri.path(), "/metrics" | "/metrics/") {
            return (self.metrics(&parts.method, &parts.headers), "metrics");
        }
        let path = parts.uri.path();
        if self.dashboard && (path == "/ui" || path.starts_with("/ui/")) {
            return self.dashboard(parts, body).await;
        }
        let api = if self.routes_api {
            json::split_path(parts.uri.path())
        } else {
            None
        };
        let Some((project, rest)) = api else {
            return (
                json_response(StatusCode::NOT_FOUND, &json!({"msg": "Not found"})),
                "not_found",
            );
        };
        let op = routes::op_name(&parts.method, &rest);
        (self.serve_api(parts, body, project, rest).await, op)
    }

    /// A request of the IronMQ API, after its path was split.
    async fn serve_api(
        &self,
        parts: hyper::http::request::Parts,
        body: Incoming,
        project: String,
        rest: Vec<String>,
    ) -> Response<Full<Bytes>> {
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let token = auth::bearer(parts.headers.get(AUTHORIZATION)).or_else(|| {
            query
                .iter()
                .find(|(k, _)| k == "oauth")
                .map(|(_, v)| v.clone())
        });
        if !self.auth.allows(token.as_deref(), &project) {
            return json_response(StatusCode::UNAUTHORIZED, &json!({"msg": "Unauthorized"}));
        }
        let declared = hyper::body::Body::size_hint(&body).exact();
        let Some(_held) = self.hold_body(declared) else {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"msg": "The server holds its limit of request bodies (--max-http-body-bytes); retry"}),
            );
        };
        let body = match Limited::new(body, self.max_request).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                let (status, msg) = if err.is::<http_body_util::LengthLimitError>() {
                    (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
                } else {
                    (StatusCode::BAD_REQUEST, "Cannot read the request body")
                };
                return json_response(status, &json!({ "msg": msg }));
            }
        };
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| {
                name.as_str().starts_with("x-subscribers-") || *name == json::CONSUMER_HEADER
            })
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let call = Call {
            method: parts.method,
            project,
            rest,
            query,
            headers,
            body,
        };
        match self.route(&call).await {
            Ok((status, body)) => json_response(status, &body),
            Err(ApiError { status, msg }) => json_response(status, &json!({ "msg": msg })),
        }
    }
}

/// Routes one request as the API would after its token was accepted (see
/// [`crate::fuzzing::http`]); returns the status. Not part of the supported API.
#[doc(hidden)]
pub async fn fuzz_route(
    service: Arc<Service>,
    method: hyper::Method,
    path_and_query: &str,
    body: Bytes,
) -> u16 {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let Some((project, rest)) = json::split_path(path) else {
        return StatusCode::NOT_FOUND.as_u16();
    };
    let open = Arc::new(Auth {
        tokens: Vec::new(),
        disabled: true,
    });
    let api = Api::new(service, open, usize::MAX);
    let call = Call {
        method,
        project,
        rest,
        query: form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        headers: Vec::new(),
        body,
    };
    match api.route(&call).await {
        Ok((status, _)) => status.as_u16(),
        Err(ApiError { status, .. }) => status.as_u16(),
    }
}
