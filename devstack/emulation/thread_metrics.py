"""Each in-process "sandbox" (a thread running a handler) keeps the metrics it writes to
itself, as each Lambda sandbox does in a process of its own.

Powertools keeps an invocation's metrics in one module-level object, flushed when the
handler returns. On Lambda a sandbox runs one invocation at a time, so nothing else
touches it; here the handlers of concurrent invocations share the module, and one
invocation's flush would take (or clear) another's metrics, which then fails with
"Must contain at least one metric": an error AWS would never give. ``per_thread`` gives
that object's sets one instance per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, MutableMapping, MutableSequence
from typing import Any, overload


class _PerThreadDict(MutableMapping[str, Any]):
    def __init__(self) -> None:
        self._local = threading.local()

    def _mine(self) -> dict[str, Any]:
        mine: dict[str, Any] | None = getattr(self._local, "items", None)
        if mine is None:
            mine = self._local.items = {}
        return mine

    def __getitem__(self, key: str) -> Any:
        return self._mine()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._mine()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._mine()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._mine()))

    def __len__(self) -> int:
        return len(self._mine())


class _PerThreadList(MutableSequence[Any]):
    def __init__(self) -> None:
        self._local = threading.local()

    def _mine(self) -> list[Any]:
        mine: list[Any] | None = getattr(self._local, "items", None)
        if mine is None:
            mine = self._local.items = []
        return mine

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._mine()[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self._mine()[index] = value

    def __delitem__(self, index: Any) -> None:
        del self._mine()[index]

    def __len__(self) -> int:
        return len(self._mine())

    def insert(self, index: int, value: Any) -> None:
        self._mine().insert(index, value)


def per_thread() -> None:
    """Give the functions' metrics object (``escalator.metrics.metrics``) one set of
    metrics, dimensions and metadata per thread; once per process is enough."""
    from escalator.metrics import metrics

    # (Any: Powertools types these as dicts and a list; ours behave as those)
    wrapper: Any = metrics
    provider: Any = metrics.provider
    if isinstance(provider.metric_set, _PerThreadDict):
        return
    provider.metric_set = wrapper.metric_set = _PerThreadDict()
    provider.metadata_set = wrapper.metadata_set = _PerThreadDict()
    provider.dimension_set = wrapper.dimension_set = _PerThreadDict()
    provider.dimension_sets = _PerThreadList()
