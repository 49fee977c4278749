//! How the client subcommands print their results: one line of text per result,
//! or with `--json` one JSON object per line with the .proto field names.

use serde_json::json;

use crate::proto;
use crate::queue::types::DEFAULT_PRIORITY;

/// Prints `value` (with `--json`) or `text`.
pub(super) fn print_done(as_json: bool, value: serde_json::Value, text: &str) {
    if as_json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

/// A queue's counters and settings.
pub(super) fn print_info(info: &proto::QueueInfo, as_json: bool) {
    let settings = info.settings.clone().unwrap_or_default();
    let dead_letter = settings.dead_letter.as_ref();
    let value = json!({
        "name": info.name,
        "size": info.size,
        "available": info.available,
        "reserved": info.reserved,
        "delayed": info.delayed,
        "total_pushed": info.total_pushed,
        "settings": {
            "message_timeout_ms": settings.message_timeout_ms,
            "message_expiration_s": settings.message_expiration_s,
            "delivery_history": settings.delivery_history,
            "key_max_in_flight": settings.key_max_in_flight,
            "dead_letter": dead_letter.map(|d| json!({
                "queue": d.queue,
                "max_reservations": d.max_reservations,
            })),
            "push": settings.push.as_ref().map(|p| json!({
                "type": type_name(p.r#type),
                "subscribers": p.subscribers.iter().map(|s| json!({
                    "name": s.name,
                    "url": s.url,
                    "headers": s.headers.iter().map(|h| json!({"name": h.name, "value": h.value})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "retries": p.retries,
                "retries_delay_s": p.retries_delay_s,
                "error_queue": p.error_queue,
            })),
        },
        "created_at_ms": info.created_at_ms,
        "waiting": info.waiting,
        "bytes": info.bytes,
        "processing_samples": info.processing_samples,
        "keys": info.keys,
        "processing_p50_ms": info.processing_p50_ms,
        "processing_p99_ms": info.processing_p99_ms,
        "advised_timeout_ms": info.advised_timeout_ms,
    });
    let dead_letter = dead_letter.map_or_else(String::new, |d| {
        format!(
            " dead_letter={} max_reservations={}",
            d.queue, d.max_reservations
        )
    });
    let push = settings.push.as_ref().map_or_else(String::new, |p| {
        let subscribers: Vec<String> = p
            .subscribers
            .iter()
            .map(|s| format!("{}={}", s.name, s.url))
            .collect();
        format!(
            " type={} subscribers={} retries={} retries_delay={} error_queue={}",
            type_name(p.r#type),
            subscribers.join(","),
            p.retries.unwrap_or_default(),
            super::top::duration(p.retries_delay_s.saturating_mul(1000)),
            p.error_queue.as_deref().unwrap_or("")
        )
    });
    let keys = if info.keys == 0 && settings.key_max_in_flight.unwrap_or(0) == 0 {
        String::new()
    } else {
        format!(
            " keys={} key_max_in_flight={}",
            info.keys,
            settings.key_max_in_flight.unwrap_or(0)
        )
    };
    let processing = if info.processing_samples == 0 {
        keys
    } else {
        let advice = if info.advised_timeout_ms == 0 {
            "default".to_owned()
        } else {
            fine_duration(info.advised_timeout_ms)
        };
        format!(
            " processing_p50={} processing_p99={} (of {} deletes) timeout_auto={advice}",
            fine_duration(info.processing_p50_ms),
            fine_duration(info.processing_p99_ms),
            info.processing_samples
        ) + &keys
    };
    let text = format!(
        "{}: size={} available={} reserved={} delayed={} total_pushed={} waiting={} bytes={} timeout={} expiration={}{dead_letter}{push}{processing}",
        info.name,
        info.size,
        info.available,
        info.reserved,
        info.delayed,
        info.total_pushed,
        info.waiting,
        super::top::size(info.bytes).replace(' ', ""),
        super::top::duration(settings.message_timeout_ms),
        super::top::duration(settings.message_expiration_s.saturating_mul(1000))
    );
    print_done(as_json, value, &text);
}

/// A duration to the millisecond under a minute (`767ms`, `1.79s`), as
/// `duration` above it: processing times are short.
fn fine_duration(ms: u64) -> String {
    if (1000..60_000).contains(&ms) {
        let text = format!("{}.{:03}", ms / 1000, ms % 1000);
        return format!("{}s", text.trim_end_matches('0').trim_end_matches('.'));
    }
    super::top::duration(ms)
}

/// A time in ms since the epoch as RFC 3339 UTC (`-` for 0: never).
fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

fn outcome_name(outcome: i32) -> &'static str {
    match proto::DeliveryOutcome::try_from(outcome) {
        Ok(proto::DeliveryOutcome::InProgress) => "in_progress",
        Ok(proto::DeliveryOutcome::Released) => "released",
        Ok(proto::DeliveryOutcome::TimedOut) => "timed_out",
        Ok(proto::DeliveryOutcome::DeadLettered) => "dead_lettered",
        _ => "unknown",
    }
}

fn type_name(kind: i32) -> &'static str {
    match proto::QueueType::try_from(kind) {
        Ok(proto::QueueType::Unicast) => "unicast",
        Ok(proto::QueueType::Multicast) => "multicast",
        _ => "pull",
    }
}

/// A push-queue message's status with each subscriber, one per line.
pub(super) fn print_push_statuses(statuses: &[proto::PushStatus], as_json: bool) {
    for s in statuses {
        let value = json!({
            "name": s.name,
            "url": s.url,
            "status_code": s.status_code,
            "status": s.status,
            "tries": s.tries,
            "retries_remaining": s.retries_remaining,
            "last_try_at_ms": s.last_try_at_ms,
            "msg": s.msg,
        });
        let text = format!(
            "{} {}: {} status_code={} tries={} retries_remaining={} last_try_at={} {}",
            s.name,
            s.url,
            s.status,
            s.status_code,
            s.tries,
            s.retries_remaining,
            time(s.last_try_at_ms),
            s.msg
        );
        print_done(as_json, value, &text);
    }
}

fn state_name(state: i32) -> &'static str {
    proto::MessageState::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
}

/// Messages, one per line. A reservation id is shown only where there is one (a
/// reserve's answer): get and peek never show one, and a reserve with `--delete`
/// shows its messages as DELETED.
pub(super) fn print_messages(messages: &[proto::Message], as_json: bool) {
    if messages.is_empty() && !as_json {
        println!("no messages");
    }
    for m in messages {
        let body = String::from_utf8_lossy(&m.body);
        let mut value = json!({
            "id": m.id,
            "body": body,
            "reserved_count": m.reserved_count,
            "reserved_until_ms": m.reserved_until_ms,
            "pushed_at_ms": m.pushed_at_ms,
            "available_at_ms": m.available_at_ms,
            "expires_at_ms": m.expires_at_ms,
            "state": state_name(m.state),
            "priority": m.priority,
        });
        if !m.key.is_empty() {
            value["key"] = json!(m.key);
        }
        let mut reservation = String::new();
        if m.reservation_id != 0 {
            value["reservation_id"] = json!(m.reservation_id);
            reservation = format!(" reservation_id={}", m.reservation_id);
        }
        // The default priority goes without saying, as in `push`.
        let mut priority = if m.priority == u32::from(DEFAULT_PRIORITY) {
            String::new()
        } else {
            format!(" priority={}", m.priority)
        };
        if !m.key.is_empty() {
            priority.push_str(&format!(" key={}", m.key));
        }
        let mut text = format!(
            "id={}{} state={}{priority} reserved_count={} body={body}",
            m.id,
            reservation,
            state_name(m.state),
            m.reserved_count
        );
        if !m.history.is_empty() {
            value["history"] = m
                .history
                .iter()
                .map(|a| {
                    json!({
                        "reservation_id": a.reservation_id,
                        "consumer": a.consumer,
                        "reserved_at_ms": a.reserved_at_ms,
                        "ended_at_ms": a.ended_at_ms,
                        "duration_ms": a.duration_ms,
                        "touches": a.touches,
                        "outcome": outcome_name(a.outcome),
                    })
                })
                .collect();
            for (n, a) in m.history.iter().enumerate() {
                let consumer = if a.consumer.is_empty() {
                    "-"
                } else {
                    &a.consumer
                };
                let took = if a.reserved_at_ms == 0 {
                    "?".to_owned()
                } else {
                    fine_duration(a.duration_ms)
                };
                text.push_str(&format!(
                    "\n  attempt {}: {} consumer={consumer} reserved_at={} took={took} touches={} reservation_id={}",
                    n + 1,
                    outcome_name(a.outcome),
                    time(a.reserved_at_ms),
                    a.touches,
                    a.reservation_id
                ));
            }
        }
        print_done(as_json, value, &text);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn processing_times_print_to_the_millisecond_under_a_minute() {
        assert_eq!(super::fine_duration(767), "767ms");
        assert_eq!(super::fine_duration(1_790), "1.79s");
        assert_eq!(super::fine_duration(2_000), "2s");
        assert_eq!(super::fine_duration(90_000), "1m 30s");
    }
}
