-- Escalator schema, version 7: the application role creates nothing, temporary tables
-- included. PostgreSQL grants TEMPORARY on every new database to PUBLIC, so the role
-- held it through PUBLIC, which its documentation ("no DDL", 0002) never meant. The
-- database's owner (the migration's user: the master user on RDS) keeps it as owner.
-- A database-level grant: a database copied from this one (CREATE DATABASE ...
-- TEMPLATE) starts again from PostgreSQL's default.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
