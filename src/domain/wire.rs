//! Events read straight from JSON into their types, in one pass and without a
//! `serde_json::Value` tree: how the API reads the common valid batch, and how the worker
//! decodes a job's payload.
//!
//! [`validate_batch`](super::validate_batch) reads a body through a `Value` tree, so that
//! it can name every invalid field of every event; that tree (a map per event, a string
//! per key) was most of `app serve`'s own CPU per event, and serde's derive for an
//! internally tagged enum with a flattened header buffers each event into a tree of its
//! own, which was a third of `app work`'s. Here an event is read as one flat struct of
//! every field any event type has ([`WireEvent`]), each field through the same validated
//! type the tree path converts to, and then built as its `type` says.
//!
//! This pass only ever accepts. Whatever it refuses (a missing or invalid field, a field
//! of another event type, a `null` where a value belongs, a repeated key, any rule of the
//! batch as a whole) is read again by `validate_batch`, which finds every reason. It
//! accepts nothing `validate_batch` refuses, and what it accepts it reads to the same
//! value: the tests hold the two to that over every field of every type.

use std::collections::HashSet;

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;
use uuid::Uuid;

use super::batch::MAX_EVENTS_PER_BATCH;
use super::batch::{check_event_id, check_occurred_at, ClockSkew, ValidBatch};
use super::event::*;
use super::fields::*;

/// One field as sent: left out, `null`, or a value.
#[derive(Debug, Default)]
enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

/// A field that is present deserializes as `null` or as its value; an absent one never
/// reaches this, and stays [`Field::Absent`] (`#[serde(default)]`).
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.map_or(Field::Null, Field::Value))
    }
}

impl<T> Field<T> {
    fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }

    /// Takes a required field's value: absent and `null` are both missing.
    fn required(&mut self, name: &str) -> Result<T, String> {
        match std::mem::take(self) {
            Field::Value(v) => Ok(v),
            Field::Absent | Field::Null => Err(format!("`{name}` is required")),
        }
    }

    /// Takes an optional field's value: absent and `null` both mean none.
    fn optional(&mut self) -> Option<T> {
        match std::mem::take(self) {
            Field::Value(v) => Some(v),
            Field::Absent | Field::Null => None,
        }
    }
}

/// An RFC 3339 date-time, as the tree path parses it.
#[derive(Debug)]
struct Rfc3339Time(OffsetDateTime);

impl<'de> Deserialize<'de> for Rfc3339Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        time::serde::rfc3339::deserialize(deserializer).map(Self)
    }
}

/// `$($field: $type),+`: [`WireEvent`] with these fields beside `type`, and its
/// [`WireEvent::leftover`].
macro_rules! wire_event {
    ($($field:ident: $ty:ty),+ $(,)?) => {
        /// Every field any event type has, each as sent; a key that is none of them is
        /// refused.
        #[derive(Debug, Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct WireEvent {
            #[serde(rename = "type")]
            event_type: Field<EventType>,
            $($field: Field<$ty>,)+
        }

        impl WireEvent {
            /// The first field still present once the event's type has taken its own: a
            /// field of another type.
            fn leftover(&self) -> Option<&'static str> {
                $(if !self.$field.is_absent() {
                    return Some(stringify!($field));
                })+
                None
            }
        }
    };
}

wire_event!(
    event_id: Uuid,
    player_id: PlayerId,
    session_id: Uuid,
    occurred_at: Rfc3339Time,
    platform: Platform,
    app_version: AppVersion,
    device: DeviceModel,
    country: CountryCode,
    duration_seconds: DurationSeconds,
    status: ProgressionStatus,
    level: LevelName,
    score: Score,
    attempt: AttemptNumber,
    item_id: ItemName,
    item_type: ItemName,
    amount_minor: AmountMinor,
    // A purchase's is a currency code, a resource flow's a virtual currency.
    currency: String,
    transaction_id: TransactionId,
    flow: ResourceFlow,
    amount: ResourceAmount,
    name: CustomEventName,
    value: CustomValue,
    properties: CustomProperties,
    severity: Severity,
    message: ErrorMessage,
);

impl TryFrom<WireEvent> for Event {
    type Error = String;

    fn try_from(mut w: WireEvent) -> Result<Self, String> {
        let event_type = w.event_type.required("type")?;
        let header = EventHeader {
            event_id: w.event_id.required("event_id")?,
            player_id: w.player_id.required("player_id")?,
            session_id: w.session_id.required("session_id")?,
            occurred_at: w.occurred_at.required("occurred_at")?.0,
        };
        // Takes each field of the event's type out of `w`; what is left belongs to none.
        macro_rules! build {
            ($($variant:ident($ty:ident { $($field:ident: $read:ident),+ $(,)? })),+ $(,)?) => {
                match event_type {
                    $(EventType::$variant => {
                        Event::$variant($ty { header, $($field: build!(@$read $field),)+ })
                    })+
                }
            };
            (@required $field:ident) => { w.$field.required(stringify!($field))? };
            (@optional $field:ident) => { w.$field.optional() };
            (@required_string $field:ident) => {
                w.$field.required(stringify!($field))?.try_into().map_err(|reason| {
                    format!("`{}` {reason}", stringify!($field))
                })?
            };
        }
        let event = with_event_fields!(build);
        match w.leftover() {
            None => Ok(event),
            Some(field) => Err(format!(
                "`{field}` is not a field of a {} event",
                event_type.as_str()
            )),
        }
    }
}

