//! The IronMQ v3 HTTP/JSON API (`docs/ironmq-v3-api.md`), served by
//! `ferromq serve --http-listen ADDR` over the same registry, queue actors and
//! storage as the binary protocol.
//!
//! This module owns the HTTP side only: routing of `/3/projects/{project}/...`,
//! authentication (`Authorization: OAuth TOKEN` or `?oauth=TOKEN`, checked against
//! [`HttpAuth`] before anything is done), JSON ⇄ domain conversion, and the mapping
//! of [`QueueError`] to IronMQ's status codes and `{"msg": ...}` bodies. Every
//! response, errors included, is JSON with `Content-Type: application/json`.
//!
//! # Projects
//! A project is a namespace: queue `q` of project `p` is the queue `p/q` of the
//! registry (see [`QueueName`]), which the binary protocol reaches by that name.
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
//! - Pull queues with dead-letter queues and expiration are served. Push queues
//!   (`type` unicast/multicast, `push`, subscribers) are not: they get 400 with a
//!   message saying so, never a silent success.
//! - Alerts (legacy) are stored with the queue, shown by GET, added by PATCH,
//!   replaced by PUT and removed by DELETE .../alerts[/{id}], with IronMQ's rules
//!   (at most 5, no duplicate type+direction+trigger); they are not fired, which the
//!   spec leaves optional.
//! - Queue names and project ids use the binary protocol's characters
//!   (`A-Z a-z 0-9 . _ -`); others get 400.
//! - Bodies posted here are JSON strings; a body pushed over the binary protocol
//!   that is not UTF-8 is shown with replacement characters.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::command::{push_to, Context};
use crate::config::HttpAuth;
use crate::error::QueueError;
use crate::queue::types::{
    Alert, DeadLetter, MessageView, NewMessage, QueueName, QueueSettings, QueueStats,
    SettingsPatch, MAX_ALERTS, MAX_BATCH,
};
use crate::server::Acceptor;

/// Longest reservation (s).
const MAX_TIMEOUT_S: u64 = 86_400;
/// Longest delay (s).
const MAX_DELAY_S: u64 = 604_800;
/// Longest long poll (s); more is clamped.
const MAX_WAIT_S: u64 = 30;
/// Longest message expiration (s).
const MAX_EXPIRATION_S: u64 = 2_592_000;
/// Default and largest `per_page`.
const DEFAULT_PER_PAGE: usize = 30;
const MAX_PER_PAGE: usize = 100;
/// Default `max_reservations` of a dead-letter setting.
const DEFAULT_MAX_RESERVATIONS: u64 = 10;

/// What every request needs.
struct Api {
    ctx: Arc<Context>,
    auth: HttpAuth,
    /// Largest request body: 100 messages of the largest body, JSON-escaped, plus room.
    max_request: usize,
}

/// Accepts HTTP/1.1 connections until `stop` is cancelled; at most
/// `max_connections` at once (more wait in the listen backlog).
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    auth: HttpAuth,
    max_connections: usize,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    // 100 bodies of the largest size, even if every byte is JSON-escaped (`\u00XX`),
    // plus room for the rest of the document.
    let max_request = ctx.max_body.saturating_mul(6 * MAX_BATCH) + 64 * 1024;
    let api = Arc::new(Api {
        ctx,
        auth,
        max_request,
    });
    let mut acceptor = Acceptor::new(listener, max_connections);
    while let Some((stream, peer, permit)) = acceptor.next(&stop).await {
        let api = Arc::clone(&api);
        let stop = stop.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let api = Arc::clone(&api);
                async move { Ok::<_, Infallible>(api.handle(request).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(io, service);
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
            drop(permit);
        });
    }
}

/// A failed request: status and the `msg` of the body.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    msg: String,
}

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            msg: msg.into(),
        }
    }

    fn bad(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }
}

