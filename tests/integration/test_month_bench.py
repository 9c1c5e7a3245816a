"""bench/month.py at a tiny scale: its last line is JSON with the month's figures, and the
figures agree with each other (what the purge deleted is what was due to go, the database
with retention is smaller than without, the bill adds up). Behaviour only: no timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# (one worker runs them all: the module's bench run is made once, not once per worker)
pytestmark = pytest.mark.xdist_group("month_bench")

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "bytes_per_notification",
    "days_to_full_without_retention",
    "claim_p99_ratio_10m_finished",
    "usd_per_month",
    "usd_by_component",
    "bytes_with_retention",
    "bytes_without_retention",
    "purge_rows_per_second",
    "claim_p99_empty_ms",
    "claim_p99_finished_ms",
}


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # two days of history, two more each followed by the purge at a one-day retention
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "month.py"),
            "--days",
            "2",
            "--scale",
            "0.002",
            "--after-days",
            "2",
            "--retention-days",
            "1",
            "--repeats",
            "5",
            "--purge-seconds",
            "600",
        ],
        cwd=ROOT,
        env={**os.environ, "TZ": "UTC"},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return last


def test_its_last_line_holds_the_figures(figures: dict[str, Any]) -> None:
    assert figures["bench"] == "month"
    assert figures.keys() >= KEYS, KEYS - figures.keys()
    assert set(figures["usd_by_component"]) >= {
        "Step Functions",
        "Lambda",
        "logs",
        "metrics",
        "database",
    }


def test_the_rows_are_the_profiles(figures: dict[str, Any]) -> None:
    processes, notifications = figures["processes"], figures["notifications"]
    assert processes > 0
    assert notifications == 3 * processes
    # a start for each, a stop for most
    assert processes < figures["requests"] < 2 * processes
    assert 0 < figures["sent"] < notifications
    # the bulk rows have the real code's shape: the same bytes in each table and state
    real, bulk = figures["real_row_bytes"], figures["bulk_row_bytes"]
    assert set(real) == {
        "process stopped",
        "process completed",
        "notification sent phone",
        "notification sent sms",
        "notification cancelled phone",
        "notification cancelled sms",
        "request_log started",
        "request_log stopped",
    }
    assert bulk == real


def test_the_sizes_agree(figures: dict[str, Any]) -> None:
    per_notification = figures["month_bytes"] / figures["notifications"]
    assert figures["bytes_per_notification"] == pytest.approx(per_notification, abs=0.1)
    disk = figures["disk_gib"] * 2**30
    days = disk / figures["bytes_per_day_full_profile"]
    # (the empty database's own bytes come off the disk first)
    assert 0.95 * days < figures["days_to_full_without_retention"] <= days
    assert figures["bytes_with_retention"] < figures["bytes_without_retention"]


def test_the_purge_deleted_what_was_due_to_go(figures: dict[str, Any]) -> None:
    assert figures["purge_complete"] is True
    assert figures["purged_processes"] == figures["purgeable_processes"] > 0
    assert figures["purged_rows"] > figures["purged_processes"]


def test_the_claim_ratio_and_the_bill_add_up(figures: dict[str, Any]) -> None:
    ratio = figures["claim_p99_finished_ms"] / figures["claim_p99_empty_ms"]
    assert figures["claim_p99_ratio_10m_finished"] == pytest.approx(ratio, rel=0.01)
    assert figures["claim_finished_rows"] >= figures["sent"]
    assert figures["claim_full_10m"] is False
    total = sum(figures["usd_by_component"].values())
    assert figures["usd_per_month"] == pytest.approx(total, abs=0.05)
    assert figures["usd_by_component"]["database"] > 0