/// A request body as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBatch {
    #[serde(default)]
    sent_at: Field<Rfc3339Time>,
    events: Vec<Event>,
}

/// The batch in `body` received at `received_at`, if it is valid as a whole; `None`
/// for any body that [`validate_batch`](super::validate_batch) must read to say why not
/// (or, rarely, to accept: a key sent twice, which it reads as the last one).
pub fn read_valid_batch(body: &[u8], received_at: OffsetDateTime) -> Option<ValidBatch> {
    let WireBatch {
        mut sent_at,
        events,
    } = serde_json::from_slice(body).ok()?;
    let sent_at = sent_at.optional().map(|t| t.0);
    if events.is_empty() || events.len() > MAX_EVENTS_PER_BATCH {
        return None;
    }
    let skew = ClockSkew::between(sent_at, received_at);
    let mut ids = HashSet::with_capacity(events.len());
    for event in &events {
        let h = event.header();
        let valid = check_event_id(h.event_id).is_ok()
            && check_occurred_at(h.occurred_at, skew, received_at).is_ok()
            && ids.insert(h.event_id);
        if !valid {
            return None;
        }
    }
    Some(ValidBatch {
        sent_at,
        received_at,
        events,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};
    use time::macros::datetime;

    use super::*;
    use crate::domain::batch::validate_batch;
    use crate::domain::examples::example_batch;

    const RECEIVED: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

    /// An event of `event_type` with every optional field of its type set.
    fn full_event(event_type: EventType, id: u128) -> Map<String, Value> {
        let own = match event_type {
            EventType::SessionStart => {
                json!({"platform": "ios", "app_version": "1.0", "device": "iPhone15,2", "country": "SE"})
            }
            EventType::SessionEnd => json!({"duration_seconds": 60}),
            EventType::Progression => {
                json!({"status": "fail", "level": "w1:s2", "score": 120, "attempt": 3})
            }
            EventType::Purchase => json!({"item_id": "gems", "item_type": "pack",
                "amount_minor": 99, "currency": "EUR", "transaction_id": "GPA.1234"}),
            EventType::Resource => json!({"flow": "sink", "currency": "gold", "amount": 5.5,
                "item_type": "boost", "item_id": "x2"}),
            EventType::Custom => json!({"name": "tutorial:done", "value": -2.5,
                "properties": {"step": 3, "skipped": false, "nested": {"a": [1, null]}}}),
            EventType::Error => json!({"severity": "warning", "message": "boom\nline 2"}),
        };
        let mut e = json!({
            "type": event_type.as_str(),
            "event_id": Uuid::from_u128(id).to_string(),
            "player_id": "player-1",
            "session_id": "0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c7d",
            "occurred_at": "2026-11-25T11:59:00.123456789+02:00",
        });
        let fields = e.as_object_mut().unwrap();
        fields.extend(own.as_object().unwrap().clone());
        fields.clone()
    }

    /// Every key any event may carry, and one no event has.
    fn all_keys() -> Vec<String> {
        let mut keys: Vec<String> = EventType::ALL
            .iter()
            .flat_map(|t| full_event(*t, 1).keys().cloned().collect::<Vec<_>>())
            .collect();
        keys.sort();
        keys.dedup();
        keys.push("platfrom".to_owned());
        keys
    }

    /// Values of every JSON kind, including what one field or another accepts and what
    /// sits just past a rule: `None` is the key left out.
    fn values() -> Vec<Option<Value>> {
        let long = "x".repeat(9000);
        let mut values = vec![None, Some(Value::Null)];
        values.extend(
            [
                json!(""),
                json!("x"),
                json!("ios"),
                json!("start"),
                json!("sink"),
                json!("critical"),
                json!("custom"),
                json!("progression"),
                json!("EUR"),
                json!("eur"),
                json!("SE"),
                json!("UK"),
                json!("gold"),
                json!("a:b:c:d"),
                json!("tab\there"),
                json!("nul\u{0}"),
                json!(long),
                json!("00000000-0000-0000-0000-000000000000"),
                json!("0192f0c17d5e7a3b9c1d2e3f4a5b6c7d"),
                json!("{0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c7d}"),
                json!("2026-11-25T11:59:00Z"),
                json!("2026-11-25 11:59:00Z"),
                json!("2026-11-25T14:00:00Z"),
                json!("1999-12-31T23:59:59Z"),
                json!(0),
                json!(1),
                json!(-1),
                json!(604_801),
                json!(2_147_483_648_i64),
                json!(i64::MAX),
                json!(u64::MAX),
                json!(1.5),
                json!(-0.0),
                json!(1e300),
                json!(true),
                json!([]),
                json!(["ios"]),
                json!({}),
                json!({"ios": null}),
                json!({"a": 1}),
            ]
            .into_iter()
            .map(Some),
        );
        values
    }

    /// The typed pass and the tree path read `body` alike: the typed pass accepts exactly
    /// what the tree path accepts (none of these bodies repeats a key), as the same batch.
    fn assert_read_alike(body: &Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let typed = read_valid_batch(&bytes, RECEIVED);
        let tree = validate_batch(body, RECEIVED).ok();
        assert_eq!(typed, tree, "the two passes differ on {body}");
    }

    #[test]
    fn every_field_of_every_type_with_every_kind_of_value_is_read_as_the_tree_reads_it() {
        let mut accepted = 0;
        let mut refused = 0;
        for event_type in EventType::ALL {
            for key in all_keys() {
                for value in values() {
                    let mut event = full_event(event_type, 7);
                    match value {
                        None => event.remove(&key),
                        Some(value) => event.insert(key.clone(), value),
                    };
                    let body = json!({ "events": [full_event(EventType::Custom, 1), event] });
                    assert_read_alike(&body);
                    match validate_batch(&body, RECEIVED) {
                        Ok(_) => accepted += 1,
                        Err(_) => refused += 1,
                    }
                }
            }
        }
        // Both outcomes were exercised, many times over.
        assert!(
            accepted > 500 && refused > 7000,
            "{accepted} accepted, {refused} refused"
        );
    }

    #[test]
    fn the_batch_rules_are_read_as_the_tree_reads_them() {
        let two = |a: u128, b: u128| {
            vec![
                Value::Object(full_event(EventType::Progression, a)),
                Value::Object(full_event(EventType::Error, b)),
            ]
        };
        let many = |n: u128| {
            (1..=n)
                .map(|i| Value::Object(full_event(EventType::SessionEnd, i)))
                .collect::<Vec<_>>()
        };
        let bodies = [
            json!({ "events": two(1, 2) }),
            json!({ "events": two(1, 1) }),
            json!({ "events": two(0, 2) }),
            json!({ "events": [] }),
            json!({ "events": many(1000) }),
            json!({ "events": many(1001) }),
            json!({ "events": null }),
            json!({ "events": {} }),
            json!({ "events": [1] }),
            json!({}),
            json!({ "sent_at": null, "events": two(1, 2) }),
            json!({ "sent_at": "2026-11-25T11:00:00Z", "events": two(1, 2) }),
            json!({ "sent_at": "2026-11-25T09:00:00Z", "events": two(1, 2) }),
            json!({ "sent_at": "2026-11-25T14:00:00Z", "events": two(1, 2) }),
            json!({ "sent_at": "yesterday", "events": two(1, 2) }),
            json!({ "sent_at": 5, "events": two(1, 2) }),
            json!({ "events": two(1, 2), "extra": 1 }),
            Value::Object(full_event(EventType::Progression, 1)),
            json!(two(1, 2)),
            json!("events"),
            Value::Null,
        ];
        for body in &bodies {
            assert_read_alike(body);
        }
        assert!(read_valid_batch(&serde_json::to_vec(&bodies[0]).unwrap(), RECEIVED).is_some());
    }

    #[test]
    fn a_key_sent_twice_is_left_to_the_tree_which_reads_the_last() {
        let body = br#"{"events": [{"type": "session_end", "event_id": "0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c7e",
            "player_id": "p", "session_id": "0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c7d",
            "occurred_at": "2026-11-25T11:59:00Z", "duration_seconds": 1, "duration_seconds": 2}]}"#;
        assert_eq!(read_valid_batch(body, RECEIVED), None);
        let batch = crate::domain::read_batch(body, RECEIVED).unwrap();
        let Event::SessionEnd(end) = &batch.events[0] else {
            panic!("{batch:?}")
        };
        assert_eq!(end.duration_seconds, DurationSeconds::try_from(2).unwrap());
    }

    #[test]
    fn a_serialized_batch_reads_back_as_itself() {
        let batch = example_batch();
        let bytes = serde_json::to_vec(&batch).unwrap();
        let back: ValidBatch = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, batch);
        let types: HashSet<EventType> = batch.events.iter().map(Event::event_type).collect();
        assert_eq!(
            types.len(),
            EventType::ALL.len(),
            "the example has every type"
        );
    }

    #[test]
    fn a_payload_event_with_a_field_of_another_type_is_refused_by_name() {
        let mut event = full_event(EventType::SessionEnd, 1);
        event.insert("platform".to_owned(), json!("ios"));
        let error = serde_json::from_value::<Event>(Value::Object(event)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`platform` is not a field of a session_end event"),
            "{error}"
        );
    }
}
