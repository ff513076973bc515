-- Two indexes every scoring write paid for, dropped. A scored row can never be a HOT update
-- (its status is in the partial indexes' predicates), so each index costs every scored quote
-- an entry, about a sixth of the write's WAL each.
--
-- `quotes_scored_by_validity` served only an operator's occasional re-price, which now pages
-- through the primary key (ids are time-ordered: the oldest quotes first) and skips expired
-- quotes as it reads them.
DROP INDEX quotes_scored_by_validity;

-- `quotes_by_batch_and_status` served a batch's listing, its re-price and the overdue
-- recount. A batch's quotes are written by one statement with the batch's owner and creation
-- time, so `quotes_by_owner_and_time` finds them as one range (user_id, created_at), the
-- batch id telling apart another write of the same owner in the same microsecond. Progress
-- reads the batch's own counts; neither needs an index of its own, and the bulk insert enters
-- one index fewer too.
DROP INDEX quotes_by_batch_and_status;
