-- A re-price pages through the primary key (ids are time-ordered, so the oldest quotes come
-- first) instead of an index of its own. `quotes_scored_by_validity` cost every scoring write
-- one more index entry per scored quote (a scored row can never be a HOT update: its status
-- is in the partial indexes' predicates), about a sixth of the write's WAL, for an operator's
-- occasional pass, which now reads expired quotes too and skips them.
DROP INDEX quotes_scored_by_validity;
