-- Media quarantine (admin API, src/admin/media.rs): quarantined media is no longer served, to
-- our clients nor over federation, until an admin lifts it; `safe_from_quarantine` media
-- cannot be quarantined. Remote media cached here is quarantined in its cached row.
ALTER TABLE media ADD COLUMN quarantined_by TEXT;   -- the admin who quarantined it
ALTER TABLE media ADD COLUMN safe_from_quarantine INTEGER NOT NULL DEFAULT 0;
