-- The gateway may run as a role that does not own the tables (deploy/: a migration role owns
-- them; the gateway role only has the grants of `wearable-gateway migrate --grant-to`), so that
-- the application cannot ALTER TABLE audit_events DISABLE TRIGGER (0005). PostgreSQL lets only
-- the parent's owner create a partition, so the monthly observation partitions are created
-- through this function, which runs with its owner's rights (SECURITY DEFINER) and does one thing:
-- create the partition of the UTC month that starts at `month`, if it is missing.
-- https://www.postgresql.org/docs/current/sql-createfunction.html#SQL-CREATEFUNCTION-SECURITY
CREATE FUNCTION observations_ensure_partition(month timestamptz) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    start timestamptz := date_trunc('month', month AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
BEGIN
    IF month <> start THEN
        RAISE EXCEPTION 'observations_ensure_partition: % is not the start of a UTC month', month;
    END IF;
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF observations FOR VALUES FROM (%L) TO (%L)',
        'observations_y' || to_char(start AT TIME ZONE 'UTC', 'YYYY') || 'm'
            || to_char(start AT TIME ZONE 'UTC', 'MM'),
        start,
        start + interval '1 month'
    );
END;
$$;

-- Only roles granted it by `migrate --grant-to` (and the owner) may call it.
REVOKE ALL ON FUNCTION observations_ensure_partition(timestamptz) FROM PUBLIC;
