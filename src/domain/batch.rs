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

/// Validates a parsed request body received at `received_at`.
pub fn validate_batch(body: &Value, received_at: OffsetDateTime) -> Result<ValidBatch, BatchRejection> {
    let mut errors = Vec::new();
    let Value::Object(request) = body else {
        return Err(BatchRejection::Invalid(vec![FieldError {
            index: None,
            pointer: String::new(),
            reason: format!("the request body must be a JSON object, not {}", json_kind(body)),
        }]));
    };

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

    let event_type = match r.take_required("type") {
        Some(Value::String(s)) => EventType::from_wire(s),
        Some(_) | None => None,
    };
    if event_type.is_none() && fields.contains_key("type") {
        let expected: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        r.error("type", format!("must be one of {}", expected.join(", ")));
    }

    // Every field is read before any is combined, so each invalid one gets its error.
    let event_id: Option<Uuid> = r.required("event_id");
    if event_id.is_some_and(|id| id.is_nil()) {
        r.error("event_id", "must not be the nil UUID".to_owned());
    }
    let player_id = r.required("player_id");
    let session_id = r.required("session_id");
    let occurred_at: Option<OffsetDateTime> = r.required("occurred_at");
    if let Some(occurred_at) = occurred_at {
        let corrected = skew.correct(occurred_at);
        if corrected > received_at + MAX_FUTURE_SKEW {
            r.error(
                "occurred_at",
                format!("is more than {MAX_FUTURE_SKEW} in the future (after correcting the client clock by sent_at)"),
            );
        } else if corrected < EARLIEST_OCCURRED_AT {
            r.error(
                "occurred_at",
                "is before 2000-01-01 (after correcting the client clock by sent_at)".to_owned(),
            );
        }
    }
    let header = (|| {
        Some(EventHeader {
            event_id: event_id?,
            player_id: player_id?,
            session_id: session_id?,
            occurred_at: occurred_at?,
        })
    })();

    // `event!(Variant(Struct { field: required|optional, .. }))` reads each field, then
    // builds the event only if the header and every field are valid.
    macro_rules! event {
        ($variant:ident($ty:ident { $($field:ident: $read:ident),+ $(,)? })) => {{
            $(let $field = r.$read(stringify!($field));)+
            (|| Some(Event::$variant($ty { $($field: $field?,)+ header: header? })))()
        }};
    }
    let event = match event_type? {
        EventType::SessionStart => event!(SessionStart(SessionStart {
            platform: required,
            app_version: required,
            device: optional,
            country: optional,
        })),
        EventType::SessionEnd => event!(SessionEnd(SessionEnd { duration_seconds: required })),
        EventType::Progression => event!(Progression(Progression {
            status: required,
            level: required,
            score: optional,
            attempt: optional,
        })),
        EventType::Purchase => event!(Purchase(Purchase {
            item_id: required,
            item_type: required,
            amount_minor: required,
            currency: required,
            transaction_id: optional,
        })),
        EventType::Resource => event!(Resource(Resource {
            flow: required,
            currency: required,
            amount: required,
            item_type: required,
            item_id: required,
        })),
        EventType::Custom => event!(Custom(Custom {
            name: required,
            value: optional,
            properties: optional,
        })),
        EventType::Error => event!(Error(ClientError {
            severity: required,
            message: required,
        })),
    };
    r.reject_unknown();
    (errors.len() == errors_before).then_some(event).flatten()
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
