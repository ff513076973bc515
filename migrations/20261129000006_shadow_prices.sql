-- Shadow prices: what a second model, evaluated by `score` beside the live one, would have
-- priced the quotes the live one scored. They judge a candidate model on live traffic before
-- it goes live, and are never a quote's price: no route reads this table, and nothing here
-- touches `quotes`.
--
-- A model version prices a quote once (hence the key): a message delivered again writes
-- nothing twice. No foreign key to `quotes`: a check per row on the scoring path, for rows
-- that are only ever written for a quote that was just read.
CREATE TABLE quote_shadow_prices (
    quote_id      uuid             NOT NULL,
    model_version text             NOT NULL,
    -- `score` refuses a premium at or below 0 or not finite before writing one here, as it
    -- does for live prices.
    premium       double precision NOT NULL CHECK (premium > 0 AND premium < 'Infinity'),
    premium_low   double precision NOT NULL,
    premium_high  double precision NOT NULL,
    confidence    double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    priced_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (quote_id, model_version),
    CHECK (0 <= premium_low AND premium_low <= premium AND premium <= premium_high
           AND premium_high < 'Infinity')
);

-- reconcile's sweep deletes the oldest first, past the retention: through this index, a run
-- reads only what it deletes.
CREATE INDEX quote_shadow_prices_by_age ON quote_shadow_prices (priced_at);

-- score writes, reconcile purges, an operator's query reads (as the owner or this role).
GRANT SELECT, INSERT, DELETE ON quote_shadow_prices TO quote_app;
