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


# ------------------------------------------------ completion criterion and early stopping


def target_request(target: float, direction: str = "Minimize", parallel: int = 1) -> dict:
    req = request("Random", RANGES, jobs=6, parallel=parallel)
    config = req["HyperParameterTuningJobConfig"]
    config["HyperParameterTuningJobObjective"]["Type"] = direction
    config["TuningJobCompletionCriteria"] = {"TargetObjectiveMetricValue": target}
    return req


@pytest.mark.parametrize(("direction", "target"), [("Minimize", 1e9), ("Maximize", -1e9)])
def test_a_target_the_first_job_reaches_ends_the_search_after_it(
    direction: str, target: float
) -> None:
    trainer = FakeTrainer()
    props = run_tuning("t", target_request(target, direction), trainer, cores=2)
    assert len(trainer.seen) == 1
    assert props["HyperParameterTuningJobStatus"] == "Completed"
    assert props["TrainingJobStatusCounters"] == {"Completed": 1, "Failed": 0}
    assert props["TuningJobCompletionDetails"] == {"NumberOfTrainingJobsObjectiveNotImproving": 0}
    best = props["BestTrainingJob"]["TrainingJobName"]
    assert props["_local"]["CompletionCriterion"].startswith(
        f"TargetObjectiveMetricValue {target} reached by {best} "
    )
    assert props["_local"]["CompletionCriterion"].endswith("after 1 of 6 training jobs")


def test_parallel_jobs_already_running_end_before_the_search_does() -> None:
    trainer = FakeTrainer()
    props = run_tuning("t", target_request(1e9, parallel=2), trainer, cores=2)
    assert len(trainer.seen) == 2 == len(props["TrainingJobSummaries"])


def test_an_unreachable_target_runs_the_whole_budget() -> None:
    losses = [10.0, 9.95, 9.0, 9.0, 8.99, 20.0]  # improving by over 1%: the 1st and the 3rd

    def trainer(name: str, req: dict[str, Any], threads: int) -> dict[str, Any]:
        loss = losses[int(name.rsplit("-", 2)[1]) - 1]
        return {
            "TrainingJobStatus": "Completed",
            "FinalMetricDataList": [{"MetricName": "loss", "Value": loss}],
        }

    props = run_tuning("t", target_request(1.0), trainer, cores=2)
    assert len(props["TrainingJobSummaries"]) == 6
    assert props["HyperParameterTuningJobStatus"] == "Completed"
    assert "CompletionCriterion" not in props["_local"]
    # Not improving since the best last improved by over 1%: 9.0, 8.99 and 20.0.
    assert props["TuningJobCompletionDetails"] == {"NumberOfTrainingJobsObjectiveNotImproving": 3}


def test_early_stopping_is_not_emulated_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    req = request("Random", RANGES, jobs=3)
    req["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] = "Auto"
    trainer = FakeTrainer()
    props = run_tuning("t", req, trainer, cores=2)
    assert len(trainer.seen) == 3  # every training job ran to its end
    assert set(props["_local"]["NotEmulated"]) == {"TrainingJobEarlyStoppingType"}
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "warning: tuning job t: TrainingJobEarlyStoppingType is not emulated here: "
        "Auto: every training job runs to its end"
    ]
    quiet = run_tuning("t", request("Random", RANGES, jobs=1), FakeTrainer(), cores=2)
    assert "NotEmulated" not in quiet["_local"] and "TuningJobCompletionDetails" not in quiet
    assert capsys.readouterr().err == ""


def test_a_warm_start_is_refused_before_any_job() -> None:
    from executor.rules import problems

    req = {
        "HyperParameterTuningJobName": "t",
        **request("Random", RANGES),
        "WarmStartConfig": {
            "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "p1"}],
            "WarmStartType": "IdenticalDataAndAlgorithm",
        },
    }
    definition = req["TrainingJobDefinition"]
    definition["AlgorithmSpecification"].update(TrainingImage="x", TrainingInputMode="File")
    definition.update(
        RoleArn="arn:aws:iam::000000000000:role/r",
        OutputDataConfig={"S3OutputPath": "s3://bucket/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    found = problems("Tuning", req)
    assert len(found) == 1 and found[0].startswith("WarmStartConfig: a warm start reads")
    del req["WarmStartConfig"]
    assert problems("Tuning", req) == []
