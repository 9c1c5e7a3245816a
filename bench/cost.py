"""Cost: what delivery costs on AWS, counted in an emulated run at list prices.

1,000 PubNub notifications due over a minute (from about 10 s after they are stored) are
delivered by ticks the bench starts every 10 s (the synthesized state machines run by
moto, the handlers in-process, a loopback PubNub peer), each exactly once; then five
idle ticks run. From what the run used it prints USD per million delivered notifications
(Step Functions, Lambda, CloudWatch Logs) and USD per idle month: the template's fixed
bill (``idle_cost.fixed_items``) plus the measured idle tick times the schedule's ticks
in a month. Prices: ``PRICES``, one table. Baseline, in the same run: the previous
design, whose Map ran inside the Standard execution: the windows' state transitions at
the Standard rate and their events logged at ALL (as that one state machine logged),
with the same Lambda and other log costs. Targets: at most 5 USD per million delivered,
under 22 USD an idle month.

How it counts (the assumptions):

- Standard transitions: each ``*StateEntered`` event of a history (Map iterations'
  states included), plus each retry (a task scheduled again within one entry).
- Ticks: a tick's own cost does not depend on its period, only the number of ticks
  does, which the idle month accounts for (one a minute); so the figure per million
  counts only what the run's ticks cost beyond as many idle ticks. The run ticks every
  10 s (claiming 20 s ahead) to stay short: six busy ticks a minute where the deployed
  60 s schedule has one, which overstates the busy ticks' share. A window waits for its
  last notification, at most two periods: a longer period gives fewer, longer windows,
  about the same Express duration a minute.
- What a window did is read as an operator reads it (Step Functions keeps no history of
  an Express execution): its events from its log group, the windows deployed at
  delivery_log_level ALL for the count; its largest payload from the tick's history
  (the window's input and output, as the tick gave and StartSyncExecution answered it).
- Express: a request per window execution; duration stop - start (its first and last
  logged events) rounded up to 100 ms,
  at the memory AWS's pricing page estimates (50 MB + definition + execution data x Map
  iterations, the window's largest payload taken for every iteration: an upper bound),
  billed in 64 MB chunks.
- Lambda: a request per invocation; duration the handler's wall time in-process at the
  function's MemorySize (handlers share the GIL on two cores: an overstatement; not
  rounded up to the millisecond; initialization not counted).
- Logs, at the ingestion price: the tick logs ALL without execution data: each history
  event as Step Functions writes it (id, type, details without input, output and task
  parameters, previous id, timestamp, execution ARN); the windows log ERROR: their error
  events only (each throttled, retried invocation's among them); the functions' JSON
  lines and EMF metric lines as written (in-process handlers share Powertools' metric
  set, so concurrent invocations' lines may merge: a slight undercount); Lambda's START,
  END and REPORT lines (with X-Ray's), from their documented text format.
- Not in the figure: the ingest side (SQS and the initiator, shown apart), X-Ray (a
  trace per tick, within the free 100,000 a month), log storage, free tiers (except the
  4,000 free transitions in the idle month, as ``idle_cost.py`` counts them).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections import Counter
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from typing import Any

from common import ByteCounter, counted_logs, database, pipeline, progress, report, submit
from idle_cost import (
    FREE_TRANSITIONS,
    LAMBDA_GB_SECOND,
    LAMBDA_REQUEST,
    LOG_GB,
    PRICES_DATE,
    SQS_FIFO_REQUEST,
    TRANSITION,
    fixed_items,
    scheduled_executions,
)

COUNT = int(os.environ.get("BENCH_COST_COUNT", "1000"))
SPREAD = 60
LEAD = 10
TICK = 10
IDLE_TICKS = 5
TARGET_PER_MILLION = 5.0
TARGET_IDLE_MONTH = 22.0

STEP_FUNCTIONS_PRICING = "aws.amazon.com/step-functions/pricing"


@dataclass(frozen=True)
class Price:
    """A list price: USD per unit, and the page that lists it."""

    usd: float
    per: str
    source: str


# List prices as of PRICES_DATE (us-east-1; eu-central-1's are the same for these). Those
# idle_cost.py also uses are its constants.
PRICES: dict[str, Price] = {
    "standard_transition": Price(TRANSITION, "Standard state transition", STEP_FUNCTIONS_PRICING),
    "express_request": Price(1.00e-6, "Express request", STEP_FUNCTIONS_PRICING),
    "express_gb_second": Price(
        0.00001667, "Express GB-second (first 1,000 GB-hours)", STEP_FUNCTIONS_PRICING
    ),
    "lambda_request": Price(LAMBDA_REQUEST, "Lambda request", "aws.amazon.com/lambda/pricing"),
    "lambda_gb_second": Price(
        LAMBDA_GB_SECOND, "Lambda GB-second, x86", "aws.amazon.com/lambda/pricing"
    ),
    "log_gb": Price(
        LOG_GB, "GB of logs ingested (vended: first 10 TB)", "aws.amazon.com/cloudwatch/pricing"
    ),
    "sqs_fifo_request": Price(SQS_FIFO_REQUEST, "SQS FIFO request", "aws.amazon.com/sqs/pricing"),
}
GB = 1e9  # (1e9 rather than 2**30 bytes: the dearer reading)
# Express memory, as the pricing page's examples estimate it (1,000 KB to the MB).
EXPRESS_BASE_MB = 50
EXPRESS_CHUNK_MB = 64
MB = 1_000_000
# What a Step Functions log event holds of the execution's data (left out of the logs).
EXECUTION_DATA = frozenset({"input", "output", "parameters"})
ERROR_EVENT_ENDINGS = ("Failed", "TimedOut", "Aborted")
# The baseline's own terms.
MAP_TRANSITIONS = "Standard transitions (the Map's)"
MAP_LOGS = "logs: the Map's events (ALL)"


def usd(name: str) -> float:
    return PRICES[name].usd


def transitions(events: list[dict[str, Any]]) -> int:
    """State transitions as Standard bills them: each state entered, and each retry."""
    kinds = Counter(event["type"] for event in events)
    entered = sum(count for kind, count in kinds.items() if kind.endswith("StateEntered"))
    scheduled = kinds["LambdaFunctionScheduled"] + kinds["TaskScheduled"]
    return entered + max(0, scheduled - kinds["TaskStateEntered"])


def event_details(event: dict[str, Any]) -> dict[str, Any]:
    """The ``...EventDetails`` of a history event (none: empty)."""
    found: dict[str, Any] = next(
        (value for key, value in event.items() if key.endswith("EventDetails")), {}
    )
    return found


def log_event_bytes(event: dict[str, Any], execution_arn: str) -> int:
    """The size of the log event Step Functions writes for a history event, without
    execution data."""
    details = event_details(event)
    line = {
        "id": str(event["id"]),
        "type": event["type"],
        "details": {key: value for key, value in details.items() if key not in EXECUTION_DATA},
        "previous_event_id": str(event.get("previousEventId", 0)),
        "event_timestamp": str(int(event["timestamp"].timestamp() * 1000)),
        "execution_arn": execution_arn,
        "redrive_count": "0",
    }
    return len(json.dumps(line).encode())


def platform_line_bytes(memory_mb: int) -> int:
    """Lambda's own log lines for one invocation (START, END, REPORT with X-Ray's line),
    in its text format."""
    request = uuid.uuid4()
    trace = f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"
    lines = (
        f"START RequestId: {request} Version: $LATEST\n"
        f"END RequestId: {request}\n"
        f"REPORT RequestId: {request}\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
        f"Memory Size: {memory_mb} MB\tMax Memory Used: 99 MB\t\n"
        f"XRAY TraceId: {trace}\tSegmentId: {uuid.uuid4().hex[:16]}\tSampled: true\t\n"
    )
    return len(lines.encode())


@dataclass
class Usage:
    """What a stretch of the run used."""

    ticks: int = 0
    tick_transitions: int = 0
    tick_log_bytes: int = 0
    tick_log_events: int = 0
    windows: int = 0
    window_seconds: float = 0.0  # billed: each window rounded up to 100 ms
    window_gb_seconds: float = 0.0
    window_peak_mb: float = 0.0  # the largest estimated memory of a window
    window_error_log_bytes: int = 0
    window_errors: Counter[str] = field(default_factory=Counter)  # error events, by type
    # What the previous design, the Map inside the Standard execution, would have billed.
    window_transitions: int = 0
    window_log_bytes: int = 0
    window_log_events: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    gb_seconds: dict[str, float] = field(default_factory=dict)
    function_log_bytes: int = 0
    metric_log_bytes: int = 0
    metric_log_lines: int = 0
    platform_log_bytes: int = 0

    @property
    def log_bytes(self) -> int:
        """Every log byte but the windows' (at ERROR)."""
        return (
            self.tick_log_bytes
            + self.function_log_bytes
            + self.metric_log_bytes
            + self.platform_log_bytes
        )

    def costs(self) -> dict[str, float]:
        """USD by term."""
        return {
            "Standard transitions (ticks)": self.tick_transitions * usd("standard_transition"),
            "Express requests (windows)": self.windows * usd("express_request"),
            "Express duration": self.window_gb_seconds * usd("express_gb_second"),
            "Lambda requests": sum(self.requests.values()) * usd("lambda_request"),
            "Lambda duration": sum(self.gb_seconds.values()) * usd("lambda_gb_second"),
            "logs: ticks (ALL)": self.tick_log_bytes / GB * usd("log_gb"),
            "logs: windows (ERROR)": self.window_error_log_bytes / GB * usd("log_gb"),
            "logs: functions' JSON lines": self.function_log_bytes / GB * usd("log_gb"),
            "logs: EMF metric lines": self.metric_log_bytes / GB * usd("log_gb"),
            "logs: Lambda START/END/REPORT": self.platform_log_bytes / GB * usd("log_gb"),
        }

    def per_tick(self) -> dict[str, float]:
        """USD by term, per tick (of an idle stretch: what one idle tick costs)."""
        return {term: cost / self.ticks for term, cost in self.costs().items()}

    def baseline_costs(self) -> dict[str, float]:
        """USD by term had the windows' steps run in the Standard tick, logged at ALL."""
        costs = self.costs()
        for express in ("Express requests (windows)", "Express duration", "logs: windows (ERROR)"):
            del costs[express]
        costs[MAP_TRANSITIONS] = self.window_transitions * usd("standard_transition")
        costs[MAP_LOGS] = self.window_log_bytes / GB * usd("log_gb")
        return costs


