"""Fixtures of the cloud tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Outputs (outputs/cloud, the executor's store) under a fresh folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """Hydra configures logging when a sweep runs in-process, with handlers on the streams
    pytest captures for that test; later tests' log records must not reach closed streams."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
