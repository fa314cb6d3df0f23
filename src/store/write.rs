//! Writes one batch of events into the normalized tables, inside the caller's transaction.
//!
//! Each table gets one multi-row statement per group, never one per event: a binary `COPY`
//! for the events and their detail rows (`copy.rs`), `UNNEST` of column arrays for the
//! upserts. Concurrent batches never deadlock: every transaction touches the tables in
//! the same order (events, details, players, sessions, batches) and the rows of each
//! table in key order. Events go first, so that players and sessions are touched only
//! for events that are new: a batch sent again changes nothing. A worker stores several
//! claimed batches at once the same way: one statement per table for the whole group.

use std::collections::{BTreeMap, HashSet};

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::event::{
    ClientError, Custom, EventHeader, Progression, Purchase, Resource, SessionEnd, SessionStart,
};
use crate::domain::{Event, GameId, ValidBatch};

use super::copy::{copy_in, BinaryRows};

/// What writing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Events stored by this batch.
    pub inserted: usize,
    /// Events that were already stored (sent before, in this batch or another).
    pub duplicates: usize,
}

/// One batch to store.
#[derive(Debug, Clone, Copy)]
pub struct BatchToWrite<'a> {
    pub batch_id: Uuid,
    pub game_id: GameId,
    pub batch: &'a ValidBatch,
}

/// One event of a group of batches, with its game, the batch it came in and its
/// corrected time. A group may hold batches of several games.
#[derive(Clone, Copy)]
struct GroupEvent<'a> {
    event: &'a Event,
    game: GameId,
    /// Index of its batch in the group.
    batch: usize,
    occurred_at: OffsetDateTime,
}

/// Whether this database role may have a transaction skip the per-row foreign-key checks
/// (set `session_replication_role`: a superuser, or on PostgreSQL 15 and later a role
/// granted `SET ON PARAMETER session_replication_role`). See [`trust_own_references`].
pub async fn may_trust_own_references(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let allowed = trust_own_references(&mut tx).await.is_ok();
    tx.rollback().await?;
    Ok(allowed)
}

