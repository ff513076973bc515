-- A batch's counts are kept by the writes that end its quotes, and the write that ends its
-- last quote completes it, in the same statement.
--
-- Before, completion was a statement of its own after every scoring write, probing whether a
-- batch still had a quote pending: one more round trip and a probe per batch on every
-- scoring pass, and a crash between the two
-- left a batch finished but never marked, which reconcile had to find. Now each write that
-- ends quotes (score's, reconcile's giving up) adds them to their batch's `scored` and
-- `failed` in the same statement, and the one that brings them to the batch's size sets
-- `completed_at`: the row lock serializes concurrent writers of one batch (held until their
-- commit, one round trip), each adds to the newest counts, so exactly one completes it. A
-- requeue of failed quotes takes them back out of `failed` and reopens the batch. Counts a
-- write did not keep (the deploy before this one, still running during a deploy, or a change
-- by hand) are the one way a batch can end uncompleted: reconcile still completes, counting
-- its quotes, an open batch with none pending (`quote_batches_open`).
ALTER TABLE quote_batches
    DROP CONSTRAINT quote_batches_check,
    DROP CONSTRAINT quote_batches_check1;

UPDATE quote_batches b SET
    scored = (SELECT count(*) FROM quotes q WHERE q.batch_id = b.id AND q.status = 'scored'),
    failed = (SELECT count(*) FROM quotes q WHERE q.batch_id = b.id AND q.status = 'failed')
WHERE completed_at IS NULL;
-- A batch ended but never marked (its writer stopped before the completion): completed now,
-- its event due at reconcile's next run.
UPDATE quote_batches SET completed_at = now(), event_attempted_at = '-infinity'
WHERE completed_at IS NULL AND scored + failed = size;

ALTER TABLE quote_batches
    ALTER COLUMN scored SET DEFAULT 0,
    ALTER COLUMN scored SET NOT NULL,
    ALTER COLUMN failed SET DEFAULT 0,
    ALTER COLUMN failed SET NOT NULL,
    -- The counts never pass the size, and a batch is completed exactly when they reach it:
    -- a write that changed a status without its counts would fail here, not drift.
    ADD CONSTRAINT quote_batches_counts_within_size CHECK (scored + failed <= size),
    ADD CONSTRAINT quote_batches_completed_when_counted
        CHECK ((completed_at IS NOT NULL) = (scored + failed = size));

-- No query reads it (a re-price pages by validity; reads go by owner or batch), yet every
-- scoring write paid an entry in it.
DROP INDEX quotes_by_scored_at;
