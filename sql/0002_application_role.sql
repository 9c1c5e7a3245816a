-- The application role: what the runtime functions connect as. It reads and writes the
-- rows Escalator's functions touch and nothing else: no DDL, no deletes, no schema
-- history, no other database's objects. On RDS it authenticates by IAM (rds_iam);
-- locally the development harness gives it a password.
-- Roles belong to the whole server: another database's migration may have created it.
DO $$
BEGIN
    CREATE ROLE escalator_app LOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
        GRANT rds_iam TO escalator_app;
    END IF;
END
$$;

GRANT SELECT, INSERT, UPDATE ON process, notification, request_log TO escalator_app;
GRANT SELECT ON property TO escalator_app;

-- Nobody but the owner creates objects in the schema (PostgreSQL 15 and later already
-- say so; older servers let every role create tables in public).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