class Meter:
    """Reads what the emulation used between two moments."""

    def __init__(
        self,
        machine: Any,
        lambdas: Any,
        logs: ByteCounter,
        metrics: ByteCounter,
        memory_mb: dict[str, int],
        window_definition_bytes: int,
    ) -> None:
        self.machine = machine
        self.lambdas = lambdas
        self.logs = logs
        self.metrics = metrics
        self.memory_mb = memory_mb
        self.window_definition_bytes = window_definition_bytes
        self.ticks_seen: set[str] = set()
        self.windows_seen: set[str] = set()
        self.window_payloads: dict[str, int] = {}
        self._mark()

    def _mark(self) -> None:
        self._invocations = len(self.lambdas.invocations)
        self._seconds = dict(self.lambdas.handler_seconds)
        self._log_bytes = self.logs.bytes
        self._metric_bytes = self.metrics.bytes
        self._metric_lines = self.metrics.lines

    def usage(self, ticks: list[dict[str, Any]]) -> Usage:
        """What was used since the last call (``ticks``: every tick so far, ended)."""
        used = Usage()
        for tick in ticks:
            arn = tick["executionArn"]
            if arn in self.ticks_seen:
                continue
            self.ticks_seen.add(arn)
            assert tick["status"] == "SUCCEEDED", tick
            events = self.machine.history(arn)
            used.ticks += 1
            used.tick_transitions += transitions(events)
            used.tick_log_events += len(events)
            used.tick_log_bytes += sum(log_event_bytes(event, arn) for event in events)
            self.window_payloads.update(window_payloads(events))
        # (a window's events: its log group, logged at ALL for the count)
        for arn, events in self.machine.window_log().items():
            if arn not in self.windows_seen:
                self.windows_seen.add(arn)
                self._window(arn, events, used)
        invoked = Counter(self.lambdas.invocations[self._invocations :])
        used.requests = invoked
        for name, seconds in self.lambdas.handler_seconds.items():
            spent = seconds - self._seconds.get(name, 0.0)
            if spent:
                used.gb_seconds[name] = spent * self.memory_mb[name] / 1024
        used.function_log_bytes = self.logs.bytes - self._log_bytes
        used.metric_log_bytes = self.metrics.bytes - self._metric_bytes
        used.metric_log_lines = self.metrics.lines - self._metric_lines
        used.platform_log_bytes = sum(
            count * platform_line_bytes(self.memory_mb[name]) for name, count in invoked.items()
        )
        self._mark()
        return used

    def _window(self, arn: str, events: list[dict[str, Any]], used: Usage) -> None:
        """One window, from its log events (level ALL, without execution data)."""
        assert events[0]["type"] == "ExecutionStarted", events[:1]
        assert events[-1]["type"] == "ExecutionSucceeded", events[-1:]
        millis = int(events[-1]["event_timestamp"]) - int(events[0]["event_timestamp"])
        billed_seconds = max(0.1, math.ceil(millis / 100) / 10)
        iterations = sum(1 for event in events if event["type"] == "MapIterationStarted")
        largest = self.window_payloads.get(arn, 0)
        memory = EXPRESS_BASE_MB + (self.window_definition_bytes + largest * iterations) / MB
        billed_mb = math.ceil(memory / EXPRESS_CHUNK_MB) * EXPRESS_CHUNK_MB
        used.windows += 1
        used.window_seconds += billed_seconds
        used.window_gb_seconds += billed_seconds * billed_mb / 1024
        used.window_peak_mb = max(used.window_peak_mb, memory)
        used.window_transitions += transitions(events)
        sizes = [len(json.dumps(event).encode()) for event in events]
        used.window_log_events += len(events)
        used.window_log_bytes += sum(sizes)
        for event, size in zip(events, sizes, strict=True):
            if event["type"].endswith(ERROR_EVENT_ENDINGS):
                used.window_errors[event["type"]] += 1
                used.window_error_log_bytes += size


