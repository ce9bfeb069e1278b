"""The tuning job's settings from the ``tuning`` config: one home for the pipeline and cloud-tune.

``tuning_job_config`` is the HyperParameterTuningJobConfig of both the
pipeline's TuningStep (``builder``) and ``make cloud-tune`` (``tuning_request``):
strategy, budget, objective, search space, seed, early stopping and completion
criterion. ``warm_start_config`` is their WarmStartConfig. Plain dictionaries,
no SDK import.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from conf.contract import CONFIG_CHANNEL, MODE_KEY, RUN_MODE
from conf.errors import ConfigError

MAX_TUNING_JOB_NAME = 32
MAX_PARENT_JOBS = 5


def parameter_ranges(cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    """``cfg.tuning.parameters`` as ParameterRanges, each named ``model.<key>``."""
    ranges: dict[str, list[dict[str, Any]]] = {}
    for key, spec in cfg.tuning.parameters.items():
        name = f"model.{key}"
        if spec.type == "integer":
            item = {"Name": name, "MinValue": str(int(spec.min)), "MaxValue": str(int(spec.max))}
            ranges.setdefault("IntegerParameterRanges", []).append(
                {**item, "ScalingType": str(spec.scaling)}
            )
        elif spec.type == "continuous":
            item = {
                "Name": name,
                "MinValue": str(float(spec.min)),
                "MaxValue": str(float(spec.max)),
            }
            ranges.setdefault("ContinuousParameterRanges", []).append(
                {**item, "ScalingType": str(spec.scaling)}
            )
        else:
            ranges.setdefault("CategoricalParameterRanges", []).append(
                {"Name": name, "Values": [str(v) for v in spec["values"]]}
            )
    return ranges


def tuning_job_config(cfg: DictConfig) -> dict[str, Any]:
    """The HyperParameterTuningJobConfig of ``cfg.tuning``."""
    tuning = cfg.tuning
    config: dict[str, Any] = {
        "HyperParameterTuningJobObjective": {
            "MetricName": str(tuning.objective_metric),
            "Type": str(tuning.objective_type),
        },
        "ParameterRanges": parameter_ranges(cfg),
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": int(tuning.max_jobs),
            "MaxParallelTrainingJobs": int(tuning.max_parallel_jobs),
        },
        "Strategy": str(tuning.strategy),
        "TrainingJobEarlyStoppingType": str(tuning.early_stopping),
    }
    if tuning.seed is not None:
        config["RandomSeed"] = int(tuning.seed)
    if tuning.target_objective is not None:
        config["TuningJobCompletionCriteria"] = {
            "TargetObjectiveMetricValue": float(tuning.target_objective)
        }
    return config


def warm_start_config(cfg: DictConfig) -> dict[str, Any] | None:
    """WarmStartConfig from ``tuning.warm_start_from`` (None when it is empty)."""
    parents = [str(name) for name in cfg.tuning.warm_start_from]
    if not parents:
        return None
    if len(parents) > MAX_PARENT_JOBS:
        raise ConfigError(
            f"tuning.warm_start_from names {len(parents)} tuning jobs; SageMaker takes at most "
            f"{MAX_PARENT_JOBS}."
        )
    return {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": p} for p in parents],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }


def tuning_request(
    cfg: DictConfig, name: str, training: dict[str, Any], tags: list[dict[str, str]]
) -> dict[str, Any]:
    """The CreateHyperParameterTuningJob request of ``make cloud-tune``.

    ``training`` is a cloud run's CreateTrainingJob request: each training job of
    the search is a whole run with the same image, channel, resources and limits.
    """
    if len(name) > MAX_TUNING_JOB_NAME:
        raise ConfigError(f"The tuning job name {name!r} is longer than {MAX_TUNING_JOB_NAME}.")
    definition: dict[str, Any] = {
        "AlgorithmSpecification": training["AlgorithmSpecification"],
        "RoleArn": training["RoleArn"],
        "StaticHyperParameters": {MODE_KEY: RUN_MODE},
        "InputDataConfig": [
            c for c in training["InputDataConfig"] if c["ChannelName"] == CONFIG_CHANNEL
        ],
        "OutputDataConfig": training["OutputDataConfig"],
        "ResourceConfig": {
            k: v for k, v in training["ResourceConfig"].items() if k != "KeepAlivePeriodInSeconds"
        },
        "StoppingCondition": training["StoppingCondition"],
    }
    if training.get("EnableManagedSpotTraining"):
        definition["EnableManagedSpotTraining"] = True
    request: dict[str, Any] = {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": tuning_job_config(cfg),
        "TrainingJobDefinition": definition,
        "Tags": tags,
    }
    warm = warm_start_config(cfg)
    if warm:
        request["WarmStartConfig"] = warm
    return request


def best_overrides(described: dict[str, Any]) -> list[str]:
    """The best training job's tuned values as overrides (``model.x=v``), platform keys left out."""
    best = described.get("BestTrainingJob") or {}
    values = best.get("TunedHyperParameters") or {}
    return [f"{k}={v}" for k, v in sorted(values.items()) if not k.startswith(("_", "sagemaker_"))]
