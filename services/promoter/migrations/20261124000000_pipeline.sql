-- The pipeline model: apps × stages, runs with their timelines, promotions, approvals, holds,
-- and the test gates commits passed. Decisions are also appended to audit_log.

-- One row per app; handlers lock it (FOR UPDATE) so decisions about one app are serialized
-- across replicas.
CREATE TABLE apps (
    name       TEXT        PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What each app runs in each stage. Versions are JSON {image: ImageRef, source: SourceRef}.
CREATE TABLE stage_versions (
    app               TEXT        NOT NULL REFERENCES apps (name),
    stage             TEXT        NOT NULL,
    desired           JSONB,
    desired_promotion TEXT,
    last_healthy      JSONB,
    previous_healthy  JSONB,
    healthy_since     TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app, stage)
);

-- One pipeline run per build of an app.
CREATE TABLE runs (
    id               TEXT        PRIMARY KEY,
    app              TEXT        NOT NULL REFERENCES apps (name),
    build_id         TEXT        NOT NULL,
    source_repository TEXT       NOT NULL,
    commit_sha       TEXT        NOT NULL,
    git_ref          TEXT        NOT NULL,
    author           TEXT        NOT NULL,
    image_repository TEXT        NOT NULL,
    image_tag        TEXT        NOT NULL,
    image_digest     TEXT        NOT NULL,
    state            TEXT        NOT NULL,
    stage            TEXT,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (app, build_id)
);
CREATE INDEX runs_open ON runs (app) WHERE state IN ('running', 'waiting');
CREATE INDEX runs_by_tag ON runs (app, image_tag);
CREATE INDEX runs_recent ON runs (app, started_at DESC, id DESC);

CREATE TABLE run_timeline (
    id     BIGSERIAL   PRIMARY KEY,
    run_id TEXT        NOT NULL REFERENCES runs (id),
    at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    stage  TEXT,
    step   TEXT        NOT NULL,
    actor  TEXT        NOT NULL,
    detail TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX run_timeline_run ON run_timeline (run_id, id);

CREATE TABLE promotions (
    id               TEXT        PRIMARY KEY,
    app              TEXT        NOT NULL REFERENCES apps (name),
    stage            TEXT        NOT NULL,
    run_id           TEXT        REFERENCES runs (id),
    version          JSONB       NOT NULL,
    image_tag        TEXT        NOT NULL,
    image_digest     TEXT        NOT NULL,
    source_commit    TEXT        NOT NULL,
    state            TEXT        NOT NULL,
    trigger          TEXT        NOT NULL,
    actor            TEXT        NOT NULL,
    reason           TEXT        NOT NULL DEFAULT '',
    waiting_on       TEXT        NOT NULL DEFAULT '',
    override_freeze  BOOLEAN     NOT NULL DEFAULT false,
    gitops_commit    TEXT        NOT NULL DEFAULT '',
    committed_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX promotions_open ON promotions (app) WHERE state IN ('pending', 'requested', 'committed', 'synced');
CREATE INDEX promotions_pending ON promotions (state) WHERE state = 'pending';

CREATE TABLE approvals (
    promotion_id TEXT        NOT NULL REFERENCES promotions (id),
    actor        TEXT        NOT NULL,
    position     INT         NOT NULL,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (promotion_id, actor)
);

CREATE TABLE holds (
    app    TEXT        NOT NULL REFERENCES apps (name),
    stage  TEXT        NOT NULL,
    actor  TEXT        NOT NULL,
    reason TEXT        NOT NULL,
    at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (app, stage)
);

-- Latest conclusion of each workflow run / check suite per commit.
CREATE TABLE test_gates (
    repository TEXT        NOT NULL,
    commit_sha TEXT        NOT NULL,
    name       TEXT        NOT NULL,
    conclusion TEXT        NOT NULL,
    url        TEXT        NOT NULL DEFAULT '',
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, commit_sha, name)
);
CREATE INDEX test_gates_commit ON test_gates (commit_sha);

CREATE INDEX audit_log_app ON audit_log (app, id);