/// Has the rest of `tx` skip PostgreSQL's per-row foreign-key checks, as logical
/// replication's apply does (`session_replication_role = replica`; CHECK and NOT NULL
/// constraints and unique indexes still apply). [`write_batches`] satisfies every foreign
/// key by construction, in the same transaction: it upserts the player and session of
/// every event it inserts, inserts a detail row only for an event it inserted, and a
/// batch's row was committed with its job, before any worker could claim it. Measured:
/// the four checks per event (events to players, sessions and batches; detail to event)
/// took 14 of 35 µs of CPU per stored event, ~3.3 µs each. The foreign keys stay
/// declared, and every other writer is checked as before. The schema has no triggers of
/// its own; one added to these tables fires for the worker's writes only if it is
/// `ENABLE ALWAYS` (or the worker runs with `--check-foreign-keys`).
pub async fn trust_own_references(tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Stores `batches` and marks them completed, in `tx`; the outcomes are in the same order.
/// However many batches, each table gets one statement.
pub async fn write_batches(
    tx: &mut Transaction<'_, Postgres>,
    batches: &[BatchToWrite<'_>],
) -> Result<Vec<WriteOutcome>, sqlx::Error> {
    let mut events: Vec<GroupEvent> =
        Vec::with_capacity(batches.iter().map(|b| b.batch.events.len()).sum());
    for (index, b) in batches.iter().enumerate() {
        let skew = b.batch.clock_skew();
        events.extend(b.batch.events.iter().map(|event| GroupEvent {
            event,
            game: b.game_id,
            batch: index,
            occurred_at: skew.correct(event.header().occurred_at),
        }));
    }
    // Key order for the events statement (see the module comment).
    events.sort_unstable_by_key(|e| {
        let h = e.event.header();
        (e.game, h.event_id, h.occurred_at, e.batch)
    });

    // Retention must not prune a player or session that these events refer to.
    let mut games: Vec<GameId> = batches.iter().map(|b| b.game_id).collect();
    games.sort_unstable();
    games.dedup();
    super::retention::lock_games_against_pruning(tx, &games).await?;

    let new_events: Vec<GroupEvent> = match insert_events(tx, batches, &events).await? {
        Stored::All => events,
        // An event_id sent in two batches of the group is stored by one of them: keep the
        // copy that was stored, with the batch that stored it. (A batch is of one game, so
        // the same id in two games' batches is two events, and both are stored.)
        Stored::Only(stored) => events
            .into_iter()
            .filter(|e| stored.contains(&(e.event.header().event_id, batches[e.batch].batch_id)))
            .collect(),
    };

    if !new_events.is_empty() {
        insert_details(tx, batches, &new_events).await?;
        // Players and sessions last: their rows are the ones concurrent groups share, so
        // their locks are held for as short a time as possible before the commit.
        upsert_players(tx, &new_events).await?;
        upsert_sessions(tx, &new_events).await?;
    }

    let mut outcomes: Vec<WriteOutcome> = batches
        .iter()
        .map(|b| WriteOutcome {
            inserted: 0,
            duplicates: b.batch.events.len(),
        })
        .collect();
    for e in &new_events {
        outcomes[e.batch].inserted += 1;
        outcomes[e.batch].duplicates -= 1;
    }
    sqlx::query!(
        "UPDATE batches AS b
         SET status = 'completed', inserted = o.inserted, duplicates = o.duplicates, completed_at = now()
         FROM UNNEST($1::uuid[], $2::int[], $3::int[]) AS o(batch_id, inserted, duplicates)
         WHERE b.batch_id = o.batch_id",
        &batches.iter().map(|b| b.batch_id).collect::<Vec<_>>(),
        &outcomes.iter().map(|o| o.inserted as i32).collect::<Vec<_>>(),
        &outcomes.iter().map(|o| o.duplicates as i32).collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(outcomes)
}

/// Which of a group's events [`insert_events`] stored.
enum Stored {
    /// Every one: none had been stored before.
    All,
    /// The (event_id, batch_id) pairs it inserted; the others were stored already.
    Only(HashSet<(Uuid, Uuid)>),
}

/// Inserts the events not stored yet.
///
/// Nearly every group is all new events (a resend is a client's retry after a lost
/// answer), so they are first written as they are, with a binary `COPY` in a savepoint
/// (see [`copy`](super::copy)): the unique key still refuses any event stored before, and
/// only then is the group inserted again with `ON CONFLICT DO NOTHING`, which skips those.
/// Measured on 5,700 events into a day's partition: 22 ms as a plain insert against 35 ms
/// with `ON CONFLICT DO NOTHING … RETURNING`, which checks the key once before each row's
/// insertion and confirms each row's insertion with a WAL record of its own; 19 ms as a
/// binary `COPY`.
async fn insert_events(
    conn: &mut PgConnection,
    batches: &[BatchToWrite<'_>],
    events: &[GroupEvent<'_>],
) -> Result<Stored, sqlx::Error> {
    // The transaction's time, as `now()` in the statement gave it before.
    let processed_at = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(&mut *conn)
        .await?;
    let mut rows = BinaryRows::new(10, events.len() * 170);
    for e in events {
        let h = e.event.header();
        let batch = &batches[e.batch];
        rows.row()
            .int4(e.game.0)
            .uuid(h.event_id)
            .timestamptz(h.occurred_at)
            .text(e.event.event_type().as_str())
            .text(h.player_id.as_str())
            .uuid(h.session_id)
            .timestamptz(e.occurred_at)
            .uuid(batch.batch_id)
            .timestamptz(batch.batch.received_at)
            .timestamptz(processed_at);
    }
    sqlx::query("SAVEPOINT new_events")
        .execute(&mut *conn)
        .await?;
    let copied = copy_in(
        conn,
        "COPY events (game_id, event_id, client_occurred_at, event_type, player_id, session_id,
                      occurred_at, batch_id, received_at, processed_at)
         FROM STDIN (FORMAT binary)",
        rows,
    )
    .await;
    match copied {
        Ok(_) => {
            sqlx::query("RELEASE SAVEPOINT new_events")
                .execute(&mut *conn)
                .await?;
            return Ok(Stored::All);
        }
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            sqlx::query("ROLLBACK TO SAVEPOINT new_events")
                .execute(&mut *conn)
                .await?;
        }
        Err(e) => return Err(e),
    }
    let c = EventColumns::of(batches, events);
    let inserted = sqlx::query!(
        "INSERT INTO events (game_id, event_id, client_occurred_at, event_type, player_id,
                             session_id, occurred_at, batch_id, received_at, processed_at)
         SELECT e.game_id, e.event_id, e.client_occurred_at, e.event_type, e.player_id,
                e.session_id, e.occurred_at, e.batch_id, e.received_at, $10
         FROM UNNEST($9::int[], $1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[],
                     $6::timestamptz[], $7::uuid[], $8::timestamptz[])
              WITH ORDINALITY
              AS e(game_id, event_id, event_type, player_id, session_id, occurred_at,
                   client_occurred_at, batch_id, received_at, n)
         ORDER BY e.n
         ON CONFLICT (game_id, event_id, client_occurred_at) DO NOTHING
         RETURNING event_id, batch_id",
        &c.ids,
        &c.types as &[&str],
        &c.players as &[&str],
        &c.sessions,
        &c.occurred,
        &c.client_occurred,
        &c.batch_ids,
        &c.received,
        &c.games,
        processed_at,
    )
    .fetch_all(conn)
    .await?;
    Ok(Stored::Only(
        inserted
            .into_iter()
            .map(|r| (r.event_id, r.batch_id))
            .collect(),
    ))
}

/// The `events` columns of a group's events, one array each, in the events' order (for
/// the insert that skips events stored before).
struct EventColumns<'a> {
    games: Vec<i32>,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    players: Vec<&'a str>,
    sessions: Vec<Uuid>,
    occurred: Vec<OffsetDateTime>,
    client_occurred: Vec<OffsetDateTime>,
    batch_ids: Vec<Uuid>,
    received: Vec<OffsetDateTime>,
}

impl<'a> EventColumns<'a> {
    fn of(batches: &[BatchToWrite<'_>], events: &[GroupEvent<'a>]) -> Self {
        let n = events.len();
        let mut c = Self {
            games: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            players: Vec::with_capacity(n),
            sessions: Vec::with_capacity(n),
            occurred: Vec::with_capacity(n),
            client_occurred: Vec::with_capacity(n),
            batch_ids: Vec::with_capacity(n),
            received: Vec::with_capacity(n),
        };
        for e in events {
            let h = e.event.header();
            let batch = &batches[e.batch];
            c.games.push(e.game.0);
            c.ids.push(h.event_id);
            c.types.push(e.event.event_type().as_str());
            c.players.push(h.player_id.as_str());
            c.sessions.push(h.session_id);
            c.occurred.push(e.occurred_at);
            c.client_occurred.push(h.occurred_at);
            c.batch_ids.push(batch.batch_id);
            c.received.push(batch.batch.received_at);
        }
        c
    }
}

async fn upsert_players(
    conn: &mut PgConnection,
    events: &[GroupEvent<'_>],
) -> Result<(), sqlx::Error> {
    // (game, player) -> what these events say of it; a BTreeMap gives the key order.
    let mut seen: BTreeMap<(GameId, &str), Seen> = BTreeMap::new();
    for e in events {
        let h = e.event.header();
        seen.entry((e.game, h.player_id.as_str()))
            .and_modify(|s| s.add(e))
            .or_insert_with(|| Seen::of(e));
    }
    let n = seen.len();
    let (mut games, mut players) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut first, mut last, mut last_client) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((game, player), s) in &seen {
        games.push(game.0);
        players.push(*player);
        first.push(s.first);
        last.push(s.last);
        last_client.push(s.last_client);
    }
    sqlx::query!(
        "INSERT INTO players (game_id, player_id, first_seen_at, last_seen_at, last_client_occurred_at)
         SELECT * FROM UNNEST($4::int[], $1::text[], $2::timestamptz[], $3::timestamptz[], $5::timestamptz[])
         ORDER BY 1, 2
         ON CONFLICT (game_id, player_id) DO UPDATE
         SET first_seen_at = LEAST(players.first_seen_at, EXCLUDED.first_seen_at),
             last_seen_at = GREATEST(players.last_seen_at, EXCLUDED.last_seen_at),
             last_client_occurred_at = GREATEST(players.last_client_occurred_at,
                                                EXCLUDED.last_client_occurred_at)
         WHERE EXCLUDED.first_seen_at < players.first_seen_at
            OR EXCLUDED.last_seen_at > players.last_seen_at
            OR EXCLUDED.last_client_occurred_at > players.last_client_occurred_at",
        &players as &[&str],
        &first,
        &last,
        &games,
        &last_client,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What a group's events say of a player or session: its first and last event on the
/// server's clock, and its newest event's time as the client sent it (the day of the
/// newest partition that holds one of its events; see `retention`).
#[derive(Clone, Copy)]
struct Seen {
    first: OffsetDateTime,
    last: OffsetDateTime,
    last_client: OffsetDateTime,
}

impl Seen {
    fn of(e: &GroupEvent<'_>) -> Self {
        Self {
            first: e.occurred_at,
            last: e.occurred_at,
            last_client: e.event.header().occurred_at,
        }
    }

    fn add(&mut self, e: &GroupEvent<'_>) {
        self.first = self.first.min(e.occurred_at);
        self.last = self.last.max(e.occurred_at);
        self.last_client = self.last_client.max(e.event.header().occurred_at);
    }
}

/// What one batch says about one session.
struct SessionUpdate<'a> {
    player_id: &'a str,
    seen: Seen,
    /// The earliest session_start of the batch, with its corrected time.
    start: Option<(OffsetDateTime, &'a SessionStart)>,
    /// The latest session_end of the batch, with its corrected time.
    end: Option<(OffsetDateTime, &'a SessionEnd)>,
}

async fn upsert_sessions(
    conn: &mut PgConnection,
    events: &[GroupEvent<'_>],
) -> Result<(), sqlx::Error> {
    let mut sessions: BTreeMap<(GameId, Uuid), SessionUpdate> = BTreeMap::new();
    for e in events {
        let (event, at) = (e.event, e.occurred_at);
        let h = event.header();
        let s = sessions
            .entry((e.game, h.session_id))
            .and_modify(|s| s.seen.add(e))
            .or_insert_with(|| SessionUpdate {
                player_id: h.player_id.as_str(),
                seen: Seen::of(e),
                start: None,
                end: None,
            });
        match event {
            Event::SessionStart(start) if s.start.is_none_or(|(t, _)| at < t) => {
                s.start = Some((at, start))
            }
            Event::SessionEnd(end) if s.end.is_none_or(|(t, _)| at > t) => s.end = Some((at, end)),
            _ => {}
        }
    }

    let n = sessions.len();
    let mut games = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut players = Vec::with_capacity(n);
    let mut platforms = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut devices = Vec::with_capacity(n);
    let mut countries = Vec::with_capacity(n);
    let mut started = Vec::with_capacity(n);
    let mut ended = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    let mut first_seen = Vec::with_capacity(n);
    let mut last_seen = Vec::with_capacity(n);
    let mut last_client = Vec::with_capacity(n);
    for ((game, id), s) in &sessions {
        games.push(game.0);
        ids.push(*id);
        players.push(s.player_id);
        platforms.push(s.start.map(|(_, e)| e.platform.as_str()));
        versions.push(s.start.map(|(_, e)| e.app_version.as_str()));
        devices.push(
            s.start
                .and_then(|(_, e)| e.device.as_ref().map(|d| d.as_str())),
        );
        countries.push(
            s.start
                .and_then(|(_, e)| e.country.as_ref().map(|c| c.as_str())),
        );
        started.push(s.start.map(|(t, _)| t));
        ended.push(s.end.map(|(t, _)| t));
        durations.push(s.end.map(|(_, e)| e.duration_seconds.get()));
        first_seen.push(s.seen.first);
        last_seen.push(s.seen.last);
        last_client.push(s.seen.last_client);
    }
    // The session_start fields come from the earliest session_start and the end from the
    // latest session_end, whatever order batches arrive in.
    sqlx::query!(
        "INSERT INTO sessions (game_id, session_id, player_id, platform, app_version, device, country,
                              started_at, ended_at, duration_seconds, first_seen_at, last_seen_at,
                              last_client_occurred_at)
         SELECT * FROM UNNEST($12::int[], $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                              $7::timestamptz[], $8::timestamptz[], $9::int[],
                              $10::timestamptz[], $11::timestamptz[], $13::timestamptz[])
         ORDER BY 1, 2
         ON CONFLICT (game_id, session_id) DO UPDATE SET
             (platform, app_version, device, country, started_at) = (
                 SELECT CASE WHEN newer_start THEN EXCLUDED.platform ELSE sessions.platform END,
                        CASE WHEN newer_start THEN EXCLUDED.app_version ELSE sessions.app_version END,
                        CASE WHEN newer_start THEN EXCLUDED.device ELSE sessions.device END,
                        CASE WHEN newer_start THEN EXCLUDED.country ELSE sessions.country END,
                        CASE WHEN newer_start THEN EXCLUDED.started_at ELSE sessions.started_at END
                 FROM (SELECT EXCLUDED.started_at IS NOT NULL
                              AND (sessions.started_at IS NULL OR EXCLUDED.started_at < sessions.started_at)
                              AS newer_start) AS s),
             (ended_at, duration_seconds) = (
                 SELECT CASE WHEN later_end THEN EXCLUDED.ended_at ELSE sessions.ended_at END,
                        CASE WHEN later_end THEN EXCLUDED.duration_seconds ELSE sessions.duration_seconds END
                 FROM (SELECT EXCLUDED.ended_at IS NOT NULL
                              AND (sessions.ended_at IS NULL OR EXCLUDED.ended_at > sessions.ended_at)
                              AS later_end) AS e),
             first_seen_at = LEAST(sessions.first_seen_at, EXCLUDED.first_seen_at),
             last_seen_at = GREATEST(sessions.last_seen_at, EXCLUDED.last_seen_at),
             last_client_occurred_at = GREATEST(sessions.last_client_occurred_at,
                                                EXCLUDED.last_client_occurred_at)",
        &ids,
        &players as &[&str],
        &platforms as &[Option<&str>],
        &versions as &[Option<&str>],
        &devices as &[Option<&str>],
        &countries as &[Option<&str>],
        &started as &[Option<OffsetDateTime>],
        &ended as &[Option<OffsetDateTime>],
        &durations as &[Option<i32>],
        &first_seen,
        &last_seen,
        &games,
        &last_client,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A group's new events split by type: one list per detail table.
#[derive(Default)]
struct ByType<'a> {
    session_starts: Vec<Detail<'a, SessionStart>>,
    session_ends: Vec<Detail<'a, SessionEnd>>,
    progressions: Vec<Detail<'a, Progression>>,
    purchases: Vec<Detail<'a, Purchase>>,
    resources: Vec<Detail<'a, Resource>>,
    customs: Vec<Detail<'a, Custom>>,
    errors: Vec<Detail<'a, ClientError>>,
}

/// One event's detail row to write: its key and its own fields.
type Detail<'a, T> = (DetailKey<'a>, &'a T);

/// A detail row's key: (game, batch, event id, time as sent), the last two from the
/// event's header.
#[derive(Clone, Copy)]
struct DetailKey<'a> {
    game: i32,
    batch_id: Uuid,
    header: &'a EventHeader,
}

impl<'a> ByType<'a> {
    fn split(batches: &[BatchToWrite<'_>], events: &[GroupEvent<'a>]) -> Self {
        let mut by = Self::default();
        for e in events {
            let key = DetailKey {
                game: e.game.0,
                batch_id: batches[e.batch].batch_id,
                header: e.event.header(),
            };
            match e.event {
                Event::SessionStart(s) => by.session_starts.push((key, s)),
                Event::SessionEnd(s) => by.session_ends.push((key, s)),
                Event::Progression(p) => by.progressions.push((key, p)),
                Event::Purchase(p) => by.purchases.push((key, p)),
                Event::Resource(r) => by.resources.push((key, r)),
                Event::Custom(c) => by.customs.push((key, c)),
                Event::Error(e) => by.errors.push((key, e)),
            }
        }
        by
    }
}

/// A detail table's row, as its binary `COPY` writes it.
trait DetailRow {
    const TABLE: &'static str;
    /// Its columns after the key (game_id, batch_id, event_id, client_occurred_at), in
    /// the order [`DetailRow::write_fields`] writes them.
    const COLUMNS: &'static [&'static str];
    fn write_fields(&self, rows: &mut BinaryRows);
}

impl DetailRow for SessionStart {
    const TABLE: &'static str = "session_start_events";
    const COLUMNS: &'static [&'static str] = &["platform", "app_version", "device", "country"];
    fn write_fields(&self, rows: &mut BinaryRows) {
        rows.text(self.platform.as_str())
            .text(self.app_version.as_str())
            .or_null(self.device.as_ref(), |r, v| r.text(v.as_str()))
            .or_null(self.country.as_ref(), |r, v| r.text(v.as_str()));
    }
}

impl DetailRow for SessionEnd {
    const TABLE: &'static str = "session_end_events";
    const COLUMNS: &'static [&'static str] = &["duration_seconds"];
    fn write_fields(&self, rows: &mut BinaryRows) {
        rows.int4(self.duration_seconds.get());
    }
}

impl DetailRow for Progression {
    const TABLE: &'static str = "progression_events";
    const COLUMNS: &'static [&'static str] = &["status", "level", "score", "attempt"];
    fn write_fields(&self, rows: &mut BinaryRows) {
        rows.text(self.status.as_str())
            .text(self.level.as_str())
            .or_null(self.score, |r, v| r.int8(v.get()))
            .or_null(self.attempt, |r, v| r.int4(v.get()));
    }
}

