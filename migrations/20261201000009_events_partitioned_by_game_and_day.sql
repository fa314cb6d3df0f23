-- Events kept for months at millions an hour: the event tables are partitioned by game
-- and by day, so that
--
-- * retention drops whole days of a game (never a row-by-row DELETE), per game;
-- * the indexes being written stay those of the days being written, whatever is kept;
-- * the detail tables are keyed by time first, so their keys are written in time order
--   whatever ids clients send (many SDKs send random UUIDv4 ids).
--
-- The partition key is (game_id, client_occurred_at): the time of the event as its
-- client sent it, UTC day by UTC day. That is what a resend carries unchanged (the
-- corrected time depends on each request's sent_at), so a resend lands in the partition
-- of its first copy. A unique index on a partitioned table must include the partition
-- key, so the idempotency key becomes (game_id, event_id, client_occurred_at): a resend of
-- an event is never stored twice while its first copy is kept; an event id sent again
-- with another occurred_at is another event (see the README's guarantees).
--
-- Foreign keys to and from the partitioned tables are not declared: dropping a partition
-- or pruning players and sessions would have PostgreSQL check every row that could refer
-- to them, across every partition. The worker writes an event's player, session and
-- detail row in one transaction (store/write.rs), and the tests check each relation
-- (tests/common: assert_event_integrity).

-- Each game's retention, in days; NULL: the service's default (--retention-days).
ALTER TABLE games ADD COLUMN retention_days integer CHECK (retention_days >= 1);

-- The old tables step aside (with their keys' indexes, whose names the new tables take),
-- and are dropped once their rows are copied.
ALTER TABLE events RENAME TO events_v7;
ALTER INDEX events_pkey RENAME TO events_v7_pkey;
DO $$
DECLARE
    detail text;
BEGIN
    FOREACH detail IN ARRAY ARRAY['session_start', 'session_end', 'progression', 'purchase',
                                  'resource', 'custom', 'error'] LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', detail || '_events', detail || '_events_v7');
        EXECUTE format('ALTER INDEX %I RENAME TO %I', detail || '_events_pkey', detail || '_events_v7_pkey');
    END LOOP;
END $$;
DROP INDEX events_player_time_idx, events_type_time_idx, events_session_idx,
           progression_events_level_idx, custom_events_name_idx;

CREATE TABLE events (
    game_id            integer     NOT NULL,
    event_id           uuid        NOT NULL,
    -- The partition key: occurred_at as the client sent it.
    client_occurred_at timestamptz NOT NULL,
    event_type         text        NOT NULL
                                   CHECK (event_type IN ('session_start', 'session_end', 'progression',
                                                         'purchase', 'resource', 'custom', 'error')),
    player_id          text        NOT NULL,
    session_id         uuid        NOT NULL,
    -- On the server's clock: client_occurred_at corrected by its batch's clock skew.
    occurred_at        timestamptz NOT NULL,
    batch_id           uuid        NOT NULL,
    received_at        timestamptz NOT NULL,
    processed_at       timestamptz NOT NULL,
    CHECK (received_at <= processed_at)
) PARTITION BY RANGE (game_id, client_occurred_at);
-- What each index costs and is for (BENCHMARKS.md, issue 11: the storing rate fell to
-- 0.72 of its start after 10 million random ids, in B-tree inserts):
--
-- * The idempotency key, and the lookup of GET /v1/events/{event_id}: the one index whose
--   writes go wherever clients' ids fall. Per partition, it is as large as one day of a
--   game.
ALTER TABLE events ADD CONSTRAINT events_key UNIQUE (game_id, event_id, client_occurred_at);
-- * A player's events: a player's timeline, the events of a session, and the check that a
--   pruned player or session has none left. By player alone, so that B-tree deduplication
--   keeps one entry per player and page (the old (game, player, time) index was the
--   largest of all, 1.3 GB for 20 million events).
CREATE INDEX events_player_idx ON events (game_id, player_id);
-- * Any time range: rows are written in about time order, so a BRIN index costs a few
--   bytes per 128 pages where a B-tree costs an entry per event. Events of one type in a
--   time range are their detail table's key.
CREATE INDEX events_occurred_brin ON events USING brin (occurred_at);
-- (Gone: (game, session), whose ids are as random as the client's; the events of a
-- session are found through its player. (game, type, time): the detail tables' keys.)

-- One detail table per event type, each row one event: the same partitions as events,
-- keyed by time first.
CREATE TABLE session_start_events (
    game_id            integer     NOT NULL,
    client_occurred_at timestamptz NOT NULL,
    event_id           uuid        NOT NULL,
    platform    text NOT NULL CHECK (platform IN ('ios', 'android', 'windows', 'macos', 'linux',
                                                  'web', 'playstation', 'xbox', 'switch', 'other')),
    app_version text NOT NULL CHECK (char_length(app_version) BETWEEN 1 AND 32),
    device      text CHECK (char_length(device) BETWEEN 1 AND 64),
    country     text CHECK (country ~ '^[A-Z]{2}$'),
    PRIMARY KEY (game_id, client_occurred_at, event_id)
) PARTITION BY RANGE (game_id, client_occurred_at);

CREATE TABLE session_end_events (
    game_id            integer     NOT NULL,
    client_occurred_at timestamptz NOT NULL,
    event_id           uuid        NOT NULL,
    duration_seconds integer NOT NULL CHECK (duration_seconds BETWEEN 0 AND 604800),
    PRIMARY KEY (game_id, client_occurred_at, event_id)
) PARTITION BY RANGE (game_id, client_occurred_at);

CREATE TABLE progression_events (
    game_id            integer     NOT NULL,
    client_occurred_at timestamptz NOT NULL,
    event_id           uuid        NOT NULL,
    status   text    NOT NULL CHECK (status IN ('start', 'complete', 'fail')),
    -- 1 to 3 non-empty parts joined by ':', each at most 64 characters (migration 4).
    level    text    NOT NULL CHECK (level ~ '^[^:]+(:[^:]+){0,2}$'
                                     AND char_length(split_part(level, ':', 1)) <= 64
                                     AND char_length(split_part(level, ':', 2)) <= 64
                                     AND char_length(split_part(level, ':', 3)) <= 64),
    score    bigint  CHECK (score >= 0),
    attempt  integer CHECK (attempt >= 1),
    PRIMARY KEY (game_id, client_occurred_at, event_id)
) PARTITION BY RANGE (game_id, client_occurred_at);
CREATE INDEX progression_events_level_idx ON progression_events (game_id, level, status);

CREATE TABLE purchase_events (
    game_id            integer     NOT NULL,
    client_occurred_at timestamptz NOT NULL,
    event_id           uuid        NOT NULL,
    item_id        text   NOT NULL CHECK (char_length(item_id) BETWEEN 1 AND 64),
    item_type      text   NOT NULL CHECK (char_length(item_type) BETWEEN 1 AND 64),
    amount_minor   bigint NOT NULL CHECK (amount_minor > 0),
    currency       text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    transaction_id text   CHECK (char_length(transaction_id) BETWEEN 1 AND 128),
    PRIMARY KEY (game_id, client_occurred_at, event_id)
) PARTITION BY RANGE (game_id, client_occurred_at);

CREATE TABLE resource_events (
    game_id            integer     NOT NULL,
    client_occurred_at timestamptz NOT NULL,
    event_id           uuid        NOT NULL,
    flow      text             NOT NULL CHECK (flow IN ('source', 'sink')),
    currency  text             NOT NULL CHECK (char_length(currency) BETWEEN 1 AND 64),
    -- > 0 and finite: PostgreSQL sorts NaN above every number, Infinity included.
    amount    double precision NOT NULL CHECK (amount > 0 AND amount < 'Infinity'),
    item_type text             NOT NULL CHECK (char_length(item_type) BETWEEN 1 AND 64),
    item_id   text             NOT NULL CHECK (char_length(item_id) BETWEEN 1 AND 64),
    PRIMARY KEY (game_id, client_occurred_at, event_id)
) PARTITION BY RANGE (game_id, client_occurred_at);

CREATE TABLE custom_events (
    game_id            integer     NOT NULL,
    client_occurred_at timestamptz NOT NULL,
    event_id           uuid        NOT NULL,
    -- 1 to 5 non-empty parts joined by ':', each at most 64 characters (migration 4).
    name       text             NOT NULL CHECK (name ~ '^[^:]+(:[^:]+){0,4}$'
                                               AND char_length(split_part(name, ':', 1)) <= 64
                                               AND char_length(split_part(name, ':', 2)) <= 64
                                               AND char_length(split_part(name, ':', 3)) <= 64
                                               AND char_length(split_part(name, ':', 4)) <= 64
                                               AND char_length(split_part(name, ':', 5)) <= 64),
    value      double precision CHECK (value > '-Infinity' AND value < 'Infinity'),
    properties jsonb            CHECK (jsonb_typeof(properties) = 'object'),
    PRIMARY KEY (game_id, client_occurred_at, event_id)
) PARTITION BY RANGE (game_id, client_occurred_at);
CREATE INDEX custom_events_name_idx ON custom_events (game_id, name);

CREATE TABLE error_events (
    game_id            integer     NOT NULL,
    client_occurred_at timestamptz NOT NULL,
    event_id           uuid        NOT NULL,
    severity text NOT NULL CHECK (severity IN ('debug', 'info', 'warning', 'error', 'critical')),
    message  text NOT NULL CHECK (char_length(message) BETWEEN 1 AND 8192),
    PRIMARY KEY (game_id, client_occurred_at, event_id)
) PARTITION BY RANGE (game_id, client_occurred_at);

-- Retention prunes the players and sessions last seen before the oldest day it keeps
-- that have no event left: found by when they were last seen, not by reading them all.
-- (Every upsert moves last_seen_at, so these indexes cost an entry per update: a few
-- hundred a second, against tens of thousands of events.)
CREATE INDEX players_last_seen_idx ON players (game_id, last_seen_at);
CREATE INDEX sessions_last_seen_idx ON sessions (game_id, last_seen_at);

-- The days that have partitions, per game: what the service creates ahead and on demand,
-- and what retention drops.
CREATE TABLE event_partitions (
    game_id    integer     NOT NULL REFERENCES games,
    day        date        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (game_id, day)
);

-- The tables partitioned by (game_id, client_occurred_at), events first.
CREATE FUNCTION event_partitioned_tables() RETURNS text[] AS $$
    SELECT ARRAY['events', 'session_start_events', 'session_end_events', 'progression_events',
                 'purchase_events', 'resource_events', 'custom_events', 'error_events']
$$ LANGUAGE sql IMMUTABLE;

-- The partition of `parent` for game `game` on `day`: parent_g<game>_<yyyymmdd>.
CREATE FUNCTION event_partition_name(parent text, game integer, day date) RETURNS text AS $$
    SELECT format('%s_g%s_%s', parent, game, to_char(day, 'YYYYMMDD'))
$$ LANGUAGE sql IMMUTABLE;

-- Makes the partitions of every event table for game `game` on the UTC day `day`, unless
-- they exist; returns whether it made them. Concurrent callers (workers, API processes)
-- agree through an advisory lock on (game, day). Each table is created apart and then
-- attached, which locks its parent in SHARE UPDATE EXCLUSIVE mode only: inserts, reads
-- and a pg_dump running meanwhile neither wait nor are waited for (CREATE TABLE ...
-- PARTITION OF would lock the parent exclusively). A table of that name that is not a
-- partition is a leftover of retention (detached, not yet dropped), older than any data
-- kept: it is dropped first.
--
-- SECURITY DEFINER: a worker whose role may only write rows (not create tables) still
-- gets the partitions it needs, made as the role that owns the tables, and reachable
-- only through this function's fixed statements. (Retention, which detaches and drops
-- partitions, needs that owning role itself: see the README.)
CREATE FUNCTION event_partition_ensure(of_game integer, on_day date) RETURNS boolean AS $$
DECLARE
    parent text;
    child text;
    from_at timestamptz := on_day::timestamp AT TIME ZONE 'UTC';
    to_at timestamptz := (on_day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('event_partition'), hashtext(of_game || ':' || on_day));
    IF EXISTS (SELECT 1 FROM event_partitions AS p WHERE p.game_id = of_game AND p.day = on_day) THEN
        RETURN false;
    END IF;
    FOREACH parent IN ARRAY event_partitioned_tables() LOOP
        child := event_partition_name(parent, of_game, on_day);
        IF to_regclass(child) IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(child)) THEN
            EXECUTE format('DROP TABLE %I', child);
        END IF;
        IF to_regclass(child) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           child, parent);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s, %L) TO (%s, %L)',
                           parent, child, of_game, from_at, of_game, to_at);
        END IF;
    END LOOP;
    INSERT INTO event_partitions (game_id, day) VALUES (of_game, on_day);
    RETURN true;
