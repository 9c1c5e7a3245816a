-- Escalator schema, version 1: processes, their notifications, the property table of
-- the original roesc, and the request log.
-- Applied by `escalator db migrate`; never edit a migration that has been applied,
-- add a new file instead.

-- One row per escalation process. A process id (usually the restaurant) can be
-- started again once its previous process has ended, so `process_id` is unique only
-- among active processes.
CREATE TABLE process (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    process_id  text        NOT NULL CHECK (length(process_id) BETWEEN 1 AND 128),
    state       text        NOT NULL DEFAULT 'active'
                            CHECK (state IN ('active', 'stopped', 'completed')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    CHECK ((state = 'active') = (ended_at IS NULL))
);

CREATE UNIQUE INDEX process_one_active_per_id ON process (process_id) WHERE state = 'active';
CREATE INDEX process_by_id ON process (process_id, started_at DESC);

-- One row per notification of a process. Lifecycle (DESIGN.md section 3):
--   pending -claim-> claimed -confirm-> sending -> sent | failed
--   pending/claimed -stop-> cancelled; pending/claimed -too late-> expired
--   claimed whose claim is lost -> pending; sending past its lease -> unknown
CREATE TABLE notification (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    process_ref   bigint      NOT NULL REFERENCES process (id),
    position      integer     NOT NULL CHECK (position >= 0),
    channel       text        NOT NULL,
    target        text        NOT NULL,
    due_at        timestamptz NOT NULL,
    state         text        NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'claimed', 'sending', 'sent',
                                               'failed', 'cancelled', 'expired', 'unknown')),
    -- The execution holding the claim, and until when the claim (or the sending lease) holds.
    claim_owner   text,
    lease_until   timestamptz,
    attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    provider_ref  text,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    UNIQUE (process_ref, position),
    CHECK (state NOT IN ('claimed', 'sending') OR (claim_owner IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK ((state IN ('sent', 'failed', 'cancelled', 'expired', 'unknown')) = (finished_at IS NOT NULL)),
    CHECK (state <> 'sent' OR provider_ref IS NOT NULL)
);

-- The activator's queries: due pending notifications, and claims or leases that ran out.
CREATE INDEX notification_pending_due ON notification (due_at) WHERE state = 'pending';
CREATE INDEX notification_in_flight ON notification (lease_until) WHERE state IN ('claimed', 'sending');
CREATE INDEX notification_by_process ON notification (process_ref);

-- Key/value settings, as in the original. The caller-id registry is the JSON value
-- under 'caller-id-registry': {"default": "+1...", "+385": "+385..."}.
CREATE TABLE property (
    property_key   text PRIMARY KEY,
    property_value text NOT NULL
);

-- Every request the initiator has seen, keyed by the SQS message id: a redelivered
-- message finds its row and changes nothing. Rejected requests keep their body and
-- the reason, so nothing a producer sent is lost.
CREATE TABLE request_log (
    message_id   text        PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    group_id     text,
    process_id   text,
    action       text,
    outcome      text        NOT NULL CHECK (outcome IN ('started', 'stopped', 'ignored', 'rejected')),
    reason       text,
    process_ref  bigint      REFERENCES process (id),
    body         text,
    CHECK ((outcome IN ('ignored', 'rejected')) = (reason IS NOT NULL)),
    CHECK (outcome <> 'rejected' OR body IS NOT NULL)
);

CREATE INDEX request_log_rejected ON request_log (received_at) WHERE outcome = 'rejected';
