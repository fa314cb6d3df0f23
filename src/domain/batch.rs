//! An ingest request, validated as a whole: every invalid event is reported (with its
//! index, field and reason), not only the first, and a batch is accepted only if all of
//! it is valid.

use std::collections::hash_map::{Entry, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::event::*;
use super::fields::{json_kind, FromJsonField};

/// Most events one request may carry.
pub const MAX_EVENTS_PER_BATCH: usize = 1000;
/// How far in the future (after clock-skew correction) an event may claim to have happened.
pub const MAX_FUTURE_SKEW: Duration = Duration::hours(1);
/// Events before this instant (after correction) come from a broken clock, not a game.
pub const EARLIEST_OCCURRED_AT: OffsetDateTime = time::macros::datetime!(2000-01-01 0:00 UTC);

/// A batch that passed validation, with the instant the server received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidBatch {
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub events: Vec<Event>,
}

impl ValidBatch {
    pub fn clock_skew(&self) -> ClockSkew {
        ClockSkew::between(self.sent_at, self.received_at)
    }
}

/// How far the client's clock is behind the server's, measured from a request's
/// `sent_at` (client clock) and the instant the server received it (server clock).
/// Network latency is counted as skew; it is small beside the drift of device clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSkew(Duration);

impl ClockSkew {
    pub fn between(sent_at: Option<OffsetDateTime>, received_at: OffsetDateTime) -> Self {
        Self(sent_at.map_or(Duration::ZERO, |sent_at| received_at - sent_at))
    }

    /// A client timestamp translated to the server's clock.
    pub fn correct(self, client_time: OffsetDateTime) -> OffsetDateTime {
        client_time.saturating_add(self.0)
    }
}

