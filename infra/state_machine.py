"""The delivery state machines, generated from the channel registry (JSONPath only).

The tick (Standard, started by the schedule; what an operator inspects): Claim due
notifications -> Anything claimed? (Nothing due) -> Deliver notifications (starts a
delivery window and waits for it: ``aws-sdk:sfn:startSyncExecution``, as AWS runs an
Express child) -> Window delivered? -> Summary (its output: what each claimed
notification became) -> More due? (hand over to a fresh execution) / Done. A window that
failed or never started: Release the window's claims -> Failure summary -> Window failed
(the tick fails, and its alarm goes off).

The delivery window (Express: billed by duration, not by transition): a Map over the
notifications it is given, each iteration Wait until due -> Confirm still wanted ->
Which channel? -> one task per channel -> Record -> its outcome. The initiator starts
one too, for notifications that arrive due before the next tick can be trusted to
claim them. An Express execution may run more than once and runs at most five minutes:
each step is idempotent and the database decides what is still owed, and the window
fits the cap (``window_worst_case_seconds``).

One tick claims and delivers one batch; a tick that leaves more due starts the next
one, named from its own name (a retried hand-over starts nothing twice), with the same
input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from escalator.channels import CHANNELS
from infra.settings import HAND_OVER_RETRIES, THROTTLE_RETRY, WINDOW_RETRIES, ThrottleRetry
from infra.timings import (
    CONFIRM_DATABASE_RETRIES,
    DATABASE_ERROR_FIRST_DELAY_SECONDS,
    DATABASE_ERROR_MAX_DELAY_SECONDS,
    DATABASE_ERROR_RETRIES,
    DATABASE_SERVICE_RETRIES,
    EXPRESS_CAP_SECONDS,
    NOTIFIER_ATTEMPTS,
    NOTIFIER_FIRST_DELAY_SECONDS,
    NOTIFIER_RETRIES,
    RECORD_DATABASE_RETRIES,
    RETRY_MAX_DELAY_SECONDS,
)

DEFAULT_MAX_CONCURRENCY = 40
# Raised by the notifiers (escalator.errors) and by the database functions.
TRANSIENT_DELIVERY_ERROR = "TransientDeliveryError"
DATABASE_ERROR = "DatabaseError"
# Lambda did not run the function at all (throttled): safe to retry even for a notifier.
# Lambda.ServiceException is not among them: the function may have placed the call.
THROTTLED = "Lambda.TooManyRequestsException"
# Errors after which the function may well have run (its answer was lost, it timed
# out): the database steps retry them (each is idempotent under its own retry); a
# notifier never does, and its delivery is recorded unknown.
LAMBDA_SERVICE_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "Sandbox.Timedout",
)
# What a notifier task may end with that proves nothing was delivered: the provider
# refused it, or never took it (retries exhausted), the function never ran (throttled)
# or could not start (its settings). Anything else may have reached the provider.
NOT_DELIVERED_ERRORS = (
    "PermanentDeliveryError",
    TRANSIENT_DELIVERY_ERROR,
    "ConfigError",
    THROTTLED,
)
# How long the tick waits for StartSyncExecution's answer beyond the window's cap.
WINDOW_ANSWER_MARGIN_SECONDS = 30
# How the tick fails when its window failed or never started (its alarm: ExecutionsFailed).
WINDOW_FAILED = "DeliveryWindowFailed"
# What starting an execution that exists already fails with (the hand-over's retry).
EXECUTION_EXISTS = "StepFunctions.ExecutionAlreadyExistsException"


def window_worst_case_seconds(
    *, lookahead_seconds: int, database_step_timeout: int, notifier_timeout: int
) -> int:
    """How long a delivery window runs at most, throttles and lost answers aside: it waits
    for the last notification it holds (due at the end of the lookahead), then confirms
    it and records it (each attempt running out of time on the database, with the delays
    between them) and calls its notifier (each attempt running out of time)."""

    def longest(attempts: int, timeout: int, first_delay: int, max_delay: int | None) -> int:
        delays = [first_delay << retry for retry in range(attempts - 1)]
        return attempts * timeout + sum(min(delay, max_delay or delay) for delay in delays)

    def database_step(retries: int) -> int:
        return longest(
            retries + 1,
            database_step_timeout,
            DATABASE_ERROR_FIRST_DELAY_SECONDS,
            DATABASE_ERROR_MAX_DELAY_SECONDS,
        )

    confirm = database_step(CONFIRM_DATABASE_RETRIES)
    record = database_step(RECORD_DATABASE_RETRIES)
    notifier = longest(NOTIFIER_ATTEMPTS, notifier_timeout, NOTIFIER_FIRST_DELAY_SECONDS, None)
    return lookahead_seconds + confirm + notifier + record


def throttle_retry(
    task: sfn.TaskStateBase, retry: ThrottleRetry = THROTTLE_RETRY
) -> sfn.TaskStateBase:
    """Retry a throttled invocation (all reserved sandboxes busy) until a sandbox is free."""
    return task.add_retry(
        errors=[THROTTLED],
        interval=Duration.seconds(retry.interval_seconds),
        max_delay=Duration.seconds(retry.max_delay_seconds),
        max_attempts=retry.retries,
        backoff_rate=2,
        jitter_strategy=sfn.JitterType.FULL,
    )


def database_step(
    scope: Construct,
    task_id: str,
    function: lambda_.IFunction,
    payload: sfn.TaskInput,
    result_path: str,
    *,
    database_retries: int = DATABASE_ERROR_RETRIES,
    database_max_delay: int = DATABASE_ERROR_MAX_DELAY_SECONDS,
) -> sfn.TaskStateBase:
    """A task of a database function: idempotent under its own retry, so it retries an
    answer lost after the function ran, a database failure, and a throttle."""
    task = tasks.LambdaInvoke(
        scope,
        task_id,
        lambda_function=function,
        payload=payload,
        payload_response_only=True,
        result_path=result_path,
        retry_on_service_exceptions=False,
    )
    task.add_retry(
        errors=list(LAMBDA_SERVICE_ERRORS),
        interval=Duration.seconds(1),
        max_attempts=DATABASE_SERVICE_RETRIES,
        max_delay=Duration.seconds(RETRY_MAX_DELAY_SECONDS),
        backoff_rate=2,
        jitter_strategy=sfn.JitterType.FULL,
    )
    task.add_retry(
        errors=[DATABASE_ERROR],
        interval=Duration.seconds(DATABASE_ERROR_FIRST_DELAY_SECONDS),
        max_attempts=database_retries,
        max_delay=Duration.seconds(database_max_delay),
        backoff_rate=2,
        jitter_strategy=sfn.JitterType.FULL,
    )
    return throttle_retry(task)


def tick_definition(
    scope: Construct,
    *,
    activator: lambda_.IFunction,
    window: sfn.IStateMachine,
    itself: sfn.IStateMachine,
) -> sfn.IChainable:
    """The states of the scheduled (Standard) state machine: claim, hand the claimed
    notifications to a delivery window and wait for it, summarize, hand over."""
    return _Tick(scope).chain(activator=activator, window=window, itself=itself)


def window_definition(
    scope: Construct,
    *,
    confirm: lambda_.IFunction,
    record: lambda_.IFunction,
    notifiers: Mapping[str, lambda_.IFunction],
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> sfn.IChainable:
    """The states of the delivery window (Express): every notification of its input in
    parallel, each waited for, confirmed, delivered and recorded; its output names each
    notification with its outcome."""
    return _Definition(scope, record=record).window(
        confirm=confirm, notifiers=notifiers, max_concurrency=max_concurrency
    )


# What each task of one notification's iteration passes its function.
_NOTIFICATION_KEYS = {
    "notification_id": sfn.JsonPath.number_at("$.notification.id"),
    "execution": sfn.JsonPath.string_at("$.execution"),
}


class _Definition:
    """Builds the states, one part per method, in ``scope``."""

    def __init__(self, scope: Construct, *, record: lambda_.IFunction) -> None:
        self._scope = scope
        self._record = record

    def window(
        self,
        *,
        confirm: lambda_.IFunction,
        notifiers: Mapping[str, lambda_.IFunction],
        max_concurrency: int,
    ) -> sfn.IChainable:
        """Deliver notifications: a Map over ``$.notifications``, each iteration acting
        for the owner of its notification's claim (the tick that claimed it, or the
        arrival that claimed it at ingest: one window may carry several)."""
        return sfn.Map(
            self._scope,
            "Deliver notifications",
            items_path="$.notifications",
            item_selector={
                "notification": sfn.JsonPath.string_at("$$.Map.Item.Value"),
                "execution": sfn.JsonPath.string_at("$$.Map.Item.Value.owner"),
                # Drawn once per iteration: the same for every retry of its steps, another
                # in a second run of the window (same input, same execution id).
                "run": sfn.JsonPath.uuid(),
            },
            max_concurrency=max_concurrency,
        ).item_processor(self._deliver_one(confirm, notifiers))

    def _outcome(
        self, state_id: str, kind: str | None = None, *, outcome: str | None = None, **paths: str
    ) -> sfn.Pass:
        """An iteration's last state: its output is the notification's id and outcome
        (``kind``, or the one at the path ``outcome``) and what explains it (``paths``),
        so that the window's output, a list of them, says what the window did."""
        fields: dict[str, Any] = {"id": sfn.JsonPath.number_at("$.notification.id")}
        fields["outcome"] = kind if outcome is None else sfn.JsonPath.string_at(outcome)
        fields.update({key: sfn.JsonPath.string_at(path) for key, path in paths.items()})
        return sfn.Pass(self._scope, state_id, parameters=fields)

    def _record_step(
        self, task_id: str, key: str, outcome_lost: sfn.IChainable
    ) -> sfn.TaskStateBase:
        """Record what ``$.<key>`` holds (a receipt, a failure, an unknown outcome)."""
        payload = {**_NOTIFICATION_KEYS, key: sfn.JsonPath.object_at(f"$.{key}")}
        return database_step(
            self._scope,
            task_id,
            self._record,
            sfn.TaskInput.from_object(payload),
            "$.recorded",
            database_retries=RECORD_DATABASE_RETRIES,
        ).add_catch(outcome_lost, errors=["States.ALL"], result_path="$.recordError")

    def _deliver_one(
        self, confirm: lambda_.IFunction, notifiers: Mapping[str, lambda_.IFunction]
    ) -> sfn.IChainable:
        """One notification: Wait until due -> Confirm still wanted -> Still wanted? ->
        Which channel? -> its notifier -> Record."""
        confirm_step = database_step(
            self._scope,
            "Confirm still wanted",
            confirm,
            sfn.TaskInput.from_object(
                {
                    **_NOTIFICATION_KEYS,
                    "due": sfn.JsonPath.string_at("$.notification.due"),
                    # A retry of this entry of the step, told apart from a second run
                    # (which may enter it in the same millisecond: its run is another).
                    "retry_count": sfn.JsonPath.number_at("$$.State.RetryCount"),
                    "entered": sfn.JsonPath.string_at("$$.State.EnteredTime"),
                    "run": sfn.JsonPath.string_at("$.run"),
                }
            ),
            "$.confirmed",
            database_retries=CONFIRM_DATABASE_RETRIES,
        )
        not_confirmed = self._outcome(
            "Not confirmed", "not confirmed", error="$.confirmError.Error"
        )
        # Its notifier never ran, whatever the step committed before its answers were lost:
        # back to pending for the next tick (not unknown when its sending lease runs out).
        release = database_step(
            self._scope,
            "Release what was not confirmed",
            self._record,
            sfn.TaskInput.from_object(
                {
                    **_NOTIFICATION_KEYS,
                    "run": sfn.JsonPath.string_at("$.run"),
                    "not_confirmed": sfn.JsonPath.object_at("$.confirmError"),
                }
            ),
            sfn.JsonPath.DISCARD,
            database_retries=CONFIRM_DATABASE_RETRIES,
        ).add_catch(not_confirmed, errors=["States.ALL"], result_path=sfn.JsonPath.DISCARD)
        confirm_step.add_catch(
            release.next(not_confirmed), errors=["States.ALL"], result_path="$.confirmError"
        )
        # Every rule asks by presence first: on AWS a rule on a missing field fails the
        # whole window (States.Runtime), and an answer may lack what this release writes
        # (a confirm function of the release before, still running during a deploy).
        still_wanted = (
            sfn.Choice(self._scope, "Still wanted?")
            .when(
                sfn.Condition.is_present("$.confirmed.covered_by"),
                self._outcome("Coalesced", "coalesced", covered_by="$.confirmed.covered_by"),
            )
            .when(
                sfn.Condition.is_present("$.confirmed.delivery.channel"),
                self._which_channel(notifiers),
            )
            .when(
                sfn.Condition.is_present("$.confirmed.reason"),
                self._outcome("Not delivered", "not delivered", reason="$.confirmed.reason"),
            )
            .otherwise(
                sfn.Pass(
                    self._scope,
                    "No delivery confirmed",
                    parameters={
                        "id": sfn.JsonPath.number_at("$.notification.id"),
                        "outcome": "not delivered",
                        "reason": "the confirm step answered neither a delivery nor a reason",
                    },
                )
            )
        )
        return (
            sfn.Wait(
                self._scope,
                "Wait until due",
                time=sfn.WaitTime.timestamp_path("$.notification.due"),
            )
            .next(confirm_step)
            .next(still_wanted)
        )

    def _which_channel(self, notifiers: Mapping[str, lambda_.IFunction]) -> sfn.Choice:
        """One branch per registered channel: its notifier, then the record of what it did."""
        # An outcome that cannot be recorded leaves the notification sending: the lease
        # turns it unknown, and it is never sent again.
        outcome_lost = self._outcome(
            "Outcome not recorded", "not recorded", error="$.recordError.Error"
        )
        recorded = self._outcome("Recorded", outcome="$.recorded.outcome")
        record_delivery = self._record_step("Record delivery", "receipt", outcome_lost)
        record_failure = self._record_step("Record failure", "failure", outcome_lost)
        # The provider may have it: never retried, never called failed.
        record_unknown = self._record_step("Record unknown outcome", "unknown", outcome_lost)
        for record in (record_delivery, record_failure, record_unknown):
            record.next(recorded)
        which_channel = sfn.Choice(self._scope, "Which channel?")
        for name, channel in CHANNELS.items():
            if name in notifiers:
                notify = self._notifier(channel.task_name, notifiers[name])
                which_channel.when(
                    sfn.Condition.string_equals("$.confirmed.delivery.channel", name),
                    notify.add_catch(
                        record_failure,
                        errors=list(NOT_DELIVERED_ERRORS),
                        result_path="$.failure",
                    )
                    .add_catch(record_unknown, errors=["States.ALL"], result_path="$.unknown")
                    .next(record_delivery),
                )
        return which_channel.otherwise(
            sfn.Pass(
                self._scope,
                "No notifier for channel",
                result=sfn.Result.from_object(
                    {"Error": "NoNotifier", "Cause": "no notifier is deployed for this channel"}
                ),
                result_path="$.failure",
            ).next(record_failure)
        )

    def _notifier(self, task_name: str, function: lambda_.IFunction) -> sfn.TaskStateBase:
        """A notifier's task: retries only what proves the request never reached the
        provider (a transient error, a throttle), never a lost answer."""
        notify = tasks.LambdaInvoke(
            self._scope,
            task_name,
            lambda_function=function,
            input_path="$.confirmed.delivery",
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path="$.receipt",
        ).add_retry(
            errors=[TRANSIENT_DELIVERY_ERROR],
            interval=Duration.seconds(NOTIFIER_FIRST_DELAY_SECONDS),
            max_attempts=NOTIFIER_RETRIES,
            backoff_rate=2,
            jitter_strategy=sfn.JitterType.FULL,
        )
        return throttle_retry(notify)


