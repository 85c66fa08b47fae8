-- Exactly one effect per (event, destination): a redelivered event finds its row.
CREATE TABLE notification_deliveries (
    event_id    TEXT        NOT NULL,
    destination TEXT        NOT NULL,
    state       TEXT        NOT NULL,
    attempts    INTEGER     NOT NULL DEFAULT 0,
    last_error  TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, destination)
);
