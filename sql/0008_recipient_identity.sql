-- Escalator schema, version 8: the per-recipient guard knows a recipient by its
-- normalised form (E.164 for a phone, the address with its domain in lower case for an
-- e-mail), so "+3850911110003" and "+385911110003", or "owner@EXAMPLE.COM" and
-- "owner@example.com", are one person. `target` keeps what the producer wrote.
-- Expand only: a row the release before writes has no recipient, and the guard reads
-- its target instead (coalesce), so both releases can run side by side; nothing is
-- rewritten.
ALTER TABLE notification ADD COLUMN recipient text;

-- The guard's question, by recipient: what went out to this person lately?
CREATE INDEX notification_by_recipient_identity
    ON notification (channel, (coalesce(recipient, target)), sending_at)
    WHERE sending_at IS NOT NULL;
