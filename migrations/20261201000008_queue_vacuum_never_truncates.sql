-- The queue's tables are vacuumed every second (queue::vacuum), and every vacuum that
-- freed pages at the end of a table tried to truncate them: that needs an ACCESS
-- EXCLUSIVE lock, which VACUUM asks for again every 50 ms for up to 5 s while enqueues,
-- claims and completions hold the table, as they always do. Measured in the growth
-- benchmark (BENCHMARKS.md): each vacuum of mq_msgs and mq_payloads took 2 to 8 s, most
-- of it in the wait event VacuumTruncate, so dead rows and payloads piled up between
-- vacuums (the payloads' TOAST table grew to 100 MB for a few hundred live rows), and a
-- truncation that did get the lock stopped the queue while it ran. The pages a queue
-- table frees are reused within seconds: never give them back.
ALTER TABLE mq_msgs SET (vacuum_truncate = false, toast.vacuum_truncate = false);
ALTER TABLE mq_payloads SET (vacuum_truncate = false, toast.vacuum_truncate = false);
