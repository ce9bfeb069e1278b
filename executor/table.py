"""The live step table: name, type, status, duration and failure reason, as Studio shows them.

A job step's name says what ran it: ``Train (process)`` ran the local command mapped to
its image, ``Train (image claim-frequency:abc)`` the image itself in a container engine.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

from executor.record import Record

COLUMNS = ("Step", "Type", "Status", "Duration", "Reason")
PROCESS_NOTE = (
    "(process): the job ran as a local process, the command mapped to its image, not the "
    "image the definition names; its success does not prove the image."
)


def duration(step: dict[str, Any]) -> str:
    start = datetime.fromisoformat(step["StartTime"])
    end = datetime.fromisoformat(step["EndTime"]) if step.get("EndTime") else datetime.now(UTC)
    return f"{(end - start).total_seconds():.1f} s"


def rows(record: Record) -> list[tuple[str, ...]]:
    """One row per started step, in start order."""
    out: list[tuple[str, ...]] = []
    local = record.data["Local"]["Steps"]
    for step in reversed(record.steps()):
        status = step["StepStatus"]
        if step.get("CacheHitResult"):
            status += " (cached)"
        details = local.get(step["StepName"], {})
        runs_as = details.get("RunsAs")
        out.append(
            (
                f"{step['StepName']} ({runs_as})" if runs_as else step["StepName"],
                details.get("Type", ""),
                status,
                duration(step),
                step.get("FailureReason", ""),
            )
        )
    return out


def render(record: Record, width: int = 100) -> list[str]:
    table = [COLUMNS, *rows(record)]
    sizes = [max(len(r[i]) for r in table) for i in range(4)]
    lines = []
    for row in table:
        cells = [row[i].ljust(sizes[i]) for i in range(4)]
        line = "  ".join(cells)
        reason = row[4]
        room = max(20, width - len(line) - 2)
        if reason:
            line += "  " + (reason if len(reason) <= room else reason[: room - 3] + "...")
        lines.append(line.rstrip())
    if any(row[0].endswith(" (process)") for row in table[1:]):
        lines.append(PROCESS_NOTE)
    return lines


class LiveTable:
    """Redraws the table in place on a terminal; elsewhere prints each status change once."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.drawn = 0
        self.seen: dict[str, str] = {}
        self.lock = threading.Lock()

    def __call__(self, record: Record) -> None:
        with self.lock:
            if self.tty:
                lines = render(record)
                if self.drawn:
                    self.out.write(f"\x1b[{self.drawn}F\x1b[J")
                self.out.write("\n".join(lines) + "\n")
                self.drawn = len(lines)
            else:
                for row in rows(record):
                    name, _, runs_as = row[0].partition(" (")
                    if self.seen.get(name) != row[2]:
                        self.seen[name] = row[2]
                        done = row[2] not in ("Executing",)
                        extra = f" after {row[3]}" if done else ""
                        reason = f": {row[4]}" if row[4] else ""
                        kind = f"{row[1]}, {runs_as.removesuffix(')')}" if runs_as else row[1]
                        self.out.write(f"  {name} ({kind}): {row[2]}{extra}{reason}\n")
            self.out.flush()

    def final(self, record: Record) -> None:
        """The whole table once more at the end (when changes were printed line by line)."""
        if not self.tty:
            self.out.write("\n" + "\n".join(render(record)) + "\n")
            self.out.flush()
