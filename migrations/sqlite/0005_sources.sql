-- Where documents come from. A document remembers its source key (a file's path or a page's
-- URL), and a newer version under the same key replaces the older one once it is indexed, so a
-- changed file never sits next to its stale copy.
CREATE TABLE sources (
    id               TEXT PRIMARY KEY,
    space_id         TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('folder', 'url', 'site')),
    location         TEXT NOT NULL,
    interval_minutes INTEGER,
    watch            INTEGER NOT NULL DEFAULT 0,
    max_pages        INTEGER NOT NULL DEFAULT 100,
    status           TEXT NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'syncing')),
    phase            TEXT,
    progress         REAL NOT NULL DEFAULT 0,
    lease_expires_at TEXT,
    last_sync_at     TEXT,
    last_result      TEXT,
    last_error       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0,
    next_sync_at     TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (space_id, kind, location)
);

ALTER TABLE documents ADD COLUMN source_id TEXT REFERENCES sources(id) ON DELETE SET NULL;
ALTER TABLE documents ADD COLUMN source_key TEXT;
ALTER TABLE documents ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE documents ADD COLUMN source_stamp TEXT;
UPDATE documents SET source_key = filename;
CREATE INDEX documents_space_key ON documents(space_id, source_key, version);
CREATE INDEX documents_source ON documents(source_id);
