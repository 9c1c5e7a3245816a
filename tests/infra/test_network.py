"""The network gives the functions in the VPC the one way out they need, at no hourly
charge: IPv6, through an egress-only internet gateway, to AWS's dual-stack endpoints. No
NAT gateway, no VPC endpoint, no IPv4 route out, nothing in from the internet; and the
SDK the functions ship resolves every AWS API they may call to a dual-stack host."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore import xform_name
from botocore.config import Config

from devstack.emulation.template import REGION
from tests.infra.test_stack import of_type, our_functions, policy_statements

LAMBDA_REQUIREMENTS = Path(__file__).resolve().parents[2] / "lambdas" / "requirements.txt"
INITIATOR = "escalator.handlers.initiator.handler"
DATABASE_PORT = 5432
DUAL_STACK_SUFFIX = ".api.aws"
# IAM's service prefix where botocore names the service otherwise.
BOTOCORE_NAMES = {"states": "stepfunctions"}
# Actions on a function's role that no client in the function sends through the VPC.
NOT_CALLED_FROM_THE_VPC = {
    "rds-db",  # the database token: the function signs it locally, no request
    "xray",  # trace segments go by UDP to the daemon Lambda runs, outside the VPC
    "logs",  # Lambda itself ships what the function prints
}
# What CDK puts in a group that allows no egress at all: a rule no packet matches.
NO_EGRESS_PLACEHOLDER = {"CidrIp": "255.255.255.255/32", "IpProtocol": "icmp"}


def in_vpc(template: Mapping[str, Any]) -> dict[str, Any]:
    """Escalator's functions in the VPC, by logical id."""
    return {
        logical_id: function
        for logical_id, function in our_functions(template).items()
        if "VpcConfig" in function["Properties"]
    }


def initiator_id(template: Mapping[str, Any]) -> str:
    (found,) = [logical_id for logical_id, function in our_functions(template).items()
                if function["Properties"]["Handler"] == INITIATOR]  # fmt: skip
    return found


def referenced(value: Any) -> str:
    """The logical id a ``Ref`` or ``Fn::GetAtt`` names."""
    return str(value["Ref"]) if "Ref" in value else str(value["Fn::GetAtt"][0])


def function_subnets(template: Mapping[str, Any]) -> set[str]:
    subnets = {
        referenced(subnet)
        for function in in_vpc(template).values()
        for subnet in function["Properties"]["VpcConfig"]["SubnetIds"]
    }
    assert subnets
    return subnets


def routes_of(template: Mapping[str, Any], subnet: str) -> list[dict[str, Any]]:
    (table,) = [
        referenced(association["Properties"]["RouteTableId"])
        for association in of_type(template, "AWS::EC2::SubnetRouteTableAssociation").values()
        if referenced(association["Properties"]["SubnetId"]) == subnet
    ]
    return [
        route["Properties"]
        for route in of_type(template, "AWS::EC2::Route").values()
        if referenced(route["Properties"]["RouteTableId"]) == table
    ]


def test_the_vpc_has_an_amazon_provided_ipv6_block(template: dict[str, Any]) -> None:
    ((vpc_id, _),) = of_type(template, "AWS::EC2::VPC").items()
    blocks = [block["Properties"] for block in of_type(template, "AWS::EC2::VPCCidrBlock").values()]
    assert blocks == [{"AmazonProvidedIpv6CidrBlock": True, "VpcId": {"Ref": vpc_id}}]


def test_every_subnet_of_a_function_in_the_vpc_is_dual_stack(template: dict[str, Any]) -> None:
    subnets = of_type(template, "AWS::EC2::Subnet")
    # Lambda lets a function out over IPv6 only if every one of its subnets has IPv6.
    for subnet in function_subnets(template):
        properties = subnets[subnet]["Properties"]
        assert "Fn::Cidr" in json.dumps(properties["Ipv6CidrBlock"]), subnet
        assert properties["AssignIpv6AddressOnCreation"] is True
        assert properties["MapPublicIpOnLaunch"] is False
    for function in in_vpc(template).values():
        assert function["Properties"]["VpcConfig"]["Ipv6AllowedForDualStack"] is True
    # The database is in the same subnets and stays IPv4-only and private.
    ((_, database),) = of_type(template, "AWS::RDS::DBInstance").items()
    assert database["Properties"].get("NetworkType", "IPV4") == "IPV4"
    assert database["Properties"]["PubliclyAccessible"] is False
    (group,) = of_type(template, "AWS::RDS::DBSubnetGroup").values()
    assert {referenced(s) for s in group["Properties"]["SubnetIds"]} <= function_subnets(template)


