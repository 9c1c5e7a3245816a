"""The release before this checkout's: found in git, its files taken out, its template
synthesized by its own ``infra`` (devstack.rehearsal.upgrade deploys this tree over it).

- **The previous release** is a commit: ``ESCALATOR_PREVIOUS_RELEASE`` (a commit or a
  tag) when set, otherwise the newest commit that changed ``infra/``, ``lambdas/`` or
  ``sql/`` whose content of them differs from the checkout's (so a commit that changed
  them is not its own predecessor). A shallow clone fetches its history once.
- **Its template** is synthesized with bundling skipped and the default context, as the
  checkout's own (devstack.emulation.template), and shared by a test session the same
  way: the session's synthesis process makes it after the checkout's, its CDK loaded
  already (``synthesize_previous_release``: the release's ``infra`` and ``escalator``
  imported in place of this checkout's for the time of it); a process that needs it
  before then synthesizes it in a process of its own (``synthesize_release``).

Imports nothing of the emulation: the session's synthesis process runs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import PROJECT
from devstack.emulation.template import STACK_NAME, TEMPLATE_FILE_VARIABLE, shared


class ReleaseError(AssertionError):
    """The previous release cannot be found, taken out or synthesized; says why."""


PREVIOUS_RELEASE_VARIABLE = "ESCALATOR_PREVIOUS_RELEASE"
# What a release is made of: a change elsewhere (docs, tests, the harness) deploys nothing.
RELEASE_PATHS = ("infra", "lambdas", "sql")
# What it takes to synthesize a release and run its functions.
ARCHIVED_PATHS = ("app.py", "cdk.json", *RELEASE_PATHS)


@dataclass(frozen=True)
class Release:
    """A release's files, taken from git."""

    commit: str
    subject: str
    root: Path  # app.py, cdk.json, infra/, lambdas/, sql/ of that commit

    @property
    def code(self) -> Path:
        """The folder its functions' code is imported from."""
        return self.root / "lambdas"


