-- Escalator schema, version 3: notifications rejected at ingest, what the provider
-- reported about a call, and how many notifications each start had rejected.

-- A start is applied even when some of its targets are unusable: those notifications
-- are stored 'rejected' with their reason and never delivered. The state checks of
-- version 1 are replaced (found by what they say: they were created unnamed).
DO $$
DECLARE
    constraint_name text;
BEGIN
    FOR constraint_name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'notification'::regclass AND contype = 'c'
          AND (pg_get_constraintdef(oid) LIKE '%''expired''%')
    LOOP
        EXECUTE format('ALTER TABLE notification DROP CONSTRAINT %I', constraint_name);
    END LOOP;
END
$$;

ALTER TABLE notification
    ADD CONSTRAINT notification_state_known
        CHECK (state IN ('pending', 'claimed', 'sending', 'sent', 'failed', 'cancelled',
                         'expired', 'unknown', 'rejected')),
    ADD CONSTRAINT notification_finished_when_terminal
        CHECK ((state IN ('sent', 'failed', 'cancelled', 'expired', 'unknown', 'rejected'))
               = (finished_at IS NOT NULL)),
    ADD CONSTRAINT notification_rejected_has_reason
        CHECK (state <> 'rejected' OR error IS NOT NULL);

-- The provider's own account of a call (Twilio's status callbacks): the last status it
-- reported, when, and the call's duration once it ended. A final status is never
-- replaced by an earlier one (the repository orders them).
ALTER TABLE notification
    ADD COLUMN provider_status text
        CHECK (provider_status IN ('queued', 'initiated', 'ringing', 'in-progress', 'completed',
                                   'busy', 'no-answer', 'failed', 'canceled')),
    ADD COLUMN provider_status_at timestamptz,
    ADD COLUMN call_duration_seconds integer CHECK (call_duration_seconds >= 0);

CREATE INDEX notification_by_provider_ref ON notification (provider_ref)
    WHERE provider_ref IS NOT NULL;

ALTER TABLE request_log
    ADD COLUMN rejected_notifications integer NOT NULL DEFAULT 0
        CHECK (rejected_notifications >= 0);
