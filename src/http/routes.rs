//! The routes of `/3/projects/{project}/...` and their handlers: each turns the
//! request into one service call and its answer into IronMQ's JSON.

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::alerts::{self, Alert};
use super::error::ApiError;
use super::json::{
    message_id, message_json, message_with_history_json, opt_reservation, opt_seconds_as_ms,
    opt_u64, posted, push_headers, queue_json, required_reservation, reservation_timeout,
    settings_patch, statuses_json, subscribers, Call,
};
use super::Api;
use crate::queue::push::{PushPatch, QueueKind, SubscribersChange};
use crate::queue::types::QueueName;
use crate::queue::types::{
    priority, NewMessage, SettingsPatch, DEFAULT_PRIORITY, MAX_BATCH, MAX_WAIT_MS,
};
use crate::service::FollowUps;

/// Default `per_page` of the queue list.
const DEFAULT_PER_PAGE: usize = 30;

type Reply = Result<(StatusCode, Value), ApiError>;

fn ok(body: Value) -> Reply {
    Ok((StatusCode::OK, body))
}

fn not_allowed() -> Reply {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
    ))
}

/// An attachment edit that stores `alerts` whatever was there.
fn replace_alerts(
    alerts: Vec<Alert>,
) -> impl Fn(&[u8]) -> Result<Bytes, ApiError> + Send + 'static {
    move |_current: &[u8]| Ok(alerts::encode(&alerts))
}

/// The `messages` array of a push (or a hand-off's target), and their push
/// headers.
#[allow(clippy::type_complexity)]
fn new_messages(
    items: Option<&Value>,
) -> Result<(Vec<NewMessage>, Vec<Vec<(String, String)>>), ApiError> {
    let Some(Value::Array(items)) = items else {
        return Err(ApiError::bad("messages must be a non-empty array"));
    };
    let mut messages = Vec::with_capacity(items.len());
    let mut headers = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(item) = item else {
            return Err(ApiError::bad("each message must be an object"));
        };
        let Some(Value::String(text)) = item.get("body") else {
            return Err(ApiError::bad("each message needs a string body"));
        };
        headers.push(push_headers(item)?);
        messages.push(NewMessage {
            body: Bytes::from(text.clone().into_bytes()),
            delay_ms: opt_seconds_as_ms(item, "delay")?.unwrap_or(0),
            priority: priority(opt_u64(item, "priority")?)?,
            key: match item.get("key") {
                None | Some(Value::Null) => None,
                Some(Value::String(key)) if key.is_empty() => None,
                Some(Value::String(key)) => Some(Arc::from(key.as_str())),
                Some(_) => return Err(ApiError::bad("key must be a string")),
            },
        });
    }
    Ok((messages, headers))
}

/// The operation a request under `/3/projects/{project}/` names, for metrics
/// and the access log (the shapes of [`Api::route`]; keep the two together).
pub(super) fn op_name(method: &Method, rest: &[String]) -> &'static str {
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let m = method;
    match (rest.as_slice(), m) {
        (["queues"], _) => "list_queues",
        (["queues", _], &Method::GET) => "queue_info",
        (["queues", _], &Method::PUT) => "put_queue",
        (["queues", _], &Method::PATCH) => "update_queue",
        (["queues", _], &Method::DELETE) => "delete_queue",
        (["queues", _, "messages"], &Method::POST) => "push",
        (["queues", _, "messages"], &Method::GET) => "peek",
        (["queues", _, "messages"], &Method::DELETE) => "delete_batch",
        (["queues", _, "webhook"], _) => "webhook",
        (["queues", _, "reservations"], _) => "reserve",
        (["queues", _, "messages", _], &Method::GET) => "get",
        (["queues", _, "messages", _], &Method::DELETE) => "delete",
        (["queues", _, "messages", _, "touch"], _) => "touch",
        (["queues", _, "messages", _, "release"], _) => "release",
        (["queues", _, "messages", _, "hand_off"], _) => "hand_off",
        (["queues", _, "subscribers"], _) => "subscribers",
        (["queues", _, "messages", _, "subscribers"], _) => "push_statuses",
        (["queues", _, "alerts", ..], _) => "alerts",
        _ => "other",
    }
}