def _git(checkout: Path, *arguments: str) -> str:
    completed = subprocess.run(  # noqa: S603 - git, fixed arguments
        ["git", "-C", str(checkout), *arguments],  # noqa: S607 - git from PATH
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise ReleaseError(f"git {' '.join(arguments)}: {completed.stderr.strip()}")
    return completed.stdout


def previous_release(checkout: Path) -> tuple[str, str]:
    """The commit (full id) and subject of the release before the checkout's (module
    docstring)."""
    named = os.environ.get(PREVIOUS_RELEASE_VARIABLE)
    if named:
        commit = _git(checkout, "rev-parse", "--verify", f"{named}^{{commit}}").strip()
        return commit, _git(checkout, "log", "-1", "--format=%s", commit).strip()
    found = _release_in_history(checkout)
    if found is not None:
        return found
    shallow = _git(checkout, "rev-parse", "--is-shallow-repository").strip() == "true"
    if shallow:
        # (a CI's shallow clone: its history, once, from where it was cloned)
        subprocess.run(  # noqa: S603 - git, fixed arguments
            ["git", "-C", str(checkout), "fetch", "--quiet", "--unshallow"],  # noqa: S607
            check=False,
            capture_output=True,
            timeout=120,
        )
        found = _release_in_history(checkout)
        if found is not None:
            return found
    raise ReleaseError(
        "no earlier release in this clone's history"
        + (" (a shallow clone, and git fetch --unshallow did not help)" if shallow else "")
        + f"; name one with {PREVIOUS_RELEASE_VARIABLE}=<commit or tag>"
    )


def _release_in_history(checkout: Path) -> tuple[str, str] | None:
    history = _git(checkout, "log", "--format=%H%x00%s", "--", *RELEASE_PATHS)
    for line in history.splitlines():
        commit, _, subject = line.partition("\0")
        changed = subprocess.run(  # noqa: S603 - git, fixed arguments
            ["git", "-C", str(checkout), "diff", "--quiet", commit, "--", *RELEASE_PATHS],  # noqa: S607
            check=False,
        )
        if changed.returncode == 1:
            return commit, subject
    return None


def extract_release(checkout: Path, commit: str, subject: str, into: Path) -> Release:
    """The release's files (``ARCHIVED_PATHS``) under ``into``."""
    archive = into / "release.tar"
    present = [
        path
        for path in ARCHIVED_PATHS
        if _git(checkout, "ls-tree", "--name-only", commit, "--", path).strip()
    ]
    _git(checkout, "archive", "--format=tar", f"--output={archive}", commit, "--", *present)
    root = into / commit[:12]
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    archive.unlink()
    return Release(commit=commit, subject=subject, root=root)


# Run in the release's own folder, with its own infra and escalator first on the path:
# the template as devstack.emulation.template.synthesize makes this checkout's.
_SYNTHESIZE = """
import json, sys, tempfile
import aws_cdk as cdk
from aws_cdk.assertions import Template
from infra.stack import EscalatorStack
context, stack_name, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
with tempfile.TemporaryDirectory(prefix="escalator-cdk-") as outdir:
    app = cdk.App(outdir=outdir, context={"aws:cdk:bundling-stacks": [], **context})
    template = Template.from_stack(EscalatorStack(app, stack_name)).to_json()
with open(out, "w", encoding="utf-8") as file:
    json.dump(template, file)
"""


def synthesize_release(release: Release, **context: Any) -> dict[str, Any]:
    """The release's template, synthesized by its own ``infra`` (bundling skipped)."""
    with tempfile.TemporaryDirectory(prefix="escalator-release-") as directory:
        out = Path(directory) / "template.json"
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(release.root), str(release.code)]),
        }
        completed = subprocess.run(  # noqa: S603 - this interpreter, our own script
            [sys.executable, "-c", _SYNTHESIZE, json.dumps(context), STACK_NAME, str(out)],
            cwd=release.root,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise ReleaseError(
                f"the release {release.commit[:12]} does not synthesize:\n"
                f"{completed.stderr[-3000:]}"
            )
        template: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return template


def reservation() -> Path | None:
    """The file whose lock the session's synthesis process holds until it has made the
    previous release's template (``None`` outside a test session)."""
    shared_file = os.environ.get(TEMPLATE_FILE_VARIABLE)
    return Path(shared_file).with_name("release.reserve") if shared_file else None


def release_template(release: Release) -> dict[str, Any]:
    """The release's template: the test session's, made by its synthesis process (this
    waits for it to finish: its lock on ``reservation()``), else synthesized now in a
    process of its own (the first to need it makes it)."""
    reserved = reservation()
    if reserved is not None and reserved.exists():
        with reserved.open("rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
    return shared(f"release-{release.commit[:12]}", lambda: synthesize_release(release))


def synthesize_previous_release() -> None:
    """For the test session's synthesis process, once the checkout's template is made:
    the previous release's template, synthesized in this process (its CDK is loaded) and
    shared. What fails here is left for the test that needs the template to meet again
    and report. (The process holds ``reservation()``'s lock from its start until it has
    returned from here.)"""
    shared_file = os.environ.get(TEMPLATE_FILE_VARIABLE)
    if not shared_file:
        return
    with contextlib.suppress(Exception):
        commit, subject = previous_release(PROJECT)
        into = Path(shared_file).parent / "release"
        into.mkdir(exist_ok=True)
        release = extract_release(PROJECT, commit, subject, into)
        shared(f"release-{commit[:12]}", lambda: _synthesize_here(release))


_OURS = ("infra", "escalator")


def _ours(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in _OURS)


def _synthesize_here(release: Release) -> dict[str, Any]:
    """``synthesize_release`` in this process: the release's ``infra`` and ``escalator``
    imported in place of the checkout's, which are put back after."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    saved_modules = {name: module for name, module in sys.modules.items() if _ours(name)}
    saved_path = list(sys.path)
    for name in saved_modules:
        del sys.modules[name]
    sys.path[:0] = [str(release.root), str(release.code)]
    importlib.invalidate_caches()
    try:
        stack = importlib.import_module("infra.stack")
        with tempfile.TemporaryDirectory(prefix="escalator-cdk-") as outdir:
            app = cdk.App(outdir=outdir, context={"aws:cdk:bundling-stacks": []})
            return dict(Template.from_stack(stack.EscalatorStack(app, STACK_NAME)).to_json())
    finally:
        for name in [name for name in sys.modules if _ours(name)]:
            del sys.modules[name]
        sys.modules.update(saved_modules)
        sys.path[:] = saved_path
        importlib.invalidate_caches()
