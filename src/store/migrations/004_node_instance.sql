-- refreshd fleet store, schema version 4: one daemon per node name. Each `refreshd run`
-- registers an instance (a random id, its host and pid) in its node's row; another process
-- claiming the name of a node whose heartbeat is fresh is refused, naming that host and pid,
-- and a daemon whose row another instance took stops acting for the node.

ALTER TABLE refreshd_nodes
    ADD COLUMN instance text,
    ADD COLUMN host text,
    ADD COLUMN pid integer;