impl From<QueueError> for ApiError {
    fn from(err: QueueError) -> Self {
        let (status, msg) = match &err {
            QueueError::InvalidArgument(reason) => (StatusCode::BAD_REQUEST, reason.clone()),
            QueueError::QueueNotFound(_) => (StatusCode::NOT_FOUND, "Queue not found".into()),
            QueueError::QueueExists(_) => (StatusCode::BAD_REQUEST, err.to_string()),
            QueueError::MessageNotFound(_) => (StatusCode::NOT_FOUND, "Message not found".into()),
            QueueError::ReservationExpired(_) => {
                (StatusCode::FORBIDDEN, "Reservation timed out".into())
            }
            QueueError::ReservationMismatch(_) => (
                StatusCode::FORBIDDEN,
                "Reservation id is missing, wrong or superseded".into(),
            ),
            QueueError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Message body too large".into(),
            ),
            QueueError::ResourceExhausted(_) | QueueError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, err.to_string())
            }
            QueueError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
        };
        ApiError { status, msg }
    }
}

type Reply = Result<(StatusCode, Value), ApiError>;

fn ok(body: Value) -> Reply {
    Ok((StatusCode::OK, body))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The parsed parts of a request a handler needs.
struct Call {
    method: Method,
    project: String,
    /// Path segments after `/3/projects/{project}`, percent-decoded.
    rest: Vec<String>,
    query: Vec<(String, String)>,
    body: Bytes,
}

impl Call {
    fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON object in the body; an empty body is `{}`.
    fn json(&self) -> Result<Map<String, Value>, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::bad("the request body must be a JSON object")),
            Err(err) => Err(ApiError::bad(format!("invalid JSON: {err}"))),
        }
    }

    /// The registry name of queue `local` in this call's project.
    fn queue(&self, local: &str) -> Result<QueueName, ApiError> {
        Ok(QueueName::new(&format!("{}/{local}", self.project))?)
    }
}

impl Api {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
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
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let reply = match split_path(parts.uri.path()) {
            Some((project, rest)) => {
                let token = bearer(parts.headers.get(AUTHORIZATION)).or_else(|| {
                    query
                        .iter()
                        .find(|(k, _)| k == "oauth")
                        .map(|(_, v)| v.clone())
                });
                if self.auth.allows(token.as_deref(), &project) {
                    let call = Call {
                        method: parts.method,
                        project,
                        rest,
                        query,
                        body,
                    };
                    self.route(&call).await
                } else {
                    Err(ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized"))
                }
            }
            None => Err(ApiError::new(StatusCode::NOT_FOUND, "Not found")),
        };
        match reply {
            Ok((status, body)) => json_response(status, &body),
            Err(err) => json_response(err.status, &json!({ "msg": err.msg })),
        }
    }

