-- SMART Backend Services (HL7 SMART App Launch 2.x, backend-services): the clinics' and research
-- teams' client applications of this zone, the assertion ids they have used, and the access
-- tokens issued to them. Nothing here identifies a subject.

-- A client authenticates with a JWT signed by a key of `jwks` (public keys only, RFC 7517) and may
-- be granted at most `scopes`. `zone` repeats the zone of the database (and of the client id) so
-- that a row copied to the wrong database is recognisable as such.
CREATE TABLE smart_clients (
    client_id  text PRIMARY KEY,
    zone       text NOT NULL,
    site       text NOT NULL,
    role       text NOT NULL CHECK (role IN ('clinic', 'researcher')),
    jwks       jsonb NOT NULL,
    scopes     text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Assertion ids (`jti`) seen, kept until the assertion's own `exp`: SMART requires a reused jti
-- to be refused while the assertion could still be valid. The primary key makes the refusal
-- atomic (`INSERT … ON CONFLICT`), also between gateway processes.
CREATE TABLE used_jtis (
    client_id  text NOT NULL REFERENCES smart_clients (client_id) ON DELETE CASCADE,
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX used_jtis_expires_at ON used_jtis (expires_at);

-- Opaque access tokens: only SHA-256 of the token is kept, so a copy of this table authorises
-- nothing. Rows past `expires_at` are refused and purged when new tokens are issued.
CREATE TABLE access_tokens (
    token_hash bytea PRIMARY KEY,
    client_id  text NOT NULL REFERENCES smart_clients (client_id) ON DELETE CASCADE,
    scopes     text[] NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);
