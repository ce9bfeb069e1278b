"""Tuning strategies, ranges and outcomes, with an in-process stand-in for the training jobs."""

from __future__ import annotations

import io
import math
import threading
from pathlib import Path
from typing import Any

import pytest

from executor.errors import RequestRefused, StepFailed
from executor.record import Record
from executor.table import LiveTable, render
from executor.tuning import OBJECTIVE_KEY, run_tuning


def request(strategy: str, ranges: dict[str, Any], jobs: int = 6, parallel: int = 2) -> dict:
    return {
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "RandomSeed": 3,
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "loss"},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": jobs,
                "MaxParallelTrainingJobs": parallel,
            },
            "ParameterRanges": ranges,
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {"fixed": "1"},
            "AlgorithmSpecification": {"MetricDefinitions": [{"Name": "loss", "Regex": "x"}]},
        },
    }


RANGES = {
    "ContinuousParameterRanges": [
        {"Name": "lr", "MinValue": "0.001", "MaxValue": "0.3", "ScalingType": "Logarithmic"},
        {
            "Name": "beta",
            "MinValue": "0.9",
            "MaxValue": "0.999",
            "ScalingType": "ReverseLogarithmic",
        },
    ],
    "IntegerParameterRanges": [
        {"Name": "leaves", "MinValue": "8", "MaxValue": "128", "ScalingType": "Linear"}
    ],
    "CategoricalParameterRanges": [{"Name": "kind", "Values": ["a", "b"]}],
}


class FakeTrainer:
    """Scores a job by its hyperparameters; jobs named in ``fail`` fail."""

    def __init__(self, fail: tuple[int, ...] = ()) -> None:
        self.fail, self.seen, self.lock, self.running, self.peak = fail, [], threading.Lock(), 0, 0
        self.threads: list[int] = []

    def __call__(self, name: str, req: dict[str, Any], threads: int) -> dict[str, Any]:
        with self.lock:
            self.seen.append(req["HyperParameters"])
            self.threads.append(threads)
            self.running += 1
            self.peak = max(self.peak, self.running)
        threading.Event().wait(0.05)
        with self.lock:
            self.running -= 1
        index = int(name.rsplit("-", 2)[1])
        hp = req["HyperParameters"]
        if index in self.fail:
            return {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: boom"}
        loss = abs(math.log(float(hp.get("lr", "0.05")) / 0.05)) + float(hp.get("leaves", 0)) / 1000
        return {
            "TrainingJobStatus": "Completed",
            "FinalMetricDataList": [{"MetricName": "loss", "Value": loss}],
        }


@pytest.mark.parametrize("strategy", ["Random", "Bayesian"])
def test_strategies_sample_inside_the_ranges_and_rank_best_first(strategy: str) -> None:
    trainer = FakeTrainer(fail=(2,))
    props = run_tuning("tune-1", request(strategy, RANGES), trainer, cores=2)
    assert len(trainer.seen) == 6 and trainer.peak == 2
    for hp in trainer.seen:
        assert hp["fixed"] == "1" and hp[OBJECTIVE_KEY] == "loss"
        assert 0.001 <= float(hp["lr"]) <= 0.3 and 0.9 <= float(hp["beta"]) <= 0.999
        assert 8 <= int(hp["leaves"]) <= 128 and hp["kind"] in ("a", "b")
    summaries = props["TrainingJobSummaries"]
    values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries[:-1]]
    assert values == sorted(values) and summaries[-1]["ObjectiveStatus"] == "Failed"
    assert props["BestTrainingJob"]["TrainingJobName"] == summaries[0]["TrainingJobName"]
    assert props["TrainingJobStatusCounters"] == {"Completed": 5, "Failed": 1}


@pytest.mark.parametrize(("cores", "threads"), [(2, 1), (4, 2), (5, 2), (1, 1)])
def test_parallel_jobs_share_the_cores(cores: int, threads: int) -> None:
    """Two jobs at a time: each gets its share; more threads than cores slow all of them."""
    trainer = FakeTrainer()
    run_tuning("t", request("Random", RANGES, jobs=4, parallel=2), trainer, cores=cores)
    assert trainer.threads == [threads] * 4


def test_grid_enumerates_categorical_ranges_only() -> None:
    ranges = {
        "CategoricalParameterRanges": [
            {"Name": "a", "Values": ["1", "2"]},
            {"Name": "b", "Values": ["x", "y", "z"]},
        ]
    }
    trainer = FakeTrainer()
    req = request("Grid", ranges)
    del req["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxNumberOfTrainingJobs"]
    run_tuning("grid", req, trainer)
    assert sorted((h["a"], h["b"]) for h in trainer.seen) == [(a, b) for a in "12" for b in "xyz"]
    with pytest.raises(RequestRefused, match="only CategoricalParameterRanges"):
        run_tuning("grid", request("Grid", RANGES), trainer)


def test_the_tuning_job_fails_only_when_no_training_job_succeeds() -> None:
    with pytest.raises(StepFailed, match="All 2 training jobs failed"):
        run_tuning("t", request("Random", RANGES, jobs=2), FakeTrainer(fail=(1, 2)))
    with pytest.raises(RequestRefused, match=r"Hyperband.*not supported locally"):
        run_tuning("t", request("Hyperband", RANGES), FakeTrainer())


def test_step_table_rows(tmp_path: Path) -> None:
    rec = Record(tmp_path, {})
    rec.data["Local"]["Steps"] = {"A": {"Type": "Processing"}, "B": {"Type": "Fail"}}
    rec.data["PipelineExecutionSteps"] = [
        {
            "StepName": "B",
            "StepStatus": "Failed",
            "StartTime": "2026-01-01T00:00:05+00:00",
            "EndTime": "2026-01-01T00:00:05+00:00",
            "FailureReason": "too high",
        },
        {
            "StepName": "A",
            "StepStatus": "Succeeded",
            "StartTime": "2026-01-01T00:00:00+00:00",
            "EndTime": "2026-01-01T00:00:04.5+00:00",
            "CacheHitResult": {"x": 1},
        },
    ]
    lines = render(rec)
    assert lines[0].split() == ["Step", "Type", "Status", "Duration", "Reason"]
    assert lines[1].split() == ["A", "Processing", "Succeeded", "(cached)", "4.5", "s"]
    assert lines[2].split()[:3] == ["B", "Fail", "Failed"] and lines[2].endswith("too high")

    out = io.StringIO()
    LiveTable(out)(rec)
    assert "B (Fail): Failed after 0.0 s: too high" in out.getvalue()
