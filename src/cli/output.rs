//! How the client subcommands print their results: one line of text per result,
//! or with `--json` one JSON object per line with the .proto field names.

use serde_json::json;

use crate::proto;

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
            "dead_letter": dead_letter.map(|d| json!({
                "queue": d.queue,
                "max_reservations": d.max_reservations,
            })),
        },
        "created_at_ms": info.created_at_ms,
        "waiting": info.waiting,
        "bytes": info.bytes,
    });
    let dead_letter = dead_letter.map_or_else(String::new, |d| {
        format!(
            " dead_letter={} max_reservations={}",
            d.queue, d.max_reservations
        )
    });
    let text = format!(
        "{}: size={} available={} reserved={} delayed={} total_pushed={} waiting={} bytes={} message_timeout_ms={} message_expiration_s={}{dead_letter}",
        info.name,
        info.size,
        info.available,
        info.reserved,
        info.delayed,
        info.total_pushed,
        info.waiting,
        info.bytes,
        settings.message_timeout_ms,
        settings.message_expiration_s
    );
    print_done(as_json, value, &text);
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
        });
        let mut reservation = String::new();
        if m.reservation_id != 0 {
            value["reservation_id"] = json!(m.reservation_id);
            reservation = format!(" reservation_id={}", m.reservation_id);
        }
        let text = format!(
            "id={}{} state={} reserved_count={} body={body}",
            m.id,
            reservation,
            state_name(m.state),
            m.reserved_count
        );
        print_done(as_json, value, &text);
    }
}