class _Tick:
    """The scheduled execution's states, in ``scope``."""

    def __init__(self, scope: Construct) -> None:
        self._scope = scope

    def chain(
        self,
        *,
        activator: lambda_.IFunction,
        window: sfn.IStateMachine,
        itself: sfn.IStateMachine,
    ) -> sfn.IChainable:
        """Claim -> Anything claimed? -> Deliver notifications (the window) -> Window
        delivered? -> Summary -> More due? -> hand over; a window that failed or never
        started -> Release the window's claims -> Failure summary -> Window failed."""
        more_due = (
            sfn.Choice(self._scope, "More due?")
            .when(sfn.Condition.boolean_equals("$.more", True), self._hand_over(itself))
            .otherwise(sfn.Succeed(self._scope, "Done"))
        )
        # The tick's output, what the console shows of it: what it claimed and what
        # became of each notification (about 60 bytes each: a full claim is far below the
        # 256 KB a state may hold).
        summary = sfn.Pass(
            self._scope,
            "Summary",
            parameters={
                "claimed": sfn.JsonPath.number_at("$.claim.claimed"),
                "more": sfn.JsonPath.string_at("$.claim.more"),
                "window": sfn.JsonPath.string_at("$.window"),
            },
        )
        delivered = sfn.Pass(
            self._scope,
            "Window outcome",
            # (StartSyncExecution gives the window's output as JSON text)
            parameters={
                "notifications": sfn.JsonPath.string_to_json(
                    sfn.JsonPath.string_at("$.window.Output")
                )
            },
            result_path="$.window",
        )
        failed = self._window_failed(activator)
        deliver = (
            tasks.CallAwsService(
                self._scope,
                "Deliver notifications",
                # A Standard execution runs an Express child and waits for it this way
                # (states:startExecution.sync cannot follow an Express execution). A window
                # that failed is an answer, not an error: its Status says so.
                service="sfn",
                action="startSyncExecution",
                iam_action="states:StartSyncExecution",
                iam_resources=[window.state_machine_arn],
                parameters={
                    "StateMachineArn": window.state_machine_arn,
                    "Input": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.claim")),
                },
                result_path="$.window",
                task_timeout=sfn.Timeout.duration(
                    Duration.seconds(EXPRESS_CAP_SECONDS + WINDOW_ANSWER_MARGIN_SECONDS)
                ),
            )
            .add_retry(
                # A start refused or never answered (a re-run is harmless: the database
                # decides what is still owed); a task timeout is not retried.
                errors=["Sfn.SfnException", "Sfn.StateMachineDeletingException"],
                interval=Duration.seconds(1),
                max_attempts=WINDOW_RETRIES,
                backoff_rate=2,
                jitter_strategy=sfn.JitterType.FULL,
            )
            .add_catch(failed, errors=["States.ALL"], result_path="$.window")
        )
        window_delivered = (
            sfn.Choice(self._scope, "Window delivered?")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present("$.window.Status"),
                    sfn.Condition.string_equals("$.window.Status", "SUCCEEDED"),
                    sfn.Condition.is_present("$.window.Output"),
                ),
                delivered.next(summary).next(more_due),
            )
            .otherwise(failed)
        )
        anything_claimed = (
            sfn.Choice(self._scope, "Anything claimed?")
            # An idle tick (most of them) ends right after the claim: one transition
            # fewer a minute is about 1.10 USD a month.
            .when(
                sfn.Condition.number_equals("$.claim.claimed", 0),
                sfn.Succeed(self._scope, "Nothing due"),
            )
            .otherwise(deliver.next(window_delivered))
        )
        claim = database_step(
            self._scope,
            "Claim due notifications",
            activator,
            sfn.TaskInput.from_object(
                {"execution": sfn.JsonPath.execution_id, "input": sfn.JsonPath.entire_payload}
            ),
            "$.claim",
        )
        return claim.next(anything_claimed)

    def _window_failed(self, activator: lambda_.IFunction) -> sfn.IChainable:
        """A window that failed, timed out or never started: what it still holds claimed
        goes back to pending at once (what it confirmed stays its own: sent, or unknown
        after the lease), the tick summarizes and fails, and its alarm goes off."""
        release = database_step(
            self._scope,
            "Release the window's claims",
            activator,
            sfn.TaskInput.from_object(
                {
                    "execution": sfn.JsonPath.execution_id,
                    "window": sfn.JsonPath.object_at("$.window"),
                }
            ),
            "$.window",
        )
        not_released = sfn.Pass(
            self._scope,
            "Claims not released",
            # (they lapse after the claim grace and are claimed again)
            parameters={
                "failed": True,
                "released": False,
                "window": sfn.JsonPath.object_at("$.window"),
                "error": sfn.JsonPath.string_at("$.releaseError.Error"),
            },
            result_path="$.window",
        )
        summary = sfn.Pass(
            self._scope,
            "Failure summary",
            parameters={
                "claimed": sfn.JsonPath.number_at("$.claim.claimed"),
                "more": sfn.JsonPath.string_at("$.claim.more"),
                "window": sfn.JsonPath.string_at("$.window"),
            },
        )
        fail = sfn.Fail(
            self._scope,
            "Window failed",
            error=WINDOW_FAILED,
            cause_path=sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$")),
        )
        release.add_catch(not_released, errors=["States.ALL"], result_path="$.releaseError")
        not_released.next(summary)
        return release.next(summary).next(fail)

    def _hand_over(self, itself: sfn.IStateMachine) -> sfn.IChainable:
        """Start a fresh execution (named from this one: a retried hand-over starts
        nothing twice) with the same input."""
        handed_over = sfn.Succeed(self._scope, "Handed over")
        hand_over = (
            tasks.StepFunctionsStartExecution(
                self._scope,
                "Hand over to a fresh execution",
                state_machine=itself,
                name=sfn.JsonPath.format(
                    "more-{}", sfn.JsonPath.hash(sfn.JsonPath.execution_name, "MD5")
                ),
                input=sfn.TaskInput.from_json_path_at("$$.Execution.Input"),
                integration_pattern=sfn.IntegrationPattern.REQUEST_RESPONSE,
                result_path=sfn.JsonPath.DISCARD,
            )
            # A retry after a start that succeeded finds its execution there already: not
            # retried (the first retrier that matches decides), and the summary stays the
            # tick's output.
            .add_retry(errors=[EXECUTION_EXISTS], max_attempts=0)
            .add_retry(
                errors=["States.TaskFailed"],
                interval=Duration.seconds(1),
                max_attempts=HAND_OVER_RETRIES,
                backoff_rate=2,
                jitter_strategy=sfn.JitterType.FULL,
            )
            .add_catch(handed_over, errors=[EXECUTION_EXISTS], result_path=sfn.JsonPath.DISCARD)
        )
        return hand_over.next(handed_over)
