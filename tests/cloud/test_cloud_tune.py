"""``make cloud-tune``: the tuning request from the one home of the tuning settings."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from conf.errors import compose_checked
from pipelines.sagemaker import cloud_cli
from pipelines.sagemaker.cloud_tuning import best_overrides, tuning_job_config, warm_start_config
from tests.cloud.support import ACCOUNT, BUCKET

pytestmark = pytest.mark.usefixtures("in_tmp")
SEARCH = [
    "tuning.early_stopping=Auto",
    "tuning.target_objective=0.45",
    "tuning.warm_start_from=[p1]",
]


def test_the_tuning_config_carries_early_stopping_completion_and_warm_start() -> None:
    cfg = compose_checked(SEARCH)
    config = tuning_job_config(cfg)
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["TuningJobCompletionCriteria"] == {"TargetObjectiveMetricValue": 0.45}
    assert config["RandomSeed"] == 0  # a seed of 0 is a seed
    ranges = {r["Name"]: r for r in config["ParameterRanges"]["IntegerParameterRanges"]}
    assert ranges["model.max_leaf_nodes"] == {
        "Name": "model.max_leaf_nodes",
        "MinValue": "4",
        "MaxValue": "31",
        "ScalingType": "Logarithmic",
    }
    warm = warm_start_config(cfg)
    assert warm == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "p1"}],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }
    default = tuning_job_config(compose_checked(["tuning.seed=null"]))
    assert "RandomSeed" not in default and "TuningJobCompletionCriteria" not in default
    assert default["TrainingJobEarlyStoppingType"] == "Off"
    assert warm_start_config(compose_checked([])) is None


def test_best_overrides_leave_out_platform_keys() -> None:
    described = {
        "BestTrainingJob": {
            "TunedHyperParameters": {"model.max_leaf_nodes": "26", "_tuning_objective_metric": "x"}
        }
    }
    assert best_overrides(described) == ["model.max_leaf_nodes=26"]


def test_the_aws_path_creates_the_tuning_job(aws: str, in_tmp: Path) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    cloud_cli.main(["tune", "--poll", "0", *ACCOUNT, *SEARCH])
    sm = boto3.client("sagemaker", region_name="us-east-1")
    (summary,) = sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    name = summary["HyperParameterTuningJobName"]
    assert len(name) <= 32
    described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    config = described["HyperParameterTuningJobConfig"]
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 12
    definition = described["TrainingJobDefinition"]
    assert definition["StaticHyperParameters"] == {"mode": "run"}
    channel = definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert channel.startswith(f"s3://{BUCKET}/claim-frequency/config/")


def test_a_model_without_a_search_space_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cloud_cli.main(["tune", *ACCOUNT, "model=constant"]) == 2
    assert "no search space" in capsys.readouterr().err


def test_a_warm_start_is_refused_here(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cloud_cli.main(["tune", "--local", "model=hgb_poisson", "tuning.warm_start_from=[p1]"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: tuning.warm_start_from: a warm start reads its parent")
    assert not Path("outputs/pipelines").exists()  # refused before any job


@pytest.mark.slow
def test_the_pipeline_tuning_step_uses_the_same_settings(tmp_path: Path) -> None:
    from pipelines.sagemaker import cli

    overrides = [*ACCOUNT, "pipeline=tune", *SEARCH]
    cfg = cli.compose_checked(overrides)
    text, _ = cli.build_definition(cfg, overrides, tmp_path / "channel", "us-east-1")
    (step,) = [s for s in json.loads(text)["Steps"] if s["Type"] == "Tuning"]
    assert step["Arguments"]["HyperParameterTuningJobConfig"] == tuning_job_config(cfg)
    assert step["Arguments"]["WarmStartConfig"] == warm_start_config(cfg)
