"""The built image under test, the engine that runs it, and the definitions it must honour.

These tests run the real image. They need a working container engine and the
image named by ``IMAGE_UNDER_TEST``, which ``make test-image`` builds and sets;
everywhere else they are skipped with the reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from infra import image as tool

ROLE = "arn:aws:iam::123456789012:role/claim-frequency-sagemaker"
# Small data keeps each job to seconds; the definition is otherwise the default one.
UPSERT = [
    f"sagemaker.role_arn={ROLE}",
    "sagemaker.bucket=claim-frequency-data",
    "sagemaker.image_uri=123456789012.dkr.ecr.us-east-1.amazonaws.com/claim-frequency:test",
    "sagemaker.region=us-east-1",
    "data.n_rows=6000",
]


@pytest.fixture(scope="session")
def engine() -> tool.Engine:
    """A working engine, or a skip that says why there is none."""
    if not os.environ.get("IMAGE_UNDER_TEST"):
        pytest.skip("no image under test: `make test-image` builds one and runs these tests")
    try:
        return tool.detect_engine()
    except tool.ImageError as err:
        pytest.skip(f"no container engine can run here: {err}")


@pytest.fixture(scope="session")
def image(engine: tool.Engine) -> str:
    """The image under test, checked to exist locally."""
    name = os.environ["IMAGE_UNDER_TEST"]
    tool.image_labels(engine, name)  # fails clearly if it was never built
    return name


def build(overrides: list[str], folder: Path) -> dict[str, Any]:
    """The pipeline definition for ``overrides``; its config channel is written to ``folder``."""
    from conf import compose
    from pipelines.sagemaker import cli

    cfg = compose(overrides)
    definition, _ = cli.build_definition(cfg, overrides, folder, "us-east-1")
    return json.loads(definition)


@pytest.fixture(scope="session")
def train_definition(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The train pipeline's definition and the config channel folder it was built with."""
    folder = tmp_path_factory.mktemp("channel-train")
    return build(UPSERT, folder), folder


@pytest.fixture(scope="session")
def tune_definition(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("channel-tune")
    return build([*UPSERT, "pipeline=tune"], folder), folder
