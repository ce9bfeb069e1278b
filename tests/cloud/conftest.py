"""Fixtures of the cloud tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Outputs (outputs/cloud, the executor's store) under a fresh folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