    async fn route(&self, call: &Call) -> Reply {
        let rest: Vec<&str> = call.rest.iter().map(String::as_str).collect();
        let m = &call.method;
        match rest.as_slice() {
            ["queues"] => match *m {
                Method::GET => self.list_queues(call),
                _ => not_allowed(),
            },
            ["queues", q] => match *m {
                Method::GET => self.queue_info(call, q).await,
                Method::PUT => self.put_queue(call, q).await,
                Method::PATCH => self.patch_queue(call, q).await,
                Method::DELETE => {
                    self.ctx.registry.delete(&call.queue(q)?).await?;
                    ok(json!({"msg": "Deleted"}))
                }
                _ => not_allowed(),
            },
            ["queues", q, "messages"] => match *m {
                Method::POST => self.post_messages(call, q).await,
                Method::GET => self.peek(call, q).await,
                Method::DELETE => self.delete_or_clear(call, q).await,
                _ => not_allowed(),
            },
            ["queues", q, "webhook"] => match *m {
                Method::POST => self.webhook(call, q).await,
                _ => not_allowed(),
            },
            ["queues", q, "reservations"] => match *m {
                Method::POST => self.reserve(call, q).await,
                _ => not_allowed(),
            },
            ["queues", q, "messages", id] => match *m {
                Method::GET => self.get_message(call, q, id).await,
                Method::DELETE => self.delete_message(call, q, id).await,
                _ => not_allowed(),
            },
            ["queues", q, "messages", id, "touch"] => match *m {
                Method::POST => self.touch(call, q, id).await,
                _ => not_allowed(),
            },
            ["queues", q, "messages", id, "release"] => match *m {
                Method::POST => self.release(call, q, id).await,
                _ => not_allowed(),
            },
            ["queues", q, "subscribers"] | ["queues", q, "messages", _, "subscribers"] => {
                // The queue must exist (404 first), then: push queues are not served.
                self.ctx.registry.get(&call.queue(q)?)?;
                Err(ApiError::bad(
                    "push queues are not supported by this server: this is a pull queue",
                ))
            }
            ["queues", q, "alerts"] => match *m {
                Method::DELETE => self.remove_alerts(call, q, None).await,
                _ => not_allowed(),
            },
            ["queues", q, "alerts", id] => match *m {
                Method::DELETE => self.remove_alerts(call, q, Some(id)).await,
                _ => not_allowed(),
            },
            _ => Err(ApiError::new(StatusCode::NOT_FOUND, "Not found")),
        }
    }

    fn list_queues(&self, call: &Call) -> Reply {
        let per_page = match call.query("per_page").map(str::parse::<i64>) {
            None => DEFAULT_PER_PAGE,
            Some(Ok(n)) if n <= 0 => DEFAULT_PER_PAGE,
            Some(Ok(n)) => usize::try_from(n).unwrap_or(MAX_PER_PAGE).min(MAX_PER_PAGE),
            Some(Err(_)) => return Err(ApiError::bad("per_page must be an integer")),
        };
        let namespace = format!("{}/", call.project);
        let prefix = format!("{namespace}{}", call.query("prefix").unwrap_or(""));
        let cursor = match call.query("previous") {
            Some(previous) if !previous.is_empty() => format!("{namespace}{previous}"),
            _ => String::new(),
        };
        let (names, _) = self.ctx.registry.list(&prefix, &cursor, per_page);
        let queues: Vec<Value> = names
            .iter()
            .filter_map(|name| name.strip_prefix(&namespace))
            .map(|name| json!({ "name": name }))
            .collect();
        ok(json!({ "queues": queues }))
    }

    async fn queue_info(&self, call: &Call, q: &str) -> Reply {
        let stats = self.ctx.registry.get(&call.queue(q)?)?.info().await?;
        ok(json!({ "queue": queue_json(&call.project, q, &stats) }))
    }

    /// PUT: create, or update an existing queue keeping its messages.
    async fn put_queue(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let body = call.json()?;
        let mut patch = settings_patch(call, &body)?;
        // PUT replaces the alerts it names.
        patch.alerts = new_alerts(self, call, &body)?;
        patch.validate_for(&name)?;
        let registry = &self.ctx.registry;
        let stats = match registry.create(&name, patch.apply(&QueueSettings::default())) {
            Ok(handle) => {
                registry
                    .store()
                    .commit()
                    .wait()
                    .await
                    .map_err(QueueError::from)?;
                handle.info().await?
            }
            Err(QueueError::QueueExists(_)) => registry.get(&name)?.update(patch).await?,
            Err(err) => return Err(err.into()),
        };
        ok(json!({ "queue": queue_json(&call.project, q, &stats) }))
    }

    async fn patch_queue(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let body = call.json()?;
        let mut patch = settings_patch(call, &body)?;
        let handle = self.ctx.registry.get(&name)?;
        // PATCH adds the alerts it names to the current ones.
        if let Some(added) = new_alerts(self, call, &body)? {
            let current = handle.info().await?.settings.alerts;
            patch.alerts = Some(merge_alerts(&current, added)?);
        }
        patch.validate_for(&name)?;
        let stats = handle.update(patch).await?;
        ok(json!({ "queue": queue_json(&call.project, q, &stats) }))
    }

