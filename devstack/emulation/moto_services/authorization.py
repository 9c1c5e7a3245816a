"""The replacements of the adapter's rows for moto's request authorization: each request
and each task authorized as AWS does, against the caller's role
(``devstack.emulation.iam``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devstack.emulation import iam
from devstack.emulation.moto_services.base import Emulation


def requests_authorized_as_on_aws(original: Any, emulation: Emulation) -> Callable[..., None]:
    def _authenticate_and_authorize_normal_action(self: Any, resource: str = "*") -> None:
        iam.authorize(self, resource)

    return _authenticate_and_authorize_normal_action


def tasks_checked_against_their_role(original: Any, emulation: Emulation) -> Callable[..., None]:
    permissions = emulation.permissions

    def _before_eval_execution(
        self: Any, env: Any, resource_runtime_part: Any, raw_parameters: Any, state_credentials: Any
    ) -> None:
        original(self, env, resource_runtime_part, raw_parameters, state_credentials)
        iam.check_task(permissions, self, env, resource_runtime_part, raw_parameters)

    return _before_eval_execution


def functions_invoked_as_their_role_allows(
    original: Any, emulation: Emulation
) -> Callable[..., None]:
    permissions = emulation.permissions

    def _eval_execution(self: Any, env: Any) -> None:
        self.resource.eval(env=env)
        runtime = env.stack.pop()
        iam.check_task(permissions, self, env, runtime, {})
        original(self, env)

    return _eval_execution
