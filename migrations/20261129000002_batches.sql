-- Batches: every write (one quote, a generated batch, a CSV import) is one batch, owned by its
-- caller and written in the same transaction as its quotes, so a client can follow the whole
-- write (`GET /quotes/batches/{id}`) and learn that it finished (a `QuoteBatchCompleted` event).
CREATE TABLE quote_batches (
    id                 uuid PRIMARY KEY,
    user_id            text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 256),
    size               integer     NOT NULL CHECK (size >= 1),
    created_at         timestamptz NOT NULL,
    -- Set once, by whoever first finds no quote of the batch pending (score, or reconcile
    -- when it gives up), with the final counts: quotes never leave `scored` or `failed`.
    completed_at       timestamptz,
    scored             integer     CHECK (scored >= 0),
    failed             integer     CHECK (failed >= 0),
    -- The outbox of the completion event: when it was last tried and when it was sent. An
    -- event tried and not sent is tried again by reconcile once the last try is old enough.
    event_attempted_at timestamptz,
    event_sent_at      timestamptz,
    CHECK ((completed_at IS NULL) = (scored IS NULL)),
    CHECK ((completed_at IS NULL) = (failed IS NULL)),
    CHECK (completed_at IS NOT NULL OR event_attempted_at IS NULL),
    CHECK (event_sent_at IS NULL OR event_attempted_at IS NOT NULL)
);

-- Batches not completed yet, by age: reconcile completes those it finds with every quote ended
-- (their last quotes ended by a write whose completion never ran: a crash between the two).
CREATE INDEX quote_batches_open ON quote_batches (created_at) WHERE completed_at IS NULL;

-- Completed batches whose event is not sent yet, by their last try: what reconcile scans.
CREATE INDEX quote_batches_event_unsent ON quote_batches (event_attempted_at)
    WHERE completed_at IS NOT NULL AND event_sent_at IS NULL;

-- Older quotes have no batch; the code before this migration writes none either. No foreign
-- key: the batch is written in the same transaction just before its quotes, and a key would
-- add a lookup per inserted quote to the bulk insert.
ALTER TABLE quotes ADD COLUMN batch_id uuid;

-- A batch's quotes by status. Progress (counts by status), "is any quote still pending?" (the
-- completion check) and a batch's listing all read at most one batch's quotes (1,000) through
-- it. Chosen over a counter row updated wherever a status changes: the scoring and reconcile
-- writes stay the single statements they are, and concurrent `score` invocations of one
-- batch do not queue on one hot row; the cost is counting up to 1,000 index entries on a read.
CREATE INDEX quotes_by_batch_and_status ON quotes (batch_id, status) WHERE batch_id IS NOT NULL;

GRANT SELECT, INSERT, UPDATE ON quote_batches TO quote_app;