    /// DELETE .../alerts (ids in the body, as `{"queue": {"alerts": [{"id"}]}}` or
    /// `{"alerts": [...]}`) or .../alerts/{id}.
    async fn remove_alerts(&self, call: &Call, q: &str, one: Option<&str>) -> Reply {
        let handle = self.ctx.registry.get(&call.queue(q)?)?;
        let ids: Vec<String> = match one {
            Some(id) => vec![id.to_owned()],
            None => {
                let body = call.json()?;
                let list = body
                    .get("queue")
                    .and_then(|queue| queue.get("alerts"))
                    .or_else(|| body.get("alerts"));
                let Some(Value::Array(list)) = list else {
                    return Err(ApiError::bad(
                        "name the alerts to remove: {\"queue\": {\"alerts\": [{\"id\": ...}]}}",
                    ));
                };
                // `{"id": ...}` objects; bare id strings are taken too.
                list.iter()
                    .map(|a| a.as_str().or_else(|| a.get("id").and_then(Value::as_str)))
                    .map(|id| id.map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| ApiError::bad("each alert to remove needs a string id"))?
            }
        };
        let current = handle.info().await?.settings.alerts;
        if ids.iter().any(|id| !current.iter().any(|a| &a.id == id)) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "Alert not found"));
        }
        let kept: Vec<Alert> = current
            .into_iter()
            .filter(|a| !ids.contains(&a.id))
            .collect();
        handle
            .update(SettingsPatch {
                alerts: Some(kept),
                ..SettingsPatch::default()
            })
            .await?;
        ok(json!({"msg": "Deleted"}))
    }

    async fn post_messages(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let body = call.json()?;
        let Some(Value::Array(items)) = body.get("messages") else {
            return Err(ApiError::bad("messages must be a non-empty array"));
        };
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(ApiError::bad(format!(
                "messages has {} entries; 1..={MAX_BATCH} are allowed",
                items.len()
            )));
        }
        let mut messages = Vec::with_capacity(items.len());
        for item in items {
            let Value::Object(item) = item else {
                return Err(ApiError::bad("each message must be an object"));
            };
            let Some(Value::String(text)) = item.get("body") else {
                return Err(ApiError::bad("each message needs a string body"));
            };
            if text.len() > self.ctx.max_body {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Message body too large",
                ));
            }
            let delay_s = opt_u64(item, "delay")?.unwrap_or(0);
            if delay_s > MAX_DELAY_S {
                return Err(ApiError::bad(format!(
                    "delay must be 0..={MAX_DELAY_S} seconds"
                )));
            }
            check_push_headers(item)?;
            messages.push(NewMessage {
                body: Bytes::from(text.clone().into_bytes()),
                delay_ms: delay_s * 1000,
            });
        }
        let ids = push_to(&self.ctx.registry, &name, messages).await?;
        Ok((StatusCode::CREATED, posted(&ids)))
    }

    async fn webhook(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        if call.body.len() > self.ctx.max_body {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Message body too large",
            ));
        }
        let message = NewMessage {
            body: call.body.clone(),
            delay_ms: 0,
        };
        let ids = push_to(&self.ctx.registry, &name, vec![message]).await?;
        Ok((StatusCode::CREATED, posted(&ids)))
    }

    async fn reserve(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let body = call.json()?;
        let n = match opt_u64(&body, "n")? {
            None | Some(0) => 1,
            Some(n) if n <= MAX_BATCH as u64 => usize::try_from(n).unwrap_or(1),
            Some(n) => {
                return Err(ApiError::bad(format!(
                    "n = {n} is out of range 1..={MAX_BATCH}"
                )))
            }
        };
        let timeout_ms = reservation_timeout(&body)?;
        let wait_ms = opt_u64(&body, "wait")?.unwrap_or(0).min(MAX_WAIT_S) * 1000;
        let delete = match body.get("delete") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::bad("delete must be true or false")),
        };
        let messages = self
            .ctx
            .registry
            .get(&name)?
            .reserve(n, timeout_ms, wait_ms, delete)
            .await?;
        let list: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut v = message_json(m);
                if !delete {
                    v["reservation_id"] = json!(m.reservation_id.to_string());
                }
                v
            })
            .collect();
        ok(json!({ "messages": list }))
    }

    async fn peek(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let n = match call.query("n").map(str::parse::<u64>) {
            None => 1,
            Some(Ok(n)) if (1..=MAX_BATCH as u64).contains(&n) => usize::try_from(n).unwrap_or(1),
            Some(_) => {
                return Err(ApiError::bad(format!(
                    "n must be an integer in 1..={MAX_BATCH}"
                )))
            }
        };
        let messages = self.ctx.registry.get(&name)?.peek(n).await?;
        let list: Vec<Value> = messages.iter().map(message_json).collect();
        ok(json!({ "messages": list }))
    }

    async fn get_message(&self, call: &Call, q: &str, id: &str) -> Reply {
        let handle = self.ctx.registry.get(&call.queue(q)?)?;
        let id = message_id(id)?;
        let message = handle.get(id).await?;
        ok(json!({ "message": message_json(&message) }))
    }

    async fn delete_message(&self, call: &Call, q: &str, id: &str) -> Reply {
        let handle = self.ctx.registry.get(&call.queue(q)?)?;
        let id = message_id(id)?;
        let body = call.json()?;
        let reservation = opt_reservation(&body, "reservation_id")?;
        handle.delete(vec![(id, reservation)]).await?;
        ok(json!({"msg": "Deleted"}))
    }

    /// DELETE .../messages: with `ids` a batch delete (all or nothing), without it a
    /// clear.
    async fn delete_or_clear(&self, call: &Call, q: &str) -> Reply {
        let handle = self.ctx.registry.get(&call.queue(q)?)?;
        let body = call.json()?;
        let Some(ids) = body.get("ids") else {
            handle.clear().await?;
            return ok(json!({"msg": "Cleared"}));
        };
        let Value::Array(ids) = ids else {
            return Err(ApiError::bad("ids must be an array"));
        };
        if ids.is_empty() || ids.len() > MAX_BATCH {
            return Err(ApiError::bad(format!(
                "ids has {} entries; 1..={MAX_BATCH} are allowed",
                ids.len()
            )));
        }
        let mut entries = Vec::with_capacity(ids.len());
        for entry in ids {
            let Value::Object(entry) = entry else {
                return Err(ApiError::bad("each ids entry must be an object"));
            };
            let Some(Value::String(id)) = entry.get("id") else {
                return Err(ApiError::bad("each ids entry needs a string id"));
            };
            entries.push((message_id(id)?, opt_reservation(entry, "reservation_id")?));
        }
        handle.delete(entries).await?;
        ok(json!({"msg": "Deleted"}))
    }

    async fn touch(&self, call: &Call, q: &str, id: &str) -> Reply {
        let handle = self.ctx.registry.get(&call.queue(q)?)?;
        let id = message_id(id)?;
        let body = call.json()?;
        let reservation = required_reservation(&body)?;
        let timeout_ms = reservation_timeout(&body)?;
        let lease = handle.touch(id, reservation, timeout_ms).await?;
        ok(json!({"msg": "Touched", "reservation_id": lease.reservation_id.to_string()}))
    }

    async fn release(&self, call: &Call, q: &str, id: &str) -> Reply {
        let handle = self.ctx.registry.get(&call.queue(q)?)?;
        let id = message_id(id)?;
        let body = call.json()?;
        let reservation = required_reservation(&body)?;
        let delay_s = opt_u64(&body, "delay")?.unwrap_or(0);
        if delay_s > MAX_DELAY_S {
            return Err(ApiError::bad(format!(
                "delay must be 0..={MAX_DELAY_S} seconds"
            )));
        }
        handle.release(id, reservation, delay_s * 1000).await?;
        ok(json!({"msg": "Released"}))
    }
}

