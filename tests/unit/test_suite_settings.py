"""The suite's own settings (pyproject.toml): an exception a test does not see still
fails it, whichever thread raised it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.mark.parametrize(
    "raising",
    [
        # a thread of the test's (a server's, a pool's) that dies of an exception
        "t = threading.Thread(target=lambda: 1 / 0); t.start(); t.join()",
        # an object whose finalizer raises (unraisable)
        "type('T', (), {'__del__': lambda self: 1 / 0})()",
    ],
    ids=["thread", "unraisable"],
)
def test_an_exception_no_test_sees_fails_the_test_it_happened_in(
    pytester: pytest.Pytester, raising: str
) -> None:
    # GIVEN the suite's warning filters, and a test whose only fault is an exception
    # raised where the test does not look
    filters = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"][
        "filterwarnings"
    ]
    pytester.makeini("[pytest]\nfilterwarnings =\n" + "".join(f"    {f}\n" for f in filters))
    pytester.makepyfile(
        f"""
        import threading

        def test_quietly_broken():
            {raising}
        """
    )

    # WHEN it runs
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")

    # THEN it fails
    result.assert_outcomes(failed=1)
