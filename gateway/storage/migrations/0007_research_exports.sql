-- Research extracts (issue 5): studies, FHIR Bulk Data export jobs and their output files.
--
-- Output files are kept as bytea chunks in the zone's own database, not as files on a disk:
-- the de-identified extract stays inside the zone until the researcher downloads it, is backed up
-- and access-controlled with the rest of the zone, is deleted with its job (ON DELETE CASCADE),
-- and no file path is ever built from a request (no traversal surface).

-- A study is a FHIR Group: its members are the zone's subjects with research consent at export
-- time (and cross-border consent when the recipient is outside the zone's jurisdiction).
CREATE TABLE studies (
    id                  text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9.-]{1,64}$'),
    zone                text NOT NULL,
    title               text NOT NULL,
    ethics_ref          text NOT NULL,
    recipient_org       text NOT NULL,
    recipient_country   text NOT NULL CHECK (recipient_country ~ '^[A-Z]{2}$'),
    measures            text[] NOT NULL CHECK (cardinality(measures) > 0),
    shift_days          integer NOT NULL CHECK (shift_days > 0),
    keep_weekday        boolean NOT NULL,
    resolution          text NOT NULL CHECK (resolution IN ('second', 'minute', 'hour', 'day')),
    k                   integer NOT NULL CHECK (k > 0),
    expires_on          date NOT NULL,
    -- The legal transfer mechanism, when the recipient is outside the zone (PIPL art. 38 for cn:
    -- standard-contract, certification, security-assessment; GDPR art. 46(2)(c) for eu: an SCC
    -- module, with its transfer impact assessment).
    transfer_kind       text,
    transfer_reference  text,
    transfer_tia        text,
    transfer_expires_on date,
    researcher_clients  text[] NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- One FHIR Bulk Data export (kick-off -> status -> files). `state` moves queued -> running ->
-- done | failed, or to cancelled; a running job holds a lease that its worker renews, so a job
-- whose process died is claimed again once the lease has run out (FOR UPDATE SKIP LOCKED).
CREATE TABLE export_jobs (
    id               text PRIMARY KEY,
    study            text NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    client           text NOT NULL,
    state            text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    request          jsonb NOT NULL,
    transaction_time timestamptz NOT NULL,
    progress         text NOT NULL DEFAULT '',
    manifest         jsonb,
    error            text,
    lease_until      timestamptz,
    last_polled_at   timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL
);
CREATE INDEX export_jobs_claim ON export_jobs (created_at) WHERE state IN ('queued', 'running');
CREATE INDEX export_jobs_expires_at ON export_jobs (expires_at);

CREATE TABLE export_files (
    job    text NOT NULL REFERENCES export_jobs (id) ON DELETE CASCADE,
    name   text NOT NULL,
    type   text NOT NULL,
    sha256 text NOT NULL,
    count  bigint NOT NULL,
    bytes  bigint NOT NULL,
    PRIMARY KEY (job, name)
);

CREATE TABLE export_file_chunks (
    job     text NOT NULL REFERENCES export_jobs (id) ON DELETE CASCADE,
    name    text NOT NULL,
    seq     integer NOT NULL,
    content bytea NOT NULL,
    PRIMARY KEY (job, name, seq)
);