fn not_allowed() -> Reply {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
    ))
}

/// `/3/projects/{project}/rest...` → (project, rest), percent-decoded, one trailing
/// slash allowed. `None` for any other path.
fn split_path(path: &str) -> Option<(String, Vec<String>)> {
    let path = path.strip_prefix("/3/projects/")?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut segments = path.split('/').map(|segment| {
        percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map(|s| s.into_owned())
    });
    let project = segments.next()?.ok()?;
    if project.is_empty() {
        return None;
    }
    let rest: Result<Vec<String>, _> = segments.collect();
    Some((project, rest.ok()?))
}

/// The token of `Authorization: OAuth TOKEN` (scheme compared case-insensitively).
fn bearer(header: Option<&HeaderValue>) -> Option<String> {
    let value = header?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("oauth")
        .then(|| token.trim().to_owned())
}

fn opt_u64(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::bad(format!("{key} must be a non-negative integer"))),
        Some(_) => Err(ApiError::bad(format!("{key} must be an integer"))),
    }
}

/// `timeout` of reserve and touch: absent or 0 is the queue's default.
fn reservation_timeout(body: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    match opt_u64(body, "timeout")? {
        None | Some(0) => Ok(None),
        Some(s) if s <= MAX_TIMEOUT_S => Ok(Some(s * 1000)),
        Some(s) => Err(ApiError::bad(format!(
            "timeout = {s} is out of range 1..={MAX_TIMEOUT_S} seconds"
        ))),
    }
}

