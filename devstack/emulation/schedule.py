"""The delivery schedule as EventBridge Scheduler runs it: a ``rate(N minutes)``
schedule starts its target once in each period, at some moment within it, not at the
period's first second. Two ticks may be almost two periods apart, or almost together.

``Schedule`` fires so (seeded, so that a failing run can be replayed), or exactly on the
period (``exact=True``, for demos); ``escalator local``, the benches and the tests tick
with it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Schedule:
    """Fires once in each period of ``period`` seconds from ``start`` (``time.time()``
    when first asked): at a random moment within it, or at its start when ``exact``."""

    period: float
    seed: int | None = None
    exact: bool = False
    start: float | None = None
    # When each tick fired (``time.time()``), in order.
    fired: list[float] = field(default_factory=list)
    _random: random.Random = field(init=False, repr=False)
    _drawn: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.period <= 0:
            raise ValueError(f"a schedule's period is positive, not {self.period}")
        self._random = random.Random(self.seed)  # noqa: S311 - a schedule, not a secret

    def describe(self) -> str:
        """One line for the operator: how the schedule fires."""
        if self.exact:
            return f"every {self.period:g} s, on the second (--exact-schedule)"
        return (
            f"every {self.period:g} s, at a random moment within each period as "
            f"EventBridge Scheduler does (seed {self.seed})"
        )

    def moment(self, index: int) -> float:
        """When the tick of period ``index`` (from 0) fires."""
        if self.start is None:
            self.start = time.time()
        offset = 0.0 if self.exact else self._offsets(index + 1)[index]
        return self.start + index * self.period + offset

    def run(self, tick: Callable[[], object], stop: threading.Event) -> int:
        """Call ``tick`` at each moment until ``stop`` is set; how many ticks fired."""
        index = 0
        while True:
            wait = self.moment(index) - time.time()
            if stop.wait(max(0.0, wait)):
                return index
            self.fired.append(time.time())
            tick()
            index += 1

    def _offsets(self, count: int) -> list[float]:
        """The first ``count`` offsets within their periods (drawn once, in order)."""
        while len(self._drawn) < count:
            self._drawn.append(self._random.uniform(0.0, self.period))
        return self._drawn
