-- OAuth 2.0 served by the Worker (src/oauth/). Tokens it issues are ordinary rows of
-- access_tokens and refresh_tokens, so they work wherever access tokens do; these tables hold
-- what OAuth adds around them. Secrets (codes, device codes, browser sessions) are stored as
-- SHA-256 hex digests, like tokens.

-- Clients registered dynamically (RFC 7591 with the Matrix rules): the validated metadata.
CREATE TABLE oauth_clients (
  client_id TEXT PRIMARY KEY,
  metadata TEXT NOT NULL,                  -- JSON, as validated and answered at registration
  created_ts INTEGER NOT NULL
);

-- One authorization request from /authorize until its code is exchanged (or it expires).
CREATE TABLE oauth_authorizations (
  id TEXT PRIMARY KEY,                     -- opaque, carried by the login and consent pages
  client_id TEXT NOT NULL,
  redirect_uri TEXT NOT NULL,
  response_mode TEXT NOT NULL,             -- query | fragment
  state TEXT,
  scope TEXT NOT NULL,
  device_id TEXT NOT NULL,
  code_challenge TEXT NOT NULL,            -- PKCE S256
  created_ts INTEGER NOT NULL,
  expires_ts INTEGER NOT NULL,             -- the request itself (login and consent must end by then)
  user_id TEXT,                            -- set when the user consents
  code_hash TEXT UNIQUE,                   -- set when the user consents
  code_expires_ts INTEGER,
  used INTEGER NOT NULL DEFAULT 0          -- 1 once exchanged: a second exchange revokes the session
);

-- Which client a device's tokens were issued to, and for what scope: refresh and revocation
-- check the client, and the UIA m.oauth stage applies to these devices.
CREATE TABLE oauth_sessions (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  client_id TEXT NOT NULL,
  scope TEXT NOT NULL,
  created_ts INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id)
);

-- The browser's session with the server's own pages: one cookie, the CSRF token of its forms,
-- and the user once logged in.
CREATE TABLE oauth_browser_sessions (
  session_hash TEXT PRIMARY KEY,
  csrf TEXT NOT NULL,
  user_id TEXT,
  created_ts INTEGER NOT NULL,
  expires_ts INTEGER NOT NULL
);
CREATE INDEX oauth_browser_sessions_by_expiry ON oauth_browser_sessions (expires_ts);

-- Device authorization grants (RFC 8628): the device polls with its device code while the user
-- approves the user code in a browser.
CREATE TABLE oauth_device_grants (
  device_code_hash TEXT PRIMARY KEY,
  user_code TEXT NOT NULL UNIQUE,
  client_id TEXT NOT NULL,
  scope TEXT NOT NULL,
  device_id TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',  -- pending | approved | denied
  user_id TEXT,
  created_ts INTEGER NOT NULL,
  expires_ts INTEGER NOT NULL,
  last_poll_ts INTEGER NOT NULL DEFAULT 0
);

-- The user approved, on the account page, replacing their cross-signing keys until this time:
-- the UIA stage m.oauth passes meanwhile.
CREATE TABLE oauth_cross_signing_resets (
  user_id TEXT PRIMARY KEY,
  allowed_until_ts INTEGER NOT NULL
);
