-- Escalator schema, version 11: retention. Finished processes, their notifications and
-- the request log are deleted once they are older than the retention period
-- (escalator.retention; the purge function, hourly, and `escalator db purge`), by a role
-- of their own that may delete and nothing else the application does.
-- Expand only: the release before never deletes, and everything it writes still passes.

-- A request's log entry outlives its process when the log's horizon (how long a request
-- can come back from the dead-letter queue) is longer than the retention period: the
-- entry keeps its message id, outcome and process id, and loses only the reference.
-- Likewise a coalesced notification whose cover (another process's delivery) was purged
-- before it keeps its reason, which names the cover, and loses only the reference.
DO $$
DECLARE
    found record;
BEGIN
    FOR found IN
        SELECT c.conname, c.conrelid::regclass AS tablename, a.attname
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f'
          AND (c.conrelid, a.attname) IN (('request_log'::regclass, 'process_ref'),
                                          ('notification'::regclass, 'covered_by'))
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', found.tablename, found.conname);
    END LOOP;
END
$$;

ALTER TABLE request_log
    ADD CONSTRAINT request_log_process_ref_fkey
        FOREIGN KEY (process_ref) REFERENCES process (id) ON DELETE SET NULL;

ALTER TABLE notification DROP CONSTRAINT notification_coalesced_names_cover;

ALTER TABLE notification
    ADD CONSTRAINT notification_covered_by_fkey
        FOREIGN KEY (covered_by) REFERENCES notification (id) ON DELETE SET NULL,
    -- (only a coalesced notification names a cover; one whose cover was purged, none)
    ADD CONSTRAINT notification_coalesced_names_cover
        CHECK (covered_by IS NULL OR state = 'coalesced');

-- What the purge looks for: finished processes by age (the few active ones are left
-- out of the index), and the request log by age.
CREATE INDEX process_finished ON process (ended_at) WHERE state <> 'active';
CREATE INDEX request_log_by_age ON request_log (received_at);
-- What a deleted row's references are found by (the two ON DELETE SET NULL above): without
-- these, each process or notification deleted scans the request log or the notifications.
CREATE INDEX request_log_by_process ON request_log (process_ref) WHERE process_ref IS NOT NULL;
CREATE INDEX notification_by_cover ON notification (covered_by) WHERE covered_by IS NOT NULL;

-- The purge's role: it finds what has finished and deletes it; it reads nothing else and
-- writes nothing (a foreign key's ON DELETE SET NULL runs with the table owner's rights).
-- On RDS it authenticates by IAM (rds_iam); locally the development harness gives it a
-- password.
DO $$
BEGIN
    CREATE ROLE escalator_purger LOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
        GRANT rds_iam TO escalator_purger;
    END IF;
END
$$;

GRANT SELECT, DELETE ON process, notification, request_log TO escalator_purger;