fn message_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "Message not found"))
}

/// A reservation id given as a string; `""` counts as absent (the Go client sends
/// it). An id this server never minted can only be wrong: 403.
fn opt_reservation(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "Reservation id is missing, wrong or superseded",
            )
        }),
        Some(_) => Err(ApiError::bad(format!("{key} must be a string"))),
    }
}

fn required_reservation(body: &Map<String, Value>) -> Result<u64, ApiError> {
    opt_reservation(body, "reservation_id")?
        .ok_or_else(|| ApiError::bad("reservation_id is required"))
}

/// Push headers only matter to push queues, which this server does not serve; they
/// are still checked, so a bad request is not accepted silently.
fn check_push_headers(message: &Map<String, Value>) -> Result<(), ApiError> {
    const RESERVED: [&str; 6] = [
        "content-type",
        "user-agent",
        "iron-message-id",
        "iron-reservation-id",
        "iron-subscriber-name",
        "iron-subscriber-message-url",
    ];
    let headers = match message.get("push_headers") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(headers)) => headers,
        Some(_) => return Err(ApiError::bad("push_headers must be an object")),
    };
    if headers.len() > 5 {
        return Err(ApiError::bad("at most 5 push_headers are allowed"));
    }
    for (name, value) in headers {
        if name.is_empty()
            || name.len() > 64
            || RESERVED.contains(&name.to_ascii_lowercase().as_str())
        {
            return Err(ApiError::bad(format!(
                "push header name {name:?} is not allowed"
            )));
        }
        match value {
            Value::String(v) if !v.is_empty() && v.len() <= 1024 => {}
            _ => {
                return Err(ApiError::bad(format!(
                    "push header {name:?} needs a string value of 1..=1024 bytes"
                )))
            }
        }
    }
    Ok(())
}

