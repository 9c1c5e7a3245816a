"""What every row of the adapter's table is made of: the ``Emulation`` one
``lambdas_in_process()`` context holds, and the rows (``Patch``, ``Called``)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from moto.awslambda import models as lambda_models

from devstack.emulation import iam
from devstack.emulation.moto_services.express import ExpressRuns
from devstack.emulation.moto_services.sandboxes import InProcessLambdas


@dataclass
class History:
    """One execution's history against its quota: the execution (its root environment,
    weakly: the history must not keep it alive) and the event id that passed the quota."""

    execution: weakref.ref[Any]
    lock: threading.RLock = field(default_factory=threading.RLock)
    capped: int | None = None


class Emulation:
    """What one ``lambdas_in_process()`` context holds: its handlers, its history quota,
    and its caches (of boto3 clients and moto backends, looked up once per context)."""

    def __init__(
        self,
        history_cap: int,
        express: ExpressRuns | None = None,
        *,
        enforce_iam: bool = True,
        omitted: frozenset[str] = frozenset(),
    ) -> None:
        self.omitted = omitted  # the rows of PATCHES left out
        self.lambdas = InProcessLambdas()
        self.lambdas.express = express or ExpressRuns()
        self.permissions = self.lambdas.permissions = iam.Permissions(enforce=enforce_iam)
        self.history_cap = history_cap
        # Each Step Functions environment's event manager -> its execution's history.
        self.histories: weakref.WeakKeyDictionary[Any, History] = weakref.WeakKeyDictionary()
        self._clients: dict[tuple[str, str], Any] = {}
        self._clients_lock = threading.Lock()
        self._backends: dict[tuple[str, str], Any] = {}

    def client(
        self, build: Callable[..., Any], region: str, service: str, state_credentials: Any
    ) -> Any:
        """The boto3 client for ``service``, built once (by moto's ``build``)."""
        with self._clients_lock:  # building boto3 clients concurrently is not thread-safe
            key = (region, service)
            if key not in self._clients:
                self._clients[key] = build(region, service, state_credentials)
            return self._clients[key]

    def lambda_backend(self, account: str, region: str) -> Any:
        """moto's Lambda backend, looked up once (each lookup takes moto's global lock)."""
        key = (account, region)
        backend = self._backends.get(key)
        if backend is None:
            backend = self._backends[key] = lambda_models.lambda_backends[account][region]
        return backend


Kind = Literal["strict", "moto-bug", "fast"]
# A row's replacement, made per context from moto's original (what was there before).
Factory = Callable[[Any, Emulation], Any]


@dataclass(frozen=True)
class Patch:
    """One attribute of moto replaced while ``lambdas_in_process()`` is open."""

    owner: Any
    attribute: str
    replacement_factory: Factory
    why: str
    kind: Kind
    # The original's parameters, as the replacement expects them (``check_moto``).
    parameters: tuple[str, ...]
    # What moto does not have at all (an API it lacks): added, and checked to be absent.
    adds: bool = False

    @property
    def name(self) -> str:
        return f"{_short_name(self.owner)}.{self.attribute}"


@dataclass(frozen=True)
class Called:
    """An attribute of moto that a replacement calls unchanged, and its parameters."""

    owner: Any
    attribute: str
    parameters: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{_short_name(self.owner)}.{self.attribute}"


def _short_name(owner: Any) -> str:
    """A class by its name, a module by its last part (``sqs.models`` for a ``models``)."""
    parts = str(owner.__name__).split(".")
    return ".".join(parts[-2:]) if parts[-1] == "models" else parts[-1]
