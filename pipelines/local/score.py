"""``make score-local``: score a CSV or Parquet file of new policies, in-process.

The file goes through the model server's own code path (``steps.score``: the
same parsing, checks and predictions as ``POST /invocations``); no claim counts
are needed. The model is chosen as for ``make serve-local``. Predictions go to a
new folder, ``outputs/scores/<date>_<time>_<microseconds>/``: the input's
columns plus ``frequency`` and, where exposure is given, ``expected_claims``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from conf.contract import CSV_TYPE, JSON_TYPE, PARQUET_TYPE
from conf.errors import DataError, UserError, report
from pipelines.local.serve import model_tree, resolve

SCORES = Path("outputs/scores")
TYPES = {".csv": CSV_TYPE, ".parquet": PARQUET_TYPE, ".json": JSON_TYPE}
SUMMARY_FILE = "score.json"
log = logging.getLogger(__name__)


def score_file(
    path: Path, model: str | None, out: Path | None = None, scores: Path = SCORES
) -> Path:
    """Score ``path`` with the model ``model`` names; return the new output folder."""
    from steps.runtime.io import staged_outputs
    from steps.score import EXPECTED_CLAIMS, FREQUENCY, load_scorer, predict, read_body

    path = Path(path)
    kind = TYPES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"Cannot tell the format of '{path}': score a .csv, .parquet or .json file."
        )
    if not path.is_file():
        raise DataError(f"'{path}' does not exist (or is not a file).")
    source = resolve(model)
    with model_tree(source) as root:
        scorer = load_scorer(root / "model")
    frame = read_body(path.read_bytes(), kind, scorer)
    predictions = predict(scorer, frame)
    clashes = [c for c in predictions.columns if c in frame.columns]
    if clashes:
        log.warning("The input's columns %s are replaced by the predictions", clashes)
    result = frame.drop(columns=clashes).reset_index(drop=True)
    result[predictions.columns] = predictions.to_numpy()
    folder = Path(out) if out else Path(scores) / datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    if folder.exists() and any(folder.iterdir()):
        raise DataError(f"'{folder}' is not empty: scores always go to a new folder.")
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
    with staged_outputs(folder) as stage:
        if kind == PARQUET_TYPE:
            result.to_parquet(stage / name, index=False)
        else:
            result.to_csv(stage / name, index=False)
        (stage / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return folder / name


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make score-local ARGS=...", description=__doc__)
    parser.add_argument("input", type=Path, help="a .csv, .parquet or .json file of policies")
    parser.add_argument("--model", help="default: the newest successful run in outputs/runs")
    parser.add_argument("--out", type=Path, help=f"a new folder (default: under {SCORES})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        written = score_file(args.input, args.model, args.out)
    except UserError as err:
        return report(err)
    summary = json.loads((written.parent / SUMMARY_FILE).read_text())
    print(
        f"Scored {summary['rows']} policies with {summary['model_name']} "
        f"(mean frequency {summary['mean_frequency']}): {written}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
