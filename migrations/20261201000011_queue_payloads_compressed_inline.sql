-- A queued batch's payload (its events as JSON, ~25 KB for 100 events) was stored
-- uncompressed and out of line (migration 2 chose STORAGE EXTERNAL: pglz cost more CPU
-- than the disk it saved): thirteen TOAST chunks per job, each with its index entry, all
-- deleted seconds later. That was a fifth of the WAL per stored event, and while a long
-- snapshot holds dead rows the TOAST table grew by 25 KB a job (1.2 GB in 100 s) and
-- enqueues slowed to four times their cost. lz4 compresses the JSON about fivefold at a
-- fraction of pglz's cost, and a compressed payload of up to 8 KB now stays in its heap
-- row (toast_tuple_target): one row per job, no chunks. Larger batches are still
-- compressed, then moved out of line.
ALTER TABLE mq_payloads
    ALTER COLUMN payload_bytes SET STORAGE MAIN,
    ALTER COLUMN payload_bytes SET COMPRESSION lz4;
ALTER TABLE mq_payloads SET (toast_tuple_target = 8160);
