-- A log's generation counts the commits that stored records or moved the
-- served head. Writers that prove records under the served head commit only
-- if it has not changed meanwhile (store.Batch.Expect).
ALTER TABLE logs ADD COLUMN generation bigint NOT NULL DEFAULT 0;
