"""Hyperparameter tuning jobs: the tuning job config's strategy, ranges, limits and objective.

Random samples each range by its scaling type; Bayesian uses optuna's TPE sampler
(ask/tell); Grid enumerates categorical ranges. Training jobs run at most
``min(MaxParallelTrainingJobs, cores)`` at a time. A failed training job counts as
failed; the tuning job fails only when none succeeds. ``TrainingJobSummaries`` is
ordered best first, so ``TrainingJobSummaries[0]`` is the best job, as the SDK's
``get_top_model_s3_uri`` expects.

The completion criterion ``TargetObjectiveMetricValue`` is honoured: once a completed
training job's objective reaches it, no further training job starts and the tuning
job is Completed, with ``TuningJobCompletionDetails``. Early stopping of training
jobs (``TrainingJobEarlyStoppingType: Auto``) and the other completion criteria are
not emulated: one warning line, and ``NotEmulated`` in what the executor records.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import random
import secrets
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from executor.errors import RequestRefused, StepFailed, StepStopped
from executor.jobs import cut, now

OBJECTIVE_KEY = "_tuning_objective_metric"
STRATEGIES = ("Bayesian", "Random", "Grid")
# An objective that improves on the best by this share of it or less is "not improving"
# (TuningJobCompletionDetails.NumberOfTrainingJobsObjectiveNotImproving: 1% or less).
NOT_IMPROVING = 0.01


class Space:
    """The ParameterRanges of a tuning job config."""

    def __init__(self, ranges: dict[str, list[dict[str, Any]]]) -> None:
        self.continuous = ranges.get("ContinuousParameterRanges", [])
        self.integer = ranges.get("IntegerParameterRanges", [])
        self.categorical = ranges.get("CategoricalParameterRanges", [])
        for spec in self.continuous + self.integer:
            if float(spec["MinValue"]) > float(spec["MaxValue"]):
                raise RequestRefused(f"Range {spec['Name']}: MinValue > MaxValue.")
            scaling = spec.get("ScalingType", "Auto")
            low = float(spec["MinValue"])
            if scaling == "Logarithmic" and low <= 0:
                raise RequestRefused(f"Range {spec['Name']}: Logarithmic needs MinValue > 0.")
            if scaling == "ReverseLogarithmic" and not (low >= 0 and float(spec["MaxValue"]) < 1):
                raise RequestRefused(
                    f"Range {spec['Name']}: ReverseLogarithmic needs 0 <= MinValue, MaxValue < 1."
                )

    def sample(self, rng: random.Random) -> dict[str, str]:
        out = {}
        for spec in self.continuous:
            out[spec["Name"]] = repr(_draw(rng, spec))
        for spec in self.integer:
            value = round(_draw(rng, spec))
            out[spec["Name"]] = str(min(max(value, int(spec["MinValue"])), int(spec["MaxValue"])))
        for spec in self.categorical:
            out[spec["Name"]] = rng.choice(spec["Values"])
        return out

    def grid(self) -> list[dict[str, str]]:
        if self.continuous or self.integer:
            raise RequestRefused(
                "The Grid strategy takes only CategoricalParameterRanges, as on the service."
            )
        names = [s["Name"] for s in self.categorical]
        return [
            dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(s["Values"] for s in self.categorical))
        ]

    def distributions(self) -> dict[str, Any]:
        """The ranges as optuna distributions (reverse-log ranges are sampled in 1 - x)."""
        import optuna

        out: dict[str, Any] = {}
        for spec in self.continuous:
            low, high = float(spec["MinValue"]), float(spec["MaxValue"])
            scaling = spec.get("ScalingType", "Auto")
            if scaling == "ReverseLogarithmic":
                out[spec["Name"]] = optuna.distributions.FloatDistribution(
                    1 - high, 1 - low, log=True
                )
            else:
                out[spec["Name"]] = optuna.distributions.FloatDistribution(
                    low, high, log=scaling == "Logarithmic"
                )
        for spec in self.integer:
            out[spec["Name"]] = optuna.distributions.IntDistribution(
                int(spec["MinValue"]),
                int(spec["MaxValue"]),
                log=spec.get("ScalingType") == "Logarithmic",
            )
        for spec in self.categorical:
            out[spec["Name"]] = optuna.distributions.CategoricalDistribution(spec["Values"])
        return out

    def to_strings(self, params: dict[str, Any]) -> dict[str, str]:
        reverse = {
            s["Name"] for s in self.continuous if s.get("ScalingType") == "ReverseLogarithmic"
        }
        out = {}
        for name, value in params.items():
            if name in reverse:
                value = 1 - value
            out[name] = repr(float(value)) if isinstance(value, float) else str(value)
        return out


def _draw(rng: random.Random, spec: dict[str, Any]) -> float:
    low, high = float(spec["MinValue"]), float(spec["MaxValue"])
    scaling = spec.get("ScalingType", "Auto")
    if scaling == "Logarithmic":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if scaling == "ReverseLogarithmic":
        return 1 - math.exp(rng.uniform(math.log(1 - high), math.log(1 - low)))
    return rng.uniform(low, high)


def run_tuning(
    name: str,
    request: dict[str, Any],
    train: Callable[[str, dict[str, Any], int], dict[str, Any]],
    cores: int | None = None,
) -> dict[str, Any]:
    """Run a CreateHyperParameterTuningJob request; return DescribeHyperParameterTuningJob-like
    properties. ``train(job_name, training_request, threads)`` runs one training job with
    its share of the cores (each of the parallel jobs has an instance of its own on the
    service; here they share the machine, and more threads than cores slow all of them).

    When no training job succeeds, ``StepFailed`` carries the failed tuning job's properties.
    """
    config = request["HyperParameterTuningJobConfig"]
    definition = request["TrainingJobDefinition"]
    strategy = config.get("Strategy", "Bayesian")
    if strategy not in STRATEGIES:
        raise RequestRefused(
            f"Tuning strategy {strategy!r} is not supported locally "
            f"(supported: {', '.join(STRATEGIES)})."
        )
    objective = config["HyperParameterTuningJobObjective"]
    metric, direction = objective["MetricName"], objective["Type"]
    criteria = config.get("TuningJobCompletionCriteria") or {}
    target = criteria.get("TargetObjectiveMetricValue")
    not_emulated = _not_emulated(config)
    for field, what in not_emulated.items():
        print(f"warning: tuning job {name}: {field} is not emulated here: {what}", file=sys.stderr)
    limits = config.get("ResourceLimits", {})
    space = Space(config.get("ParameterRanges", {}))
    grid = space.grid() if strategy == "Grid" else None
    max_jobs = len(grid) if grid is not None else int(limits.get("MaxNumberOfTrainingJobs", 1))
    if grid is not None and "MaxNumberOfTrainingJobs" in limits:
        max_jobs = min(max_jobs, int(limits["MaxNumberOfTrainingJobs"]))
    cores = cores or os.cpu_count() or 1
    parallel = max(1, min(int(limits.get("MaxParallelTrainingJobs", 1)), cores))
    threads = max(1, cores // parallel)
    seed = config.get("RandomSeed")
    rng = random.Random(seed)
    study = None
    if strategy == "Bayesian":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="minimize" if direction == "Minimize" else "maximize",
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(max_jobs, 3)),
        )
        distributions = space.distributions()
    suffix = secrets.token_hex(4)
    summaries: list[dict[str, Any]] = []
    started = now()

    def one(index: int, tuned: dict[str, str]) -> dict[str, Any]:
        job = f"{name}-{index + 1:03d}-{suffix}"
        req = copy.deepcopy(definition)
        static = req.pop("StaticHyperParameters", None) or {}
        req["HyperParameters"] = {**static, **tuned, OBJECTIVE_KEY: metric}
        for key in ("DefinitionName", "TuningObjective", "HyperParameterRanges"):
            req.pop(key, None)
        req["TrainingJobName"] = job
        props = train(job, req, threads)
        summary: dict[str, Any] = {
            "TrainingJobName": job,
            "TrainingJobArn": props.get("TrainingJobArn"),
            "TuningJobName": name,
            "TrainingJobStatus": props["TrainingJobStatus"],
            "TunedHyperParameters": tuned,
            "CreationTime": props.get("TrainingStartTime"),
            "TrainingStartTime": props.get("TrainingStartTime"),
            "TrainingEndTime": props.get("TrainingEndTime"),
        }
        values = {m["MetricName"]: m["Value"] for m in props.get("FinalMetricDataList", [])}
        if props["TrainingJobStatus"] == "Completed" and metric in values:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": direction,
                "MetricName": metric,
                "Value": values[metric],
            }
            summary["ObjectiveStatus"] = "Succeeded"
        else:
            summary["ObjectiveStatus"] = "Failed"
            summary["FailureReason"] = props.get("FailureReason") or (
                f"The objective metric {metric} was not found in the job's log."
            )
        summary["_local"] = props.get("_local", {})
        return summary

    index = 0
    stopped = False
    reached: dict[str, Any] | None = None
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        while index < max_jobs and not stopped and reached is None:
            batch = min(parallel, max_jobs - index)
            trials, futures = [], []
            for _ in range(batch):
                if grid is not None:
                    tuned = grid[index]
                elif study is not None:
                    trial = study.ask(distributions)
                    trials.append(trial)
                    tuned = space.to_strings(trial.params)
                else:
                    tuned = space.sample(rng)
                futures.append(pool.submit(one, index, tuned))
                index += 1
            for i, future in enumerate(futures):
                try:
                    summary = future.result()
                except StepStopped:
                    stopped = True
                    continue
                summaries.append(summary)
                if study is not None:
                    final = summary.get("FinalHyperParameterTuningJobObjectiveMetric")
                    state = None if final else optuna.trial.TrialState.FAIL
                    study.tell(trials[i], final["Value"] if final else None, state=state)
            if target is not None:
                reached = next((x for x in summaries if _reaches(x, target, direction)), None)
    if stopped:
        raise StepStopped(f"Tuning job {name} was stopped.")
    ok = [s for s in summaries if s["ObjectiveStatus"] == "Succeeded"]
    sign = 1 if direction == "Minimize" else -1
    ok.sort(key=lambda s: sign * s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
    failed = [s for s in summaries if s["ObjectiveStatus"] != "Succeeded"]
    props: dict[str, Any] = {
        **request,
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobArn": f"arn:aws:sagemaker:::hyper-parameter-tuning-job/{name}",
        "CreationTime": started,
        "HyperParameterTuningEndTime": now(),
        "LastModifiedTime": now(),
        "TrainingJobStatusCounters": {
            "Completed": sum(s["TrainingJobStatus"] == "Completed" for s in summaries),
            "Failed": sum(s["TrainingJobStatus"] != "Completed" for s in summaries),
        },
        "ObjectiveStatusCounters": {"Succeeded": len(ok), "Failed": len(failed)},
        "TrainingJobSummaries": ok + failed,
    }
    local: dict[str, Any] = {}
    if not_emulated:
        local["NotEmulated"] = not_emulated
    if criteria:
        props["TuningJobCompletionDetails"] = {
            "NumberOfTrainingJobsObjectiveNotImproving": _not_improving(summaries, direction)
        }
    if reached is not None:
        value = reached["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        local["CompletionCriterion"] = (
            f"TargetObjectiveMetricValue {target} reached by {reached['TrainingJobName']} "
            f"({metric}={value}) after {len(summaries)} of {max_jobs} training jobs"
        )
    props["_local"] = local
    if not ok:
        reasons = "; ".join(f"{s['TrainingJobName']}: {s['FailureReason']}" for s in failed[:3])
        props["HyperParameterTuningJobStatus"] = "Failed"
        props["FailureReason"] = cut(f"All {len(summaries)} training jobs failed. {reasons}")
        raise StepFailed(props["FailureReason"], properties=props)
    props["HyperParameterTuningJobStatus"] = "Completed"
    props["BestTrainingJob"] = ok[0]
    return props


def _not_emulated(config: dict[str, Any]) -> dict[str, str]:
    """The settings of a tuning job config that change the service's run and not this one."""
    out = {}
    if config.get("TrainingJobEarlyStoppingType", "Off") == "Auto":
        out["TrainingJobEarlyStoppingType"] = "Auto: every training job runs to its end"
    criteria = config.get("TuningJobCompletionCriteria") or {}
    if criteria.get("BestObjectiveNotImproving"):
        out["BestObjectiveNotImproving"] = "the search runs on while the best does not improve"
    if (criteria.get("ConvergenceDetected") or {}).get("CompleteOnConvergence") == "Enabled":
        out["ConvergenceDetected"] = "no convergence is detected"
    return out


def _reaches(summary: dict[str, Any], target: float, direction: str) -> bool:
    """Whether a training job's final objective reaches ``target`` (Minimize: at most it)."""
    final = summary.get("FinalHyperParameterTuningJobObjectiveMetric")
    if not final:
        return False
    value = float(final["Value"])
    return value <= float(target) if direction == "Minimize" else value >= float(target)


def _not_improving(summaries: list[dict[str, Any]], direction: str) -> int:
    """Completed training jobs, in launch order, since the best last improved by over 1%."""
    sign = 1 if direction == "Minimize" else -1
    best, count = None, 0
    for summary in sorted(summaries, key=lambda s: s["TrainingJobName"]):
        final = summary.get("FinalHyperParameterTuningJobObjectiveMetric")
        if not final:
            continue
        value = sign * float(final["Value"])
        if best is None or best - value > NOT_IMPROVING * abs(best):
            best, count = value, 0
        else:
            count += 1
    return count
