-- The trace of the push that started each run (from its build.succeeded event): its W3C trace
-- id, so a user can open it, and the traceparent, so that steps taken later on the run's behalf
-- (a tick, an approval) continue that trace. Empty for runs from before, or without context.
ALTER TABLE runs ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN traceparent TEXT NOT NULL DEFAULT '';
