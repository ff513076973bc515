-- A scored quote's price range and how long its price holds.
--
-- `premium_low` and `premium_high` are the model's 10th and 90th percentile premiums, unrounded
-- like `premium` (the API rounds all three to cents when it answers). `valid_until` is when the
-- price stops being an offer: scoring time plus the validity `score` is configured with.
--
-- Nullable, and not required of a scored row: the code of the deploy before this one (running
-- again after a rollback) scores quotes without them. Quotes scored before this migration have
-- no range (the model's features are not stored to recompute it) and get the default validity.
ALTER TABLE quotes
    ADD COLUMN premium_low  double precision,
    ADD COLUMN premium_high double precision,
    ADD COLUMN valid_until  timestamptz;

UPDATE quotes SET valid_until = scored_at + interval '30 days' WHERE scored_at IS NOT NULL;

-- Both ends or neither, finite (Postgres orders NaN above 'Infinity'), around the median; a
-- validity only with a score, and after it.
ALTER TABLE quotes
    ADD CONSTRAINT quotes_price_range CHECK (
        (premium_low IS NULL) = (premium_high IS NULL)
        AND (premium_low IS NULL
             OR (premium IS NOT NULL AND 0 <= premium_low AND premium_low <= premium
                 AND premium <= premium_high AND premium_high < 'Infinity'))),
    ADD CONSTRAINT quotes_validity CHECK (
        valid_until IS NULL OR (scored_at IS NOT NULL AND valid_until > scored_at));
