"""``make score-local``: score a CSV or Parquet file of new policies, in-process.

The file goes through the model server's own code path (``steps.score``: the
same parsing, checks and predictions as ``POST /invocations``); no claim counts
are needed. The model is chosen as for ``make serve-local``. Predictions go to a
new folder, ``outputs/scores/<date>_<time>_<microseconds>/``: the input's
columns plus ``frequency`` and, where exposure is given, ``expected_claims``.
They appear together at the end or not at all: SIGINT or SIGTERM leaves no
partial folder behind and ends with ``interrupted`` (exit 130 or 143).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps.runtime.interrupt import Interrupted, exit_interrupted, remove_staging, signals_raise

if TYPE_CHECKING:
    from conf.errors import OutputWriteError

# The project's modules (Hydra, pandas) are imported once SIGINT and SIGTERM are
# handled, so that a signal at any moment ends the command with one line.
SCORES = Path("outputs/scores")
TYPES = {".csv": "text/csv", ".parquet": "application/x-parquet", ".json": "application/json"}
SUMMARY_FILE = "score.json"
log = logging.getLogger(__name__)


def output_folder(out: Path | None, scores: Path = SCORES) -> Path:
    """``--out``, or a new folder under ``scores`` named by the time."""
    return Path(out) if out else Path(scores) / datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")


def score_file(
    path: Path, model: str | None, out: Path | None = None, scores: Path = SCORES
) -> Path:
    """Score ``path`` with the model ``model`` names; return the new output file."""
    from conf.contract import PARQUET_TYPE
    from conf.errors import DataError, OutputWriteError
    from pipelines.local.serve import load_named, model_tree, resolve
    from steps.runtime.io import staged_outputs
    from steps.score import EXPECTED_CLAIMS, FREQUENCY, predict, read_body

    path = Path(path)
    kind = TYPES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"Cannot tell the format of '{path}': score a .csv, .parquet or .json file."
        )
    if not path.is_file():
        raise DataError(f"'{path}' does not exist (or is not a file).")
    folder = output_folder(out, scores)
    check_output(folder)
    source = resolve(model)
    with model_tree(source) as root:
        scorer = load_named(source, root)
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read '{path}': {exc.strerror or exc}.") from None
    frame = read_body(body, kind, scorer)
    predictions = predict(scorer, frame)
    clashes = [c for c in predictions.columns if c in frame.columns]
    if clashes:
        log.warning("The input's columns %s are replaced by the predictions", clashes)
    result = frame.drop(columns=clashes).reset_index(drop=True)
    result[predictions.columns] = predictions.to_numpy()
    name = "predictions.parquet" if kind == PARQUET_TYPE else "predictions.csv"
    summary: dict[str, Any] = {
        "input": str(path),
        "model": str(source),
        "model_name": scorer.model.name,
        "rows": len(result),
        "mean_frequency": float(result[FREQUENCY].mean()) if len(result) else None,
        "expected_claims": (
            float(result[EXPECTED_CLAIMS].sum()) if EXPECTED_CLAIMS in result else None
        ),
    }
    try:
        with staged_outputs(folder) as stage:
            if kind == PARQUET_TYPE:
                result.to_parquet(stage / name, index=False)
            else:
                result.to_csv(stage / name, index=False)
            (stage / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    except OutputWriteError as err:
        raise unwritable(folder, err.__context__) from None
    return folder / name


def check_output(folder: Path) -> None:
    """Refuse, before any scoring, an output folder that is a file or not empty."""
    from conf.errors import DataError

    if folder.is_file() or (folder.exists() and not folder.is_dir()):
        raise DataError(f"'{folder}' is a file: --out names a new folder for the scores.")
    if folder.is_dir() and any(folder.iterdir()):
        raise DataError(f"'{folder}' is not empty: scores always go to a new folder.")
    for parent in folder.parents:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"'{parent}' is a file: --out must be a folder under a folder.")


def unwritable(folder: Path, cause: BaseException | None) -> OutputWriteError:
    """The one-line error for scores that cannot be written, naming ``folder``."""
    from conf.errors import OutputWriteError

    if isinstance(cause, OSError) and (
        cause.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(cause)
    ):
        reason = "the disk is full (no space left on the device)"
    elif isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror
    else:
        reason = " ".join(str(cause).split()) or "unknown error"
    return OutputWriteError(
        f"Cannot write the scores to '{folder}': {reason}. Free some space, or choose a "
        "writable folder with --out."
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make score-local ARGS=...", description=__doc__)
    parser.add_argument("input", type=Path, help="a .csv, .parquet or .json file of policies")
    parser.add_argument("--model", help="default: the newest successful run in outputs/runs")
    parser.add_argument("--out", type=Path, help=f"a new folder (default: under {SCORES})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    folder = output_folder(args.out)
    existed = folder.exists()
    try:
        with signals_raise():
            from conf.errors import UserError, report

            try:
                written = score_file(args.input, args.model, folder)
            except UserError as err:
                return report(err)
    except Interrupted as err:
        remove_staging([folder])
        if not existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # this run made it and wrote nothing in it
        exit_interrupted(err, roots=[folder])
    summary = json.loads((written.parent / SUMMARY_FILE).read_text())
    print(
        f"Scored {summary['rows']} policies with {summary['model_name']} "
        f"(mean frequency {summary['mean_frequency']}): {written}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
