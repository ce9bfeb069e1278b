"""Every module of the project imports on its own, in a fresh interpreter.

The direction of imports between the packages is checked by the import-linter
contracts in ``pyproject.toml`` (``make check``, which ``make test`` runs).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("conf", "steps", "container", "pipelines", "executor", "infra", "hydra_plugins")


def modules() -> list[str]:
    """Dotted names of every module of the project's packages."""
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
    return names


def test_every_package_is_listed() -> None:
    """A new top-level package of the project is covered here as well."""
    found = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and (any(p.glob("*.py")) and p.name not in ("tests", "benchmarks"))
    }
    assert found <= set(PACKAGES), found - set(PACKAGES)
    assert len(modules()) > 60


@pytest.mark.slow
@pytest.mark.parametrize("module", modules())
def test_module_imports_alone(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-3:]