def test_the_only_way_out_is_ipv6_through_an_egress_only_gateway(template: dict[str, Any]) -> None:
    ((gateway, _),) = of_type(template, "AWS::EC2::EgressOnlyInternetGateway").items()
    egress_only = {
        "DestinationIpv6CidrBlock": "::/0",
        "EgressOnlyInternetGatewayId": {"Ref": gateway},
    }
    for subnet in function_subnets(template):
        routes = routes_of(template, subnet)
        assert [{k: v for k, v in r.items() if k != "RouteTableId"} for r in routes] == [
            egress_only
        ], subnet
    # Nothing else leads out, or in: no IPv4 route at all, no gateway that bills by the
    # hour, none that lets the internet in, no endpoint.
    for route in of_type(template, "AWS::EC2::Route").values():
        assert "DestinationCidrBlock" not in route["Properties"]
        assert "EgressOnlyInternetGatewayId" in route["Properties"]
    for kind in (
        "AWS::EC2::NatGateway",
        "AWS::EC2::InternetGateway",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::EC2::VPCEndpoint",
        "AWS::EC2::TransitGatewayAttachment",
    ):
        assert of_type(template, kind) == {}, kind


def egress_rules(template: Mapping[str, Any], group: str) -> list[dict[str, Any]]:
    """The group's egress rules, inline and standalone, without their descriptions."""
    groups = of_type(template, "AWS::EC2::SecurityGroup")
    rules = list(groups[group]["Properties"].get("SecurityGroupEgress", []))
    rules += [
        rule["Properties"]
        for rule in of_type(template, "AWS::EC2::SecurityGroupEgress").values()
        if referenced(rule["Properties"]["GroupId"]) == group
    ]
    return [{k: v for k, v in rule.items() if k not in ("Description", "GroupId")}
            for rule in rules]  # fmt: skip


def beyond_the_database(template: Mapping[str, Any], function: Mapping[str, Any]) -> list[Any]:
    """What the function's security groups let out other than PostgreSQL to the database."""
    ((_, database),) = of_type(template, "AWS::RDS::DBInstance").items()
    (database_group,) = database["Properties"]["VPCSecurityGroups"]
    to_the_database = {
        "IpProtocol": "tcp",
        "FromPort": DATABASE_PORT,
        "ToPort": DATABASE_PORT,
        "DestinationSecurityGroupId": database_group,
    }
    return [
        rule
        for group in function["Properties"]["VpcConfig"]["SecurityGroupIds"]
        for rule in egress_rules(template, referenced(group))
        if rule != to_the_database
        and {k: rule.get(k) for k in NO_EGRESS_PLACEHOLDER} != NO_EGRESS_PLACEHOLDER
    ]


HTTPS_OVER_IPV6 = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIpv6": "::/0"}


def test_only_the_initiator_may_leave_the_vpc_and_only_by_https_over_ipv6(
    template: dict[str, Any],
) -> None:
    initiator = initiator_id(template)
    for logical_id, function in in_vpc(template).items():
        beyond = beyond_the_database(template, function)
        assert beyond == ([HTTPS_OVER_IPV6] if logical_id == initiator else []), logical_id
    for group in of_type(template, "AWS::EC2::SecurityGroup"):
        assert all("0.0.0.0/0" not in json.dumps(rule) for rule in egress_rules(template, group))
    # and nothing may come in from an address, only from the database clients' group
    for ingress in of_type(template, "AWS::EC2::SecurityGroupIngress").values():
        assert "CidrIp" not in ingress["Properties"]
        assert "CidrIpv6" not in ingress["Properties"]


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def called_actions(template: Mapping[str, Any]) -> dict[str, dict[str, set[str]]]:
    """For each function in the VPC, the AWS APIs it may call, as botocore names them:
    service -> IAM actions (the operations, or ``*`` patterns). From the actions its
    role's policies allow, save those no request from the VPC carries (its managed
    policies are Lambda's own: logs, and the network interfaces Lambda makes). The SQS
    event source's actions stay in, although Lambda's poller, not the function, uses
    them: checking one endpoint too many costs nothing."""
    calls: dict[str, dict[str, set[str]]] = {}
    for logical_id, function in in_vpc(template).items():
        services: dict[str, set[str]] = {}
        for statement in policy_statements(template, function):
            if statement["Effect"] != "Allow":
                continue
            for action in listed(statement["Action"]):
                prefix, _, operation = action.partition(":")
                if prefix not in NOT_CALLED_FROM_THE_VPC:
                    services.setdefault(prefix, set()).add(operation)
        calls[logical_id] = {
            botocore_service(prefix): operations for prefix, operations in services.items()
        }
    return calls


