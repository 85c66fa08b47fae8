-- Test-only effect table: one row per applied event, with how often it was applied.
CREATE TABLE applied (
    event_id      TEXT    PRIMARY KEY,
    build_id      TEXT    NOT NULL,
    applied_count INTEGER NOT NULL DEFAULT 1
);
