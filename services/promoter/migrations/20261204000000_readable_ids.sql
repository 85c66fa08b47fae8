-- Each app counts its runs and promotions: the numbers in readable ids (hello-prod-4b52662-7).
ALTER TABLE apps ADD COLUMN runs_made BIGINT NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN promotions_made BIGINT NOT NULL DEFAULT 0;
UPDATE apps SET
    runs_made = (SELECT count(*) FROM runs r WHERE r.app = apps.name),
    promotions_made = (SELECT count(*) FROM promotions p WHERE p.app = apps.name);
