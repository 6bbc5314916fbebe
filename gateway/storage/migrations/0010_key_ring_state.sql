-- Key rotation across processes (issue 11, item 9). The `keys` CLI rotates by writing the key file
-- and running gateways hold the ring in memory; this is where the two agree.

-- What the zone has published of its key file: the active version of each purpose (raised, never
-- lowered), the kek versions retired, and a generation counter that every change bumps. Gateways
-- reload their ring when the generation moves (NOTIFY wearable_gateway_key_ring, and a periodic
-- check as the fallback). One row: one zone per database.
CREATE TABLE key_ring_state (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation  bigint NOT NULL DEFAULT 0,
    active      jsonb NOT NULL DEFAULT '{}',
    retired_kek integer[] NOT NULL DEFAULT '{}',
    fingerprint text,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO key_ring_state DEFAULT VALUES;

-- Each running gateway process: the ring it holds and the generation it loaded it at, renewed by
-- a heartbeat. A row is live while `expires_at` (the gateway's own lease, on this server's clock)
-- is ahead of now(); `keys retire` ignores expired rows, and a gateway that comes back re-reads
-- its key file and checks it against `key_ring_state` before it serves.
CREATE TABLE gateway_instances (
    instance     text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    seen_at      timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    generation   bigint NOT NULL,
    kek_active   integer NOT NULL,
    kek_versions integer[] NOT NULL,
    fingerprint  text NOT NULL
);

-- The invariant the CLI and every gateway rely on, enforced where they meet: no data key is
-- ever wrapped (enrolment) or re-wrapped under a kek version older than the published active
-- one. A gateway whose ring is behind is refused here (SQLSTATE WGK01), reloads and retries. The
-- lookup runs with a fresh snapshot per row (PL/pgSQL, READ COMMITTED), so it sees a rotation
-- committed while the statement waited for `keys retire`'s lock on subject_keys.
CREATE FUNCTION subject_keys_current_kek() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    published integer;
BEGIN
    SELECT (active ->> 'kek')::integer INTO published FROM key_ring_state;
    IF published IS NOT NULL AND NEW.kek_version < published THEN
        RAISE EXCEPTION 'data key wrapped under kek version % older than the active one %',
            NEW.kek_version, published
            USING ERRCODE = 'WGK01';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER subject_keys_current_kek
    BEFORE INSERT OR UPDATE OF kek_version, wrapped_key ON subject_keys
    FOR EACH ROW EXECUTE FUNCTION subject_keys_current_kek();