/// The settings in a create/update body (`{"queue": {...}}` or `{}`).
fn settings_patch(call: &Call, body: &Map<String, Value>) -> Result<SettingsPatch, ApiError> {
    let queue = match body.get("queue") {
        None | Some(Value::Null) => return Ok(SettingsPatch::default()),
        Some(Value::Object(queue)) => queue,
        Some(_) => return Err(ApiError::bad("queue must be an object")),
    };
    match queue.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "pull" => {}
        Some(Value::String(t)) if t == "unicast" || t == "multicast" => {
            return Err(ApiError::bad(
                "push queues (unicast, multicast) are not supported by this server",
            ))
        }
        Some(_) => return Err(ApiError::bad("type must be pull, unicast or multicast")),
    }
    if queue.get("push").is_some_and(|p| !p.is_null()) {
        return Err(ApiError::bad(
            "push queues are not supported by this server",
        ));
    }
    let message_timeout_ms = match opt_u64(queue, "message_timeout")? {
        None => None,
        Some(s) if (1..=MAX_TIMEOUT_S).contains(&s) => Some(s * 1000),
        Some(s) => {
            return Err(ApiError::bad(format!(
                "message_timeout = {s} is out of range 1..={MAX_TIMEOUT_S}"
            )))
        }
    };
    let message_expiration_s = match opt_u64(queue, "message_expiration")? {
        None => None,
        Some(s) if (1..=MAX_EXPIRATION_S).contains(&s) => Some(s),
        Some(s) => {
            return Err(ApiError::bad(format!(
                "message_expiration = {s} is out of range 1..={MAX_EXPIRATION_S}"
            )))
        }
    };
    let dead_letter = match queue.get("dead_letter") {
        None | Some(Value::Null) => None,
        Some(Value::Object(dl)) => {
            let target = match dl.get("queue_name") {
                Some(Value::String(name)) => name.as_str(),
                _ => return Err(ApiError::bad("dead_letter.queue_name must be a string")),
            };
            if target.is_empty() {
                Some(None)
            } else {
                let max = opt_u64(dl, "max_reservations")?.unwrap_or(DEFAULT_MAX_RESERVATIONS);
                Some(Some(DeadLetter {
                    queue: call.queue(target)?,
                    max_reservations: u32::try_from(max).map_err(|_| {
                        ApiError::bad("dead_letter.max_reservations is out of range")
                    })?,
                }))
            }
        }
        Some(_) => return Err(ApiError::bad("dead_letter must be an object")),
    };
    Ok(SettingsPatch {
        message_timeout_ms,
        message_expiration_s,
        dead_letter,
        alerts: None,
    })
}

/// The alerts in a create/update body (`{"queue": {"alerts": [...]}}`), with fresh
/// ids; `None` when the body names none.
fn new_alerts(
    api: &Api,
    call: &Call,
    body: &Map<String, Value>,
) -> Result<Option<Vec<Alert>>, ApiError> {
    let Some(Value::Object(queue)) = body.get("queue") else {
        return Ok(None);
    };
    let list = match queue.get("alerts") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ApiError::bad("alerts must be an array")),
    };
    let mut alerts: Vec<Alert> = Vec::with_capacity(list.len());
    for alert in list {
        let Value::Object(alert) = alert else {
            return Err(ApiError::bad("each alert must be an object"));
        };
        let progressive = match alert.get("type").and_then(Value::as_str) {
            Some("fixed") => false,
            Some("progressive") => true,
            _ => return Err(ApiError::bad("alert type must be fixed or progressive")),
        };
        let trigger = match opt_u64(alert, "trigger")? {
            Some(t) if t > 0 => t,
            _ => return Err(ApiError::bad("alert trigger must be an integer > 0")),
        };
        let descending = match alert.get("direction").and_then(Value::as_str) {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(ApiError::bad("alert direction must be asc or desc")),
        };
        let Some(Value::String(target)) = alert.get("queue") else {
            return Err(ApiError::bad("alert queue must be a queue name"));
        };
        call.queue(target)?;
        let id = api
            .ctx
            .registry
            .store()
            .allocate_ids(1)
            .map_err(QueueError::from)?;
        let new = Alert {
            id: format!("{id:024x}"),
            progressive,
            trigger,
            descending,
            queue: target.clone(),
            snooze: opt_u64(alert, "snooze")?.unwrap_or(0),
        };
        if alerts.iter().any(|a| a.same_rule(&new)) {
            return Err(duplicate_alert());
        }
        alerts.push(new);
    }
    Ok(Some(alerts))
}

