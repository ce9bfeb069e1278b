"""``execution.json``: the execution in the shapes of DescribePipelineExecution and
ListPipelineExecutionSteps, plus each step's local details (request, log, cache key)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from executor.jobs import now

RECORD = "execution.json"


class Record:
    """The execution record, saved atomically after every change."""

    def __init__(self, folder: Path, header: dict[str, Any]) -> None:
        self.path = Path(folder) / RECORD
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {
            **header,
            "PipelineExecutionStatus": "Executing",
            "CreationTime": now(),
            "LastModifiedTime": now(),
            "PipelineExecutionSteps": [],
            "Local": {"Steps": {}},
        }
        self.save()

    def steps(self) -> list[dict[str, Any]]:
        return self.data["PipelineExecutionSteps"]

    def step(self, name: str) -> dict[str, Any]:
        for step in self.steps():
            if step["StepName"] == name:
                return step
        raise KeyError(name)

    def start(self, name: str, step_type: str) -> None:
        with self.lock:
            self.steps().insert(
                0,
                {
                    "StepName": name,
                    "StepDisplayName": name,
                    "StepStatus": "Executing",
                    "StartTime": now(),
                    "Metadata": {},
                    "AttemptCount": 1,
                },
            )
            self.data["Local"]["Steps"][name] = {"Type": step_type}
        self.save()

    def update(self, name: str, local: dict[str, Any] | None = None, **fields: Any) -> None:
        with self.lock:
            step = self.step(name)
            step.update({k: v for k, v in fields.items() if v is not None})
            if fields.get("StepStatus") in ("Succeeded", "Failed", "Stopped"):
                step["EndTime"] = now()
            self.data["Local"]["Steps"][name].update(local or {})
            self.data["Local"]["Steps"][name]["StepStatus"] = step["StepStatus"]
            self.data["Local"]["Steps"][name]["EndTime"] = step.get("EndTime")
        self.save()

    def finish(self, status: str, reason: str = "") -> None:
        with self.lock:
            self.data["PipelineExecutionStatus"] = status
            if reason:
                self.data["FailureReason"] = reason
        self.save()

    def save(self) -> None:
        with self.lock:
            self.data["LastModifiedTime"] = now()
            text = json.dumps(self.data, indent=2, sort_keys=False, default=str)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(text + "\n")
            os.replace(tmp, self.path)
