"""``make cloud-run --logs``: a training job's log lines as they come, until the job ends.

In SageMaker a training job logs to CloudWatch: group ``/aws/sagemaker/TrainingJobs``,
one stream per instance, ``<job name>/algo-1-<epoch>``. Here (``--local``) the
executor writes the job's output to ``log.txt`` in the job's folder
(``<executor outputs>/jobs/<job name>/``, the layout ``executor.Options`` documents).
Both are read forward from their start by a thread while the run loop follows
the job (``following``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# The executor's folder of single jobs (``executor.Options``) and each job's log in it.
LOCAL_JOBS, LOCAL_LOG = "jobs", "log.txt"
# Seconds between reads of the log.
INTERVAL = 2.0


class LogStream(Protocol):
    """A job's log, read forward: each call returns the lines written since the last."""

    def read(self, final: bool = False) -> list[str]: ...


class CloudWatchLog:
    """The job's CloudWatch streams (``<job>/algo-<n>-<epoch>``), each read from its start.

    The streams appear once the job's instances start (the group once the account's
    first job logs): until then a read returns nothing.
    """

    def __init__(self, client: Any, job_name: str) -> None:
        self.client = client
        self.prefix = f"{job_name}/"
        self.tokens: dict[str, str | None] = {}

    def read(self, final: bool = False) -> list[str]:
        if not self.tokens:
            self._find_streams()
        lines: list[str] = []
        for stream in sorted(self.tokens):
            token = self.tokens[stream]
            while True:
                kwargs: dict[str, Any] = {
                    "logGroupName": LOG_GROUP,
                    "logStreamName": stream,
                    "startFromHead": True,
                }
                if token:
                    kwargs["nextToken"] = token
                page = self.client.get_log_events(**kwargs)
                lines += [str(e["message"]).rstrip("\n") for e in page.get("events", [])]
                new = page.get("nextForwardToken")
                done = not page.get("events") or new == token
                token = new
                if done:
                    break
            self.tokens[stream] = token
        return lines

    def _find_streams(self) -> None:
        from botocore.exceptions import ClientError

        try:
            pages = self.client.get_paginator("describe_log_streams").paginate(
                logGroupName=LOG_GROUP, logStreamNamePrefix=self.prefix
            )
            for page in pages:
                for stream in page.get("logStreams", []):
                    self.tokens.setdefault(stream["logStreamName"], None)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise


class FileLog:
    """A log file that grows while its job runs (the executor's ``log.txt``), read forward."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""

    def read(self, final: bool = False) -> list[str]:
        """Complete lines written since the last read (with ``final``, the last line too)."""
        if self.path.is_file():
            with self.path.open("rb") as f:
                if f.seek(0, 2) < self.offset:  # a new file in its place: from its start
                    self.offset, self.partial = 0, ""
                f.seek(self.offset)
                data = f.read()
            self.offset += len(data)
            self.partial += data.decode(errors="replace")
        *lines, self.partial = self.partial.split("\n")
        if final and self.partial:
            lines.append(self.partial)
            self.partial = ""
        return lines


def local_log(outputs: Path, job_name: str) -> FileLog:
    """The log of the executor's job ``job_name`` under its outputs folder ``outputs``."""
    return FileLog(outputs / LOCAL_JOBS / job_name / LOCAL_LOG)


@contextmanager
def following(
    stream: LogStream | None, write: Callable[[str], None], interval: float = INTERVAL
) -> Iterator[None]:
    """Write the lines of ``stream`` as they come while the block runs, and the rest after it.

    ``write`` gets the lines of each read at once, joined by newlines. A log that
    cannot be read (no permission, say) ends the following with one warning line;
    the block goes on.
    """
    if stream is None:
        yield
        return
    done = threading.Event()

    def follow() -> None:
        try:
            while True:
                final = done.is_set()
                lines = stream.read(final=final)
                if lines:
                    write("\n".join(lines))
                if final:
                    return
                done.wait(interval)
        except Exception as err:  # the job goes on without its log
            write(f"warning: stopped following the job's log: {err}")

    thread = threading.Thread(target=follow, name="job-log", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=30)
