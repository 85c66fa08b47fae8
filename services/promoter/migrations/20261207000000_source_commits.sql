-- The commits of every push the promoter saw (source.push), with the commit before each in
-- its push: the dashboard walks these links from a waiting version back to the running one to
-- show an approver what the promotion brings. `parent` is '' when unknown (the first commit of
-- a push whose list ingest had to cut, or of a new branch).
CREATE TABLE source_commits (
    repository   TEXT        NOT NULL,
    sha          TEXT        NOT NULL,
    parent       TEXT        NOT NULL DEFAULT '',
    message      TEXT        NOT NULL,
    author       TEXT        NOT NULL,
    committed_at TIMESTAMPTZ,
    PRIMARY KEY (repository, sha)
);

-- The version history of a stage, newest first (the app page).
CREATE INDEX promotions_history ON promotions (app, stage, committed_at DESC) WHERE committed_at IS NOT NULL;
