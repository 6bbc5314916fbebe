-- Initial schema of one zone database. Every table lives in exactly one zone: a zone's database
-- holds only its own subjects (ARCHITECTURE §2). Primary and unique keys include the subject
-- pseudonym where the row belongs to a subject, so the schema can move to Citus with the subject as
-- distribution column (ARCHITECTURE §7).

-- Subjects are pseudonymous here. Identity (identifiers, birth date, sex) is one AES-GCM
-- ciphertext under a per-subject data key, itself wrapped by the zone key (`wrapped_key`,
-- `kek_version`): destroying the wrapped key crypto-shreds the identity, backups included.
CREATE TABLE subjects (
    pseudonym            text PRIMARY KEY,
    site                 text NOT NULL,
    research_consent     boolean NOT NULL,
    cross_border_consent boolean NOT NULL,
    enrolled_at          timestamptz NOT NULL DEFAULT now(),
    kek_version          integer NOT NULL,
    wrapped_key          bytea NOT NULL,
    identity             bytea NOT NULL
);

-- Keyed blind index (HMAC of identifier system + value): finds a subject from the identifier a
-- vendor sends without storing the identifier.
CREATE TABLE subject_identifiers (
    blind_index text PRIMARY KEY,
    subject     text NOT NULL REFERENCES subjects (pseudonym) ON DELETE CASCADE
);
CREATE INDEX subject_identifiers_subject ON subject_identifiers (subject);

-- API keys of vendors and clinics of this zone; only a SHA-256 of the secret is kept.
CREATE TABLE credentials (
    key_id      text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('vendor', 'clinic')),
    owner       text NOT NULL,
    secret_hash bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- FHIR Observations, range-partitioned by month of effective time (partitions are created on
-- demand by the writer). `id` is the keyed dedup key, so (subject, id, effective_start) is the
-- idempotency key that `ON CONFLICT DO NOTHING` relies on (ARCHITECTURE §3).
CREATE TABLE observations (
    subject         text NOT NULL,
    id              text NOT NULL,
    code            text NOT NULL,
    device          text NOT NULL,
    effective_start timestamptz NOT NULL,
    effective_end   timestamptz,
    issued          timestamptz NOT NULL,
    source_format   text NOT NULL,
    resource        jsonb NOT NULL,
    PRIMARY KEY (subject, id, effective_start)
) PARTITION BY RANGE (effective_start);

-- The three hot queries (ARCHITECTURE §5).
CREATE INDEX observations_subject_code_time ON observations (subject, code, effective_start DESC);
CREATE INDEX observations_subject_time ON observations (subject, effective_start DESC);
CREATE INDEX observations_code_time ON observations (code, effective_start);

-- Rejected readings, for operators: codes and reasons only, never identifiers or values.
CREATE TABLE dead_letters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    request_id    text NOT NULL,
    vendor        text NOT NULL,
    source_format text NOT NULL,
    item_index    integer NOT NULL,
    code          text NOT NULL,
    reason        text NOT NULL
);
CREATE INDEX dead_letters_received_at ON dead_letters (received_at);
