"""What of moto a process imports. moto's Step Functions interpreter imports its Batch
integration for one enum (``moto.batch.utils.JobStatus``); importing it runs the package
``moto.batch``, whose backend imports moto's EC2 (0.9 s of CPU, more than half of the
interpreter's import, in every process that runs a state machine: each test worker, each
local stack, the rehearsal's server). Escalator's state machines never call Batch: the
package is registered without its backend, so its ``utils`` module loads alone, and a
request to moto's Batch fails instead of being served."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

BATCH = "moto.batch"


def without_batch_backend() -> None:
    """Register ``moto.batch`` as a package whose backend is never imported (unless a
    process imported it already)."""
    if BATCH in sys.modules:
        return
    # (found beside moto's own spec, not by ``find_spec("moto.batch")``, which imports
    # moto: a third of a second in each process, a sandbox's too, that never uses it)
    moto = importlib.util.find_spec("moto")
    if moto is None or moto.submodule_search_locations is None:
        return
    spec = importlib.machinery.PathFinder.find_spec(BATCH, moto.submodule_search_locations)
    if spec is None or spec.submodule_search_locations is None:
        return
    package = types.ModuleType(BATCH, "moto's Batch, its backend not imported (devstack)")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = BATCH
    # (what moto's server asks for when a request names Batch: refused by name)
    package.__getattr__ = _not_loaded  # type: ignore[method-assign]
    sys.modules[BATCH] = package


def _not_loaded(name: str) -> Any:
    raise AttributeError(
        f"moto.batch.{name}: moto's Batch backend is not loaded here (Escalator never calls "
        "Batch; devstack.emulation.moto_imports leaves it out)"
    )
