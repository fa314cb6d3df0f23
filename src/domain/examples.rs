//! Example events for the API documentation (Swagger UI's "Try it out" sends them).
//! They are parsed by the real validator, so an invalid example cannot ship.

use poem_openapi::types::Example;
use serde_json::json;
use time::macros::datetime;

use super::event::*;
use super::{validate_batch, ValidBatch};

/// One event of every type, in one batch; fixed ids, so resending it stores nothing twice.
pub fn example_batch_json() -> serde_json::Value {
    let header = |n: u8, event_type: &str, offset_secs: u8| {
        json!({
            "type": event_type,
            "event_id": format!("01937f3a-5c2e-7d41-9b6a-3e4f5a6b7c{n:02x}"),
            "player_id": "player-42",
            "session_id": "01937f3a-5c2e-7d41-9b6a-3e4f5a6b7c00",
            "occurred_at": format!("2026-11-01T18:30:{offset_secs:02}+01:00"),
        })
    };
    let with = |mut base: serde_json::Value, fields: serde_json::Value| {
        base.as_object_mut()
            .expect("an object")
            .extend(fields.as_object().expect("an object").clone());
        base
    };
    json!({
        "sent_at": "2026-11-01T18:31:00+01:00",
        "events": [
            with(header(1, "session_start", 0), json!({"platform": "ios", "app_version": "1.4.2", "device": "iPhone15,3", "country": "SE"})),
            with(header(2, "progression", 5), json!({"status": "complete", "level": "world-1:stage-3", "score": 12500, "attempt": 2})),
            with(header(3, "purchase", 10), json!({"item_id": "gem_pack_small", "item_type": "bundle", "amount_minor": 499, "currency": "EUR", "transaction_id": "GPA.3372-4150-9012-34567"})),
            with(header(4, "resource", 15), json!({"flow": "sink", "currency": "gold", "amount": 250.0, "item_type": "booster", "item_id": "double_xp"})),
            with(header(5, "custom", 20), json!({"name": "tutorial:step:completed", "value": 3.0, "properties": {"step": 3, "skipped": false}})),
            with(header(6, "error", 25), json!({"severity": "error", "message": "NullReferenceException in ShopController.Open"})),
            with(header(7, "session_end", 30), json!({"duration_seconds": 1860})),
        ]
    })
}

pub fn example_batch() -> ValidBatch {
    validate_batch(&example_batch_json(), datetime!(2026-11-01 17:31 UTC))
        .expect("the example batch is valid")
}

fn example_event(event_type: EventType) -> Event {
    example_batch()
        .events
        .into_iter()
        .find(|e| e.event_type() == event_type)
        .expect("the example batch has every event type")
}

macro_rules! example {
    ($ty:ident, $variant:ident) => {
        impl Example for $ty {
            fn example() -> Self {
                match example_event(EventType::$variant) {
                    Event::$variant(e) => e,
                    _ => unreachable!("example_event returns the requested type"),
                }
            }
        }
    };
}

example!(SessionStart, SessionStart);
example!(SessionEnd, SessionEnd);
example!(Progression, Progression);
example!(Purchase, Purchase);
example!(Resource, Resource);
example!(Custom, Custom);
example!(ClientError, Error);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_batch_is_valid_and_has_every_type() {
        let batch = example_batch();
        let mut types: Vec<&str> = batch
            .events
            .iter()
            .map(|e| e.event_type().as_str())
            .collect();
        types.sort_unstable();
        let mut all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        all.sort_unstable();
        assert_eq!(types, all);
        assert_eq!(
            ClientError::example().header.event_id,
            batch.events[5].header().event_id
        );
    }
}
