-- Evidence is kept once per log, kind, source (the upstream or bundle that
-- gave the bytes) and object (what was wrong: "signed tree head",
-- "tile/8/0/003", ...), with how often and when last it was seen, so that
-- an upstream that keeps lying cannot grow the table without bound. Rows
-- from before (object '') stay as they were.
ALTER TABLE evidence
    ADD COLUMN source    text        NOT NULL DEFAULT '',
    ADD COLUMN object    text        NOT NULL DEFAULT '',
    ADD COLUMN count     bigint      NOT NULL DEFAULT 1,
    ADD COLUMN last_seen timestamptz NOT NULL DEFAULT now();
UPDATE evidence SET last_seen = created_at;
CREATE UNIQUE INDEX evidence_once ON evidence (log_id, kind, source, object) WHERE object <> '';
