-- Quotes are the source of truth of the pipeline: written once by `generate`, priced once by
-- `score`. Enumerations are checked text, so a new value is a one-line migration.
CREATE TABLE quotes (
    id               uuid PRIMARY KEY,
    user_id          text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 256),
    coverage_type    text        NOT NULL CHECK (coverage_type IN ('life', 'health', 'property')),
    coverage_level   text        NOT NULL CHECK (coverage_level IN ('basic', 'standard', 'premium')),
    estimated_amount bigint      NOT NULL CHECK (estimated_amount BETWEEN 1000 AND 50000000),
    user_age         integer     NOT NULL CHECK (user_age BETWEEN 18 AND 85),
    annual_revenue   bigint      NOT NULL CHECK (annual_revenue BETWEEN 0 AND 100000000000),
    num_employees    integer     NOT NULL CHECK (num_employees BETWEEN 1 AND 1000000),
    founded_at       date        NOT NULL CHECK (founded_at >= DATE '1800-01-01'),
    status           text        NOT NULL DEFAULT 'pending_ml'
                                 CHECK (status IN ('pending_ml', 'scored', 'failed')),
    created_at       timestamptz NOT NULL,
    premium          double precision CHECK (premium >= 0),
    confidence       double precision CHECK (confidence BETWEEN 0 AND 1),
    model_version    text,
    scored_at        timestamptz,
    failure_reason   text,
    enqueue_attempts integer     NOT NULL DEFAULT 0 CHECK (enqueue_attempts >= 0),
    CHECK ((status = 'scored') =
           (premium IS NOT NULL AND confidence IS NOT NULL AND model_version IS NOT NULL
            AND scored_at IS NOT NULL)),
    CHECK ((status = 'failed') = (failure_reason IS NOT NULL))
);

-- The pending quotes, oldest first: what a re-enqueue sweep looks for.
CREATE INDEX quotes_pending_by_age ON quotes (created_at) WHERE status = 'pending_ml';
-- One owner's quotes, newest first: reads and keyset pagination.
CREATE INDEX quotes_by_owner_and_time ON quotes (user_id, created_at DESC, id DESC);
-- Scoring activity over time.
CREATE INDEX quotes_by_scored_at ON quotes (scored_at) WHERE scored_at IS NOT NULL;