impl DetailRow for Purchase {
    const TABLE: &'static str = "purchase_events";
    const COLUMNS: &'static [&'static str] = &[
        "item_id",
        "item_type",
        "amount_minor",
        "currency",
        "transaction_id",
    ];
    fn write_fields(&self, rows: &mut BinaryRows) {
        rows.text(self.item_id.as_str())
            .text(self.item_type.as_str())
            .int8(self.amount_minor.get())
            .text(self.currency.as_str())
            .or_null(self.transaction_id.as_ref(), |r, v| r.text(v.as_str()));
    }
}

impl DetailRow for Resource {
    const TABLE: &'static str = "resource_events";
    const COLUMNS: &'static [&'static str] =
        &["flow", "currency", "amount", "item_type", "item_id"];
    fn write_fields(&self, rows: &mut BinaryRows) {
        rows.text(self.flow.as_str())
            .text(self.currency.as_str())
            .float8(self.amount.get())
            .text(self.item_type.as_str())
            .text(self.item_id.as_str());
    }
}

impl DetailRow for Custom {
    const TABLE: &'static str = "custom_events";
    const COLUMNS: &'static [&'static str] = &["name", "value", "properties"];
    fn write_fields(&self, rows: &mut BinaryRows) {
        rows.text(self.name.as_str())
            .or_null(self.value, |r, v| r.float8(v.get()))
            .or_null(self.properties.as_ref(), |r, p| r.jsonb(p.as_map()));
    }
}

