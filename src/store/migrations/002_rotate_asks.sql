-- refreshd fleet store, schema version 2: `refreshd rotate` on a follower asks the holder
-- through the credential's row; every bootstrap refresh token the store has taken over is
-- remembered by fingerprint, so a host with an older one in its config never hands it over
-- again (spending a spent refresh token revokes the grant).

ALTER TABLE refreshd_credentials
    ADD COLUMN rotate_asked_at timestamptz,
    ADD COLUMN rotate_asked_by text,
    ADD COLUMN bootstraps_seen text[] NOT NULL DEFAULT '{}';
