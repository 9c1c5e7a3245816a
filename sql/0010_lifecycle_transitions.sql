-- Escalator schema, version 10: the lifecycles of a notification and of a process, as
-- escalator.lifecycle declares them (drawn in docs/lifecycle.md), enforced here. A change
-- of state that the lifecycle does not list fails the statement with SQLSTATE LC001,
-- naming the row and both states, and listing what the lifecycle allows from there: a
-- statement that would move a notification being sent back to pending (a second call)
-- fails instead of calling twice. tests/integration/test_lifecycle_transitions.py tries
-- every pair of states against these lists and the Python ones.
-- Rows in flight keep their states: only later changes are checked, and the release before
-- makes no change this does not list (it writes the same transitions).
-- The function runs as its caller and reads nothing but the row (no privilege of its
-- own); nobody calls it but its triggers, so nobody may (the application role holds no
-- function: EXECUTE, granted to PUBLIC by default, is revoked).

CREATE FUNCTION lifecycle_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    listed boolean;
    allowed text;
BEGIN
    -- (the row's table names its lifecycle: notification or process)
    SELECT coalesce(bool_or(t.source = OLD.state AND t.target = NEW.state), false),
           string_agg(format('%s (%s)', t.target, t.event), ', '
                      ORDER BY t.target COLLATE "C", t.event COLLATE "C")
               FILTER (WHERE t.source = OLD.state)
    INTO listed, allowed
    FROM (VALUES
        ('notification', 'pending',   'claimed',   'claim'),
        ('notification', 'claimed',   'pending',   'release'),
        ('notification', 'claimed',   'sending',   'confirm'),
        ('notification', 'sending',   'pending',   'withdraw'),
        ('notification', 'sending',   'sent',      'record'),
        ('notification', 'sending',   'failed',    'record'),
        ('notification', 'sending',   'unknown',   'record'),
        ('notification', 'sending',   'unknown',   'lapse'),
        ('notification', 'unknown',   'sent',      'record'),
        ('notification', 'unknown',   'failed',    'record'),
        ('notification', 'unknown',   'sent',      'callback'),
        ('notification', 'pending',   'cancelled', 'stop'),
        ('notification', 'claimed',   'cancelled', 'stop'),
        ('notification', 'sending',   'cancelled', 'abandon'),
        ('notification', 'pending',   'expired',   'expire'),
        ('notification', 'claimed',   'expired',   'expire'),
        ('notification', 'claimed',   'coalesced', 'coalesce'),
        ('notification', 'coalesced', 'pending',   'uncover'),
        ('notification', 'coalesced', 'cancelled', 'uncover'),
        ('process',      'active',    'stopped',   'stop'),
        ('process',      'active',    'completed', 'complete')
    ) AS t (lifecycle, source, target, event)
    WHERE t.lifecycle = TG_TABLE_NAME;
    IF NOT listed THEN
        RAISE EXCEPTION USING
            ERRCODE = 'LC001',
            MESSAGE = format('%s %s: no transition from %s to %s',
                             TG_TABLE_NAME, OLD.id, OLD.state, NEW.state),
            HINT = coalesce('from ' || OLD.state || ': ' || allowed, OLD.state || ' is final');
    END IF;
    -- Back from sending only to undo a confirm whose notifier never ran: the statement
    -- withdraws the confirm (clears the token of the step's entry that made it), and no
    -- provider has reported the delivery. (A process row has none of these columns: the
    -- check is reached for a notification only.)
    IF TG_TABLE_NAME = 'notification' AND OLD.state = 'sending' AND NEW.state = 'pending' THEN
        IF NOT (OLD.confirm_token IS NOT NULL AND NEW.confirm_token IS NULL
                AND OLD.provider_ref IS NULL AND OLD.provider_status IS NULL) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'LC001',
                MESSAGE = format('notification %s: no transition from %s to %s',
                                 OLD.id, OLD.state, NEW.state),
                DETAIL = 'A notification being sent goes back to pending only when its'
                         ' confirm is withdrawn (its confirm_token cleared) and no provider'
                         ' has reported its delivery.',
                HINT = 'from ' || OLD.state || ': ' || allowed;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

REVOKE EXECUTE ON FUNCTION lifecycle_transition() FROM PUBLIC;

CREATE TRIGGER notification_lifecycle
    BEFORE UPDATE OF state ON notification
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION lifecycle_transition();

CREATE TRIGGER process_lifecycle
    BEFORE UPDATE OF state ON process
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION lifecycle_transition();
