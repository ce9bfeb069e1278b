"""Each name shared across the job boundary is written once in the project's source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("conf", "steps", "container", "pipelines", "executor", "infra")
# The local executor implements SageMaker's side of the contract on its own, by
# design: SageMaker's names may appear there a second time, the project's may not.
SERVICE_SIDE = ROOT / "executor"
PROJECT_NAMES = (
    "config.yaml",
    "model_quality.json",
    "container.entrypoint",
    "input_data_uri",
    "--overrides",
    "--input-data-uri",
    "HydraOverrides",
    "InputDataUri",
)
SAGEMAKER_NAMES = ("hyperparameters.json", "model.tar.gz", "/opt/ml")


def _sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def _definitions(literal: str, skip: Path | None = None) -> list[str]:
    pattern = re.compile(r"""(?<![\w`])["']""" + re.escape(literal) + r"""["']""")
    found = []
    for path in _sources():
        if skip is not None and path.is_relative_to(skip):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    return found


@pytest.mark.parametrize("literal", PROJECT_NAMES)
def test_project_name_is_defined_once(literal: str) -> None:
    assert len(_definitions(literal)) == 1, _definitions(literal)


@pytest.mark.parametrize("literal", SAGEMAKER_NAMES)
def test_sagemaker_name_is_defined_once_on_the_job_side(literal: str) -> None:
    assert len(_definitions(literal, skip=SERVICE_SIDE)) == 1, _definitions(literal, SERVICE_SIDE)
