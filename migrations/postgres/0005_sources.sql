-- Where documents come from. A document remembers its source key (a file's path or a page's
-- URL), and a newer version under the same key replaces the older one once it is indexed, so a
-- changed file never sits next to its stale copy.
CREATE TABLE sources (
    id               UUID PRIMARY KEY,
    space_id         UUID NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('folder', 'url', 'site')),
    location         TEXT NOT NULL,
    interval_minutes INTEGER,
    watch            BOOLEAN NOT NULL DEFAULT false,
    max_pages        INTEGER NOT NULL DEFAULT 100,
    status           TEXT NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'syncing')),
    phase            TEXT,
    progress         DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_expires_at TIMESTAMPTZ,
    last_sync_at     TIMESTAMPTZ,
    last_result      TEXT,
    last_error       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0,
    next_sync_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (space_id, kind, location)
);

ALTER TABLE documents ADD COLUMN source_id UUID REFERENCES sources(id) ON DELETE SET NULL;
ALTER TABLE documents ADD COLUMN source_key TEXT;
ALTER TABLE documents ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE documents ADD COLUMN source_stamp TEXT;
UPDATE documents SET source_key = filename;
CREATE INDEX documents_space_key ON documents(space_id, source_key, version);
CREATE INDEX documents_source ON documents(source_id);
