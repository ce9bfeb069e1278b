"""Reading splits and writing outputs atomically, never over an earlier result."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from steps.contract import SPLIT_FILE
from steps.errors import DataError, OutputExistsError


@contextmanager
def staged_outputs(target: Path) -> Iterator[Path]:
    """Yield a staging folder inside ``target``; publish its files only on success.

    Files appear in ``target`` together at the end (each by an atomic rename).
    If the block raises, nothing is published. An existing file is never
    overwritten: that raises ``OutputExistsError`` before anything moves.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
    try:
        yield stage
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        clashes = [target / p.relative_to(stage) for p in files]
        clashes = [str(p) for p in clashes if p.exists()]
        if clashes:
            raise OutputExistsError(
                f"Refusing to overwrite earlier results: {', '.join(clashes)}. "
                "Write to a new output folder."
            )
        for path in files:
            dest = target / path.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON with sorted keys and a trailing newline."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_split(folder: Path) -> pd.DataFrame:
    """Read every Parquet file in a split folder (a SageMaker channel or a local folder)."""
    folder = Path(folder)
    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise DataError(
            f"No Parquet files in '{folder}': expected the output of the prepare step "
            f"({SPLIT_FILE} per split folder)."
        )
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
