"""What the upgrade rehearsal deploys over (the previous release, found in git) and in
which order it updates the stack (devstack.rehearsal.upgrade)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from devstack.rehearsal.deployment import Rehearsal, RehearsalError
from devstack.rehearsal.release import (
    PREVIOUS_RELEASE_VARIABLE,
    ReleaseError,
    extract_release,
    previous_release,
)
from devstack.rehearsal.upgrade import Upgrade, update_order


def git(repository: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repository), *arguments],
        check=True,
        capture_output=True,
        text=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            "HOME": str(repository),
            "PATH": "/usr/bin:/bin",
        },
    ).stdout.strip()


def commit(repository: Path, path: str, text: str, message: str) -> str:
    (repository / path).parent.mkdir(parents=True, exist_ok=True)
    (repository / path).write_text(text, encoding="utf-8")
    git(repository, "add", path)
    git(repository, "commit", "-q", "-m", message)
    return git(repository, "rev-parse", "HEAD")


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(PREVIOUS_RELEASE_VARIABLE, raising=False)
    git(tmp_path, "init", "-q")
    return tmp_path


def test_the_previous_release_is_the_newest_commit_whose_release_files_differ(
    repository: Path,
) -> None:
    # GIVEN a release, a later one, then changes to docs only
    first = commit(repository, "sql/0001.sql", "CREATE TABLE a ();", "first release")
    second = commit(repository, "lambdas/escalator/x.py", "X = 1\n", "second release")
    commit(repository, "docs/page.md", "words", "docs only")

    # THEN the checkout's release is the second, and the one before it the first
    assert previous_release(repository) == (first, "first release")
    # AND with the tree changed since the second, the second is the one before
    (repository / "infra").mkdir()
    (repository / "infra" / "stack.py").write_text("STACK = 2\n", encoding="utf-8")
    git(repository, "add", "infra/stack.py")
    assert previous_release(repository) == (second, "second release")


def test_a_shallow_clone_fetches_its_history_to_find_the_previous_release(
    repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = commit(repository, "sql/0001.sql", "CREATE TABLE a ();", "first release")
    commit(repository, "sql/0002.sql", "CREATE TABLE b ();", "second release")
    clone = tmp_path_factory.mktemp("clone") / "shallow"
    git(repository, "clone", "-q", "--depth", "1", f"file://{repository}", str(clone))
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"

    assert previous_release(clone) == (first, "first release")


def test_a_release_can_be_named(repository: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = commit(repository, "sql/0001.sql", "CREATE TABLE a ();", "first release")
    commit(repository, "sql/0002.sql", "CREATE TABLE b ();", "second release")
    git(repository, "tag", "v1", first)
    monkeypatch.setenv(PREVIOUS_RELEASE_VARIABLE, "v1")

    assert previous_release(repository) == (first, "first release")


def test_a_history_without_an_earlier_release_is_refused_with_what_to_do(
    repository: Path,
) -> None:
    commit(repository, "sql/0001.sql", "CREATE TABLE a ();", "the only release")

    with pytest.raises(ReleaseError, match=PREVIOUS_RELEASE_VARIABLE):
        previous_release(repository)


def test_a_release_is_taken_with_its_own_files(
    repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = commit(repository, "lambdas/escalator/x.py", "X = 1\n", "first release")
    commit(repository, "lambdas/escalator/x.py", "X = 2\n", "second release")

    release = extract_release(repository, first, "first release", tmp_path_factory.mktemp("r"))

    assert (release.code / "escalator" / "x.py").read_text(encoding="utf-8") == "X = 1\n"
    assert not (release.root / "docs").exists()


def test_a_resource_is_updated_after_everything_it_names() -> None:
    template = {
        "Resources": {
            "Apply": {"Type": "Custom::Trigger", "Properties": {"HandlerArn": {"Ref": "Launch"}}},
            "Launch": {"Type": "AWS::Lambda::Function", "Properties": {}},
            "Confirm": {"Type": "AWS::Lambda::Function", "DependsOn": "Apply", "Properties": {}},
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"Name": {"Ref": "Apply"}}},
            "Window": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "DefinitionString": {"Fn::Sub": "run ${Confirm.Arn}"},
                    "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
                },
            },
            "Initiator": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Environment": {"Variables": {"WINDOW": {"Ref": "Window"}}}},
            },
            "Alone": {"Type": "AWS::Lambda::Function", "Properties": {}},
        }
    }
    kinds = {"AWS::Lambda::Function", "Custom::Trigger", "AWS::StepFunctions::StateMachine"}

    assert update_order(template, kinds) == [
        "Alone",
        "Launch",
        "Apply",
        "Confirm",
        "Window",
        "Initiator",
    ]


@pytest.mark.parametrize(
    ("kind", "old", "new"),
    [
        ("AWS::SQS::Queue", "Requests", "RequestsV2"),
        ("AWS::RDS::DBInstance", "Database", "DatabaseV2"),
        ("AWS::Lambda::Url", "CallbackUrl", "CallbackUrlV2"),
    ],
)
def test_a_release_that_replaces_what_holds_work_in_flight_is_refused(
    kind: str, old: str, new: str
) -> None:
    # GIVEN a running release, and a new one whose queue, instance or callback URL has
    # another logical id (CloudFormation would replace it: what it holds is lost)
    running = cast(Rehearsal, SimpleNamespace(template={"Resources": {old: {"Type": kind}}}))
    upgrade = Upgrade(running, {"Resources": {new: {"Type": kind}}})

    # WHEN the deploy begins THEN it is refused, naming both, before anything changes
    with pytest.raises(RehearsalError, match=f"{old}.*{new}.*would be lost"):
        upgrade.step("roles")
