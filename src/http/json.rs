//! JSON ⇄ domain values for the HTTP API: the parsed request, the request fields
//! (seconds on this wire, milliseconds in the domain), and the response shapes of
//! IronMQ v3 (`docs/ironmq-v3-api.md` §2).

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::alerts;
use super::error::ApiError;
use crate::queue::history::check_consumer;
use crate::queue::push::{check_header, NewSubscriber, PushPatch, QueueKind, SubscribersChange};
use crate::queue::types::{
    DeadLetterPatch, MessageView, QueueName, QueueStats, SettingsPatch, DEFAULT_MAX_RESERVATIONS,
};
use crate::service::{SubscriberStatus, MAX_PUSH_HEADERS};

/// The header naming the consumer of a reserve, for the delivery history (not
/// IronMQ's; `queue/history.rs`).
pub(super) const CONSUMER_HEADER: &str = "x-ferromq-consumer";

/// The parsed parts of a request a handler needs.
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) project: String,
    /// Path segments after `/3/projects/{project}`, percent-decoded.
    pub(super) rest: Vec<String>,
    pub(super) query: Vec<(String, String)>,
    /// The request's `X-Subscribers-*` headers (the webhook's push headers) and
    /// [`CONSUMER_HEADER`], names in lower case.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Bytes,
}

impl Call {
    pub(super) fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON object in the body; an empty body is `{}`.
    pub(super) fn json(&self) -> Result<Map<String, Value>, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::bad("the request body must be a JSON object")),
            Err(err) => Err(ApiError::bad(format!("invalid JSON: {err}"))),
        }
    }

    /// The consumer name of [`CONSUMER_HEADER`], checked; `None` without one.
    pub(super) fn consumer(&self) -> Result<Option<Arc<str>>, ApiError> {
        let Some((_, name)) = self.headers.iter().find(|(n, _)| n == CONSUMER_HEADER) else {
            return Ok(None);
        };
        check_consumer(name)
            .map_err(|reason| ApiError::bad(format!("{CONSUMER_HEADER}: {reason}")))?;
        Ok(Some(Arc::from(name.as_str())))
    }

    /// The registry name of queue `local` in this call's project (an empty
    /// project, which only the dashboard makes: the default namespace).
    pub(super) fn queue(&self, local: &str) -> Result<QueueName, ApiError> {
        if self.project.is_empty() {
            return Ok(QueueName::new(local)?);
        }
        Ok(QueueName::new(&format!("{}/{local}", self.project))?)
    }
}

/// `/3/projects/{project}/rest...` → (project, rest), percent-decoded, one trailing
/// slash allowed. `None` for any other path.
pub(super) fn split_path(path: &str) -> Option<(String, Vec<String>)> {
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

/// A non-negative integer field, if present.
pub(super) fn opt_u64(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::bad(format!("{key} must be a non-negative integer"))),
        Some(_) => Err(ApiError::bad(format!("{key} must be an integer"))),
    }
}

/// A field in seconds, in milliseconds.
pub(super) fn opt_seconds_as_ms(
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<u64>, ApiError> {
    Ok(opt_u64(map, key)?.map(|s| s.saturating_mul(1000)))
}

/// `timeout` of reserve and touch, in ms: absent or 0 is the queue's default;
/// `"auto"` asks for lease advice (not IronMQ's: `queue/lease.rs`).
pub(super) fn reservation_timeout(body: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    if body.get("timeout").and_then(Value::as_str) == Some("auto") {
        return Ok(Some(crate::queue::types::AUTO_TIMEOUT_MS));
    }
    Ok(opt_seconds_as_ms(body, "timeout")?.filter(|&ms| ms != 0))
}

/// A message id in a path: anything else names no message.
pub(super) fn message_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "Message not found"))
}

