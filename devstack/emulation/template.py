"""The CloudFormation template of the CDK app, as the local stack and the tests use it.

Synthesizing starts the CDK's Node.js process and takes seconds, so it happens once per
process, and once per test session when ``ESCALATOR_TEMPLATE`` names a file: the first
process to need the template synthesizes it there (under a lock), the others read it;
likewise for each other context (``shared_synthesis``).

``ESCALATOR_TEMPLATE_FILE`` gives a template instead (a synthesized one, perhaps edited:
``devstack.mutation.least_privilege`` gives each test session a template with one grant taken
away): every process that asks for the synthesized template reads that file, and
nothing is synthesized.
"""

from __future__ import annotations

import copy
import fcntl
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# A file to share one synthesized template between processes (set by the test session).
TEMPLATE_FILE_VARIABLE = "ESCALATOR_TEMPLATE"
# A template to use instead of synthesizing one (read by every process that asks).
GIVEN_TEMPLATE_VARIABLE = "ESCALATOR_TEMPLATE_FILE"
STACK_NAME = "Escalator"
REGION = "eu-central-1"
ACCOUNT = "123456789012"


@functools.cache
def synthesized_template() -> dict[str, Any]:
    """The template (bundling skipped: the local stack and tests run the code in-process),
    or the one ``ESCALATOR_TEMPLATE_FILE`` names."""
    given = given_template_file()
    if given is not None:
        return load_template(given)
    return shared_synthesis()


def shared_synthesis(**context: Any) -> dict[str, Any]:
    """The template synthesized with these context values: once per test session when
    ``ESCALATOR_TEMPLATE`` names a file (the defaults' in that file, each other context's
    beside it, named by its digest), by the first process to need it, under a lock; the
    others read it. Without it, synthesized now. A process's first synthesis costs most
    of the time (the CDK's modules load), so one process making them all saves the rest
    that much each."""
    name = ""
    if context:
        digest = hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()
        name = digest[:16]
    return shared(name, lambda: synthesize(**context))


def shared_nag_findings() -> dict[str, Any]:
    """``nag_findings()``, shared as the templates are (the session's synthesis makes
    them after its templates, in the process whose CDK is loaded already)."""
    return shared("nag", nag_findings)


def shared(name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What ``make`` returns, made once per test session when ``ESCALATOR_TEMPLATE``
    names a file (kept beside it, ``name`` in its name), under a lock; made now without."""
    shared = os.environ.get(TEMPLATE_FILE_VARIABLE)
    if not shared:
        return make()
    path = Path(shared)
    if name:
        path = path.with_name(f"{path.stem}-{name}{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            made = make()
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps(made), encoding="utf-8")
            partial.replace(path)
            return made
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def given_template_file() -> Path | None:
    """The template file ``ESCALATOR_TEMPLATE_FILE`` names, if any."""
    given = os.environ.get(GIVEN_TEMPLATE_VARIABLE)
    return Path(given) if given else None


def synthesized_with(**context: str) -> dict[str, Any]:
    """The template as synthesized with these providers' settings (context keys of the
    channel registry: ``pubnub_origin=...``): the template (the one given as
    ``ESCALATOR_TEMPLATE_FILE``, if any), each setting put in the environment of its
    channel's notifier as the stack puts it there (all a provider's setting changes:
    tests/infra/test_given_template.py compares it with a synthesis), and nothing
    synthesized."""
    return with_provider_settings(synthesized_template(), **context)


def with_provider_settings(template: dict[str, Any], **context: str) -> dict[str, Any]:
    """A copy of ``template`` with these providers' settings (``synthesized_with``) in
    the environment of their channels' notifiers."""
    from escalator.channels import CHANNELS

    template = copy.deepcopy(template)
    functions = resources(template, "AWS::Lambda::Function")
    for key, value in context.items():
        owners = [(name, channel) for name, channel in CHANNELS.items() if key in channel.settings]
        if not owners:
            raise TemplateError(f"{key!r} is not a setting of any channel")
        for name, channel in owners:
            (function,) = [
                function
                for logical_id, function in functions.items()
                if logical_id.startswith(f"Functions{NOTIFIER_PREFIX}{name.title()}")
            ]
            variables = function["Properties"].setdefault("Environment", {})
            variables.setdefault("Variables", {})[channel.settings[key]] = str(value)
    return template


