-- refreshd fleet store, schema version 3: before its token request the holder commits an
-- intent (`refreshing`): it may soon hold an answer the store has not got. While that node's
-- heartbeat is fresh, no other node takes the row's lease, so a database that restarts or
-- stalls while the answer is on its way costs no grant: the holder commits it when the
-- database is back. Cleared by the commit, or when the holder ends its fence without one.

ALTER TABLE refreshd_credentials
    ADD COLUMN refreshing text,
    ADD COLUMN refreshing_since timestamptz;
