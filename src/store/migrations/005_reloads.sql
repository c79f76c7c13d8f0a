-- refreshd fleet store, schema version 5: rolling reloads. Each node reports here when it
-- has run its reload actions (and health check) for a committed generation of a credential
-- with `reload_order = "rolling"`; the next node in name order waits for that report.

CREATE TABLE refreshd_reloads (
    credential text NOT NULL,
    generation bigint NOT NULL,
    node text NOT NULL,
    result text NOT NULL CHECK (result IN ('done', 'failed')),
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (credential, generation, node)
);
