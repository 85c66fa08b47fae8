-- One row per build request, so a redelivered request is recognised and a newer commit
-- can supersede an older build of the same app and branch.
CREATE TABLE builds (
    build_id   TEXT        PRIMARY KEY,
    app        TEXT        NOT NULL,
    commit_sha TEXT        NOT NULL,
    state      TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX builds_app ON builds (app, created_at);
