-- The content repository (src/media/, docs/design.md "Media"). The bytes live in R2 under
-- media::blob_key / media::thumbnail_key; D1 keeps what describes them.

-- One row per piece of media: our users' uploads (origin = our server name) and remote media
-- cached for our users. An async upload (POST /_matrix/media/v1/create) has a row with
-- size NULL until its bytes arrive, and expires at unused_expires_ts if they never do.
CREATE TABLE media (
  origin TEXT NOT NULL,
  media_id TEXT NOT NULL,
  user_id TEXT,                        -- the uploader (ours only)
  content_type TEXT NOT NULL DEFAULT 'application/octet-stream',
  filename TEXT,
  size INTEGER,                        -- bytes; NULL while an async upload is pending
  created_ts INTEGER NOT NULL,         -- creation, or when remote media was cached (the freeze)
  unused_expires_ts INTEGER,           -- pending async uploads only
  PRIMARY KEY (origin, media_id)
);
-- Quotas, pending-upload limits and a deactivated user's media.
CREATE INDEX media_by_user ON media (user_id, created_ts) WHERE user_id IS NOT NULL;

-- Thumbnails made (or fetched from the origin), so a repeated request costs no image work.
CREATE TABLE media_thumbnails (
  origin TEXT NOT NULL,
  media_id TEXT NOT NULL,
  width INTEGER NOT NULL,              -- the size asked of the spec's list
  height INTEGER NOT NULL,
  method TEXT NOT NULL,                -- crop | scale
  content_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  PRIMARY KEY (origin, media_id, width, height, method)
);

-- URL previews already made, by URL, for an hour.
CREATE TABLE url_previews (
  url TEXT PRIMARY KEY,
  og TEXT NOT NULL,                    -- the answer, JSON
  fetched_ts INTEGER NOT NULL
);
