"""The synthesized stack keeps its promises (aws_cdk.assertions): private, encrypted,
least privilege, bounded connections (docs/design.md)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from devstack.emulation.template import (
    EXPRESS,
    STANDARD,
    resources,
    schedule_of,
    state_machine,
    state_machine_definition,
    tick_schedule,
)
from escalator.channels import CHANNELS
from escalator.migrations import APPLICATION_ROLE, PURGE_ROLE
from infra.settings import SettingsError, StackSettings, connection_budget
from tests.support.contexts import ALARM_TOPIC, CUSTOM_CONTEXT, PRODUCER, REGISTRY

DATABASE_HANDLERS = {
    "escalator.handlers.initiator.handler",
    "escalator.handlers.activator.handler",
    "escalator.handlers.confirm.handler",
    "escalator.handlers.record.handler",
    "escalator.handlers.record_call_status.handler",
    "escalator.handlers.migrate.handler",
    "escalator.handlers.purge.handler",
}
PURGE_HANDLER = "escalator.handlers.purge.handler"
NOTIFIER_HANDLER = "escalator.handlers.notifier.handler"
LAUNCHER_HANDLER = "escalator.handlers.launch_migration.handler"
RECEIVER_HANDLER = "escalator.handlers.call_status.handler"
RUNTIME_HANDLERS = DATABASE_HANDLERS - {"escalator.handlers.migrate.handler", PURGE_HANDLER}


def of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, Any]:
    return resources(dict(template), resource_type)


def our_functions(template: Mapping[str, Any]) -> dict[str, Any]:
    return {
        logical_id: function
        for logical_id, function in of_type(template, "AWS::Lambda::Function").items()
        if function["Properties"].get("Handler", "").startswith("escalator.")
    }


def test_network_has_isolated_subnets_only_and_no_nat(template: dict[str, Any]) -> None:
    assert of_type(template, "AWS::EC2::NatGateway") == {}
    assert of_type(template, "AWS::EC2::InternetGateway") == {}
    subnets = of_type(template, "AWS::EC2::Subnet").values()
    assert len(subnets) == 2
    assert all(not subnet["Properties"]["MapPublicIpOnLaunch"] for subnet in subnets)
    # the functions in the VPC reach AWS APIs over IPv6 (tests/infra/test_network.py):
    # no interface endpoint at all
    assert of_type(template, "AWS::EC2::VPCEndpoint") == {}


def test_database_is_private_encrypted_and_tls_only(template: dict[str, Any]) -> None:
    ((_, database),) = of_type(template, "AWS::RDS::DBInstance").items()
    properties = database["Properties"]
    assert properties["PubliclyAccessible"] is False
    assert properties["StorageEncrypted"] is True
    assert properties["Engine"] == "postgres"
    assert int(properties["EngineVersion"].split(".")[0]) >= 16
    assert properties["DBInstanceClass"] == "db.t4g.micro"
    assert properties["BackupRetentionPeriod"] >= 1
    assert "resolve:secretsmanager" in json.dumps(properties["MasterUserPassword"])
    (parameters,) = of_type(template, "AWS::RDS::DBParameterGroup").values()
    assert parameters["Properties"]["Parameters"]["rds.force_ssl"] == "1"


def test_database_settings_come_from_context(customized: dict[str, Any]) -> None:
    ((_, database),) = of_type(customized, "AWS::RDS::DBInstance").items()
    assert database["Properties"]["DBInstanceClass"] == "db.t4g.small"
    assert database["Properties"]["DeletionProtection"] is False
    assert database["DeletionPolicy"] == "Snapshot"


def database_name(template: Mapping[str, Any]) -> str:
    ((_, database),) = of_type(template, "AWS::RDS::DBInstance").items()
    name: str = database["Properties"]["DBName"]
    return name


def test_database_port_is_open_only_to_the_database_functions(template: dict[str, Any]) -> None:
    ingress = [
        rule["Properties"]
        for rule in of_type(template, "AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"].get("FromPort") == 5432
    ]
    (rule,) = ingress
    assert "SourceSecurityGroupId" in rule
    assert "CidrIp" not in rule
    clients = rule["SourceSecurityGroupId"]["Fn::GetAtt"][0]
    for function in our_functions(template).values():
        vpc = function["Properties"].get("VpcConfig")
        if vpc is not None:
            # (what its other groups let out: tests/infra/test_network.py)
            assert {"Fn::GetAtt": [clients, "GroupId"]} in vpc["SecurityGroupIds"]
    for group in of_type(template, "AWS::EC2::SecurityGroup").values():
        assert all(
            egress.get("CidrIp") != "0.0.0.0/0"
            for egress in group["Properties"].get("SecurityGroupEgress", [])
        )


def test_database_functions_are_in_the_vpc_and_notifiers_outside(template: dict[str, Any]) -> None:
    functions = our_functions(template)
    handlers = {function["Properties"]["Handler"] for function in functions.values()}
    assert handlers == DATABASE_HANDLERS | {NOTIFIER_HANDLER, LAUNCHER_HANDLER, RECEIVER_HANDLER}
    notifiers = [
        function
        for function in functions.values()
        if function["Properties"]["Handler"] == NOTIFIER_HANDLER
    ]
    assert len(notifiers) == len(CHANNELS)
    for function in functions.values():
        in_vpc = "VpcConfig" in function["Properties"]
        assert in_vpc == (function["Properties"]["Handler"] in DATABASE_HANDLERS)
        variables = function["Properties"]["Environment"]["Variables"]
        if in_vpc:
            # TLS, verifying the instance's certificate against the RDS CA bundle that the
            # code asset ships (tests/infra/test_bundle.py finds it at this path)
            assert variables["DB_SSLMODE"] == "verify-full"
            assert variables["DB_SSLROOTCERT"] == "/var/task/escalator/certs/rds-global-bundle.pem"
            assert variables["DB_NAME"] == database_name(template)
            assert "Endpoint.Address" in json.dumps(variables["DB_HOST"])
            assert "DB_SECRET_ARN" not in variables  # no function in the VPC reads a secret
        if function["Properties"]["Handler"] in RUNTIME_HANDLERS:
            assert variables["DB_IAM_AUTH"] == "true"
            assert variables["DB_USER"] == APPLICATION_ROLE


def test_initiator_reads_the_queue_in_batches_of_10_with_partial_failures(
    template: dict[str, Any],
) -> None:
    ((_, mapping),) = of_type(template, "AWS::Lambda::EventSourceMapping").items()
    properties = mapping["Properties"]
    assert properties["BatchSize"] == 10
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["ScalingConfig"]["MaximumConcurrency"] >= 2


def test_database_connections_are_bounded_by_the_cap(
    template: dict[str, Any], customized: dict[str, Any]
) -> None:
    def total(template: Mapping[str, Any]) -> int:
        reserved = sum(
            function["Properties"].get("ReservedConcurrentExecutions", 0)
            for function in our_functions(template).values()
            if function["Properties"]["Handler"] in DATABASE_HANDLERS
        )
        assert all(
            "ReservedConcurrentExecutions" in function["Properties"]
            for function in our_functions(template).values()
            if function["Properties"]["Handler"]
            in DATABASE_HANDLERS - {"escalator.handlers.initiator.handler"}
        )
        ((_, mapping),) = of_type(template, "AWS::Lambda::EventSourceMapping").items()
        initiator = int(mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"])
        return int(reserved) + initiator

    # (the default template is synthesized with the default cap)
    assert total(template) <= StackSettings().db_connection_cap
    assert total(customized) <= CUSTOM_CONTEXT["db_connection_cap"]
    # a smaller cap reserves fewer: the cap, not a coincidence, bounds them
    assert total(customized) < total(template)
    with pytest.raises(SettingsError, match="at least 12"):
        connection_budget(8)


def test_schedule_starts_the_tick_with_its_period(template: dict[str, Any]) -> None:
    _, schedule = tick_schedule(template)
    assert schedule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert json.loads(schedule["Properties"]["Target"]["Input"]) == {"period_seconds": 60}
    tick_id, _ = state_machine(template, STANDARD)
    assert schedule["Properties"]["Target"]["Arn"] == {"Ref": tick_id}


def test_the_schedule_has_no_flexible_time_window(template: dict[str, Any]) -> None:
    # With a flexible window, EventBridge Scheduler may start a tick up to its maximum
    # window (minutes) after its time: the claim's lookahead covers the ticks' jitter
    # within their minute, not that, and notifications would go out late.
    _, schedule = tick_schedule(template)
    assert schedule["Properties"]["FlexibleTimeWindow"] == {"Mode": "OFF"}


def test_the_tick_is_standard_logged_and_traced(template: dict[str, Any]) -> None:
    _, machine = state_machine(template, STANDARD)
    properties = machine["Properties"]
    assert properties["TracingConfiguration"] == {"Enabled": True}
    logging = properties["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is False  # phone numbers stay out of the logs


def test_the_delivery_window_is_express_within_its_cap_and_logs_errors_unless_told(
    template: dict[str, Any], customized: dict[str, Any]
) -> None:
    # GIVEN the delivery window as deployed by default, and with delivery_log_level ALL
    for synthesized, level in ((template, "ERROR"), (customized, "ALL")):
        _, machine = state_machine(synthesized, EXPRESS)
        properties = machine["Properties"]
        # THEN it is Express, ends within Express's five minutes, is traced, and logs
        # at the level asked (ERROR: only failed windows), without execution data
        assert properties["StateMachineType"] == "EXPRESS"
        assert state_machine_definition(synthesized, EXPRESS)["TimeoutSeconds"] <= 300
        assert properties["TracingConfiguration"] == {"Enabled": True}
        logging = properties["LoggingConfiguration"]
        assert (logging["Level"], logging["IncludeExecutionData"]) == (level, False)
        (destination,) = logging["Destinations"]
        group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
        group = synthesized["Resources"][group_id]
        # (a vended-logs group: Step Functions may write it without a resource policy)
        assert group["Properties"]["LogGroupName"].startswith("/aws/vendedlogs/states/")
        assert group["Properties"]["RetentionInDays"] > 0


def test_migration_trigger_runs_after_the_database(template: dict[str, Any]) -> None:
    ((database_id, _),) = of_type(template, "AWS::RDS::DBInstance").items()
    ((_, trigger),) = of_type(template, "Custom::Trigger").items()
    assert database_id in trigger["DependsOn"]
    handler = trigger["Properties"]["HandlerArn"]
    migrate = [
        logical_id
        for logical_id, function in our_functions(template).items()
        if function["Properties"]["Handler"] == LAUNCHER_HANDLER
    ]
    (migrate_id,) = migrate
    version_id = handler["Ref"]
    version = template["Resources"][version_id]
    assert version["Type"] == "AWS::Lambda::Version"
    assert version["Properties"]["FunctionName"] == {"Ref": migrate_id}


def test_alarms_cover_dead_letters_executions_failures_and_the_schedule(
    template: dict[str, Any], customized: dict[str, Any]
) -> None:
    alarms = of_type(template, "AWS::CloudWatch::Alarm").values()
    metrics = {alarm["Properties"].get("MetricName") for alarm in alarms}
    assert metrics == {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "NotificationsRejected",
        "CallsUnansweredPercent",
        "MessagesUndeliveredPercent",
        "NotificationsFailed",
        "NotificationsExpired",
        "NotificationsUnknown",
        "ExecutionsStarted",
        # a window that failed or never started (AWS counts no window that never started)
        "DeliveryWindowsFailed",
        # the database's free storage, and RDS's events of its autoscaling ceiling
        # (tests/infra/test_storage_alarms.py)
        "FreeStorageSpace",
        "StorageEvents",
    }
    assert all("AlarmActions" not in alarm["Properties"] for alarm in alarms)
    # the tick's executions and the delivery windows' alike
    watched = Counter(
        json.dumps(alarm["Properties"]["Dimensions"])
        for alarm in alarms
        if alarm["Properties"].get("MetricName") in ("ExecutionsFailed", "ExecutionsTimedOut")
    )
    tick_id, _ = state_machine(template, STANDARD)
    window_id, _ = state_machine(template, EXPRESS)
    for machine_id in (tick_id, window_id):
        dimensions = [{"Name": "StateMachineArn", "Value": {"Ref": machine_id}}]
        assert watched[json.dumps(dimensions)] == 2, machine_id
    with_topic = of_type(customized, "AWS::CloudWatch::Alarm").values()
    assert all(alarm["Properties"]["AlarmActions"] == [ALARM_TOPIC] for alarm in with_topic)


@pytest.mark.xdist_group("cdk")
def test_producers_from_context_may_send_to_the_queue(customized: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match, Template

    Template.from_json(customized).has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": PRODUCER},
                                "Action": Match.array_with(["sqs:SendMessage"]),
                            }
                        )
                    ]
                )
            }
        },
    )


SECRET_VARIABLES = {
    "TWILIO_AUTH_TOKEN",
    "TWILIO_ACCOUNT_SID",
    "SMTP_PASSWORD",
    "SMTP_USERNAME",
    "PUBNUB_PUB_KEY",
    "PUBNUB_SUB_KEY",
    "DB_PASSWORD",
    "DATABASE_URL",
}


def test_no_secret_value_is_in_the_template(template: dict[str, Any]) -> None:
    for function in our_functions(template).values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert SECRET_VARIABLES.isdisjoint(variables)
    for secret in of_type(template, "AWS::SecretsManager::Secret").values():
        properties = secret["Properties"]
        assert "SecretString" not in properties
        assert "GenerateSecretString" in properties
    notifier_secrets = {
        variable
        for function in our_functions(template).values()
        for variable in function["Properties"]["Environment"]["Variables"]
        if variable.endswith("_SECRET_ARN") and variable != "DB_SECRET_ARN"
    }
    assert notifier_secrets == {"TWILIO_SECRET_ARN", "SMTP_SECRET_ARN", "PUBNUB_SECRET_ARN"}


def test_existing_provider_secrets_are_referenced_by_name(customized: dict[str, Any]) -> None:
    secrets = of_type(customized, "AWS::SecretsManager::Secret")
    assert len(secrets) == 3  # database, SMTP, PubNub: Twilio's is referenced
    assert "prod/twilio" in json.dumps(customized)


def test_caller_id_registry_from_context_reaches_the_migration(
    customized: dict[str, Any],
) -> None:
    (migrate,) = [
        function
        for function in our_functions(customized).values()
        if function["Properties"]["Handler"] == "escalator.handlers.migrate.handler"
    ]
    variables = migrate["Properties"]["Environment"]["Variables"]
    assert json.loads(variables["CALLER_ID_REGISTRY"]) == REGISTRY


def test_the_migration_runs_only_once_the_database_can_be_reached(
    template: dict[str, Any],
) -> None:
    ((_, trigger),) = of_type(template, "Custom::Trigger").items()
    needs = {
        *of_type(template, "AWS::RDS::DBInstance"),
        *of_type(template, "AWS::EC2::SecurityGroupIngress"),
        *of_type(template, "AWS::EC2::SecurityGroupEgress"),
        *of_type(template, "AWS::EC2::VPCEndpoint"),
    }
    assert needs <= set(trigger["DependsOn"])


def test_the_database_grows_its_storage_and_keeps_its_logs_for_the_retention(
    template: dict[str, Any],
) -> None:
    ((_, database),) = of_type(template, "AWS::RDS::DBInstance").items()
    properties = database["Properties"]
    assert int(properties["MaxAllocatedStorage"]) > int(properties["AllocatedStorage"])
    (retention,) = of_type(template, "Custom::LogRetention").values()
    assert retention["Properties"]["RetentionInDays"] == 30
    assert "/postgresql" in json.dumps(retention["Properties"]["LogGroupName"])


def test_only_this_accounts_schedules_may_use_the_scheduler_role(
    template: dict[str, Any],
) -> None:
    roles = [
        role
        for role in of_type(template, "AWS::IAM::Role").values()
        if "scheduler.amazonaws.com" in json.dumps(role["Properties"]["AssumeRolePolicyDocument"])
    ]
    assert len(roles) == 2  # the tick's schedule and the purge's
    for role in roles:
        (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Condition"] == {
            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        }


def test_more_than_an_inline_map_can_run_at_once_is_refused() -> None:
    with pytest.raises(SettingsError, match="max_concurrency must be from 1 to 40, got 41"):
        StackSettings(max_concurrency=41)
    assert StackSettings(max_concurrency=40).map_concurrency == 40


def policy_statements(template: Mapping[str, Any], function: Mapping[str, Any]) -> list[Any]:
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_runtime_functions_sign_in_by_iam_as_the_application_role_only(
    template: dict[str, Any],
) -> None:
    ((database_id, database),) = of_type(template, "AWS::RDS::DBInstance").items()
    assert database["Properties"]["EnableIAMDatabaseAuthentication"] is True
    runtime = [f for f in our_functions(template).values()
               if f["Properties"]["Handler"] in RUNTIME_HANDLERS]  # fmt: skip
    assert len(runtime) == 5
    for function in runtime:
        statements = policy_statements(template, function)
        connects = [s for s in statements if "rds-db:connect" in json.dumps(s["Action"])]
        (connect,) = connects
        resource = json.dumps(connect["Resource"])
        assert ":dbuser:" in resource
        assert f'"/{APPLICATION_ROLE}"' in resource
        assert database_id in resource  # the instance's own resource id
        assert not any("secretsmanager" in json.dumps(s["Action"]) for s in statements)


def test_only_the_launcher_outside_the_vpc_may_read_the_master_secret(
    template: dict[str, Any],
) -> None:
    ((_, database),) = of_type(template, "AWS::RDS::DBInstance").items()
    secret_id = database["Properties"]["MasterUserPassword"]["Fn::Join"][1][1]["Ref"]
    # the secret, or its attachment to the instance (whose Ref is the secret's ARN)
    names = {secret_id} | {
        logical_id
        for logical_id, attachment in of_type(
            template, "AWS::SecretsManager::SecretTargetAttachment"
        ).items()
        if attachment["Properties"]["SecretId"] == {"Ref": secret_id}
    }
    readers = [
        function["Properties"]["Handler"]
        for function in our_functions(template).values()
        if any(
            "secretsmanager:GetSecretValue" in json.dumps(statement["Action"])
            and any(f'"{name}"' in json.dumps(statement["Resource"]) for name in names)
            for statement in policy_statements(template, function)
        )
    ]
    assert readers == [LAUNCHER_HANDLER]
    (launcher,) = [f for f in our_functions(template).values()
                   if f["Properties"]["Handler"] == LAUNCHER_HANDLER]  # fmt: skip
    assert "VpcConfig" not in launcher["Properties"]


def test_status_callbacks_reach_a_public_url_whose_function_holds_the_token_not_the_database(
    template: dict[str, Any],
) -> None:
    functions = our_functions(template)
    ((url_id, url),) = of_type(template, "AWS::Lambda::Url").items()
    receiver_id = url["Properties"]["TargetFunctionArn"]["Fn::GetAtt"][0]
    receiver = functions[receiver_id]
    assert receiver["Properties"]["Handler"] == RECEIVER_HANDLER
    assert url["Properties"]["AuthType"] == "NONE"  # Twilio signs; it cannot sign SigV4
    # outside the VPC, bounded, reading the Twilio secret and invoking the recorder only
    assert "VpcConfig" not in receiver["Properties"]
    assert receiver["Properties"]["ReservedConcurrentExecutions"] >= 1
    variables = receiver["Properties"]["Environment"]["Variables"]
    assert set(variables) == {
        "POWERTOOLS_SERVICE_NAME",
        "CALL_STATUS_FUNCTION",
        "TWILIO_SECRET_ARN",
    }
    recorder_id = variables["CALL_STATUS_FUNCTION"]["Ref"]
    recorder = functions[recorder_id]
    assert recorder["Properties"]["Handler"] == "escalator.handlers.record_call_status.handler"
    assert "VpcConfig" in recorder["Properties"]
    statements = policy_statements(template, receiver)
    actions = sorted(
        action
        for statement in statements
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        if not action.startswith("xray:")
    )
    assert actions == ["lambda:InvokeFunction", "secretsmanager:GetSecretValue"]
    invoke = next(s for s in statements if s["Action"] == "lambda:InvokeFunction")
    assert recorder_id in json.dumps(invoke["Resource"])
    assert "Twilio" in json.dumps(variables["TWILIO_SECRET_ARN"])
    # the phone and SMS notifiers ask Twilio to call back at that URL, and read the one
    # Twilio secret the receiver reads
    twilio_notifiers = [
        f["Properties"]["Environment"]["Variables"]
        for f in functions.values()
        if "TWILIO_SECRET_ARN" in f["Properties"]["Environment"]["Variables"]
        and f["Properties"]["Handler"] == NOTIFIER_HANDLER
    ]
    assert len(twilio_notifiers) == 2
    for notifier in twilio_notifiers:
        assert notifier["TWILIO_STATUS_CALLBACK_URL"] == {"Fn::GetAtt": [url_id, "FunctionUrl"]}
        assert notifier["TWILIO_SECRET_ARN"] == variables["TWILIO_SECRET_ARN"]


@pytest.mark.parametrize(
    ("metric", "words"),
    [
        ("CallsUnansweredPercent", "calls that ended in 15 minutes were not answered"),
        ("MessagesUndeliveredPercent", "text messages that ended in 15 minutes never reached"),
    ],
)
def test_each_providers_failed_share_alarm_watches_it_over_15_minutes(
    template: dict[str, Any], metric: str, words: str
) -> None:
    (alarm,) = [
        alarm["Properties"]
        for alarm in of_type(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == metric
    ]
    assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"]) == ("Average", 900, 50)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert words in alarm["AlarmDescription"]
    with pytest.raises(SettingsError, match="unanswered_calls_alarm_percent must be from 1 to 100"):
        StackSettings(unanswered_calls_alarm_percent=0)


def test_the_purge_runs_hourly_in_the_vpc_as_its_own_role_keeping_the_retention_period(
    template: dict[str, Any], customized: dict[str, Any]
) -> None:
    ((purge_id, purge),) = [
        (logical_id, function)
        for logical_id, function in our_functions(template).items()
        if function["Properties"]["Handler"] == PURGE_HANDLER
    ]
    variables = purge["Properties"]["Environment"]["Variables"]
    assert variables["DB_USER"] == PURGE_ROLE
    assert variables["DB_IAM_AUTH"] == "true"
    assert variables["RETENTION_DAYS"] == "30"
    assert purge["Properties"]["ReservedConcurrentExecutions"] == 1
    assert purge["Properties"]["Timeout"] == 300
    # it signs in as the purge's role only (and no other function does)
    connects = [
        statement
        for statement in policy_statements(template, purge)
        if statement["Action"] == "rds-db:connect"
    ]
    assert len(connects) == 1
    assert "dbuser:" in json.dumps(connects[0]["Resource"])
    assert PURGE_ROLE in json.dumps(connects[0]["Resource"])
    assert APPLICATION_ROLE not in json.dumps(connects[0]["Resource"])
    # started every hour by a schedule of its own, whose role may invoke it and nothing else
    _, schedule = schedule_of(template, purge_id)
    assert schedule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    role_id = schedule["Properties"]["Target"]["RoleArn"]["Fn::GetAtt"][0]
    granted = [
        statement
        for policy in of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert {statement["Action"] for statement in granted} == {"lambda:InvokeFunction"}
    assert all(purge_id in json.dumps(statement["Resource"]) for statement in granted)
    # the setting reaches it
    ((_, customized_purge),) = [
        (logical_id, function)
        for logical_id, function in our_functions(customized).items()
        if function["Properties"]["Handler"] == PURGE_HANDLER
    ]
    assert customized_purge["Properties"]["Environment"]["Variables"]["RETENTION_DAYS"] == "45"


def test_a_retention_period_under_a_day_is_refused() -> None:
    with pytest.raises(SettingsError, match="retention_days must be at least 1, got 0"):
        StackSettings(retention_days=0)
