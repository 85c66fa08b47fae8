-- GitHub reuses a delivery id when someone redelivers (up to 3 days later), while the
-- JetStream duplicate window is shorter: this table remembers deliveries for longer.
CREATE TABLE github_deliveries (
    delivery_id TEXT        PRIMARY KEY,
    event       TEXT        NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX github_deliveries_received ON github_deliveries (received_at);
