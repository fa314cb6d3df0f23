-- A queue that a long transaction does not slow down.
--
-- While one snapshot is held (pg_dump, an analyst's query), vacuum can remove no row
-- deleted or updated after it, and every job leaves such rows: its insert, the version
-- its claim made, its delete. Measured with a snapshot held for 100 s under the standard
-- batch load (BENCHMARKS.md), the storing rate fell to 0.66 of the rate before, and the
-- time went where a scan passes the dead rows of every job since the snapshot:
--
-- * the API's backpressure probe, mq_lag_seconds(), twenty times a second: the first due
--   entry of the claim index, behind every dead entry (15 ms a call, a quarter of a core);
-- * the worker's vacuum of the queue, which cannot remove them (below, in Rust: it backs
--   off while that lasts);
-- * every index of mq_msgs, each written by every version of every job.

-- 1. The backpressure signal without a scan: the time since which the oldest due job has
-- waited, kept in a sequence. A sequence is not MVCC: setval overwrites it in place, so
-- it leaves no dead rows and reading it costs one page, however old the oldest snapshot.
-- 0 means that no job is known to wait. A claim sets it: 0 when it took every due job it
-- could see, else the due time of the last job it took (the oldest still waiting is no
-- older). A commit of new jobs sets it to its own time when it was 0, so that with no
-- worker at all the lag grows and the API slows down, as before.
CREATE SEQUENCE mq_waiting_since_us AS bigint MINVALUE 0 START 0;

CREATE OR REPLACE FUNCTION mq_lag_seconds() RETURNS float8 AS $$
    SELECT CASE WHEN last_value = 0 THEN 0
                ELSE greatest(extract(epoch FROM now()) - last_value / 1e6, 0)
           END
    FROM mq_waiting_since_us
$$ LANGUAGE sql STABLE;

-- Called by enqueues (queue/group_commit.rs) and requeues (queue/failed.rs) as they
-- commit: new jobs wait from now, unless older ones already do.
CREATE FUNCTION mq_note_waiting() RETURNS void AS $$
    SELECT setval('mq_waiting_since_us', (extract(epoch FROM now()) * 1e6)::bigint)
    FROM mq_waiting_since_us WHERE last_value = 0
$$ LANGUAGE sql;

-- 2. The claim of migration 6, publishing what it leaves waiting.
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
    last_due TIMESTAMPTZ;
    next_poll INTERVAL;
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
        SELECT m.id, m.attempt_at FROM mq_msgs AS m
        WHERE m.attempts > 0
          AND m.attempt_at <= now()
          AND m.id <> uuid_nil()
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
        RETURNING m.id, candidates.attempt_at AS was_due
    )
    SELECT array_agg(claimed.id), max(claimed.was_due) INTO claimed_ids, last_due FROM claimed;

    IF claimed_ids IS NULL THEN
        PERFORM setval('mq_waiting_since_us', 0);
        RETURN QUERY
        SELECT NULL::UUID, NULL::BOOLEAN, NULL::TEXT, NULL::TEXT, NULL::BYTEA, NULL::INTERVAL,
               mq_next_due_in();
        RETURN;
    END IF;

    -- A full claim may have left due jobs behind: poll again at once. A partial one
    -- took every due job it could see.
    IF cardinality(claimed_ids) < batch_size THEN
        PERFORM setval('mq_waiting_since_us', 0);
        next_poll := mq_next_due_in();
    ELSE
        PERFORM setval('mq_waiting_since_us', (extract(epoch FROM last_due) * 1e6)::bigint);
        next_poll := INTERVAL '0';
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
           next_poll
    FROM mq_msgs AS m
    JOIN mq_payloads AS p ON p.id = m.id
    WHERE m.id = ANY(claimed_ids);
END;
$$ LANGUAGE plpgsql
-- As in migration 2: the claim's plan must not depend on the table's statistics.
SET enable_seqscan = off;

-- 3. mq_msgs keeps the indexes our claim, leases and lookups use (the key, the claim's,
-- the final attempts'), and loses sqlxmq's own, which serve its ordered messages and its
-- own mq_poll, neither used here (we insert jobs ourselves, unordered: after_message_id
-- is NULL). Each index costs an entry per version of every job, and each one a dead entry
-- while a snapshot is held. The ordering's foreign key goes too: every completed job
-- made PostgreSQL look for jobs ordered after it, a scan of the whole table (no index
-- leads with after_message_id), and a long one once dead rows pile up.
ALTER TABLE mq_msgs DROP CONSTRAINT mq_msgs_after_message_id_fkey;
DROP INDEX mq_msgs_channel_name_channel_args_after_message_id_idx,
           mq_msgs_channel_name_channel_args_attempt_at_idx,
           mq_msgs_channel_name_channel_args_created_at_id_idx;