def botocore_service(prefix: str) -> str:
    """The botocore service an IAM service prefix stands for (one it knows, or this fails)."""
    service = BOTOCORE_NAMES.get(prefix, prefix)
    model = botocore.session.Session().get_service_model(service)
    assert prefix in (service, model.signing_name, model.endpoint_prefix), (prefix, service)
    return service


# A value of each type, for the request's required members (validation is off: only
# the endpoint matters).
_PLACEHOLDERS = {"string": "x", "integer": 1, "long": 1, "boolean": False, "structure": {},
                 "list": [], "map": {}, "blob": b"", "timestamp": 0}  # fmt: skip


class _Sent(Exception):
    """Raised in place of sending: the request, signed and addressed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _stop(request: Any, **_: Any) -> None:
    raise _Sent(request.url)


def hosts(
    service: str,
    operations: set[str],
    environment: Mapping[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The host of the request a client would send for each of ``operations``, the
    client made in the function's environment: its variables, none of this machine's."""
    found = {}
    with monkeypatch.context() as patched:
        for variable in [v for v in os.environ if v.startswith("AWS_")]:
            patched.delenv(variable)
        patched.setenv("AWS_CONFIG_FILE", os.devnull)
        patched.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        for variable, value in environment.items():
            if isinstance(value, str):  # the rest are ARNs and addresses, not settings
                patched.setenv(variable, value)
        session = botocore.session.Session()
        model = session.get_service_model(service)
        client = session.create_client(
            service,
            region_name=REGION,
            aws_access_key_id="placeholder",
            aws_secret_access_key="placeholder",
            config=Config(parameter_validation=False, retries={"max_attempts": 1}),
        )
        client.meta.events.register("before-send", _stop)
        for operation in sorted(operations):
            if operation not in model.operation_names:  # a pattern, or IAM's own name
                found[operation] = str(urlsplit(client.meta.endpoint_url).hostname)
                continue
            shape = model.operation_model(operation).input_shape
            required = shape.required_members if shape is not None else []
            params = {name: _PLACEHOLDERS[shape.members[name].type_name] for name in required}
            with pytest.raises(_Sent) as sent:
                getattr(client, xform_name(operation))(**params)
            found[operation] = str(urlsplit(sent.value.url).hostname)
    return found


def endpoint_hosts(template: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``function service:operation`` -> the host its request goes to."""
    found = {}
    for logical_id, services in called_actions(template).items():
        properties = of_type(template, "AWS::Lambda::Function")[logical_id]["Properties"]
        environment = properties["Environment"]["Variables"]
        for service, operations in services.items():
            for operation, host in hosts(service, operations, environment, monkeypatch).items():
                found[f"{logical_id} {service}:{operation}"] = host
    return found


def pinned(package: str) -> str:
    (line,) = [line for line in LAMBDA_REQUIREMENTS.read_text().splitlines()
               if line.startswith(f"{package}==")]  # fmt: skip
    return line.partition("==")[2]


def test_every_aws_api_a_function_in_the_vpc_calls_is_reached_at_a_dual_stack_host(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK checked here is the one the functions ship.
    assert version("botocore") == pinned("botocore")
    assert version("boto3") == pinned("boto3")
    # The initiator starts delivery windows: what this way out of the VPC is for.
    calls = called_actions(template)
    assert "StartExecution" in calls[initiator_id(template)].get("stepfunctions", set())
    found = endpoint_hosts(template, monkeypatch)
    assert found
    assert {call: host for call, host in found.items()
            if not host.endswith(DUAL_STACK_SUFFIX)} == {}  # fmt: skip
    # Each function that calls out may: HTTPS over IPv6.
    for logical_id in {call.split()[0] for call in found}:
        function = in_vpc(template)[logical_id]
        assert HTTPS_OVER_IPV6 in beyond_the_database(template, function), logical_id


def test_without_the_dual_stack_setting_the_sdk_would_call_ipv4_only_hosts(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above sees the setting: without it, the same calls go to the IPv4
    endpoints (``states.<region>.amazonaws.com``), which IPv6 does not reach."""
    stripped = copy.deepcopy(template)
    for function in in_vpc(stripped).values():
        function["Properties"]["Environment"]["Variables"].pop("AWS_USE_DUALSTACK_ENDPOINT", None)
    found = endpoint_hosts(stripped, monkeypatch)
    assert found
    assert all(host.endswith(".amazonaws.com") for host in found.values()), found