def window_payloads(tick_events: list[dict[str, Any]]) -> dict[str, int]:
    """The largest piece of execution data of each window the tick started (its input as
    the tick gave it, its output as StartSyncExecution answered it), by window ARN: the
    tick's history holds both (the window's own log holds no execution data)."""
    given = 0
    found: dict[str, int] = {}
    for event in tick_events:
        details = event_details(event)
        if event["type"] == "TaskScheduled" and details.get("resource") == "startSyncExecution":
            given = len(str(json.loads(details["parameters"]).get("Input", "")).encode())
        elif event["type"] == "TaskSucceeded" and details.get("resource") == "startSyncExecution":
            answer = json.loads(details["output"])
            output = len(str(answer.get("Output", "")).encode())
            found[answer["ExecutionArn"]] = max(given, output)
    return found


def per_million(costs: dict[str, float], delivered: int) -> dict[str, float]:
    return {term: cost / delivered * 1e6 for term, cost in costs.items()}


def over_idle(run: dict[str, float], idle: dict[str, float], ticks: int) -> dict[str, float]:
    """The run's costs less what as many idle ticks cost (the idle month pays for those)."""
    return {term: cost - idle.get(term, 0.0) * ticks for term, cost in run.items()}


def money(value: float) -> str:
    return f"{value:9.3f} USD"


