-- Escalator schema, version 5: what a provider reports about a delivery is recorded
-- for every channel with status callbacks (a call's status, a message's), not for calls
-- only.

-- Each channel declares the statuses its provider reports (escalator.channels), and the
-- recorder records only those of the notification's own channel: the check of version
-- 3, which knew call statuses only, goes (found by what it says: it was created
-- unnamed). Old code writes call statuses only, which are still accepted.
DO $$
DECLARE
    constraint_name text;
BEGIN
    FOR constraint_name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'notification'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%provider_status%'
    LOOP
        EXECUTE format('ALTER TABLE notification DROP CONSTRAINT %I', constraint_name);
    END LOOP;
END
$$;