/// One reason an event (or the request around it) is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Index of the event in `events`; `None` for the request's own fields.
    pub index: Option<usize>,
    /// JSON Pointer (RFC 6901) to the offending value, such as `/events/3/player_id`.
    pub pointer: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchRejection {
    #[error("a request may carry at most {limit} events, this one has {count}")]
    TooManyEvents { count: usize, limit: usize },
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

/// How a batch wraps its events, for the errors of bodies that do not.
const WRAP_EVENTS: &str = r#"{"events": [event, ...]}"#;
/// Fields of every event, none of them a batch's.
const EVENT_HEADER_FIELDS: [&str; 5] =
    ["type", "event_id", "player_id", "session_id", "occurred_at"];

/// A rejection of the body as a whole.
fn body_error(reason: String) -> BatchRejection {
    BatchRejection::Invalid(vec![FieldError {
        index: None,
        pointer: String::new(),
        reason,
    }])
}

/// Why a request body is not a batch.
#[derive(Debug, thiserror::Error)]
pub enum BodyRejection {
    /// The API words it (`api/events.rs`).
    #[error(transparent)]
    NotJson(serde_json::Error),
    #[error(transparent)]
    Batch(#[from] BatchRejection),
}

/// Reads and validates a request body received at `received_at`. A valid batch is read
/// in one typed pass ([`wire`](super::wire)); any other body through a JSON tree, by
/// [`validate_batch`], which reports every reason it is refused.
pub fn read_batch(body: &[u8], received_at: OffsetDateTime) -> Result<ValidBatch, BodyRejection> {
    if let Some(batch) = super::wire::read_valid_batch(body, received_at) {
        return Ok(batch);
    }
    let value: Value = serde_json::from_slice(body).map_err(BodyRejection::NotJson)?;
    Ok(validate_batch(&value, received_at)?)
}

/// Validates a parsed request body received at `received_at`.
pub fn validate_batch(
    body: &Value,
    received_at: OffsetDateTime,
) -> Result<ValidBatch, BatchRejection> {
    let mut errors = Vec::new();
    let Value::Object(request) = body else {
        let reason = match body {
            Value::Array(_) => format!(
                "the request body must be a JSON object, not an array: send the events as {}",
                WRAP_EVENTS
            ),
            other => format!(
                "the request body must be a JSON object, not {}",
                json_kind(other)
            ),
        };
        return Err(body_error(reason));
    };
    // One event sent alone: one error that says so, rather than one "is not a field" for
    // each of its fields and a missing `events`.
    if !request.contains_key("events")
        && EVENT_HEADER_FIELDS.iter().any(|f| request.contains_key(*f))
    {
        return Err(body_error(format!(
            "the request body is a single event, not a batch: send it as {WRAP_EVENTS}"
        )));
    }

    let mut top = FieldReader::new(None, "", request, &mut errors);
    let sent_at: Option<Option<OffsetDateTime>> = top.optional("sent_at");
    let raw_events = top.take_required("events");
    top.reject_unknown();

    let raw_events = match raw_events {
        Some(Value::Array(items)) if items.is_empty() => {
            errors.push(FieldError {
                index: None,
                pointer: "/events".to_owned(),
                reason: "must hold at least one event".to_owned(),
            });
            &[][..]
        }
        Some(Value::Array(items)) if items.len() > MAX_EVENTS_PER_BATCH => {
            return Err(BatchRejection::TooManyEvents {
                count: items.len(),
                limit: MAX_EVENTS_PER_BATCH,
            })
        }
        Some(Value::Array(items)) => &items[..],
        Some(other) => {
            errors.push(FieldError {
                index: None,
                pointer: "/events".to_owned(),
                reason: format!("must be an array of events, not {}", json_kind(other)),
            });
            &[][..]
        }
        None => &[][..],
    };

    let skew = ClockSkew::between(sent_at.flatten(), received_at);
    let mut events = Vec::with_capacity(raw_events.len());
    let mut first_index_of: HashMap<Uuid, usize> = HashMap::with_capacity(raw_events.len());
    for (index, raw) in raw_events.iter().enumerate() {
        let Some(event) = read_event(index, raw, skew, received_at, &mut errors) else {
            continue;
        };
        match first_index_of.entry(event.header().event_id) {
            Entry::Occupied(first) => errors.push(FieldError {
                index: Some(index),
                pointer: format!("/events/{index}/event_id"),
                reason: format!(
                    "repeats the event_id of event {}: each event needs its own",
                    first.get()
                ),
            }),
            Entry::Vacant(slot) => {
                slot.insert(index);
                events.push(event);
            }
        }
    }

    if errors.is_empty() {
        Ok(ValidBatch {
            sent_at: sent_at.flatten(),
            received_at,
            events,
        })
    } else {
        Err(BatchRejection::Invalid(errors))
    }
}

fn read_event(
    index: usize,
    raw: &Value,
    skew: ClockSkew,
    received_at: OffsetDateTime,
    errors: &mut Vec<FieldError>,
) -> Option<Event> {
    let prefix = format!("/events/{index}");
    let Value::Object(fields) = raw else {
        errors.push(FieldError {
            index: Some(index),
            pointer: prefix,
            reason: format!("each event must be a JSON object, not {}", json_kind(raw)),
        });
        return None;
    };
    let errors_before = errors.len();
    let mut r = FieldReader::new(Some(index), &prefix, fields, errors);

    // Missing and null are take_required's errors; a value that is no type is this one.
    let raw_type = r.take_required("type");
    let event_type = raw_type
        .and_then(Value::as_str)
        .and_then(EventType::from_wire);
    if raw_type.is_some() && event_type.is_none() {
        let expected: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        r.error("type", format!("must be one of {}", expected.join(", ")));
    }

    // Every field is read before any is combined, so each invalid one gets its error.
    let event_id: Option<Uuid> = r.required("event_id");
    if let Some(Err(reason)) = event_id.map(check_event_id) {
        r.error("event_id", reason);
    }
    let player_id = r.required("player_id");
    let session_id = r.required("session_id");
    let occurred_at: Option<OffsetDateTime> = r.required("occurred_at");
    if let Some(Err(reason)) = occurred_at.map(|t| check_occurred_at(t, skew, received_at)) {
        r.error("occurred_at", reason);
    }
    let header = (|| {
        Some(EventHeader {
            event_id: event_id?,
            player_id: player_id?,
            session_id: session_id?,
            occurred_at: occurred_at?,
        })
    })();

    // Each field of the event's type is read, then the event is built only if the header
    // and every field are valid.
    macro_rules! build {
        ($($variant:ident($ty:ident { $($field:ident: $read:ident),+ $(,)? })),+ $(,)?) => {
            match event_type? {
                $(EventType::$variant => {
                    $(let $field = build!(@$read $field);)+
                    (|| Some(Event::$variant($ty { $($field: $field?,)+ header: header? })))()
                })+
            }
        };
        (@optional $field:ident) => { r.optional(stringify!($field)) };
        // Every other field is required; the field's type says how it is read.
        (@$required:ident $field:ident) => { r.required(stringify!($field)) };
    }
    let event = with_event_fields!(build);
    r.reject_unknown();
    (errors.len() == errors_before).then_some(event).flatten()
}

/// The rule of an event's `event_id` beyond being a UUID.
pub(super) fn check_event_id(event_id: Uuid) -> Result<(), String> {
    if event_id.is_nil() {
        return Err("must not be the nil UUID".to_owned());
    }
    Ok(())
}

/// The rule of an event's `occurred_at`, on the server's clock.
pub(super) fn check_occurred_at(
    occurred_at: OffsetDateTime,
    skew: ClockSkew,
    received_at: OffsetDateTime,
) -> Result<(), String> {
    let corrected = skew.correct(occurred_at);
    if corrected > received_at + MAX_FUTURE_SKEW {
        Err(format!(
            "is more than {MAX_FUTURE_SKEW} in the future (after correcting the client clock by sent_at)"
        ))
    } else if corrected < EARLIEST_OCCURRED_AT {
        Err("is before 2000-01-01 (after correcting the client clock by sent_at)".to_owned())
    } else {
        Ok(())
    }
}

/// Reads the fields of one JSON object, recording an error for each one that is missing
/// or invalid and, at the end, for each one nobody asked for.
struct FieldReader<'f, 'e> {
    index: Option<usize>,
    prefix: &'e str,
    fields: &'f Map<String, Value>,
    read: Vec<&'static str>,
    errors: &'e mut Vec<FieldError>,
}

impl<'f, 'e> FieldReader<'f, 'e> {
    fn new(
        index: Option<usize>,
        prefix: &'e str,
        fields: &'f Map<String, Value>,
        errors: &'e mut Vec<FieldError>,
    ) -> Self {
        Self {
            index,
            prefix,
            fields,
            read: Vec::with_capacity(fields.len()),
            errors,
        }
    }

    fn error(&mut self, name: &str, reason: String) {
        self.errors.push(FieldError {
            index: self.index,
            pointer: format!("{}/{}", self.prefix, name),
            reason,
        });
    }

    fn mark_read(&mut self, name: &'static str) {
        if !self.read.contains(&name) {
            self.read.push(name);
        }
    }

    fn take_required(&mut self, name: &'static str) -> Option<&'f Value> {
        self.mark_read(name);
        match self.fields.get(name) {
            None => {
                self.error(name, "is required".to_owned());
                None
            }
            Some(Value::Null) => {
                self.error(name, "is required and must not be null".to_owned());
                None
            }
            Some(value) => Some(value),
        }
    }

    fn required<T: FromJsonField>(&mut self, name: &'static str) -> Option<T> {
        let value = self.take_required(name)?;
        self.convert(name, value)
    }

    /// `Some(None)` when absent or null, `None` when present but invalid.
    fn optional<T: FromJsonField>(&mut self, name: &'static str) -> Option<Option<T>> {
        self.mark_read(name);
        match self.fields.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(value) => self.convert(name, value).map(Some),
        }
    }

    fn convert<T: FromJsonField>(&mut self, name: &str, value: &Value) -> Option<T> {
        match T::from_json_field(value) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.error(name, reason);
                None
            }
        }
    }

    fn reject_unknown(&mut self) {
        let unknown: Vec<&String> = self
            .fields
            .keys()
            .filter(|k| !self.read.contains(&k.as_str()))
            .collect();
        for name in unknown {
            self.error(name, "is not a field of this object (typo?)".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const RECEIVED: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    fn event(event_type: &str, id: u128) -> Value {
        let mut e = json!({
            "type": event_type,
            "event_id": Uuid::from_u128(id).to_string(),
            "player_id": "player-1",
            "session_id": "0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c7d",
            "occurred_at": "2026-11-25T11:59:00Z",
        });
        let own = match event_type {
            "session_start" => json!({"platform": "ios", "app_version": "1.0"}),
            "session_end" => json!({"duration_seconds": 60}),
            "progression" => json!({"status": "start", "level": "w1"}),
            "purchase" => {
                json!({"item_id": "gems", "item_type": "pack", "amount_minor": 99, "currency": "EUR"})
            }
            "resource" => {
                json!({"flow": "sink", "currency": "gold", "amount": 5, "item_type": "boost", "item_id": "x2"})
            }
            "custom" => json!({"name": "tutorial:done"}),
            "error" => json!({"severity": "error", "message": "boom"}),
            other => panic!("no such type {other}"),
        };
        e.as_object_mut()
            .unwrap()
            .extend(own.as_object().unwrap().clone());
        e
    }

    fn errors_of(body: Value) -> Vec<FieldError> {
        match validate_batch(&body, RECEIVED) {
            Err(BatchRejection::Invalid(errors)) => errors,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    fn one_of_each_type() -> Vec<Value> {
        (EventType::ALL.iter().enumerate())
            .map(|(i, t)| event(t.as_str(), i as u128 + 1))
            .collect()
    }

    fn pointers(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.pointer.as_str()).collect()
    }

    #[test]
    fn accepts_one_event_of_every_type() {
        let batch = validate_batch(&json!({ "events": one_of_each_type() }), RECEIVED).unwrap();
        let got: Vec<&str> = batch
            .events
            .iter()
            .map(|e| e.event_type().as_str())
            .collect();
        let all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(got, all);
        assert_eq!(batch.received_at, RECEIVED);
        assert_eq!(batch.sent_at, None);
    }

    #[test]
    fn reports_every_invalid_event_not_only_the_first() {
        let mut bad_player = event("purchase", 1);
        bad_player["player_id"] = json!("no spaces allowed");
        let good = event("custom", 2);
        let mut bad_two_fields = event("progression", 3);
        bad_two_fields["level"] = json!("a:b:c:d");
        bad_two_fields["attempt"] = json!(0);
        let errors = errors_of(json!({ "events": [bad_player, good, bad_two_fields] }));
        assert_eq!(
            pointers(&errors),
            [
                "/events/0/player_id",
                "/events/2/level",
                "/events/2/attempt"
            ]
        );
        assert_eq!(errors[0].index, Some(0));
        assert_eq!(errors[2].index, Some(2));
    }

    #[test]
    fn missing_null_and_unknown_fields() {
        let mut e = event("error", 1);
        e.as_object_mut().unwrap().remove("message");
        e["severity"] = Value::Null;
        e["severty"] = json!("error");
        let errors = errors_of(json!({ "events": [e] }));
        assert_eq!(
            pointers(&errors),
            [
                "/events/0/severity",
                "/events/0/message",
                "/events/0/severty"
            ]
        );
        assert!(errors[2].reason.contains("not a field"));
    }

    #[test]
    fn optional_fields_may_be_null_or_absent() {
        let mut e = event("session_start", 1);
        e["device"] = Value::Null;
        let batch = validate_batch(&json!({ "events": [e] }), RECEIVED).unwrap();
        let Event::SessionStart(start) = &batch.events[0] else {
            panic!()
        };
        assert_eq!(start.device, None);
        assert_eq!(start.country, None);
    }

    /// Every optional field: (event type, or `None` for the batch's own, field, a valid value).
    const OPTIONAL_FIELDS: [(Option<&str>, &str, &str); 8] = [
        (None, "sent_at", r#""2026-11-25T11:59:30Z""#),
        (Some("session_start"), "device", r#""Pixel 8""#),
        (Some("session_start"), "country", r#""SE""#),
        (Some("progression"), "score", "12"),
        (Some("progression"), "attempt", "2"),
        (Some("purchase"), "transaction_id", r#""T-1""#),
        (Some("custom"), "value", "1.5"),
        (Some("custom"), "properties", r#"{"k": 1}"#),
    ];

    #[test]
    fn every_optional_field_sent_as_null_is_absent() {
        for (event_type, field, valid) in OPTIONAL_FIELDS {
            let body = |value: Option<Value>| {
                let mut e = event(event_type.unwrap_or("custom"), 1);
                let mut body = json!({ "events": [] });
                let target = if event_type.is_some() {
                    &mut e
                } else {
                    &mut body
                };
                if let Some(value) = value {
                    target[field] = value;
                }
                body["events"] = json!([e]);
                validate_batch(&body, RECEIVED)
            };
            let absent = body(None).unwrap();
            assert_eq!(body(Some(Value::Null)).unwrap(), absent, "{field}: null");
            let set = body(Some(serde_json::from_str(valid).unwrap())).unwrap();
            assert_ne!(set, absent, "{field}: {valid} was not read");
        }
    }

    #[test]
    fn required_fields_sent_as_null_are_invalid() {
        for name in [
            "type",
            "event_id",
            "player_id",
            "session_id",
            "occurred_at",
            "message",
        ] {
            let mut e = event("error", 1);
            e[name] = Value::Null;
            let errors = errors_of(json!({ "events": [e] }));
            assert_eq!(pointers(&errors), [format!("/events/0/{name}")], "{name}");
        }
        assert_eq!(pointers(&errors_of(json!({ "events": null }))), ["/events"]);
    }

    #[test]
    fn a_single_event_without_the_batch_around_it_is_one_error() {
        for t in EventType::ALL {
            let errors = errors_of(event(t.as_str(), 1));
            assert_eq!(pointers(&errors), [""], "{t:?}: {errors:?}");
            assert!(
                errors[0].reason.contains("single event"),
                "{}",
                errors[0].reason
            );
            assert!(
                errors[0].reason.contains(r#"{"events": ["#),
                "{}",
                errors[0].reason
            );
        }
        // So is a bare array of events, and neither is mistaken for the other.
        let errors = errors_of(json!([event("custom", 1)]));
        assert_eq!(pointers(&errors), [""]);
        assert!(
            errors[0].reason.contains("not an array"),
            "{}",
            errors[0].reason
        );
        // An object that is neither keeps its field-by-field errors.
        assert_eq!(
            pointers(&errors_of(json!({ "evnts": [] }))),
            ["/events", "/evnts"]
        );
    }

    #[test]
    fn unknown_or_missing_type() {
        let mut unknown = event("custom", 1);
        unknown["type"] = json!("levelup");
        let mut missing = event("custom", 2);
        missing.as_object_mut().unwrap().remove("type");
        let errors = errors_of(json!({ "events": [unknown, missing] }));
        assert_eq!(pointers(&errors), ["/events/0/type", "/events/1/type"]);
        assert!(errors[0].reason.contains("session_start"));
    }

    #[test]
    fn the_same_event_id_twice_in_one_batch() {
        let errors = errors_of(json!({ "events": [event("custom", 7), event("error", 7)] }));
        assert_eq!(pointers(&errors), ["/events/1/event_id"]);
        assert!(errors[0].reason.contains("event 0"));
    }

    #[test]
    fn nil_and_malformed_uuids() {
        let mut nil = event("custom", 1);
        nil["event_id"] = json!(Uuid::nil().to_string());
        let mut malformed = event("custom", 2);
        malformed["session_id"] = json!("not-a-uuid");
        let errors = errors_of(json!({ "events": [nil, malformed] }));
        assert_eq!(
            pointers(&errors),
            ["/events/0/event_id", "/events/1/session_id"]
        );
    }

    #[test]
    fn timestamps_need_an_offset() {
        let mut e = event("custom", 1);
        e["occurred_at"] = json!("2026-11-25T11:59:00");
        assert_eq!(
            pointers(&errors_of(json!({ "events": [e] }))),
            ["/events/0/occurred_at"]
        );
    }

    #[test]
    fn the_batch_holds_one_to_a_thousand_events() {
        let errors = errors_of(json!({ "events": [] }));
        assert_eq!(pointers(&errors), ["/events"]);

        let thousand: Vec<Value> = (1..=1000).map(|i| event("custom", i)).collect();
        assert_eq!(
            validate_batch(&json!({ "events": thousand }), RECEIVED)
                .unwrap()
                .events
                .len(),
            1000
        );

        let too_many: Vec<Value> = (1..=1001).map(|i| event("custom", i)).collect();
        assert_eq!(
            validate_batch(&json!({ "events": too_many }), RECEIVED),
            Err(BatchRejection::TooManyEvents {
                count: 1001,
                limit: 1000
            })
        );
    }

    #[test]
    fn the_request_must_be_an_object_with_an_events_array() {
        assert_eq!(pointers(&errors_of(json!([1]))), [""]);
        assert_eq!(pointers(&errors_of(json!({ "events": {} }))), ["/events"]);
        assert_eq!(pointers(&errors_of(json!({}))), ["/events"]);
        assert_eq!(
            pointers(&errors_of(
                json!({ "events": [event("custom", 1)], "extra": 1 })
            )),
            ["/extra"]
        );
        assert_eq!(
            pointers(&errors_of(
                json!({ "events": [event("custom", 1)], "sent_at": "yesterday" })
            )),
            ["/sent_at"]
        );
    }

    #[test]
    fn clock_skew_shifts_client_times_onto_the_server_clock() {
        // The client's clock is 10 minutes behind ours.
        let sent_at = datetime!(2026-11-25 11:50 UTC);
        let skew = ClockSkew::between(Some(sent_at), RECEIVED);
        assert_eq!(
            skew.correct(datetime!(2026-11-25 11:45 UTC)),
            datetime!(2026-11-25 11:55 UTC)
        );
        // Without sent_at nothing is shifted.
        let none = ClockSkew::between(None, RECEIVED);
        assert_eq!(none.correct(sent_at), sent_at);
        // Offsets are kept apart from the instant.
        let local = datetime!(2026-11-25 13:45 +02:00);
        assert_eq!(skew.correct(local), datetime!(2026-11-25 11:55 UTC));
    }

    #[test]
    fn the_future_limit_applies_after_correction() {
        let mut e = event("custom", 1);
        // Two hours ahead of the server: invalid without sent_at...
        e["occurred_at"] = json!("2026-11-25T14:00:00Z");
        assert_eq!(
            pointers(&errors_of(json!({ "events": [e.clone()] }))),
            ["/events/0/occurred_at"]
        );
        // ...valid when the client's clock is known to run two hours fast.
        let body = json!({ "sent_at": "2026-11-25T14:00:00Z", "events": [e] });
        let batch = validate_batch(&body, RECEIVED).unwrap();
        let occurred_at = batch.events[0].header().occurred_at;
        assert_eq!(batch.clock_skew().correct(occurred_at), RECEIVED);
    }

    #[test]
    fn the_future_limit_is_one_hour_on_both_sides_of_it() {
        let at = |t: &str| {
            let mut e = event("custom", 1);
            e["occurred_at"] = json!(t);
            validate_batch(&json!({ "events": [e] }), RECEIVED)
        };
        assert!(at("2026-11-25T13:00:00Z").is_ok());
        assert!(at("2026-11-25T13:00:00.001Z").is_err());
        assert!(at("2000-01-01T00:00:00Z").is_ok());
        assert!(at("1999-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn a_valid_batch_survives_the_queue_payload_round_trip() {
        let body = json!({ "sent_at": "2026-11-25T11:59:30+01:00", "events": one_of_each_type() });
        let batch = validate_batch(&body, RECEIVED).unwrap();
        let decoded: ValidBatch =
            serde_json::from_str(&serde_json::to_string(&batch).unwrap()).unwrap();
        assert_eq!(decoded, batch);
    }
}