@dataclass
class Measured:
    """What the bench measured: the delivery run, the idle ticks, the ingest beside them."""

    template: dict[str, Any]
    memory_mb: dict[str, int]
    run: Usage
    idle: Usage
    channels: list[str]
    throttles: dict[str, int]
    ingest_usd: float


def measure() -> Measured:
    """Deliver ``COUNT`` notifications, then run ``IDLE_TICKS`` idle ticks."""
    from devstack.emulation.template import (
        EXPRESS,
        resources,
        state_machine_definition,
        synthesized_template,
    )

    logs = counted_logs()
    metrics = ByteCounter()
    # Counted, not dropped: the functions print their EMF metric lines, and the bench
    # sends its stdout to ``metrics`` while they run (the other benches turn them off).
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"
    progress("synthesizing the stack")
    template = synthesized_template()
    functions = resources(template, "AWS::Lambda::Function")
    memory_mb = {name: int(f["Properties"].get("MemorySize", 128)) for name, f in functions.items()}
    window_definition = json.dumps(state_machine_definition(template, EXPRESS)).encode()
    # (the windows log every event, delivery_log_level ALL, for the count; their cost is
    # reckoned at the template's level, ERROR: their error events only)
    with database() as dsn, pipeline(dsn, window_log_level="ALL") as (machine, peers, lambdas):
        first_due = int(time.time()) + LEAD
        dues = [first_due + (SPREAD * n) // COUNT for n in range(COUNT)]
        documents = [
            {
                "process-id": f"restaurant-{n}",
                "action": "start",
                "notifications": [{"channel": "pubnub", "at": due, "pubnub-channel": f"ch-{n}"}],
            }
            for n, due in enumerate(dues)
        ]
        progress(f"storing {COUNT} notifications due over {SPREAD} s from +{LEAD} s")
        before = (logs.bytes, metrics.bytes, time.perf_counter())
        with redirect_stdout(metrics):
            submit(documents)
        # (the handler's wall time: submit calls it directly, not through the emulation)
        ingest_seconds = time.perf_counter() - before[2]
        ingest = Usage(
            requests=Counter({machine.function_named("FunctionsInitiator"): math.ceil(COUNT / 10)}),
            function_log_bytes=logs.bytes - before[0],
            metric_log_bytes=metrics.bytes - before[1],
        )
        for name, count in ingest.requests.items():
            ingest.gb_seconds[name] = ingest_seconds * memory_mb[name] / 1024
            ingest.platform_log_bytes = count * platform_line_bytes(memory_mb[name])
        meter = Meter(machine, lambdas, logs, metrics, memory_mb, len(window_definition))
        deadline = dues[-1] + 3 * TICK
        progress(f"ticking every {TICK} s until all are delivered")
        with redirect_stdout(metrics):
            while len(peers.pubnub.publications) < COUNT and time.time() < deadline:
                machine.start({"period_seconds": TICK})
                time.sleep(TICK)
                progress(f"{len(peers.pubnub.publications)}/{COUNT} delivered")
            ticks = machine.settle(timeout=300)
            windows = machine.settle_windows(timeout=300)
        progress(f"counting {len(ticks)} ticks and {windows} windows")
        run = meter.usage(ticks)
        channels = [publication.channel for publication in peers.pubnub.publications]
        throttles = dict(lambdas.throttles)
        progress(f"{IDLE_TICKS} idle ticks")
        with redirect_stdout(metrics):
            for _ in range(IDLE_TICKS):
                machine.run({"period_seconds": TICK})
            ticks = machine.settle()
        idle = meter.usage(ticks)
    assert idle.ticks == IDLE_TICKS, idle
    assert idle.windows == 0, idle
    # SQS: a send per request, a receive and a delete per batch of ten.
    sqs = (COUNT + 2 * sum(ingest.requests.values())) * usd("sqs_fifo_request")
    return Measured(
        template, memory_mb, run, idle, channels, throttles, sum(ingest.costs().values()) + sqs
    )


def idle_month(template: dict[str, Any], idle: Usage) -> list[tuple[str, float]]:
    """The idle month by item: the template's fixed bill (``idle_cost.fixed_items``) and
    the measured idle tick times the schedule's ticks in a month."""
    ticks = scheduled_executions(template)
    per_tick = idle.per_tick()
    transitions = idle.tick_transitions / idle.ticks * ticks
    per_tick["Standard transitions (ticks)"] = 0.0
    items = [
        *fixed_items(template),
        (
            f"ticks: {ticks:,} x {idle.tick_transitions / idle.ticks:.0f} transitions, "
            f"less {FREE_TRANSITIONS:,} free",
            max(0.0, transitions - FREE_TRANSITIONS) * usd("standard_transition"),
        ),
    ]
    return items + [(f"ticks: {term}", cost * ticks) for term, cost in per_tick.items() if cost]


def short(name: str) -> str:
    """A function's logical id, shortened (FunctionsConfirm5AA9E8F6 -> Confirm)."""
    return name.removeprefix("Functions")[:-8]


def main() -> None:
    measured = measure()
    run, idle = measured.run, measured.idle
    delivered = len(measured.channels)
    once = delivered == COUNT and len(set(measured.channels)) == COUNT
    counted = max(delivered, 1)
    idle_tick = idle.per_tick()
    figure = per_million(over_idle(run.costs(), idle_tick, run.ticks), counted)
    baseline = per_million(over_idle(run.baseline_costs(), idle_tick, run.ticks), counted)
    usd_per_million, baseline_per_million = sum(figure.values()), sum(baseline.values())
    month = idle_month(measured.template, idle)
    usd_per_idle_month = sum(cost for _, cost in month)

    memory_mb = measured.memory_mb
    rows: list[tuple[str, str]] = [
        ("delivered / unique", f"{delivered} / {len(set(measured.channels))} of {COUNT}"),
        ("run: ticks", f"{run.ticks} ({run.tick_transitions} transitions)"),
        (
            "run: windows",
            f"{run.windows}, {run.window_seconds:.1f} s billed, at most "
            f"{run.window_peak_mb:.1f} MB each (billed: {EXPRESS_CHUNK_MB} MB)",
        ),
        (
            "run: invocations",
            ", ".join(f"{short(name)} {count}" for name, count in sorted(run.requests.items())),
        ),
        (
            "run: throttled invocations, retried",
            ", ".join(f"{short(n)} {c}" for n, c in sorted(measured.throttles.items())) or "none",
        ),
        (
            "run: time in handlers",
            ", ".join(
                f"{short(name)} {gb_s / memory_mb[name] * 1024:.1f} s"
                for name, gb_s in sorted(run.gb_seconds.items())
            ),
        ),
        (
            "run: window error events (logged at ERROR)",
            ", ".join(f"{kind} {count}" for kind, count in sorted(run.window_errors.items()))
            or "none",
        ),
        (
            "run: log bytes, ticks / functions / EMF / START-END-REPORT",
            f"{run.tick_log_bytes:,} ({run.tick_log_events} events) / "
            f"{run.function_log_bytes:,} / {run.metric_log_bytes:,} "
            f"({run.metric_log_lines} lines) / "
            f"{run.platform_log_bytes:,}",
        ),
        (
            "idle tick: transitions, log bytes",
            f"{idle.tick_transitions / idle.ticks:.1f}, {idle.log_bytes / idle.ticks:,.0f}",
        ),
        ("USD per million delivered (beyond idle ticks)", ""),
        *((f"  {term}", money(cost)) for term, cost in figure.items()),
        ("  total: Step Functions + Lambda + logs", money(usd_per_million)),
        ("baseline: the Map inside the Standard tick", ""),
        (
            f"  {MAP_TRANSITIONS}",
            f"{money(baseline[MAP_TRANSITIONS])} ({run.window_transitions / counted:.2f} each)",
        ),
        (f"  {MAP_LOGS}", money(baseline[MAP_LOGS])),
        ("  total, with the same Lambda and other logs", money(baseline_per_million)),
        ("ingest (SQS, initiator), not in the figure", money(measured.ingest_usd / COUNT * 1e6)),
        ("USD per idle month", ""),
        *((f"  {label}", money(cost)) for label, cost in month),
        ("  total", money(usd_per_idle_month)),
        (f"prices, {PRICES_DATE}", ""),
        *(
            (f"  {price.per}", f"{price.usd:.10g} USD ({price.source})")
            for price in PRICES.values()
        ),
    ]
    report(
        "cost",
        rows=rows,
        value=usd_per_million,
        unit="USD per million delivered",
        baseline=baseline_per_million,
        target=f"<= {TARGET_PER_MILLION:g} USD per million delivered, "
        f"< {TARGET_IDLE_MONTH:g} USD per idle month, exactly once",
        met=usd_per_million <= TARGET_PER_MILLION
        and usd_per_idle_month < TARGET_IDLE_MONTH
        and once,
        extra={
            "usd_per_million_delivered": round(usd_per_million, 4),
            "usd_per_idle_month": round(usd_per_idle_month, 4),
            "baseline_usd_per_million_delivered": round(baseline_per_million, 4),
            "delivered": delivered,
            "exactly_once": once,
        },
    )


if __name__ == "__main__":
    main()