/// A reservation id given as a string; `""` counts as absent (the Go client sends
/// it). An id this server never minted can only be wrong: 403.
pub(super) fn opt_reservation(
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<u64>, ApiError> {
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

/// The reservation id a touch or release must have.
pub(super) fn required_reservation(body: &Map<String, Value>) -> Result<u64, ApiError> {
    opt_reservation(body, "reservation_id")?
        .ok_or_else(|| ApiError::bad("reservation_id is required"))
}

/// A message's `push_headers` (IronMQ §2.2): at most 5, none of the headers the
/// server sets, `Content-Type` and `User-Agent` included. The service checks the
/// names and values (`queue/push.rs`).
pub(super) fn push_headers(
    message: &Map<String, Value>,
) -> Result<Vec<(String, String)>, ApiError> {
    const RESERVED: [&str; 2] = ["content-type", "user-agent"];
    let headers = match message.get("push_headers") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(headers)) => headers,
        Some(_) => return Err(ApiError::bad("push_headers must be an object")),
    };
    if headers.len() > MAX_PUSH_HEADERS {
        return Err(ApiError::bad(format!(
            "at most {MAX_PUSH_HEADERS} push_headers are allowed"
        )));
    }
    let mut list = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(ApiError::bad(format!(
                "push header name {name:?} is not allowed"
            )));
        }
        let Value::String(value) = value else {
            return Err(ApiError::bad(format!(
                "push header {name:?} needs a string value"
            )));
        };
        check_header(name, value)?;
        list.push((name.clone(), value.clone()));
    }
    Ok(list)
}

/// The subscribers of a body (`{"subscribers": [{"name", "url", "headers"}]}`,
/// or the `push` object of a queue); a subscriber without a name is named by its
/// URL. With `names_only` (removal), only the names are read.
pub(super) fn subscribers(list: &Value, names_only: bool) -> Result<Vec<NewSubscriber>, ApiError> {
    let Value::Array(list) = list else {
        return Err(ApiError::bad("subscribers must be an array"));
    };
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        // A bare string: a URL (named by itself), or a name to remove.
        if let Value::String(text) = entry {
            let url = if names_only {
                String::new()
            } else {
                text.clone()
            };
            out.push(NewSubscriber {
                name: text.clone(),
                url,
                headers: Vec::new(),
            });
            continue;
        }
        let Value::Object(entry) = entry else {
            return Err(ApiError::bad("each subscriber must be an object or a URL"));
        };
        let text = |key: &str| match entry.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::bad(format!("subscriber {key} must be a string"))),
        };
        let url = text("url")?;
        let name = match (text("name")?, &url) {
            (Some(name), _) => name,
            (None, Some(url)) => url.clone(),
            (None, None) => return Err(ApiError::bad("each subscriber needs a name or a url")),
        };
        let url = match url {
            Some(url) => url,
            None if names_only => String::new(),
            None => return Err(ApiError::bad(format!("subscriber {name:?} needs a url"))),
        };
        let headers = match entry.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(headers)) => headers
                .iter()
                .map(|(k, v)| match v {
                    Value::String(v) => Ok((k.clone(), v.clone())),
                    _ => Err(ApiError::bad(format!(
                        "subscriber header {k:?} needs a string value"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::bad("subscriber headers must be an object")),
        };
        out.push(NewSubscriber { name, url, headers });
    }
    Ok(out)
}

/// The `push` object of a create/update body, as a change: its subscribers
/// replace the queue's (adding one is POST .../subscribers).
fn push_patch(call: &Call, push: &Map<String, Value>) -> Result<PushPatch, ApiError> {
    let retries = opt_u64(push, "retries")?
        .map(|r| u32::try_from(r).map_err(|_| ApiError::bad("push.retries is out of range")))
        .transpose()?;
    let error_queue = match push.get("error_queue") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if name.is_empty() => Some(None),
        Some(Value::String(name)) => Some(Some(call.queue(name)?)),
        Some(_) => return Err(ApiError::bad("push.error_queue must be a string")),
    };
    let subscribers = match push.get("subscribers") {
        None | Some(Value::Null) => None,
        Some(list) => Some(SubscribersChange::Replace(subscribers(list, false)?)),
    };
    Ok(PushPatch {
        subscribers,
        retries,
        retries_delay_s: opt_u64(push, "retries_delay")?,
        error_queue,
    })
}

