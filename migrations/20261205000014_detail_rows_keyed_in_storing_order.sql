-- The detail tables' keys, written in the order events are stored.
--
-- Migration 9 keyed each detail table by (game, client time, event id), so that its key is
-- appended in time order whatever ids clients send. That holds for live traffic, whose
-- events arrive seconds after they happen; it does not for events that arrive out of time
-- order (a device that sends its sessions an hour later, a backfill, and the growth
-- benchmark, whose sessions began one to two hours before they are sent): their keys land
-- anywhere in the day's index, and with millions of rows a day every insert descends into
-- a cold part of it (BENCHMARKS.md, "Months of data").
--
-- A detail row is now keyed by the batch that stored its event first: (game, batch_id,
-- event_id, client time). Batch ids are UUIDv7 made by the API when it accepts the batch,
-- so the key grows at its right edge in the order batches are accepted, whatever the
-- events' ids and times; a batch's rows lie together. The client time stays in the key
-- because it is the partition key. An event's detail row is found from its `events` row,
-- which holds the same four values (store/read.rs joins on them). The detail row keeps
-- its event_id, so it names its event without the join.
--
-- Existing rows take their event's batch_id. This rewrites every detail row once.
DO $$
DECLARE
    detail text;
BEGIN
    FOREACH detail IN ARRAY ARRAY['session_start_events', 'session_end_events',
                                  'progression_events', 'purchase_events', 'resource_events',
                                  'custom_events', 'error_events'] LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN batch_id uuid', detail);
        EXECUTE format('UPDATE %I AS d SET batch_id = e.batch_id FROM events AS e
                        WHERE e.game_id = d.game_id AND e.event_id = d.event_id
                          AND e.client_occurred_at = d.client_occurred_at', detail);
        -- Fails if a detail row has no event: the worker never writes one (store/write.rs).
        EXECUTE format('ALTER TABLE %I ALTER COLUMN batch_id SET NOT NULL', detail);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', detail, detail || '_pkey');
        EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (game_id, batch_id, event_id, client_occurred_at)',
                       detail);
    END LOOP;
END $$;
