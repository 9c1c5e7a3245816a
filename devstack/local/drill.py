"""A fault drill (``make drill``): ``escalator local --lambda-faults P`` takes a burst of
notifications across channels, delivered for real to the loopback peers (Twilio's
Calls API with its status callbacks, an SMTP server, PubNub), and the drill counts what
each peer received and what each notification became.

    python -m devstack.local.drill [--faults 0.2] [--count 200] [--seed 17]

Prints a table and, as its last line, one JSON object. Exits 0 when every notification
reached its provider exactly once, none is left claimed or sending, and each ended sent,
or unknown only where its own notifier's answer was lost: none recorded ``unknown``
never reached a provider (the outbox records each delivery handed to a provider's
transport, and whether it answered).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from devstack.local.demo import start_local_stack, stop_local_stack
from devstack.local.outbox import read_outbox
from devstack.peers.postgres import query
from devstack.peers.providers import running_peers
from devstack.polling import wait_until
from escalator.client import Producer

TICK = 5
# Spread over this many seconds after the first is due.
SPREAD_SECONDS = 30
CHANNELS = ("phone", "email", "pubnub")


def notification(index: int, at: int) -> dict[str, Any]:
    """The ``index``-th notification of the burst: calls, e-mails and PubNub in turn."""
    channel = CHANNELS[index % len(CHANNELS)]
    target = {
        "phone": ("phone-number", f"+38591{index:07d}"),
        "email": ("email", f"owner{index}@restaurant.example.com"),
        "pubnub": ("pubnub-channel", f"restaurant-{index}"),
    }[channel]
    return {"channel": channel, "at": at, target[0]: target[1]}


def run(faults: float, count: int, seed: int) -> dict[str, Any]:
    """Run the drill; its figures."""
    workdir = Path(tempfile.mkdtemp(prefix="escalator-drill-"))
    with running_peers() as peers:
        # Twilio reports each call it placed, as it does: an unknown call is settled.
        peers.twilio.auto_report = ("completed",)
        process, ready = start_local_stack(
            workdir,
            tick=TICK,
            environment=peers.environment(),
            options=("--lambda-faults", str(faults), "--fault-seed", str(seed)),
        )
        # The producer's client signs its requests: the local stack takes any key.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        try:
            producer = Producer(
                ready["queue_url"], endpoint_url=ready["endpoint_url"], region=ready["region"]
            )
            first_due = int(time.time()) + 2 * TICK
            for index in range(count):
                at = first_due + index * SPREAD_SECONDS // count
                producer.start(f"restaurant-{index}", [notification(index, at)])
            print(f"drill: {count} notifications sent, due over {SPREAD_SECONDS} s", flush=True)

            def settled() -> bool:
                rows = states(ready["database_url"])
                done = sum(n for state, n in rows.items() if state not in UNSETTLED)
                print(f"drill: {done} of {count} settled {dict(rows)}", flush=True)
                return done == count

            wait_until(settled, timeout=600, interval=5, what="every notification's outcome")
            wait_until(
                lambda: len(peers.twilio.callbacks) >= len(peers.twilio.calls),
                timeout=60,
                what="Twilio's status callbacks",
            )
            rows = query(
                ready["database_url"],
                "SELECT id, target, state, coalesce(error, '') FROM notification",
            )
        finally:
            stop_local_stack(process, timeout=30)
        log = (workdir / "local.log").read_text()
        return figures(rows, peers, count, log, read_outbox(Path(ready["outbox"])))


UNSETTLED = ("pending", "claimed", "sending")


def states(database_url: str) -> Counter[str]:
    return Counter({str(state): int(n) for state, n in query(database_url, _STATES_SQL)})


_STATES_SQL = "SELECT state, count(*) FROM notification GROUP BY state"


# What the outbox says of a delivery the provider's transport took, or may have taken
# (``failed``: refused, or never left: a transient error).
REACHED = ("sent", "unknown")


def figures(
    rows: list[tuple[Any, ...]],
    peers: Any,
    count: int,
    log: str,
    outbox: list[dict[str, Any]],
) -> dict[str, Any]:
    """What the peers received and what the notifications (``rows``: id, target, state,
    error) became; the faults the stack reported when it stopped (``log``); which of the
    ``unknown`` ones never reached a provider (no delivery of it in the ``outbox`` the
    provider's transport took or may have taken)."""
    received = Counter(
        [call.form["To"] for call in peers.twilio.calls]
        + [mail.recipients[0] for mail in peers.smtp.mails]
        + [item.channel for item in peers.pubnub.publications]
    )
    reached = {record["notification_id"] for record in outbox if record["outcome"] in REACHED}
    unknown = [(target, error) for _, target, state, error in rows if state == "unknown"]
    unknown_unreached = sorted(
        int(id_) for id_, _, state, _ in rows if state == "unknown" and id_ not in reached
    )
    faults = re.findall(r"Lambda faults injected: (.*)", log)
    by_kind: Counter[str] = Counter()
    for _function, kind, number in re.findall(
        r"(\S+) (throttled|lost-answer) (\d+)", faults[-1] if faults else ""
    ):
        by_kind[kind] += int(number)
    return {
        "notifications": count,
        "delivered": sum(1 for _, target, _, _ in rows if received[target] >= 1),
        "doubled": sum(1 for _, target, _, _ in rows if received[target] > 1),
        "lost": sum(1 for _, target, _, _ in rows if received[target] == 0),
        "states": dict(Counter(state for _, _, state, _ in rows)),
        "unknown": len(unknown),
        "unknown_not_from_a_lost_notifier_answer": sum(
            1 for _, error in unknown if not error.startswith("Lambda.ServiceException")
        ),
        "unknown_never_reached_a_provider": len(unknown_unreached),
        "unknown_never_reached_ids": unknown_unreached,
        "faults": dict(by_kind),
        "faults_by_function": faults[-1] if faults else "none",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=float, default=0.2)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    result = run(args.faults, args.count, args.seed)
    for key, value in result.items():
        print(f"{key:45} {value}")
    ok = (
        result["delivered"] == result["notifications"]
        and result["doubled"] == 0
        and result["lost"] == 0
        and result["unknown_not_from_a_lost_notifier_answer"] == 0
        and result["unknown_never_reached_a_provider"] == 0
        and not set(result["states"]) & set(UNSETTLED)
    )
    print(json.dumps({"drill": "lambda-faults", **result, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
