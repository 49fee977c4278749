//! The web dashboard (`ferromq serve --dashboard`): its page under `/ui/` and the
//! JSON API under `/ui/api/` the page calls. Both are served on the HTTP
//! listener; the API is the service layer's, like the IronMQ routes. Its
//! requests and answers: [docs/dashboard.md](../../docs/dashboard.md).
//!
//! # The page
//! Three files written for it (`ui/index.html`, `ui/app.js`, `ui/style.css`)
//! and an icon, compiled into the binary with `include_str!`: no CDN, no build
//! step, no library. The page draws with the DOM and a canvas; every value from
//! a queue or a message reaches the document as a text node (`textContent`),
//! never as markup.
//!
//! # Security (decisions)
//! - The files carry no data and are served to anyone who can reach the port.
//!   Every answer under `/ui/` sets a strict `Content-Security-Policy` (scripts,
//!   styles and images from this origin only, no inline script or style
//!   element, `connect-src 'self'`, `frame-ancestors 'none'`),
//!   `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` and
//!   `Referrer-Policy: no-referrer`; API answers are `Cache-Control: no-store`.
//! - The API takes the token from `Authorization: Bearer TOKEN` (or `OAuth`)
//!   only, never from the URL or a cookie: the page keeps it in the tab's
//!   `sessionStorage`. A token reaches what it reaches on the IronMQ API: a
//!   token for projects sees and operates only their queues (`p/name`), which
//!   the page names in full.
//! - Every API request must carry `X-Ferromq-Dashboard: 1` (403 without). A
//!   page of another origin cannot send that header without a CORS preflight,
//!   which this server never grants, so a forged cross-site request does
//!   nothing even on a server without tokens.
//! - On a server without tokens (`--auth none`), the API answers only requests
//!   whose `Host` is an IP address or `localhost`: a web page that rebinds its
//!   own host name to this server's address (DNS rebinding) gets 403. With
//!   tokens any `Host` is served, since the attacker's page has no token.
//! - Actions (PATCH, DELETE, POST) are asked for confirmation by the page; the
//!   server checks nothing more than for the same calls on the other APIs.
//!
//! # What it shows (decisions)
//! - Rates on the overview: for a token that reaches every queue, the server's
//!   1 s samples of the last five minutes ([`crate::telemetry::RATE_SAMPLES`]);
//!   for a project token, the page works them out from the totals it polls (the
//!   server's samples count every project).
//! - A queue's rates are its own window of 2 s or more
//!   ([`crate::metrics::QueueMetrics::rates`]); its chart is drawn from what the
//!   page polls while it is open.
//! - Message bodies: the first [`PEEK_BODY_BYTES`] of each peeked body, the
//!   first [`GET_BODY_BYTES`] of one looked up by id; UTF-8 as text, anything
//!   else as hex, with the full size and whether it was cut.
//! - Deleting one message works for an available or delayed one; a reserved one
//!   needs its reservation id, which only its consumer has (clear the queue, or
//!   wait for its lease to end).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::json::{queue_json, settings_patch, Call};
use super::{auth, json_response, Api};
use crate::auth::Scope;
use crate::metrics::{QueueFigures, Rates};
use crate::queue::types::{MessageState, MessageView, QueueName};
use crate::service::{QueueSort, TableOrder};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");
const ICON_SVG: &str = include_str!("ui/icon.svg");

/// The page's Content-Security-Policy.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The header every API request must carry (see the module's docs).
const API_HEADER: &str = "x-ferromq-dashboard";

/// Bytes of each body shown by a peek.
const PEEK_BODY_BYTES: usize = 4096;
/// Bytes of a body shown when one message is looked up.
const GET_BODY_BYTES: usize = 65_536;
/// Largest API request body (settings).
const MAX_API_BODY: usize = 64 * 1024;
/// How long the table waits for a queue's settings.
const TARGET_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Queues on one page of the table, by default.
const DEFAULT_TABLE_PAGE: u64 = 50;

