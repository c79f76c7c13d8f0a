-- refreshd fleet store, schema version 1: shared credentials and the nodes that share them.
-- Applied by refreshd itself (under an advisory lock); never edit a released migration.

CREATE TABLE refreshd_credentials (
    name        text PRIMARY KEY,
    -- Bumped by every commit of a new state (a refresh or a login).
    generation  bigint NOT NULL DEFAULT 0,
    -- The credential's state (token, refresh token), AES-256-GCM sealed with the store key,
    -- bound to name and generation. NULL until a first commit.
    sealed      bytea,
    -- When the sealed token expires, in the clear for operators' queries.
    expires_at  timestamptz,
    -- The node that may refresh, and until when unless it renews.
    holder      text,
    lease_until timestamptz,
    last_error  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text
);

CREATE TABLE refreshd_nodes (
    name       text PRIMARY KEY,
    version    text NOT NULL,
    started_at timestamptz NOT NULL,
    heartbeat  timestamptz NOT NULL
);

-- What every node checks its key against before it reads or writes a credential.
CREATE TABLE refreshd_meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);
