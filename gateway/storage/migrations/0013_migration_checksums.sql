-- Issue 12: each applied migration records the SHA-256 of its file's bytes, so that a gateway
-- whose migration files differ from those that built the database (an applied file edited, or
-- removed) refuses it at start-up and at `migrate` (gateway/storage/schema.py).
-- SQL cannot read the files: the runner fills the column for 0001..0013 in this migration's own
-- transaction, right after this statement, and for each later migration when it records it.
ALTER TABLE schema_migrations
    ADD COLUMN checksum bytea CHECK (octet_length(checksum) = 32);
