-- Our own lease renewal, replacing sqlxmq's mq_keep_alive (same signature, called by its
-- runner for each job a worker holds). sqlxmq's version updates the job row whatever
-- holds it, so it waits for any transaction that has the row locked. The one that does,
-- almost always, is the worker's own: storing a group of batches deletes their jobs
-- (queue::take_jobs) and holds those row locks until it commits, a few hundred
-- milliseconds. Measured in the benchmark: 447 renewals spent 27 s waiting, each holding
-- one of the worker's pooled connections, which its processors then queued for.
--
-- A locked job is skipped instead. The only transactions that lock a held job are the
-- worker's own (storing it, or recording a failed attempt), so a skipped job is one that
-- is about to be gone or be given a new lease anyway; at worst the next renewal
-- (sqlxmq's runner keeps renewing while it holds the job) catches it.
--
-- Our jobs are always inserted committed (commit_interval NULL: see queue/group_commit.rs),
-- so, unlike sqlxmq's version, this one has no two-phase commit interval to carry along.
-- PL/pgSQL rather than SQL: a SQL function with a SET clause is planned again at every
-- call, and a worker renews leases hundreds of times a second.
CREATE OR REPLACE FUNCTION mq_keep_alive(msg_ids UUID[], duration INTERVAL)
RETURNS VOID AS $$
BEGIN
    WITH renewable AS (
        SELECT m.id FROM mq_msgs AS m
        WHERE m.id = ANY(msg_ids) AND m.attempt_at < now() + duration
        FOR UPDATE SKIP LOCKED
    )
    UPDATE mq_msgs AS m
    SET attempt_at = now() + duration
    FROM renewable
    WHERE m.id = renewable.id;
END;
$$ LANGUAGE plpgsql
-- Found by primary key, whatever the statistics say (see the claim's migration).
SET enable_seqscan = off;
