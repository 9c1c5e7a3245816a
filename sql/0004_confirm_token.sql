-- Escalator schema, version 4: the steps of the state machine are idempotent under
-- their own retries (AWS may run a function and lose its answer; Step Functions then
-- runs it again).

-- Which entry of the confirm step moved a notification to 'sending' (the execution's
-- $$.State.EnteredTime): a retry of that entry gets the same delivery back; a second
-- run of the execution, which enters the step anew, does not.
ALTER TABLE notification ADD COLUMN confirm_token text;

-- A retried claim answers what its execution already holds.
CREATE INDEX notification_claimed_by_owner ON notification (claim_owner)
    WHERE state = 'claimed';
