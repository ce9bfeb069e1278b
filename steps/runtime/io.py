"""Reading splits and writing outputs atomically, never over an earlier result."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from conf.contract import SPLIT_FILE
from conf.errors import DataError, OutputExistsError, OutputWriteError
from conf.secrets import redact
from steps.runtime.interrupt import raise_if_interrupted

log = logging.getLogger(__name__)

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
    A folder that cannot be written (read-only, no permission, disk full) raises
    ``OutputWriteError``.
    """
    stages: dict[str, Path] = {}
    try:
        for name, target in targets.items():
            target = Path(target)
            try:
                target.mkdir(parents=True, exist_ok=True)
                stages[name] = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
            except OSError as exc:
                raise unwritable(target, exc) from None
        try:
            yield dict(stages)
        except OSError as exc:
            if exc.errno in WRITE_ERRNOS or "No space left" in str(exc):
                raise unwritable(Path(next(iter(targets.values()))), exc) from None
            raise
        raise_if_interrupted()
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
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
            except OSError as exc:
                raise unwritable(dest.parent, exc) from None
    finally:
        for stage in stages.values():
            shutil.rmtree(stage, ignore_errors=True)


# Errors that mean "this folder cannot take the outputs": the user can fix them.
WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EFBIG,
}


def unwritable(target: Path, exc: OSError) -> OutputWriteError:
    """A one-paragraph ``OutputWriteError`` for a folder that cannot take the outputs."""
    reason = exc.strerror or " ".join(str(exc).split())
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "The disk is full: free some space or choose a folder on another disk"
    else:
        hint = "Choose a writable folder"
    return OutputWriteError(
        f"Cannot write the outputs to '{target}': {reason}. {hint} "
        "(for a local run: hydra.run.dir=<folder>)."
    )


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be written in it, before any work.

    A read-only folder, a path that is a file or a full disk is an ``OutputWriteError``
    naming the folder and the reason.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as exc:
        raise unwritable(folder, exc) from None


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, then a rename.

    A full disk or an unwritable folder leaves no truncated file and raises an
    ``OutputWriteError`` naming the path.
    """
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
        ) as handle:
            tmp = Path(handle.name)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise unwritable(path, exc) from None


def finite_json(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` with every NaN or infinite float replaced by ``None``, and where they were."""
    if isinstance(value, dict):
        out, where = {}, []
        for key, item in value.items():
            out[key], found = finite_json(item, f"{path}.{key}" if path else str(key))
            where += found
        return out, where
    if isinstance(value, (list, tuple)):
        items = [finite_json(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return [i for i, _ in items], [w for _, found in items for w in found]
    if isinstance(value, float) and not math.isfinite(value):
        return None, [path]
    return value, []


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write strict JSON (sorted keys, trailing newline); undefined numbers become ``null``.

    Each value replaced by ``null`` is named in a warning. Credential values from the
    environment are redacted.
    """
    clean, undefined = finite_json(payload)
    if undefined:
        log.warning(
            "%s: undefined values written as null: %s", Path(path).name, ", ".join(undefined)
        )
    text = json.dumps(clean, indent=2, sort_keys=True, allow_nan=False, default=_plain)
    Path(path).write_text(redact(text) + "\n")


def _plain(value: Any) -> Any:
    """numpy scalars and other number-likes as plain JSON values."""
    if hasattr(value, "item"):
        item = value.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_split(folder: Path) -> pd.DataFrame:
    """Read every Parquet file in a split folder (a SageMaker channel or a local folder)."""
    folder = Path(folder)
    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise DataError(
            f"No Parquet files in '{folder}': expected the output of the prepare step "
            f"({SPLIT_FILE} per split folder)."
        )
    try:
        frames = [pd.read_parquet(f) for f in files]
    except Exception as exc:
        raise DataError(
            f"Cannot read the Parquet files in '{folder}' ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}): expected the output of the prepare step."
        ) from None
    return pd.concat(frames, ignore_index=True)


def extract_safely(tar: tarfile.TarFile, target: Path) -> None:
    """Unpack regular files and folders only, all inside ``target``.

    Python 3.11.4 and later do this with the ``data`` filter; older 3.11 releases
    (Debian's 3.11.2 among them) have no filters, so the same rule is checked here.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(target, filter="data")
        return
    root = target.resolve()
    for member in tar.getmembers():
        inside = (root / member.name).resolve().is_relative_to(root)
        if not inside or not (member.isfile() or member.isdir()):
            raise DataError(
                f"The model archive holds '{member.name}', which is not a plain file or folder "
                "inside the archive: refusing to unpack it."
            )
    tar.extractall(target)
