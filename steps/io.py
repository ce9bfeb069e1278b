"""Reading splits and writing outputs atomically, never over an earlier result."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from steps.contract import SPLIT_FILE
from steps.errors import DataError, OutputExistsError

# Hidden folders a step writes into before it publishes (never part of an output).
STAGING_PREFIX = ".staging-"


@contextmanager
def staged_outputs(target: Path) -> Iterator[Path]:
    """Yield a staging folder inside ``target``; publish its files only on success.

    Files appear in ``target`` together at the end (each by an atomic rename).
    If the block raises, nothing is published. An existing file is never
    overwritten: that raises ``OutputExistsError`` before anything moves.
    """
    with staged_folders({"": Path(target)}) as stages:
        yield stages[""]


@contextmanager
def staged_folders(targets: Mapping[str, Path]) -> Iterator[dict[str, Path]]:
    """Yield a staging folder inside each target folder; publish them all only on success.

    Each target is staged in a hidden folder of its own, so publishing is a
    rename within that folder and never crosses folders: a job's declared
    output folders may each be a separate mount, where a rename from one to
    another fails. Every target is checked for clashes before any file moves;
    if the block raises, nothing is published and the staging folders go.
    """
    stages: dict[str, Path] = {}
    try:
        for name, target in targets.items():
            target = Path(target)
            target.mkdir(parents=True, exist_ok=True)
            stages[name] = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
        yield dict(stages)
        moves = [
            (path, Path(targets[name]) / path.relative_to(stage))
            for name, stage in stages.items()
            for path in sorted(p for p in stage.rglob("*") if p.is_file())
        ]
        clashes = [str(dest) for _, dest in moves if dest.exists()]
        if clashes:
            raise OutputExistsError(
                f"Refusing to overwrite earlier results: {', '.join(clashes)}. "
                "Write to a new output folder."
            )
        for path, dest in moves:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    finally:
        for stage in stages.values():
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
