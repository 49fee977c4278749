//! JSON ⇄ domain values for the HTTP API: the parsed request, the request fields
//! (seconds on this wire, milliseconds in the domain), and the response shapes of
//! IronMQ v3 (`docs/ironmq-v3-api.md` §2).

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::alerts;
use super::error::ApiError;
use crate::queue::types::{
    DeadLetterPatch, MessageView, QueueName, QueueStats, SettingsPatch, DEFAULT_MAX_RESERVATIONS,
};

/// The parsed parts of a request a handler needs.
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) project: String,
    /// Path segments after `/3/projects/{project}`, percent-decoded.
    pub(super) rest: Vec<String>,
    pub(super) query: Vec<(String, String)>,
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

    /// The registry name of queue `local` in this call's project.
    pub(super) fn queue(&self, local: &str) -> Result<QueueName, ApiError> {
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

/// `timeout` of reserve and touch, in ms: absent or 0 is the queue's default.
pub(super) fn reservation_timeout(body: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
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

/// Push headers only matter to push queues, which this server does not serve; they
/// are still checked, so a bad request is not accepted silently.
pub(super) fn check_push_headers(message: &Map<String, Value>) -> Result<(), ApiError> {
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
        ..SettingsPatch::default()
    })
}

/// The GET shape of a queue.
pub(super) fn queue_json(
    project: &str,
    local: &str,
    stats: &QueueStats,
) -> Result<Value, ApiError> {
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
    let alerts = alerts::decode(&stats.attachment)?;
    if !alerts.is_empty() {
        queue["alerts"] = Value::Array(alerts.iter().map(alerts::Alert::json).collect());
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
    })
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