fn duplicate_alert() -> ApiError {
    ApiError::bad("At least one new alert duplicates current queue alerts.")
}

/// `current` plus `added`, refusing duplicates and more than five.
fn merge_alerts(current: &[Alert], added: Vec<Alert>) -> Result<Vec<Alert>, ApiError> {
    if added.iter().any(|a| current.iter().any(|c| c.same_rule(a))) {
        return Err(duplicate_alert());
    }
    let merged: Vec<Alert> = current.iter().cloned().chain(added).collect();
    if merged.len() > MAX_ALERTS {
        return Err(ApiError::bad(format!(
            "at most {MAX_ALERTS} alerts per queue"
        )));
    }
    Ok(merged)
}

/// The GET shape of a queue.
fn queue_json(project: &str, local: &str, stats: &QueueStats) -> Value {
    let settings = &stats.settings;
    let mut queue = json!({
        "id": format!("{project}/{local}"),
        "project_id": project,
        "name": local,
        "size": stats.size,
        "total_messages": stats.total_pushed,
        "message_timeout": settings.message_timeout_ms / 1000,
        "message_expiration": settings.message_expiration_s,
        "type": "pull",
    });
    if !settings.alerts.is_empty() {
        let alerts: Vec<Value> = settings
            .alerts
            .iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "type": if a.progressive { "progressive" } else { "fixed" },
                    "trigger": a.trigger,
                    "direction": if a.descending { "desc" } else { "asc" },
                    "queue": a.queue,
                    "snooze": a.snooze,
                })
            })
            .collect();
        queue["alerts"] = Value::Array(alerts);
    }
    if let Some(dl) = &settings.dead_letter {
        let target = dl.queue.as_str();
        let target = target
            .strip_prefix(&format!("{project}/"))
            .unwrap_or(target);
        queue["dead_letter"] = json!({
            "queue_name": target,
            "max_reservations": dl.max_reservations,
        });
    }
    queue
}

/// A message as peek and get show it (no reservation id).
fn message_json(m: &MessageView) -> Value {
    json!({
        "id": m.id.to_string(),
        "body": String::from_utf8_lossy(&m.body),
        "reserved_count": m.reserved_count,
    })
}

fn posted(ids: &[u64]) -> Value {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    json!({ "ids": ids, "msg": "Messages put on queue." })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_split_and_decode_paths() {
        assert_eq!(
            split_path("/3/projects/p1/queues/a%20b/messages/"),
            Some((
                "p1".to_owned(),
                vec!["queues".to_owned(), "a b".to_owned(), "messages".to_owned()]
            ))
        );
        assert_eq!(split_path("/2/projects/p1/queues"), None);
        assert_eq!(split_path("/3/projects//queues"), None);
        assert_eq!(split_path("/3/projects/p1/queues/%FF"), None);
    }

    #[test]
    fn should_read_oauth_headers_case_insensitively() {
        let header = HeaderValue::from_static("oauth secret");
        assert_eq!(bearer(Some(&header)).as_deref(), Some("secret"));
        let header = HeaderValue::from_static("Bearer secret");
        assert_eq!(bearer(Some(&header)), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn should_check_push_headers() {
        let ok_headers = json!({"push_headers": {"X-A": "b"}});
        assert!(check_push_headers(ok_headers.as_object().unwrap()).is_ok());
        for bad in [
            json!({"push_headers": {"Content-Type": "x"}}),
            json!({"push_headers": {"X-A": ""}}),
            json!({"push_headers": {"a": "1", "b": "1", "c": "1", "d": "1", "e": "1", "f": "1"}}),
            json!({"push_headers": []}),
        ] {
            assert!(
                check_push_headers(bad.as_object().unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}
