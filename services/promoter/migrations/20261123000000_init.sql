-- Append-only record of every decision, with who made it and why.
CREATE TABLE audit_log (
    id     BIGSERIAL   PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor  TEXT        NOT NULL,
    action TEXT        NOT NULL,
    app    TEXT,
    stage  TEXT,
    reason TEXT,
    detail JSONB       NOT NULL DEFAULT '{}'
);
