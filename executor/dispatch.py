"""One job request of any type, run by a ``Runner``: what a pipeline step and a single job share.

``KINDS`` maps the Create* operations that start a job to the step type of the
definition language. ``run_request`` runs a request that ``rules.check`` has
passed and returns the job's Describe* response, cut to the fields of botocore's
output shape (``properties``); ``_local`` in it holds what the executor adds (the
log, files left outside the declared folders, the tuning job's training jobs). A
job that ran and failed is described, not raised.
"""

from __future__ import annotations

from typing import Any

from executor import properties, rules
from executor.errors import StepFailed
from executor.jobs import Runner
from executor.tuning import run_tuning

# Create* operation -> step type.
KINDS = {
    "CreateProcessingJob": "Processing",
    "CreateTrainingJob": "Training",
    "CreateHyperParameterTuningJob": "Tuning",
}
STATUS_FIELDS = {
    "Processing": "ProcessingJobStatus",
    "Training": "TrainingJobStatus",
    "Tuning": "HyperParameterTuningJobStatus",
}
# The status a job that ran to its end successfully has (every other one is a failure).
COMPLETED = "Completed"


def run_request(runner: Runner, kind: str, name: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run a checked ``kind`` request as job ``name``; its Describe* response (and ``_local``)."""
    described = _run(runner, kind, name, request)
    local = described.pop("_local", {})
    return {**properties.describe(kind, described), "_local": local}


def _run(runner: Runner, kind: str, name: str, request: dict[str, Any]) -> dict[str, Any]:
    if kind == "Processing":
        return runner.processing(name, request)
    if kind == "Training":
        return runner.training(name, request)
    if kind != "Tuning":
        raise ValueError(f"{kind!r} is not a job type ({', '.join(STATUS_FIELDS)}).")

    def train(job: str, training: dict[str, Any], threads: int) -> dict[str, Any]:
        rules.check("Training", training)
        return runner.training(job, training, threads)

    try:
        tuned = run_tuning(name, request, train)
    except StepFailed as exc:
        if exc.properties is None:
            raise
        tuned = exc.properties
    tuned["HyperParameterTuningJobArn"] = runner.arn("hyper-parameter-tuning-job", name)
    jobs = {s["TrainingJobName"]: s.pop("_local", {}) for s in tuned["TrainingJobSummaries"]}
    tuned["_local"] = {**tuned.get("_local", {}), "TrainingJobs": jobs}
    return tuned
