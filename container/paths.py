"""The /opt/ml layout of SageMaker training and processing jobs.

The root comes from ``OPT_ML_ROOT`` (default ``/opt/ml``), so the same layout
can be built in a temporary folder for tests and local image runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "/opt/ml"
MODEL_ARCHIVE = "model.tar.gz"
HYPERPARAMETERS_FILE = "hyperparameters.json"


@dataclass(frozen=True)
class OptMl:
    """Every path a job reads or writes, under one root."""

    root: Path

    @classmethod
    def from_env(cls) -> OptMl:
        """The layout under ``$OPT_ML_ROOT`` (or ``/opt/ml``)."""
        return cls(Path(os.environ.get("OPT_ML_ROOT") or DEFAULT_ROOT))

    # Training jobs ---------------------------------------------------------------
    @property
    def hyperparameters(self) -> Path:
        return self.root / "input" / "config" / HYPERPARAMETERS_FILE

    def channel(self, name: str) -> Path:
        """A training job input channel: ``input/data/<name>``."""
        return self.root / "input" / "data" / name

    @property
    def model(self) -> Path:
        return self.root / "model"

    # Processing jobs -------------------------------------------------------------
    def processing_input(self, name: str) -> Path:
        return self.root / "processing" / "input" / name

    def processing_output(self, name: str) -> Path:
        return self.root / "processing" / "output" / name

    @property
    def processing_outputs(self) -> Path:
        return self.root / "processing" / "output"

    # Both ------------------------------------------------------------------------
    @property
    def failure(self) -> Path:
        """Training jobs report this file's text as the FailureReason."""
        return self.root / "output" / "failure"

    @property
    def message(self) -> Path:
        """Processing jobs report this file's text as the ExitMessage."""
        return self.root / "output" / "message"


# The layout a job sees inside SageMaker, for code that writes job requests.
JOB = OptMl(Path(DEFAULT_ROOT))
