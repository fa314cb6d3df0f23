-- The ingested data: one table per concern. CHECK constraints mirror the API's bounds
-- (src/domain/fields.rs), so the database refuses what the API would refuse.

CREATE TABLE batches (
    batch_id     uuid        PRIMARY KEY,
    status       text        NOT NULL DEFAULT 'queued'
                             CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    accepted     integer     NOT NULL CHECK (accepted BETWEEN 1 AND 1000),
    inserted     integer     CHECK (inserted >= 0),
    duplicates   integer     CHECK (duplicates >= 0),
    -- Processing attempts started so far (the claim counts them).
    attempts     integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error   text,
    -- The client's clock when it sent the request, and ours when we received it:
    -- their difference corrects the events' occurred_at.
    sent_at      timestamptz,
    received_at  timestamptz NOT NULL,
    completed_at timestamptz,
    CHECK ((status = 'completed') = (completed_at IS NOT NULL)),
    CHECK ((status = 'completed') = (inserted IS NOT NULL AND duplicates IS NOT NULL)),
    CHECK (inserted + duplicates <= accepted)
);
CREATE INDEX batches_failed_idx ON batches (received_at) WHERE status = 'failed';

CREATE TABLE players (
    player_id     text        PRIMARY KEY
                              CHECK (player_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    first_seen_at timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    CHECK (first_seen_at <= last_seen_at)
);

-- Created by whichever of a session's events arrives first; session_start fills in the
-- device columns, session_end the end.
CREATE TABLE sessions (
    session_id       uuid        PRIMARY KEY,
    player_id        text        NOT NULL REFERENCES players DEFERRABLE INITIALLY DEFERRED,
    platform         text        CHECK (platform IN ('ios', 'android', 'windows', 'macos', 'linux',
                                                     'web', 'playstation', 'xbox', 'switch', 'other')),
    app_version      text        CHECK (char_length(app_version) BETWEEN 1 AND 32),
    device           text        CHECK (char_length(device) BETWEEN 1 AND 64),
    country          text        CHECK (country ~ '^[A-Z]{2}$'),
    started_at       timestamptz,
    ended_at         timestamptz,
    duration_seconds integer     CHECK (duration_seconds BETWEEN 0 AND 604800),
    first_seen_at    timestamptz NOT NULL,
    last_seen_at     timestamptz NOT NULL,
    CHECK (first_seen_at <= last_seen_at)
);
CREATE INDEX sessions_player_idx ON sessions (player_id, first_seen_at);

CREATE TABLE events (
    event_id           uuid        PRIMARY KEY,
    event_type         text        NOT NULL
                                   CHECK (event_type IN ('session_start', 'session_end', 'progression',
                                                         'purchase', 'resource', 'custom', 'error')),
    player_id          text        NOT NULL REFERENCES players DEFERRABLE INITIALLY DEFERRED,
    session_id         uuid        NOT NULL REFERENCES sessions DEFERRABLE INITIALLY DEFERRED,
    -- occurred_at on the server's clock (the client's value corrected by the batch's
    -- clock skew); client_occurred_at as the client sent it.
    occurred_at        timestamptz NOT NULL,
    client_occurred_at timestamptz NOT NULL,
    batch_id           uuid        NOT NULL REFERENCES batches,
    received_at        timestamptz NOT NULL,
    processed_at       timestamptz NOT NULL,
    CHECK (received_at <= processed_at)
);
CREATE INDEX events_player_time_idx ON events (player_id, occurred_at);
CREATE INDEX events_type_time_idx ON events (event_type, occurred_at);
CREATE INDEX events_session_idx ON events (session_id);
-- No index on batch_id: nothing reads events by batch, and every index costs each insert.

-- One detail table per event type with fields of its own; each row is one event.

CREATE TABLE session_start_events (
    event_id    uuid PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    platform    text NOT NULL CHECK (platform IN ('ios', 'android', 'windows', 'macos', 'linux',
                                                  'web', 'playstation', 'xbox', 'switch', 'other')),
    app_version text NOT NULL CHECK (char_length(app_version) BETWEEN 1 AND 32),
    device      text CHECK (char_length(device) BETWEEN 1 AND 64),
    country     text CHECK (country ~ '^[A-Z]{2}$')
);

CREATE TABLE session_end_events (
    event_id         uuid    PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    duration_seconds integer NOT NULL CHECK (duration_seconds BETWEEN 0 AND 604800)
);

CREATE TABLE progression_events (
    event_id uuid    PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    status   text    NOT NULL CHECK (status IN ('start', 'complete', 'fail')),
    level    text    NOT NULL CHECK (level ~ '^[^:]{1,64}(:[^:]{1,64}){0,2}$'),
    score    bigint  CHECK (score >= 0),
    attempt  integer CHECK (attempt >= 1)
);
CREATE INDEX progression_events_level_idx ON progression_events (level, status);

CREATE TABLE purchase_events (
    event_id       uuid   PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    item_id        text   NOT NULL CHECK (char_length(item_id) BETWEEN 1 AND 64),
    item_type      text   NOT NULL CHECK (char_length(item_type) BETWEEN 1 AND 64),
    amount_minor   bigint NOT NULL CHECK (amount_minor > 0),
    currency       text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    transaction_id text   CHECK (char_length(transaction_id) BETWEEN 1 AND 128)
);

CREATE TABLE resource_events (
    event_id  uuid             PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    flow      text             NOT NULL CHECK (flow IN ('source', 'sink')),
    currency  text             NOT NULL CHECK (char_length(currency) BETWEEN 1 AND 64),
    -- > 0 and finite: PostgreSQL sorts NaN above every number, Infinity included.
    amount    double precision NOT NULL CHECK (amount > 0 AND amount < 'Infinity'),
    item_type text             NOT NULL CHECK (char_length(item_type) BETWEEN 1 AND 64),
    item_id   text             NOT NULL CHECK (char_length(item_id) BETWEEN 1 AND 64)
);

CREATE TABLE custom_events (
    event_id   uuid             PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    name       text             NOT NULL CHECK (name ~ '^[^:]{1,64}(:[^:]{1,64}){0,4}$'),
    value      double precision CHECK (value > '-Infinity' AND value < 'Infinity'),
    properties jsonb            CHECK (jsonb_typeof(properties) = 'object')
);
CREATE INDEX custom_events_name_idx ON custom_events (name);

CREATE TABLE error_events (
    event_id uuid PRIMARY KEY REFERENCES events ON DELETE CASCADE,
    severity text NOT NULL CHECK (severity IN ('debug', 'info', 'warning', 'error', 'critical')),
    message  text NOT NULL CHECK (char_length(message) BETWEEN 1 AND 8192)
);
