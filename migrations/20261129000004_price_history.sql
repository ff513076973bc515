-- Price history: every price a quote had, so a re-price with a new model never loses one.
--
-- A quote's current price stays in its own columns (`quotes.premium` .. `valid_until`, its
-- `scored_at` the time it was priced); `quote_prices` keeps the prices a re-price superseded,
-- each moved here in the same statement that writes its successor. So scoring a pending
-- quote writes nothing more than before, no existing row needs copying (a backfill of a
-- large table inside the deploy's migration), and the code of the deploy before this one
-- (running again after a rollback) keeps the history whole: it never supersedes a price.
--
-- A model version prices a quote at most once: a re-price skips a quote whose current price
-- or a superseded one has the version (hence the key), so repeating it changes nothing.
-- Append-only for the application: no UPDATE or DELETE is granted.
CREATE TABLE quote_prices (
    quote_id      uuid             NOT NULL,
    model_version text             NOT NULL,
    -- The same constraints as the quote's own columns, so any price a quote holds can move.
    premium       double precision NOT NULL CHECK (premium >= 0),
    -- Both or neither: prices from before ranges were kept have none.
    premium_low   double precision,
    premium_high  double precision,
    confidence    double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    -- When the price was given (the quote's `scored_at` then) and until when it held.
    priced_at     timestamptz      NOT NULL,
    valid_until   timestamptz,
    -- When a re-price replaced it.
    superseded_at timestamptz      NOT NULL,
    PRIMARY KEY (quote_id, model_version),
    CHECK ((premium_low IS NULL) = (premium_high IS NULL)
           AND (premium_low IS NULL
                OR (0 <= premium_low AND premium_low <= premium AND premium <= premium_high
                    AND premium_high < 'Infinity'))),
    CHECK (valid_until IS NULL OR valid_until > priced_at),
    CHECK (superseded_at >= priced_at)
);

-- Still-valid scored quotes in the order a re-price request pages through them: from the
-- soonest to expire, so each page starts where the last ended and skips expired quotes
-- without reading them.
CREATE INDEX quotes_scored_by_validity ON quotes (valid_until, id) WHERE status = 'scored';

GRANT SELECT, INSERT ON quote_prices TO quote_app;
