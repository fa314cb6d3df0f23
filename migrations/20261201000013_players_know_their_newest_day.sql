-- Players and sessions record the client's time of their newest event, so that
-- retention can tell that none of their events is left without an index of events by
-- player.
--
-- Measured (BENCHMARKS.md, issue 11): events_player_idx, (game, player), took an insert on
-- a random leaf for every event stored, about a tenth of the WAL per event, and was read
-- by one thing only: retention's check that a player or session it prunes has no event
-- left. Partitions hold whole UTC days of the client's occurred_at, so a player's events
-- are all in the partitions of the day of its newest event and of days before it, and
-- they are all gone exactly when none of those partitions is left (a day leaves
-- event_partitions once its tables are dropped): a lookup in event_partitions
-- (store/retention.rs), whatever the size of the game.
ALTER TABLE players  ADD COLUMN last_client_occurred_at timestamptz;
ALTER TABLE sessions ADD COLUMN last_client_occurred_at timestamptz;

-- The rows stored so far, from one scan of the events (the index is still there, but
-- one probe per player and partition would cost more than the scan).
CREATE TEMPORARY TABLE newest_events AS
    SELECT game_id, player_id, session_id, max(client_occurred_at) AS newest
    FROM events GROUP BY game_id, player_id, session_id;
UPDATE sessions AS s SET last_client_occurred_at = n.newest
FROM newest_events AS n
WHERE s.game_id = n.game_id AND s.session_id = n.session_id;
UPDATE players AS p SET last_client_occurred_at = n.newest
FROM (SELECT game_id, player_id, max(newest) AS newest FROM newest_events GROUP BY game_id, player_id) AS n
WHERE p.game_id = n.game_id AND p.player_id = n.player_id;
-- A player or session no event refers to any more (none are kept for it).
UPDATE sessions SET last_client_occurred_at = '-infinity' WHERE last_client_occurred_at IS NULL;
UPDATE players  SET last_client_occurred_at = '-infinity' WHERE last_client_occurred_at IS NULL;
ALTER TABLE players  ALTER COLUMN last_client_occurred_at SET NOT NULL;
ALTER TABLE sessions ALTER COLUMN last_client_occurred_at SET NOT NULL;

DROP TABLE newest_events;
DROP INDEX events_player_idx;

-- Whether game `of_game` may still hold an event of client time `newest` or earlier: a
-- partition is left of that day or of a day before it. Retention's one rule for players
-- and sessions alike, asked once per candidate (at most 500 a chunk), each time one probe
-- of event_partitions' key.
CREATE FUNCTION events_may_remain(of_game integer, newest timestamptz) RETURNS boolean AS $$
    SELECT EXISTS (SELECT 1 FROM event_partitions AS d
                   WHERE d.game_id = of_game AND d.day <= (newest AT TIME ZONE 'UTC')::date)
$$ LANGUAGE sql STABLE;
