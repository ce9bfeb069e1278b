"""A sweep's summary: the table of test metrics and ``summary.csv``, one row per run.

Every runner of sweeps ends with the same summary: ``make local-run -m`` (its jobs'
run folders) and ``make cloud-run -m`` (its training jobs' downloaded outputs). A row
is ``(label, metrics)``: the label names the run (its overrides), the metrics are
the run's ``metrics.json``, or ``{"error": reason}`` for a run that failed.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any, TextIO

SUMMARY_FILE = "summary.csv"
# The test metrics of the table and of summary.csv, in their order.
SUMMARY_COLUMNS = ("poisson_deviance", "d2", "gini", "baseline_poisson_deviance", "d2_ratio")

Row = tuple[str, dict[str, Any]]


def summary_table(rows: Sequence[Row]) -> str:
    """A plain-text table of test metrics, one row per run (status and error if any failed)."""
    failures = any("error" in metrics for _, metrics in rows)
    header = ["run", *(["status"] if failures else []), *SUMMARY_COLUMNS]
    lines = [header]
    for label, metrics in rows:
        test = metrics.get("test", {})
        status = ["failed" if "error" in metrics else "ok"] if failures else []
        cells = [_cell(test.get(c)) for c in SUMMARY_COLUMNS]
        lines.append([label, *status, *cells])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    errors = [f"{label}: {metrics['error']}" for label, metrics in rows if "error" in metrics]
    return "test metrics\n" + "\n".join(text + (["errors:", *errors] if errors else []))


def write_csv(f: TextIO, rows: Sequence[Row], jobs: Sequence[str] | None = None) -> None:
    """``summary.csv`` into ``f``: run, (each row's job name, if given,) status, error, metrics."""
    writer = csv.writer(f)
    job_column = ["job"] if jobs is not None else []
    writer.writerow(["run", *job_column, "status", "error", *SUMMARY_COLUMNS])
    names = list(jobs) if jobs is not None else [None] * len(rows)
    for (label, metrics), name in zip(rows, names, strict=True):
        test = metrics.get("test", {})
        cells = ["" if test.get(c) is None else test[c] for c in SUMMARY_COLUMNS]
        status = "failed" if "error" in metrics else "ok"
        job = [name] if jobs is not None else []
        writer.writerow([label, *job, status, metrics.get("error", ""), *cells])


def exit_code(rows: Sequence[Row]) -> int:
    """0: every run completed; 1: a run failed unexpectedly; 2: a run failed on a user error."""
    codes = [1 if str(m["error"]).startswith("Unexpected") else 2 for _, m in rows if "error" in m]
    return max(codes, default=0)


def _cell(value: Any) -> str:
    return f"{value:.6f}" if isinstance(value, (int, float)) else "-"
