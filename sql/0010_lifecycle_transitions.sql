-- Escalator schema, version 10: the lifecycles of a notification and of a process, as
-- escalator.lifecycle declares them (drawn in docs/lifecycle.md), enforced here. A change
-- of state that the lifecycle does not list fails the statement with SQLSTATE LC001,
-- naming the row and both states, and listing what the lifecycle allows from there: a
-- statement that would move a notification being sent back to pending (a second call)
-- fails instead of calling twice. tests/integration/test_lifecycle_transitions.py tries
-- every pair of states against these lists and the Python ones.
-- Rows in flight keep their states: only later changes are checked, and the release before
-- makes no change this does not list (it writes the same transitions).
-- Each function runs as its caller and reads nothing but the row (no privilege of its
-- own); nobody calls it but its trigger, so nobody may (the application role holds no
-- function: EXECUTE, granted to PUBLIC by default, is revoked).

CREATE FUNCTION notification_lifecycle() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    listed boolean;
    allowed text;
BEGIN
    SELECT coalesce(bool_or(t.source = OLD.state AND t.target = NEW.state), false),
           string_agg(format('%s (%s)', t.target, t.event), ', '
                      ORDER BY t.target COLLATE "C", t.event COLLATE "C")
               FILTER (WHERE t.source = OLD.state)
    INTO listed, allowed
    FROM (VALUES
        ('pending',   'claimed',   'claim'),
        ('claimed',   'pending',   'release'),
        ('claimed',   'sending',   'confirm'),
        ('sending',   'pending',   'withdraw'),
        ('sending',   'sent',      'record'),
        ('sending',   'failed',    'record'),
        ('sending',   'unknown',   'record'),
        ('sending',   'unknown',   'lapse'),
        ('unknown',   'sent',      'record'),
        ('unknown',   'failed',    'record'),
        ('unknown',   'sent',      'callback'),
        ('pending',   'cancelled', 'stop'),
        ('claimed',   'cancelled', 'stop'),
        ('sending',   'cancelled', 'abandon'),
        ('pending',   'expired',   'expire'),
        ('claimed',   'expired',   'expire'),
        ('claimed',   'coalesced', 'coalesce'),
        ('coalesced', 'pending',   'uncover'),
        ('coalesced', 'cancelled', 'uncover')
    ) AS t (source, target, event);
    IF NOT listed THEN
        RAISE EXCEPTION USING
            ERRCODE = 'LC001',
            MESSAGE = format('notification %s: no transition from %s to %s',
                             OLD.id, OLD.state, NEW.state),
            HINT = coalesce('from ' || OLD.state || ': ' || allowed, OLD.state || ' is final');
    END IF;
    -- Back from sending only to undo a confirm whose notifier never ran: the statement
    -- withdraws the confirm (clears the token of the step's entry that made it), and no
    -- provider has reported the delivery.
    IF OLD.state = 'sending' AND NEW.state = 'pending'
       AND NOT (OLD.confirm_token IS NOT NULL AND NEW.confirm_token IS NULL
                AND OLD.provider_ref IS NULL AND OLD.provider_status IS NULL) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'LC001',
            MESSAGE = format('notification %s: no transition from %s to %s',
                             OLD.id, OLD.state, NEW.state),
            DETAIL = 'A notification being sent goes back to pending only when its confirm'
                     ' is withdrawn (its confirm_token cleared) and no provider has reported'
                     ' its delivery.',
            HINT = 'from ' || OLD.state || ': ' || allowed;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION process_lifecycle() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    listed boolean;
    allowed text;
BEGIN
    SELECT coalesce(bool_or(t.source = OLD.state AND t.target = NEW.state), false),
           string_agg(format('%s (%s)', t.target, t.event), ', '
                      ORDER BY t.target COLLATE "C", t.event COLLATE "C")
               FILTER (WHERE t.source = OLD.state)
    INTO listed, allowed
    FROM (VALUES
        ('active', 'stopped',   'stop'),
        ('active', 'completed', 'complete')
    ) AS t (source, target, event);
    IF NOT listed THEN
        RAISE EXCEPTION USING
            ERRCODE = 'LC001',
            MESSAGE = format('process %s: no transition from %s to %s',
                             OLD.id, OLD.state, NEW.state),
            HINT = coalesce('from ' || OLD.state || ': ' || allowed, OLD.state || ' is final');
    END IF;
    RETURN NEW;
END
$$;

REVOKE EXECUTE ON FUNCTION notification_lifecycle(), process_lifecycle() FROM PUBLIC;

CREATE TRIGGER notification_lifecycle
    BEFORE UPDATE OF state ON notification
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION notification_lifecycle();

CREATE TRIGGER process_lifecycle
    BEFORE UPDATE OF state ON process
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION process_lifecycle();
