"""Small prepared data shared by the step tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from conf import compose
from steps.prepare import prepare


@pytest.fixture(scope="session")
def small_cfg() -> DictConfig:
    return compose(["data.n_rows=20000"])


@pytest.fixture(scope="session")
def splits(small_cfg: DictConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return prepare(small_cfg, tmp_path_factory.mktemp("prepared"))
