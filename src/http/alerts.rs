//! IronMQ queue alerts (a legacy feature of the HTTP API): stored and shown, not
//! fired, which the spec leaves optional.
//!
//! Alerts belong to this front end alone: they live in the queue's attachment, a
//! blob the queue layer stores with the queue record and never reads. The blob is
//! a JSON array of `{"id", "progressive", "trigger", "descending", "queue",
//! "snooze"}` (empty when there are none); this is the form the queue record held
//! before attachments existed, so older data directories keep their alerts. Every
//! edit (add, replace, remove) runs inside the queue's actor on the current blob
//! (`Service::update_queue`), so two edits at once cannot lose one another.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::json::opt_u64;

/// Most alerts per queue.
pub(super) const MAX_ALERTS: usize = 5;

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Alert {
    /// Server-assigned id.
    pub(super) id: String,
    /// `fixed` or `progressive`.
    pub(super) progressive: bool,
    /// Queue size that triggers it, > 0.
    pub(super) trigger: u64,
    /// `asc` (size rising) or `desc`.
    pub(super) descending: bool,
    /// Name of the queue the alert would post to (in the same project).
    pub(super) queue: String,
    /// Seconds between two firings.
    pub(super) snooze: u64,
}

impl Alert {
    /// Whether two alerts are the same rule (IronMQ refuses such a duplicate).
    fn same_rule(&self, other: &Alert) -> bool {
        self.progressive == other.progressive
            && self.descending == other.descending
            && self.trigger == other.trigger
    }

    /// The GET shape.
    pub(super) fn json(&self) -> Value {
        json!({
            "id": self.id,
            "type": if self.progressive { "progressive" } else { "fixed" },
            "trigger": self.trigger,
            "direction": if self.descending { "desc" } else { "asc" },
            "queue": self.queue,
            "snooze": self.snooze,
        })
    }
}

/// The alerts in a queue's attachment.
///
/// # Errors
/// 500 if the stored blob is not an alert list.
pub(super) fn decode(blob: &[u8]) -> Result<Vec<Alert>, ApiError> {
    if blob.is_empty() {
        return Ok(Vec::new());
    }
    let unreadable = || {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the stored alerts are unreadable",
        )
    };
    let value: Value = serde_json::from_slice(blob).map_err(|_| unreadable())?;
    value
        .as_array()
        .ok_or_else(unreadable)?
        .iter()
        .map(|a| {
            Some(Alert {
                id: a.get("id")?.as_str()?.to_owned(),
                progressive: a.get("progressive")?.as_bool()?,
                trigger: a.get("trigger")?.as_u64()?,
                descending: a.get("descending")?.as_bool()?,
                queue: a.get("queue")?.as_str()?.to_owned(),
                snooze: a.get("snooze")?.as_u64()?,
            })
        })
        .collect::<Option<Vec<Alert>>>()
        .ok_or_else(unreadable)
}

/// The attachment holding `alerts` (empty for none).
pub(super) fn encode(alerts: &[Alert]) -> Bytes {
    if alerts.is_empty() {
        return Bytes::new();
    }
    let list: Vec<Value> = alerts
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "progressive": a.progressive, "trigger": a.trigger,
                "descending": a.descending, "queue": a.queue, "snooze": a.snooze,
            })
        })
        .collect();
    Bytes::from(Value::Array(list).to_string())
}

/// The alerts a create/update body names (`{"queue": {"alerts": [...]}}`), with
/// fresh ids from `ids`; `None` when it names none. `check_queue` validates each
/// alert's target queue name.
///
/// # Errors
/// 400 for a malformed alert or two alerts of the same rule.
pub(super) fn parse_new(
    body: &Map<String, Value>,
    check_queue: impl Fn(&str) -> Result<(), ApiError>,
    mut fresh_id: impl FnMut() -> Result<u64, ApiError>,
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
        check_queue(target)?;
        let new = Alert {
            id: format!("{:024x}", fresh_id()?),
            progressive,
            trigger,
            descending,
            queue: target.clone(),
            snooze: opt_u64(alert, "snooze")?.unwrap_or(0),
        };
        if alerts.iter().any(|a| a.same_rule(&new)) {
            return Err(duplicate());
        }
        alerts.push(new);
    }
    if alerts.len() > MAX_ALERTS {
        return Err(too_many());
    }
    Ok(Some(alerts))
}

/// `current` plus `added`, refusing duplicates and more than five.
///
/// # Errors
/// 400.
pub(super) fn merge(current: Vec<Alert>, added: &[Alert]) -> Result<Vec<Alert>, ApiError> {
    if added.iter().any(|a| current.iter().any(|c| c.same_rule(a))) {
        return Err(duplicate());
    }
    let merged: Vec<Alert> = current.into_iter().chain(added.iter().cloned()).collect();
    if merged.len() > MAX_ALERTS {
        return Err(too_many());
    }
    Ok(merged)
}

/// `current` without the alerts named by `ids`.
///
/// # Errors
/// 404 if one of them is not there (then nothing is removed).
pub(super) fn remove(current: Vec<Alert>, ids: &[String]) -> Result<Vec<Alert>, ApiError> {
    if ids.iter().any(|id| !current.iter().any(|a| &a.id == id)) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Alert not found"));
    }
    Ok(current
        .into_iter()
        .filter(|a| !ids.contains(&a.id))
        .collect())
}

fn duplicate() -> ApiError {
    ApiError::bad("At least one new alert duplicates current queue alerts.")
}

fn too_many() -> ApiError {
    ApiError::bad(format!("at most {MAX_ALERTS} alerts per queue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, trigger: u64) -> Alert {
        Alert {
            id: id.into(),
            progressive: false,
            trigger,
            descending: false,
            queue: "ops".into(),
            snooze: 0,
        }
    }

    #[test]
    fn should_round_trip_the_stored_form() {
        let alerts = vec![alert("a", 1), alert("b", 2)];
        assert_eq!(decode(&encode(&alerts)).unwrap(), alerts);
        assert!(encode(&[]).is_empty());
        assert!(decode(b"").unwrap().is_empty());
        assert!(decode(b"{}").is_err());
        // The form older data directories hold.
        let stored = br#"[{"id":"x","progressive":true,"trigger":9,"descending":true,"queue":"q","snooze":60}]"#;
        assert_eq!(decode(stored).unwrap()[0].snooze, 60);
    }

    #[test]
    fn should_merge_and_remove_by_the_rules() {
        let current = vec![alert("a", 1)];
        assert!(
            merge(current.clone(), &[alert("b", 1)]).is_err(),
            "same rule"
        );
        let merged = merge(current.clone(), &[alert("b", 2)]).unwrap();
        assert_eq!(merged.len(), 2);
        let five: Vec<Alert> = (1..=5).map(|t| alert("n", t + 10)).collect();
        assert!(merge(current, &five).is_err(), "six is too many");
        assert_eq!(
            remove(merged.clone(), &["a".into()]).unwrap(),
            [alert("b", 2)]
        );
        assert!(remove(merged, &["zz".into()]).is_err());
    }
}
