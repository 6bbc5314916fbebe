-- FHIR R4 search (issue 4): the Observation elements that search parameters compare, as columns,
-- a read-by-id index, and the devices each subject has used.

-- Generated from the stored resource, so every writer (bulk insert, versioned upsert, the group-
-- commit writer) fills them without knowing they exist, and they can never disagree with the
-- resource served. Adding a STORED generated column rewrites each partition once, here.
-- `_lastUpdated` needs no column: meta.lastUpdated and `issued` are both the gateway's receive time
-- (gateway/fhir/observation.py), so searches and sorts use `issued`.
ALTER TABLE observations
    ADD COLUMN status text GENERATED ALWAYS AS (resource ->> 'status') STORED,
    ADD COLUMN category text GENERATED ALWAYS AS (resource #>> '{category,0,coding,0,code}') STORED,
    ADD COLUMN value numeric GENERATED ALWAYS AS ((resource #>> '{valueQuantity,value}')::numeric) STORED,
    ADD COLUMN unit text GENERATED ALWAYS AS (resource #>> '{valueQuantity,code}') STORED,
    -- The upper bound of effective[x] as a range: effectivePeriod.end, or the instant itself.
    ADD COLUMN effective_last timestamptz GENERATED ALWAYS AS (coalesce(effective_end, effective_start)) STORED;

-- GET /fhir/Observation/{id}: the primary key leads with the subject, which a read does not know.
CREATE INDEX observations_id ON observations (id);
-- _sort=_lastUpdated and _lastUpdated searches within a subject.
CREATE INDEX observations_subject_issued ON observations (subject, issued DESC);

-- Devices per subject, for Device read/search. The pseudonym is keyed on (vendor, device id), so
-- one device shared by two subjects has two rows; the key leads with the subject (ARCHITECTURE §7).
-- Model and manufacturer are the first ones reported (not identifiers: no serial number is kept).
CREATE TABLE devices (
    subject      text NOT NULL REFERENCES subjects (pseudonym) ON DELETE CASCADE,
    pseudonym    text NOT NULL,
    model        text,
    manufacturer text,
    first_seen   timestamptz NOT NULL,
    PRIMARY KEY (subject, pseudonym)
);
CREATE INDEX devices_pseudonym ON devices (pseudonym);

-- Devices of readings stored before this migration (their model and manufacturer were not kept).
INSERT INTO devices (subject, pseudonym, first_seen)
SELECT o.subject, o.device, min(o.issued)
FROM observations o JOIN subjects s ON s.pseudonym = o.subject
GROUP BY o.subject, o.device
ON CONFLICT DO NOTHING;
