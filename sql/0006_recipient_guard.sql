-- Escalator schema, version 6: the per-recipient guard. A delivery to a target covers
-- other processes' notifications to the same channel and target that fall due within a
-- window after it: they end 'coalesced', naming the notification whose delivery covered
-- them, instead of calling the same person again.

-- The state checks of version 3, widened by the new terminal state (old code never
-- writes it, and everything it writes still passes).
ALTER TABLE notification
    DROP CONSTRAINT notification_state_known,
    DROP CONSTRAINT notification_finished_when_terminal;

ALTER TABLE notification
    ADD CONSTRAINT notification_state_known
        CHECK (state IN ('pending', 'claimed', 'sending', 'sent', 'failed', 'cancelled',
                         'expired', 'unknown', 'rejected', 'coalesced')),
    ADD CONSTRAINT notification_finished_when_terminal
        CHECK ((state IN ('sent', 'failed', 'cancelled', 'expired', 'unknown', 'rejected',
                          'coalesced'))
               = (finished_at IS NOT NULL));

-- When the confirm step handed the notification to its notifier (the guard's clock),
-- and, for a coalesced one, the notification whose delivery covered it.
ALTER TABLE notification
    ADD COLUMN sending_at timestamptz,
    ADD COLUMN covered_by bigint REFERENCES notification (id),
    ADD CONSTRAINT notification_coalesced_names_cover
        CHECK ((state = 'coalesced') = (covered_by IS NOT NULL));

-- The guard's question: what went out to this target lately?
CREATE INDEX notification_by_recipient ON notification (channel, target, sending_at)
    WHERE sending_at IS NOT NULL;
