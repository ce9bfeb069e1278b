"""What ``make cloud-run`` shows while its training jobs run.

On a terminal, a table redrawn in place: every job's name, status, secondary
status, elapsed time, billable seconds and objective metric, read from its
DescribeTrainingJob response. Anywhere else (CI, a pipe, a log file), one line
per status change. ``render`` builds the table; ``Progress`` writes either.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

# The metric the table shows, as the job's metric definitions name it.
OBJECTIVE = "test:poisson_deviance"
HEADER = ("job", "status", "secondary", "elapsed", "billable", OBJECTIVE)
# Statuses of a job that has ended (its end time no longer moves).
ENDED = ("Completed", "Failed", "Stopped")
PENDING = "Pending"
# ANSI: cursor up N lines, to the line's start; erase from the cursor to the screen's end.
_UP, _ERASE_BELOW = "\x1b[{n}A\r", "\x1b[J"


def render(jobs: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """The table of ``jobs`` (DescribeTrainingJob responses; ``{"TrainingJobName": n}``
    for a job not created yet): one row each, ``-`` where a value is not known yet."""
    now = now or datetime.now(UTC)
    lines = [list(HEADER), *(_row(job, now) for job in jobs)]
    widths = [max(len(row[i]) for row in lines) for i in range(len(HEADER))]
    text = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    return "\n".join(line.rstrip() for line in text)


def _row(job: Mapping[str, Any], now: datetime) -> list[str]:
    status = str(job.get("TrainingJobStatus") or PENDING)
    billable = job.get("BillableTimeInSeconds")
    return [
        str(job.get("TrainingJobName", "")),
        status,
        str(job.get("SecondaryStatus") or "-"),
        _duration(elapsed(job, now)),
        "-" if billable is None else f"{int(billable)}s",
        _metric(job, OBJECTIVE),
    ]


def elapsed(job: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds since the job was created: until it ended, or until ``now`` while it runs."""
    created = _time(job.get("CreationTime"))
    if created is None:
        return None
    ended = None
    if job.get("TrainingJobStatus") in ENDED:
        ended = _time(job.get("TrainingEndTime")) or _time(job.get("LastModifiedTime"))
    return max(0.0, ((ended or now) - created).total_seconds())


def _time(value: Any) -> datetime | None:
    """A time of a Describe* response: a datetime (boto3) or ISO 8601 text (the executor)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _metric(job: Mapping[str, Any], name: str) -> str:
    values = [
        m.get("Value") for m in job.get("FinalMetricDataList") or [] if m["MetricName"] == name
    ]
    return f"{values[-1]:.6f}" if values and isinstance(values[-1], int | float) else "-"


def status_label(job: Mapping[str, Any]) -> str:
    """``<status> (<secondary>)``, or the status alone when they are the same."""
    status = str(job.get("TrainingJobStatus", "Unknown"))
    secondary = str(job.get("SecondaryStatus", ""))
    return f"{status} ({secondary})" if secondary and secondary != status else status


def change_line(name: str, job: Mapping[str, Any]) -> str:
    """``<job>  <status> (<secondary>)[: <failure reason>]``: the line of one status change."""
    reason = f": {job['FailureReason']}" if job.get("FailureReason") else ""
    return f"{name}  {status_label(job)}{reason}"


class Progress:
    """The jobs' progress on ``out``: a live table on a terminal, else one line per change.

    ``update`` records a job's DescribeTrainingJob response; ``message`` writes a line
    (a log line, a notice) above the table. Safe to call from several threads.
    """

    def __init__(self, out: TextIO, names: Sequence[str], live: bool | None = None) -> None:
        self.out = out
        self.live = _is_terminal(out) if live is None else live
        self.jobs: dict[str, Mapping[str, Any]] = {n: {"TrainingJobName": n} for n in names}
        self.seen: dict[str, str] = {}
        self.drawn = 0
        self.lock = threading.Lock()

    def update(self, name: str, described: Mapping[str, Any]) -> None:
        with self.lock:
            self.jobs[name] = {"TrainingJobName": name, **described}
            if self.live:
                self._draw()
                return
            label = status_label(described)
            if label != self.seen.get(name):
                self.out.write(change_line(name, described) + "\n")
                self.out.flush()
                self.seen[name] = label

    def message(self, text: str) -> None:
        with self.lock:
            if not self.live:
                self.out.write(text + "\n")
                self.out.flush()
                return
            self._erase()
            self.out.write(text + "\n")
            self._draw()

    def _erase(self) -> None:
        if self.drawn:
            self.out.write(_UP.format(n=self.drawn) + _ERASE_BELOW)
            self.drawn = 0

    def _draw(self) -> None:
        self._erase()
        columns, rows = _size(self.out)
        jobs, hidden = fit(list(self.jobs.values()), rows)
        lines = render(jobs).splitlines() + ([hidden] if hidden else [])
        if columns > 1:  # a wrapped line would take two rows and spoil the redraw
            lines = [line[: columns - 1] for line in lines]
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self.drawn = len(lines)


def fit(jobs: list[Mapping[str, Any]], rows: int) -> tuple[list[Mapping[str, Any]], str]:
    """The jobs whose rows fit a terminal of ``rows`` lines, and a line naming the others.

    A table taller than the terminal cannot be redrawn in place: the jobs that have
    not ended come first; the rest are counted.
    """
    if rows < 4 or len(jobs) + 2 <= rows:  # the header, the rows, the cursor's line
        return jobs, ""
    active = [job for job in jobs if job.get("TrainingJobStatus") not in ENDED]
    shown = active[: rows - 3]
    ended = len(jobs) - len(active)
    return shown, f"... {len(jobs) - len(shown)} more job(s) ({ended} ended)"


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty() and os.environ.get("TERM") != "dumb"
    except ValueError:  # a closed stream
        return False


def _size(out: TextIO) -> tuple[int, int]:
    """The terminal's columns and lines."""
    try:
        size = os.get_terminal_size(out.fileno())
    except (AttributeError, OSError, ValueError):
        size = shutil.get_terminal_size()
    return size.columns, size.lines
