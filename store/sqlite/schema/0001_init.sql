-- sumkeep schema for the embedded SQLite store, version 1.
--
-- The same logical content as the Postgres schema. Integers are 64-bit;
-- times are Unix microseconds (UTC). Tables are STRICT so that a value of
-- the wrong type is refused rather than kept.

CREATE TABLE logs (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    -- full-sync cursor: records [0, synced) are stored
    synced     INTEGER NOT NULL DEFAULT 0,
    -- size of the served head (0: none yet); every tile and record below it is stored
    served     INTEGER NOT NULL DEFAULT 0,
    -- highest record id stored (-1: none); a batch above it needs no check
    -- for ids stored already
    max_id     INTEGER NOT NULL DEFAULT -1,
    -- counts the commits that stored records or moved the served head
    -- (store.Batch.Expect)
    generation INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Every verified signed head, never deleted.
CREATE TABLE heads (
    log_id     INTEGER NOT NULL REFERENCES logs (id),
    size       INTEGER NOT NULL,
    hash       BLOB    NOT NULL,
    note       BLOB    NOT NULL,
    first_seen INTEGER NOT NULL, -- Unix microseconds
    PRIMARY KEY (log_id, size)
) STRICT, WITHOUT ROWID;

-- Hash tiles of height 8 at the widest width seen (prefix-stable). A full
-- tile is 8 KiB: such rows belong in a rowid table (a WITHOUT ROWID table
-- keeps less of a large row in its b-tree page and overflows sooner).
CREATE TABLE tiles (
    log_id INTEGER NOT NULL,
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    width  INTEGER NOT NULL,
    hashes BLOB    NOT NULL,
    UNIQUE (log_id, level, idx)
) STRICT;

-- Records, clustered by (log_id, id): sync appends in id order, and data
-- tiles read id ranges. A canonical record (two go.sum lines) is kept as
-- path, version and the 64 hash bytes and rebuilt exactly on read; any other
-- record is kept in raw. key is store.LookupKey(path, version): indexing the
-- 8-byte key instead of (path, version) keeps the lookup index at a third of
-- the size, and inserts into it faster once it outgrows the cache; it is not
-- unique, so lookups compare path and version too, and Commit looks for
-- duplicate module@versions itself. The index
-- holds the primary key after its own columns, (log_id, key, id), so a
-- lookup below a tree size is one index search.
CREATE TABLE records (
    log_id  INTEGER NOT NULL,
    id      INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    path    TEXT    NOT NULL,
    version TEXT    NOT NULL,
    hashes  BLOB,
    raw     BLOB,
    PRIMARY KEY (log_id, id),
    CHECK ((hashes IS NULL) <> (raw IS NULL))
) STRICT, WITHOUT ROWID;
CREATE INDEX records_key ON records (log_id, key);

-- Evidence of upstream misbehaviour, kept forever.
CREATE TABLE evidence (
    id         INTEGER PRIMARY KEY,
    log_id     INTEGER NOT NULL REFERENCES logs (id),
    kind       TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    note_a     BLOB,
    note_b     BLOB,
    data       BLOB,
    created_at INTEGER NOT NULL -- Unix microseconds
) STRICT;
CREATE INDEX evidence_log ON evidence (log_id, id);
