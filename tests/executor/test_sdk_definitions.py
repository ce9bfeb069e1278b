"""The SDK-built definitions under ``sdk/`` are what the installed SageMaker SDK builds."""

from __future__ import annotations

import os

import pytest

from . import support

STANDALONE = "EXECUTOR_TESTS_STANDALONE"


@pytest.mark.slow
@pytest.mark.skipif(
    bool(os.environ.get(STANDALONE)), reason="the SDK's build is checked by `make test`"
)
def test_the_sdk_definitions_are_what_the_sdk_builds() -> None:
    pytest.importorskip("sagemaker.mlops.workflow")
    from .sdk_definitions import build

    built = build()
    stored = sorted(p.stem for p in support.SDK_DEFINITIONS.glob("*.json"))
    assert stored == sorted(built), "run `python tests/executor/sdk_definitions.py`"
    for name, definition in built.items():
        assert support.sdk_definition(name) == definition, (
            f"sdk/{name}.json is stale: run `python tests/executor/sdk_definitions.py`"
        )
