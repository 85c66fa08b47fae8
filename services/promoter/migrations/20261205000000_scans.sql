-- The supply-chain gate: the newest vulnerability scan of each image digest (build.scanned or
-- build.scan-failed), which a stage's scan policy judges; and the admin override of it.
CREATE TABLE scans (
    digest     TEXT        PRIMARY KEY,
    app        TEXT        NOT NULL,
    -- When the scanner ran; an older report never replaces a newer one.
    scanned_at TIMESTAMPTZ NOT NULL,
    -- 'scanned' (report holds a BuildScanned) or 'failed' (a BuildScanFailed).
    outcome    TEXT        NOT NULL,
    report     JSONB       NOT NULL,
    event_id   TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX scans_by_app ON scans (app, scanned_at DESC);

ALTER TABLE promotions ADD COLUMN override_scan BOOLEAN NOT NULL DEFAULT false;

-- promotions.waiting_for gains the kind 'scan' (the column is free text; nothing to change).
UPDATE promotions SET waiting_for = 'scan' WHERE state = 'pending' AND waiting_on LIKE 'scan:%';
