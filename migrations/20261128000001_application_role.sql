-- The application role: what generate, score and reconcile connect as (through RDS Proxy on
-- AWS, PgBouncer locally). It reads and writes rows and nothing else: no DDL, no other table.
-- Whoever applies the migrations (the deploy's custom resource, as the instance's owner) owns
-- the schema. A later migration that adds a table the functions use grants it here too.
--
-- Roles belong to the cluster, not to one database: the role may already exist (another
-- database of the same server, or a concurrent migration of one), so creating it is allowed
-- to find it there.
DO $$
BEGIN
    CREATE ROLE quote_app LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

-- A statement stuck on a lock or a sick server fails in time for a clean answer. Set on the
-- role in this database rather than sent by the client: RDS Proxy refuses connections whose
-- startup packet carries `options`, and a session `SET` would pin a proxy connection.
-- `IN DATABASE` keeps concurrent migrations of different databases off the same catalog row.
DO $$
BEGIN
    EXECUTE format('ALTER ROLE quote_app IN DATABASE %I SET statement_timeout = %L',
                   current_database(), '5s');
    -- A transaction left open (a crashed client) releases its locks and its proxy connection.
    EXECUTE format('ALTER ROLE quote_app IN DATABASE %I SET idle_in_transaction_session_timeout = %L',
                   current_database(), '30s');
END $$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO quote_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON quotes, idempotency_keys TO quote_app;

-- On RDS the role signs in with IAM tokens (end-to-end through the proxy): `rds_iam` exists
-- only there.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam') THEN
        GRANT rds_iam TO quote_app;
    END IF;
END $$;
