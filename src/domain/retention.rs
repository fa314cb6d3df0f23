//! A game keeps its events for its retention, counted from when they occurred (as their
//! client said): an event already older than that is refused, rather than accepted and
//! then dropped.

use time::{Duration, OffsetDateTime};

use super::{FieldError, ValidBatch};

/// The events of `batch` older than `days` days before it was received, as errors
/// naming each (empty when every event is recent enough).
pub fn events_past_retention(batch: &ValidBatch, days: u32) -> Vec<FieldError> {
    let oldest = batch.received_at - Duration::days(i64::from(days));
    batch
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.header().occurred_at < oldest)
        .map(|(index, _)| FieldError {
            index: Some(index),
            pointer: format!("/events/{index}/occurred_at"),
            reason: format!(
                "is older than this game keeps events ({days} days): it would be dropped at once"
            ),
        })
        .collect()
}

/// The first instant of retention for events received at `received_at`.
pub fn oldest_kept(received_at: OffsetDateTime, days: u32) -> OffsetDateTime {
    received_at - Duration::days(i64::from(days))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;
    use crate::domain::validate_batch;

    #[test]
    fn events_older_than_the_retention_are_named_and_the_rest_pass() {
        let received = datetime!(2026-12-10 12:00 UTC);
        let event = |id: u8, at: &str| {
            json!({"type": "custom", "event_id": format!("0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c{id:02x}"),
                   "player_id": "p", "session_id": "0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c00",
                   "occurred_at": at, "name": "x"})
        };
        let batch = validate_batch(
            &json!({"events": [
                event(1, "2026-12-03T12:00:00Z"),
                event(2, "2026-12-03T11:59:59Z"),
                event(3, "2026-12-10T11:00:00Z"),
            ]}),
            received,
        )
        .unwrap();
        let errors = events_past_retention(&batch, 7);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/events/1/occurred_at");
        assert!(events_past_retention(&batch, 8).is_empty());
        assert_eq!(oldest_kept(received, 7), datetime!(2026-12-03 12:00 UTC));
    }
}