# A channel's notifier is the function infra.functions names Notifier<Channel>.
NOTIFIER_PREFIX = "Notifier"


class TemplateError(ValueError):
    """A template file that is not a synthesized Escalator stack."""


def load_template(path: Path) -> dict[str, Any]:
    """A synthesized template from a file (``cdk synth``'s ``cdk.out/Escalator.template.json``,
    or a copy an operator edited): what is about to be deployed. Raises ``TemplateError``
    naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read the template {path}: {exc}") from exc
    try:
        template = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"the template {path} is not JSON: {exc}") from exc
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise TemplateError(f"the template {path} has no Resources")
    machines = resources(template, "AWS::StepFunctions::StateMachine").values()
    types = sorted(m.get("Properties", {}).get("StateMachineType", STANDARD) for m in machines)
    if types != [EXPRESS, STANDARD]:
        raise TemplateError(
            f"the template {path} is not Escalator's: it needs one Standard and one Express "
            f"state machine, it has {', '.join(types) or 'none'}"
        )
    return template


def synthesize(**context: Any) -> dict[str, Any]:
    """Synthesize the stack now, with these context values, bundling skipped."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.stack import EscalatorStack

    # (an app without an outdir leaves an empty cdk.out* directory in /tmp behind)
    with tempfile.TemporaryDirectory(prefix="escalator-cdk-") as outdir:
        app = cdk.App(outdir=outdir, context={"aws:cdk:bundling-stacks": [], **context})
        return dict(Template.from_stack(EscalatorStack(app, STACK_NAME)).to_json())


def nag_findings() -> dict[str, Any]:
    """What cdk-nag's AwsSolutions checks find in the stack with its defaults: its errors
    and warnings (``[construct path, message]``), and the findings the stack accepts
    (``suppressions``: each rule's id and the reason given)."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Annotations, Match
    from cdk_nag import AwsSolutionsChecks

    from infra.stack import EscalatorStack

    with tempfile.TemporaryDirectory(prefix="escalator-cdk-") as outdir:
        app = cdk.App(outdir=outdir, context={"aws:cdk:bundling-stacks": []})
        stack = EscalatorStack(app, STACK_NAME)
        cdk.Aspects.of(app).add(AwsSolutionsChecks())
        annotations = Annotations.from_stack(stack)
        errors = annotations.find_error("*", Match.string_like_regexp(".*"))
        warnings = annotations.find_warning(
            "*", Match.string_like_regexp("AwsSolutions-.*|CdkNagValidationFailure.*")
        )
        template = app.synth().get_stack_by_name(STACK_NAME).template
    return {
        "errors": [[error.id, str(error.entry.data)] for error in errors],
        "warnings": [[warning.id, str(warning.entry.data)] for warning in warnings],
        "suppressions": [
            suppression
            for resource in template["Resources"].values()
            for suppression in resource.get("Metadata", {})
            .get("cdk_nag", {})
            .get("rules_to_suppress", [])
        ],
    }


def resources(template: Mapping[str, Any], resource_type: str) -> dict[str, Any]:
    """The template's resources of one type, by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


STANDARD = "STANDARD"
EXPRESS = "EXPRESS"


def state_machine(template: dict[str, Any], machine_type: str = STANDARD) -> tuple[str, Any]:
    """The logical id and resource of the template's state machine of this type: the
    tick (``STANDARD``) or the delivery window (``EXPRESS``)."""
    ((logical_id, machine),) = [
        (logical_id, machine)
        for logical_id, machine in resources(template, "AWS::StepFunctions::StateMachine").items()
        if machine["Properties"].get("StateMachineType", STANDARD) == machine_type
    ]
    return logical_id, machine


def schedule_of(template: dict[str, Any], target_id: str) -> tuple[str, Any]:
    """The logical id and resource of the schedule whose target is ``target_id``: a state
    machine (the tick) or a function (the purge), by logical id."""
    ((logical_id, schedule),) = [
        (logical_id, schedule)
        for logical_id, schedule in resources(template, "AWS::Scheduler::Schedule").items()
        if schedule["Properties"]["Target"]["Arn"]
        in ({"Ref": target_id}, {"Fn::GetAtt": [target_id, "Arn"]})
    ]
    return logical_id, schedule


