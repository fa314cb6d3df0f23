-- The same rules, checked at a fraction of the cost. PostgreSQL's regular expressions
-- expand a bounded repetition such as `{1,64}` into that many states: a profile of the
-- benchmark (BENCHMARKS.md) found a tenth of the whole machine's CPU time in these four
-- CHECKs (the level pattern took 8.5 µs a row, the player pattern 3.2 µs). Each rule
-- below is the old one restated with an unbounded `+` and the lengths counted apart
-- (0.2 to 0.5 µs a row); tests/api/database_checks.rs holds each to the API's rule.

ALTER TABLE players
    DROP CONSTRAINT players_player_id_check,
    ADD CONSTRAINT players_player_id_check
        CHECK (player_id ~ '^[A-Za-z0-9._:-]+$' AND char_length(player_id) <= 64);

-- 1 to 3 non-empty parts joined by ':', each at most 64 characters.
ALTER TABLE progression_events
    DROP CONSTRAINT progression_events_level_check,
    ADD CONSTRAINT progression_events_level_check
        CHECK (level ~ '^[^:]+(:[^:]+){0,2}$'
               AND char_length(split_part(level, ':', 1)) <= 64
               AND char_length(split_part(level, ':', 2)) <= 64
               AND char_length(split_part(level, ':', 3)) <= 64);

-- 1 to 5 non-empty parts joined by ':', each at most 64 characters.
ALTER TABLE custom_events
    DROP CONSTRAINT custom_events_name_check,
    ADD CONSTRAINT custom_events_name_check
        CHECK (name ~ '^[^:]+(:[^:]+){0,4}$'
               AND char_length(split_part(name, ':', 1)) <= 64
               AND char_length(split_part(name, ':', 2)) <= 64
               AND char_length(split_part(name, ':', 3)) <= 64
               AND char_length(split_part(name, ':', 4)) <= 64
               AND char_length(split_part(name, ':', 5)) <= 64);
