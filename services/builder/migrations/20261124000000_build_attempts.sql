-- What the builder needs to run each request once across replicas: the branch (for
-- supersede), the request's stream position (which of two requests is newer), attempts (a
-- redelivery after a crash rebuilds), who holds the build and when it last said so.
ALTER TABLE builds
    ADD COLUMN git_ref      TEXT        NOT NULL DEFAULT '',
    ADD COLUMN stream_seq   BIGINT      NOT NULL DEFAULT 0,
    ADD COLUMN attempts     INTEGER     NOT NULL DEFAULT 0,
    ADD COLUMN replica      TEXT        NOT NULL DEFAULT '',
    ADD COLUMN heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN reason       TEXT,
    ADD COLUMN digest       TEXT;
CREATE INDEX builds_branch ON builds (app, git_ref, stream_seq);
