"""The delivery state machine, generated from the channel registry (JSONPath only).

Claim due notifications -> Anything claimed? (Nothing due) -> Deliver notifications (Map:
Wait until due -> Confirm still wanted -> Which channel? -> one task per channel ->
Record delivery / Record failure) -> More due? (hand over to a fresh execution) / Done.

One execution claims and delivers one batch: a Standard execution's history holds at
most 25,000 events, and each delivery writes about 23, so instead of looping, an
execution that leaves more due starts the next one, named from its own name (a retried
hand-over starts nothing twice) and with the same input.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from escalator.channels import CHANNELS
from infra.settings import THROTTLE_RETRY, ThrottleRetry

DEFAULT_MAX_CONCURRENCY = 40
# Raised by the notifiers (escalator.errors) and by the database functions.
TRANSIENT_DELIVERY_ERROR = "TransientDeliveryError"
DATABASE_ERROR = "DatabaseError"
# Lambda did not run the function at all (throttled): safe to retry even for a notifier.
# Lambda.ServiceException is not among them: the function may have placed the call.
THROTTLED = "Lambda.TooManyRequestsException"
NOTIFIER_ATTEMPTS = 3
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
# The record step holds a provider's receipt: it rides out a database outage of
# minutes (each delay at most this long) before it gives the receipt up.
RECORD_DATABASE_RETRY_ATTEMPTS = 12
RECORD_DATABASE_RETRY_MAX_DELAY_SECONDS = 60


def throttle_retry(
    task: sfn.TaskStateBase, retry: ThrottleRetry = THROTTLE_RETRY
) -> sfn.TaskStateBase:
    """Retry a throttled invocation (all reserved sandboxes busy) until a sandbox is free."""
    return task.add_retry(
        errors=[THROTTLED],
        interval=Duration.seconds(retry.interval_seconds),
        max_delay=Duration.seconds(retry.max_delay_seconds),
        max_attempts=retry.attempts,
        backoff_rate=2,
        jitter_strategy=sfn.JitterType.FULL,
    )


def delivery_definition(
    scope: Construct,
    *,
    activator: lambda_.IFunction,
    confirm: lambda_.IFunction,
    record: lambda_.IFunction,
    notifiers: Mapping[str, lambda_.IFunction],
    itself: sfn.IStateMachine,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> sfn.IChainable:
    """The states of the delivery state machine."""
    return _Definition(scope, record=record).chain(
        activator=activator,
        confirm=confirm,
        notifiers=notifiers,
        itself=itself,
        max_concurrency=max_concurrency,
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

    def chain(
        self,
        *,
        activator: lambda_.IFunction,
        confirm: lambda_.IFunction,
        notifiers: Mapping[str, lambda_.IFunction],
        itself: sfn.IStateMachine,
        max_concurrency: int,
    ) -> sfn.IChainable:
        """Claim -> Anything claimed? -> Deliver notifications -> More due? -> hand over."""
        deliver_all = sfn.Map(
            self._scope,
            "Deliver notifications",
            items_path="$.claim.notifications",
            item_selector={
                "notification": sfn.JsonPath.string_at("$$.Map.Item.Value"),
                "execution": sfn.JsonPath.execution_id,
            },
            max_concurrency=max_concurrency,
            result_path=sfn.JsonPath.DISCARD,
        ).item_processor(self._deliver_one(confirm, notifiers))
        more_due = (
            sfn.Choice(self._scope, "More due?")
            .when(sfn.Condition.boolean_equals("$.claim.more", True), self._hand_over(itself))
            .otherwise(sfn.Succeed(self._scope, "Done"))
        )
        # An idle tick (most of them) ends right after the claim: one transition fewer a
        # minute is about 1.10 USD a month.
        anything_claimed = (
            sfn.Choice(self._scope, "Anything claimed?")
            .when(
                sfn.Condition.number_equals("$.claim.claimed", 0),
                sfn.Succeed(self._scope, "Nothing due"),
            )
            .otherwise(deliver_all.next(more_due))
        )
        claim = self._database_step(
            "Claim due notifications",
            activator,
            sfn.TaskInput.from_object(
                {"execution": sfn.JsonPath.execution_id, "input": sfn.JsonPath.entire_payload}
            ),
            "$.claim",
        )
        return claim.next(anything_claimed)

    def _database_step(
        self,
        task_id: str,
        function: lambda_.IFunction,
        payload: sfn.TaskInput,
        result_path: str,
        *,
        database_attempts: int = 3,
        database_max_delay: int | None = None,
    ) -> sfn.TaskStateBase:
        """A task of a database function: idempotent under its own retry, so it retries
        an answer lost after the function ran, a database failure, and a throttle."""
        task = tasks.LambdaInvoke(
            self._scope,
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
            max_attempts=9,
            max_delay=Duration.seconds(8),
            backoff_rate=2,
            jitter_strategy=sfn.JitterType.FULL,
        )
        task.add_retry(
            errors=[DATABASE_ERROR],
            interval=Duration.seconds(2),
            max_attempts=database_attempts,
            max_delay=None if database_max_delay is None else Duration.seconds(database_max_delay),
            backoff_rate=2,
            jitter_strategy=sfn.JitterType.FULL,
        )
        return throttle_retry(task)

    def _record_step(
        self, task_id: str, key: str, outcome_lost: sfn.IChainable
    ) -> sfn.TaskStateBase:
        """Record what ``$.<key>`` holds (a receipt, a failure, an unknown outcome)."""
        payload = {**_NOTIFICATION_KEYS, key: sfn.JsonPath.object_at(f"$.{key}")}
        return self._database_step(
            task_id,
            self._record,
            sfn.TaskInput.from_object(payload),
            "$.recorded",
            database_attempts=RECORD_DATABASE_RETRY_ATTEMPTS,
            database_max_delay=RECORD_DATABASE_RETRY_MAX_DELAY_SECONDS,
        ).add_catch(outcome_lost, errors=["States.ALL"], result_path="$.recordError")

    def _deliver_one(
        self, confirm: lambda_.IFunction, notifiers: Mapping[str, lambda_.IFunction]
    ) -> sfn.IChainable:
        """One notification: Wait until due -> Confirm still wanted -> Still wanted? ->
        Which channel? -> its notifier -> Record."""
        confirm_step = self._database_step(
            "Confirm still wanted",
            confirm,
            sfn.TaskInput.from_object(
                {
                    **_NOTIFICATION_KEYS,
                    "due": sfn.JsonPath.string_at("$.notification.due"),
                    # A retry of this entry of the step, told apart from a second run.
                    "retry_count": sfn.JsonPath.number_at("$$.State.RetryCount"),
                    "entered": sfn.JsonPath.string_at("$$.State.EnteredTime"),
                }
            ),
            "$.confirmed",
        ).add_catch(
            sfn.Pass(self._scope, "Not confirmed"),
            errors=["States.ALL"],
            result_path="$.confirmError",
        )
        still_wanted = (
            sfn.Choice(self._scope, "Still wanted?")
            .when(
                sfn.Condition.boolean_equals("$.confirmed.deliver", False),
                sfn.Succeed(self._scope, "Not delivered"),
            )
            .otherwise(self._which_channel(notifiers))
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
        outcome_lost = sfn.Pass(self._scope, "Outcome not recorded")
        record_delivery = self._record_step("Record delivery", "receipt", outcome_lost)
        record_failure = self._record_step("Record failure", "failure", outcome_lost)
        # The provider may have it: never retried, never called failed.
        record_unknown = self._record_step("Record unknown outcome", "unknown", outcome_lost)
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
            interval=Duration.seconds(1),
            max_attempts=NOTIFIER_ATTEMPTS - 1,
            backoff_rate=2,
            jitter_strategy=sfn.JitterType.FULL,
        )
        return throttle_retry(notify)

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
            .add_retry(
                errors=["States.TaskFailed"],
                interval=Duration.seconds(1),
                max_attempts=3,
                backoff_rate=2,
                jitter_strategy=sfn.JitterType.FULL,
            )
            # A retry after a start that succeeded finds its execution there already.
            .add_catch(handed_over, errors=["StepFunctions.ExecutionAlreadyExistsException"])
        )
        return hand_over.next(handed_over)
