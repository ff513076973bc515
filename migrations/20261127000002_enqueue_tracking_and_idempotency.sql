-- When a quote was last put on the queue: reconcile re-enqueues a pending quote only once its
-- last enqueue is older than its threshold, so a quote waiting in a long queue is not sent
-- again (and charged an attempt) on every run.
ALTER TABLE quotes ADD COLUMN last_enqueued_at timestamptz;
UPDATE quotes SET last_enqueued_at = created_at;
ALTER TABLE quotes ALTER COLUMN last_enqueued_at SET NOT NULL;

-- The pending quotes by the age of their last enqueue: what reconcile scans.
DROP INDEX quotes_pending_by_age;
CREATE INDEX quotes_pending_by_last_enqueue ON quotes (last_enqueued_at) WHERE status = 'pending_ml';

-- Idempotency keys of write requests, per caller. A key's first request stores its answer in
-- the same transaction as its quotes; a repeat with the same request gets that answer back.
CREATE TABLE idempotency_keys (
    user_id       text        NOT NULL,
    key           text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash  bytea       NOT NULL,
    status_code   smallint    NOT NULL,
    response_body text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
