"""The one module that adapts moto fails loudly when moto changes under it."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from devstack import moto_adapter

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements-dev.txt"


def test_the_installed_moto_is_the_one_the_adapter_was_written_for() -> None:
    assert moto_adapter.check_moto() == []
    assert version("moto") == moto_adapter.MOTO_VERSION
    pinned = [line for line in REQUIREMENTS.read_text().splitlines() if line.startswith("moto[")]
    assert pinned == [f"moto[server,stepfunctions]=={moto_adapter.MOTO_VERSION}"]


def test_a_changed_signature_is_reported_and_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    owner, name, parameters = moto_adapter.PATCHED[1]
    originals = dict(moto_adapter._ORIGINALS)
    originals[(owner, name)] = lambda region, service: None  # as if moto dropped a parameter
    monkeypatch.setattr(moto_adapter, "_ORIGINALS", originals)

    (problem,) = moto_adapter.check_moto()

    assert problem.endswith(f"now takes ('region', 'service'), not {parameters}")
    with (
        pytest.raises(RuntimeError, match="does not fit this moto"),
        moto_adapter.lambdas_in_process(),
    ):
        pass


def test_patches_are_in_place_only_while_the_context_is_open() -> None:
    before = [getattr(owner, name) for owner, name, _ in moto_adapter.PATCHED]
    with moto_adapter.lambdas_in_process():
        during = [getattr(owner, name) for owner, name, _ in moto_adapter.PATCHED]
    after = [getattr(owner, name) for owner, name, _ in moto_adapter.PATCHED]
    assert all(a is not b for a, b in zip(before, during, strict=True))
    assert after == before
