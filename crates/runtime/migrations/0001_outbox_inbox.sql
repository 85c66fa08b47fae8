-- Runtime tables, created in each service's own schema (the pool's search_path).
-- Runtime migrations use versions below 1000; services use timestamps.

-- Events written in the same transaction as a state change, relayed to JetStream
-- with event_id as Nats-Msg-Id.
CREATE TABLE slipway_outbox (
    seq          BIGSERIAL PRIMARY KEY,
    event_id     TEXT        NOT NULL UNIQUE,
    subject      TEXT        NOT NULL,
    headers      JSONB       NOT NULL,
    body         BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX slipway_outbox_pending ON slipway_outbox (seq) WHERE published_at IS NULL;

-- Event ids a consumer has applied, written in the same transaction as the effect.
CREATE TABLE slipway_inbox (
    consumer    TEXT        NOT NULL,
    event_id    TEXT        NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
