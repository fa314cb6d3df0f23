-- Our own claim for sqlxmq's job runner, replacing the stock mq_poll (same signature and
-- result, so sqlxmq's runner calls it unchanged). What differs, and why:
--
-- * Candidates are locked with FOR UPDATE SKIP LOCKED: a worker never waits on a job that
--   another worker is claiming or completing, and two workers never claim the same job.
-- * The final attempt keeps a lease (attempt_at = now + backoff) instead of none, so a
--   worker that dies during it is noticed: once that lease runs out the job is dead, its
--   batch is marked failed, and `app failed retry` can requeue it. Nothing is stranded.
-- * The claim marks the claimed jobs' batches 'processing' and counts the attempt, in the
--   same statement (a job's id is its batch's id).
-- * Its plan does not depend on the table's statistics (see the SET below), and the
--   "when is the next job due" answer comes from the first entries of partial indexes.
--
-- Invariants: a job with attempts > 0 and attempt_at <= now() is claimable; attempts = 0
-- with a future attempt_at is on its last attempt; attempts = 0 with attempt_at NULL is dead.

CREATE OR REPLACE FUNCTION mq_poll(channel_names TEXT[], batch_size INT DEFAULT 1)
RETURNS TABLE(
    id UUID,
    is_committed BOOLEAN,
    name TEXT,
    payload_json TEXT,
    payload_bytes BYTEA,
    retry_backoff INTERVAL,
    wait_time INTERVAL
) AS $$
#variable_conflict use_column
DECLARE
    claimed_ids UUID[];
BEGIN
    -- Final attempts whose lease ran out: their worker is gone. Mark them dead.
    WITH expired AS (
        SELECT m.id FROM mq_msgs AS m
        WHERE m.attempts = 0 AND m.attempt_at <= now()
        FOR UPDATE SKIP LOCKED
    ), dead AS (
        UPDATE mq_msgs AS m SET attempt_at = NULL
        FROM expired WHERE m.id = expired.id
        RETURNING m.id
    )
    UPDATE batches AS b
    SET status = 'failed',
        last_error = 'the worker stopped during the final attempt (crashed, killed or lost its database connection)'
    FROM dead WHERE b.batch_id = dead.id;

    WITH candidates AS (
        SELECT m.id FROM mq_msgs AS m
        WHERE m.attempts > 0
          AND m.attempt_at <= now()
          AND m.id <> uuid_nil()
          AND NOT mq_uuid_exists(m.after_message_id)
          AND (channel_names IS NULL OR m.channel_name = ANY(channel_names))
        ORDER BY m.attempt_at
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE mq_msgs AS m
        SET attempts = m.attempts - 1,
            attempt_at = now() + m.retry_backoff,
            retry_backoff = m.retry_backoff * 2
        FROM candidates WHERE m.id = candidates.id
        RETURNING m.id
    )
    SELECT array_agg(claimed.id) INTO claimed_ids FROM claimed;

    IF claimed_ids IS NULL THEN
        -- Nothing ready: tell the runner how long until the next job (or lease) is due.
        -- Never less than 50 ms: a due job we could not see is locked by a worker that is
        -- claiming or completing it, and will be gone in a moment.
        -- Each min() is the first entry of a partial index. (Across every channel: a
        -- wake-up too early for a caller's channels costs one empty poll.)
        RETURN QUERY
        SELECT NULL::UUID, NULL::BOOLEAN, NULL::TEXT, NULL::TEXT, NULL::BYTEA, NULL::INTERVAL,
               GREATEST(LEAST(
                   (SELECT min(m.attempt_at) FROM mq_msgs AS m
                    WHERE m.attempts > 0 AND m.id <> uuid_nil()),
                   (SELECT min(m.attempt_at) FROM mq_msgs AS m
                    WHERE m.attempts = 0 AND m.attempt_at IS NOT NULL)
               ) - now(), INTERVAL '50 milliseconds');
        RETURN;
    END IF;

    UPDATE batches AS b
    SET status = 'processing', attempts = b.attempts + 1
    WHERE b.batch_id = ANY(claimed_ids);

    RETURN QUERY
    SELECT m.id,
           m.commit_interval IS NULL,
           p.name,
           p.payload_json::TEXT,
           p.payload_bytes,
           m.retry_backoff / 2,
           INTERVAL '0'
    FROM mq_msgs AS m
    JOIN mq_payloads AS p ON p.id = m.id
    WHERE m.id = ANY(claimed_ids);
END;
$$ LANGUAGE plpgsql
-- The queue churns faster than autovacuum's statistics follow: planned for the few rows
-- it last counted, a claim would read and sort every due job (8.5 ms at 20,000 queued,
-- against 0.05 ms through the index). The claim's plan must not depend on that count.
SET enable_seqscan = off;


-- The claim's scan: due jobs in order, without the dead and the sentinel row.
CREATE INDEX mq_msgs_claimable_idx ON mq_msgs (attempt_at) WHERE attempts > 0 AND id <> uuid_nil();
-- The expiry check of final attempts; almost always empty.
CREATE INDEX mq_msgs_final_attempt_idx ON mq_msgs (attempt_at) WHERE attempts = 0 AND attempt_at IS NOT NULL;

-- How long the oldest due job has waited for a worker: the API's backpressure signal,
-- read a few times a second, so it must be the first entry of the claim's index.
CREATE FUNCTION mq_lag_seconds() RETURNS float8 AS $$
    SELECT COALESCE(extract(epoch FROM now() - min(attempt_at))::float8, 0)
    FROM mq_msgs
    WHERE attempts > 0 AND id <> uuid_nil() AND attempt_at <= now()
$$ LANGUAGE sql STABLE
SET enable_seqscan = off;

-- sqlxmq's lease renewal looks jobs up by id; like the claim, it must not fall back to
-- reading the whole table when the statistics are stale (or, with autovacuum off, absent).
ALTER FUNCTION mq_keep_alive(UUID[], INTERVAL) SET enable_seqscan = off;

-- Every job is inserted, updated at each claim and deleted: keep vacuum and statistics
-- close behind, whatever the table's size, so it neither bloats nor misleads the planner.
ALTER TABLE mq_msgs SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000
);
ALTER TABLE mq_payloads SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000
);
-- A payload lives for seconds: compressing it (pglz, on every insert) costs more CPU than
-- the disk it would save.
ALTER TABLE mq_payloads ALTER COLUMN payload_bytes SET STORAGE EXTERNAL;
