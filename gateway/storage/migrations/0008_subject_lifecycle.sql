-- Subject lifecycle (issue 6): consent history, erasure, and per-subject data keys kept apart
-- from the identity records they unlock.

-- The wrapped per-subject data keys move out of `subjects` into a table of their own. A copy of
-- the identity table (`subjects`: pseudonym, site, consent, identity ciphertext) then holds no
-- key at all, and erasure deletes the subject's row here: the identity ciphertext in any older
-- copy of `subjects` can no longer be decrypted, with or without the zone key (crypto-shredding,
-- NIST SP 800-88 Rev. 1 §2.6 "cryptographic erase"). A backup of THIS table taken before the
-- erasure still unwraps with the zone key until that KEK version is retired (see README,
-- "Erasure"); key rotation re-wraps rows here (`kek_version` says which KEK wrapped each one).
CREATE TABLE subject_keys (
    subject     text PRIMARY KEY REFERENCES subjects (pseudonym) ON DELETE CASCADE,
    kek_version integer NOT NULL,
    wrapped_key bytea NOT NULL
);
-- Rotation finds the keys still wrapped under a KEK version it is retiring.
CREATE INDEX subject_keys_kek_version ON subject_keys (kek_version);

INSERT INTO subject_keys (subject, kek_version, wrapped_key)
SELECT pseudonym, kek_version, wrapped_key FROM subjects;

-- pg_dump and base backups taken from here on have no key column in `subjects`. (Dropping a
-- column only hides it: its bytes stay in existing heap pages until the rows are rewritten, e.g.
-- by VACUUM FULL, which cannot run inside this migration's transaction.)
ALTER TABLE subjects DROP COLUMN kek_version, DROP COLUMN wrapped_key;

-- Set by the first step of an erasure; a subject with a value here is being erased: it no longer
-- resolves for readings, its consent can no longer change, and re-running the erasure finishes it.
ALTER TABLE subjects ADD COLUMN erasure_started_at timestamptz;

-- Every consent change, with who made it and when (the state after the change). Erasure removes
-- the subject's history with it; the audit log keeps the record that a change happened.
CREATE TABLE consent_changes (
    subject      text NOT NULL REFERENCES subjects (pseudonym) ON DELETE CASCADE,
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    research     boolean NOT NULL,
    cross_border boolean NOT NULL,
    actor        text NOT NULL,
    PRIMARY KEY (subject, seq)
);

-- A repeated erasure finds the earlier one by pseudonym once the subject row is gone.
CREATE INDEX audit_events_erase_subject ON audit_events (subject, seq) WHERE action = 'erase';
