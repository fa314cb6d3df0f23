-- A day's event partitions are only ever inserted into. Autovacuum's insert-triggered
-- passes rescanned the day being written about once a minute (and, while a long snapshot
-- held back the visibility map, all of it each time) for no dead row to remove. They are
-- off for every event partition; a worker vacuums, freezes and analyzes each day once,
-- when the day is over (maintenance.rs), and notes it here. Autovacuum still runs for
-- dead rows (a partition only has those after a failed transaction) and wraparound.

-- When a worker sealed the day's tables; NULL: not yet.
ALTER TABLE event_partitions ADD COLUMN sealed_at timestamptz;

-- The same function as migration 9's, but for the storage option on each new table.
CREATE OR REPLACE FUNCTION event_partition_ensure(of_game integer, on_day date) RETURNS boolean AS $$
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
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
                            WITH (autovacuum_vacuum_insert_threshold = -1)',
                           child, parent);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s, %L) TO (%s, %L)',
                           parent, child, of_game, from_at, of_game, to_at);
        END IF;
    END LOOP;
    INSERT INTO event_partitions (game_id, day) VALUES (of_game, on_day);
    RETURN true;
END;
$$ LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT;

-- The partitions made before this migration get the same option.
DO $$
DECLARE
    part record;
    parent text;
BEGIN
    FOR part IN SELECT game_id, day FROM event_partitions LOOP
        FOREACH parent IN ARRAY event_partitioned_tables() LOOP
            EXECUTE format('ALTER TABLE %I SET (autovacuum_vacuum_insert_threshold = -1)',
                           event_partition_name(parent, part.game_id, part.day));
        END LOOP;
    END LOOP;
END;
$$;