/// The settings in a create/update body (`{"queue": {...}}` or `{}`). Ranges are
/// the service's to check; this checks the JSON and refuses push queues.
pub(super) fn settings_patch(
    call: &Call,
    body: &Map<String, Value>,
) -> Result<SettingsPatch, ApiError> {
    let queue = match body.get("queue") {
        None | Some(Value::Null) => return Ok(SettingsPatch::default()),
        Some(Value::Object(queue)) => queue,
        Some(_) => return Err(ApiError::bad("queue must be an object")),
    };
    let kind = match queue.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t == "pull" => Some(QueueKind::Pull),
        Some(Value::String(t)) if t == "unicast" => Some(QueueKind::Unicast),
        Some(Value::String(t)) if t == "multicast" => Some(QueueKind::Multicast),
        Some(_) => return Err(ApiError::bad("type must be pull, unicast or multicast")),
    };
    let push = match queue.get("push") {
        None | Some(Value::Null) => None,
        Some(Value::Object(push)) => Some(push_patch(call, push)?),
        Some(_) => return Err(ApiError::bad("push must be an object")),
    };
    let dead_letter = match queue.get("dead_letter") {
        None | Some(Value::Null) => None,
        Some(Value::Object(dl)) => {
            let target = match dl.get("queue_name") {
                Some(Value::String(name)) => name.as_str(),
                _ => return Err(ApiError::bad("dead_letter.queue_name must be a string")),
            };
            if target.is_empty() {
                Some(DeadLetterPatch::Remove)
            } else {
                // IronMQ: a dead_letter without max_reservations gets 10.
                let max =
                    opt_u64(dl, "max_reservations")?.unwrap_or(u64::from(DEFAULT_MAX_RESERVATIONS));
                Some(DeadLetterPatch::Set {
                    queue: Some(call.queue(target)?),
                    max_reservations: Some(u32::try_from(max).map_err(|_| {
                        ApiError::bad("dead_letter.max_reservations is out of range")
                    })?),
                })
            }
        }
        Some(_) => return Err(ApiError::bad("dead_letter must be an object")),
    };
    Ok(SettingsPatch {
        message_timeout_ms: opt_seconds_as_ms(queue, "message_timeout")?,
        message_expiration_s: opt_u64(queue, "message_expiration")?,
        dead_letter,
        kind,
        push,
        delivery_history: opt_u64(queue, "delivery_history")?
            .map(|k| u32::try_from(k).unwrap_or(u32::MAX)),
        key_max_in_flight: opt_u64(queue, "key_max_in_flight")?
            .map(|k| u32::try_from(k).unwrap_or(u32::MAX)),
    })
}

