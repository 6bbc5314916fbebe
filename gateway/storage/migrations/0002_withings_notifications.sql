-- Withings data-update notifications waiting to be fetched (Withings Data API, "Notify"): each
-- row says "this subject has new data of category `appli` between `start_time` and `end_time`".
-- Only the subject's pseudonym is kept, never the Withings userid or device id. The primary key
-- starts with the subject (Citus distribution column, ARCHITECTURE §7); the foreign key stays
-- within one subject, and erasing the subject removes its notifications.
CREATE TABLE withings_notifications (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    subject     text NOT NULL REFERENCES subjects (pseudonym) ON DELETE CASCADE,
    appli       integer NOT NULL,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'fetched', 'failed')),
    PRIMARY KEY (subject, id),
    CHECK (start_time <= end_time),
    -- Withings retries a notification until it gets a 2xx, and may send the same one twice: the
    -- same (subject, category, window) is one pending fetch (`ON CONFLICT DO NOTHING`).
    CONSTRAINT withings_notifications_once UNIQUE (subject, appli, start_time, end_time)
);

-- The fetcher's queue: oldest pending first.
CREATE INDEX withings_notifications_pending ON withings_notifications (received_at)
    WHERE status = 'pending';
