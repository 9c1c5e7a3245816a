-- Escalator schema, version 9: a notification coalesced into a delivery still being sent
-- waits for that delivery's outcome. It is 'coalesced' without a finished_at until its
-- cover is settled: 'sent' or 'unknown' (it may have reached the person) finishes it; any
-- other end puts it back to 'pending' (delivered after all) or, when its process was
-- stopped meanwhile, 'cancelled'. A process holding one is not finished.
-- Expand only: everything the release before writes (a coalesced row always finished)
-- still passes.
ALTER TABLE notification DROP CONSTRAINT notification_finished_when_terminal;

ALTER TABLE notification
    ADD CONSTRAINT notification_finished_when_terminal
        CHECK (state = 'coalesced'
               OR (state IN ('sent', 'failed', 'cancelled', 'expired', 'unknown', 'rejected'))
                  = (finished_at IS NOT NULL));

-- What waits for a cover: found by the cover when it is settled, and by the activator's
-- sweep. Only the few waiting rows are indexed.
CREATE INDEX notification_waiting_for_cover ON notification (covered_by)
    WHERE state = 'coalesced' AND finished_at IS NULL;