type Reply = Result<(StatusCode, Value), ApiError>;

fn ok(body: Value) -> Reply {
    Ok((StatusCode::OK, body))
}

/// Adds the headers every answer under `/ui/` carries.
fn secure(mut response: Response<Full<Bytes>>, cache: &'static str) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set("content-security-policy", CSP);
    set("x-content-type-options", "nosniff");
    set("x-frame-options", "DENY");
    set("referrer-policy", "no-referrer");
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load: an upgraded server serves its own page.
    secure(response, "no-cache")
}

/// Whether `host` (a `Host` header) names this machine by address or as
/// `localhost`, not by a name someone else's DNS could point here.
fn is_address_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]:port` or `[v6]`
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.starts_with(':') => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

impl Api {
    /// Serves a request under `/ui` (the dashboard is on); says which
    /// operation it was.
    pub(super) async fn dashboard(
        &self,
        parts: hyper::http::request::Parts,
        body: Incoming,
    ) -> (Response<Full<Bytes>>, &'static str) {
        let path = parts.uri.path();
        let Some(api) = path.strip_prefix("/ui/api/") else {
            return (self.dashboard_file(&parts.method, path), "dashboard_file");
        };
        let api = api.strip_suffix('/').unwrap_or(api).to_owned();
        let reply = match self.dashboard_call(parts, body, &api).await {
            Ok((status, value)) => json_response(status, &value),
            Err(ApiError { status, msg }) => json_response(status, &json!({ "msg": msg })),
        };
        (secure(reply, "no-store"), "dashboard_api")
    }

    fn dashboard_file(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return secure(
                json_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &json!({"msg": "Method not allowed"}),
                ),
                "no-store",
            );
        }
        match path {
            "/ui" => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                response
                    .headers_mut()
                    .insert(hyper::header::LOCATION, HeaderValue::from_static("/ui/"));
                secure(response, "no-cache")
            }
            "/ui/" | "/ui/index.html" => asset(INDEX_HTML, "text/html; charset=utf-8"),
            "/ui/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
            "/ui/style.css" => asset(STYLE_CSS, "text/css; charset=utf-8"),
            "/ui/icon.svg" => asset(ICON_SVG, "image/svg+xml"),
            _ => secure(
                json_response(StatusCode::NOT_FOUND, &json!({"msg": "Not found"})),
                "no-store",
            ),
        }
    }

    /// The checks of the module's docs, then the body, then the route.
    async fn dashboard_call(
        &self,
        parts: hyper::http::request::Parts,
        body: Incoming,
        api: &str,
    ) -> Reply {
        if !parts.headers.contains_key(API_HEADER) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "dashboard API requests need the X-Ferromq-Dashboard header",
            ));
        }
        if self.auth.disabled {
            let host = parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !is_address_host(host) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "this server has no tokens: its dashboard answers only at an IP address or localhost",
                ));
            }
        }
        let token = auth::token(parts.headers.get(AUTHORIZATION));
        let Some(scope) = self.auth.scope(token.as_deref()) else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized"));
        };
        let declared = hyper::body::Body::size_hint(&body).exact();
        let Some(_held) = self.hold_body(declared) else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server holds its limit of request bodies (--max-http-body-bytes); retry",
            ));
        };
        let body = match Limited::new(body, MAX_API_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large",
                ))
            }
        };
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let request = Request {
            method: parts.method,
            query,
            body,
            scope,
        };
        self.dashboard_route(api, &request).await
    }

    async fn dashboard_route(&self, api: &str, r: &Request) -> Reply {
        match (api, &r.method) {
            ("overview", &Method::GET) => ok(self.overview(&r.scope)),
            ("queues", &Method::GET) => self.table(r).await,
            ("queue", &Method::GET) => self.queue_page(r).await,
            ("queue", &Method::PATCH) => {
                let name = r.queue("name")?;
                let call = r.call(&name);
                let patch = settings_patch(&call, &call.json()?)?;
                self.service
                    .update_queue(&name, patch, None::<fn(&[u8]) -> Result<Bytes, ApiError>>)
                    .await?;
                self.queue_page(r).await
            }
            ("queue", &Method::DELETE) => {
                self.service.delete_queue(&r.queue("name")?).await?;
                ok(json!({"msg": "Deleted"}))
            }
            ("messages", &Method::GET) => {
                let n = r.number("n")?.unwrap_or(10);
                let messages = self.service.peek(&r.queue("name")?, n).await?;
                let list: Vec<Value> = messages
                    .iter()
                    .map(|m| message_json(m, PEEK_BODY_BYTES))
                    .collect();
                ok(json!({ "messages": list }))
            }
            ("messages", &Method::DELETE) => {
                let cleared = self.service.clear(&r.queue("name")?).await?;
                ok(json!({"msg": "Cleared", "cleared": cleared}))
            }
            ("message", &Method::GET) => {
                let id = r.id()?;
                let message = self.service.get(&r.queue("name")?, id).await?;
                ok(json!({ "message": message_json(&message, GET_BODY_BYTES) }))
            }
            ("message", &Method::DELETE) => {
                let id = r.id()?;
                self.service
                    .delete(&r.queue("name")?, vec![(id, None)])
                    .await?;
                ok(json!({"msg": "Deleted"}))
            }
            ("redrive", &Method::POST) => {
                let from = r.queue("name")?;
                let to = r.queue("to")?;
                let n = r.number("n")?.unwrap_or(1);
                let moved = self.service.redrive(&from, &to, n).await?;
                ok(json!({"msg": "Redriven", "moved": moved}))
            }
            ("overview" | "queues" | "queue" | "messages" | "message" | "redrive", _) => Err(
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            ),
            _ => Err(ApiError::new(StatusCode::NOT_FOUND, "Not found")),
        }
    }

    /// `GET /ui/api/overview`: the server as `scope` may see it.
    fn overview(&self, scope: &Scope) -> Value {
        let stats = self.service.server_stats_in(scope);
        let all = *scope == Scope::All;
        let history = all.then(|| {
            self.service
                .metrics()
                .samples()
                .iter()
                .map(|s| json!([s.at_s, s.pushed, s.reserved, s.deleted]))
                .collect::<Vec<Value>>()
        });
        let scope_json = match scope {
            Scope::All => json!("all"),
            Scope::Projects(projects) => json!(projects),
        };
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_ms": stats.uptime_ms,
            "fsync": stats.fsync.to_string(),
            "connections": stats.connections,
            "queues": stats.queues,
            "flushes": stats.flushes,
            "commit": stats.commit.map(|(seconds, writes)| json!({
                "flush_ms": seconds * 1000.0,
                "writes_per_flush": writes,
            })),
            "data_dir_bytes": stats.data_dir_bytes,
            "totals": figures_json(&stats.totals),
            "rates": all.then(|| rates_json(&stats.rates)),
            "history": history,
            "auth": !self.auth.disabled,
            "scope": scope_json,
        })
    }

    /// `GET /ui/api/queues?prefix=&sort=&order=asc|desc&offset=&limit=`.
    async fn table(&self, r: &Request) -> Reply {
        let sort = match r.query("sort") {
            None | Some("") => QueueSort::Name,
            Some(name) => QueueSort::parse(name).ok_or_else(|| {
                let known: Vec<&str> = QueueSort::ALL.iter().map(|(n, _)| *n).collect();
                ApiError::bad(format!("sort must be one of {}", known.join(", ")))
            })?,
        };
        let descending = match r.query("order") {
            None | Some("" | "asc") => false,
            Some("desc") => true,
            Some(_) => return Err(ApiError::bad("order must be asc or desc")),
        };
        let offset = usize::try_from(r.number("offset")?.unwrap_or(0))
            .map_err(|_| ApiError::bad("offset is out of range"))?;
        let limit = r.number("limit")?.unwrap_or(DEFAULT_TABLE_PAGE);
        let table = self.service.queue_table_in(
            &r.scope,
            r.query("prefix").unwrap_or(""),
            TableOrder { sort, descending },
            offset,
            limit,
        )?;
        // The page's dead-letter targets, from each queue's actor (a setting,
        // not a figure), at most 100 asked at once; one that does not answer in
        // time shows none.
        let targets = futures_util::future::join_all(table.rows.iter().map(|row| async {
            let name = QueueName::new(&row.name).ok()?;
            let asked = tokio::time::timeout(TARGET_WAIT, self.service.info(&name));
            let stats = asked.await.ok()?.ok()?;
            Some(stats.settings.dead_letter?.queue.to_string())
        }))
        .await;
        let rows: Vec<Value> = table
            .rows
            .iter()
            .zip(targets)
            .map(|(row, dead_letter)| {
                let mut value = figures_json(&row.figures);
                value["name"] = json!(row.name);
                value["rates"] = rates_json(&row.rates);
                value["dead_letter"] = json!(dead_letter);
                value
            })
            .collect();
        ok(json!({ "queues": rows, "total": table.total, "offset": offset }))
    }

    /// `GET /ui/api/queue?name=`: settings, figures and rates of one queue.
    async fn queue_page(&self, r: &Request) -> Reply {
        let name = r.queue("name")?;
        let stats = self.service.info(&name).await?;
        let row = self.service.queue_row(&name).await?;
        let (project, local) = split(&name);
        let mut settings = queue_json(project, local, &stats)?;
        if let Some(dl) = &stats.settings.dead_letter {
            // The target's full name, for a link.
            settings["dead_letter"]["queue"] = json!(dl.queue.as_str());
        }
        ok(json!({
            "name": name.as_str(),
            "project": name.project(),
            "settings": settings,
            "created_at_ms": stats.created_at_ms,
            "waiting": stats.waiting,
            "figures": figures_json(&row.figures),
            "rates": rates_json(&row.rates),
        }))
    }
}

/// A queue's project (`""`: the default namespace) and its name in it.
fn split(name: &QueueName) -> (&str, &str) {
    name.as_str().split_once('/').unwrap_or(("", name.as_str()))
}

/// A parsed API request.
struct Request {
    method: Method,
    query: Vec<(String, String)>,
    body: Bytes,
    scope: Scope,
}

impl Request {
    fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The queue named by parameter `key`, if this request's token reaches it.
    fn queue(&self, key: &str) -> Result<QueueName, ApiError> {
        let text = self
            .query(key)
            .ok_or_else(|| ApiError::bad(format!("{key} (a queue name) is missing")))?;
        let name = QueueName::new(text)?;
        if !self.scope.covers(&name) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this token does not reach queue {name}"),
            ));
        }
        Ok(name)
    }

    fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.query(key)
            .map(|text| {
                text.parse::<u64>()
                    .map_err(|_| ApiError::bad(format!("{key} must be a non-negative integer")))
            })
            .transpose()
    }

    fn id(&self) -> Result<u64, ApiError> {
        self.number("id")?
            .ok_or_else(|| ApiError::bad("id (a message id) is missing"))
    }

    /// This request as an IronMQ call in `queue`'s project, so settings are
    /// read as the IronMQ API reads them (dead-letter and error queues named
    /// within the project).
    fn call(&self, queue: &QueueName) -> Call {
        Call {
            method: self.method.clone(),
            project: split(queue).0.to_owned(),
            rest: Vec::new(),
            query: Vec::new(),
            headers: Vec::new(),
            body: self.body.clone(),
        }
    }
}

fn rates_json(rates: &Rates) -> Value {
    json!({"pushed": rates.pushed, "reserved": rates.reserved, "deleted": rates.deleted})
}

fn figures_json(f: &QueueFigures) -> Value {
    json!({
        "size": f.available + f.reserved + f.delayed,
        "available": f.available,
        "reserved": f.reserved,
        "delayed": f.delayed,
        "bytes": f.bytes,
        "oldest_age_ms": f.oldest_age_ms,
        "pushed": f.pushed,
        "reservations": f.reservations,
        "deleted": f.deleted,
        "released": f.released,
        "timed_out": f.timed_out,
        "dead_lettered": f.dead_lettered,
        "expired": f.expired,
        "push_delivered": f.push_delivered,
        "push_accepted": f.push_accepted,
        "push_failed": f.push_failed,
    })
}

/// A message for the page: its state and times, and the first `max` bytes of
/// its body as text (UTF-8) or hex.
fn message_json(m: &MessageView, max: usize) -> Value {
    let info = &m.info;
    let state = match info.state {
        MessageState::Available => "available",
        MessageState::Delayed => "delayed",
        MessageState::Reserved => "reserved",
        MessageState::Deleted => "deleted",
    };
    let shown = &m.body[..m.body.len().min(max)];
    let mut body = Map::new();
    match std::str::from_utf8(shown) {
        Ok(text) => {
            body.insert("text".into(), json!(text));
        }
        // Cut inside a character: the text before it.
        Err(err) if err.error_len().is_none() => {
            let text = String::from_utf8_lossy(&shown[..err.valid_up_to()]);
            body.insert("text".into(), json!(text));
        }
        Err(_) => {
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            body.insert("hex".into(), json!(hex));
        }
    }
    json!({
        "id": info.id.to_string(),
        "state": state,
        "reserved_count": info.reserved_count,
        "priority": info.priority,
        "key": m.key.as_deref(),
        "history": m.history.iter().map(|a| json!({
            "outcome": a.outcome.name(),
            "consumer": &*a.consumer,
            "reserved_at_ms": a.reserved_at_ms,
            "duration_ms": a.duration_ms(),
            "touches": a.touches,
        })).collect::<Vec<_>>(),
        "pushed_at_ms": info.pushed_at_ms,
        "expires_at_ms": info.expires_at_ms,
        "available_at_ms": info.available_at_ms,
        "reserved_until_ms": info.reserved_until_ms,
        "size": m.body.len(),
        "truncated": m.body.len() > max,
        "body": body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_and_localhost_are_address_hosts() {
        for host in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "[::1]",
            "10.1.2.3:80",
        ] {
            assert!(is_address_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example:8080",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "[::1]x",
            "[nope]:80",
        ] {
            assert!(!is_address_host(host), "{host}");
        }
    }

    #[test]
    fn bodies_are_text_when_utf8_and_hex_otherwise_and_cut_at_the_limit() {
        let view = |body: &[u8]| MessageView {
            key: None,
            history: Vec::new(),
            info: crate::queue::types::MessageInfo {
                priority: crate::queue::types::DEFAULT_PRIORITY,
                id: 7,
                reserved_count: 2,
                reservation_id: 0,
                reserved_until_ms: 0,
                pushed_at_ms: 1,
                available_at_ms: 0,
                expires_at_ms: 2,
                state: MessageState::Available,
                push_done: 0,
            },
            body: Bytes::copy_from_slice(body),
        };
        let text = message_json(&view(b"<b>hi</b>"), 100);
        assert_eq!(text["body"]["text"], "<b>hi</b>");
        assert_eq!(text["truncated"], false);
        let binary = message_json(&view(&[0xff, 0x00, 0x41]), 100);
        assert_eq!(binary["body"]["hex"], "ff0041");
        // "é" is two bytes: cut after its first, the text stops before it.
        let cut = message_json(&view("aé".as_bytes()), 2);
        assert_eq!(cut["body"]["text"], "a");
        assert_eq!(
            (cut["truncated"].as_bool(), cut["size"].as_u64()),
            (Some(true), Some(3))
        );
    }
}
