-- refreshd fleet store, schema version 2: `refreshd rotate` on a follower asks the holder
-- through the credential's row.

ALTER TABLE refreshd_credentials
    ADD COLUMN rotate_asked_at timestamptz,
    ADD COLUMN rotate_asked_by text;
