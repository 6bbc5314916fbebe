-- The zone's append-only audit log (issue 6): enrolment, consent, access, export, erasure and key
-- events, one row each, chained by keyed MACs (gateway/privacy/audit_chain.py):
--     mac = HMAC-SHA256(audit key `key_version`, prev_mac || canonical(event))
-- `detail` holds ids, codes, counts and query shapes only: never identifiers or measured values.
-- Rows are appended by gateway/storage/audit.py under a transaction-scoped advisory lock, which
-- gives consecutive `seq` values and one chain without forks; `prev_mac` being unique is the
-- database's own guard against a fork (two records following the same one).
CREATE TABLE audit_events (
    seq         bigint PRIMARY KEY CHECK (seq > 0),
    recorded_at timestamptz NOT NULL,
    action      text NOT NULL,
    actor       text NOT NULL,
    subject     text NULL,
    outcome     text NOT NULL,
    detail      jsonb NOT NULL,
    key_version integer NOT NULL CHECK (key_version > 0),
    prev_mac    bytea NOT NULL CHECK (octet_length(prev_mac) = 32),
    mac         bytea NOT NULL CHECK (octet_length(mac) = 32),
    CONSTRAINT audit_events_one_successor UNIQUE (prev_mac)
);

-- Append-only in the database as well: UPDATE, DELETE and TRUNCATE are refused for every session
-- in which triggers fire. A statement-level trigger also fires when no row matches, so even an
-- attempt fails loudly.
--
-- Who can still remove rows: the table's owner or a superuser, by `ALTER TABLE audit_events
-- DISABLE TRIGGER audit_events_append_only` (or a superuser with `SET session_replication_role =
-- replica`), and anyone with access to the database files. That is exactly the tampering
-- `wearable-gateway audit verify` detects: the keyed chain breaks at the first changed, deleted
-- or moved record. Run the gateway as a role that does not own the tables to keep even that out
-- of the application's reach.
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