END;
$$ LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT;

-- The existing rows move into the new tables, partition by partition.
SELECT event_partition_ensure(game_id, day)
FROM (SELECT DISTINCT game_id, (client_occurred_at AT TIME ZONE 'UTC')::date AS day
      FROM events_v7) AS days;

INSERT INTO events (game_id, event_id, client_occurred_at, event_type, player_id, session_id,
                    occurred_at, batch_id, received_at, processed_at)
SELECT game_id, event_id, client_occurred_at, event_type, player_id, session_id,
       occurred_at, batch_id, received_at, processed_at
FROM events_v7;

INSERT INTO session_start_events
SELECT d.game_id, e.client_occurred_at, d.event_id, d.platform, d.app_version, d.device, d.country
FROM session_start_events_v7 AS d JOIN events_v7 AS e USING (game_id, event_id);
INSERT INTO session_end_events
SELECT d.game_id, e.client_occurred_at, d.event_id, d.duration_seconds
FROM session_end_events_v7 AS d JOIN events_v7 AS e USING (game_id, event_id);
INSERT INTO progression_events
SELECT d.game_id, e.client_occurred_at, d.event_id, d.status, d.level, d.score, d.attempt
FROM progression_events_v7 AS d JOIN events_v7 AS e USING (game_id, event_id);
INSERT INTO purchase_events
SELECT d.game_id, e.client_occurred_at, d.event_id, d.item_id, d.item_type, d.amount_minor,
       d.currency, d.transaction_id
FROM purchase_events_v7 AS d JOIN events_v7 AS e USING (game_id, event_id);
INSERT INTO resource_events
SELECT d.game_id, e.client_occurred_at, d.event_id, d.flow, d.currency, d.amount, d.item_type,
       d.item_id
FROM resource_events_v7 AS d JOIN events_v7 AS e USING (game_id, event_id);
INSERT INTO custom_events
SELECT d.game_id, e.client_occurred_at, d.event_id, d.name, d.value, d.properties
FROM custom_events_v7 AS d JOIN events_v7 AS e USING (game_id, event_id);
INSERT INTO error_events
SELECT d.game_id, e.client_occurred_at, d.event_id, d.severity, d.message
FROM error_events_v7 AS d JOIN events_v7 AS e USING (game_id, event_id);

DROP TABLE session_start_events_v7, session_end_events_v7, progression_events_v7,
           purchase_events_v7, resource_events_v7, custom_events_v7, error_events_v7, events_v7;
