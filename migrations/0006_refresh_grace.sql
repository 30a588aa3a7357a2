-- Spec: after /refresh, the old refresh token stays valid until the new access or refresh token is
-- first used. The new tokens remember which refresh token their first use revokes.
ALTER TABLE access_tokens ADD COLUMN revokes_refresh TEXT;
ALTER TABLE refresh_tokens ADD COLUMN revokes_refresh TEXT;
