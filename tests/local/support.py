"""Running the local entrypoints as a user does: a subprocess in a folder of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(
    cwd: Path, *args: str, module: str = "pipelines.local.run", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> ARGS`` in ``cwd``, output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
