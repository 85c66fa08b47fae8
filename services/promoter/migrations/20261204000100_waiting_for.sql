-- What a pending promotion waits for, as a kind (approvals, hold, freeze, gates, soak): the
-- queries go by it, not by the words of waiting_on, which is for people.
ALTER TABLE promotions ADD COLUMN waiting_for TEXT;
UPDATE promotions SET waiting_for = CASE
    WHEN waiting_on LIKE 'approvals:%' THEN 'approvals'
    WHEN waiting_on LIKE 'hold:%' THEN 'hold'
    WHEN waiting_on LIKE 'freeze:%' THEN 'freeze'
    WHEN waiting_on LIKE 'gates:%' THEN 'gates'
    WHEN waiting_on LIKE 'soak until %' THEN 'soak'
END
WHERE state = 'pending' AND waiting_on <> '';