impl DetailRow for ClientError {
    const TABLE: &'static str = "error_events";
    const COLUMNS: &'static [&'static str] = &["severity", "message"];
    fn write_fields(&self, rows: &mut BinaryRows) {
        rows.text(self.severity.as_str())
            .text(self.message.as_str());
    }
}

/// Writes one detail table's rows with one binary `COPY`, in the table's key order;
/// nothing when there are none.
///
/// The key leads with the batch id, a UUIDv7 made when the API accepted the batch, so the
/// rows of each group land at the right edge of the key, whatever the events' ids and
/// times (migration 14).
async fn copy_details<T: DetailRow>(
    conn: &mut PgConnection,
    mut details: Vec<Detail<'_, T>>,
) -> Result<(), sqlx::Error> {
    if details.is_empty() {
        return Ok(());
    }
    details.sort_unstable_by_key(|(k, _)| (k.game, k.batch_id, k.header.event_id));
    let statement = format!(
        "COPY {} (game_id, batch_id, event_id, client_occurred_at, {}) FROM STDIN (FORMAT binary)",
        T::TABLE,
        T::COLUMNS.join(", ")
    );
    let columns = i16::try_from(4 + T::COLUMNS.len()).expect("a table has few columns");
    let mut rows = BinaryRows::new(columns, details.len() * 140);
    for (key, fields) in &details {
        rows.row()
            .int4(key.game)
            .uuid(key.batch_id)
            .uuid(key.header.event_id)
            .timestamptz(key.header.occurred_at);
        fields.write_fields(&mut rows);
    }
    copy_in(conn, &statement, rows).await?;
    Ok(())
}

/// One `COPY` per detail table that this group has events for.
async fn insert_details(
    conn: &mut PgConnection,
    batches: &[BatchToWrite<'_>],
    events: &[GroupEvent<'_>],
) -> Result<(), sqlx::Error> {
    let by = ByType::split(batches, events);
    copy_details(&mut *conn, by.session_starts).await?;
    copy_details(&mut *conn, by.session_ends).await?;
    copy_details(&mut *conn, by.progressions).await?;
    copy_details(&mut *conn, by.purchases).await?;
    copy_details(&mut *conn, by.resources).await?;
    copy_details(&mut *conn, by.customs).await?;
    copy_details(&mut *conn, by.errors).await?;
    Ok(())
}
