-- Resolved server names (server-server spec, "Resolving server names"), shared by all isolates.
-- Only names that needed a lookup (well-known, SRV) are stored; IP literals and names with a
-- port resolve from the name alone.
CREATE TABLE server_discovery (
    server_name  TEXT PRIMARY KEY,
    destination  TEXT,                        -- JSON Destination; NULL when resolution failed
    error        TEXT,                        -- JSON DiscoveryError when it failed, else NULL
    failures     INTEGER NOT NULL DEFAULT 0,  -- consecutive failures, for exponential back-off
    expires_ts   INTEGER NOT NULL             -- ms since the epoch; re-resolve after this
);