def tick_schedule(template: dict[str, Any]) -> tuple[str, Any]:
    """The schedule that starts the tick."""
    return schedule_of(template, state_machine(template, STANDARD)[0])


def state_machine_definition(
    template: dict[str, Any], machine_type: str = STANDARD
) -> dict[str, Any]:
    """The definition of the template's state machine of this type, each function's and
    state machine's ARN resolved by its logical id."""
    _, machine = state_machine(template, machine_type)
    arns = {
        logical_id: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"
        for logical_id in resources(template, "AWS::Lambda::Function")
    }
    for logical_id, resource in resources(template, "AWS::StepFunctions::StateMachine").items():
        name = resource["Properties"].get("StateMachineName", logical_id)
        arns[logical_id] = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
    parsed: dict[str, Any] = json.loads(resolve(machine["Properties"]["DefinitionString"], arns))
    return parsed


# What Lambda gives a function whose template names no Timeout.
LAMBDA_DEFAULT_TIMEOUT_SECONDS = 3


def delivery_timeouts(template: dict[str, Any]) -> dict[str, int]:
    """What the rule of the leases (``infra.timings.minimum_leases``) reads from a
    template: the longest timeout of its database steps (confirm, record) and of its
    notifiers, and its delivery window's own."""
    timeouts: dict[str, list[int]] = {}
    for function in resources(template, "AWS::Lambda::Function").values():
        properties = function["Properties"]
        handler = str(properties.get("Handler", ""))
        step = handler.removeprefix("escalator.handlers.").removesuffix(".handler")
        timeout = properties.get("Timeout", LAMBDA_DEFAULT_TIMEOUT_SECONDS)
        timeouts.setdefault(step, []).append(int(timeout))
    missing = {"confirm", "record", "notifier"} - set(timeouts)
    if missing:
        raise TemplateError(f"the template has no {', '.join(sorted(missing))} function")
    return {
        "database_step_timeout": max(timeouts["confirm"] + timeouts["record"]),
        "notifier_timeout": max(timeouts["notifier"]),
        "window_timeout": int(state_machine_definition(template, EXPRESS)["TimeoutSeconds"]),
    }


PSEUDO_PARAMETERS = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}


def resolve(value: Any, arns: Mapping[str, str]) -> Any:
    """Resolve the CloudFormation intrinsics of a value (a state machine definition, a
    policy document): ``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::Sub``,
    ``Fn::GetAtt`` and ``Ref`` with the pseudo parameters. ``arns`` gives what a
    resource stands for by its logical id (its ``Ref``, and its ``Arn`` unless
    ``"<id>.Arn"`` says otherwise) and ``"<id>.<attribute>"`` any other attribute.
    Lists and objects are resolved member by member."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list):
        return [resolve(item, arns) for item in value]
    if isinstance(value, dict) and len(value) == 1:
        ((name, argument),) = value.items()
        if name == "Fn::Join":
            separator, parts = argument
            return separator.join(str(resolve(part, arns)) for part in resolve(parts, arns))
        if name == "Fn::Select":
            index, items = argument
            return resolve(items, arns)[int(resolve(index, arns))]
        if name == "Fn::Split":
            separator, text = argument
            return str(resolve(text, arns)).split(separator)
        if name == "Fn::Sub" and isinstance(argument, str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: _reference(m.group(1), arns), argument)
        if name == "Fn::GetAtt":
            logical_id, attribute = argument
            return _reference(f"{logical_id}.{attribute}", arns)
        if name == "Ref":
            return _reference(str(argument), arns)
    if isinstance(value, dict) and not any(key.startswith("Fn::") for key in value):
        return {key: resolve(item, arns) for key, item in value.items()}
    raise AssertionError(f"cannot resolve {value!r}")


def _reference(name: str, arns: Mapping[str, str]) -> str:
    """What ``Ref`` (``name``: a logical id or pseudo parameter) or ``Fn::GetAtt``
    (``name``: ``"<id>.<attribute>"``) stands for."""
    if name in PSEUDO_PARAMETERS:
        return PSEUDO_PARAMETERS[name]
    if name in arns:
        return arns[name]
    logical_id, _, attribute = name.partition(".")
    if attribute == "Arn" and logical_id in arns:
        return arns[logical_id]
    raise AssertionError(f"cannot resolve {name!r}: not among the references given")