impl Api {
    pub(super) async fn route(&self, call: &Call) -> Reply {
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
                    self.service.delete_queue(&call.queue(q)?).await?;
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
            ["queues", q, "messages", id, "hand_off"] => match *m {
                Method::POST => self.hand_off(call, q, id).await,
                _ => not_allowed(),
            },
            ["queues", q, "subscribers"] => match *m {
                Method::POST | Method::PUT | Method::DELETE => self.subscribers(call, q).await,
                _ => not_allowed(),
            },
            ["queues", q, "messages", id, "subscribers"] => match *m {
                Method::GET => {
                    let statuses = self
                        .service
                        .push_statuses(&call.queue(q)?, message_id(id)?)
                        .await?;
                    ok(statuses_json(&statuses))
                }
                _ => not_allowed(),
            },
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
            Some(Ok(n)) => usize::try_from(n).unwrap_or(MAX_BATCH).min(MAX_BATCH),
            Some(Err(_)) => return Err(ApiError::bad("per_page must be an integer")),
        };
        let namespace = format!("{}/", call.project);
        let prefix = format!("{namespace}{}", call.query("prefix").unwrap_or(""));
        let cursor = match call.query("previous") {
            Some(previous) if !previous.is_empty() => format!("{namespace}{previous}"),
            _ => String::new(),
        };
        let limit = u64::try_from(per_page).unwrap_or(1);
        let page = self.service.list_queues(&prefix, &cursor, limit)?;
        let queues: Vec<Value> = page
            .names
            .iter()
            .filter_map(|name| name.strip_prefix(&namespace))
            .map(|name| json!({ "name": name }))
            .collect();
        ok(json!({ "queues": queues }))
    }

    fn alert_ids(&self) -> impl FnMut() -> Result<u64, ApiError> + '_ {
        || Ok(self.service.fresh_ids(1)?)
    }

    async fn queue_info(&self, call: &Call, q: &str) -> Reply {
        let stats = self.service.info(&call.queue(q)?).await?;
        ok(json!({ "queue": queue_json(&call.project, q, &stats)? }))
    }

    /// PUT: create, or update an existing queue keeping its messages; the alerts it
    /// names replace the queue's.
    async fn put_queue(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let body = call.json()?;
        let patch = settings_patch(call, &body)?;
        let alerts = alerts::parse_new(
            &body,
            |target| call.queue(target).map(drop),
            self.alert_ids(),
        )?;
        self.no_alerts_on_push(&name, &patch, alerts.is_some())
            .await?;
        let stats = self
            .service
            .put_queue(&name, patch, alerts.map(replace_alerts))
            .await?;
        ok(json!({ "queue": queue_json(&call.project, q, &stats)? }))
    }

    /// Alerts are for pull queues (IronMQ: "Push queues do not support alerts.").
    async fn no_alerts_on_push(
        &self,
        name: &QueueName,
        patch: &SettingsPatch,
        alerts: bool,
    ) -> Result<(), ApiError> {
        if !alerts {
            return Ok(());
        }
        let push = patch.push.is_some()
            || patch.kind.is_some_and(|k| k != QueueKind::Pull)
            || self
                .service
                .info(name)
                .await
                .is_ok_and(|stats| stats.settings.push.is_some());
        if push {
            return Err(ApiError::bad("Push queues do not support alerts."));
        }
        Ok(())
    }

    /// PATCH: changes what it names; the alerts it names are added to the queue's.
    async fn patch_queue(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let body = call.json()?;
        let patch = settings_patch(call, &body)?;
        let added = alerts::parse_new(
            &body,
            |target| call.queue(target).map(drop),
            self.alert_ids(),
        )?;
        self.no_alerts_on_push(&name, &patch, added.is_some())
            .await?;
        let edit = added.map(|added| {
            move |current: &[u8]| {
                Ok(alerts::encode(&alerts::merge(
                    alerts::decode(current)?,
                    &added,
                )?))
            }
        });
        let stats = self.service.update_queue(&name, patch, edit).await?;
        ok(json!({ "queue": queue_json(&call.project, q, &stats)? }))
    }

    /// DELETE .../alerts (ids in the body, as `{"queue": {"alerts": [{"id": ...}]}}`
    /// or `{"alerts": [...]}`) or .../alerts/{id}.
    async fn remove_alerts(&self, call: &Call, q: &str, one: Option<&str>) -> Reply {
        let name = call.queue(q)?;
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
        let edit = move |current: &[u8]| {
            Ok(alerts::encode(&alerts::remove(
                alerts::decode(current)?,
                &ids,
            )?))
        };
        self.service
            .update_queue(&name, SettingsPatch::default(), Some(edit))
            .await?;
        ok(json!({"msg": "Deleted"}))
    }

    /// POST (add or update by name), PUT (replace) or DELETE (remove by name)
    /// `.../subscribers` of a push queue.
    async fn subscribers(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let body = call.json()?;
        let Some(list) = body.get("subscribers") else {
            return Err(ApiError::bad(
                "name the subscribers: {\"subscribers\": [{\"name\": ..., \"url\": ...}]}",
            ));
        };
        let removing = call.method == Method::DELETE;
        let list = subscribers(list, removing)?;
        let change = match call.method {
            Method::POST => SubscribersChange::Upsert(list),
            Method::PUT => SubscribersChange::Replace(list),
            _ => SubscribersChange::Remove(list.into_iter().map(|s| s.name).collect()),
        };
        let patch = SettingsPatch {
            push: Some(PushPatch {
                subscribers: Some(change),
                ..PushPatch::default()
            }),
            ..SettingsPatch::default()
        };
        self.service
            .update_queue(&name, patch, None::<fn(&[u8]) -> Result<Bytes, ApiError>>)
            .await?;
        ok(json!({"msg": "Updated"}))
    }

    async fn post_messages(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let body = call.json()?;
        let (messages, headers) = new_messages(body.get("messages"))?;
        let ids = self
            .service
            .push_with_headers(&name, messages, headers)
            .await?;
        Ok((StatusCode::CREATED, posted(&ids)))
    }

    /// ferromq's extension: an atomic hand-off (docs/protocol.md "Atomic
    /// hand-off"), `{"reservation_id", "targets": [{"queue", "messages"}]}`; the
    /// target queues are in the same project.
    async fn hand_off(&self, call: &Call, q: &str, id: &str) -> Reply {
        let name = call.queue(q)?;
        let id = message_id(id)?;
        let body = call.json()?;
        let reservation = required_reservation(&body)?;
        let Some(Value::Array(items)) = body.get("targets") else {
            return Err(ApiError::bad("targets must be a non-empty array"));
        };
        let mut targets = Vec::with_capacity(items.len());
        let mut names = Vec::with_capacity(items.len());
        for item in items {
            let Value::Object(item) = item else {
                return Err(ApiError::bad("each target must be an object"));
            };
            let Some(Value::String(queue)) = item.get("queue") else {
                return Err(ApiError::bad("each target needs a string queue"));
            };
            let (messages, headers) = new_messages(item.get("messages"))?;
            names.push(queue.clone());
            targets.push(FollowUps {
                queue: call.queue(queue)?,
                messages,
                headers,
            });
        }
        let ids = self
            .service
            .hand_off(&name, id, reservation, targets)
            .await?;
        let targets: Vec<Value> = names
            .iter()
            .zip(&ids)
            .map(|(queue, ids)| {
                let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
                json!({ "queue": queue, "ids": ids })
            })
            .collect();
        ok(json!({ "msg": "Handed off", "targets": targets }))
    }

    async fn webhook(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let message = NewMessage {
            body: call.body.clone(),
            delay_ms: 0,
            priority: DEFAULT_PRIORITY,
            key: None,
        };
        // `X-Subscribers-Name: v` is the push header `Name: v`; invalid ones are
        // dropped, as IronMQ does.
        let headers: Vec<(String, String)> = call
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let name = name.strip_prefix("x-subscribers-")?;
                crate::queue::push::check_header(name, value).ok()?;
                Some((name.to_owned(), value.clone()))
            })
            .filter(|(name, _)| !matches!(name.as_str(), "content-type" | "user-agent"))
            .take(crate::service::MAX_PUSH_HEADERS)
            .collect();
        let ids = self
            .service
            .push_with_headers(&name, vec![message], vec![headers])
            .await?;
        Ok((StatusCode::CREATED, posted(&ids)))
    }

    async fn reserve(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let body = call.json()?;
        let n = opt_u64(&body, "n")?.unwrap_or(0);
        let timeout_ms = reservation_timeout(&body)?;
        let wait_ms = opt_seconds_as_ms(&body, "wait")?
            .unwrap_or(0)
            .min(MAX_WAIT_MS);
        let delete = match body.get("delete") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::bad("delete must be true or false")),
        };
        let messages = self
            .service
            .reserve(&name, n, timeout_ms, wait_ms, delete, call.consumer()?)
            .await?;
        let list: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut v = message_json(m);
                if !delete {
                    v["reservation_id"] = json!(m.info.reservation_id.to_string());
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
            Some(Ok(n)) if n > 0 => n,
            Some(_) => {
                return Err(ApiError::bad(format!(
                    "n must be an integer in 1..={MAX_BATCH}"
                )))
            }
        };
        let messages = self.service.peek(&name, n).await?;
        let list: Vec<Value> = messages.iter().map(message_json).collect();
        ok(json!({ "messages": list }))
    }

    async fn get_message(&self, call: &Call, q: &str, id: &str) -> Reply {
        let name = call.queue(q)?;
        let id = message_id(id)?;
        let message = self.service.get(&name, id).await?;
        ok(json!({ "message": message_with_history_json(&message) }))
    }

    async fn delete_message(&self, call: &Call, q: &str, id: &str) -> Reply {
        let name = call.queue(q)?;
        let id = message_id(id)?;
        let body = call.json()?;
        let reservation = opt_reservation(&body, "reservation_id")?;
        let subscriber = match body.get("subscriber_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(ApiError::bad("subscriber_name must be a string")),
        };
        match (subscriber, reservation) {
            // A push delivery answered 202, acknowledged by its subscriber.
            (Some(subscriber), Some(reservation)) => {
                self.service
                    .acknowledge(&name, id, reservation, subscriber)
                    .await?;
            }
            (Some(_), None) => {
                return Err(ApiError::bad(
                    "subscriber_name needs the reservation_id of the delivery",
                ))
            }
            (None, reservation) => {
                self.service.delete(&name, vec![(id, reservation)]).await?;
            }
        }
        ok(json!({"msg": "Deleted"}))
    }

    /// DELETE .../messages: with `ids` a batch delete (all or nothing), without it a
    /// clear.
    async fn delete_or_clear(&self, call: &Call, q: &str) -> Reply {
        let name = call.queue(q)?;
        let body = call.json()?;
        let Some(ids) = body.get("ids") else {
            self.service.clear(&name).await?;
            return ok(json!({"msg": "Cleared"}));
        };
        let Value::Array(ids) = ids else {
            return Err(ApiError::bad("ids must be an array"));
        };
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
        self.service.delete(&name, entries).await?;
        ok(json!({"msg": "Deleted"}))
    }

    async fn touch(&self, call: &Call, q: &str, id: &str) -> Reply {
        let name = call.queue(q)?;
        let id = message_id(id)?;
        let body = call.json()?;
        let reservation = required_reservation(&body)?;
        let timeout_ms = reservation_timeout(&body)?;
        let lease = self
            .service
            .touch(&name, id, reservation, timeout_ms)
            .await?;
        ok(json!({"msg": "Touched", "reservation_id": lease.reservation_id.to_string()}))
    }

    async fn release(&self, call: &Call, q: &str, id: &str) -> Reply {
        let name = call.queue(q)?;
        let id = message_id(id)?;
        let body = call.json()?;
        let reservation = required_reservation(&body)?;
        let delay_ms = opt_seconds_as_ms(&body, "delay")?.unwrap_or(0);
        self.service
            .release(&name, id, reservation, delay_ms)
            .await?;
        ok(json!({"msg": "Released"}))
    }
}
