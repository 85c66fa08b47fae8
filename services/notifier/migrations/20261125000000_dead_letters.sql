-- Deliveries that failed for good, with the event itself so they can be replayed.
CREATE TABLE notification_dead_letters (
    id          BIGSERIAL   PRIMARY KEY,
    event_id    TEXT        NOT NULL,
    destination TEXT        NOT NULL,
    provider    TEXT        NOT NULL,
    app         TEXT        NOT NULL DEFAULT '',
    attempts    INTEGER     NOT NULL,
    error       TEXT        NOT NULL,
    headers     JSONB       NOT NULL,
    body        BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_at TIMESTAMPTZ
);
CREATE INDEX notification_dead_letters_open ON notification_dead_letters (id) WHERE replayed_at IS NULL;

-- The GitHub deployment created for a promotion, so later promotion events post its statuses.
CREATE TABLE github_deployments (
    promotion_id  TEXT        NOT NULL,
    destination   TEXT        NOT NULL,
    repository    TEXT        NOT NULL,
    deployment_id BIGINT      NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (promotion_id, destination)
);
