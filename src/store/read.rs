//! Reads of stored batches and events.

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::event::*;
use crate::domain::fields::*;
use crate::domain::GameId;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stored row breaks a rule that the API enforces: the database was edited by hand
    /// or a migration is missing a constraint.
    #[error("stored event {event_id} is invalid: {reason}")]
    Corrupt { event_id: Uuid, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    pub batch_id: Uuid,
    pub status: String,
    pub accepted: i32,
    pub inserted: Option<i32>,
    pub duplicates: Option<i32>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub received_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub request_id: Option<String>,
}

/// Game `game`'s batch `batch_id`; another game's batch is not found.
pub async fn batch(
    pool: &PgPool,
    game: GameId,
    batch_id: Uuid,
) -> Result<Option<BatchRecord>, sqlx::Error> {
    sqlx::query_as!(
        BatchRecord,
        "SELECT batch_id, status, accepted, inserted, duplicates, attempts, last_error,
                received_at, completed_at, request_id
         FROM batches WHERE batch_id = $1 AND game_id = $2",
        batch_id,
        game.0
    )
    .fetch_optional(pool)
    .await
}

/// A stored event as it was sent, with what the service added.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event: Event,
    pub batch_id: Uuid,
    /// `occurred_at` on the server's clock.
    pub corrected_occurred_at: OffsetDateTime,
    pub received_at: OffsetDateTime,
    pub processed_at: OffsetDateTime,
}

/// Game `game`'s event `event_id`; another game's event is not found. (Should a client
/// have sent the id again with another `occurred_at`, which stores a second event, the
/// first one stored.)
pub async fn event(
    pool: &PgPool,
    game: GameId,
    event_id: Uuid,
) -> Result<Option<StoredEvent>, ReadError> {
    let Some(row) = sqlx::query!(
        r#"SELECT e.event_type, e.player_id, e.session_id, e.occurred_at, e.client_occurred_at,
                  e.batch_id, e.received_at, e.processed_at,
                  ss.platform AS "ss_platform?", ss.app_version AS "ss_app_version?",
                  ss.device AS "ss_device?", ss.country AS "ss_country?",
                  se.duration_seconds AS "se_duration_seconds?",
                  pr.status AS "pr_status?", pr.level AS "pr_level?", pr.score AS "pr_score?",
                  pr.attempt AS "pr_attempt?",
                  pu.item_id AS "pu_item_id?", pu.item_type AS "pu_item_type?",
                  pu.amount_minor AS "pu_amount_minor?", pu.currency AS "pu_currency?",
                  pu.transaction_id AS "pu_transaction_id?",
                  re.flow AS "re_flow?", re.currency AS "re_currency?", re.amount AS "re_amount?",
                  re.item_type AS "re_item_type?", re.item_id AS "re_item_id?",
                  cu.name AS "cu_name?", cu.value AS "cu_value?", cu.properties AS "cu_properties?",
                  er.severity AS "er_severity?", er.message AS "er_message?"
           FROM events AS e
           LEFT JOIN session_start_events AS ss USING (game_id, batch_id, event_id, client_occurred_at)
           LEFT JOIN session_end_events AS se USING (game_id, batch_id, event_id, client_occurred_at)
           LEFT JOIN progression_events AS pr USING (game_id, batch_id, event_id, client_occurred_at)
           LEFT JOIN purchase_events AS pu USING (game_id, batch_id, event_id, client_occurred_at)
           LEFT JOIN resource_events AS re USING (game_id, batch_id, event_id, client_occurred_at)
           LEFT JOIN custom_events AS cu USING (game_id, batch_id, event_id, client_occurred_at)
           LEFT JOIN error_events AS er USING (game_id, batch_id, event_id, client_occurred_at)
           WHERE e.game_id = $1 AND e.event_id = $2
           -- The same id sent again with another occurred_at is another event: the
           -- first stored is the one this id names.
           ORDER BY e.processed_at, e.client_occurred_at
           LIMIT 1"#,
        game.0,
        event_id
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };

    let corrupt = |reason: String| ReadError::Corrupt { event_id, reason };
    let header = EventHeader {
        event_id,
        player_id: PlayerId::try_from(row.player_id).map_err(corrupt)?,
        session_id: row.session_id,
        occurred_at: row.client_occurred_at,
    };
    fn req<T, R: TryFrom<T, Error = String>>(v: Option<T>, column: &str) -> Result<R, String> {
        R::try_from(v.ok_or_else(|| format!("{column} is missing"))?)
    }
    fn opt<T, R: TryFrom<T, Error = String>>(v: Option<T>) -> Result<Option<R>, String> {
        v.map(R::try_from).transpose()
    }
    fn word<W>(v: Option<String>, column: &str, parse: fn(&str) -> Option<W>) -> Result<W, String> {
        let v = v.ok_or_else(|| format!("{column} is missing"))?;
        parse(&v).ok_or_else(|| format!("{column} has the unknown value {v:?}"))
    }

    let event = (|| -> Result<Event, String> {
        Ok(match EventType::from_wire(&row.event_type) {
            Some(EventType::SessionStart) => Event::SessionStart(SessionStart {
                header,
                platform: word(row.ss_platform, "platform", Platform::from_wire)?,
                app_version: req(row.ss_app_version, "app_version")?,
                device: opt(row.ss_device)?,
                country: opt(row.ss_country)?,
            }),
            Some(EventType::SessionEnd) => Event::SessionEnd(SessionEnd {
                header,
                duration_seconds: req(row.se_duration_seconds, "duration_seconds")?,
            }),
            Some(EventType::Progression) => Event::Progression(Progression {
                header,
                status: word(row.pr_status, "status", ProgressionStatus::from_wire)?,
                level: req(row.pr_level, "level")?,
                score: opt(row.pr_score)?,
                attempt: opt(row.pr_attempt)?,
            }),
            Some(EventType::Purchase) => Event::Purchase(Purchase {
                header,
                item_id: req(row.pu_item_id, "item_id")?,
                item_type: req(row.pu_item_type, "item_type")?,
                amount_minor: req(row.pu_amount_minor, "amount_minor")?,
                currency: req(row.pu_currency, "currency")?,
                transaction_id: opt(row.pu_transaction_id)?,
            }),
            Some(EventType::Resource) => Event::Resource(Resource {
                header,
                flow: word(row.re_flow, "flow", ResourceFlow::from_wire)?,
                currency: req(row.re_currency, "currency")?,
                amount: req(row.re_amount, "amount")?,
                item_type: req(row.re_item_type, "item_type")?,
                item_id: req(row.re_item_id, "item_id")?,
            }),
            Some(EventType::Custom) => Event::Custom(Custom {
                header,
                name: req(row.cu_name, "name")?,
                value: opt(row.cu_value)?,
                properties: row
                    .cu_properties
                    .map(|v| match v {
                        serde_json::Value::Object(map) => CustomProperties::try_from(map),
                        _ => Err("properties is not an object".to_owned()),
                    })
                    .transpose()?,
            }),
            Some(EventType::Error) => Event::Error(ClientError {
                header,
                severity: word(row.er_severity, "severity", Severity::from_wire)?,
                message: req(row.er_message, "message")?,
            }),
            None => return Err(format!("unknown event_type {:?}", row.event_type)),
        })
    })()
    .map_err(corrupt)?;

    Ok(Some(StoredEvent {
        event,
        batch_id: row.batch_id,
        corrected_occurred_at: row.occurred_at,
        received_at: row.received_at,
        processed_at: row.processed_at,
    }))
}