/// The GET shape of a queue.
pub(super) fn queue_json(
    project: &str,
    local: &str,
    stats: &QueueStats,
) -> Result<Value, ApiError> {
    let settings = &stats.settings;
    let id = if project.is_empty() {
        local.to_owned()
    } else {
        format!("{project}/{local}")
    };
    let mut queue = json!({
        "id": id,
        "project_id": project,
        "name": local,
        "size": stats.size,
        "total_messages": stats.total_pushed,
        "message_timeout": settings.message_timeout_ms / 1000,
        "message_expiration": settings.message_expiration_s,
        "delivery_history": settings.delivery_history,
        "key_max_in_flight": settings.key_max_in_flight,
        "keys": stats.keys,
        "type": settings.kind().as_str(),
    });
    let local_name = |name: &QueueName| {
        let name = name.as_str();
        name.strip_prefix(&format!("{project}/"))
            .unwrap_or(name)
            .to_owned()
    };
    if let Some(push) = &settings.push {
        let subscribers: Vec<Value> = push
            .subscribers
            .iter()
            .map(|s| {
                let headers: Map<String, Value> = s
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                json!({"name": s.name, "url": s.url, "headers": headers})
            })
            .collect();
        let mut push_json = json!({
            "subscribers": subscribers,
            "retries": push.retries,
            "retries_delay": push.retries_delay_s,
        });
        if let Some(error_queue) = &push.error_queue {
            push_json["error_queue"] = json!(local_name(error_queue));
        }
        queue["push"] = push_json;
    }
    let alerts = alerts::decode(&stats.attachment)?;
    if !alerts.is_empty() {
        queue["alerts"] = Value::Array(alerts.iter().map(alerts::Alert::json).collect());
    }
    if let Some(p) = &stats.processing {
        // Not IronMQ's: clients ignore fields they do not know.
        queue["processing_time"] = json!({
            "samples": p.samples,
            "p50_ms": p.p50_ms,
            "p99_ms": p.p99_ms,
            "advised_timeout_ms": p.advised_ms,
        });
    }
    if let Some(dl) = &settings.dead_letter {
        queue["dead_letter"] = json!({
            "queue_name": local_name(&dl.queue),
            "max_reservations": dl.max_reservations,
        });
    }
    Ok(queue)
}

/// A message as peek and get show it (no reservation id). Bodies posted here are
/// JSON strings; a body pushed over the binary protocol that is not UTF-8 is shown
/// with replacement characters.
pub(super) fn message_json(m: &MessageView) -> Value {
    json!({
        "id": m.info.id.to_string(),
        "body": String::from_utf8_lossy(&m.body),
        "reserved_count": m.info.reserved_count,
        "priority": m.info.priority,
        "key": m.key.as_deref(),
    })
}

/// A message as get shows it: [`message_json`] with its delivery history.
pub(super) fn message_with_history_json(m: &MessageView) -> Value {
    let mut value = message_json(m);
    value["history"] = m
        .history
        .iter()
        .map(|a| {
            json!({
                "reservation_id": a.reservation_id.to_string(),
                "consumer": &*a.consumer,
                "reserved_at": (a.reserved_at_ms != 0).then(|| rfc3339(a.reserved_at_ms)),
                "reserved_at_ms": a.reserved_at_ms,
                "ended_at_ms": a.ended_at_ms,
                "duration_ms": a.duration_ms(),
                "touches": a.touches,
                "outcome": a.outcome.name(),
            })
        })
        .collect();
    value
}

/// The push statuses of a message (IronMQ §3.17).
pub(super) fn statuses_json(statuses: &[SubscriberStatus]) -> Value {
    let list: Vec<Value> = statuses
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "url": s.url,
                "status_code": s.status_code,
                "status": s.status,
                "tries": s.tries,
                "retries_remaining": s.retries_remaining,
                "last_try_at": (s.last_try_at_ms != 0).then(|| rfc3339(s.last_try_at_ms)),
                "msg": s.msg,
            })
        })
        .collect();
    json!({ "subscribers": list })
}

/// `ms` since the Unix epoch as an RFC 3339 UTC time, to the second.
pub(super) fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The answer to a post.
pub(super) fn posted(ids: &[u64]) -> Value {
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
    fn should_format_times_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_297_405_999), "2026-12-03T11:30:05Z");
    }

    #[test]
    fn should_check_push_headers() {
        let ok_headers = json!({"push_headers": {"X-A": "b"}});
        assert_eq!(
            push_headers(ok_headers.as_object().unwrap()).unwrap(),
            [("X-A".to_owned(), "b".to_owned())]
        );
        for bad in [
            json!({"push_headers": {"Content-Type": "x"}}),
            json!({"push_headers": {"X-A": ""}}),
            json!({"push_headers": {"a": "1", "b": "1", "c": "1", "d": "1", "e": "1", "f": "1"}}),
            json!({"push_headers": []}),
        ] {
            assert!(push_headers(bad.as_object().unwrap()).is_err(), "{bad}");
        }
    }
}
