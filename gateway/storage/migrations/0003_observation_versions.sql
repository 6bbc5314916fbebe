-- Versioned vendor records (issue 3). Health Connect revises a record under one
-- `metadata.clientRecordId` with a rising `clientRecordVersion`; the stored Observation is the
-- highest version seen, and every version it replaced is kept here as history.

-- NULL: an unversioned reading (first one stored wins, `ON CONFLICT DO NOTHING`). Adding a
-- nullable column without a default only changes the catalogue: no partition is rewritten.
ALTER TABLE observations ADD COLUMN version bigint;

-- Superseded (and late-arriving older) versions of versioned Observations. The primary key leads
-- with the subject (Citus distribution column, ARCHITECTURE §7); erasing the subject removes its
-- history with it.
CREATE TABLE observation_versions (
    subject         text NOT NULL REFERENCES subjects (pseudonym) ON DELETE CASCADE,
    id              text NOT NULL,
    version         bigint NOT NULL,
    resource        jsonb NOT NULL,
    effective_start timestamptz NOT NULL,
    superseded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, id, version)
);
