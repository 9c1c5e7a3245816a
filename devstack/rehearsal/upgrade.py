"""An upgrade rehearsal: the previous release (devstack.rehearsal.release) stood up, its
template and its code, then this tree deployed over it while it delivers, in the order
CloudFormation updates a stack.

- **The deploy over it** (``Upgrade``): the roles get the new policies first (a role is
  updated before whatever uses it), new secrets are created, then the functions, the
  migration trigger, the state machines and the schedule are updated one after the other
  in an order the template's dependencies allow (``update_order``: what a resource names,
  by ``Ref``, ``Fn::GetAtt``, ``Fn::Sub`` or ``DependsOn``, is updated before it). The
  runtime functions depend on the trigger, so the migration runs while the previous
  release's functions still serve, and they are replaced after it, as on AWS.
  - A function's update starts a new sandbox and routes every later invocation to it;
    an invocation already under way finishes in the old one (as Lambda lets a running
    invocation end in its old execution environment).
  - A state machine's update is UpdateStateMachine: running executions go on with the
    definition they started with.
  - The trigger invokes the new release's migration launcher (it runs again at every
    deploy that changes the code).
  A queue, database or function URL the new template replaces or adds is refused: it is
  not what a deploy over a running stack may do without losing what is in flight.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.emulation.stepfunctions import (
    configure_function,
    create_function,
    update_state_machine,
)
from devstack.emulation.template import resources, tick_schedule
from devstack.rehearsal.deployment import (
    FUNCTION,
    SECRET,
    Rehearsal,
    RehearsalError,
    function_specs,
    generated_secret,
)

TRIGGER = "Custom::Trigger"
STATE_MACHINE = "AWS::StepFunctions::StateMachine"
SCHEDULE = "AWS::Scheduler::Schedule"
# What a deploy over a running stack must keep (a replacement loses what is in flight).
KEPT = ("AWS::SQS::Queue", "AWS::RDS::DBInstance", "AWS::Lambda::Url")


def _named(value: Any) -> Iterator[str]:
    """The logical ids (and ``id.attribute`` names) a template value refers to."""
    if isinstance(value, list):
        for item in value:
            yield from _named(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                yield item
            elif key == "Fn::GetAtt" and isinstance(item, list) and item:
                yield str(item[0])
            elif key == "Fn::Sub":
                text = item[0] if isinstance(item, list) else item
                for name in str(text).split("${")[1:]:
                    yield name.partition("}")[0].partition(".")[0]
                yield from _named(item[1] if isinstance(item, list) and len(item) > 1 else [])
            else:
                yield from _named(item)


def update_order(template: dict[str, Any], kinds: set[str]) -> list[str]:
    """The resources of ``kinds`` in an order CloudFormation may update them: each after
    every resource of those kinds it depends on, directly or through others; among
    those free to go, by logical id."""
    every = template["Resources"]

    def depends_on(resource: dict[str, Any]) -> set[str]:
        named = resource.get("DependsOn") or []
        return {named} if isinstance(named, str) else set(named)

    direct: dict[str, set[str]] = {
        name: depends_on(resource)
        | {found for found in _named(resource.get("Properties", {})) if found in every}
        for name, resource in every.items()
    }

    def reach(name: str) -> set[str]:
        seen: set[str] = set()
        stack = [name]
        while stack:
            for other in direct.get(stack.pop(), set()):
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return seen

    chosen = sorted(name for name, resource in every.items() if resource["Type"] in kinds)
    needs = {name: reach(name) & set(chosen) for name in chosen}
    ordered: list[str] = []
    while len(ordered) < len(chosen):
        ready = [name for name in chosen if name not in ordered and needs[name] <= set(ordered)]
        if not ready:
            raise RehearsalError(f"the template's dependencies go round: {sorted(needs)}")
        ordered.append(ready[0])
    return ordered


@dataclass
class Upgrade:
    """A deploy of ``template`` (whose functions run ``code``; ``None``: this checkout)
    over the release ``stage`` runs. ``steps`` lists what it does, in order; ``step``
    does one (a test looks or waits between them)."""

    stage: Rehearsal
    template: dict[str, Any]
    code: Path | None = None

    def steps(self) -> list[str]:
        """``roles``, then each function, trigger, state machine and schedule by logical
        id, in update order, then ``cleanup`` (what the new template no longer has)."""
        kinds = {FUNCTION, TRIGGER, STATE_MACHINE, SCHEDULE}
        escalator = set(function_specs(self.template, self._references()))
        return [
            "roles",
            *(
                name
                for name in update_order(self.template, kinds)
                if self.template["Resources"][name]["Type"] != FUNCTION or name in escalator
            ),
            "cleanup",
        ]

    def step(self, name: str) -> None:
        """Do one step of ``steps``."""
        if name == "roles":
            self._roles()
        elif name == "cleanup":
            self._cleanup()
        else:
            kind = self.template["Resources"][name]["Type"]
            if kind == FUNCTION:
                self._function(name)
            elif kind == TRIGGER:
                self._trigger(name)
            elif kind == STATE_MACHINE:
                update_state_machine(
                    self.stage.machine,
                    self.stage.session,
                    self.template,
                    name,
                    endpoint_url=self.stage.endpoint_url,
                    permissions=self.stage.permissions,
                )
            elif kind == SCHEDULE:
                self._schedule(name)

    # -- the steps

    def _references(self) -> dict[str, str]:
        references = dict(self.stage.references)
        references |= {name: name for name in resources(self.template, FUNCTION)}
        return references

    def _roles(self) -> None:
        old, new = self.stage.template, self.template
        for kind in KEPT:
            if set(resources(old, kind)) != set(resources(new, kind)):
                raise RehearsalError(
                    f"the new release replaces, adds or removes a {kind} "
                    f"({sorted(resources(old, kind))} -> {sorted(resources(new, kind))}): "
                    "what is in flight there would be lost"
                )
        client = self.stage.session.client("secretsmanager", endpoint_url=self.stage.endpoint_url)
        for name, secret in resources(new, SECRET).items():
            if name not in self.stage.secret_arns:
                value = json.dumps(generated_secret(secret["Properties"]))
                arn = client.create_secret(Name=name, SecretString=value)["ARN"]
                self.stage.secret_arns[name] = self.stage.references[name] = arn
        self.stage.references.update(self._references())
        self.stage.permissions.update(new, self.stage.permissions.references)

    def _function(self, logical_id: str) -> None:
        stage = self.stage
        spec = function_specs(self.template, self._references(), stage.ca_stand_ins())[logical_id]
        lambdas = stage.lambdas
        properties = self.template["Resources"][logical_id]["Properties"]
        functions = stage.session.client("lambda", endpoint_url=stage.endpoint_url)
        if logical_id in stage.machine.functions:
            configure_function(lambdas, stage.permissions, logical_id, properties)
        else:
            create_function(
                functions,
                stage.session.client("logs", endpoint_url=stage.endpoint_url),
                logical_id,
                properties,
                role_arn=stage.permissions.function_role_arn(logical_id),
                lambdas=lambdas,
                permissions=stage.permissions,
            )
            stage.machine.functions[logical_id] = logical_id
        # (its configuration shows the environment it runs with, as on AWS)
        functions.update_function_configuration(
            FunctionName=logical_id, Environment={"Variables": spec.environment}
        )
        replaced = stage.sandboxes.get(logical_id)
        sandbox = stage.start_sandbox(spec, self.code)
        stage.sandboxes[logical_id] = sandbox
        lambdas.overrides[logical_id] = sandbox.handler
        if replaced is not None:
            replaced.replace(sandbox)  # (it answers what it was given, then ends)
            stage.retired.append(replaced)

    def _trigger(self, logical_id: str) -> None:
        handler = self.template["Resources"][logical_id]["Properties"]["HandlerArn"]
        (target,) = _named(handler)
        version = self.template["Resources"].get(target, {})
        if version.get("Type") == "AWS::Lambda::Version":
            (target,) = _named(version["Properties"]["FunctionName"])
        self.stage.invoke(target, {})

    def _schedule(self, logical_id: str) -> None:
        tick_id, schedule = tick_schedule(self.template)
        if tick_id == logical_id:
            self.stage.schedule_input = json.loads(schedule["Properties"]["Target"]["Input"])

    def _cleanup(self) -> None:
        kept = set(function_specs(self.template, self._references()))
        for logical_id in [name for name in self.stage.sandboxes if name not in kept]:
            sandbox = self.stage.sandboxes.pop(logical_id)
            self.stage.lambdas.overrides.pop(logical_id, None)
            sandbox.end_input()
            self.stage.retired.append(sandbox)
        self.stage.template = self.template
        self.stage.code = self.code
