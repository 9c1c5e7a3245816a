"""boto3 sessions for the harness (the test pipeline, the local stack, the rehearsal)
that share one loader of the AWS service models. Each new session otherwise parses every
service's model anew the first time it makes a client (a quarter of a second for
Lambda's alone), and the harness makes one per test."""

from __future__ import annotations

import functools
from typing import Any

import boto3
import botocore.loaders
import botocore.session


@functools.cache
def _loader(data_path: str | None) -> botocore.loaders.Loader:
    """One loader per data path (``AWS_DATA_PATH``): it keeps each model it parsed."""
    return botocore.loaders.create_loader(data_path)


def shared_models(core: botocore.session.Session) -> botocore.session.Session:
    """``core``, loading service models through the process's shared loader."""
    core.register_component("data_loader", _loader(core.get_config_variable("data_path")))
    return core


def session(**settings: Any) -> boto3.Session:
    """A boto3 session (``boto3.Session``'s ``settings``) that shares the models loaded."""
    return boto3.Session(botocore_session=shared_models(botocore.session.Session()), **settings)
